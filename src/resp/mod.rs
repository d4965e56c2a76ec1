//! RESP2 over any `AsyncRead + AsyncWrite` stream: the codec, a server loop that serves a
//! [`crate::model::Model`], a client, and that client as a [`crate::redis::Redis`] backend.
//!
//! Nothing here names a concrete transport: `ratelab serve` hands in tokio's TCP streams and
//! the simulation hands in turmoil's, and both run this same code.

pub mod backend;
pub mod client;
pub mod codec;
pub mod server;

//! ratelab: a deterministic simulator and verification suite for Redis-backed rate limiters.
//!
//! The library holds everything that is not the simulation harness itself. Its parts, from the
//! bottom up:
//!
//! * [`model`]: an in-process Redis 7.0. A synchronous state machine: every call takes the
//!   current time, nothing reads a clock, so the same code runs in a real server
//!   (`ratelab serve`), under turmoil, and inside property tests. It runs the real `lua/`
//!   files in a Lua 5.1 host.
//! * [`resp`]: the RESP2 codec, a server loop that serves a model over any
//!   `AsyncRead + AsyncWrite` stream, and a client over any stream.
//! * [`redis_server`]: a real `redis-server` for differential tests and benchmarks (started
//!   from PATH or named by `REDIS_URL`), with a small blocking client.
//!
//! Later layers (pure algorithm cores, the IO boundary, the limiters, key schemes) arrive with
//! the limiters issue; `ARCHITECTURE.md` at the repository root is the map.

#[cfg(feature = "model")]
pub mod model;
#[cfg(feature = "net")]
pub mod redis_server;
#[cfg(feature = "net")]
pub mod resp;

//! The command families. Each module exports `COMMANDS: &[Spec]` and the handlers behind it.
//!
//! Handlers share the small helpers below: argument parsing with Redis's error texts, and
//! typed access to a key's value that answers WRONGTYPE for the wrong type.

pub mod hashes;
pub mod introspect;
pub mod keys;
pub mod lists;
pub mod server;
pub mod sets;
pub mod strings;
pub mod zsets;

use super::num;
use super::reply::{Reply, err, msg};

/// Parses an integer argument, or answers Redis's "not an integer" error.
pub fn arg_i64(arg: &[u8]) -> Result<i64, Reply> {
    num::parse_i64(arg).ok_or_else(|| err(msg::NOT_INTEGER))
}

/// Parses a float argument, or answers Redis's "not a valid float" error.
pub fn arg_f64(arg: &[u8]) -> Result<f64, Reply> {
    num::parse_f64(arg).ok_or_else(|| err(msg::NOT_FLOAT))
}

/// Whether an argument equals an option name, ignoring ASCII case.
pub fn is_opt(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

/// Unwraps a `Result<Reply, Reply>` where the error side is an early error reply.
pub fn reply_of(result: Result<Reply, Reply>) -> Reply {
    result.unwrap_or_else(|reply| reply)
}

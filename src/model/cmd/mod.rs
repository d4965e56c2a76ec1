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

use super::db::Value;
use super::num;
use super::reply::{Reply, err, msg};
use super::{Core, Ctx};

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

/// An integer reply from a length (lengths always fit an `i64`).
pub fn len_reply(count: usize) -> Reply {
    Reply::Integer(i64::try_from(count).expect("a length fits i64"))
}

/// The value under `key` for reading (counts a keyspace hit or miss), seen through `project`:
/// `Ok(None)` if absent, WRONGTYPE if the key holds another type.
pub fn read_as<'a, T: ?Sized>(
    core: &'a mut Core,
    ctx: &Ctx,
    key: &[u8],
    project: fn(&Value) -> Option<&T>,
) -> Result<Option<&'a T>, Reply> {
    match core.lookup_read(ctx, key) {
        None => Ok(None),
        Some(entry) => project(&entry.value)
            .map(Some)
            .ok_or_else(|| err(msg::WRONGTYPE)),
    }
}

/// The value under `key` for writing (no hit/miss counting, as Redis's lookupKeyWrite), seen
/// through `project`: `Ok(None)` if absent, WRONGTYPE if the key holds another type.
pub fn write_as<'a, T: ?Sized>(
    core: &'a mut Core,
    ctx: &Ctx,
    key: &[u8],
    project: fn(&mut Value) -> Option<&mut T>,
) -> Result<Option<&'a mut T>, Reply> {
    match core.db(ctx).lookup_mut(ctx.now_ms, key) {
        None => Ok(None),
        Some(entry) => project(&mut entry.value)
            .map(Some)
            .ok_or_else(|| err(msg::WRONGTYPE)),
    }
}

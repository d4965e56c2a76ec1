//! Script errors: Redis's error objects, the values `pcall` hands scripts, and error lines.

use std::fmt;

use mlua::{Lua, Value};

use super::Run;
use super::convert::{format_g, lossy, lua_type_name};
use crate::model::Core;
use crate::model::reply::{Reply, err, sanitize};

/// An error Redis raises as a Lua table `{err=...}`: `redis.call` failures and the Redis API's
/// own argument errors. mlua carries it through Lua as an error value.
#[derive(Debug)]
struct TableError {
    /// The `err` field: the whole error line, its code first.
    err: String,
    /// Redis's `ignore_error_stats_update`: the error was already counted.
    ignore_stats: bool,
}

impl fmt::Display for TableError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.err)
    }
}

impl std::error::Error for TableError {}

pub(super) fn table_error(err: String, ignore_stats: bool) -> mlua::Error {
    mlua::Error::external(TableError { err, ignore_stats })
}

/// A Redis API error raised from a plain message (`luaPushError` + `lua_error`).
pub(super) fn api_error(message: &str) -> mlua::Error {
    table_error(error_field(message), false)
}

/// Redis's `luaPushErrorBuff`: a `-CODE message` line keeps its code, anything else gets `ERR`.
pub(super) fn error_field(buffer: &str) -> String {
    let (code, message) = match buffer.strip_prefix('-') {
        Some(rest) => rest.split_once(' ').unwrap_or(("ERR", rest)),
        None => ("ERR", buffer),
    };
    format!("{code} {}", message.trim_matches(['\r', '\n']))
}

/// A Lua runtime error with `luaL_error`'s position prefix (`user_script:3: `), taken from
/// the function that called the current Rust function.
pub(crate) fn where_error(lua: &Lua, message: impl fmt::Display) -> mlua::Error {
    let prefix = lua
        .inspect_stack(1, |debug| {
            let line = debug.current_line().filter(|line| *line > 0)?;
            let short_src = debug.source().short_src?.into_owned();
            Some(format!("{short_src}:{line}: "))
        })
        .flatten()
        .unwrap_or_default();
    mlua::Error::RuntimeError(format!("{prefix}{message}"))
}

/// What an error value raised through mlua really is.
enum Raised<'a> {
    Table(&'a TableError),
    Message(String),
}

fn classify(error: &mlua::Error) -> Raised<'_> {
    match error {
        mlua::Error::CallbackError { cause, .. } => classify(cause),
        mlua::Error::WithContext { cause, .. } => classify(cause),
        mlua::Error::ExternalError(inner) => match inner.downcast_ref::<TableError>() {
            Some(table) => Raised::Table(table),
            None => Raised::Message(inner.to_string()),
        },
        mlua::Error::RuntimeError(message) => Raised::Message(message.clone()),
        other => Raised::Message(other.to_string()),
    }
}

/// The value a script sees for an error raised from Rust: a `{err=...}` table for Redis
/// errors, the message string for Lua-style runtime errors. Other values pass unchanged.
pub(super) fn plain_error(lua: &Lua, value: Value) -> mlua::Result<Value> {
    let Value::Error(error) = &value else {
        return Ok(value);
    };
    match classify(error) {
        Raised::Table(table) => {
            let result = lua.create_table_with_capacity(0, 2)?;
            result.raw_set("err", lua.create_string(&table.err)?)?;
            if table.ignore_stats {
                result.raw_set("ignore_error_stats_update", true)?;
            }
            Ok(Value::Table(result))
        }
        Raised::Message(message) => Ok(Value::String(lua.create_string(&message)?)),
    }
}

/// What Redis's `pcall` returns as the error: an error table's `err` field replaces the table.
pub(super) fn pcall_error(lua: &Lua, value: Value) -> mlua::Result<Value> {
    let value = plain_error(lua, value)?;
    if let Value::Table(table) = &value {
        let field: Value = table.raw_get("err")?;
        if matches!(
            field,
            Value::String(_) | Value::Number(_) | Value::Integer(_)
        ) {
            return Ok(field);
        }
    }
    Ok(value)
}

/// Redis's answer when even the error handler failed.
pub(super) fn running_error(sha: &str, message: &str) -> Reply {
    let message: String = message.chars().take(100).collect();
    err(sanitize(&format!(
        "ERR Error running script {sha}, {message}\n"
    )))
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => lossy(&text.as_bytes()),
        Value::Error(error) => error.to_string(),
        _ => "execution failure".to_owned(),
    }
}

pub(super) fn uncount_error(core: &mut Core, line: &str) {
    core.stats.total_error_replies = core.stats.total_error_replies.saturating_sub(1);
    let code = line.split(' ').next().unwrap_or("ERR");
    if let Some(count) = core.stats.errors.get_mut(code) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            core.stats.errors.remove(code);
        }
    }
}

/// The message of an error raised by a library's code during FUNCTION LOAD, as
/// `luaExtractErrorInformation` reads it (`ERR ` before a plain string).
pub(super) fn load_error_message(error: &mlua::Error) -> String {
    match classify(error) {
        Raised::Table(table) => table.err.clone(),
        Raised::Message(message) => format!("ERR {message}"),
    }
}

/// The error value's message, as Redis's handler and `luaExtractErrorInformation` build it.
fn failure_message(value: &Value) -> mlua::Result<(String, bool)> {
    Ok(match value {
        Value::Error(error) => match classify(error) {
            Raised::Table(table) => (table.err.clone(), table.ignore_stats),
            Raised::Message(message) => (format!("ERR {message}"), false),
        },
        Value::Table(table) => {
            let message = match table.raw_get::<Value>("err")? {
                Value::String(text) => lossy(&text.as_bytes()),
                Value::Number(number) => format_g(number, 14),
                Value::Integer(integer) => format_g(integer as f64, 14),
                _ => "ERR unknown error".to_owned(),
            };
            let ignore = matches!(
                table.raw_get::<Value>("ignore_error_stats_update")?,
                Value::Boolean(true)
            );
            (message, ignore)
        }
        Value::String(text) => (format!("ERR {}", lossy(&text.as_bytes())), false),
        Value::Nil => ("ERR nil".to_owned(), false),
        Value::Boolean(flag) => (format!("ERR {flag}"), false),
        Value::Number(number) => (format!("ERR {}", format_g(*number, 14)), false),
        other => (format!("ERR {}", lua_type_name(other)), false),
    })
}

/// Source and current line of the function at `level` (from the running Rust function).
fn frame(lua: &Lua, level: usize) -> Option<(String, i64, bool)> {
    lua.inspect_stack(level, |debug| {
        let line = debug
            .current_line()
            .and_then(|line| i64::try_from(line).ok())
            .unwrap_or(-1);
        let source = debug.source();
        let is_c = source.what == "C";
        let name = source
            .source
            .map_or_else(|| "=?".to_owned(), |name| name.into_owned());
        (name, line, is_c)
    })
}

/// The top-level error handler (Redis's `__redis__err__handler` and the formatting of
/// `luaCallFunction`): records `<message> script: <sha>, on <source>:<line>.` in the run.
pub(super) fn on_error(lua: &Lua, value: Value) -> mlua::Result<()> {
    let (message, ignore_stats) = failure_message(&value)?;
    let killed = lua.app_data_ref::<Run>().is_some_and(|run| run.killed);
    let location = if killed {
        // A kill may be re-raised by a pcall wrapper: report the script's own line.
        (1..256)
            .filter_map(|level| frame(lua, level))
            .find(|(source, _, _)| source == "@user_script" || source == "@user_function")
    } else {
        match frame(lua, 1) {
            // The sandbox's own Lua wrappers (`=[C]`, see `WRAPPERS`) stand in for C
            // functions: an error raised in one is reported where the script called it.
            Some((_, _, true)) => (2..256)
                .filter_map(|level| frame(lua, level))
                .find(|(source, _, _)| source != "=[C]"),
            other => other,
        }
    };
    let mut run = lua
        .app_data_mut::<Run>()
        .expect("the run state is installed when the engine starts");
    let line = match location {
        Some((source, line, _)) => {
            format!("{message} script: {}, on {source}:{line}.", run.sha)
        }
        None => message,
    };
    run.failure = Some((sanitize(&line), ignore_stats));
    Ok(())
}

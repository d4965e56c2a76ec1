//! The `redis` table and the sandbox's other Rust functions (`math.random`, read-only proxies).

use mlua::{Either, Function, Lua, MultiValue, Table, Value, Variadic};

use super::Run;
use super::convert::{
    as_number, format_g, lossy, lua_args_to_argv, lua_number_to_integer, lua_string_to_number,
    lua_type_name, reply_to_lua,
};
use super::errors::{api_error, error_field, table_error, where_error};
use crate::model::command;
use crate::model::reply::{Protocol, Reply};

/// Redis's version as `redis.REDIS_VERSION` and `redis.REDIS_VERSION_NUM` report it.
const REDIS_VERSION: &str = "7.0.15";
const REDIS_VERSION_NUM: f64 = 458_767.0;

/// `redis.call` (`raise`) and `redis.pcall`.
fn redis_call(lua: &Lua, args: MultiValue, raise: bool) -> mlua::Result<Either<String, Value>> {
    let (line, ignore_stats) = match lua_args_to_argv(&args) {
        Err(message) => (error_field(message), false),
        Ok(argv) => {
            let (outcome, resp) = {
                let mut run = lua
                    .app_data_mut::<Run>()
                    .expect("the run state is installed when the engine starts");
                (run.execute(&argv), run.ctx.resp)
            };
            match outcome {
                Ok(Reply::Error(line)) => (error_field(&format!("-{line}")), true),
                Ok(reply) => return reply_to_lua(lua, reply, resp),
                Err(message) => (error_field(&message), true),
            }
        }
    };
    if raise {
        return Err(table_error(line, ignore_stats));
    }
    let table = lua.create_table_with_capacity(0, 2)?;
    table.raw_set("err", lua.create_string(&line)?)?;
    if ignore_stats {
        table.raw_set("ignore_error_stats_update", true)?;
    }
    Ok(Either::Right(Value::Table(table)))
}

/// `lua_tonumber` on an argument: numbers and numeric strings.
fn arg_number(args: &[Value], index: usize) -> Option<f64> {
    match args.get(index)? {
        Value::Number(number) => Some(*number),
        Value::Integer(integer) => Some(*integer as f64),
        Value::String(text) => lua_string_to_number(&text.as_bytes()),
        _ => None,
    }
}

/// `luaL_checkint`: a number truncated to a C int, or Lua's "bad argument" error.
fn check_int(lua: &Lua, args: &[Value], index: usize, function: &str) -> mlua::Result<i32> {
    match arg_number(args, index) {
        Some(number) => Ok(lua_number_to_integer(number) as i32),
        None => {
            let got = args.get(index).map_or("no value", lua_type_name);
            Err(where_error(
                lua,
                format!(
                    "bad argument #{} to '{function}' (number expected, got {got})",
                    index + 1
                ),
            ))
        }
    }
}

/// One `lrand48` step: the 48-bit LCG every libc shares, returning the top 31 bits.
fn lrand48(state: &mut u64) -> i32 {
    *state = state.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB) & ((1 << 48) - 1);
    i32::try_from(*state >> 17).expect("31 bits")
}

/// Redis's `math.random`: Lua's own algorithm over `lrand48`, so every platform agrees.
pub(super) fn math_random(lua: &Lua, args: Variadic<Value>) -> mlua::Result<f64> {
    const LRAND48_MAX: f64 = 2_147_483_647.0;
    let drawn = {
        let mut run = lua
            .app_data_mut::<Run>()
            .expect("the run state is installed when the engine starts");
        lrand48(&mut run.random_state)
    };
    let unit = f64::from(drawn % 2_147_483_647) / LRAND48_MAX;
    match args.len() {
        0 => Ok(unit),
        1 => {
            let upper = check_int(lua, &args, 0, "random")?;
            if upper < 1 {
                return Err(where_error(
                    lua,
                    "bad argument #1 to 'random' (interval is empty)",
                ));
            }
            Ok((unit * f64::from(upper)).floor() + 1.0)
        }
        2 => {
            let lower = check_int(lua, &args, 0, "random")?;
            let upper = check_int(lua, &args, 1, "random")?;
            if lower > upper {
                return Err(where_error(
                    lua,
                    "bad argument #2 to 'random' (interval is empty)",
                ));
            }
            let span = f64::from(upper) - f64::from(lower) + 1.0;
            Ok((unit * span).floor() + f64::from(lower))
        }
        _ => Err(where_error(lua, "wrong number of arguments")),
    }
}

pub(super) fn math_randomseed(lua: &Lua, args: Variadic<Value>) -> mlua::Result<()> {
    let seed = check_int(lua, &args, 0, "randomseed")?;
    let mut run = lua
        .app_data_mut::<Run>()
        .expect("the run state is installed when the engine starts");
    run.random_state = (u64::from(seed as u32) << 16) | 0x330E;
    Ok(())
}

/// `redis.error_reply` and `redis.status_reply` answer (not raise) this on bad arguments.
fn single_string_arg(args: &[Value]) -> Option<&mlua::LuaString> {
    match args {
        [Value::String(text)] => Some(text),
        _ => None,
    }
}

fn field_table(lua: &Lua, field: &str, text: &[u8]) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 1)?;
    table.raw_set(field, lua.create_string(text)?)?;
    Ok(table)
}

fn wrong_args_table(lua: &Lua) -> mlua::Result<Table> {
    field_table(lua, "err", b"ERR wrong number or type of arguments")
}

/// Builds the `redis` table.
pub(super) fn create_redis_table(lua: &Lua) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    redis.raw_set(
        "call",
        lua.create_function(|lua, args: MultiValue| redis_call(lua, args, true))?,
    )?;
    redis.raw_set(
        "pcall",
        lua.create_function(|lua, args: MultiValue| redis_call(lua, args, false))?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|_, args: Variadic<Value>| {
            if args.len() < 2 {
                return Err(api_error("redis.log() requires two arguments or more."));
            }
            let Some(level) = arg_number(&args, 0) else {
                return Err(api_error("First argument must be a number (log level)."));
            };
            if !(0..=3).contains(&lua_number_to_integer(level)) {
                return Err(api_error("Invalid debug level."));
            }
            // The model keeps no server log: a valid call does nothing.
            Ok(())
        })?,
    )?;
    for (name, level) in [
        ("LOG_DEBUG", 0.0),
        ("LOG_VERBOSE", 1.0),
        ("LOG_NOTICE", 2.0),
        ("LOG_WARNING", 3.0),
    ] {
        redis.raw_set(name, level)?;
    }
    redis.raw_set("REDIS_VERSION_NUM", REDIS_VERSION_NUM)?;
    redis.raw_set("REDIS_VERSION", REDIS_VERSION)?;
    redis.raw_set(
        "setresp",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(api_error("redis.setresp() requires one argument."));
            }
            let resp = match arg_number(&args, 0).map(lua_number_to_integer) {
                Some(2) => Protocol::Resp2,
                Some(3) => Protocol::Resp3,
                _ => return Err(api_error("RESP version must be 2 or 3.")),
            };
            let mut run = lua
                .app_data_mut::<Run>()
                .expect("the run state is installed when the engine starts");
            if run.core.is_none() {
                return Err(api_error(
                    "redis.setresp can only be called inside a script invocation",
                ));
            }
            run.ctx.resp = resp;
            Ok(())
        })?,
    )?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(api_error("wrong number of arguments"));
            }
            let bytes = match &args[0] {
                Value::String(text) => text.as_bytes().to_vec(),
                other => as_number(other)
                    .map(|number| format_g(number, 14).into_bytes())
                    .unwrap_or_default(),
            };
            lua.create_string(sha1_smol::Sha1::from(&bytes).digest().to_string())
        })?,
    )?;
    redis.raw_set(
        "error_reply",
        lua.create_function(|lua, args: Variadic<Value>| {
            let Some(text) = single_string_arg(&args) else {
                return wrong_args_table(lua);
            };
            let text = lossy(&text.as_bytes());
            let buffer = if text.starts_with('-') {
                text
            } else {
                format!("-{text}")
            };
            field_table(lua, "err", error_field(&buffer).as_bytes())
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(
            |lua, args: Variadic<Value>| match single_string_arg(&args) {
                Some(text) => field_table(lua, "ok", &text.as_bytes()),
                None => wrong_args_table(lua),
            },
        )?,
    )?;
    redis.raw_set(
        "set_repl",
        lua.create_function(|_, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(api_error("redis.set_repl() requires two arguments."));
            }
            let flags = arg_number(&args, 0).map_or(0, lua_number_to_integer);
            if flags & !3 != 0 {
                return Err(api_error(
                    "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                ));
            }
            Ok(())
        })?,
    )?;
    for (name, value) in [
        ("REPL_NONE", 0.0),
        ("REPL_AOF", 1.0),
        ("REPL_SLAVE", 2.0),
        ("REPL_REPLICA", 2.0),
        ("REPL_ALL", 3.0),
    ] {
        redis.raw_set(name, value)?;
    }
    redis.raw_set(
        "acl_check_cmd",
        lua.create_function(|_, args: MultiValue| {
            let argv = lua_args_to_argv(&args).map_err(api_error)?;
            match command::lookup(&argv[0]) {
                Some(_) => Ok(true),
                None => Err(api_error("Invalid command passed to redis.acl_check_cmd()")),
            }
        })?,
    )?;
    // Effects replication is the only mode in 7.0: the call is accepted and answers true.
    redis.raw_set(
        "replicate_commands",
        lua.create_function(|_, _: MultiValue| Ok(true))?,
    )?;
    // No debugger session is ever active in the model.
    redis.raw_set(
        "breakpoint",
        lua.create_function(|_, _: MultiValue| Ok(false))?,
    )?;
    redis.raw_set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    Ok(redis)
}

/// A table that reads through to `real` and refuses every write, as Redis's read-only tables.
pub(super) fn read_only_proxy(
    lua: &Lua,
    real: Table,
    refuse_write: &Function,
) -> mlua::Result<Table> {
    let proxy = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.raw_set("__index", real)?;
    meta.raw_set("__newindex", refuse_write.clone())?;
    // `getmetatable` sees a table, as in Redis, but not the one holding the real table.
    // That table is read-only too: `getmetatable(_G).__index = {}` must fail.
    let shown = lua.create_table()?;
    let shown_meta = lua.create_table()?;
    shown_meta.raw_set("__newindex", refuse_write.clone())?;
    shown.set_metatable(Some(shown_meta))?;
    meta.raw_set("__metatable", shown)?;
    proxy.set_metatable(Some(meta))?;
    Ok(proxy)
}

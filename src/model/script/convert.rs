//! Conversions between Lua values and Redis replies and arguments, and Lua's number formatting.

use mlua::{Either, Lua, MultiValue, Table, Value};

use super::errors::error_field;
use super::tag;
use crate::model::reply::{Protocol, Reply, double, err, sanitize};

/// How deep a script's returned tables are converted before the reply ends in an error.
pub(super) const REPLY_DEPTH_MAX: usize = 200;

/// A Lua number. mlua hands integral numbers over as `Integer` even under Lua 5.1, whose
/// only number type is the double, so both mean the same here.
pub(crate) fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => Some(*number),
        Value::Integer(integer) => Some(*integer as f64),
        _ => None,
    }
}

/// Lua's `lua_typename` for a value.
pub(crate) fn lua_type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) | Value::Error(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// Lua 5.1's string-to-number coercion (`lua_tonumber` on a string): `strtod` or hex, with
/// surrounding spaces allowed.
pub(crate) fn lua_string_to_number(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        let value = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if negative { -value } else { value });
    }
    let lower = digits.to_ascii_lowercase();
    if lower.starts_with("inf") || lower.starts_with("nan") || digits.is_empty() {
        return None;
    }
    text.parse::<f64>().ok()
}

/// C's `printf("%.*g", precision, value)`, as Lua's `tostring` (14) and cjson (14) print.
pub(crate) fn format_g(value: f64, precision: usize) -> String {
    if value.is_nan() {
        return if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let precision = precision.max(1);
    // Integers with at most `precision` digits print exactly, without the slow exact-float
    // formatting (most numbers scripts pass to commands are integers).
    let precision_exponent = i32::try_from(precision).unwrap_or(i32::MAX).min(18);
    if value.fract() == 0.0 && value.abs() < 10f64.powi(precision_exponent) {
        return (value as i64).to_string();
    }
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("scientific formatting always has an exponent");
    let exponent: i32 = exponent.parse().expect("the exponent is an integer");
    let precision_i32 = i32::try_from(precision).unwrap_or(i32::MAX);
    if exponent < -4 || exponent >= precision_i32 {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{}e{sign}{:02}",
            trim_fraction(mantissa),
            exponent.unsigned_abs()
        );
    }
    let decimals = usize::try_from(precision_i32 - 1 - exponent).unwrap_or(0);
    trim_fraction(&format!("{value:.decimals$}")).to_owned()
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// `%.17g`, how Redis turns a Lua number argument into a command argument.
pub(super) fn format_g17(value: f64) -> String {
    format_g(value, 17)
}

/// Redis's `(long long)` cast of a Lua number: truncation, and x86's "integer indefinite"
/// (the minimum) for NaN and anything out of range.
pub(super) fn lua_number_to_integer(number: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if number.is_nan() || !(-LIMIT..LIMIT).contains(&number) {
        i64::MIN
    } else {
        number as i64
    }
}

/// A command reply as Lua sees it from `redis.call`, under the script's protocol
/// (`redis.setresp`). UTF-8 bulk strings (nearly all) stay a Rust `String`, which mlua pushes
/// straight onto the Lua stack (no registry handle made and dropped); the Lua string is the
/// same either way.
pub(super) fn reply_to_lua(
    lua: &Lua,
    reply: Reply,
    resp: Protocol,
) -> mlua::Result<Either<String, Value>> {
    let reply = if resp == Protocol::Resp2 && !reply.is_resp2() {
        reply.to_resp2()
    } else {
        reply
    };
    Ok(Either::Right(match reply {
        Reply::Integer(integer) => Value::Number(integer as f64),
        Reply::Bulk(bytes) => match String::from_utf8(bytes) {
            Ok(text) => return Ok(Either::Left(text)),
            Err(error) => Value::String(lua.create_string(error.into_bytes())?),
        },
        // RESP2's null is `false`; RESP3's is `nil`.
        Reply::Nil | Reply::NilArray if resp == Protocol::Resp2 => Value::Boolean(false),
        Reply::Nil | Reply::NilArray => Value::Nil,
        Reply::Bool(value) => Value::Boolean(value),
        // One call builds the table (sized for one field, as before).
        Reply::Status(status) => Value::Table(lua.create_table_from([("ok", status)])?),
        Reply::Error(line) => {
            let table = lua.create_table_with_capacity(0, 2)?;
            table.raw_set("err", lua.create_string(error_field(&format!("-{line}")))?)?;
            table.raw_set("ignore_error_stats_update", true)?;
            Value::Table(table)
        }
        Reply::Array(items) if resp == Protocol::Resp2 => {
            let items = items
                .into_iter()
                .map(|item| reply_to_lua(lua, item, resp))
                .collect::<mlua::Result<Vec<_>>>()?;
            // Sized for the items, as `create_table_with_capacity(len, 0)`, and filled in one go.
            Value::Table(lua.create_sequence_from(items)?)
        }
        other => Value::Table(resp3_table(lua, other)?),
    }))
}

/// The table a RESP3-only reply (or an array that may hold nulls) becomes in Lua, as Redis
/// 7.0's `redisProtocolToLuaType`: `{map={...}}`, `{set={member=true}}`, `{double=n}`,
/// `{big_number=s}`, `{verbatim_string={format=f, string=s}}`; a boolean is a Lua boolean.
fn resp3_table(lua: &Lua, reply: Reply) -> mlua::Result<Table> {
    let value = |reply: Reply| -> mlua::Result<Value> {
        Ok(match reply_to_lua(lua, reply, Protocol::Resp3)? {
            Either::Left(text) => Value::String(lua.create_string(text)?),
            Either::Right(value) => value,
        })
    };
    let wrap = |name: &str, inner: Value| lua.create_table_from([(name, inner)]);
    match reply {
        Reply::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.into_iter().enumerate() {
                // A null item leaves a hole, as `lua_settable` with nil does.
                table.raw_set(index + 1, value(item)?)?;
            }
            Ok(table)
        }
        Reply::Map(pairs) => {
            let inner = lua.create_table_with_capacity(0, pairs.len())?;
            for (field, item) in pairs {
                inner.raw_set(value(field)?, value(item)?)?;
            }
            wrap("map", Value::Table(inner))
        }
        Reply::Set(items) => {
            let inner = lua.create_table_with_capacity(0, items.len())?;
            for item in items {
                inner.raw_set(value(item)?, true)?;
            }
            wrap("set", Value::Table(inner))
        }
        Reply::Double(text) => {
            let number = crate::model::num::parse_f64(text.as_bytes()).unwrap_or(f64::NAN);
            wrap("double", Value::Number(number))
        }
        Reply::BigNumber(text) => wrap("big_number", Value::String(lua.create_string(text)?)),
        Reply::Verbatim(format, text) => {
            let inner = lua.create_table_with_capacity(0, 2)?;
            inner.raw_set("string", lua.create_string(text)?)?;
            inner.raw_set("format", lua.create_string(format)?)?;
            wrap("verbatim_string", Value::Table(inner))
        }
        Reply::Bool(_)
        | Reply::Integer(_)
        | Reply::Bulk(_)
        | Reply::Status(_)
        | Reply::Error(_)
        | Reply::Nil
        | Reply::NilArray => {
            unreachable!("reply_to_lua converts the plain types itself")
        }
    }
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The field names a script's reply table is probed for, interned once per Lua state.
/// Probing with a held string skips hashing and interning the name on every reply (the
/// lookups, and so the conversion, are the same as with a fresh string).
pub(super) struct ReplyFields {
    err: mlua::LuaString,
    ok: mlua::LuaString,
    double: mlua::LuaString,
    big_number: mlua::LuaString,
    verbatim_string: mlua::LuaString,
    format: mlua::LuaString,
    string: mlua::LuaString,
    map: mlua::LuaString,
    set: mlua::LuaString,
}

impl ReplyFields {
    pub(super) fn new(lua: &Lua) -> mlua::Result<ReplyFields> {
        Ok(ReplyFields {
            err: lua.create_string("err")?,
            ok: lua.create_string("ok")?,
            double: lua.create_string("double")?,
            big_number: lua.create_string("big_number")?,
            verbatim_string: lua.create_string("verbatim_string")?,
            format: lua.create_string("format")?,
            string: lua.create_string("string")?,
            map: lua.create_string("map")?,
            set: lua.create_string("set")?,
        })
    }
}

/// A script's return value as the reply Redis sends, `resp` being the script's protocol
/// when it returned (it decides only what a Lua boolean becomes).
fn lua_to_reply(value: &Value, depth: usize, fields: &ReplyFields, resp: Protocol) -> Reply {
    if depth > REPLY_DEPTH_MAX {
        return err("ERR reached lua stack limit");
    }
    match value {
        Value::String(text) => Reply::Bulk(text.as_bytes().to_vec()),
        Value::Boolean(flag) if resp == Protocol::Resp3 => Reply::Bool(*flag),
        Value::Boolean(true) => Reply::Integer(1),
        Value::Boolean(false) => Reply::Nil,
        Value::Number(number) => Reply::Integer(lua_number_to_integer(*number)),
        Value::Integer(integer) => Reply::Integer(*integer),
        Value::Table(table) => table_to_reply(table, depth, fields, resp).unwrap_or_else(|error| {
            err(sanitize(&format!(
                "ERR Error converting the script's reply: {error}"
            )))
        }),
        _ => Reply::Nil,
    }
}

/// The three-letter format of a verbatim reply: Redis copies exactly three bytes.
fn verbatim_format(format: &[u8]) -> String {
    lossy(&format[..format.len().min(3)])
}

fn table_to_reply(
    table: &Table,
    depth: usize,
    fields: &ReplyFields,
    resp: Protocol,
) -> mlua::Result<Reply> {
    if let Value::String(line) = table.raw_get::<Value>(&fields.err)? {
        return Ok(Reply::Error(sanitize(&lossy(&line.as_bytes()))));
    }
    if let Value::String(status) = table.raw_get::<Value>(&fields.ok)? {
        return Ok(Reply::Status(sanitize(&lossy(&status.as_bytes()))));
    }
    if let Some(number) = as_number(&table.raw_get::<Value>(&fields.double)?) {
        return Ok(double(number));
    }
    if let Value::String(big) = table.raw_get::<Value>(&fields.big_number)? {
        return Ok(Reply::BigNumber(sanitize(&lossy(&big.as_bytes()))));
    }
    if let Value::Table(verbatim) = table.raw_get::<Value>(&fields.verbatim_string)?
        && let (Value::String(format), Value::String(text)) = (
            verbatim.raw_get::<Value>(&fields.format)?,
            verbatim.raw_get::<Value>(&fields.string)?,
        )
    {
        return Ok(Reply::Verbatim(
            verbatim_format(&format.as_bytes()),
            text.as_bytes().to_vec(),
        ));
    }
    if let Value::Table(map) = table.raw_get::<Value>(&fields.map)? {
        let mut pairs = Vec::new();
        for pair in map.pairs::<Value, Value>() {
            let (key, value) = pair?;
            pairs.push((
                lua_to_reply(&key, depth + 1, fields, resp),
                lua_to_reply(&value, depth + 1, fields, resp),
            ));
        }
        return Ok(Reply::Map(pairs));
    }
    if let Value::Table(set) = table.raw_get::<Value>(&fields.set)? {
        let mut items = Vec::new();
        for pair in set.pairs::<Value, Value>() {
            let (key, _) = pair?;
            items.push(lua_to_reply(&key, depth + 1, fields, resp));
        }
        return Ok(Reply::Set(items));
    }
    let mut items = Vec::new();
    for index in 1usize.. {
        let item: Value = table.raw_get(index)?;
        if item.is_nil() {
            break;
        }
        items.push(lua_to_reply(&item, depth + 1, fields, resp));
    }
    Ok(Reply::Array(items))
}

/// The reply for [`RUN_SCRIPT`](super::RUN_SCRIPT)'s tag and values: what [`lua_to_reply`]
/// answers for the script's return value, which the host code classified already.
pub(super) fn tagged_reply(
    tag: i64,
    first: &Value,
    rest: &[Value],
    fields: &ReplyFields,
    resp: Protocol,
) -> Reply {
    let text = match first {
        Value::String(text) => Some(text),
        _ => None,
    };
    match (tag, text) {
        (tag::ERROR, Some(line)) => Reply::Error(sanitize(&lossy(&line.as_bytes()))),
        (tag::STATUS, Some(status)) => Reply::Status(sanitize(&lossy(&status.as_bytes()))),
        (tag::BIG_NUMBER, Some(big)) => Reply::BigNumber(sanitize(&lossy(&big.as_bytes()))),
        (tag::VERBATIM, Some(text)) => match rest.first() {
            Some(Value::String(format)) => Reply::Verbatim(
                verbatim_format(&format.as_bytes()),
                text.as_bytes().to_vec(),
            ),
            _ => unexpected_tag(),
        },
        (tag::DOUBLE, _) => match as_number(first) {
            Some(number) => double(number),
            None => unexpected_tag(),
        },
        // Items are never nil, so a nil first value is the empty array.
        (tag::ARRAY, _) if first.is_nil() => Reply::Array(Vec::new()),
        (tag::ARRAY, _) => Reply::Array(
            std::iter::once(first)
                .chain(rest)
                .map(|item| lua_to_reply(item, 1, fields, resp))
                .collect(),
        ),
        (tag::VALUE | tag::TABLE, _) => lua_to_reply(first, 0, fields, resp),
        _ => unexpected_tag(),
    }
}

/// Never answered: `RUN_SCRIPT` sends each tag with the value it names.
fn unexpected_tag() -> Reply {
    err("ERR the script host classified a reply it cannot convert")
}

/// A Lua argument of `redis.call` as a command argument, or `None` if it is neither a string
/// nor a number.
fn lua_to_arg(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(text) => Some(text.as_bytes().to_vec()),
        Value::Number(number) => Some(format_g17(*number).into_bytes()),
        Value::Integer(integer) => Some(format_g17(*integer as f64).into_bytes()),
        _ => None,
    }
}

pub(super) fn lua_args_to_argv(args: &MultiValue) -> Result<Vec<Vec<u8>>, &'static str> {
    if args.is_empty() {
        return Err("Please specify at least one argument for this redis lib call");
    }
    let mut argv = Vec::with_capacity(args.len());
    for arg in args {
        argv.push(
            lua_to_arg(arg).ok_or("Lua redis lib command arguments must be strings or integers")?,
        );
    }
    Ok(argv)
}

//! The `bit` library Redis bundles (LuaBitOp 1.0): 32-bit operations on Lua numbers.
//!
//! Vendored Lua 5.1 has no bitwise operators, and scripts in the wild use `bit.band` and
//! friends for flags and hashing, so the model provides the same functions with the same
//! 32-bit semantics: every argument is first normalised to a 32-bit integer the way LuaBitOp
//! does it (round to nearest, wrap modulo 2^32), and every result is a signed 32-bit number.

use mlua::{Lua, Table, Value, Variadic};

use super::where_error;

/// Adding 2^52 + 2^51 puts the integer part of any `|x| < 2^51` in the low bits of the double's
/// mantissa, rounded to nearest (even on ties), which is exactly LuaBitOp's normalisation.
const NORMALISER: f64 = 6_755_399_441_055_744.0;

/// Normalises a Lua number to LuaBitOp's 32-bit integer.
pub(crate) fn to_bits(number: f64) -> u32 {
    let shifted = number + NORMALISER;
    // The low 32 bits of the representation hold the wrapped integer.
    (shifted.to_bits() & 0xFFFF_FFFF) as u32
}

/// A LuaBitOp result: the 32 bits read as a signed integer, as a Lua number.
fn to_number(bits: u32) -> Value {
    Value::Number(f64::from(bits as i32))
}

/// `luaL_checknumber`: numbers, and strings that read as numbers.
fn check_number(lua: &Lua, args: &[Value], index: usize, function: &str) -> mlua::Result<f64> {
    let found = args.get(index);
    let number = match found {
        Some(Value::Number(number)) => Some(*number),
        Some(Value::Integer(integer)) => Some(*integer as f64),
        Some(Value::String(text)) => super::lua_string_to_number(&text.as_bytes()),
        _ => None,
    };
    number.ok_or_else(|| {
        let got = found.map_or("no value", super::lua_type_name);
        where_error(
            lua,
            format!(
                "bad argument #{} to '{function}' (number expected, got {got})",
                index + 1
            ),
        )
    })
}

fn bits_arg(lua: &Lua, args: &[Value], index: usize, function: &str) -> mlua::Result<u32> {
    check_number(lua, args, index, function).map(to_bits)
}

/// A two-operand bit operation.
type Binary = fn(u32, u32) -> u32;

/// Builds the `bit` table.
pub(crate) fn create(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.raw_set(
        "tobit",
        lua.create_function(|lua, args: Variadic<Value>| {
            Ok(to_number(bits_arg(lua, &args, 0, "tobit")?))
        })?,
    )?;
    table.raw_set(
        "bnot",
        lua.create_function(|lua, args: Variadic<Value>| {
            Ok(to_number(!bits_arg(lua, &args, 0, "bnot")?))
        })?,
    )?;
    table.raw_set(
        "bswap",
        lua.create_function(|lua, args: Variadic<Value>| {
            Ok(to_number(bits_arg(lua, &args, 0, "bswap")?.swap_bytes()))
        })?,
    )?;
    let folds: [(&str, Binary); 3] = [
        ("band", |a, b| a & b),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ];
    for (name, fold) in folds {
        table.raw_set(
            name,
            lua.create_function(move |lua, args: Variadic<Value>| {
                let mut result = bits_arg(lua, &args, 0, name)?;
                for index in 1..args.len() {
                    result = fold(result, bits_arg(lua, &args, index, name)?);
                }
                Ok(to_number(result))
            })?,
        )?;
    }
    let shifts: [(&str, Binary); 5] = [
        ("lshift", |x, n| x << n),
        ("rshift", |x, n| x >> n),
        ("arshift", |x, n| ((x as i32) >> n) as u32),
        ("rol", |x, n| x.rotate_left(n)),
        ("ror", |x, n| x.rotate_right(n)),
    ];
    for (name, shift) in shifts {
        table.raw_set(
            name,
            lua.create_function(move |lua, args: Variadic<Value>| {
                let value = bits_arg(lua, &args, 0, name)?;
                let count = bits_arg(lua, &args, 1, name)? & 31;
                Ok(to_number(shift(value, count)))
            })?,
        )?;
    }
    table.raw_set(
        "tohex",
        lua.create_function(|lua, args: Variadic<Value>| {
            let mut value = bits_arg(lua, &args, 0, "tohex")?;
            let digits_wanted = if matches!(args.get(1), None | Some(Value::Nil)) {
                8
            } else {
                bits_arg(lua, &args, 1, "tohex")? as i32
            };
            let (digits, alphabet): (i32, &[u8; 16]) = if digits_wanted < 0 {
                (digits_wanted.saturating_neg(), b"0123456789ABCDEF")
            } else {
                (digits_wanted, b"0123456789abcdef")
            };
            let digits = usize::try_from(digits.min(8)).unwrap_or(0);
            let mut text = vec![b'0'; digits];
            for slot in text.iter_mut().rev() {
                *slot = alphabet[(value & 15) as usize];
                value >>= 4;
            }
            lua.create_string(&text)
        })?,
    )?;
    Ok(table)
}

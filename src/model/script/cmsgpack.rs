//! `cmsgpack`, the MessagePack library Redis bundles (lua-cmsgpack 0.4): `pack`, `unpack`,
//! `unpack_one`, `unpack_limit`, written here in Rust with the library's encoding choices
//! (smallest integer form, a float as float32 when that is exact, a table as an array when
//! its keys are exactly 1..n, nesting cut at 16 levels with nil).

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use super::where_error;

/// lua-cmsgpack's `LUACMSGPACK_MAX_NESTING`: a table this deep is packed as nil.
const MAX_NESTING: usize = 16;

/// The `cmsgpack` table.
pub(crate) fn create(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.raw_set(
        "pack",
        lua.create_function(|lua, values: Variadic<Value>| {
            if values.is_empty() {
                return Err(where_error(
                    lua,
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for value in values.iter() {
                encode(value, 0, &mut out)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    table.raw_set(
        "unpack",
        lua.create_function(|lua, data: mlua::LuaString| {
            let bytes = data.as_bytes().to_vec();
            let (_, values) = unpack(lua, &bytes, 0, 0)?;
            Ok(MultiValue::from_vec(values))
        })?,
    )?;
    table.raw_set(
        "unpack_one",
        lua.create_function(|lua, (data, offset): (mlua::LuaString, Option<i64>)| {
            let bytes = data.as_bytes().to_vec();
            limited(lua, &bytes, 1, offset.unwrap_or(0))
        })?,
    )?;
    table.raw_set(
        "unpack_limit",
        lua.create_function(
            |lua, (data, limit, offset): (mlua::LuaString, i64, Option<i64>)| {
                let bytes = data.as_bytes().to_vec();
                limited(lua, &bytes, limit.max(0), offset.unwrap_or(0))
            },
        )?,
    )?;
    Ok(table)
}

/// `unpack_one` / `unpack_limit`: the offset after what was decoded (-1 at the end), then
/// the values.
fn limited(lua: &Lua, bytes: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    let start = usize::try_from(offset)
        .ok()
        .filter(|start| *start <= bytes.len())
        .ok_or_else(|| {
            where_error(
                lua,
                "Start offset greater than input length %zu.".replace("%zu", &offset.to_string()),
            )
        })?;
    let (end, mut values) = unpack(lua, bytes, start, usize::try_from(limit).unwrap_or(0))?;
    let next = if end >= bytes.len() {
        -1
    } else {
        i64::try_from(end).unwrap_or(-1)
    };
    values.insert(0, Value::Integer(next));
    Ok(MultiValue::from_vec(values))
}

fn encode(value: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Boolean(flag) => out.push(if *flag { 0xc3 } else { 0xc2 }),
        Value::Integer(integer) => encode_number(*integer as f64, out),
        Value::Number(number) => encode_number(*number, out),
        Value::String(text) => encode_bytes(&text.as_bytes(), out),
        Value::Table(table) if level < MAX_NESTING => encode_table(table, level, out)?,
        // Deeper tables, functions, userdata: nil, as lua-cmsgpack packs them.
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    let len = bytes.len();
    if len < 32 {
        out.push(0xa0 | u8::try_from(len).expect("below 32"));
    } else if let Ok(len) = u8::try_from(len) {
        out.extend_from_slice(&[0xd9, len]);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

fn encode_number(number: f64, out: &mut Vec<u8>) {
    // `IS_INT64_EQUIVALENT`: finite and equal to its int64 conversion.
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&number) {
        let integer = number as i64;
        if integer as f64 == number {
            encode_integer(integer, out);
            return;
        }
    }
    let single = number as f32;
    if f64::from(single) == number || (number.is_nan() && single.is_nan()) {
        out.push(0xca);
        out.extend_from_slice(&single.to_bits().to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&number.to_bits().to_be_bytes());
    }
}

fn encode_integer(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n < 128 {
            out.push(u8::try_from(n).expect("below 128"));
        } else if let Ok(n) = u8::try_from(n) {
            out.extend_from_slice(&[0xcc, n]);
        } else if let Ok(n) = u16::try_from(n) {
            out.push(0xcd);
            out.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(n) {
            out.push(0xce);
            out.extend_from_slice(&n.to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n.to_be_bytes()[7]);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n.to_be_bytes()[0]]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// lua-cmsgpack's `table_is_an_array`: every key a positive integer, as many keys as the
/// largest one.
fn array_len(table: &Table) -> mlua::Result<Option<usize>> {
    let mut count = 0usize;
    let mut max = 0f64;
    for pair in table.clone().pairs::<Value, Value>() {
        let (key, _) = pair?;
        let number = match key {
            Value::Integer(integer) => integer as f64,
            Value::Number(number) => number,
            _ => return Ok(None),
        };
        if number <= 0.0 || number.fract() != 0.0 {
            return Ok(None);
        }
        count += 1;
        max = max.max(number);
    }
    Ok((max == count as f64).then_some(count))
}

fn encode_table(table: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    let header = |len: usize, fix: u8, wide16: u8, wide32: u8, out: &mut Vec<u8>| {
        if len <= 15 {
            out.push(fix | u8::try_from(len).expect("at most 15"));
        } else if let Ok(len) = u16::try_from(len) {
            out.push(wide16);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.push(wide32);
            out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
    };
    if let Some(len) = array_len(table)? {
        header(len, 0x90, 0xdc, 0xdd, out);
        for index in 1..=len {
            let item: Value = table.raw_get(index)?;
            encode(&item, level + 1, out)?;
        }
        return Ok(());
    }
    // Counted first, then encoded pair by pair: holding every pair at once would keep as many
    // Lua references alive, past what Lua 5.1's C stack allows for a big map.
    let mut count = 0usize;
    for pair in table.clone().pairs::<Value, Value>() {
        pair?;
        count += 1;
    }
    header(count, 0x80, 0xde, 0xdf, out);
    for pair in table.clone().pairs::<Value, Value>() {
        let (key, value) = pair?;
        encode(&key, level + 1, out)?;
        encode(&value, level + 1, out)?;
    }
    Ok(())
}

/// Decodes up to `limit` values (0: all) from `start`: the offset after them and the values.
fn unpack(
    lua: &Lua,
    bytes: &[u8],
    start: usize,
    limit: usize,
) -> mlua::Result<(usize, Vec<Value>)> {
    let mut reader = Reader {
        bytes,
        pos: start,
        lua,
    };
    let mut values = Vec::new();
    while reader.pos < bytes.len() && (limit == 0 || values.len() < limit) {
        values.push(reader.value(0)?);
    }
    Ok((reader.pos, values))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    lua: &'a Lua,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> mlua::Result<&[u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| where_error(self.lua, "Missing bytes in input."))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn uint(&mut self, len: usize) -> mlua::Result<u64> {
        Ok(self
            .take(len)?
            .iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)))
    }

    fn int(&mut self, len: usize) -> mlua::Result<i64> {
        let raw = self.uint(len)?;
        let shift = 64 - 8 * u32::try_from(len).expect("at most 8");
        Ok(((raw << shift) as i64) >> shift)
    }

    fn number(value: f64) -> Value {
        Value::Number(value)
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        if depth > 1000 {
            return Err(where_error(self.lua, "Bad data format in input."));
        }
        let tag = self.take(1)?[0];
        Ok(match tag {
            0x00..=0x7f => Self::number(f64::from(tag)),
            0x80..=0x8f => self.map(usize::from(tag & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(tag & 0x0f), depth)?,
            0xa0..=0xbf => self.string(usize::from(tag & 0x1f))?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4 | 0xd9 => {
                let len = self.uint(1)?;
                self.string(usize::try_from(len).unwrap_or(usize::MAX))?
            }
            0xc5 | 0xda => {
                let len = self.uint(2)?;
                self.string(usize::try_from(len).unwrap_or(usize::MAX))?
            }
            0xc6 | 0xdb => {
                let len = self.uint(4)?;
                self.string(usize::try_from(len).unwrap_or(usize::MAX))?
            }
            0xca => Self::number(f64::from(f32::from_bits(
                u32::try_from(self.uint(4)?).expect("4 bytes"),
            ))),
            0xcb => Self::number(f64::from_bits(self.uint(8)?)),
            0xcc => Self::number(self.uint(1)? as f64),
            0xcd => Self::number(self.uint(2)? as f64),
            0xce => Self::number(self.uint(4)? as f64),
            0xcf => Self::number(self.uint(8)? as f64),
            0xd0 => Self::number(self.int(1)? as f64),
            0xd1 => Self::number(self.int(2)? as f64),
            0xd2 => Self::number(self.int(4)? as f64),
            0xd3 => Self::number(self.int(8)? as f64),
            0xdc => {
                let len = self.uint(2)?;
                self.array(usize::try_from(len).unwrap_or(usize::MAX), depth)?
            }
            0xdd => {
                let len = self.uint(4)?;
                self.array(usize::try_from(len).unwrap_or(usize::MAX), depth)?
            }
            0xde => {
                let len = self.uint(2)?;
                self.map(usize::try_from(len).unwrap_or(usize::MAX), depth)?
            }
            0xdf => {
                let len = self.uint(4)?;
                self.map(usize::try_from(len).unwrap_or(usize::MAX), depth)?
            }
            0xe0..=0xff => Self::number(f64::from(tag as i8)),
            _ => return Err(where_error(self.lua, "Bad data format in input.")),
        })
    }

    fn string(&mut self, len: usize) -> mlua::Result<Value> {
        let bytes = self.take(len)?.to_vec();
        Ok(Value::String(self.lua.create_string(&bytes)?))
    }

    fn array(&mut self, len: usize, depth: usize) -> mlua::Result<Value> {
        // Never reserve on the input's say-so: each item takes at least one byte.
        let table = self
            .lua
            .create_table_with_capacity(len.min(self.bytes.len() - self.pos), 0)?;
        for index in 1..=len {
            let item = self.value(depth + 1)?;
            table.raw_set(index, item)?;
        }
        Ok(Value::Table(table))
    }

    fn map(&mut self, len: usize, depth: usize) -> mlua::Result<Value> {
        let table = self.lua.create_table()?;
        for _ in 0..len {
            let key = self.value(depth + 1)?;
            let value = self.value(depth + 1)?;
            if !key.is_nil() {
                table.raw_set(key, value)?;
            }
        }
        Ok(Value::Table(table))
    }
}

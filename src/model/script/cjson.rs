//! The `cjson` library Redis bundles (lua-cjson 2.1.0 with Redis's defaults), over mlua values.
//!
//! Scripts in the wild keep structured state as JSON strings (`cjson.encode` of a table into a
//! key, `cjson.decode` on the way back), so the model encodes byte for byte as Redis does:
//! numbers with `%.14g`, `/` escaped, arrays told from objects by their keys, the empty table as
//! `{}`, object members in Lua's `next` order. Decoding follows lua-cjson's token rules and its
//! error texts (`Expected value but found T_END at character 4`).

use mlua::{LightUserData, Lua, Table, Value, Variadic};

use super::{format_g, lua_type_name, where_error};

/// lua-cjson's default nesting limits for encode and decode.
const DEPTH_MAX: usize = 1000;
/// lua-cjson's defaults for arrays with holes: an array whose largest index is above 10 and
/// more than twice its number of items is "excessively sparse", an error.
const SPARSE_RATIO: f64 = 2.0;
const SPARSE_SAFE: f64 = 10.0;

/// `cjson.null`: a light userdata holding NULL, as lua-cjson's.
pub(crate) fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// Builds the `cjson` table.
pub(crate) fn create(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.raw_set(
        "encode",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(where_error(
                    lua,
                    "bad argument #1 to 'encode' (expected 1 argument)",
                ));
            }
            let mut out = Vec::new();
            encode_value(lua, &args[0], 0, &mut out)?;
            lua.create_string(&out)
        })?,
    )?;
    table.raw_set(
        "decode",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.len() != 1 {
                return Err(where_error(
                    lua,
                    "bad argument #1 to 'decode' (expected 1 argument)",
                ));
            }
            let text = match &args[0] {
                Value::String(text) => text.as_bytes().to_vec(),
                Value::Number(number) => format_g(*number, 14).into_bytes(),
                Value::Integer(integer) => format_g(*integer as f64, 14).into_bytes(),
                other => {
                    return Err(where_error(
                        lua,
                        format!(
                            "bad argument #1 to 'decode' (string expected, got {})",
                            lua_type_name(other)
                        ),
                    ));
                }
            };
            let mut parser = Parser {
                lua,
                text: &text,
                position: 0,
            };
            parser.decode()
        })?,
    )?;
    table.raw_set("null", null())?;
    Ok(table)
}

fn encode_error(lua: &Lua, value: &Value, reason: &str) -> mlua::Error {
    where_error(
        lua,
        format!("Cannot serialise {}: {reason}", lua_type_name(value)),
    )
}

fn encode_value(lua: &Lua, value: &Value, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Boolean(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
        Value::Number(number) => encode_number(lua, value, *number, out)?,
        Value::Integer(integer) => encode_number(lua, value, *integer as f64, out)?,
        Value::String(text) => encode_string(&text.as_bytes(), out),
        Value::LightUserData(pointer) if pointer.0.is_null() => out.extend_from_slice(b"null"),
        Value::Table(table) => {
            let depth = depth + 1;
            if depth > DEPTH_MAX {
                return Err(where_error(
                    lua,
                    format!("Cannot serialise, excessive nesting ({depth})"),
                ));
            }
            encode_table(lua, value, table, depth, out)?;
        }
        other => return Err(encode_error(lua, other, "type not supported")),
    }
    Ok(())
}

fn encode_number(lua: &Lua, value: &Value, number: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
    if !number.is_finite() {
        return Err(encode_error(lua, value, "must not be NaN or Inf"));
    }
    out.extend_from_slice(format_g(number, 14).as_bytes());
    Ok(())
}

fn encode_string(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in text {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            8 => out.extend_from_slice(b"\\b"),
            9 => out.extend_from_slice(b"\\t"),
            10 => out.extend_from_slice(b"\\n"),
            12 => out.extend_from_slice(b"\\f"),
            13 => out.extend_from_slice(b"\\r"),
            0..=31 | 127 => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// lua-cjson's array test: every key a positive integer, and not excessively sparse.
/// Returns the array length, or `None` for an object.
fn array_length(lua: &Lua, value: &Value, table: &Table) -> mlua::Result<Option<usize>> {
    let mut max = 0.0f64;
    let mut items = 0.0f64;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        let index = match key {
            Value::Number(number) => number,
            Value::Integer(integer) => integer as f64,
            _ => return Ok(None),
        };
        if index < 1.0 || index.floor() != index {
            return Ok(None);
        }
        max = max.max(index);
        items += 1.0;
    }
    if SPARSE_SAFE < max && max > items * SPARSE_RATIO {
        return Err(encode_error(lua, value, "excessively sparse array"));
    }
    // Bounded by the table's own size (at most twice its item count, or 10).
    Ok(Some(max as usize))
}

fn encode_table(
    lua: &Lua,
    value: &Value,
    table: &Table,
    depth: usize,
    out: &mut Vec<u8>,
) -> mlua::Result<()> {
    match array_length(lua, value, table)? {
        Some(length) if length > 0 => {
            out.push(b'[');
            for index in 1..=length {
                if index > 1 {
                    out.push(b',');
                }
                let item: Value = table.raw_get(index)?;
                encode_value(lua, &item, depth, out)?;
            }
            out.push(b']');
        }
        _ => {
            out.push(b'{');
            let mut first = true;
            for pair in table.pairs::<Value, Value>() {
                let (key, item) = pair?;
                if !first {
                    out.push(b',');
                }
                first = false;
                match &key {
                    Value::Number(number) => {
                        out.push(b'"');
                        encode_number(lua, &key, *number, out)?;
                        out.push(b'"');
                    }
                    Value::Integer(integer) => {
                        out.push(b'"');
                        encode_number(lua, &key, *integer as f64, out)?;
                        out.push(b'"');
                    }
                    Value::String(text) => encode_string(&text.as_bytes(), out),
                    other => {
                        return Err(encode_error(
                            lua,
                            other,
                            "table key must be a number or string",
                        ));
                    }
                }
                out.push(b':');
                encode_value(lua, &item, depth, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// One lexical token, as lua-cjson names them in its errors.
enum Token {
    ObjectBegin,
    ObjectEnd,
    ArrayBegin,
    ArrayEnd,
    String(Vec<u8>),
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    /// A lexical error, with lua-cjson's description.
    Error(&'static str),
}

impl Token {
    fn name(&self) -> &'static str {
        match self {
            Token::ObjectBegin => "T_OBJ_BEGIN",
            Token::ObjectEnd => "T_OBJ_END",
            Token::ArrayBegin => "T_ARR_BEGIN",
            Token::ArrayEnd => "T_ARR_END",
            Token::String(_) => "T_STRING",
            Token::Number(_) => "T_NUMBER",
            Token::Boolean(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(description) => description,
        }
    }
}

struct Parser<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    fn decode(&mut self) -> mlua::Result<Value> {
        let (token, index) = self.next_token();
        let value = self.value(token, index, 0)?;
        let (token, index) = self.next_token();
        if !matches!(token, Token::End) {
            return Err(self.unexpected("the end", &token, index));
        }
        Ok(value)
    }

    fn unexpected(&self, expected: &str, found: &Token, index: usize) -> mlua::Error {
        where_error(
            self.lua,
            format!(
                "Expected {expected} but found {} at character {}",
                found.name(),
                index + 1
            ),
        )
    }

    fn nest(&self, depth: usize, index: usize) -> mlua::Result<usize> {
        let depth = depth + 1;
        if depth > DEPTH_MAX {
            return Err(where_error(
                self.lua,
                format!(
                    "Found too many nested data structures ({depth}) at character {}",
                    index + 1
                ),
            ));
        }
        Ok(depth)
    }

    fn value(&mut self, token: Token, index: usize, depth: usize) -> mlua::Result<Value> {
        match token {
            Token::String(bytes) => Ok(Value::String(self.lua.create_string(&bytes)?)),
            Token::Number(number) => Ok(Value::Number(number)),
            Token::Boolean(flag) => Ok(Value::Boolean(flag)),
            Token::Null => Ok(null()),
            Token::ObjectBegin => {
                let depth = self.nest(depth, index)?;
                let table = self.lua.create_table()?;
                let (mut token, mut index) = self.next_token();
                if matches!(token, Token::ObjectEnd) {
                    return Ok(Value::Table(table));
                }
                loop {
                    let Token::String(key) = token else {
                        return Err(self.unexpected("object key string", &token, index));
                    };
                    let (colon, colon_index) = self.next_token();
                    if !matches!(colon, Token::Colon) {
                        return Err(self.unexpected("colon", &colon, colon_index));
                    }
                    let (item, item_index) = self.next_token();
                    let item = self.value(item, item_index, depth)?;
                    table.raw_set(self.lua.create_string(&key)?, item)?;
                    let (separator, separator_index) = self.next_token();
                    match separator {
                        Token::ObjectEnd => return Ok(Value::Table(table)),
                        Token::Comma => {}
                        other => {
                            return Err(self.unexpected(
                                "comma or object end",
                                &other,
                                separator_index,
                            ));
                        }
                    }
                    (token, index) = self.next_token();
                }
            }
            Token::ArrayBegin => {
                let depth = self.nest(depth, index)?;
                let table = self.lua.create_table()?;
                let (mut token, mut index) = self.next_token();
                if matches!(token, Token::ArrayEnd) {
                    return Ok(Value::Table(table));
                }
                let mut length = 0usize;
                loop {
                    let item = self.value(token, index, depth)?;
                    length += 1;
                    table.raw_set(length, item)?;
                    let (separator, separator_index) = self.next_token();
                    match separator {
                        Token::ArrayEnd => return Ok(Value::Table(table)),
                        Token::Comma => {}
                        other => {
                            return Err(self.unexpected(
                                "comma or array end",
                                &other,
                                separator_index,
                            ));
                        }
                    }
                    (token, index) = self.next_token();
                }
            }
            other => Err(self.unexpected("value", &other, index)),
        }
    }

    /// The next token and the byte index where it starts.
    fn next_token(&mut self) -> (Token, usize) {
        while let Some(byte) = self.text.get(self.position) {
            if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                self.position += 1;
            } else {
                break;
            }
        }
        let start = self.position;
        let Some(&byte) = self.text.get(start) else {
            return (Token::End, start);
        };
        let single = match byte {
            b'{' => Some(Token::ObjectBegin),
            b'}' => Some(Token::ObjectEnd),
            b'[' => Some(Token::ArrayBegin),
            b']' => Some(Token::ArrayEnd),
            b':' => Some(Token::Colon),
            b',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(token) = single {
            self.position += 1;
            return (token, start);
        }
        let token = match byte {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.word(),
        };
        (token, start)
    }

    fn word(&mut self) -> Token {
        let rest = &self.text[self.position..];
        for (word, token) in [
            (&b"true"[..], Token::Boolean(true)),
            (b"false", Token::Boolean(false)),
            (b"null", Token::Null),
        ] {
            if rest.starts_with(word) {
                self.position += word.len();
                return token;
            }
        }
        Token::Error("invalid token")
    }

    fn number(&mut self) -> Token {
        let start = self.position;
        let mut end = start;
        let text = self.text;
        if text.get(end) == Some(&b'-') {
            end += 1;
        }
        let digits_start = end;
        while text.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == digits_start {
            return Token::Error("invalid number");
        }
        if text.get(end) == Some(&b'.') {
            end += 1;
            while text.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        if matches!(text.get(end), Some(b'e' | b'E')) {
            end += 1;
            if matches!(text.get(end), Some(b'+' | b'-')) {
                end += 1;
            }
            while text.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        let parsed = std::str::from_utf8(&text[start..end])
            .ok()
            .and_then(|literal| literal.parse::<f64>().ok());
        match parsed {
            Some(number) => {
                self.position = end;
                Token::Number(number)
            }
            None => Token::Error("invalid number"),
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.text.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        u32::from_str_radix(text, 16).ok()
    }

    fn string(&mut self) -> Token {
        let mut out = Vec::new();
        let mut at = self.position + 1;
        loop {
            let Some(&byte) = self.text.get(at) else {
                return Token::Error("unexpected end of string");
            };
            match byte {
                b'"' => {
                    self.position = at + 1;
                    return Token::String(out);
                }
                b'\\' => {
                    let Some(&escape) = self.text.get(at + 1) else {
                        return Token::Error("unexpected end of string");
                    };
                    at += 2;
                    let plain = match escape {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let Some(mut code) = self.hex4(at) else {
                                return Token::Error("invalid unicode escape code");
                            };
                            at += 4;
                            if (0xD800..0xDC00).contains(&code) {
                                let low = (self.text.get(at..at + 2) == Some(b"\\u"))
                                    .then(|| self.hex4(at + 2))
                                    .flatten()
                                    .filter(|low| (0xDC00..0xE000).contains(low));
                                let Some(low) = low else {
                                    return Token::Error("invalid unicode escape code");
                                };
                                at += 6;
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            } else if (0xDC00..0xE000).contains(&code) {
                                return Token::Error("invalid unicode escape code");
                            }
                            let Some(character) = char::from_u32(code) else {
                                return Token::Error("invalid unicode escape code");
                            };
                            let mut buffer = [0u8; 4];
                            out.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
                            continue;
                        }
                        _ => return Token::Error("invalid escape code"),
                    };
                    out.push(plain);
                }
                _ => {
                    out.push(byte);
                    at += 1;
                }
            }
        }
    }
}

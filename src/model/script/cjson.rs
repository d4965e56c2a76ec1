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

/// Work left for the encoder. An explicit stack instead of recursion: nesting is bounded by
/// `DEPTH_MAX` either way, but a deep table must not use up the native stack.
enum Task {
    /// Encode a value found at this nesting depth.
    Value(Value, usize),
    /// Encode an object member's key and the colon after it.
    Key(Value),
    /// Write these bytes.
    Text(&'static [u8]),
}

fn encode_value(lua: &Lua, value: &Value, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    let mut tasks = vec![Task::Value(value.clone(), depth)];
    while let Some(task) = tasks.pop() {
        let (value, depth) = match task {
            Task::Text(text) => {
                out.extend_from_slice(text);
                continue;
            }
            Task::Key(key) => {
                encode_key(lua, &key, out)?;
                continue;
            }
            Task::Value(value, depth) => (value, depth),
        };
        match &value {
            Value::Nil => out.extend_from_slice(b"null"),
            Value::Boolean(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
            Value::Number(number) => encode_number(lua, &value, *number, out)?,
            Value::Integer(integer) => encode_number(lua, &value, *integer as f64, out)?,
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
                expand_table(lua, &value, table, depth, out, &mut tasks)?;
            }
            other => return Err(encode_error(lua, other, "type not supported")),
        }
    }
    Ok(())
}

/// Writes a table's opening bracket and queues its items (in reverse, as a stack pops).
fn expand_table(
    lua: &Lua,
    value: &Value,
    table: &Table,
    depth: usize,
    out: &mut Vec<u8>,
    tasks: &mut Vec<Task>,
) -> mlua::Result<()> {
    match array_length(lua, value, table)? {
        Some(length) if length > 0 => {
            out.push(b'[');
            tasks.push(Task::Text(b"]"));
            for index in (1..=length).rev() {
                tasks.push(Task::Value(table.raw_get(index)?, depth));
                if index > 1 {
                    tasks.push(Task::Text(b","));
                }
            }
        }
        _ => {
            out.push(b'{');
            let members = table
                .pairs::<Value, Value>()
                .collect::<mlua::Result<Vec<_>>>()?;
            tasks.push(Task::Text(b"}"));
            for (position, (key, item)) in members.into_iter().enumerate().rev() {
                tasks.push(Task::Value(item, depth));
                tasks.push(Task::Key(key));
                if position > 0 {
                    tasks.push(Task::Text(b","));
                }
            }
        }
    }
    Ok(())
}

fn encode_key(lua: &Lua, key: &Value, out: &mut Vec<u8>) -> mlua::Result<()> {
    match key {
        Value::Number(_) | Value::Integer(_) => {
            let number = super::as_number(key).expect("a number");
            out.push(b'"');
            encode_number(lua, key, number, out)?;
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

/// A container the decoder is inside of.
enum Container {
    Array {
        table: Table,
        length: usize,
    },
    /// The key of the member being parsed.
    Object {
        table: Table,
        key: Vec<u8>,
    },
}

struct Parser<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    /// Parses the whole input. An explicit stack of open containers instead of recursion,
    /// for the same reason as the encoder's.
    fn decode(&mut self) -> mlua::Result<Value> {
        let mut open: Vec<Container> = Vec::new();
        let (mut token, mut index) = self.next_token();
        loop {
            let mut value = match token {
                Token::String(bytes) => Value::String(self.lua.create_string(&bytes)?),
                Token::Number(number) => Value::Number(number),
                Token::Boolean(flag) => Value::Boolean(flag),
                Token::Null => null(),
                Token::ObjectBegin => {
                    self.nest(open.len(), index)?;
                    let table = self.lua.create_table()?;
                    let (next, next_index) = self.next_token();
                    if matches!(next, Token::ObjectEnd) {
                        Value::Table(table)
                    } else {
                        let key = self.object_key(next, next_index)?;
                        open.push(Container::Object { table, key });
                        (token, index) = self.next_token();
                        continue;
                    }
                }
                Token::ArrayBegin => {
                    self.nest(open.len(), index)?;
                    let table = self.lua.create_table()?;
                    let (next, next_index) = self.next_token();
                    if matches!(next, Token::ArrayEnd) {
                        Value::Table(table)
                    } else {
                        open.push(Container::Array { table, length: 0 });
                        (token, index) = (next, next_index);
                        continue;
                    }
                }
                other => return Err(self.unexpected("value", &other, index)),
            };
            // A value is complete: store it in its container, and close every container
            // that ends right after it.
            loop {
                let Some(container) = open.last_mut() else {
                    let (end, end_index) = self.next_token();
                    if !matches!(end, Token::End) {
                        return Err(self.unexpected("the end", &end, end_index));
                    }
                    return Ok(value);
                };
                let (separator, separator_index) = self.next_token();
                let closed = match container {
                    Container::Array { table, length } => {
                        *length += 1;
                        table.raw_set(*length, value)?;
                        match separator {
                            Token::Comma => false,
                            Token::ArrayEnd => true,
                            other => {
                                return Err(self.unexpected(
                                    "comma or array end",
                                    &other,
                                    separator_index,
                                ));
                            }
                        }
                    }
                    Container::Object { table, key } => {
                        table.raw_set(self.lua.create_string(&*key)?, value)?;
                        match separator {
                            Token::Comma => {
                                let (next, next_index) = self.next_token();
                                *key = self.object_key(next, next_index)?;
                                false
                            }
                            Token::ObjectEnd => true,
                            other => {
                                return Err(self.unexpected(
                                    "comma or object end",
                                    &other,
                                    separator_index,
                                ));
                            }
                        }
                    }
                };
                if !closed {
                    (token, index) = self.next_token();
                    break;
                }
                value = match open.pop().expect("the container just used") {
                    Container::Array { table, .. } | Container::Object { table, .. } => {
                        Value::Table(table)
                    }
                };
            }
        }
    }

    /// An object member's key and the colon after it.
    fn object_key(&mut self, token: Token, index: usize) -> mlua::Result<Vec<u8>> {
        let Token::String(key) = token else {
            return Err(self.unexpected("object key string", &token, index));
        };
        let (colon, colon_index) = self.next_token();
        if !matches!(colon, Token::Colon) {
            return Err(self.unexpected("colon", &colon, colon_index));
        }
        Ok(key)
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

    /// The next token and the byte index lua-cjson reports for it: where it starts, or for
    /// a lexical error, where the error was found. The input ends at its end or at a NUL
    /// byte, as lua-cjson reads a C string.
    fn next_token(&mut self) -> (Token, usize) {
        while matches!(self.byte(self.position), b' ' | b'\t' | b'\n' | b'\r') {
            self.position += 1;
        }
        let start = self.position;
        let single = match self.byte(start) {
            0 => return (Token::End, start),
            b'{' => Token::ObjectBegin,
            b'}' => Token::ObjectEnd,
            b'[' => Token::ArrayBegin,
            b']' => Token::ArrayEnd,
            b':' => Token::Colon,
            b',' => Token::Comma,
            b'"' => return self.string(),
            b'-' | b'0'..=b'9' => return (self.number(), start),
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+' => return (self.word(), start),
            _ => return (Token::Error("invalid token"), start),
        };
        self.position += 1;
        (single, start)
    }

    /// The byte at `index`, or NUL past the end.
    fn byte(&self, index: usize) -> u8 {
        self.text.get(index).copied().unwrap_or(0)
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
        // Redis builds lua-cjson with `decode_invalid_numbers` on: `+1`, `inf`, `nan` and
        // hex numbers are read by strtod.
        if invalid_json_number(rest) {
            return self.number();
        }
        Token::Error("invalid token")
    }

    fn number(&mut self) -> Token {
        match strtod_prefix(&self.text[self.position..]) {
            Some((number, length)) => {
                self.position += length;
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

    /// A string token, or a lexical error with the index where it was found.
    fn string(&mut self) -> (Token, usize) {
        let start = self.position;
        let mut out = Vec::new();
        let mut at = start + 1;
        loop {
            match self.byte(at) {
                0 => return (Token::Error("unexpected end of string"), at),
                b'"' => {
                    self.position = at + 1;
                    return (Token::String(out), start);
                }
                b'\\' => {
                    let plain = match self.byte(at + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => match self.unicode_escape(at) {
                            Some((character, length)) => {
                                let mut buffer = [0u8; 4];
                                out.extend_from_slice(
                                    character.encode_utf8(&mut buffer).as_bytes(),
                                );
                                at += length;
                                continue;
                            }
                            None => return (Token::Error("invalid unicode escape code"), at),
                        },
                        _ => return (Token::Error("invalid escape code"), at),
                    };
                    out.push(plain);
                    at += 2;
                }
                byte => {
                    out.push(byte);
                    at += 1;
                }
            }
        }
    }

    /// A `\uXXXX` escape (or a surrogate pair of them) at `at`: the character and the
    /// number of bytes it took.
    fn unicode_escape(&self, at: usize) -> Option<(char, usize)> {
        let code = self.hex4(at + 2)?;
        if (0xDC00..0xE000).contains(&code) {
            return None;
        }
        if (0xD800..0xDC00).contains(&code) {
            if self.text.get(at + 6..at + 8) != Some(b"\\u") {
                return None;
            }
            let low = self
                .hex4(at + 8)
                .filter(|low| (0xDC00..0xE000).contains(low))?;
            let combined = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            return Some((char::from_u32(combined)?, 12));
        }
        Some((char::from_u32(code)?, 6))
    }
}

/// lua-cjson's `json_is_invalid_number`: forms strtod accepts but JSON does not.
fn invalid_json_number(text: &[u8]) -> bool {
    let text = match text.first() {
        Some(b'+') => return true,
        Some(b'-') => &text[1..],
        _ => text,
    };
    match text.first() {
        Some(b'0') => matches!(text.get(1), Some(b'x' | b'X' | b'0'..=b'9')),
        Some(byte) if *byte <= b'9' => false,
        None => false,
        Some(_) => {
            let head = text.get(..3).map(<[u8]>::to_ascii_lowercase);
            matches!(head.as_deref(), Some(b"inf" | b"nan"))
        }
    }
}

/// C's `strtod` on the front of `text`: the value and how many bytes it read, or `None` if
/// no number starts there.
fn strtod_prefix(text: &[u8]) -> Option<(f64, usize)> {
    let (negative, sign_length) = match text.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let body = &text[sign_length..];
    let signed = |value: f64| if negative { -value } else { value };
    let lower: Vec<u8> = body.iter().take(8).map(u8::to_ascii_lowercase).collect();
    if lower.starts_with(b"infinity") {
        return Some((signed(f64::INFINITY), sign_length + 8));
    }
    if lower.starts_with(b"inf") {
        return Some((signed(f64::INFINITY), sign_length + 3));
    }
    if lower.starts_with(b"nan") {
        return Some((signed(f64::NAN), sign_length + 3));
    }
    if lower.starts_with(b"0x") && body.get(2).is_some_and(u8::is_ascii_hexdigit) {
        let digits = body[2..]
            .iter()
            .take_while(|byte| byte.is_ascii_hexdigit())
            .count();
        let value = body[2..2 + digits].iter().fold(0.0f64, |value, byte| {
            let digit = char::from(*byte).to_digit(16).expect("a hex digit");
            value * 16.0 + f64::from(digit)
        });
        return Some((signed(value), sign_length + 2 + digits));
    }
    let count_digits = |from: usize| {
        body.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|byte| byte.is_ascii_digit()).count()
        })
    };
    let integer_digits = count_digits(0);
    let mut end = integer_digits;
    let mut fraction_digits = 0;
    if body.get(end) == Some(&b'.') {
        fraction_digits = count_digits(end + 1);
        end += 1 + fraction_digits;
    }
    if integer_digits + fraction_digits == 0 {
        return None;
    }
    if matches!(body.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(body.get(end + 1), Some(b'+' | b'-')));
        let exponent_digits = count_digits(end + 1 + sign);
        if exponent_digits > 0 {
            end += 1 + sign + exponent_digits;
        }
    }
    let literal = std::str::from_utf8(&body[..end]).ok()?;
    let value: f64 = literal.parse().ok()?;
    Some((signed(value), sign_length + end))
}

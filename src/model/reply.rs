//! The reply a command produces: RESP2's five types and RESP3's richer ones, plus the error
//! texts Redis uses.
//!
//! Commands build the RESP3 shape (a map, a set, a double) and the codec flattens it for a
//! RESP2 connection exactly as Redis does ([`Reply::to_resp2`]): maps and sets become arrays,
//! doubles, big numbers and verbatim strings bulk strings, booleans `:1`/`:0`. Where Redis's
//! two protocols differ in structure rather than type (ZRANGE WITHSCORES: a flat array in
//! RESP2, `[member, score]` pairs in RESP3), the command looks at [`super::Ctx::resp`].
//!
//! Errors are kept as the full line Redis sends after the `-` (for example
//! `WRONGTYPE Operation against a key holding the wrong kind of value`), so the codec writes
//! them unchanged and tests can compare them byte for byte with real Redis.

/// Which protocol a connection speaks: 2 until the client sends `HELLO 3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2: RESP3-only types are flattened as Redis does (see [`Reply::to_resp2`]).
    #[default]
    Resp2,
    /// RESP3: every type as it is.
    Resp3,
}

impl Protocol {
    /// The protocol of a `HELLO`/`redis.setresp` version number (2 or 3).
    pub fn from_version(version: u8) -> Protocol {
        if version >= 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        }
    }
}

/// One reply, in RESP3's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a status line. Never contains `\r` or `\n`.
    Status(String),
    /// `-ERR ...`: the whole error line, its code first.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nfoo`.
    Bulk(Vec<u8>),
    /// `$-1`: the null bulk string (a missing key).
    Nil,
    /// `*2 ...`.
    Array(Vec<Reply>),
    /// `*-1`: the null array (an aborted EXEC, a timed-out blocking pop). RESP3 sends both
    /// nulls as `_`.
    NilArray,
    /// RESP3 `%`: field-value pairs in order (HGETALL, CONFIG GET, HELLO). RESP2: a flat
    /// array.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `~` (SMEMBERS, SINTER). RESP2: an array.
    Set(Vec<Reply>),
    /// RESP3 `,`: a double as Redis prints it (`%.17g`, `inf`, `-inf`), so replies compare
    /// byte for byte. RESP2: a bulk string of the same text.
    Double(String),
    /// RESP3 `(`: an integer beyond 64 bits, in decimal. RESP2: a bulk string.
    BigNumber(String),
    /// RESP3 `#t` / `#f`. RESP2: `:1` / `:0`.
    Bool(bool),
    /// RESP3 `=`: text with a three-letter format (`txt`, INFO). RESP2: a bulk string of the
    /// text alone.
    Verbatim(String, Vec<u8>),
}

impl Reply {
    /// The reply as a RESP2 connection (or a script under `redis.setresp(2)`) receives it:
    /// every RESP3-only type replaced by the RESP2 type Redis writes for it, recursively.
    pub fn to_resp2(self) -> Reply {
        match self {
            Reply::Map(pairs) => Reply::Array(
                pairs
                    .into_iter()
                    .flat_map(|(field, value)| [field.to_resp2(), value.to_resp2()])
                    .collect(),
            ),
            Reply::Set(items) | Reply::Array(items) => {
                Reply::Array(items.into_iter().map(Reply::to_resp2).collect())
            }
            Reply::Double(text) | Reply::BigNumber(text) => Reply::Bulk(text.into_bytes()),
            Reply::Verbatim(_, text) => Reply::Bulk(text),
            Reply::Bool(value) => Reply::Integer(i64::from(value)),
            other => other,
        }
    }

    /// Whether the reply (or anything inside it) has a type RESP2 lacks.
    pub fn is_resp2(&self) -> bool {
        match self {
            Reply::Array(items) => items.iter().all(Reply::is_resp2),
            Reply::Map(_)
            | Reply::Set(_)
            | Reply::Double(_)
            | Reply::BigNumber(_)
            | Reply::Bool(_)
            | Reply::Verbatim(..) => false,
            _ => true,
        }
    }
}

/// A double as Redis's `addReplyDouble` prints it: `inf`/`-inf`, else `%.17g`.
pub fn double(value: f64) -> Reply {
    Reply::Double(crate::model::num::format_g17(value))
}

/// A map reply from field-value pairs.
pub fn map<I>(pairs: I) -> Reply
where
    I: IntoIterator<Item = (Reply, Reply)>,
{
    Reply::Map(pairs.into_iter().collect())
}

/// Text that RESP3 sends as a verbatim string of format `txt` (INFO, CLIENT LIST).
pub fn verbatim_txt(text: impl Into<Vec<u8>>) -> Reply {
    Reply::Verbatim("txt".to_owned(), text.into())
}

/// `+OK`, the most common reply.
pub fn ok() -> Reply {
    Reply::Status("OK".to_owned())
}

/// An error reply from its whole line (`"ERR syntax error"`).
pub fn err(line: impl Into<String>) -> Reply {
    Reply::Error(line.into())
}

/// A bulk reply from anything byte-like.
pub fn bulk(bytes: impl AsRef<[u8]>) -> Reply {
    Reply::Bulk(bytes.as_ref().to_vec())
}

/// An array of bulk strings.
pub fn bulks<I, B>(items: I) -> Reply
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    Reply::Array(items.into_iter().map(bulk).collect())
}

/// The error texts Redis 7.0 sends, in one place so that every command words them alike.
pub mod msg {
    /// A command touched a key holding another type.
    pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    /// An argument that must be an integer was not one, or did not fit.
    pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    /// An argument that must be a float was not one.
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    /// INCR and friends would leave the `i64` range.
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    /// A bad option or option combination.
    pub const SYNTAX: &str = "ERR syntax error";
    /// A key that does not exist where one is required (RENAME, LSET).
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    /// An index outside a list.
    pub const OUT_OF_RANGE: &str = "ERR index out of range";
    /// SELECT, MOVE, SWAPDB with a database that does not exist.
    pub const DB_INDEX: &str = "ERR DB index is out of range";
    /// A multi-key command or script whose keys span cluster slots.
    pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
    /// EVALSHA with an unknown digest.
    pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";
    /// A timeout argument that is not positive (EXPIRE family uses its own text).
    pub const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
}

/// `ERR wrong number of arguments for 'get' command`, with the name as the client sent it,
/// lowercased, as Redis 7.0 does.
pub fn wrong_arity(name: &str) -> Reply {
    err(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// Redis 7.0's reply to a command it does not know: the name (at most 128 bytes) and the
/// first arguments, each quoted and followed by a space, until the list passes 128 bytes.
pub fn unknown_command(argv: &[Vec<u8>]) -> Reply {
    let name = argv.first().map(Vec::as_slice).unwrap_or(b"");
    let name = &name[..name.len().min(128)];
    let mut args: Vec<u8> = Vec::new();
    for arg in argv.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        args.push(b'\'');
        args.extend_from_slice(&arg[..arg.len().min(room)]);
        args.extend_from_slice(b"' ");
    }
    err(sanitize(&format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(&args)
    )))
}

/// Redis replaces newlines in error text so that an error stays one protocol line.
pub fn sanitize(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_flattens_every_resp3_type_as_redis_does() {
        // Goal: each RESP3-only type becomes the RESP2 type Redis writes for it, recursively;
        // RESP2 types are untouched. Method: one table of (RESP3 shape, RESP2 shape).
        let cases = [
            (
                map([(bulk("f"), Reply::Set(vec![bulk("m")]))]),
                Reply::Array(vec![bulk("f"), Reply::Array(vec![bulk("m")])]),
            ),
            (double(1.5), bulk("1.5")),
            (double(f64::INFINITY), bulk("inf")),
            (Reply::BigNumber("123".into()), bulk("123")),
            (Reply::Bool(true), Reply::Integer(1)),
            (Reply::Bool(false), Reply::Integer(0)),
            (verbatim_txt("a:b"), bulk("a:b")),
            (
                Reply::Array(vec![Reply::Array(vec![bulk("m"), double(2.0)])]),
                Reply::Array(vec![Reply::Array(vec![bulk("m"), bulk("2")])]),
            ),
            (Reply::Nil, Reply::Nil),
            (Reply::NilArray, Reply::NilArray),
        ];
        for (resp3, resp2) in cases {
            assert!(resp2.is_resp2(), "{resp2:?}");
            assert_eq!(resp3.is_resp2(), resp3 == resp2, "{resp3:?}");
            assert_eq!(resp3.to_resp2(), resp2);
        }
    }
}

//! The reply a command produces: RESP2's five types, plus the error texts Redis uses.
//!
//! Errors are kept as the full line Redis sends after the `-` (for example
//! `WRONGTYPE Operation against a key holding the wrong kind of value`), so the codec writes
//! them unchanged and tests can compare them byte for byte with real Redis.

/// One RESP2 reply.
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
    /// `*-1`: the null array (an aborted EXEC, a timed-out blocking pop).
    NilArray,
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

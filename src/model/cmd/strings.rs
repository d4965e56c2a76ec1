//! String and counter commands: GET, SET and its variants, GETEX, GETDEL, MGET/MSET, the INCR
//! family, INCRBYFLOAT, APPEND, STRLEN, SETRANGE and GETRANGE.
//!
//! These are what the legacy limiters are made of (INCR then EXPIRE, GET then SET), so their
//! TTL rules matter most: SET, GETSET and MSET clear a key's TTL (unless SET ... KEEPTTL),
//! while the INCR family, APPEND and SETRANGE change the value in place and keep it.

use super::keys::invalid_expire_time;
use super::{arg_i64, is_opt};
use crate::model::command::{DENYOOM, FAST, Handler, READONLY, Spec, WRITE};
use crate::model::db::Value;
use crate::model::reply::{Reply, bulk, err, msg, ok, wrong_arity};
use crate::model::{Core, Ctx};
use crate::model::{longdouble, num};

type DataHandler = fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply;

/// A data command whose only key is its first argument.
const fn one_key(name: &'static str, arity: i32, flags: u32, handler: DataHandler) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: 1,
        last_key: 1,
        step: 1,
        handler: Handler::Data(handler),
    }
}

/// The string commands. Arity, flags and key positions are Redis 7.0.15's.
pub static COMMANDS: &[Spec] = &[
    one_key("get", 2, READONLY | FAST, get),
    one_key("set", -3, WRITE | DENYOOM, set),
    one_key("setnx", 3, WRITE | DENYOOM | FAST, setnx),
    one_key("setex", 4, WRITE | DENYOOM, setex),
    one_key("psetex", 4, WRITE | DENYOOM, psetex),
    one_key("getset", 3, WRITE | DENYOOM | FAST, getset),
    one_key("getdel", 2, WRITE | FAST, getdel),
    one_key("getex", -2, WRITE | FAST, getex),
    Spec {
        name: "mget",
        arity: -2,
        flags: READONLY | FAST,
        first_key: 1,
        last_key: -1,
        step: 1,
        handler: Handler::Data(mget),
    },
    Spec {
        name: "mset",
        arity: -3,
        flags: WRITE | DENYOOM,
        first_key: 1,
        last_key: -1,
        step: 2,
        handler: Handler::Data(mset),
    },
    Spec {
        name: "msetnx",
        arity: -3,
        flags: WRITE | DENYOOM,
        first_key: 1,
        last_key: -1,
        step: 2,
        handler: Handler::Data(msetnx),
    },
    one_key("incr", 2, WRITE | DENYOOM | FAST, incr),
    one_key("incrby", 3, WRITE | DENYOOM | FAST, incrby),
    one_key("decr", 2, WRITE | DENYOOM | FAST, decr),
    one_key("decrby", 3, WRITE | DENYOOM | FAST, decrby),
    one_key("incrbyfloat", 3, WRITE | DENYOOM | FAST, incrbyfloat),
    one_key("append", 3, WRITE | DENYOOM | FAST, append),
    one_key("strlen", 2, READONLY | FAST, strlen),
    one_key("setrange", 4, WRITE | DENYOOM, setrange),
    one_key("getrange", 4, READONLY, getrange),
    // SUBSTR is GETRANGE's old name, still answered by Redis 7.0.
    one_key("substr", 4, READONLY, getrange),
];

/// Redis's error when a string would outgrow `proto-max-bulk-len`.
const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// The string under `key` for a read: `Ok(None)` if missing, WRONGTYPE for another type.
/// Counts a keyspace hit or miss, as Redis's read lookups do.
fn read_string(core: &mut Core, ctx: &Ctx, key: &[u8]) -> Result<Option<Vec<u8>>, Reply> {
    match core.lookup_read(ctx, key) {
        None => Ok(None),
        Some(entry) => match &entry.value {
            Value::Str(bytes) => Ok(Some(bytes.clone())),
            _ => Err(err(msg::WRONGTYPE)),
        },
    }
}

/// The string under `key` for a write (no hit/miss counting), as [`read_string`].
fn write_string<'a>(
    core: &'a mut Core,
    ctx: &Ctx,
    key: &[u8],
) -> Result<Option<&'a mut Vec<u8>>, Reply> {
    let now_ms = ctx.now_ms;
    match core.db(ctx).lookup_mut(now_ms, key) {
        None => Ok(None),
        Some(entry) => match &mut entry.value {
            Value::Str(bytes) => Ok(Some(bytes)),
            _ => Err(err(msg::WRONGTYPE)),
        },
    }
}

fn optional_bulk(value: Option<Vec<u8>>) -> Reply {
    value.map_or(Reply::Nil, Reply::Bulk)
}

fn get(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_string(core, ctx, &argv[1]) {
        Ok(value) => optional_bulk(value),
        Err(reply) => reply,
    }
}

/// SET's and GETEX's options, as the bits of Redis's parser. Each option excludes the others
/// it cannot be combined with; a repeated option is accepted and the last value wins.
const NX: u32 = 1 << 0;
const XX: u32 = 1 << 1;
const EX: u32 = 1 << 2;
const PX: u32 = 1 << 3;
const KEEPTTL: u32 = 1 << 4;
const GET: u32 = 1 << 5;
const EXAT: u32 = 1 << 6;
const PXAT: u32 = 1 << 7;
const PERSIST: u32 = 1 << 8;

/// Which of SET's and GETEX's options a command accepts.
#[derive(Clone, Copy, PartialEq)]
enum OptionsOf {
    Set,
    GetEx,
}

/// Parses the options from `argv[start..]`: the flags and the expire argument, if any. Any
/// unknown word, forbidden combination or missing value is a syntax error.
fn parse_options(
    argv: &[Vec<u8>],
    start: usize,
    command: OptionsOf,
) -> Result<(u32, Option<&[u8]>), Reply> {
    let mut flags = 0;
    let mut expire: Option<&[u8]> = None;
    let is_set = command == OptionsOf::Set;
    let mut index = start;
    while index < argv.len() {
        let option = &argv[index];
        let next = argv.get(index + 1).map(Vec::as_slice);
        let excludes = |others: u32| flags & others == 0;
        let timed = |this: u32| {
            let others = (KEEPTTL | PERSIST | EX | PX | EXAT | PXAT) & !this;
            flags & others == 0 && next.is_some()
        };
        let (flag, takes_value) = if is_opt(option, "nx") && is_set && excludes(XX) {
            (NX, false)
        } else if is_opt(option, "xx") && is_set && excludes(NX) {
            (XX, false)
        } else if is_opt(option, "get") && is_set {
            (GET, false)
        } else if is_opt(option, "keepttl") && is_set && excludes(PERSIST | EX | EXAT | PX | PXAT) {
            (KEEPTTL, false)
        } else if is_opt(option, "persist") && !is_set && excludes(EX | EXAT | PX | PXAT | KEEPTTL)
        {
            (PERSIST, false)
        } else if is_opt(option, "ex") && timed(EX) {
            (EX, true)
        } else if is_opt(option, "px") && timed(PX) {
            (PX, true)
        } else if is_opt(option, "exat") && timed(EXAT) {
            (EXAT, true)
        } else if is_opt(option, "pxat") && timed(PXAT) {
            (PXAT, true)
        } else {
            return Err(err(msg::SYNTAX));
        };
        flags |= flag;
        if takes_value {
            expire = next;
            index += 1;
        }
        index += 1;
    }
    Ok((flags, expire))
}

/// The absolute expiry time an EX/PX/EXAT/PXAT argument means, or Redis's errors: not an
/// integer, not positive, or overflowing once converted to absolute milliseconds.
fn expire_at_ms(ctx: &Ctx, arg: &[u8], flags: u32, command: &str) -> Result<u64, Reply> {
    let value = arg_i64(arg)?;
    let seconds = flags & (EX | EXAT) != 0;
    if value <= 0 {
        return Err(invalid_expire_time(command));
    }
    let mut at_ms = if seconds {
        value
            .checked_mul(1000)
            .ok_or_else(|| invalid_expire_time(command))?
    } else {
        value
    };
    if flags & (EX | PX) != 0 {
        let now_ms = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX);
        at_ms = at_ms
            .checked_add(now_ms)
            .ok_or_else(|| invalid_expire_time(command))?;
    }
    Ok(u64::try_from(at_ms).expect("positive"))
}

/// The body of SET, SETNX, SETEX and PSETEX. `done` and `refused` are the replies for a
/// write made and a write refused by NX/XX (SET's `OK`/nil, SETNX's 1/0).
fn set_generic(
    core: &mut Core,
    ctx: &Ctx,
    argv: &[Vec<u8>],
    (flags, expire): (u32, Option<&[u8]>),
    value: &[u8],
    (done, refused): (Reply, Reply),
) -> Reply {
    let command = std::str::from_utf8(&argv[0])
        .unwrap_or("set")
        .to_ascii_lowercase();
    let at_ms = match expire.map(|arg| expire_at_ms(ctx, arg, flags, &command)) {
        None => None,
        Some(Ok(at_ms)) => Some(at_ms),
        Some(Err(reply)) => return reply,
    };
    let key = &argv[1];
    let old = if flags & GET != 0 {
        match read_string(core, ctx, key) {
            Ok(old) => Some(optional_bulk(old)),
            Err(reply) => return reply,
        }
    } else {
        None
    };
    let now_ms = ctx.now_ms;
    let db = core.db(ctx);
    let found = db.contains(now_ms, key);
    if (flags & NX != 0 && found) || (flags & XX != 0 && !found) {
        return old.unwrap_or(refused);
    }
    let value = Value::Str(value.to_vec());
    if flags & KEEPTTL != 0 {
        db.set_keep_ttl(now_ms, key.clone(), value);
    } else {
        db.insert(key.clone(), value, at_ms);
    }
    core.signal_modified(ctx.db, key);
    old.unwrap_or(done)
}

fn set(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let options = match parse_options(argv, 3, OptionsOf::Set) {
        Ok(options) => options,
        Err(reply) => return reply,
    };
    set_generic(core, ctx, argv, options, &argv[2], (ok(), Reply::Nil))
}

fn setnx(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let replies = (Reply::Integer(1), Reply::Integer(0));
    set_generic(core, ctx, argv, (NX, None), &argv[2], replies)
}

fn setex(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let options = (EX, Some(argv[2].as_slice()));
    set_generic(core, ctx, argv, options, &argv[3], (ok(), Reply::Nil))
}

fn psetex(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let options = (PX, Some(argv[2].as_slice()));
    set_generic(core, ctx, argv, options, &argv[3], (ok(), Reply::Nil))
}

/// GETSET: the old value, and the new one stored without a TTL.
fn getset(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let old = match read_string(core, ctx, &argv[1]) {
        Ok(old) => old,
        Err(reply) => return reply,
    };
    core.db(ctx)
        .insert(argv[1].clone(), Value::Str(argv[2].clone()), None);
    core.signal_modified(ctx.db, &argv[1]);
    optional_bulk(old)
}

fn getdel(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_string(core, ctx, &argv[1]) {
        Ok(Some(value)) => {
            core.db(ctx).remove(&argv[1]);
            core.signal_modified(ctx.db, &argv[1]);
            Reply::Bulk(value)
        }
        Ok(None) => Reply::Nil,
        Err(reply) => reply,
    }
}

/// GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]. Redis checks the key (missing,
/// wrong type) before it validates the time, and an EXAT/PXAT already past deletes the key
/// after returning its value.
fn getex(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let (flags, expire) = match parse_options(argv, 2, OptionsOf::GetEx) {
        Ok(options) => options,
        Err(reply) => return reply,
    };
    let key = &argv[1];
    let value = match read_string(core, ctx, key) {
        Ok(Some(value)) => value,
        Ok(None) => return Reply::Nil,
        Err(reply) => return reply,
    };
    let at_ms = match expire.map(|arg| expire_at_ms(ctx, arg, flags, "getex")) {
        None => None,
        Some(Ok(at_ms)) => Some(at_ms),
        Some(Err(reply)) => return reply,
    };
    let db = core.db(ctx);
    let changed = match at_ms {
        Some(at_ms) if flags & (EXAT | PXAT) != 0 && at_ms <= ctx.now_ms => {
            db.remove(key);
            true
        }
        Some(at_ms) => db.set_expire(key, Some(at_ms)),
        None if flags & PERSIST != 0 => {
            db.peek(key)
                .is_some_and(|entry| entry.expire_at_ms.is_some())
                && db.set_expire(key, None)
        }
        None => false,
    };
    if changed {
        core.signal_modified(ctx.db, key);
    }
    Reply::Bulk(value)
}

/// MGET: a missing key or one of another type answers nil, never an error.
fn mget(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let values = argv[1..]
        .iter()
        .map(|key| match core.lookup_read(ctx, key) {
            Some(entry) => match &entry.value {
                Value::Str(bytes) => Reply::Bulk(bytes.clone()),
                _ => Reply::Nil,
            },
            None => Reply::Nil,
        })
        .collect();
    Reply::Array(values)
}

fn mset(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if argv.len().is_multiple_of(2) {
        return wrong_arity("mset");
    }
    mset_all(core, ctx, argv);
    ok()
}

/// MSETNX: all or nothing; one existing key refuses the whole command.
fn msetnx(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if argv.len().is_multiple_of(2) {
        return wrong_arity("msetnx");
    }
    let now_ms = ctx.now_ms;
    let db = core.db(ctx);
    if argv[1..]
        .chunks(2)
        .any(|pair| db.contains(now_ms, &pair[0]))
    {
        return Reply::Integer(0);
    }
    mset_all(core, ctx, argv);
    Reply::Integer(1)
}

/// Stores every key/value pair, clearing TTLs, in argument order (a repeated key keeps the
/// last value).
fn mset_all(core: &mut Core, ctx: &Ctx, argv: &[Vec<u8>]) {
    for pair in argv[1..].chunks_exact(2) {
        core.db(ctx)
            .insert(pair[0].clone(), Value::Str(pair[1].clone()), None);
        core.signal_modified(ctx.db, &pair[0]);
    }
}

/// The INCR family's body: adds `delta` to the integer under `key` (0 if missing), keeping
/// the key's TTL.
fn incr_by(core: &mut Core, ctx: &Ctx, key: &[u8], delta: i64) -> Reply {
    let current = match write_string(core, ctx, key) {
        Ok(current) => current,
        Err(reply) => return reply,
    };
    let old = match current.as_ref().map(|bytes| num::parse_i64(bytes)) {
        None => 0,
        Some(Some(old)) => old,
        Some(None) => return err(msg::NOT_INTEGER),
    };
    let Some(new) = old.checked_add(delta) else {
        return err(msg::OVERFLOW);
    };
    let text = new.to_string().into_bytes();
    match current {
        Some(bytes) => *bytes = text,
        None => core.db(ctx).insert(key.to_vec(), Value::Str(text), None),
    }
    core.signal_modified(ctx.db, key);
    Reply::Integer(new)
}

fn incr(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    incr_by(core, ctx, &argv[1], 1)
}

fn decr(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    incr_by(core, ctx, &argv[1], -1)
}

fn incrby(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match arg_i64(&argv[2]) {
        Ok(delta) => incr_by(core, ctx, &argv[1], delta),
        Err(reply) => reply,
    }
}

/// DECRBY: `i64::MIN` cannot be negated, and Redis says so with its own message.
fn decrby(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match arg_i64(&argv[2]) {
        Ok(i64::MIN) => err("ERR decrement would overflow"),
        Ok(delta) => incr_by(core, ctx, &argv[1], -delta),
        Err(reply) => reply,
    }
}

/// INCRBYFLOAT: Redis adds in x87 `long double` and stores `%.17Lf` trimmed; the model
/// emulates that format exactly (see [`longdouble`]). The TTL is kept.
fn incrbyfloat(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let current = match write_string(core, ctx, &argv[1]) {
        Ok(current) => current,
        Err(reply) => return reply,
    };
    let text =
        match longdouble::incr_by_float(current.as_ref().map(|bytes| bytes.as_slice()), &argv[2]) {
            Ok(text) => text,
            Err(message) => return err(message),
        };
    match current {
        Some(bytes) => *bytes = text.clone(),
        None => core
            .db(ctx)
            .insert(argv[1].clone(), Value::Str(text.clone()), None),
    }
    core.signal_modified(ctx.db, &argv[1]);
    Reply::Bulk(text)
}

/// Whether growing a string to `offset + extra` bytes stays within `proto-max-bulk-len`.
fn fits(core: &Core, offset: u64, extra: usize) -> bool {
    let limit = u64::try_from(core.config.limits.bulk_len_max).unwrap_or(u64::MAX);
    let extra = u64::try_from(extra).unwrap_or(u64::MAX);
    offset
        .checked_add(extra)
        .is_some_and(|total| total <= limit)
}

/// APPEND: creates the key if missing (without a length check, as Redis: the argument itself
/// already passed the protocol limit), else grows it in place and keeps its TTL.
fn append(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let (key, suffix) = (&argv[1], &argv[2]);
    let existing_len = match write_string(core, ctx, key) {
        Ok(existing) => existing.map(|bytes| u64::try_from(bytes.len()).unwrap_or(u64::MAX)),
        Err(reply) => return reply,
    };
    if existing_len.is_some_and(|len| !fits(core, len, suffix.len())) {
        return err(TOO_LONG);
    }
    let len = match write_string(core, ctx, key) {
        Ok(Some(bytes)) => {
            bytes.extend_from_slice(suffix);
            bytes.len()
        }
        _ => {
            core.db(ctx)
                .insert(key.clone(), Value::Str(suffix.clone()), None);
            suffix.len()
        }
    };
    core.signal_modified(ctx.db, key);
    Reply::Integer(i64::try_from(len).unwrap_or(i64::MAX))
}

fn strlen(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_string(core, ctx, &argv[1]) {
        Ok(value) => {
            Reply::Integer(value.map_or(0, |bytes| i64::try_from(bytes.len()).unwrap_or(i64::MAX)))
        }
        Err(reply) => reply,
    }
}

/// SETRANGE key offset value: overwrites from `offset`, padding with zero bytes. An empty
/// value changes nothing and answers the current length (0 for a missing key, which is not
/// created).
fn setrange(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let offset = match arg_i64(&argv[2]) {
        Ok(offset) => offset,
        Err(reply) => return reply,
    };
    let Ok(offset) = u64::try_from(offset) else {
        return err("ERR offset is out of range");
    };
    let (key, patch) = (&argv[1], &argv[3]);
    let existing_len = match write_string(core, ctx, key) {
        Ok(existing) => existing.map(|bytes| bytes.len()),
        Err(reply) => return reply,
    };
    if patch.is_empty() {
        return Reply::Integer(i64::try_from(existing_len.unwrap_or(0)).unwrap_or(i64::MAX));
    }
    if !fits(core, offset, patch.len()) {
        return err(TOO_LONG);
    }
    // `fits` bounded offset + len by the bulk limit, itself a usize.
    let start = usize::try_from(offset).expect("bounded by the bulk limit");
    let end = start + patch.len();
    let len = match write_string(core, ctx, key) {
        Ok(Some(bytes)) => {
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(patch);
            bytes.len()
        }
        _ => {
            let mut bytes = vec![0; end];
            bytes[start..end].copy_from_slice(patch);
            core.db(ctx).insert(key.clone(), Value::Str(bytes), None);
            end
        }
    };
    core.signal_modified(ctx.db, key);
    Reply::Integer(i64::try_from(len).unwrap_or(i64::MAX))
}

/// GETRANGE key start end, inclusive, with Redis's negative-index rules: both negative and
/// start after end is empty; negatives count from the end and clamp at 0; end clamps to the
/// last byte.
fn getrange(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let (start, end) = match (arg_i64(&argv[2]), arg_i64(&argv[3])) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    let value = match read_string(core, ctx, &argv[1]) {
        Ok(Some(value)) => value,
        Ok(None) => return Reply::Bulk(Vec::new()),
        Err(reply) => return reply,
    };
    let empty = Reply::Bulk(Vec::new());
    if start < 0 && end < 0 && start > end {
        return empty;
    }
    let len = i64::try_from(value.len()).unwrap_or(i64::MAX);
    let from_end = |index: i64| {
        if index < 0 {
            len.saturating_add(index)
        } else {
            index
        }
    };
    let start = from_end(start).max(0);
    let end = from_end(end).max(0).min(len - 1);
    if len == 0 || start > end {
        return empty;
    }
    let start = usize::try_from(start).expect("non-negative and below len");
    let end = usize::try_from(end).expect("non-negative and below len");
    bulk(&value[start..=end])
}

#[cfg(test)]
mod tests {
    use crate::model::testkit::*;
    use crate::model::{Model, NodeConfig, Reply};

    const NIL: Reply = Reply::Nil;
    const T: u64 = 1_700_000_000_000;
    const SYNTAX: &str = "ERR syntax error";
    const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

    /// A model whose key `list` holds a list, for WRONGTYPE cases (the list commands live in
    /// another module).
    fn model_with_list() -> Model {
        let mut model = Model::new(NodeConfig::standalone(1));
        model.core.dbs[0].insert(
            b"list".to_vec(),
            crate::model::db::Value::List(std::iter::once(b"x".to_vec()).collect()),
            None,
        );
        model
    }

    #[test]
    fn set_options_and_their_conflicts() {
        check_at(&[
            (T, "SET k v", ok()),
            (T, "GET k", bulk("v")),
            (T, "GET nope", NIL),
            (T, "SET k v NX", NIL),
            (T, "SET k w XX", ok()),
            (T, "SET n v XX", NIL),
            (T, "SET n v NX NX", ok()),
            (T, "SET k v NX XX", error(SYNTAX)),
            (T, "SET k v XX NX", error(SYNTAX)),
            (T, "SET k v EX 10 PX 10", error(SYNTAX)),
            (T, "SET k v EX 10 KEEPTTL", error(SYNTAX)),
            (T, "SET k v KEEPTTL PXAT 10", error(SYNTAX)),
            (T, "SET k v EXAT 10 PXAT 10", error(SYNTAX)),
            (T, "SET k v EX", error(SYNTAX)),
            (T, "SET k v PERSIST", error(SYNTAX)),
            (T, "SET k v FOO", error(SYNTAX)),
            (T, "SET k v EX x", error(NOT_INTEGER)),
            (
                T,
                "SET k v EX 0",
                error("ERR invalid expire time in 'set' command"),
            ),
            (
                T,
                "SET k v PX -5",
                error("ERR invalid expire time in 'set' command"),
            ),
            (
                T,
                "SET k v EX 9223372036854776",
                error("ERR invalid expire time in 'set' command"),
            ),
            (
                T,
                "SET k v PX 9223372036854775807",
                error("ERR invalid expire time in 'set' command"),
            ),
            (T, "SET k v PXAT 9223372036854775807", ok()),
            (T, "SET k v EX 10 EX 20", ok()),
            (T, "PTTL k", int(20_000)),
            (T, "SET k v2", ok()),
            (T, "PTTL k", int(-1)),
            (T, "SET k v3 px 1500", ok()),
            (T, "SET k v4 KEEPTTL", ok()),
            (T, "PTTL k", int(1500)),
            (T + 1500, "GET k", bulk("v4")),
            (T + 1501, "GET k", NIL),
            (T, "SET k v EXAT 1700000100", ok()),
            (T, "TTL k", int(100)),
            (T, "SET k v PXAT 1", ok()),
            (T, "GET k", NIL),
            (T, "SET k v keepttl", ok()),
            (T, "PTTL k", int(-1)),
            (
                T,
                "SET",
                error("ERR wrong number of arguments for 'set' command"),
            ),
        ]);
    }

    #[test]
    fn set_get_returns_the_old_value() {
        check_at_on(
            model_with_list(),
            &[
                (T, "SET k v GET", NIL),
                (T, "SET k w GET", bulk("v")),
                (T, "SET k x NX GET", bulk("w")),
                (T, "GET k", bulk("w")),
                (T, "SET n x XX GET", NIL),
                (T, "EXISTS n", int(0)),
                (
                    T,
                    "SET list x GET",
                    error(crate::model::reply::msg::WRONGTYPE),
                ),
                (
                    T,
                    "SET list x EX 0 GET",
                    error("ERR invalid expire time in 'set' command"),
                ),
                (T, "SET list x", ok()),
                (T, "GET list", bulk("x")),
            ],
        );
    }

    #[test]
    fn setnx_setex_psetex_getset() {
        check_at(&[
            (T, "SETNX k v", int(1)),
            (T, "SETNX k w", int(0)),
            (T, "SETEX k 10 v", ok()),
            (T, "TTL k", int(10)),
            (
                T,
                "SETEX k 0 v",
                error("ERR invalid expire time in 'setex' command"),
            ),
            (T, "SETEX k x v", error(NOT_INTEGER)),
            (
                T,
                "PSETEX k 0 v",
                error("ERR invalid expire time in 'psetex' command"),
            ),
            (T, "PSETEX k 250 v", ok()),
            (T, "PTTL k", int(250)),
            (T, "GETSET k w", bulk("v")),
            (T, "PTTL k", int(-1)),
            (T, "GETSET n w", NIL),
            (T, "GET n", bulk("w")),
        ]);
    }

    #[test]
    fn getdel_and_getex() {
        check_at_on(
            model_with_list(),
            &[
                (T, "SET k v", ok()),
                (T, "GETDEL k", bulk("v")),
                (T, "GETDEL k", NIL),
                (T, "GETDEL list", error(crate::model::reply::msg::WRONGTYPE)),
                (T, "GETEX nope EX 0", NIL),
                (
                    T,
                    "GETEX list EX 0",
                    error(crate::model::reply::msg::WRONGTYPE),
                ),
                (T, "SET k v", ok()),
                (T, "GETEX k", bulk("v")),
                (
                    T,
                    "GETEX k EX 0",
                    error("ERR invalid expire time in 'getex' command"),
                ),
                (T, "GETEX k EX 10 PX 10", error(SYNTAX)),
                (T, "GETEX k NX", error(SYNTAX)),
                (T, "GETEX k KEEPTTL", error(SYNTAX)),
                (T, "GETEX k PERSIST EX 10", error(SYNTAX)),
                (T, "GETEX k EX 10", bulk("v")),
                (T, "TTL k", int(10)),
                (T, "GETEX k PXAT 1700000000500", bulk("v")),
                (T, "PTTL k", int(500)),
                (T, "GETEX k PERSIST", bulk("v")),
                (T, "PTTL k", int(-1)),
                (T, "GETEX k EXAT 1", bulk("v")),
                (T, "EXISTS k", int(0)),
                (
                    T,
                    "GETEX",
                    error("ERR wrong number of arguments for 'getex' command"),
                ),
            ],
        );
    }

    #[test]
    fn mget_mset_msetnx() {
        check_at_on(
            model_with_list(),
            &[
                (T, "MSET a 1 b 2 a 3", ok()),
                (
                    T,
                    "MGET a b list nope",
                    Reply::Array(vec![bulk("3"), bulk("2"), NIL, NIL]),
                ),
                (
                    T,
                    "MSET a 1 b",
                    error("ERR wrong number of arguments for 'mset' command"),
                ),
                (T, "MSETNX c 1 a 2", int(0)),
                (T, "EXISTS c", int(0)),
                (T, "MSETNX c 1 d 2", int(1)),
                (
                    T,
                    "MSETNX c",
                    error("ERR wrong number of arguments for 'msetnx' command"),
                ),
                (
                    T,
                    "MSETNX c 1 d",
                    error("ERR wrong number of arguments for 'msetnx' command"),
                ),
                (T, "PEXPIRE a 100", int(1)),
                (T, "MSET a 5", ok()),
                (T, "PTTL a", int(-1)),
            ],
        );
    }

    #[test]
    fn counters_overflow_and_keep_the_ttl() {
        check_at_on(
            model_with_list(),
            &[
                (T, "INCR c", int(1)),
                (T, "INCRBY c 10", int(11)),
                (T, "DECR c", int(10)),
                (T, "DECRBY c 15", int(-5)),
                (T, "PEXPIRE c 1000", int(1)),
                (T + 400, "INCR c", int(-4)),
                (T + 400, "PTTL c", int(600)),
                (T + 1000, "INCR c", int(-3)),
                (T + 1001, "INCR c", int(1)),
                (T, "PTTL c", int(-1)),
                (T, "SET big 9223372036854775807", ok()),
                (
                    T,
                    "INCR big",
                    error("ERR increment or decrement would overflow"),
                ),
                (T, "SET small -9223372036854775808", ok()),
                (
                    T,
                    "DECR small",
                    error("ERR increment or decrement would overflow"),
                ),
                (
                    T,
                    "DECRBY c -9223372036854775808",
                    error("ERR decrement would overflow"),
                ),
                (
                    T,
                    "INCRBY c -9223372036854775808",
                    int(-9_223_372_036_854_775_807),
                ),
                (T, "INCRBY c x", error(NOT_INTEGER)),
                (T, "SET s abc", ok()),
                (T, "INCR s", error(NOT_INTEGER)),
                (T, "SET s 01", ok()),
                (T, "INCR s", error(NOT_INTEGER)),
                (T, "SET s \"\"", ok()),
                (T, "INCR s", error(NOT_INTEGER)),
                (T, "INCR list", error(crate::model::reply::msg::WRONGTYPE)),
            ],
        );
    }

    #[test]
    fn incrbyfloat_adds_and_refuses_non_finite_results() {
        check_at(&[
            (T, "INCRBYFLOAT f 10.5", bulk("10.5")),
            (T, "INCRBYFLOAT f 0.1", bulk("10.6")),
            (T, "INCRBYFLOAT f -10.6", bulk("0")),
            (T, "INCRBYFLOAT f 5.0e3", bulk("5000")),
            (T, "PEXPIRE f 100", int(1)),
            (T, "INCRBYFLOAT f 1", bulk("5001")),
            (T, "PTTL f", int(100)),
            (
                T,
                "INCRBYFLOAT f x",
                error("ERR value is not a valid float"),
            ),
            (
                T,
                "INCRBYFLOAT f inf",
                error("ERR increment would produce NaN or Infinity"),
            ),
            (T, "SET s abc", ok()),
            (
                T,
                "INCRBYFLOAT s 1",
                error("ERR value is not a valid float"),
            ),
            (T, "SET s 3", ok()),
            (T, "INCRBYFLOAT s 1.5", bulk("4.5")),
            (T, "INCR s", error(NOT_INTEGER)),
            // Long double arithmetic, not f64: the stored text shows the difference.
            (T, "INCRBYFLOAT g 10000", bulk("10000")),
            (T, "INCRBYFLOAT g 0.1", bulk("10000.09999999999999964")),
            (T, "GET g", bulk("10000.09999999999999964")),
        ]);
    }

    #[test]
    fn incrbyfloat_refuses_numbers_of_five_kib() {
        let fits = format!("INCRBYFLOAT f {}1", "0".repeat(5 * 1024 - 2));
        let too_long = format!("INCRBYFLOAT f {}1", "0".repeat(5 * 1024 - 1));
        check_at(&[
            (T, &fits, bulk("1")),
            (T, &too_long, error("ERR value is not a valid float")),
        ]);
    }

    #[test]
    fn append_strlen_setrange_getrange() {
        check_at_on(
            model_with_list(),
            &[
                (T, "APPEND s Hello", int(5)),
                (T, "APPEND s World", int(10)),
                (T, "STRLEN s", int(10)),
                (T, "STRLEN nope", int(0)),
                (T, "STRLEN list", error(crate::model::reply::msg::WRONGTYPE)),
                (
                    T,
                    "APPEND list x",
                    error(crate::model::reply::msg::WRONGTYPE),
                ),
                (T, "GETRANGE s 0 4", bulk("Hello")),
                (T, "GETRANGE s -5 -1", bulk("World")),
                (T, "GETRANGE s -1 -5", bulk("")),
                (T, "GETRANGE s 5 3", bulk("")),
                (T, "GETRANGE s -100 2", bulk("Hel")),
                (T, "GETRANGE s 8 100", bulk("ld")),
                (T, "GETRANGE s 100 200", bulk("")),
                (T, "GETRANGE s 0 -100", bulk("H")),
                (T, "GETRANGE nope 0 -1", bulk("")),
                (T, "GETRANGE s x 1", error(NOT_INTEGER)),
                (
                    T,
                    "GETRANGE list 0 1",
                    error(crate::model::reply::msg::WRONGTYPE),
                ),
                (T, "SETRANGE s 5 _", int(10)),
                (T, "GET s", bulk("Hello_orld")),
                (T, "SETRANGE s 12 !", int(13)),
                (T, "GET s", Reply::Bulk(b"Hello_orld\0\0!".to_vec())),
                (T, "SETRANGE s 100 \"\"", int(13)),
                (T, "SETRANGE n 3 \"\"", int(0)),
                (T, "EXISTS n", int(0)),
                (T, "SETRANGE n 2 ab", int(4)),
                (T, "GET n", Reply::Bulk(b"\0\0ab".to_vec())),
                (T, "SETRANGE s -1 x", error("ERR offset is out of range")),
                (T, "SETRANGE s x x", error(NOT_INTEGER)),
                (
                    T,
                    "SETRANGE s 536870912 x",
                    error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
                ),
                (
                    T,
                    "SETRANGE s 9223372036854775807 x",
                    error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
                ),
                (
                    T,
                    "SETRANGE list 0 x",
                    error(crate::model::reply::msg::WRONGTYPE),
                ),
                (T, "PEXPIRE s 100", int(1)),
                (T, "APPEND s x", int(14)),
                (T, "SETRANGE s 0 h", int(14)),
                (T, "PTTL s", int(100)),
            ],
        );
    }

    #[test]
    fn append_refuses_to_pass_the_bulk_limit() {
        let mut config = NodeConfig::standalone(1);
        config.limits.bulk_len_max = 8;
        check_at_on(
            Model::new(config),
            &[
                (T, "APPEND s 12345", int(5)),
                (T, "APPEND s 123", int(8)),
                (
                    T,
                    "APPEND s 1",
                    error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
                ),
                (T, "SETRANGE s 7 x", int(8)),
                (
                    T,
                    "SETRANGE s 7 xy",
                    error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
                ),
            ],
        );
    }

    #[test]
    fn writes_break_watches_and_refused_writes_do_not() {
        let mut model = Model::new(NodeConfig::standalone(1));
        let mut watcher = model.connect("127.0.0.1:1");
        let mut other = model.connect("127.0.0.1:2");
        let run = |model: &mut Model, session: &mut crate::model::Session, line: &str| {
            let argv: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            model.exec(T, session, &argv)
        };
        run(&mut model, &mut other, "SET k v");
        for (write, breaks) in [
            ("SET k v NX", false),
            ("INCR k", false),
            ("GETEX k PERSIST", false),
            ("SETRANGE k 0 w", true),
            ("GETEX k EX 10", true),
        ] {
            run(&mut model, &mut watcher, "WATCH k");
            run(&mut model, &mut other, write);
            run(&mut model, &mut watcher, "MULTI");
            run(&mut model, &mut watcher, "PING");
            let reply = run(&mut model, &mut watcher, "EXEC");
            assert_eq!(reply == Reply::NilArray, breaks, "{write}");
        }
    }
}

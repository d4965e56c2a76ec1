//! Key and expiry commands: DEL, EXISTS, TYPE, the EXPIRE family, TTL, KEYS, SCAN, RENAME,
//! COPY, MOVE, SWAPDB, RANDOMKEY, and the glob matcher that KEYS, SCAN and CONFIG GET share.
//!
//! The limiters live and die by TTLs (a fixed window that loses its PEXPIRE never resets), so
//! the EXPIRE family reproduces Redis 7.0's order of checks exactly: options first, then the
//! number, then overflow, then the key, then NX/XX/GT/LT, and a time already past deletes the
//! key instead of setting a TTL.

use super::{arg_i64, is_opt};
use crate::model::command::{DENYOOM, FAST, Handler, RANDOM, READONLY, Spec, WRITE};
use crate::model::reply::{Reply, bulk, bulks, err, msg, ok};
use crate::model::{Core, Ctx, DATABASES};

use std::collections::BTreeMap;

type DataHandler = fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply;

/// A data command whose keys sit at `first..=last` every `step` arguments.
const fn keyed(
    name: &'static str,
    arity: i32,
    flags: u32,
    (first_key, last_key, step): (i32, i32, i32),
    handler: DataHandler,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key,
        last_key,
        step,
        handler: Handler::Data(handler),
    }
}

/// A data command without key arguments (KEYS, SCAN, SWAPDB, RANDOMKEY).
const fn keyless(name: &'static str, arity: i32, flags: u32, handler: DataHandler) -> Spec {
    keyed(name, arity, flags, (0, 0, 0), handler)
}

/// Key positions of a command whose only key is its first argument.
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
/// Key positions of a command whose every argument is a key.
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);
/// Key positions of RENAME and COPY: source and destination.
const TWO_KEYS: (i32, i32, i32) = (1, 2, 1);

/// The keys commands. Arity, flags and key positions are Redis 7.0.15's.
pub static COMMANDS: &[Spec] = &[
    keyed("del", -2, WRITE, ALL_KEYS, del),
    keyed("unlink", -2, WRITE | FAST, ALL_KEYS, del),
    keyed("exists", -2, READONLY | FAST, ALL_KEYS, exists),
    keyed("type", 2, READONLY | FAST, ONE_KEY, type_of),
    keyed("touch", -2, READONLY | FAST, ALL_KEYS, exists),
    keyed("expire", -3, WRITE | FAST, ONE_KEY, expire),
    keyed("pexpire", -3, WRITE | FAST, ONE_KEY, pexpire),
    keyed("expireat", -3, WRITE | FAST, ONE_KEY, expireat),
    keyed("pexpireat", -3, WRITE | FAST, ONE_KEY, pexpireat),
    keyed("expiretime", 2, READONLY | FAST, ONE_KEY, expiretime),
    keyed("pexpiretime", 2, READONLY | FAST, ONE_KEY, pexpiretime),
    keyed("ttl", 2, READONLY | FAST, ONE_KEY, ttl),
    keyed("pttl", 2, READONLY | FAST, ONE_KEY, pttl),
    keyed("persist", 2, WRITE | FAST, ONE_KEY, persist),
    keyless("keys", 2, READONLY, keys),
    keyless("scan", -2, READONLY, scan),
    keyed("rename", 3, WRITE, TWO_KEYS, rename),
    keyed("renamenx", 3, WRITE | FAST, TWO_KEYS, renamenx),
    keyed("copy", -3, WRITE | DENYOOM, TWO_KEYS, copy),
    keyed("move", 3, WRITE | FAST, ONE_KEY, move_key),
    keyless("swapdb", 3, WRITE | FAST, swapdb),
    keyless("randomkey", 1, READONLY | RANDOM, randomkey),
];

/// Redis's reply when a command names the same object as source and destination.
const SAME_OBJECT: &str = "ERR source and destination objects are the same";

/// The node time as the signed milliseconds Redis computes with. Unix time in ms is far below
/// `i64::MAX`; saturating keeps a hostile caller time from wrapping.
fn now_signed_ms(ctx: &Ctx) -> i64 {
    i64::try_from(ctx.now_ms).unwrap_or(i64::MAX)
}

fn count(n: usize) -> Reply {
    Reply::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// DEL and UNLINK (UNLINK frees lazily in Redis; here both free at once). An expired key is
/// removed by the lookup but not counted, as Redis's expireIfNeeded-then-delete does.
fn del(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let mut deleted = 0;
    for key in &argv[1..] {
        let now_ms = ctx.now_ms;
        let db = core.db(ctx);
        if db.lookup(now_ms, key).is_some() {
            db.remove(key);
            core.signal_modified(ctx.db, key);
            deleted += 1;
        }
    }
    count(deleted)
}

/// EXISTS and TOUCH: a key named twice counts twice.
fn exists(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let found = argv[1..]
        .iter()
        .filter(|key| core.lookup_read(ctx, key).is_some())
        .count();
    count(found)
}

fn type_of(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let name = core
        .lookup_read(ctx, &argv[1])
        .map_or("none", |entry| entry.value.type_name());
    Reply::Status(name.to_owned())
}

/// The condition options of the EXPIRE family.
#[derive(Clone, Copy, Default)]
struct ExpireCondition {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

/// Parses NX/XX/GT/LT. An unknown word is reported before any incompatibility, as Redis
/// checks every word first.
fn parse_expire_condition(options: &[Vec<u8>]) -> Result<ExpireCondition, Reply> {
    let mut condition = ExpireCondition::default();
    for option in options {
        if is_opt(option, "nx") {
            condition.nx = true;
        } else if is_opt(option, "xx") {
            condition.xx = true;
        } else if is_opt(option, "gt") {
            condition.gt = true;
        } else if is_opt(option, "lt") {
            condition.lt = true;
        } else {
            return Err(err(crate::model::reply::sanitize(&format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(option)
            ))));
        }
    }
    if condition.nx && (condition.xx || condition.gt || condition.lt) {
        return Err(err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.gt && condition.lt {
        return Err(err(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(condition)
}

/// Redis's error for an expire time that overflows (or, for SET, is not positive).
pub fn invalid_expire_time(command: &str) -> Reply {
    err(format!("ERR invalid expire time in '{command}' command"))
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT. `base_ms` is the node time for the relative forms and
/// 0 for the absolute ones; `seconds` says whether the argument is in seconds.
fn expire_generic(
    core: &mut Core,
    ctx: &Ctx,
    argv: &[Vec<u8>],
    command: &str,
    base_ms: i64,
    seconds: bool,
) -> Reply {
    let condition = match parse_expire_condition(&argv[3..]) {
        Ok(condition) => condition,
        Err(reply) => return reply,
    };
    let mut when_ms = match arg_i64(&argv[2]) {
        Ok(when) => when,
        Err(reply) => return reply,
    };
    if seconds {
        // Negative times are allowed (they delete the key); only overflow is an error.
        match when_ms.checked_mul(1000) {
            Some(product) => when_ms = product,
            None => return invalid_expire_time(command),
        }
    }
    match when_ms.checked_add(base_ms) {
        Some(sum) => when_ms = sum,
        None => return invalid_expire_time(command),
    }
    let key = &argv[1];
    let now_ms = ctx.now_ms;
    let db = core.db(ctx);
    let Some(entry) = db.lookup(now_ms, key) else {
        return Reply::Integer(0);
    };
    let current_ms = entry
        .expire_at_ms
        .map(|at| i64::try_from(at).unwrap_or(i64::MAX));
    let refused = match current_ms {
        // No TTL counts as an infinite one: GT can never beat it, LT always can.
        None => condition.xx || condition.gt,
        Some(current) => {
            condition.nx
                || (condition.gt && when_ms <= current)
                || (condition.lt && when_ms >= current)
        }
    };
    if refused {
        return Reply::Integer(0);
    }
    if when_ms <= now_signed_ms(ctx) {
        db.remove(key);
    } else {
        let when = u64::try_from(when_ms).expect("later than a non-negative now");
        db.set_expire(key, Some(when));
    }
    core.signal_modified(ctx.db, key);
    Reply::Integer(1)
}

fn expire(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    expire_generic(core, ctx, argv, "expire", now_signed_ms(ctx), true)
}

fn pexpire(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    expire_generic(core, ctx, argv, "pexpire", now_signed_ms(ctx), false)
}

fn expireat(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    expire_generic(core, ctx, argv, "expireat", 0, true)
}

fn pexpireat(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    expire_generic(core, ctx, argv, "pexpireat", 0, false)
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for one without TTL. TTL
/// rounds to the nearest second, as Redis's `(ttl + 500) / 1000`.
fn ttl_generic(core: &mut Core, ctx: &Ctx, key: &[u8], millis: bool, absolute: bool) -> Reply {
    let now_ms = ctx.now_ms;
    let Some(entry) = core.lookup_read(ctx, key) else {
        return Reply::Integer(-2);
    };
    let Some(at_ms) = entry.expire_at_ms else {
        return Reply::Integer(-1);
    };
    let value_ms = if absolute {
        at_ms
    } else {
        at_ms.saturating_sub(now_ms)
    };
    let value = if millis {
        value_ms
    } else {
        value_ms.saturating_add(500) / 1000
    };
    Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

fn ttl(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    ttl_generic(core, ctx, &argv[1], false, false)
}

fn pttl(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    ttl_generic(core, ctx, &argv[1], true, false)
}

fn expiretime(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    ttl_generic(core, ctx, &argv[1], false, true)
}

fn pexpiretime(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    ttl_generic(core, ctx, &argv[1], true, true)
}

fn persist(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let key = &argv[1];
    let now_ms = ctx.now_ms;
    let db = core.db(ctx);
    let had_ttl = db
        .lookup(now_ms, key)
        .is_some_and(|entry| entry.expire_at_ms.is_some());
    if !had_ttl {
        return Reply::Integer(0);
    }
    db.set_expire(key, None);
    core.signal_modified(ctx.db, key);
    Reply::Integer(1)
}

/// KEYS: every live key matching the pattern, in key order. Like Redis, KEYS skips expired
/// keys without deleting them.
fn keys(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let pattern = &argv[1];
    let all_keys = pattern.as_slice() == b"*";
    let now_ms = ctx.now_ms;
    let matching: Vec<&Vec<u8>> = core
        .db(ctx)
        .keys_from(b"")
        .filter(|(_, entry)| !entry.is_stale(now_ms))
        .filter(|(key, _)| all_keys || glob_match(pattern, key))
        .map(|(key, _)| key)
        .collect();
    bulks(matching)
}

/// Parses a SCAN cursor as Redis's `strtoul` does: optional sign (a `-` wraps around, as in
/// C), decimal digits, nothing else; an empty string is cursor 0. Leading space and overflow
/// are errors.
fn parse_cursor(arg: &[u8]) -> Result<u64, Reply> {
    let invalid = || err("ERR invalid cursor");
    let (negative, digits) = match arg.first() {
        Some(b'-') => (true, &arg[1..]),
        Some(b'+') => (false, &arg[1..]),
        _ => (false, arg),
    };
    if arg.is_empty() {
        return Ok(0);
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let mut cursor: u64 = 0;
    for &digit in digits {
        cursor = cursor
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(digit - b'0')))
            .ok_or_else(invalid)?;
    }
    Ok(if negative {
        cursor.wrapping_neg()
    } else {
        cursor
    })
}

/// The position of a key in SCAN's iteration order: a fixed 64-bit hash (FNV-1a, then the
/// splitmix64 finaliser to spread it). Fixed, so a run replays; a hash, so that the order
/// does not depend on which keys exist.
fn scan_position(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    hash ^ (hash >> 31)
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE name].
///
/// Why the cursor is a hash position and not a count of keys passed: a count shifts when a
/// key before it is deleted, and the iteration would then skip a key that was present
/// throughout, which SCAN promises never to do. Here the cursor `c` means "keys whose
/// [`scan_position`] is at least `c`"; each call returns the COUNT smallest positions from
/// there (never splitting keys that share a position) and the next cursor is one past the
/// last position returned. Positions never move, so every key present from the first call to
/// the last is returned exactly once, whatever else is added or deleted meanwhile. The price
/// is one pass over the database per call, which the model's database sizes afford.
fn scan(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let cursor = match parse_cursor(&argv[1]) {
        Ok(cursor) => cursor,
        Err(reply) => return reply,
    };
    let mut batch_len: i64 = 10;
    let mut pattern: Option<&[u8]> = None;
    let mut type_name: Option<&[u8]> = None;
    let mut index = 2;
    while index < argv.len() {
        let has_value = index + 1 < argv.len();
        if is_opt(&argv[index], "count") && has_value {
            match arg_i64(&argv[index + 1]) {
                Ok(n) if n >= 1 => batch_len = n,
                Ok(_) => return err(msg::SYNTAX),
                Err(reply) => return reply,
            }
        } else if is_opt(&argv[index], "match") && has_value {
            // "*" matches everything, so Redis skips the matcher for it.
            let text = argv[index + 1].as_slice();
            pattern = (text != b"*").then_some(text);
        } else if is_opt(&argv[index], "type") && has_value {
            type_name = Some(argv[index + 1].as_slice());
        } else {
            return err(msg::SYNTAX);
        }
        index += 2;
    }
    let batch_len = usize::try_from(batch_len).unwrap_or(usize::MAX);

    // The smallest `batch_len` positions at or after the cursor, each with its keys. The map
    // never holds more than `batch_len + 1` positions, so a huge COUNT costs nothing extra.
    let mut batch: BTreeMap<u64, Vec<&Vec<u8>>> = BTreeMap::new();
    let mut exhausted = true;
    for key in core.db(ctx).keys() {
        let position = scan_position(key);
        if position < cursor {
            continue;
        }
        batch.entry(position).or_default().push(key);
        if batch.len() > batch_len {
            batch.pop_last();
            exhausted = false;
        }
    }
    let next_cursor = if exhausted {
        0
    } else {
        batch
            .last_key_value()
            .and_then(|(position, _)| position.checked_add(1))
            .unwrap_or(0)
    };
    let candidates: Vec<Vec<u8>> = batch.into_values().flatten().cloned().collect();

    let mut found = Vec::new();
    for key in candidates {
        if pattern.is_some_and(|pattern| !glob_match(pattern, &key)) {
            continue;
        }
        if let Some(wanted) = type_name {
            let actual = core
                .lookup_read(ctx, &key)
                .map_or("none", |entry| entry.value.type_name());
            if !wanted.eq_ignore_ascii_case(actual.as_bytes()) {
                continue;
            }
        }
        // The lookup deletes the key if its time has come, as Redis's SCAN does.
        let now_ms = ctx.now_ms;
        if core.db(ctx).lookup(now_ms, &key).is_none() {
            continue;
        }
        found.push(key);
    }
    Reply::Array(vec![bulk(next_cursor.to_string()), bulks(found)])
}

fn rename(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    rename_generic(core, ctx, argv, false)
}

fn renamenx(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    rename_generic(core, ctx, argv, true)
}

/// RENAME and RENAMENX: the value and its TTL move to the new name; renaming a key to itself
/// changes nothing (but still needs the key to exist).
fn rename_generic(core: &mut Core, ctx: &Ctx, argv: &[Vec<u8>], nx: bool) -> Reply {
    let (source, destination) = (&argv[1], &argv[2]);
    let now_ms = ctx.now_ms;
    let db = core.db(ctx);
    if db.lookup(now_ms, source).is_none() {
        return err(msg::NO_SUCH_KEY);
    }
    if source == destination {
        return if nx { Reply::Integer(0) } else { ok() };
    }
    if db.lookup(now_ms, destination).is_some() {
        if nx {
            return Reply::Integer(0);
        }
        db.remove(destination);
    }
    let entry = db.remove(source).expect("the source was found above");
    db.insert(destination.clone(), entry.value, entry.expire_at_ms);
    core.signal_modified(ctx.db, source);
    core.signal_modified(ctx.db, destination);
    if nx { Reply::Integer(1) } else { ok() }
}

/// A database index argument as Redis's `getIntFromObjectOrReply` plus `selectDb` check it.
/// With `custom` (SWAPDB's "invalid first DB index"), that text answers any non-`i32`;
/// without it, a non-integer and an integer outside `i32` get Redis's two generic texts. An
/// `i32` outside the databases is "DB index is out of range".
fn db_argument(arg: &[u8], custom: Option<&str>) -> Result<usize, Reply> {
    let index = match (crate::model::num::parse_i64(arg), custom) {
        (Some(index), _) if i32::try_from(index).is_ok() => index,
        (_, Some(custom)) => return Err(err(custom)),
        (None, None) => return Err(err(msg::NOT_INTEGER)),
        (Some(_), None) => {
            return Err(err(
                "ERR value is out of range, value must between -2147483648 and 2147483647",
            ));
        }
    };
    usize::try_from(index)
        .ok()
        .filter(|index| *index < DATABASES)
        .ok_or_else(|| err(msg::DB_INDEX))
}

/// `COPY source destination [DB n] [REPLACE]`: the copy keeps the source's TTL.
fn copy(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let mut replace = false;
    let mut target_db = ctx.db;
    let mut index = 3;
    while index < argv.len() {
        if is_opt(&argv[index], "replace") {
            replace = true;
        } else if is_opt(&argv[index], "db") && index + 1 < argv.len() {
            match db_argument(&argv[index + 1], None) {
                Ok(db) => target_db = db,
                Err(reply) => return reply,
            }
            index += 1;
        } else {
            return err(msg::SYNTAX);
        }
        index += 1;
    }
    if core.config.cluster.is_some() && (ctx.db != 0 || target_db != 0) {
        return err("ERR Copying to another database is not allowed in cluster mode");
    }
    let (source, destination) = (&argv[1], &argv[2]);
    if target_db == ctx.db && source == destination {
        return err(SAME_OBJECT);
    }
    let Some(entry) = core.lookup_read(ctx, source).cloned() else {
        return Reply::Integer(0);
    };
    let now_ms = ctx.now_ms;
    let target = &mut core.dbs[target_db];
    if target.lookup(now_ms, destination).is_some() {
        if !replace {
            return Reply::Integer(0);
        }
        target.remove(destination);
    }
    target.insert(destination.clone(), entry.value, entry.expire_at_ms);
    core.signal_modified(target_db, destination);
    Reply::Integer(1)
}

/// MOVE key db: the key and its TTL go to another database, unless the name is taken there.
fn move_key(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if core.config.cluster.is_some() {
        return err("ERR MOVE is not allowed in cluster mode");
    }
    let target_db = match db_argument(&argv[2], None) {
        Ok(db) => db,
        Err(reply) => return reply,
    };
    if target_db == ctx.db {
        return err(SAME_OBJECT);
    }
    let key = &argv[1];
    let now_ms = ctx.now_ms;
    if core.dbs[ctx.db].lookup(now_ms, key).is_none()
        || core.dbs[target_db].lookup(now_ms, key).is_some()
    {
        return Reply::Integer(0);
    }
    let entry = core.dbs[ctx.db]
        .remove(key)
        .expect("the key was found above");
    core.dbs[target_db].insert(key.clone(), entry.value, entry.expire_at_ms);
    core.signal_modified(ctx.db, key);
    core.signal_modified(target_db, key);
    Reply::Integer(1)
}

/// SWAPDB a b: every client of one database now sees the other's keys; a watch on either
/// breaks where a live key appears or disappears (see `Core::signal_db_replaced`).
fn swapdb(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if core.config.cluster.is_some() {
        return err("ERR SWAPDB is not allowed in cluster mode");
    }
    let first = match db_argument(&argv[1], Some("ERR invalid first DB index")) {
        Ok(db) => db,
        Err(reply) => return reply,
    };
    let second = match db_argument(&argv[2], Some("ERR invalid second DB index")) {
        Ok(db) => db,
        Err(reply) => return reply,
    };
    // A database swapped with itself changes nothing (Redis returns before touching).
    if first != second {
        core.signal_db_replaced(first, Some(second), ctx.now_ms);
        core.signal_db_replaced(second, Some(first), ctx.now_ms);
        core.dbs.swap(first, second);
    }
    ok()
}

/// RANDOMKEY: a uniformly chosen key from the node's seeded generator. A chosen key whose
/// time has come is deleted and another is drawn; every retry removes a key, so this ends.
fn randomkey(core: &mut Core, ctx: &mut Ctx, _argv: &[Vec<u8>]) -> Reply {
    let now_ms = ctx.now_ms;
    loop {
        let len = core.db(ctx).len();
        if len == 0 {
            return Reply::Nil;
        }
        let index = core.random_below(len);
        let db = core.db(ctx);
        let key = db
            .keys()
            .nth(index)
            .expect("the index is below the key count")
            .clone();
        if db.lookup(now_ms, &key).is_some() {
            return bulk(key);
        }
    }
}

/// Whether `text` matches the glob `pattern` with Redis's `stringmatchlen` rules (case
/// sensitive): `*` any run, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` (ends in either order),
/// `\x` a literal `x`. Redis's quirks are kept: an unterminated `[` class still matches one
/// byte against the characters seen, and `*` never matches an empty key.
///
/// Runs in O(pattern × text) without recursion: Redis 7.0 gives up as soon as the text after
/// the most recent `*` cannot match anywhere, which amounts to backtracking only to the last
/// star, so one resume point is enough and a hostile pattern cannot take exponential time or
/// exhaust the stack.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    glob(pattern, text, false)
}

/// [`glob_match`] ignoring ASCII case, as Redis's CONFIG GET matches parameter names. Like
/// Redis, a range's ends are ordered before they are lowercased, and an escaped byte inside
/// `[...]` still compares case-sensitively.
pub fn glob_match_nocase(pattern: &[u8], text: &[u8]) -> bool {
    glob(pattern, text, true)
}

fn glob(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    let fold = |byte: u8| {
        if nocase {
            byte.to_ascii_lowercase()
        } else {
            byte
        }
    };
    // Redis reads one byte past the pattern (its NUL terminator) in a few places.
    let at = |index: usize| pattern.get(index).copied().unwrap_or(0);
    let (mut p, mut s) = (0, 0);
    // Where to retry after a mismatch: the pattern after the last `*`, and the text position
    // that star's attempt started from.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        let matched = 'attempt: {
            while p < pattern.len() && s < text.len() {
                match pattern[p] {
                    b'*' => {
                        while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                            p += 1;
                        }
                        if p + 1 == pattern.len() {
                            return true;
                        }
                        p += 1;
                        resume = Some((p, s));
                        continue;
                    }
                    b'?' => s += 1,
                    b'[' => {
                        p += 1;
                        let negate = at(p) == b'^';
                        if negate {
                            p += 1;
                        }
                        let byte = text[s];
                        let folded = fold(byte);
                        let mut hit = false;
                        loop {
                            if at(p) == b'\\' && pattern.len() - p >= 2 {
                                p += 1;
                                hit |= pattern[p] == byte;
                            } else if at(p) == b']' {
                                break;
                            } else if p == pattern.len() {
                                // Unterminated: step back so the common advance below
                                // lands on the end of the pattern.
                                p -= 1;
                                break;
                            } else if pattern.len() - p >= 3 && pattern[p + 1] == b'-' {
                                let (low, high) = if pattern[p] <= pattern[p + 2] {
                                    (pattern[p], pattern[p + 2])
                                } else {
                                    (pattern[p + 2], pattern[p])
                                };
                                hit |= (fold(low)..=fold(high)).contains(&folded);
                                p += 2;
                            } else {
                                hit |= fold(pattern[p]) == folded;
                            }
                            p += 1;
                        }
                        if hit == negate {
                            break 'attempt false;
                        }
                        s += 1;
                    }
                    other => {
                        let literal = if other == b'\\' && pattern.len() - p >= 2 {
                            p += 1;
                            pattern[p]
                        } else {
                            other
                        };
                        if fold(literal) != fold(text[s]) {
                            break 'attempt false;
                        }
                        s += 1;
                    }
                }
                p += 1;
                if s == text.len() {
                    while at(p) == b'*' {
                        p += 1;
                    }
                    break;
                }
            }
            p >= pattern.len() && s == text.len()
        };
        if matched {
            return true;
        }
        // Retry the last star one byte further on; once it has tried every remaining start,
        // Redis concludes that no longer match of any earlier star can help either.
        let Some((star_p, star_s)) = resume else {
            return false;
        };
        let next = star_s + 1;
        if next >= text.len() {
            return false;
        }
        resume = Some((star_p, next));
        p = star_p;
        s = next;
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use crate::model::db::Value;
    use crate::model::testkit::*;
    use crate::model::{Model, NodeConfig, Reply};

    /// A model whose key `name` holds a one-element list (the list commands live elsewhere).
    fn model_with_list(name: &str) -> Model {
        let mut model = Model::new(NodeConfig::standalone(7));
        model.core.dbs[0].insert(
            name.as_bytes().to_vec(),
            Value::List(std::iter::once(b"x".to_vec()).collect()),
            None,
        );
        model
    }

    fn list(items: &[&str]) -> Reply {
        Reply::Array(items.iter().map(|item| bulk(item)).collect())
    }

    const T: u64 = 1_700_000_000_000;

    #[test]
    fn del_exists_touch_and_type_count_live_keys_only() {
        check_at_on(
            model_with_list("l"),
            &[
                (T, "SET a 1", ok()),
                (T, "SET b 2", ok()),
                (T, "EXISTS a a nope b", int(3)),
                (T, "TOUCH a nope", int(1)),
                (T, "TYPE a", status("string")),
                (T, "TYPE l", status("list")),
                (T, "TYPE nope", status("none")),
                (T, "PEXPIRE b 10", int(1)),
                (T + 10, "EXISTS b", int(1)),
                (T + 11, "EXISTS b", int(0)),
                (T + 11, "DEL a a b nope", int(1)),
                (T, "UNLINK l", int(1)),
                (T, "DBSIZE", int(0)),
                (
                    T,
                    "DEL",
                    error("ERR wrong number of arguments for 'del' command"),
                ),
                (
                    T,
                    "TYPE",
                    error("ERR wrong number of arguments for 'type' command"),
                ),
            ],
        );
    }

    #[test]
    fn expire_sets_and_ttl_rounds_like_redis() {
        check_at(&[
            (T, "TTL k", int(-2)),
            (T, "PTTL k", int(-2)),
            (T, "SET k v", ok()),
            (T, "TTL k", int(-1)),
            (T, "EXPIRETIME k", int(-1)),
            (T, "EXPIRE k 10", int(1)),
            (T, "TTL k", int(10)),
            (T + 1_499, "TTL k", int(9)),
            (T + 1_500, "TTL k", int(9)),
            (T + 1_501, "TTL k", int(8)),
            (T + 9_600, "TTL k", int(0)),
            (T, "PTTL k", int(10_000)),
            (T, "EXPIRETIME k", int(1_700_000_010)),
            (T, "PEXPIRETIME k", int(1_700_000_010_000)),
            (T + 9_999, "GET k", bulk("v")),
            (T + 10_000, "GET k", bulk("v")),
            (T + 10_000, "PTTL k", int(0)),
            (T + 10_001, "GET k", Reply::Nil),
            (T + 10_001, "TTL k", int(-2)),
            (T, "EXPIRE nope 10", int(0)),
        ]);
    }

    #[test]
    fn expire_in_the_past_deletes_the_key() {
        check_at(&[
            (T, "SET k v", ok()),
            (T, "EXPIRE k -1", int(1)),
            (T, "EXISTS k", int(0)),
            (T, "SET k v", ok()),
            (T, "PEXPIREAT k 1", int(1)),
            (T, "EXISTS k", int(0)),
            (T, "SET k v", ok()),
            (T, "EXPIREAT k 1700000000", int(1)),
            (T, "EXISTS k", int(0)),
            (T, "SET k v", ok()),
            (T, "PEXPIRE k 0", int(1)),
            (T, "EXISTS k", int(0)),
            (T, "SET k v", ok()),
            (T, "PEXPIREAT k 1700000000001", int(1)),
            (T, "PTTL k", int(1)),
        ]);
    }

    #[test]
    fn expire_conditions_follow_redis() {
        check_at(&[
            (T, "SET k v", ok()),
            (T, "EXPIRE k 100 XX", int(0)),
            (T, "EXPIRE k 100 GT", int(0)),
            (T, "EXPIRE k 100 LT", int(1)),
            (T, "EXPIRE k 50 NX", int(0)),
            (T, "EXPIRE k 200 LT", int(0)),
            (T, "EXPIRE k 100 LT", int(0)),
            (T, "EXPIRE k 50 lt", int(1)),
            (T, "EXPIRE k 50 GT", int(0)),
            (T, "EXPIRE k 60 gt xx", int(1)),
            (T, "TTL k", int(60)),
            (T, "PERSIST k", int(1)),
            (T, "PERSIST k", int(0)),
            (T, "PERSIST nope", int(0)),
            (T, "EXPIRE k 10 NX", int(1)),
            (T, "EXPIRE nope 10 XX", int(0)),
            (
                T,
                "EXPIRE k 10 NX XX",
                error("ERR NX and XX, GT or LT options at the same time are not compatible"),
            ),
            (
                T,
                "EXPIRE k 10 GT NX",
                error("ERR NX and XX, GT or LT options at the same time are not compatible"),
            ),
            (
                T,
                "EXPIRE k 10 GT LT",
                error("ERR GT and LT options at the same time are not compatible"),
            ),
            (T, "EXPIRE k 10 NX FOO", error("ERR Unsupported option FOO")),
            (T, "EXPIRE k x FOO", error("ERR Unsupported option FOO")),
            (
                T,
                "EXPIRE k x",
                error("ERR value is not an integer or out of range"),
            ),
            (
                T,
                "EXPIRE k 9223372036854775",
                error("ERR invalid expire time in 'expire' command"),
            ),
            (
                T,
                "EXPIRE k -9223372036854776",
                error("ERR invalid expire time in 'expire' command"),
            ),
            (
                T,
                "PEXPIRE k 9223372036854775807",
                error("ERR invalid expire time in 'pexpire' command"),
            ),
            (
                T,
                "EXPIREAT k 9223372036854776",
                error("ERR invalid expire time in 'expireat' command"),
            ),
            (T, "PEXPIREAT k 9223372036854775807", int(1)),
            (T, "EXPIREAT k 9223372036854775", int(1)),
            (T, "TTL k", int(9_223_370_336_854_775)),
        ]);
    }

    #[test]
    fn keys_lists_live_matches_in_key_order() {
        check_at(&[
            (T, "MSET user:2 a user:1 b other c user:3 d", ok()),
            (T, "PEXPIRE user:3 5", int(1)),
            (T, "KEYS user:*", list(&["user:1", "user:2", "user:3"])),
            (T + 5, "KEYS user:*", list(&["user:1", "user:2", "user:3"])),
            (T + 6, "KEYS user:*", list(&["user:1", "user:2"])),
            (T + 6, "KEYS *", list(&["other", "user:1", "user:2"])),
            (T + 6, "KEYS user:[13]", list(&["user:1"])),
            (T + 5, "KEYS nothing", list(&[])),
        ]);
    }

    #[test]
    fn scan_checks_its_arguments() {
        check_at_on(
            model_with_list("b"),
            &[
                (T, "SCAN x", error("ERR invalid cursor")),
                (T, "SCAN -", error("ERR invalid cursor")),
                (T, "SCAN 18446744073709551616", error("ERR invalid cursor")),
                (T, "SCAN 0 COUNT 0", error("ERR syntax error")),
                (
                    T,
                    "SCAN 0 COUNT x",
                    error("ERR value is not an integer or out of range"),
                ),
                (T, "SCAN 0 COUNT", error("ERR syntax error")),
                (T, "SCAN 0 FOO bar", error("ERR syntax error")),
                (T, "SCAN 0", Reply::Array(vec![bulk("0"), list(&["b"])])),
                (T, "SCAN \"\"", Reply::Array(vec![bulk("0"), list(&["b"])])),
                (T, "SCAN +0", Reply::Array(vec![bulk("0"), list(&["b"])])),
                (
                    T,
                    "SCAN 18446744073709551615 COUNT 1000",
                    Reply::Array(vec![bulk("0"), list(&[])]),
                ),
                (T, "SET a 1", ok()),
                (
                    T,
                    "SCAN 0 COUNT 100 TYPE list",
                    Reply::Array(vec![bulk("0"), list(&["b"])]),
                ),
                (
                    T,
                    "SCAN 0 COUNT 100 MATCH a TYPE STRING",
                    Reply::Array(vec![bulk("0"), list(&["a"])]),
                ),
                (T, "PEXPIRE a 1", int(1)),
                (
                    T + 2,
                    "SCAN 0 COUNT 100 MATCH *",
                    Reply::Array(vec![bulk("0"), list(&["b"])]),
                ),
            ],
        );
    }

    /// Runs a full SCAN iteration with `count`, calling `between` after every call, and
    /// returns every key returned, in order.
    fn scan_all(
        model: &mut Model,
        session: &mut crate::model::Session,
        count: usize,
        mut between: impl FnMut(&mut Model, &mut crate::model::Session, usize),
    ) -> Vec<Vec<u8>> {
        let mut cursor = b"0".to_vec();
        let mut seen = Vec::new();
        for call in 0..100_000 {
            let argv = vec![
                b"SCAN".to_vec(),
                cursor.clone(),
                b"COUNT".to_vec(),
                count.to_string().into_bytes(),
            ];
            let Reply::Array(parts) = model.exec(T, session, &argv) else {
                panic!("SCAN answers an array");
            };
            let [Reply::Bulk(next), Reply::Array(keys)] = parts.as_slice() else {
                panic!("SCAN answers a cursor and a list");
            };
            for key in keys {
                let Reply::Bulk(key) = key else {
                    panic!("keys are bulk strings")
                };
                seen.push(key.clone());
            }
            if next.as_slice() == b"0" {
                return seen;
            }
            cursor = next.clone();
            between(model, session, call);
        }
        panic!("SCAN did not finish");
    }

    #[test]
    fn scan_returns_every_stable_key_once_despite_writes() {
        let mut model = Model::new(NodeConfig::standalone(3));
        let mut session = model.connect("127.0.0.1:1");
        for index in 0..300 {
            let argv = words(&format!("SET key:{index} v"));
            model.exec(T, &mut session, &argv);
        }
        // Keys 0..100 stay; 100..300 are deleted along the way; others are added.
        let seen = scan_all(&mut model, &mut session, 7, |model, session, call| {
            for index in 0..4 {
                let victim = 100 + call * 4 + index;
                model.exec(T, session, &words(&format!("DEL key:{victim}")));
                model.exec(T, session, &words(&format!("SET added:{call}:{index} v")));
            }
        });
        let mut stable: Vec<Vec<u8>> = seen
            .iter()
            .filter(|key| {
                std::str::from_utf8(key)
                    .ok()
                    .and_then(|key| key.strip_prefix("key:"))
                    .and_then(|index| index.parse::<usize>().ok())
                    .is_some_and(|index| index < 100)
            })
            .cloned()
            .collect();
        assert_eq!(stable.len(), 100, "each stable key exactly once");
        stable.sort();
        stable.dedup();
        assert_eq!(stable.len(), 100, "no stable key twice");
        let mut all = seen.clone();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), seen.len(), "no key is ever returned twice");
    }

    #[test]
    fn scan_with_count_one_and_a_huge_count_both_cover_everything() {
        for count in [1, 3, 1_000_000_000] {
            let mut model = Model::new(NodeConfig::standalone(3));
            let mut session = model.connect("127.0.0.1:1");
            for index in 0..50 {
                model.exec(T, &mut session, &words(&format!("SET k{index} v")));
            }
            let mut seen = scan_all(&mut model, &mut session, count, |_, _, _| {});
            seen.sort();
            let mut expected: Vec<Vec<u8>> = (0..50)
                .map(|index| format!("k{index}").into_bytes())
                .collect();
            expected.sort();
            assert_eq!(seen, expected, "COUNT {count}");
        }
    }

    #[test]
    fn rename_moves_the_value_and_its_ttl() {
        check_at(&[
            (T, "RENAME nope x", error("ERR no such key")),
            (T, "RENAMENX nope x", error("ERR no such key")),
            (T, "SET a 1", ok()),
            (T, "PEXPIRE a 1000", int(1)),
            (T, "RENAME a a", ok()),
            (T, "RENAMENX a a", int(0)),
            (T, "PTTL a", int(1000)),
            (T, "SET b 2", ok()),
            (T, "RENAMENX a b", int(0)),
            (T, "RENAME a b", ok()),
            (T, "EXISTS a", int(0)),
            (T, "GET b", bulk("1")),
            (T, "PTTL b", int(1000)),
            (T, "RENAMENX b c", int(1)),
            (T, "PTTL c", int(1000)),
            (T + 1000, "PTTL c", int(0)),
            (T + 1001, "RENAME c d", error("ERR no such key")),
        ]);
    }

    #[test]
    fn copy_and_move_between_databases() {
        check_at(&[
            (T, "SET a 1", ok()),
            (T, "PEXPIRE a 500", int(1)),
            (
                T,
                "COPY a a",
                error("ERR source and destination objects are the same"),
            ),
            (
                T,
                "COPY a a DB 0",
                error("ERR source and destination objects are the same"),
            ),
            (T, "COPY a b FOO", error("ERR syntax error")),
            (T, "COPY a b DB", error("ERR syntax error")),
            (T, "COPY a b DB 16", error("ERR DB index is out of range")),
            (T, "COPY a b DB -1", error("ERR DB index is out of range")),
            (
                T,
                "COPY a b DB 4294967296",
                error("ERR value is out of range, value must between -2147483648 and 2147483647"),
            ),
            (T, "COPY nope b", int(0)),
            (T, "COPY a b", int(1)),
            (T, "PTTL b", int(500)),
            (T, "COPY a b", int(0)),
            (T, "SET a 2", ok()),
            (T, "COPY a b replace", int(1)),
            (T, "GET b", bulk("2")),
            (T, "PTTL b", int(-1)),
            (T, "COPY a a DB 1", int(1)),
            (
                T,
                "MOVE a 0",
                error("ERR source and destination objects are the same"),
            ),
            (T, "MOVE a 16", error("ERR DB index is out of range")),
            (
                T,
                "MOVE a x",
                error("ERR value is not an integer or out of range"),
            ),
            (T, "MOVE a 1", int(0)),
            (T, "MOVE nope 1", int(0)),
            (T, "PEXPIRE b 300", int(1)),
            (T, "MOVE b 1", int(1)),
            (T, "EXISTS b", int(0)),
            (T, "SELECT 1", ok()),
            (T, "PTTL b", int(300)),
            (T, "GET a", bulk("2")),
        ]);
    }

    #[test]
    fn swapdb_swaps_whole_databases() {
        check_at(&[
            (T, "SET a 0", ok()),
            (T, "SWAPDB 0 1", ok()),
            (T, "EXISTS a", int(0)),
            (T, "SELECT 1", ok()),
            (T, "GET a", bulk("0")),
            (T, "SWAPDB 1 1", ok()),
            (T, "GET a", bulk("0")),
            (T, "SWAPDB x 1", error("ERR invalid first DB index")),
            (T, "SWAPDB 1 x", error("ERR invalid second DB index")),
            (T, "SWAPDB 1 16", error("ERR DB index is out of range")),
            (T, "SWAPDB -1 0", error("ERR DB index is out of range")),
            (
                T,
                "SWAPDB 4294967296 0",
                error("ERR invalid first DB index"),
            ),
        ]);
    }

    /// Goal: FLUSHDB, FLUSHALL and SWAPDB break a WATCH exactly when Redis 7.0's
    /// `touchAllWatchedKeysInDb` would: a live key on either side breaks it; a key absent on
    /// both sides, or absent and replaced by a stale (expired, undeleted) one, does not; a
    /// stale key thrown away breaks only a watcher that saw it alive; a database swapped
    /// with itself touches nothing. Method: one watcher and one other client per case; the
    /// setup runs at T on the other client, the WATCH at `T + watch_delay_ms`, then the
    /// operation, then MULTI/PING/EXEC on the watcher (nil = broken).
    #[test]
    fn flushes_and_swaps_break_watches_as_redis_judges_them() {
        // (setup on the other client, watch in db, delay before WATCH, operation, broken)
        let cases: &[(&[&str], usize, u64, &str, bool)] = &[
            (&["SET k 1"], 0, 0, "FLUSHDB", true),
            (&[], 0, 0, "FLUSHDB", false),
            (&["SET k 1"], 0, 0, "FLUSHALL", true),
            (&[], 0, 0, "FLUSHALL", false),
            (&["SET other 1"], 0, 0, "FLUSHALL", false),
            // Watched while stale: thrown away, nothing changed logically.
            (&["SET k 1 PX 1"], 0, 5, "FLUSHDB", false),
            // Watched alive, stale by the flush: the watcher saw it live, so it breaks.
            (&["SET k 1 PX 3"], 0, 0, "FLUSHDB", true),
            (&["SET k 1"], 0, 0, "SWAPDB 0 1", true),
            (
                &["SELECT 1", "SET k 1", "SELECT 0"],
                0,
                0,
                "SWAPDB 0 1",
                true,
            ),
            (&[], 0, 0, "SWAPDB 0 1", false),
            (
                &["SELECT 1", "SET k 1 PX 1", "SELECT 0"],
                0,
                5,
                "SWAPDB 0 1",
                false,
            ),
            (&["SET k 1 PX 1"], 0, 5, "SWAPDB 0 1", false),
            (
                &["SET k 1 PX 1", "SELECT 1", "SET k 2 PX 1", "SELECT 0"],
                0,
                5,
                "SWAPDB 0 1",
                false,
            ),
            (
                &["SET k 1 PX 1", "SELECT 1", "SET k 2", "SELECT 0"],
                0,
                5,
                "SWAPDB 0 1",
                true,
            ),
            (&["SET k 1"], 0, 0, "SWAPDB 0 0", false),
            (
                &["SELECT 5", "SET k 1", "SELECT 0"],
                5,
                0,
                "SWAPDB 5 0",
                true,
            ),
        ];
        for (setup, db, watch_delay_ms, operation, broken) in cases {
            let mut model = Model::new(NodeConfig::standalone(1));
            let mut watcher = model.connect("127.0.0.1:1");
            let mut other = model.connect("127.0.0.1:2");
            for line in *setup {
                model.exec(T, &mut other, &words(line));
            }
            let at = T + watch_delay_ms;
            model.exec(at, &mut watcher, &words(&format!("SELECT {db}")));
            model.exec(at, &mut watcher, &words("WATCH k"));
            model.exec(at + 5, &mut other, &words(operation));
            model.exec(at + 5, &mut watcher, &words("MULTI"));
            model.exec(at + 5, &mut watcher, &words("PING"));
            let expected = if *broken {
                Reply::NilArray
            } else {
                Reply::Array(vec![Reply::Status("PONG".to_owned())])
            };
            assert_eq!(
                model.exec(at + 5, &mut watcher, &words("EXEC")),
                expected,
                "{setup:?}, WATCH k in db {db} after {watch_delay_ms} ms, {operation}"
            );
        }
    }

    #[test]
    fn randomkey_skips_expired_keys_and_is_seeded() {
        check_at(&[
            (T, "RANDOMKEY", Reply::Nil),
            (T, "SET gone 1", ok()),
            (T, "PEXPIRE gone 1", int(1)),
            (T + 2, "RANDOMKEY", Reply::Nil),
            (T, "SET only 1", ok()),
            (T, "RANDOMKEY", bulk("only")),
        ]);
        let draws = |seed: u64| {
            let mut model = Model::new(NodeConfig::standalone(seed));
            let mut session = model.connect("127.0.0.1:1");
            model.exec(T, &mut session, &words("MSET a 1 b 2 c 3 d 4"));
            (0..20)
                .map(|_| model.exec(T, &mut session, &words("RANDOMKEY")))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(9), draws(9));
        let distinct: std::collections::BTreeSet<String> =
            draws(9).iter().map(|reply| format!("{reply:?}")).collect();
        assert!(distinct.len() > 1, "20 draws from 4 keys hit several keys");
    }

    #[test]
    fn glob_follows_stringmatchlen() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("*", "", false),
            ("", "", true),
            ("a*", "a", true),
            ("a**", "a", true),
            ("*a", "a", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("[]", "a", false),
            ("[abc", "b", true),
            ("[abc", "bc", false),
            ("[", "x", false),
            ("ab\\", "ab\\", true),
            ("Hello", "hello", false),
            ("*b*c", "abxbc", true),
            ("*b*c", "abxbcd", false),
            ("a*b*c*d", "axbxcxd", true),
            ("user:*:count", "user:42:count", true),
            ("user:*:count", "user:42:counts", false),
            ("*?", "", false),
            ("?*", "x", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn glob_nocase_folds_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("MAXMEMORY*", "maxmemory-policy", true),
            ("h[A-C]llo", "hbllo", true),
            ("h[a-c]llo", "HBLLO", true),
            ("h[^B]llo", "hbllo", false),
            ("[\\A]", "a", false),
            ("[\\A]", "A", true),
            ("[Z-a]", "z", false),
            ("[Z-a]", "b", false),
            ("\\A", "a", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                super::glob_match_nocase(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern:?} ~ {text:?}"
            );
        }
        assert!(!glob_match(b"ABC", b"abc"));
    }

    #[test]
    fn glob_is_fast_on_hostile_patterns() {
        let pattern = "a*".repeat(10_000) + "b";
        let text = "a".repeat(20_000);
        assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
        let stars = "*".repeat(1_000_000);
        assert!(glob_match(stars.as_bytes(), b"x"));
    }
}

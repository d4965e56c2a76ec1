//! List commands: LPUSH/RPUSH(X), LPOP/RPOP, LLEN, LINDEX, LRANGE, LTRIM, LREM, LSET,
//! LINSERT and LPOS, with Redis 7.0.15's replies and errors.
//!
//! A list is a `VecDeque`, head first. Redis's quicklist/listpack encodings are invisible to
//! clients, so nothing of them is modelled. Argument order matters for which error a client
//! sees first: each handler parses its arguments and looks the key up in the same order as
//! the Redis source, so a bad index on a missing key answers what Redis answers.

use std::collections::VecDeque;

use super::{arg_i64, is_opt, len_reply as int, read_as, write_as};
use crate::model::command::{DENYOOM, FAST, Handler, READONLY, Spec, WRITE};
use crate::model::db::Value;
use crate::model::num;
use crate::model::reply::{Reply, bulk, bulks, err, msg, ok};
use crate::model::{Core, Ctx};

/// A data command whose keys are at `first_key..=last_key` by `step`.
const fn keyed(
    name: &'static str,
    arity: i32,
    flags: u32,
    (first_key, last_key, step): (i32, i32, i32),
    handler: fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply,
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

/// The single key is the first argument, as in every list command here.
const KEY1: (i32, i32, i32) = (1, 1, 1);

/// The list commands.
pub static COMMANDS: &[Spec] = &[
    keyed("lpush", -3, WRITE | DENYOOM | FAST, KEY1, lpush),
    keyed("rpush", -3, WRITE | DENYOOM | FAST, KEY1, rpush),
    keyed("lpushx", -3, WRITE | DENYOOM | FAST, KEY1, lpushx),
    keyed("rpushx", -3, WRITE | DENYOOM | FAST, KEY1, rpushx),
    keyed("lpop", -2, WRITE | FAST, KEY1, lpop),
    keyed("rpop", -2, WRITE | FAST, KEY1, rpop),
    keyed("llen", 2, READONLY | FAST, KEY1, llen),
    keyed("lindex", 3, READONLY, KEY1, lindex),
    keyed("lrange", 4, READONLY, KEY1, lrange),
    keyed("ltrim", 4, WRITE, KEY1, ltrim),
    keyed("lrem", 4, WRITE, KEY1, lrem),
    keyed("lset", 4, WRITE | DENYOOM, KEY1, lset),
    keyed("linsert", 5, WRITE | DENYOOM, KEY1, linsert),
    keyed("lpos", -3, READONLY, KEY1, lpos),
    keyed("lmove", 5, WRITE | DENYOOM, (1, 2, 1), lmove),
    keyed("rpoplpush", 3, WRITE | DENYOOM, (1, 2, 1), rpoplpush),
];

/// The list under `key` for reading (counts a keyspace hit or miss): `Ok(None)` if absent,
/// WRONGTYPE if the key holds another type.
fn read_list<'a>(
    core: &'a mut Core,
    ctx: &Ctx,
    key: &[u8],
) -> Result<Option<&'a VecDeque<Vec<u8>>>, Reply> {
    read_as(core, ctx, key, Value::as_list)
}

/// The list under `key` for writing (no hit/miss counting, as Redis's lookupKeyWrite).
fn write_list<'a>(
    core: &'a mut Core,
    ctx: &Ctx,
    key: &[u8],
) -> Result<Option<&'a mut VecDeque<Vec<u8>>>, Reply> {
    write_as(core, ctx, key, Value::as_list_mut)
}

/// After a write that changed `key`: delete it if emptied, and tell WATCH.
fn finish_write(core: &mut Core, ctx: &Ctx, key: &[u8]) {
    core.db(ctx).remove_if_empty(key);
    core.signal_modified(ctx.db, key);
}

/// Resolves Redis's inclusive `start..=end` index pair (negatives count from the tail) against
/// a length. `None` when the range selects nothing; otherwise in-bounds indices.
pub fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = i64::try_from(len).expect("a length fits i64");
    let start = if start < 0 {
        start.saturating_add(len).max(0)
    } else {
        start
    };
    let end = if end < 0 {
        end.saturating_add(len)
    } else {
        end
    };
    if start > end || start >= len {
        return None;
    }
    let end = end.min(len - 1);
    Some((
        usize::try_from(start).expect("non-negative"),
        usize::try_from(end).expect("non-negative"),
    ))
}

fn push(
    core: &mut Core,
    ctx: &mut Ctx,
    argv: &[Vec<u8>],
    head: bool,
    only_existing: bool,
) -> Reply {
    let key = &argv[1];
    let add = |list: &mut VecDeque<Vec<u8>>| {
        for element in &argv[2..] {
            if head {
                list.push_front(element.clone());
            } else {
                list.push_back(element.clone());
            }
        }
        list.len()
    };
    let len = match write_list(core, ctx, key) {
        Err(reply) => return reply,
        Ok(Some(list)) => add(list),
        Ok(None) if only_existing => return Reply::Integer(0),
        Ok(None) => {
            let mut list = VecDeque::new();
            let len = add(&mut list);
            core.db(ctx).insert(key.clone(), Value::List(list), None);
            len
        }
    };
    core.signal_modified(ctx.db, key);
    int(len)
}

fn lpush(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    push(core, ctx, argv, true, false)
}

fn rpush(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    push(core, ctx, argv, false, false)
}

fn lpushx(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    push(core, ctx, argv, true, true)
}

fn rpushx(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    push(core, ctx, argv, false, true)
}

/// Parses a count that must be zero or more. Redis answers "value is out of range, must be
/// positive" both for a negative count and for one that is not an integer at all.
fn positive_count(arg: &[u8]) -> Result<usize, Reply> {
    non_negative(arg, msg::NOT_POSITIVE)
}

fn pop(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], head: bool) -> Reply {
    if argv.len() > 3 {
        return crate::model::reply::wrong_arity(if head { "lpop" } else { "rpop" });
    }
    let count = match argv.get(2).map(|arg| positive_count(arg)) {
        None => None,
        Some(Ok(count)) => Some(count),
        Some(Err(reply)) => return reply,
    };
    let key = &argv[1];
    let list = match write_list(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) if count.is_some() => return Reply::NilArray,
        Ok(None) => return Reply::Nil,
        Ok(Some(list)) => list,
    };
    let take = |list: &mut VecDeque<Vec<u8>>| {
        if head {
            list.pop_front()
        } else {
            list.pop_back()
        }
    };
    let reply = match count {
        Some(0) => return Reply::Array(Vec::new()),
        Some(count) => {
            let popped = (0..count.min(list.len())).filter_map(|_| take(list));
            bulks(popped.collect::<Vec<_>>())
        }
        // A stored list is never empty; if one were, it would read as a missing key.
        None => take(list).map_or(Reply::Nil, bulk),
    };
    finish_write(core, ctx, key);
    reply
}

fn lpop(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    pop(core, ctx, argv, true)
}

fn rpop(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    pop(core, ctx, argv, false)
}

fn llen(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_list(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(list) => int(list.map_or(0, VecDeque::len)),
    }
}

/// A single index (negative from the tail) resolved against `len`.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).expect("a length fits i64");
    let index = if index < 0 { index + len } else { index };
    if (0..len).contains(&index) {
        usize::try_from(index).ok()
    } else {
        None
    }
}

fn lindex(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    // Redis looks the key up before it parses the index.
    let list = match read_list(core, ctx, &argv[1]) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Nil,
        Ok(Some(list)) => list,
    };
    let index = match arg_i64(&argv[2]) {
        Ok(index) => index,
        Err(reply) => return reply,
    };
    match resolve_index(index, list.len()) {
        Some(index) => bulk(&list[index]),
        None => Reply::Nil,
    }
}

fn lrange(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let (start, end) = match (arg_i64(&argv[2]), arg_i64(&argv[3])) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    let list = match read_list(core, ctx, &argv[1]) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(list)) => list,
    };
    match clamp_range(start, end, list.len()) {
        Some((start, end)) => bulks(list.range(start..=end)),
        None => Reply::Array(Vec::new()),
    }
}

fn ltrim(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let (start, end) = match (arg_i64(&argv[2]), arg_i64(&argv[3])) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    let key = &argv[1];
    let list = match write_list(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return ok(),
        Ok(Some(list)) => list,
    };
    match clamp_range(start, end, list.len()) {
        Some((start, end)) => {
            list.truncate(end + 1);
            list.drain(..start);
        }
        None => list.clear(),
    }
    // Redis signals LTRIM's key even when nothing was trimmed.
    finish_write(core, ctx, key);
    ok()
}

fn lrem(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let count = match arg_i64(&argv[2]) {
        Ok(count) => count,
        Err(reply) => return reply,
    };
    let key = &argv[1];
    let element = &argv[3];
    let list = match write_list(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Integer(0),
        Ok(Some(list)) => list,
    };
    // 0 removes every match; otherwise at most |count|, from the tail when negative.
    let limit = if count == 0 {
        u64::MAX
    } else {
        count.unsigned_abs()
    };
    let mut removed: u64 = 0;
    let mut kept: VecDeque<Vec<u8>> = VecDeque::with_capacity(list.len());
    if count >= 0 {
        for item in list.drain(..) {
            if removed < limit && item == *element {
                removed += 1;
            } else {
                kept.push_back(item);
            }
        }
    } else {
        for item in list.drain(..).rev() {
            if removed < limit && item == *element {
                removed += 1;
            } else {
                kept.push_front(item);
            }
        }
    }
    *list = kept;
    if removed > 0 {
        finish_write(core, ctx, key);
    }
    Reply::Integer(i64::try_from(removed).expect("bounded by a length"))
}

fn lset(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let key = &argv[1];
    let list = match write_list(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return err(msg::NO_SUCH_KEY),
        Ok(Some(list)) => list,
    };
    let index = match arg_i64(&argv[2]) {
        Ok(index) => index,
        Err(reply) => return reply,
    };
    let Some(index) = resolve_index(index, list.len()) else {
        return err(msg::OUT_OF_RANGE);
    };
    list[index] = argv[3].clone();
    core.signal_modified(ctx.db, key);
    ok()
}

fn linsert(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let after = if is_opt(&argv[2], "after") {
        true
    } else if is_opt(&argv[2], "before") {
        false
    } else {
        return err(msg::SYNTAX);
    };
    let key = &argv[1];
    let list = match write_list(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Integer(0),
        Ok(Some(list)) => list,
    };
    let Some(pivot) = list.iter().position(|item| *item == argv[3]) else {
        return Reply::Integer(-1);
    };
    list.insert(pivot + usize::from(after), argv[4].clone());
    let len = list.len();
    core.signal_modified(ctx.db, key);
    int(len)
}

fn lpos(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let mut rank: i64 = 1;
    let mut count: Option<usize> = None;
    let mut maxlen: usize = 0;
    let mut index = 3;
    while index < argv.len() {
        let has_value = index + 1 < argv.len();
        let option = &argv[index];
        if is_opt(option, "rank") && has_value {
            rank = match arg_i64(&argv[index + 1]) {
                Ok(rank) => rank,
                Err(reply) => return reply,
            };
            if rank == 0 {
                return err(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                );
            }
        } else if is_opt(option, "count") && has_value {
            count = match non_negative(&argv[index + 1], "ERR COUNT can't be negative") {
                Ok(count) => Some(count),
                Err(reply) => return reply,
            };
        } else if is_opt(option, "maxlen") && has_value {
            maxlen = match non_negative(&argv[index + 1], "ERR MAXLEN can't be negative") {
                Ok(maxlen) => maxlen,
                Err(reply) => return reply,
            };
        } else {
            return err(msg::SYNTAX);
        }
        index += 2;
    }
    let list = match read_list(core, ctx, &argv[1]) {
        Err(reply) => return reply,
        Ok(None) if count.is_some() => return Reply::Array(Vec::new()),
        Ok(None) => return Reply::Nil,
        Ok(Some(list)) => list,
    };
    // A negative rank walks from the tail. Redis negates it in C, where LONG_MIN stays
    // negative and then matches at once, which is rank 1 from the tail.
    let from_tail = rank < 0;
    let skip = usize::try_from(rank.unsigned_abs().saturating_sub(1)).unwrap_or(usize::MAX);
    let skip = if rank == i64::MIN { 0 } else { skip };
    let scanned = if maxlen == 0 { list.len() } else { maxlen };
    let positions: Box<dyn Iterator<Item = usize>> = if from_tail {
        Box::new((0..list.len()).rev().take(scanned))
    } else {
        Box::new((0..list.len()).take(scanned))
    };
    let mut matches = positions
        .filter(|&position| list[position] == argv[2])
        .skip(skip);
    match count {
        None => matches.next().map_or(Reply::Nil, int),
        Some(0) => Reply::Array(matches.map(int).collect()),
        Some(count) => Reply::Array(matches.take(count).map(int).collect()),
    }
}

/// LMOVE's LEFT or RIGHT: true for the head.
fn side(arg: &[u8]) -> Result<bool, Reply> {
    if is_opt(arg, "left") {
        Ok(true)
    } else if is_opt(arg, "right") {
        Ok(false)
    } else {
        Err(err(msg::SYNTAX))
    }
}

/// Pops from one end of `argv[1]` and pushes onto one end of `argv[2]`, which may be the same
/// list (a rotation). Nothing moves unless both keys hold lists or the destination is absent.
fn move_generic(
    core: &mut Core,
    ctx: &mut Ctx,
    argv: &[Vec<u8>],
    from_head: bool,
    to_head: bool,
) -> Reply {
    let (source, destination) = (&argv[1], &argv[2]);
    match write_list(core, ctx, source) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Nil,
        Ok(Some(_)) => {}
    }
    if let Err(reply) = write_list(core, ctx, destination) {
        return reply;
    }
    let Ok(Some(list)) = write_list(core, ctx, source) else {
        unreachable!("the source list was just found");
    };
    let value = if from_head {
        list.pop_front()
    } else {
        list.pop_back()
    };
    // A stored list is never empty; if one were, it would read as a missing key.
    let Some(value) = value else {
        return Reply::Nil;
    };
    match write_list(core, ctx, destination) {
        Ok(Some(list)) if to_head => list.push_front(value.clone()),
        Ok(Some(list)) => list.push_back(value.clone()),
        _ => {
            let list = VecDeque::from([value.clone()]);
            core.db(ctx)
                .insert(destination.clone(), Value::List(list), None);
        }
    }
    core.signal_modified(ctx.db, destination);
    finish_write(core, ctx, source);
    bulk(value)
}

fn lmove(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match (side(&argv[3]), side(&argv[4])) {
        (Ok(from_head), Ok(to_head)) => move_generic(core, ctx, argv, from_head, to_head),
        (Err(reply), _) | (_, Err(reply)) => reply,
    }
}

fn rpoplpush(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    move_generic(core, ctx, argv, false, true)
}

/// Parses a count that must not be negative, answering `message` if it is negative or not an
/// integer (Redis uses the one message for both).
pub fn non_negative(arg: &[u8], message: &str) -> Result<usize, Reply> {
    num::parse_i64(arg)
        .and_then(|value| usize::try_from(value).ok())
        .ok_or_else(|| err(message))
}

#[cfg(test)]
mod tests {
    use crate::model::Reply;
    use crate::model::testkit::*;

    fn ints(items: &[i64]) -> Reply {
        Reply::Array(items.iter().map(|item| int(*item)).collect())
    }

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

    #[test]
    fn push_and_pop_from_both_ends() {
        check(&[
            ("LPUSH l a b c", int(3)),
            ("RPUSH l d", int(4)),
            ("LRANGE l 0 -1", bulks(&["c", "b", "a", "d"])),
            ("LPUSHX nosuch a", int(0)),
            ("RPUSHX nosuch a", int(0)),
            ("GONE nosuch", int(0)),
            ("LPUSHX l z", int(5)),
            ("RPUSHX l y", int(6)),
            ("LPOP l", bulk("z")),
            ("RPOP l", bulk("y")),
            ("LPOP l 2", bulks(&["c", "b"])),
            ("RPOP l 0", Reply::Array(vec![])),
            ("RPOP l 5", bulks(&["d", "a"])),
            ("GONE l", int(0)),
            ("LPOP l", Reply::Nil),
            ("LPOP l 1", Reply::NilArray),
            ("LPOP l 0", Reply::NilArray),
            (
                "LPOP l -1",
                error("ERR value is out of range, must be positive"),
            ),
            (
                "LPOP l x",
                error("ERR value is out of range, must be positive"),
            ),
            (
                "LPOP l 1 2",
                error("ERR wrong number of arguments for 'lpop' command"),
            ),
            (
                "LPUSH l",
                error("ERR wrong number of arguments for 'lpush' command"),
            ),
        ]);
    }

    #[test]
    fn wrong_type_is_refused_everywhere() {
        check(&[
            ("HSET s f v", int(1)),
            ("LPUSH s a", error(WRONGTYPE)),
            ("LPUSHX s a", error(WRONGTYPE)),
            ("LPOP s", error(WRONGTYPE)),
            ("LLEN s", error(WRONGTYPE)),
            ("LINDEX s 0", error(WRONGTYPE)),
            ("LRANGE s 0 1", error(WRONGTYPE)),
            ("LTRIM s 0 1", error(WRONGTYPE)),
            ("LREM s 0 a", error(WRONGTYPE)),
            ("LSET s 0 a", error(WRONGTYPE)),
            ("LINSERT s BEFORE a b", error(WRONGTYPE)),
            ("LPOS s a", error(WRONGTYPE)),
        ]);
    }

    #[test]
    fn push_keeps_the_ttl() {
        let mut model = check(&[("RPUSH l a", int(1))]);
        model.core.dbs[0].set_expire(b"l", Some(50_000));
        let mut session = model.connect("127.0.0.1:2");
        for line in ["RPUSH l b", "LPUSH l c", "LSET l 0 d", "LPOP l"] {
            let argv: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            model.exec(1_000, &mut session, &argv);
        }
        let entry = model.core.dbs[0].peek(b"l").expect("still there");
        assert_eq!(entry.expire_at_ms, Some(50_000));
    }

    #[test]
    fn index_range_and_trim() {
        check(&[
            ("RPUSH l a b c d e", int(5)),
            ("LLEN l", int(5)),
            ("LLEN nosuch", int(0)),
            ("LINDEX l 0", bulk("a")),
            ("LINDEX l -1", bulk("e")),
            ("LINDEX l 5", Reply::Nil),
            ("LINDEX l -6", Reply::Nil),
            ("LINDEX l x", error(NOT_INTEGER)),
            ("LINDEX nosuch x", Reply::Nil),
            ("LRANGE l 1 2", bulks(&["b", "c"])),
            ("LRANGE l -100 100", bulks(&["a", "b", "c", "d", "e"])),
            ("LRANGE l 3 1", Reply::Array(vec![])),
            ("LRANGE l 5 10", Reply::Array(vec![])),
            (
                "LRANGE l -9223372036854775808 -9223372036854775808",
                Reply::Array(vec![]),
            ),
            ("LRANGE nosuch x 1", error(NOT_INTEGER)),
            ("LRANGE nosuch 0 1", Reply::Array(vec![])),
            ("LTRIM l 1 -2", ok()),
            ("LRANGE l 0 -1", bulks(&["b", "c", "d"])),
            ("LTRIM l 0 100", ok()),
            ("LLEN l", int(3)),
            ("LTRIM l x 1", error(NOT_INTEGER)),
            ("LTRIM nosuch 0 1", ok()),
            ("LTRIM l 2 1", ok()),
            ("GONE l", int(0)),
        ]);
    }

    #[test]
    fn lrem_lset_linsert() {
        check(&[
            ("RPUSH l a b a c a", int(5)),
            ("LREM l 1 a", int(1)),
            ("LRANGE l 0 -1", bulks(&["b", "a", "c", "a"])),
            ("LREM l -1 a", int(1)),
            ("LRANGE l 0 -1", bulks(&["b", "a", "c"])),
            ("LREM l 0 zz", int(0)),
            ("LREM l x a", error(NOT_INTEGER)),
            ("LREM nosuch 0 a", int(0)),
            ("LSET l 1 A", ok()),
            ("LSET l -1 C", ok()),
            ("LRANGE l 0 -1", bulks(&["b", "A", "C"])),
            ("LSET l 3 x", error("ERR index out of range")),
            ("LSET l x x", error(NOT_INTEGER)),
            ("LSET nosuch x x", error("ERR no such key")),
            ("LINSERT l BEFORE A x", int(4)),
            ("LINSERT l after C y", int(5)),
            ("LRANGE l 0 -1", bulks(&["b", "x", "A", "C", "y"])),
            ("LINSERT l BEFORE nope z", int(-1)),
            ("LINSERT l middle A z", error("ERR syntax error")),
            ("LINSERT nosuch BEFORE a b", int(0)),
            ("LREM l 0 b", int(1)),
            ("LREM l -9223372036854775808 x", int(1)),
            ("LREM l 0 A", int(1)),
            ("LREM l 0 C", int(1)),
            ("LREM l 0 y", int(1)),
            ("GONE l", int(0)),
        ]);
    }

    #[test]
    fn move_between_lists_and_rotate() {
        check(&[
            ("RPUSH a 1 2 3", int(3)),
            ("LMOVE a b LEFT RIGHT", bulk("1")),
            ("RPOPLPUSH a b", bulk("3")),
            ("LRANGE b 0 -1", bulks(&["3", "1"])),
            ("LMOVE b b right left", bulk("1")),
            ("LRANGE b 0 -1", bulks(&["1", "3"])),
            ("LMOVE a a LEFT LEFT", bulk("2")),
            ("LMOVE a b LEFT up", error("ERR syntax error")),
            ("LMOVE nosuch b LEFT LEFT", Reply::Nil),
            ("HSET h f v", int(1)),
            ("LMOVE a h LEFT LEFT", error(WRONGTYPE)),
            ("LMOVE h a LEFT LEFT", error(WRONGTYPE)),
            ("LMOVE nosuch h LEFT LEFT", Reply::Nil),
            ("LRANGE a 0 -1", bulks(&["2"])),
            ("RPOPLPUSH a c", bulk("2")),
            ("GONE a", int(0)),
            ("LRANGE c 0 -1", bulks(&["2"])),
        ]);
    }

    #[test]
    fn lpos_options() {
        check(&[
            ("RPUSH l a b c 1 2 3 c c", int(8)),
            ("LPOS l c", int(2)),
            ("LPOS l c RANK 2", int(6)),
            ("LPOS l c RANK -1", int(7)),
            ("LPOS l c COUNT 0", ints(&[2, 6, 7])),
            ("LPOS l c COUNT 2 RANK -1", ints(&[7, 6])),
            ("LPOS l c RANK 1 MAXLEN 2", Reply::Nil),
            ("LPOS l c COUNT 0 MAXLEN 7", ints(&[2, 6])),
            ("LPOS l z COUNT 1", ints(&[])),
            ("LPOS l z", Reply::Nil),
            ("LPOS nosuch a", Reply::Nil),
            ("LPOS nosuch a COUNT 1", ints(&[])),
            ("LPOS l c RANK -9223372036854775808", int(7)),
            (
                "LPOS l c RANK 0",
                error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                ),
            ),
            ("LPOS l c COUNT -1", error("ERR COUNT can't be negative")),
            ("LPOS l c MAXLEN -1", error("ERR MAXLEN can't be negative")),
            ("LPOS l c RANK", error("ERR syntax error")),
            ("LPOS l c FOO 1", error("ERR syntax error")),
            ("LPOS l c RANK x", error(NOT_INTEGER)),
            ("LPOS l c COUNT x", error("ERR COUNT can't be negative")),
            ("LPOS l c MAXLEN x", error("ERR MAXLEN can't be negative")),
        ]);
    }
}

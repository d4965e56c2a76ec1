//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SPOP and SRANDMEMBER,
//! with Redis 7.0.15's replies and errors.
//!
//! A set is an `IndexSet`. Redis 7.0 stores a small set of canonical integers as an intset,
//! which lists its members in numeric order; the model keeps that visible order by inserting
//! such members at their sorted place while the set is all integers and at most
//! [`INTSET_ENTRIES_MAX`] long. Any other set lists members in insertion order (Redis's hash
//! table order is arbitrary, so no client can rely on it).

use indexmap::IndexSet;

use super::{arg_i64, len_reply as int, read_as};
use crate::model::command::{DENYOOM, FAST, Handler, RANDOM, READONLY, Spec, WRITE};
use crate::model::db::{Entry, Value};
use crate::model::num;
use crate::model::reply::{Reply, bulk, err, msg};
use crate::model::{Core, Ctx};

use super::hashes::{RANDOM_REPEATS_MAX, distinct_sorted_indices};
use super::lists::non_negative;

/// Redis's `set-max-intset-entries` default: past it an integer set becomes a hash table.
pub const INTSET_ENTRIES_MAX: usize = 512;

/// A data command whose only key is the first argument.
const fn keyed(
    name: &'static str,
    arity: i32,
    flags: u32,
    handler: fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply,
) -> Spec {
    keys_at(name, arity, flags, (1, 1), handler)
}

/// A data command whose keys run from `first_key` to `last_key` (negative: from the end).
const fn keys_at(
    name: &'static str,
    arity: i32,
    flags: u32,
    (first_key, last_key): (i32, i32),
    handler: fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key,
        last_key,
        step: 1,
        handler: Handler::Data(handler),
    }
}

/// The set commands.
pub static COMMANDS: &[Spec] = &[
    keyed("sadd", -3, WRITE | DENYOOM | FAST, sadd),
    keyed("srem", -3, WRITE | FAST, srem),
    keyed("smembers", 2, READONLY, smembers),
    keyed("sismember", 3, READONLY | FAST, sismember),
    keyed("smismember", -3, READONLY | FAST, smismember),
    keyed("scard", 2, READONLY | FAST, scard),
    keyed("spop", -2, WRITE | RANDOM | FAST, spop),
    keyed("srandmember", -2, READONLY | RANDOM, srandmember),
    keys_at("smove", 4, WRITE | FAST, (1, 2), smove),
    keys_at("sinter", -2, READONLY, (1, -1), sinter),
    keys_at("sinterstore", -3, WRITE | DENYOOM, (1, -1), sinterstore),
    keys_at("sunion", -2, READONLY, (1, -1), sunion),
    keys_at("sunionstore", -3, WRITE | DENYOOM, (1, -1), sunionstore),
    keys_at("sdiff", -2, READONLY, (1, -1), sdiff),
    keys_at("sdiffstore", -3, WRITE | DENYOOM, (1, -1), sdiffstore),
];

type Set = IndexSet<Vec<u8>>;

/// The set under `key` for reading (counts a hit or miss): `Ok(None)` if absent.
fn read_set<'a>(core: &'a mut Core, ctx: &Ctx, key: &[u8]) -> Result<Option<&'a Set>, Reply> {
    read_as(core, ctx, key, Value::as_set)
}

/// The set a caller has just read under `key`, again, without counting a second keyspace hit.
fn stored_set<'a>(core: &'a Core, ctx: &Ctx, key: &[u8]) -> &'a Set {
    match core.dbs[ctx.db].peek(key) {
        Some(Entry {
            value: Value::Set(set),
            ..
        }) => set,
        _ => unreachable!("the caller has just read a set under this key"),
    }
}

/// The set under `key` for writing: `Ok(None)` if absent.
fn write_set<'a>(core: &'a mut Core, ctx: &Ctx, key: &[u8]) -> Result<Option<&'a mut Set>, Reply> {
    match core.db(ctx).lookup_mut(ctx.now_ms, key) {
        None => Ok(None),
        Some(Entry {
            value: Value::Set(set),
            ..
        }) => Ok(Some(set)),
        Some(_) => Err(err(msg::WRONGTYPE)),
    }
}

/// Adds `member`, at its numeric place if the set is (still) what Redis keeps as an intset.
/// Returns whether it was new.
pub fn add_member(set: &mut Set, member: &[u8]) -> bool {
    if set.contains(member) {
        return false;
    }
    let value = num::parse_i64(member);
    if let Some(value) = value.filter(|_| set.len() < INTSET_ENTRIES_MAX) {
        let mut previous = i64::MIN;
        let mut place = Some(set.len());
        for (index, existing) in set.iter().enumerate() {
            // The set is intset-like only if every member is an integer, ascending.
            match num::parse_i64(existing) {
                Some(existing) if index == 0 || existing > previous => {
                    if existing > value && place == Some(set.len()) {
                        place = Some(index);
                    }
                    previous = existing;
                }
                _ => {
                    place = None;
                    break;
                }
            }
        }
        if let Some(place) = place {
            set.shift_insert(place, member.to_vec());
            return true;
        }
    }
    set.insert(member.to_vec())
}

fn sadd(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let key = &argv[1];
    let add_all = |set: &mut Set| argv[2..].iter().filter(|m| add_member(set, m)).count();
    let added = match write_set(core, ctx, key) {
        Err(reply) => return reply,
        Ok(Some(set)) => add_all(set),
        Ok(None) => {
            let mut set = Set::new();
            let added = add_all(&mut set);
            core.db(ctx).insert(key.clone(), Value::Set(set), None);
            added
        }
    };
    if added > 0 {
        core.signal_modified(ctx.db, key);
    }
    int(added)
}

fn srem(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let key = &argv[1];
    let set = match write_set(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Integer(0),
        Ok(Some(set)) => set,
    };
    let removed = argv[2..]
        .iter()
        .filter(|member| set.shift_remove(*member))
        .count();
    if removed > 0 {
        core.db(ctx).remove_if_empty(key);
        core.signal_modified(ctx.db, key);
    }
    int(removed)
}

fn smembers(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_set(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(None) => Reply::Set(Vec::new()),
        Ok(Some(set)) => set_reply(set),
    }
}

/// Members as RESP3's set type (an array in RESP2).
fn set_reply<I, B>(members: I) -> Reply
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    Reply::Set(members.into_iter().map(bulk).collect())
}

fn sismember(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_set(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(set) => Reply::Integer(i64::from(set.is_some_and(|set| set.contains(&argv[2])))),
    }
}

fn smismember(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_set(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(set) => Reply::Array(
            argv[2..]
                .iter()
                .map(|member| {
                    Reply::Integer(i64::from(set.is_some_and(|set| set.contains(member))))
                })
                .collect(),
        ),
    }
}

fn scard(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_set(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(set) => int(set.map_or(0, IndexSet::len)),
    }
}

/// Removes the member at `index`. Small sets keep their order (an intset stays sorted); a
/// large one swaps, which is O(1) and no less faithful since Redis's order there is arbitrary.
fn take_index(set: &mut Set, index: usize) -> Vec<u8> {
    let taken = if set.len() <= INTSET_ENTRIES_MAX {
        set.shift_remove_index(index)
    } else {
        set.swap_remove_index(index)
    };
    taken.expect("index below the length")
}

fn spop(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if argv.len() > 3 {
        return err(msg::SYNTAX);
    }
    let count = match argv.get(2).map(|arg| non_negative(arg, msg::NOT_POSITIVE)) {
        None => None,
        Some(Ok(count)) => Some(count),
        Some(Err(reply)) => return reply,
    };
    let key = &argv[1];
    let size = // An empty set is never stored; treating one as absent keeps random_below's bound positive.
        match write_set(core, ctx, key).map(|found| found.filter(|set| !set.is_empty())) {
        Err(reply) => return reply,
        Ok(None) if count.is_some() => return Reply::Set(Vec::new()),
        Ok(None) => return Reply::Nil,
        Ok(Some(set)) => set.len(),
    };
    let reply = match count {
        Some(0) => return Reply::Set(Vec::new()),
        None => {
            let index = core.random_below(size);
            let Ok(Some(set)) = write_set(core, ctx, key) else {
                unreachable!("the set was just found");
            };
            bulk(take_index(set, index))
        }
        Some(count) if count >= size => {
            let Some(Entry {
                value: Value::Set(set),
                ..
            }) = core.db(ctx).remove(key)
            else {
                unreachable!("the set was just found");
            };
            set_reply(set)
        }
        Some(count) => {
            let mut popped = Vec::with_capacity(count);
            for remaining in (size - count + 1..=size).rev() {
                let index = core.random_below(remaining);
                let Ok(Some(set)) = write_set(core, ctx, key) else {
                    unreachable!("the set was just found");
                };
                popped.push(bulk(take_index(set, index)));
            }
            Reply::Set(popped)
        }
    };
    core.db(ctx).remove_if_empty(key);
    core.signal_modified(ctx.db, key);
    reply
}

fn srandmember(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if argv.len() > 3 {
        return err(msg::SYNTAX);
    }
    let Some(count) = argv.get(2) else {
        let size = // As above: never empty, but never let random_below see zero.
        match read_set(core, ctx, &argv[1]).map(|found| found.filter(|set| !set.is_empty())) {
            Err(reply) => return reply,
            Ok(None) => return Reply::Nil,
            Ok(Some(set)) => set.len(),
        };
        let index = core.random_below(size);
        let set = stored_set(core, ctx, &argv[1]);
        return bulk(set.get_index(index).expect("below the length"));
    };
    let count = match arg_i64(count) {
        Ok(i64::MIN) => {
            return err(format!(
                "ERR value is out of range, value must between {} and {}",
                -i64::MAX,
                i64::MAX
            ));
        }
        Ok(count) => count,
        Err(reply) => return reply,
    };
    let size = // As above: never empty, but never let random_below see zero.
        match read_set(core, ctx, &argv[1]).map(|found| found.filter(|set| !set.is_empty())) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(set)) => set.len(),
    };
    let picks: Vec<usize> = if count < 0 {
        let wanted = count.unsigned_abs();
        if wanted > RANDOM_REPEATS_MAX {
            return err("ERR value is out of range");
        }
        (0..wanted).map(|_| core.random_below(size)).collect()
    } else {
        let wanted = usize::try_from(count).unwrap_or(usize::MAX);
        distinct_sorted_indices(core, size, wanted)
    };
    let set = stored_set(core, ctx, &argv[1]);
    Reply::Array(
        picks
            .into_iter()
            .map(|index| bulk(set.get_index(index).expect("below the length")))
            .collect(),
    )
}

fn smove(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let (source, destination, member) = (&argv[1], &argv[2], &argv[3]);
    // Redis looks both keys up, then answers 0 for a missing source before any type check.
    let source_kind = core
        .db(ctx)
        .lookup_mut(ctx.now_ms, source)
        .map(|entry| matches!(entry.value, Value::Set(_)));
    let destination_kind = core
        .db(ctx)
        .lookup_mut(ctx.now_ms, destination)
        .map(|entry| matches!(entry.value, Value::Set(_)));
    match (source_kind, destination_kind) {
        (None, _) => return Reply::Integer(0),
        (Some(false), _) | (_, Some(false)) => return err(msg::WRONGTYPE),
        _ => {}
    }
    let Ok(Some(set)) = write_set(core, ctx, source) else {
        unreachable!("the source set was just found");
    };
    if source == destination {
        return Reply::Integer(i64::from(set.contains(member)));
    }
    if !set.shift_remove(member) {
        return Reply::Integer(0);
    }
    core.db(ctx).remove_if_empty(source);
    core.signal_modified(ctx.db, source);
    let added = match write_set(core, ctx, destination) {
        Ok(Some(set)) => add_member(set, member),
        _ => {
            let mut set = Set::new();
            add_member(&mut set, member);
            core.db(ctx)
                .insert(destination.clone(), Value::Set(set), None);
            true
        }
    };
    if added {
        core.signal_modified(ctx.db, destination);
    }
    Reply::Integer(1)
}

/// Which combination SINTER, SUNION and SDIFF compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Combine {
    Inter,
    Union,
    Diff,
}

/// The sets under `keys` (`None` for a missing key), after checking that each is a set. Each
/// key is looked up once as a read, as Redis does, which also applies passive expiry.
fn gather<'a>(
    core: &'a mut Core,
    ctx: &Ctx,
    keys: &[Vec<u8>],
) -> Result<Vec<Option<&'a Set>>, Reply> {
    for key in keys {
        read_set(core, ctx, key)?;
    }
    let db = &core.dbs[ctx.db];
    Ok(keys
        .iter()
        .map(|key| match db.peek(key) {
            Some(Entry {
                value: Value::Set(set),
                ..
            }) => Some(set),
            _ => None,
        })
        .collect())
}

/// The combined members, in the order Redis lists them: SINTER walks the smallest set, SUNION
/// and SDIFF build a new set (numerically ordered while it is all integers).
fn combine(sets: &[Option<&Set>], how: Combine) -> Vec<Vec<u8>> {
    match how {
        Combine::Inter => {
            let Some(present) = sets.iter().copied().collect::<Option<Vec<&Set>>>() else {
                return Vec::new();
            };
            let Some(smallest) = present.iter().copied().min_by_key(|set| set.len()) else {
                return Vec::new();
            };
            smallest
                .iter()
                .filter(|member| present.iter().all(|set| set.contains(*member)))
                .cloned()
                .collect()
        }
        Combine::Union => {
            let mut result = Set::new();
            for set in sets.iter().flatten() {
                for member in set.iter() {
                    add_member(&mut result, member);
                }
            }
            result.into_iter().collect()
        }
        Combine::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Vec::new();
            };
            let mut result = Set::new();
            for member in first.iter() {
                if !sets[1..].iter().flatten().any(|set| set.contains(member)) {
                    add_member(&mut result, member);
                }
            }
            result.into_iter().collect()
        }
    }
}

/// SINTER, SUNION, SDIFF: the members as a set.
fn combine_reply(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], how: Combine) -> Reply {
    match gather(core, ctx, &argv[1..]) {
        Err(reply) => reply,
        Ok(sets) => set_reply(combine(&sets, how)),
    }
}

/// The *STORE forms: the result replaces `argv[1]` (any type, TTL dropped); an empty result
/// deletes it.
fn combine_store(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], how: Combine) -> Reply {
    let members = match gather(core, ctx, &argv[2..]) {
        Err(reply) => return reply,
        Ok(sets) => combine(&sets, how),
    };
    let destination = &argv[1];
    if members.is_empty() {
        if core.db(ctx).lookup_mut(ctx.now_ms, destination).is_some() {
            core.db(ctx).remove(destination);
            core.signal_modified(ctx.db, destination);
        }
        return Reply::Integer(0);
    }
    let mut set = Set::new();
    for member in &members {
        add_member(&mut set, member);
    }
    let len = set.len();
    core.db(ctx)
        .insert(destination.clone(), Value::Set(set), None);
    core.signal_modified(ctx.db, destination);
    int(len)
}

fn sinter(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    combine_reply(core, ctx, argv, Combine::Inter)
}

fn sunion(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    combine_reply(core, ctx, argv, Combine::Union)
}

fn sdiff(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    combine_reply(core, ctx, argv, Combine::Diff)
}

fn sinterstore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    combine_store(core, ctx, argv, Combine::Inter)
}

fn sunionstore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    combine_store(core, ctx, argv, Combine::Union)
}

fn sdiffstore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    combine_store(core, ctx, argv, Combine::Diff)
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
    fn add_remove_and_membership() {
        check(&[
            ("SADD s b a b", int(2)),
            ("SADD s a", int(0)),
            ("SCARD s", int(2)),
            ("SCARD nosuch", int(0)),
            ("SMEMBERS s", bulks(&["b", "a"])),
            ("SMEMBERS nosuch", bulks(&[])),
            ("SISMEMBER s a", int(1)),
            ("SISMEMBER s z", int(0)),
            ("SISMEMBER nosuch z", int(0)),
            ("SMISMEMBER s a z b", ints(&[1, 0, 1])),
            ("SMISMEMBER nosuch a", ints(&[0])),
            ("SREM s a z", int(1)),
            ("SREM nosuch a", int(0)),
            ("SREM s b", int(1)),
            ("GONE s", int(0)),
            (
                "SADD s",
                error("ERR wrong number of arguments for 'sadd' command"),
            ),
        ]);
    }

    #[test]
    fn integer_sets_list_in_numeric_order() {
        check(&[
            ("SADD s 3 -1 10 2", int(4)),
            ("SMEMBERS s", bulks(&["-1", "2", "3", "10"])),
            ("SADD s 0", int(1)),
            ("SMEMBERS s", bulks(&["-1", "0", "2", "3", "10"])),
            ("SREM s 2", int(1)),
            ("SADD s 5", int(1)),
            ("SMEMBERS s", bulks(&["-1", "0", "3", "5", "10"])),
            // Not canonical integers: the set becomes a plain set and keeps insertion order.
            ("SADD t 2 01 1", int(3)),
            ("SMEMBERS t", bulks(&["2", "01", "1"])),
            ("SADD u 2 x 1", int(3)),
            ("SMEMBERS u", bulks(&["2", "x", "1"])),
        ]);
    }

    #[test]
    fn wrong_type_is_refused_everywhere() {
        check(&[
            ("RPUSH l a", int(1)),
            ("SADD l a", error(WRONGTYPE)),
            ("SREM l a", error(WRONGTYPE)),
            ("SMEMBERS l", error(WRONGTYPE)),
            ("SISMEMBER l a", error(WRONGTYPE)),
            ("SMISMEMBER l a", error(WRONGTYPE)),
            ("SCARD l", error(WRONGTYPE)),
            ("SPOP l", error(WRONGTYPE)),
            ("SPOP l 1", error(WRONGTYPE)),
            ("SRANDMEMBER l", error(WRONGTYPE)),
            ("SRANDMEMBER l 1", error(WRONGTYPE)),
        ]);
    }

    #[test]
    fn pop_and_random_members() {
        let range_error = "ERR value is out of range, value must between \
                           -9223372036854775807 and 9223372036854775807";
        check(&[
            ("SPOP nosuch", Reply::Nil),
            ("SPOP nosuch 2", bulks(&[])),
            ("SRANDMEMBER nosuch", Reply::Nil),
            ("SRANDMEMBER nosuch 2", bulks(&[])),
            ("SRANDMEMBER nosuch -2", bulks(&[])),
            ("SADD s 1", int(1)),
            ("SRANDMEMBER s", bulk("1")),
            ("SRANDMEMBER s 0", bulks(&[])),
            ("SRANDMEMBER s 3", bulks(&["1"])),
            ("SRANDMEMBER s -3", bulks(&["1", "1", "1"])),
            ("SRANDMEMBER s x", error(NOT_INTEGER)),
            ("SRANDMEMBER s 1 2", error("ERR syntax error")),
            ("SRANDMEMBER s -9223372036854775808", error(range_error)),
            ("SPOP s 1 2", error("ERR syntax error")),
            (
                "SPOP s -1",
                error("ERR value is out of range, must be positive"),
            ),
            (
                "SPOP s x",
                error("ERR value is out of range, must be positive"),
            ),
            ("SPOP s 0", bulks(&[])),
            ("SPOP s", bulk("1")),
            ("GONE s", int(0)),
            ("SADD s 1 2 3", int(3)),
            ("SPOP s 5", bulks(&["1", "2", "3"])),
            ("GONE s", int(0)),
        ]);
    }

    #[test]
    fn an_empty_stored_aggregate_never_panics() {
        use crate::model::db::Value;
        let mut model = check(&[]);
        let db = &mut model.core.dbs[0];
        db.insert(b"s".to_vec(), Value::Set(Default::default()), None);
        db.insert(b"h".to_vec(), Value::Hash(Default::default()), None);
        db.insert(b"l".to_vec(), Value::List(Default::default()), None);
        let mut session = model.connect("127.0.0.1:2");
        for line in [
            "SPOP s",
            "SPOP s 2",
            "SRANDMEMBER s",
            "SRANDMEMBER s -2",
            "HRANDFIELD h",
            "HRANDFIELD h -2",
            "LPOP l",
            "RPOP l 2",
            "LMOVE l l LEFT RIGHT",
        ] {
            let argv: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            let reply = model.exec(1_000, &mut session, &argv);
            assert!(!matches!(reply, Reply::Error(_)), "{line}: {reply:?}");
        }
    }

    #[test]
    fn smove_between_sets() {
        check(&[
            ("SADD a 1 2", int(2)),
            ("SMOVE a b 1", int(1)),
            ("SMOVE a b 9", int(0)),
            ("SMOVE a a 2", int(1)),
            ("SMOVE a a 9", int(0)),
            ("SMEMBERS b", bulks(&["1"])),
            ("RPUSH l x", int(1)),
            ("SMOVE nosuch l 1", int(0)),
            ("SMOVE a l 2", error(WRONGTYPE)),
            ("SMOVE l a x", error(WRONGTYPE)),
            ("SMOVE a b 2", int(1)),
            ("GONE a", int(0)),
            ("SMEMBERS b", bulks(&["1", "2"])),
        ]);
    }

    #[test]
    fn intersections_unions_differences() {
        check(&[
            ("SADD a 3 1 2 x", int(4)),
            ("SADD b 2 3 4", int(3)),
            ("SINTER a b", bulks(&["2", "3"])),
            ("SINTER a nosuch", bulks(&[])),
            ("SUNION b nosuch a", bulks(&["1", "2", "3", "4", "x"])),
            ("SUNION b", bulks(&["2", "3", "4"])),
            ("SDIFF a b", bulks(&["1", "x"])),
            ("SDIFF nosuch a", bulks(&[])),
            ("SDIFF b a nosuch", bulks(&["4"])),
            ("RPUSH l x", int(1)),
            ("SINTER nosuch l", error(WRONGTYPE)),
            ("SUNION a l", error(WRONGTYPE)),
            ("SDIFF nosuch l", error(WRONGTYPE)),
            ("SINTERSTORE l a b", int(2)),
            ("SMEMBERS l", bulks(&["2", "3"])),
            ("SUNIONSTORE d a b", int(5)),
            ("SDIFFSTORE d b a", int(1)),
            ("SMEMBERS d", bulks(&["4"])),
            ("SINTERSTORE d a nosuch", int(0)),
            ("GONE d", int(0)),
            ("SDIFFSTORE d a a", int(0)),
        ]);
    }

    #[test]
    fn partial_pops_take_distinct_members() {
        let mut model = check(&[("SADD s a b c d e f", int(6))]);
        let mut session = model.connect("127.0.0.1:2");
        let mut exec = |line: &str| {
            let argv: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            model.exec(1_000, &mut session, &argv)
        };
        let Reply::Array(first) = exec("SPOP s 4") else {
            panic!("an array");
        };
        assert_eq!(first.len(), 4);
        assert_eq!(exec("SCARD s"), int(2));
        let Reply::Array(rest) = exec("SMEMBERS s") else {
            panic!("an array");
        };
        let mut all: Vec<Reply> = first.into_iter().chain(rest).collect();
        all.sort_by_key(|reply| format!("{reply:?}"));
        all.dedup();
        assert_eq!(all.len(), 6);
    }
}

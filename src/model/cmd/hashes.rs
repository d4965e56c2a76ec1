//! Hash commands: HSET/HMSET/HSETNX, HGET/HMGET/HGETALL, HDEL, HEXISTS, HLEN, HKEYS, HVALS,
//! HSTRLEN, HINCRBY, HINCRBYFLOAT and HRANDFIELD, with Redis 7.0.15's replies and errors.
//!
//! A hash is an `IndexMap` in insertion order: that is the order a small Redis hash (a
//! listpack) shows in HGETALL, and updating a field keeps its place. Deletion uses
//! `shift_remove` so the remaining fields keep their order, as a listpack does. Large Redis
//! hashes switch to a hash table whose order is arbitrary; the model keeps insertion order.

use indexmap::IndexMap;

use super::{arg_i64, is_opt, len_reply as int, read_as};
use crate::model::command::{DENYOOM, FAST, Handler, RANDOM, READONLY, Spec, WRITE};
use crate::model::db::{Entry, Value};
use crate::model::reply::{Protocol, Reply, bulk, err, msg, ok, wrong_arity};
use crate::model::{Core, Ctx};
use crate::model::{longdouble, num};

/// The most elements HRANDFIELD with a negative count (repeats allowed) may answer. Redis has
/// no such bound and would build any reply asked for; the model refuses past it so that one
/// command cannot make it allocate without limit.
pub const RANDOM_REPEATS_MAX: u64 = 1 << 20;

/// A data command whose only key is the first argument.
const fn keyed(
    name: &'static str,
    arity: i32,
    flags: u32,
    handler: fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply,
) -> Spec {
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

/// The hash commands.
pub static COMMANDS: &[Spec] = &[
    keyed("hset", -4, WRITE | DENYOOM | FAST, hset),
    keyed("hmset", -4, WRITE | DENYOOM | FAST, hmset),
    keyed("hsetnx", 4, WRITE | DENYOOM | FAST, hsetnx),
    keyed("hget", 3, READONLY | FAST, hget),
    keyed("hmget", -3, READONLY | FAST, hmget),
    keyed("hdel", -3, WRITE | FAST, hdel),
    keyed("hexists", 3, READONLY | FAST, hexists),
    keyed("hgetall", 2, READONLY, hgetall),
    keyed("hkeys", 2, READONLY, hkeys),
    keyed("hvals", 2, READONLY, hvals),
    keyed("hlen", 2, READONLY | FAST, hlen),
    keyed("hstrlen", 3, READONLY | FAST, hstrlen),
    keyed("hincrby", 4, WRITE | DENYOOM | FAST, hincrby),
    keyed("hincrbyfloat", 4, WRITE | DENYOOM | FAST, hincrbyfloat),
    keyed("hrandfield", -2, READONLY | RANDOM, hrandfield),
];

type Hash = IndexMap<Vec<u8>, Vec<u8>>;

/// The hash under `key` for reading (counts a hit or miss): `Ok(None)` if absent.
fn read_hash<'a>(core: &'a mut Core, ctx: &Ctx, key: &[u8]) -> Result<Option<&'a Hash>, Reply> {
    read_as(core, ctx, key, Value::as_hash)
}

/// The hash a caller has just read under `key`, again, without counting a second keyspace hit.
fn stored_hash<'a>(core: &'a Core, ctx: &Ctx, key: &[u8]) -> &'a Hash {
    match core.dbs[ctx.db].peek(key) {
        Some(Entry {
            value: Value::Hash(hash),
            ..
        }) => hash,
        _ => unreachable!("the caller has just read a hash under this key"),
    }
}

/// The hash under `key` for writing, created empty if absent (Redis's
/// hashTypeLookupWriteOrCreate). Callers always add a field, so it never stays empty.
fn hash_or_create<'a>(core: &'a mut Core, ctx: &Ctx, key: &[u8]) -> Result<&'a mut Hash, Reply> {
    let now_ms = ctx.now_ms;
    let db = core.db(ctx);
    match db.lookup_mut(now_ms, key) {
        None => db.insert(key.to_vec(), Value::Hash(Hash::new()), None),
        Some(Entry {
            value: Value::Hash(_),
            ..
        }) => {}
        Some(_) => return Err(err(msg::WRONGTYPE)),
    }
    match db.lookup_mut(now_ms, key) {
        Some(Entry {
            value: Value::Hash(hash),
            ..
        }) => Ok(hash),
        _ => unreachable!("the hash was just found or created"),
    }
}

/// The hash under `key` for writing, without creating it.
fn write_hash<'a>(
    core: &'a mut Core,
    ctx: &Ctx,
    key: &[u8],
) -> Result<Option<&'a mut Hash>, Reply> {
    match core.db(ctx).lookup_mut(ctx.now_ms, key) {
        None => Ok(None),
        Some(Entry {
            value: Value::Hash(hash),
            ..
        }) => Ok(Some(hash)),
        Some(_) => Err(err(msg::WRONGTYPE)),
    }
}

/// HSET and HMSET: field/value pairs; an odd count is an arity error under the command's name.
fn set_pairs(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], name: &str) -> Result<usize, Reply> {
    if argv.len() % 2 == 1 {
        return Err(wrong_arity(name));
    }
    let hash = hash_or_create(core, ctx, &argv[1])?;
    let mut created = 0;
    for pair in argv[2..].chunks_exact(2) {
        if hash.insert(pair[0].clone(), pair[1].clone()).is_none() {
            created += 1;
        }
    }
    core.signal_modified(ctx.db, &argv[1]);
    Ok(created)
}

fn hset(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match set_pairs(core, ctx, argv, "hset") {
        Ok(created) => int(created),
        Err(reply) => reply,
    }
}

fn hmset(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match set_pairs(core, ctx, argv, "hmset") {
        Ok(_) => ok(),
        Err(reply) => reply,
    }
}

fn hsetnx(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let hash = match hash_or_create(core, ctx, &argv[1]) {
        Ok(hash) => hash,
        Err(reply) => return reply,
    };
    if hash.contains_key(&argv[2]) {
        return Reply::Integer(0);
    }
    hash.insert(argv[2].clone(), argv[3].clone());
    core.signal_modified(ctx.db, &argv[1]);
    Reply::Integer(1)
}

fn hget(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_hash(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(hash) => hash
            .and_then(|hash| hash.get(&argv[2]))
            .map_or(Reply::Nil, bulk),
    }
}

fn hmget(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_hash(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(hash) => Reply::Array(
            argv[2..]
                .iter()
                .map(|field| {
                    hash.and_then(|hash| hash.get(field))
                        .map_or(Reply::Nil, bulk)
                })
                .collect(),
        ),
    }
}

fn hdel(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let key = &argv[1];
    let hash = match write_hash(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Integer(0),
        Ok(Some(hash)) => hash,
    };
    let deleted = argv[2..]
        .iter()
        .filter(|field| hash.shift_remove(*field).is_some())
        .count();
    if deleted > 0 {
        core.db(ctx).remove_if_empty(key);
        core.signal_modified(ctx.db, key);
    }
    int(deleted)
}

fn hexists(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_hash(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(hash) => Reply::Integer(i64::from(
            hash.is_some_and(|hash| hash.contains_key(&argv[2])),
        )),
    }
}

/// HKEYS and HVALS: the hash's fields or values in order.
fn listing(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], fields: bool, values: bool) -> Reply {
    match read_hash(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(None) => Reply::Array(Vec::new()),
        Ok(Some(hash)) => {
            let mut items = Vec::with_capacity(hash.len() * 2);
            for (field, value) in hash {
                if fields {
                    items.push(bulk(field));
                }
                if values {
                    items.push(bulk(value));
                }
            }
            Reply::Array(items)
        }
    }
}

/// HGETALL: a map in RESP3 (a flat array in RESP2).
fn hgetall(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_hash(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(None) => Reply::Map(Vec::new()),
        Ok(Some(hash)) => Reply::Map(
            hash.iter()
                .map(|(field, value)| (bulk(field), bulk(value)))
                .collect(),
        ),
    }
}

fn hkeys(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    listing(core, ctx, argv, true, false)
}

fn hvals(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    listing(core, ctx, argv, false, true)
}

fn hlen(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_hash(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(hash) => int(hash.map_or(0, IndexMap::len)),
    }
}

fn hstrlen(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_hash(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(hash) => int(hash.and_then(|hash| hash.get(&argv[2])).map_or(0, Vec::len)),
    }
}

fn hincrby(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let increment = match arg_i64(&argv[3]) {
        Ok(increment) => increment,
        Err(reply) => return reply,
    };
    let hash = match hash_or_create(core, ctx, &argv[1]) {
        Ok(hash) => hash,
        Err(reply) => return reply,
    };
    let current = match hash.get(&argv[2]) {
        None => 0,
        Some(value) => match num::parse_i64(value) {
            Some(current) => current,
            None => return err("ERR hash value is not an integer"),
        },
    };
    let Some(updated) = current.checked_add(increment) else {
        return err(msg::OVERFLOW);
    };
    hash.insert(argv[2].clone(), updated.to_string().into_bytes());
    core.signal_modified(ctx.db, &argv[1]);
    Reply::Integer(updated)
}

fn hincrbyfloat(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    // Redis computes in long double; the model emulates it exactly (`longdouble`), checking in
    // Redis's order: the increment, its finiteness, the key's type, then the field.
    let Some(increment) = longdouble::parse(&argv[3]) else {
        return err(msg::NOT_FLOAT);
    };
    if !increment.is_finite() {
        return err("ERR value is NaN or Infinity");
    }
    let hash = match hash_or_create(core, ctx, &argv[1]) {
        Ok(hash) => hash,
        Err(reply) => return reply,
    };
    let current = match hash.get(&argv[2]) {
        None => longdouble::LongDouble::ZERO,
        Some(value) => match longdouble::parse(value) {
            Some(current) => current,
            None => return err("ERR hash value is not a float"),
        },
    };
    let text = match longdouble::sum_human(current, increment) {
        Ok(text) => text,
        Err(message) => return err(message),
    };
    hash.insert(argv[2].clone(), text.clone());
    core.signal_modified(ctx.db, &argv[1]);
    Reply::Bulk(text)
}

fn hrandfield(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    if argv.len() == 2 {
        let index = // An empty hash is never stored; treating one as absent keeps random_below's bound positive.
        match read_hash(core, ctx, &argv[1]).map(|found| found.filter(|hash| !hash.is_empty())) {
            Err(reply) => return reply,
            Ok(None) => return Reply::Nil,
            Ok(Some(hash)) => hash.len(),
        };
        let index = core.random_below(index);
        return bulk(
            stored_hash(core, ctx, &argv[1])
                .get_index(index)
                .expect("below the length")
                .0,
        );
    }
    // Redis reads the count as a long in [-LONG_MAX, LONG_MAX], then the option.
    let count = match arg_i64(&argv[2]) {
        Ok(count) if count == i64::MIN => {
            return err(format!(
                "ERR value is out of range, value must between {} and {}",
                -i64::MAX,
                i64::MAX
            ));
        }
        Ok(count) => count,
        Err(reply) => return reply,
    };
    if argv.len() > 4 || (argv.len() == 4 && !is_opt(&argv[3], "withvalues")) {
        return err(msg::SYNTAX);
    }
    let with_values = argv.len() == 4;
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return err("ERR value is out of range");
    }
    let size = // An empty hash is never stored; treating one as absent keeps random_below's bound positive.
        match read_hash(core, ctx, &argv[1]).map(|found| found.filter(|hash| !hash.is_empty())) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(hash)) => hash.len(),
    };
    if count == 0 {
        return Reply::Array(Vec::new());
    }
    let picks: Vec<usize> = if count < 0 || count == 1 {
        // Repeats allowed: each pick is independent.
        let wanted = count.unsigned_abs();
        if wanted > RANDOM_REPEATS_MAX {
            return err("ERR value is out of range");
        }
        (0..wanted).map(|_| core.random_below(size)).collect()
    } else {
        let wanted = usize::try_from(count).unwrap_or(usize::MAX);
        distinct_sorted_indices(core, size, wanted)
    };
    let resp = ctx.resp;
    let hash = stored_hash(core, ctx, &argv[1]);
    let mut items = Vec::with_capacity(picks.len() * 2);
    for index in picks {
        let (field, value) = hash.get_index(index).expect("below the length");
        match (with_values, resp) {
            (false, _) => items.push(bulk(field)),
            // RESP3: `[field, value]` pairs; RESP2: flat.
            (true, Protocol::Resp3) => items.push(Reply::Array(vec![bulk(field), bulk(value)])),
            (true, Protocol::Resp2) => items.extend([bulk(field), bulk(value)]),
        }
    }
    Reply::Array(items)
}

/// `wanted` distinct indices below `size`, ascending: every index when `wanted >= size`,
/// otherwise a seeded sample. Ascending order is what a small Redis hash answers (listpack
/// sampling keeps the stored order).
pub fn distinct_sorted_indices(core: &mut Core, size: usize, wanted: usize) -> Vec<usize> {
    if wanted >= size {
        return (0..size).collect();
    }
    // Selection sampling (Knuth's algorithm S): one pass, exactly `wanted` picks.
    let mut picks = Vec::with_capacity(wanted);
    for index in 0..size {
        let remaining = size - index;
        let still_needed = wanted - picks.len();
        if core.random_below(remaining) < still_needed {
            picks.push(index);
            if picks.len() == wanted {
                break;
            }
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use crate::model::Reply;
    use crate::model::testkit::*;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

    #[test]
    fn set_get_and_order() {
        check(&[
            ("HSET h b 1 a 2", int(2)),
            ("HSET h b 3 c 4", int(1)),
            ("HGETALL h", bulks(&["b", "3", "a", "2", "c", "4"])),
            ("HKEYS h", bulks(&["b", "a", "c"])),
            ("HVALS h", bulks(&["3", "2", "4"])),
            ("HGET h a", bulk("2")),
            ("HGET h z", Reply::Nil),
            ("HGET nosuch a", Reply::Nil),
            (
                "HMGET h a z c",
                Reply::Array(vec![bulk("2"), Reply::Nil, bulk("4")]),
            ),
            ("HMGET nosuch a", Reply::Array(vec![Reply::Nil])),
            ("HLEN h", int(3)),
            ("HLEN nosuch", int(0)),
            ("HEXISTS h a", int(1)),
            ("HEXISTS h z", int(0)),
            ("HSTRLEN h a", int(1)),
            ("HSTRLEN h z", int(0)),
            ("HGETALL nosuch", bulks(&[])),
            ("HMSET h d 5", ok()),
            ("HSETNX h d 6", int(0)),
            ("HSETNX h e 7", int(1)),
            ("HGET h d", bulk("5")),
            (
                "HSET h a",
                error("ERR wrong number of arguments for 'hset' command"),
            ),
            (
                "HSET h a 1 b",
                error("ERR wrong number of arguments for 'hset' command"),
            ),
            (
                "HMSET h a 1 b",
                error("ERR wrong number of arguments for 'hmset' command"),
            ),
        ]);
    }

    #[test]
    fn delete_keeps_order_and_removes_empty_keys() {
        check(&[
            ("HSET h a 1 b 2 c 3", int(3)),
            ("HDEL h b z", int(1)),
            ("HKEYS h", bulks(&["a", "c"])),
            ("HSET h b 9", int(1)),
            ("HKEYS h", bulks(&["a", "c", "b"])),
            ("HDEL nosuch a", int(0)),
            ("HDEL h a b c", int(3)),
            ("GONE h", int(0)),
        ]);
    }

    #[test]
    fn wrong_type_is_refused_everywhere() {
        check(&[
            ("RPUSH l a", int(1)),
            ("HSET l a 1", error(WRONGTYPE)),
            ("HMSET l a 1", error(WRONGTYPE)),
            ("HSETNX l a 1", error(WRONGTYPE)),
            ("HGET l a", error(WRONGTYPE)),
            ("HMGET l a", error(WRONGTYPE)),
            ("HDEL l a", error(WRONGTYPE)),
            ("HEXISTS l a", error(WRONGTYPE)),
            ("HGETALL l", error(WRONGTYPE)),
            ("HKEYS l", error(WRONGTYPE)),
            ("HVALS l", error(WRONGTYPE)),
            ("HLEN l", error(WRONGTYPE)),
            ("HSTRLEN l a", error(WRONGTYPE)),
            ("HINCRBY l a 1", error(WRONGTYPE)),
            ("HINCRBYFLOAT l a 1", error(WRONGTYPE)),
            ("HRANDFIELD l", error(WRONGTYPE)),
            ("HRANDFIELD l 1", error(WRONGTYPE)),
        ]);
    }

    #[test]
    fn increments() {
        check(&[
            ("HINCRBY h n 5", int(5)),
            ("HINCRBY h n -7", int(-2)),
            ("HGET h n", bulk("-2")),
            ("HINCRBY h n x", error(NOT_INTEGER)),
            ("HSET h s abc big 9223372036854775807 f 1.5", int(3)),
            ("HINCRBY h s 1", error("ERR hash value is not an integer")),
            (
                "HINCRBY h big 1",
                error("ERR increment or decrement would overflow"),
            ),
            ("HINCRBY h big 0", int(i64::MAX)),
            ("HINCRBY h f 1", error("ERR hash value is not an integer")),
            ("HINCRBYFLOAT h f 0.1", bulk("1.6")),
            ("HINCRBYFLOAT h n 2.5", bulk("0.5")),
            ("HINCRBYFLOAT h new 3", bulk("3")),
            ("HINCRBYFLOAT h new 1e3", bulk("1003")),
            ("HINCRBYFLOAT h s 1", error("ERR hash value is not a float")),
            (
                "HINCRBYFLOAT h f x",
                error("ERR value is not a valid float"),
            ),
            (
                "HINCRBYFLOAT h f nan",
                error("ERR value is not a valid float"),
            ),
            (
                "HINCRBYFLOAT h f inf",
                error("ERR value is NaN or Infinity"),
            ),
            // Long double goes far past f64's 1.8e308 (Redis's reply, recorded).
            ("HSET h huge 1e308", int(1)),
            (
                "HINCRBYFLOAT h huge 1e308",
                bulk(
                    "199999999999999999993371759311691291321120199694831134415594095989843469737676123744200253843777078640893494450108026446304269499187921167194841628860392837535918200039206381557326219209014213335878306791577877829121087126122536729803237260434173178506889763247582601711514636284849020905456510092687857156096",
                ),
            ),
            ("HSET h edge 1e4932", int(1)),
            (
                "HINCRBYFLOAT h edge 1e4932",
                error("ERR increment would produce NaN or Infinity"),
            ),
            ("HGET h edge", bulk("1e4932")),
        ]);
    }

    #[test]
    fn hset_and_hincrby_keep_the_ttl() {
        let mut model = check(&[("HSET h a 1", int(1))]);
        model.core.dbs[0].set_expire(b"h", Some(50_000));
        let mut session = model.connect("127.0.0.1:2");
        for line in [
            "HSET h b 2",
            "HINCRBY h a 1",
            "HINCRBYFLOAT h a 1",
            "HDEL h b",
        ] {
            let argv: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            model.exec(1_000, &mut session, &argv);
        }
        let entry = model.core.dbs[0].peek(b"h").expect("still there");
        assert_eq!(entry.expire_at_ms, Some(50_000));
    }

    #[test]
    fn random_fields_have_redis_shapes() {
        let range_error = "ERR value is out of range, value must between \
                           -9223372036854775807 and 9223372036854775807";
        check(&[
            ("HRANDFIELD nosuch", Reply::Nil),
            ("HRANDFIELD nosuch 3", bulks(&[])),
            ("HRANDFIELD nosuch -3 WITHVALUES", bulks(&[])),
            ("HSET h a 1", int(1)),
            ("HRANDFIELD h", bulk("a")),
            ("HRANDFIELD h 0", bulks(&[])),
            ("HRANDFIELD h 5", bulks(&["a"])),
            ("HRANDFIELD h -3", bulks(&["a", "a", "a"])),
            ("HRANDFIELD h -2 WITHVALUES", bulks(&["a", "1", "a", "1"])),
            ("HRANDFIELD h 2 withvalues", bulks(&["a", "1"])),
            ("HRANDFIELD h 1 foo", error("ERR syntax error")),
            ("HRANDFIELD h 1 WITHVALUES x", error("ERR syntax error")),
            ("HRANDFIELD h x", error(NOT_INTEGER)),
            ("HRANDFIELD h -9223372036854775808", error(range_error)),
            (
                "HRANDFIELD h 4611686018427387904 WITHVALUES",
                error("ERR value is out of range"),
            ),
            (
                "HRANDFIELD h -9999999999",
                error("ERR value is out of range"),
            ),
        ]);
    }

    #[test]
    fn random_samples_are_distinct_and_in_order() {
        let mut model = check(&[("HSET h a 1 b 2 c 3 d 4 e 5", int(5))]);
        let mut session = model.connect("127.0.0.1:2");
        for _ in 0..20 {
            let argv = vec![b"HRANDFIELD".to_vec(), b"h".to_vec(), b"3".to_vec()];
            let Reply::Array(items) = model.exec(1_000, &mut session, &argv) else {
                panic!("an array");
            };
            assert_eq!(items.len(), 3);
            assert!(items.windows(2).all(|pair| match pair {
                [Reply::Bulk(left), Reply::Bulk(right)] => left < right,
                _ => false,
            }));
        }
    }
}

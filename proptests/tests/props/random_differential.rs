//! Random differential test: random command sequences on real Redis and on the model.
//!
//! Goal: find any sequence of everyday commands after which the model answers differently
//! from real Redis 7.0.15, and shrink it to the shortest such sequence. The hand-written
//! corpus (`tests/redis/differential.rs`) checks the cases someone thought of; this checks the
//! interleavings nobody did: a TTL set by one command and read through another, a type
//! changed under a later command, a script in the middle of it all.
//!
//! Method: proptest draws sequences of 1 to 40 commands from a small grammar over three keys
//! and three fields (strings and counters, TTLs, lists, hashes, sorted sets, key commands and
//! a few EVALs). Each sequence runs on a real Redis (after FLUSHALL, on db 9) and on a fresh
//! model, command by command; the first reply that differs fails the case, and proptest
//! shrinks the sequence. `random_sequences_agree_with_real_redis_resp3` runs the same with
//! both connections in RESP3 (`HELLO 3` first). The model's clock follows the wall clock, as the real server's does;
//! TTLs are whole seconds of at least 10, so nothing expires during a case, and TTL and
//! EXPIRETIME replies are compared with a tolerance of one second.
//!
//! Needs a real Redis (`redis-server` on PATH or `REDIS_URL`); without one it prints
//! `skipped: no redis-server (...)`, and `RATELAB_REQUIRE_REDIS=1` makes that a failure.
//! `PROPTEST_CASES` overrides the case count (200).

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use ratelab::model::{Limits, Model, NodeConfig, Reply};
use ratelab::redis_server::{RedisClient, real_redis_or_skip};
use ratelab::resp::codec::{Protocol, encode_reply_as, parse_reply};

/// The keys every command draws from: few, so that commands collide on them.
const KEYS: &[&str] = &["k1", "k2", "k3"];

/// The hash fields and sorted-set members.
const FIELDS: &[&str] = &["f1", "f2", "f3"];

/// Values: numbers (counters), non-numbers, edges of the integer range, the empty string.
const VALUES: &[&str] = &[
    "v",
    "",
    "0",
    "1",
    "10",
    "-1",
    "abc",
    "1.5",
    "9223372036854775807",
    "-9223372036854775808",
];

/// Integer arguments (increments, counts, indexes).
const INTEGERS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-2",
    "5",
    "100",
    "x",
    "9223372036854775807",
    "-9223372036854775808",
];

/// Scores for sorted sets.
const SCORES: &[&str] = &["0", "1", "1.5", "-2", "10", "inf", "-inf", "abc"];

/// TTLs in seconds: at least 10 so nothing expires mid-case, plus the values that delete or
/// are refused at once.
const TTLS_S: &[&str] = &["10", "100", "1000", "0", "-1", "x"];

/// Default number of cases.
const CASES: u32 = 200;

/// How a reply is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    /// Byte for byte.
    Exact,
    /// Integers within one second (TTL, EXPIRETIME).
    Seconds,
}

/// One command of a sequence.
#[derive(Clone)]
struct Op {
    argv: Vec<String>,
    compare: Compare,
}

impl fmt::Debug for Op {
    // Prints the command as a redis-cli line, so a shrunk failure reads as a transcript.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.argv.iter().map(|arg| format!("{arg:?}")).collect();
        f.write_str(&quoted.join(" "))
    }
}

fn op(argv: &[&str]) -> Op {
    Op {
        argv: argv.iter().map(|arg| (*arg).to_owned()).collect(),
        compare: Compare::Exact,
    }
}

fn seconds(argv: &[&str]) -> Op {
    Op {
        compare: Compare::Seconds,
        ..op(argv)
    }
}

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(KEYS)
}

fn field() -> impl Strategy<Value = &'static str> {
    prop::sample::select(FIELDS)
}

fn value() -> impl Strategy<Value = &'static str> {
    prop::sample::select(VALUES)
}

fn integer() -> impl Strategy<Value = &'static str> {
    prop::sample::select(INTEGERS)
}

fn score() -> impl Strategy<Value = &'static str> {
    prop::sample::select(SCORES)
}

fn ttl_s() -> impl Strategy<Value = &'static str> {
    prop::sample::select(TTLS_S)
}

/// SET's option lists, valid and not.
fn set_options() -> impl Strategy<Value = &'static [&'static str]> {
    const OPTIONS: &[&[&str]] = &[
        &[],
        &["NX"],
        &["XX"],
        &["GET"],
        &["EX", "100"],
        &["PX", "100000"],
        &["KEEPTTL"],
        &["NX", "GET"],
        &["XX", "EX", "50"],
        &["EX", "0"],
        &["KEEPTTL", "EX", "10"],
    ];
    prop::sample::select(OPTIONS)
}

/// EXPIRE's condition options for relative times: no GT or LT, because whether
/// `now + ttl` beats an expiry set a moment earlier with the same ttl depends on whether a
/// millisecond passed in between, which differs between the two servers (`absolute_expire`
/// tests GT and LT with absolute times instead).
fn expire_options() -> impl Strategy<Value = &'static [&'static str]> {
    const OPTIONS: &[&[&str]] = &[&[], &["NX"], &["XX"], &["NX", "XX"]];
    prop::sample::select(OPTIONS)
}

/// Every condition option, for absolute expiry times, whose comparisons cannot race.
fn absolute_expire_options() -> impl Strategy<Value = &'static [&'static str]> {
    const OPTIONS: &[&[&str]] = &[
        &[],
        &["NX"],
        &["XX"],
        &["GT"],
        &["LT"],
        &["XX", "GT"],
        &["NX", "XX"],
    ];
    prop::sample::select(OPTIONS)
}

/// Absolute expiry times in seconds, far in the future (2100 and later).
fn absolute_expire_s() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["4102444800", "4102444900", "4102445000"][..])
}

fn strings() -> Vec<BoxedStrategy<Op>> {
    vec![
        (key(), value(), set_options())
            .prop_map(|(key, value, options)| {
                let mut argv = vec!["SET", key, value];
                argv.extend_from_slice(options);
                op(&argv)
            })
            .boxed(),
        key().prop_map(|key| op(&["GET", key])).boxed(),
        key().prop_map(|key| op(&["INCR", key])).boxed(),
        key().prop_map(|key| op(&["DECR", key])).boxed(),
        (key(), integer())
            .prop_map(|(key, by)| op(&["INCRBY", key, by]))
            .boxed(),
        (key(), integer())
            .prop_map(|(key, by)| op(&["DECRBY", key, by]))
            .boxed(),
        (key(), value())
            .prop_map(|(key, value)| op(&["APPEND", key, value]))
            .boxed(),
        key().prop_map(|key| op(&["GETDEL", key])).boxed(),
        (key(), value())
            .prop_map(|(key, value)| op(&["GETSET", key, value]))
            .boxed(),
        (key(), value())
            .prop_map(|(key, value)| op(&["SETNX", key, value]))
            .boxed(),
        key().prop_map(|key| op(&["STRLEN", key])).boxed(),
        (key(), key())
            .prop_map(|(a, b)| op(&["MGET", a, b]))
            .boxed(),
        (key(), value(), key(), value())
            .prop_map(|(a, x, b, y)| op(&["MSET", a, x, b, y]))
            .boxed(),
    ]
}

fn ttls() -> Vec<BoxedStrategy<Op>> {
    vec![
        (key(), ttl_s(), expire_options())
            .prop_map(|(key, ttl, options)| {
                let mut argv = vec!["EXPIRE", key, ttl];
                argv.extend_from_slice(options);
                op(&argv)
            })
            .boxed(),
        (key(), ttl_s(), expire_options())
            .prop_map(|(key, ttl, options)| {
                // Whole seconds in ms, so that the one-second tolerance still holds.
                let ttl_ms = match ttl {
                    "x" => "x".to_owned(),
                    other => format!("{other}000"),
                };
                let mut argv = vec!["PEXPIRE", key, ttl_ms.as_str()];
                argv.extend_from_slice(options);
                op(&argv)
            })
            .boxed(),
        (key(), absolute_expire_s(), absolute_expire_options())
            .prop_map(|(key, at, options)| {
                let mut argv = vec!["EXPIREAT", key, at];
                argv.extend_from_slice(options);
                op(&argv)
            })
            .boxed(),
        key().prop_map(|key| seconds(&["TTL", key])).boxed(),
        key().prop_map(|key| seconds(&["EXPIRETIME", key])).boxed(),
        key().prop_map(|key| op(&["PERSIST", key])).boxed(),
        (key(), value(), ttl_s())
            .prop_map(|(key, value, ttl)| op(&["SETEX", key, ttl, value]))
            .boxed(),
        key()
            .prop_map(|key| op(&["GETEX", key, "EX", "100"]))
            .boxed(),
    ]
}

fn lists() -> Vec<BoxedStrategy<Op>> {
    vec![
        (key(), value(), value())
            .prop_map(|(key, a, b)| op(&["LPUSH", key, a, b]))
            .boxed(),
        (key(), value())
            .prop_map(|(key, value)| op(&["RPUSH", key, value]))
            .boxed(),
        key().prop_map(|key| op(&["LPOP", key])).boxed(),
        (key(), integer())
            .prop_map(|(key, count)| op(&["RPOP", key, count]))
            .boxed(),
        key().prop_map(|key| op(&["LLEN", key])).boxed(),
        (key(), integer(), integer())
            .prop_map(|(key, start, stop)| op(&["LRANGE", key, start, stop]))
            .boxed(),
        (key(), integer())
            .prop_map(|(key, index)| op(&["LINDEX", key, index]))
            .boxed(),
        (key(), integer(), integer())
            .prop_map(|(key, start, stop)| op(&["LTRIM", key, start, stop]))
            .boxed(),
        (key(), integer(), value())
            .prop_map(|(key, count, value)| op(&["LREM", key, count, value]))
            .boxed(),
        (key(), integer(), value())
            .prop_map(|(key, index, value)| op(&["LSET", key, index, value]))
            .boxed(),
    ]
}

fn hashes() -> Vec<BoxedStrategy<Op>> {
    vec![
        (key(), field(), value())
            .prop_map(|(key, field, value)| op(&["HSET", key, field, value]))
            .boxed(),
        (key(), field(), value())
            .prop_map(|(key, field, value)| op(&["HSETNX", key, field, value]))
            .boxed(),
        (key(), field())
            .prop_map(|(key, field)| op(&["HGET", key, field]))
            .boxed(),
        (key(), field())
            .prop_map(|(key, field)| op(&["HDEL", key, field]))
            .boxed(),
        key().prop_map(|key| op(&["HGETALL", key])).boxed(),
        key().prop_map(|key| op(&["HLEN", key])).boxed(),
        (key(), field(), integer())
            .prop_map(|(key, field, by)| op(&["HINCRBY", key, field, by]))
            .boxed(),
        (key(), field(), field())
            .prop_map(|(key, a, b)| op(&["HMGET", key, a, b]))
            .boxed(),
        (key(), field())
            .prop_map(|(key, field)| op(&["HEXISTS", key, field]))
            .boxed(),
    ]
}

fn zsets() -> Vec<BoxedStrategy<Op>> {
    const ZADD_OPTIONS: &[&[&str]] = &[&[], &["NX"], &["XX"], &["GT"], &["LT", "CH"], &["CH"]];
    vec![
        (key(), prop::sample::select(ZADD_OPTIONS), score(), field())
            .prop_map(|(key, options, score, member)| {
                let mut argv = vec!["ZADD", key];
                argv.extend_from_slice(options);
                argv.extend([score, member]);
                op(&argv)
            })
            .boxed(),
        (key(), score(), field())
            .prop_map(|(key, by, member)| op(&["ZINCRBY", key, by, member]))
            .boxed(),
        (key(), field())
            .prop_map(|(key, member)| op(&["ZREM", key, member]))
            .boxed(),
        (key(), field())
            .prop_map(|(key, member)| op(&["ZSCORE", key, member]))
            .boxed(),
        key().prop_map(|key| op(&["ZCARD", key])).boxed(),
        key()
            .prop_map(|key| op(&["ZRANGE", key, "0", "-1", "WITHSCORES"]))
            .boxed(),
        (key(), score(), score())
            .prop_map(|(key, min, max)| op(&["ZRANGEBYSCORE", key, min, max]))
            .boxed(),
        (key(), score(), score())
            .prop_map(|(key, min, max)| op(&["ZCOUNT", key, min, max]))
            .boxed(),
        (key(), integer(), integer())
            .prop_map(|(key, start, stop)| op(&["ZREMRANGEBYRANK", key, start, stop]))
            .boxed(),
    ]
}

fn keyspace() -> Vec<BoxedStrategy<Op>> {
    vec![
        key().prop_map(|key| op(&["DEL", key])).boxed(),
        (key(), key())
            .prop_map(|(a, b)| op(&["EXISTS", a, b]))
            .boxed(),
        key().prop_map(|key| op(&["TYPE", key])).boxed(),
        (key(), key())
            .prop_map(|(a, b)| op(&["RENAME", a, b]))
            .boxed(),
        (key(), key())
            .prop_map(|(a, b)| op(&["COPY", a, b]))
            .boxed(),
        Just(op(&["DBSIZE"])).boxed(),
    ]
}

fn scripts() -> Vec<BoxedStrategy<Op>> {
    const SCRIPTS: &[&str] = &[
        "return redis.call('incr', KEYS[1])",
        "return redis.call('get', KEYS[1])",
        "local v = redis.call('incrby', KEYS[1], ARGV[1]) if v == tonumber(ARGV[1]) then \
         redis.call('expire', KEYS[1], 100) end return v",
        "return redis.pcall('lpush', KEYS[1], ARGV[1])",
        "return {redis.call('exists', KEYS[1]), redis.call('type', KEYS[1]).ok}",
        "return redis.call('hgetall', KEYS[1])",
        "redis.call('set', KEYS[1], ARGV[1]) return redis.call('strlen', KEYS[1])",
        // RESP3 inside the script: maps, doubles and score pairs handed to Lua and back.
        "redis.setresp(3) return redis.call('hgetall', KEYS[1])",
        "redis.setresp(3) return redis.call('zrange', KEYS[1], 0, -1, 'withscores')",
        "redis.setresp(3) local v = redis.call('get', KEYS[1]) return {v == nil, v ~= false}",
        "redis.setresp(3) return {redis.call('exists', KEYS[1]) == 1, redis.call('zscore', KEYS[1], ARGV[1])}",
    ];
    vec![
        (prop::sample::select(SCRIPTS), key(), value())
            .prop_map(|(script, key, value)| op(&["EVAL", script, "1", key, value]))
            .boxed(),
    ]
}

/// One command from the whole grammar.
fn any_op() -> impl Strategy<Value = Op> {
    let mut arms = Vec::new();
    for family in [
        strings(),
        ttls(),
        lists(),
        hashes(),
        zsets(),
        keyspace(),
        scripts(),
    ] {
        arms.extend(family);
    }
    Union::new(arms)
}

fn wall_clock_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_millis()).expect("ms since 1970 fit u64")
}

fn agree(compare: Compare, expected: &Reply, got: &Reply) -> bool {
    match (compare, expected, got) {
        (Compare::Seconds, Reply::Integer(expected), Reply::Integer(got)) => {
            (i128::from(*expected) - i128::from(*got)).abs() <= 1
        }
        _ => expected == got,
    }
}

/// A reply as a client speaking `protocol` reads it (in RESP3 both nulls are `_`).
fn as_received(reply: &Reply, protocol: Protocol) -> Reply {
    let mut bytes = Vec::new();
    encode_reply_as(reply, protocol, &mut bytes);
    match parse_reply(&bytes, &Limits::standard()) {
        Ok(Some((reply, _))) => reply,
        other => panic!("the model's reply does not parse back: {other:?}"),
    }
}

/// `HELLO <version>`.
fn hello(protocol: Protocol) -> Vec<Vec<u8>> {
    let version = match protocol {
        Protocol::Resp2 => b"2".to_vec(),
        Protocol::Resp3 => b"3".to_vec(),
    };
    vec![b"HELLO".to_vec(), version]
}

/// Runs one sequence on both sides, each connection speaking `protocol`; the first
/// difference fails the case.
fn run_case(redis: &mut RedisClient, ops: &[Op], protocol: Protocol) -> Result<(), TestCaseError> {
    let flushed = redis
        .command(&["FLUSHALL"])
        .map_err(|error| TestCaseError::fail(format!("FLUSHALL on real Redis: {error}")))?;
    prop_assert_eq!(flushed, Reply::Status("OK".to_owned()));
    let mut model = Model::new(NodeConfig::standalone(1));
    let mut session = model.connect("127.0.0.1:1");
    model.exec(wall_clock_ms(), &mut session, &hello(protocol));
    model.exec(
        wall_clock_ms(),
        &mut session,
        &[b"SELECT".to_vec(), b"9".to_vec()],
    );
    for (index, op) in ops.iter().enumerate() {
        let argv: Vec<Vec<u8>> = op.argv.iter().map(|arg| arg.as_bytes().to_vec()).collect();
        let expected = redis
            .command(&argv)
            .map_err(|error| TestCaseError::fail(format!("real Redis at {op:?}: {error}")))?;
        let got = as_received(&model.exec(wall_clock_ms(), &mut session, &argv), protocol);
        if !agree(op.compare, &expected, &got) {
            return Err(TestCaseError::fail(format!(
                "command {index} ({op:?}): Redis answered {expected:?}, the model {got:?}"
            )));
        }
    }
    Ok(())
}

fn check_random_sequences(test_name: &str, protocol: Protocol) {
    let Some(server) = real_redis_or_skip(test_name) else {
        return;
    };
    let mut redis = server.connect().expect("connect to the real Redis");
    redis.command(&hello(protocol)).expect("HELLO");
    let selected = redis.command(&["SELECT", "9"]).expect("SELECT 9");
    assert_eq!(selected, Reply::Status("OK".to_owned()));
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    // The runner takes an `Fn`; the one connection is reused by every case.
    let redis = RefCell::new(redis);
    let outcome = runner.run(&prop::collection::vec(any_op(), 1..=40), |ops| {
        run_case(&mut redis.borrow_mut(), &ops, protocol)
    });
    // The server is dropped (and killed) before the assertion can unwind past it anyway.
    drop(redis);
    drop(server);
    if let Err(failure) = outcome {
        panic!("the model differs from real Redis ({protocol:?}): {failure}");
    }
}

#[test]
fn random_sequences_agree_with_real_redis() {
    check_random_sequences("random_sequences_agree_with_real_redis", Protocol::Resp2);
}

/// The same grammar with both connections in RESP3 (`HELLO 3`).
#[test]
fn random_sequences_agree_with_real_redis_resp3() {
    check_random_sequences(
        "random_sequences_agree_with_real_redis_resp3",
        Protocol::Resp3,
    );
}

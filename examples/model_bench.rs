//! Throughput of the in-process Redis model: token-bucket decisions through EVALSHA, and plain
//! INCR and GET, and the cost of one EVALSHA for a few small scripts (the real GCRA among
//! them), all through `Model::exec` on one thread.
//!
//! Run with `cargo run --release --example model_bench`; with an argument, only the script
//! cases whose name contains it run (for profiling one of them). The decision script is the usual
//! token bucket: HMGET the bucket, refill by elapsed time, take one token, HSET and PEXPIRE.
//! It measures the model (command dispatch, the Lua host, value conversions), not a network.

use std::time::Instant;

use ratelab::model::command;
use ratelab::model::{Model, NodeConfig, Reply};

/// The bucket script: KEYS[1] bucket hash {tokens, ts_ms}; ARGV: refill_per_s, capacity,
/// now_ms, cost. Returns {allowed (0|1), tokens left}.
const TOKEN_BUCKET: &str = r#"
local refill_per_s = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now_ms = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts_ms')
local tokens = tonumber(state[1]) or capacity
local ts_ms = tonumber(state[2]) or now_ms
local elapsed_ms = math.max(0, now_ms - ts_ms)
tokens = math.min(capacity, tokens + elapsed_ms * refill_per_s / 1000)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts_ms', now_ms)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / refill_per_s * 1000))
return {allowed, math.floor(tokens)}
"#;

/// The scripts timed one EVALSHA at a time: the host's fixed cost, a small reply table, one
/// `redis.call`, and the real GCRA limiter (reading Redis TIME, as in production).
const SCRIPT_CASES: &[(&str, &str)] = &[
    ("return 1", "return 1"),
    ("return {1,2,3,4}", "return {1,2,3,4}"),
    ("one GET", "return redis.call('GET', KEYS[1])"),
    ("lua/gcra.lua", include_str!("../lua/gcra.lua")),
];

const SCRIPT_CALLS: u64 = 500_000;

const DECISIONS: u64 = 1_000_000;
const PLAIN_COMMANDS: u64 = 2_000_000;
const KEYS: u64 = 1000;

fn words(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|item| item.to_vec()).collect()
}

fn main() {
    let only = std::env::args().nth(1);
    for name in ["hmget", "hset", "pexpire", "incr", "get", "evalsha"] {
        if command::lookup(name.as_bytes()).is_none() {
            println!("skipped: this build of the model has no {name}");
            return;
        }
    }
    let mut model = Model::new(NodeConfig::standalone(1));
    let mut session = model.connect("127.0.0.1:1");
    let now_ms = 1_700_000_000_000u64;
    let Reply::Bulk(sha) = model.exec(
        now_ms,
        &mut session,
        &words(&[b"SCRIPT", b"LOAD", TOKEN_BUCKET.as_bytes()]),
    ) else {
        panic!("SCRIPT LOAD failed");
    };
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|index| format!("bucket:{index}").into_bytes())
        .collect();

    let mut allowed = 0u64;
    let decisions = if only.is_some() { 0 } else { DECISIONS };
    let started = Instant::now();
    for decision in 0..decisions {
        let at_ms = now_ms + decision / 10;
        let argv = vec![
            b"EVALSHA".to_vec(),
            sha.clone(),
            b"1".to_vec(),
            keys[(decision % KEYS) as usize].clone(),
            b"10".to_vec(),
            b"20".to_vec(),
            at_ms.to_string().into_bytes(),
            b"1".to_vec(),
        ];
        match model.exec(at_ms, &mut session, &argv) {
            Reply::Array(items) if items.first() == Some(&Reply::Integer(1)) => allowed += 1,
            Reply::Array(_) => {}
            other => panic!("unexpected decision reply: {other:?}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if decisions > 0 {
        println!(
            "EVALSHA token bucket: {:.0} decisions/s ({DECISIONS} decisions, {allowed} allowed, {:.2} us each)",
            DECISIONS as f64 / seconds,
            seconds * 1e6 / DECISIONS as f64
        );
    }

    let gcra_keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|index| format!("gcra:{index}").into_bytes())
        .collect();
    for (name, body) in SCRIPT_CASES {
        if only
            .as_ref()
            .is_some_and(|only| !name.contains(only.as_str()))
        {
            continue;
        }
        let Reply::Bulk(case_sha) = model.exec(
            now_ms,
            &mut session,
            &words(&[b"SCRIPT", b"LOAD", body.as_bytes()]),
        ) else {
            panic!("SCRIPT LOAD failed: {name}");
        };
        let started = Instant::now();
        for call in 0..SCRIPT_CALLS {
            // GCRA's contract: burst 20, interval 50 ms, cost 1, and '' to read Redis TIME.
            let argv = vec![
                b"EVALSHA".to_vec(),
                case_sha.clone(),
                b"1".to_vec(),
                gcra_keys[(call % KEYS) as usize].clone(),
                b"20".to_vec(),
                b"50".to_vec(),
                b"1".to_vec(),
                Vec::new(),
            ];
            let reply = model.exec(now_ms + call / 10, &mut session, &argv);
            assert!(!matches!(reply, Reply::Error(_)), "{name}: {reply:?}");
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "EVALSHA {name}: {:.0} ns/call ({SCRIPT_CALLS} calls)",
            seconds * 1e9 / SCRIPT_CALLS as f64
        );
    }

    if only.is_some() {
        return;
    }
    let counters: Vec<Vec<u8>> = (0..KEYS)
        .map(|index| format!("counter:{index}").into_bytes())
        .collect();
    for verb in ["INCR", "GET"] {
        let started = Instant::now();
        for index in 0..PLAIN_COMMANDS {
            let argv = vec![
                verb.as_bytes().to_vec(),
                counters[(index % KEYS) as usize].clone(),
            ];
            let reply = model.exec(now_ms, &mut session, &argv);
            assert!(!matches!(reply, Reply::Error(_)), "{verb}: {reply:?}");
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{verb}: {:.0} commands/s ({PLAIN_COMMANDS} commands)",
            PLAIN_COMMANDS as f64 / seconds
        );
    }
}

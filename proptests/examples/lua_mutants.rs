//! A small mutator for `lua/`: how much of the script-versus-reference properties can fail.
//!
//! Each mutant changes one token outside comments of one script: a comparison (`<` `<=` `>`
//! `>=` `==` `~=` flipped to its neighbour), an arithmetic `+`/`-`/`*` swapped, or an integer
//! literal moved by one. The mutant runs on the Redis model through EVAL against its reference
//! on cases drawn by proptest from a pinned seed; it is killed when any reply differs or the
//! script errors. A survivor is printed with its line so that it can be explained or killed.
//!
//! - The five single-limit scripts: their `algo` reference, decision by decision (the same
//!   shapes as `tests/props/scripts_vs_algo.rs`: bursts, gaps across windows, costs 0-4).
//! - `multi_limit`: `algo::gcra::decide_all` over one, two and three limits, every field of
//!   the reply (`denied_by` included).
//! - `success_reserve` and `success_complete` (each mutated with the other intact):
//!   `algo::reservation`'s `reserve`/`complete` on admissions and completions (succeeded or
//!   failed, oldest ticket first), the reserve decision, whether it got an id, the completion's
//!   `{held, recorded}`, and after every call a TTL on each key that exists.
//! - `newapi_token_bucket` (legacy, no Rust twin): [`newapi_reference`], new-api's bucket as
//!   the script documents it (whole seconds, no clamp when the clock steps back), with clock
//!   steps back among the gaps.
//!
//! Run: `cargo run -p proptests --example lua_mutants` (add a script name to run only it).
//! The cases are drawn from a fixed ChaCha seed, so every run tests the same mutants on the
//! same cases: 64 cases per strategy (ordinary gaps, and clients that retry exactly when told
//! or a millisecond early), quota and clock. Results and every survivor's explanation:
//! `proptests/MUTANTS.md`.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use ratelab::algo::reservation::SuccessQuota;
use ratelab::algo::{self, Decision, RateQuota, WindowQuota};
use ratelab::limiter::atomic::{Algorithm, parse_decision};
use ratelab::model::{Model, NodeConfig, Reply};
use ratelab::redis::Script;

/// One mutant: the source and a description.
struct Mutant {
    line: usize,
    what: String,
    source: String,
}

const SWAPS: [(&str, &str); 9] = [
    ("<=", "<"),
    (">=", ">"),
    ("==", "~="),
    ("~=", "=="),
    ("<", "<="),
    (">", ">="),
    (" + ", " - "),
    (" - ", " + "),
    (" * ", " + "),
];

/// Every one-token mutant of `source`, comments left alone.
fn mutants(source: &str) -> Vec<Mutant> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let code_end = line.find("--").unwrap_or(line.len());
        let code = &line[..code_end];
        let mut variants: Vec<(String, String)> = Vec::new();
        let mut taken = vec![false; code.len()];
        for (from, to) in SWAPS {
            for (at, _) in code.match_indices(from) {
                if taken[at..at + from.len()].iter().any(|&t| t) {
                    continue;
                }
                taken[at..at + from.len()]
                    .iter_mut()
                    .for_each(|t| *t = true);
                let mutated = format!("{}{to}{}", &code[..at], &code[at + from.len()..]);
                variants.push((mutated, format!("`{}` -> `{}`", from.trim(), to.trim())));
            }
        }
        let bytes = code.as_bytes();
        for (at, &byte) in bytes.iter().enumerate() {
            let starts = byte.is_ascii_digit()
                && (at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_'));
            if !starts {
                continue;
            }
            let end = (at..bytes.len())
                .find(|&i| !bytes[i].is_ascii_digit())
                .unwrap_or(bytes.len());
            if bytes
                .get(end)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'.')
            {
                continue;
            }
            let value: i64 = code[at..end].parse().expect("digits");
            let mutated = format!("{}{}{}", &code[..at], value + 1, &code[end..]);
            variants.push((mutated, format!("`{value}` -> `{}`", value + 1)));
        }
        for (mutated, what) in variants {
            let mut copy: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            copy[index] = format!("{mutated}{}", &line[code_end..]);
            found.push(Mutant {
                line: index + 1,
                what,
                source: copy.join("\n"),
            });
        }
    }
    found
}

/// A gap that means "wait what the last denial said" (`retry_after_ms`), and one that means a
/// millisecond less: a client obeying Retry-After lands exactly on the boundary a script must
/// compute to the millisecond. Resolved against the reference's last decision (0 when it was
/// admitted or can never be).
const RETRY: u64 = u64::MAX;
const RETRY_EARLY: u64 = u64::MAX - 1;

/// The gap a step waits: `RETRY`/`RETRY_EARLY` resolved against the last decision.
fn resolve(gap_ms: u64, last: Option<Decision>) -> u64 {
    let wait = last
        .filter(|decision| !decision.allowed && decision.retry_after_ms != u64::MAX)
        .map_or(0, |decision| decision.retry_after_ms);
    match gap_ms {
        RETRY => wait,
        RETRY_EARLY => wait.saturating_sub(1),
        gap_ms => gap_ms,
    }
}

/// The reference's times and decisions for `(gap, cost)` steps from `start_ms`.
fn reference(algorithm: Algorithm, steps: &[(u64, u64)], start_ms: u64) -> Vec<(u64, Decision)> {
    let (mut fixed, mut sliding, mut log, mut bucket, mut tat) =
        (None, None, Vec::new(), None, None);
    let mut now_ms = start_ms;
    let mut last = None;
    steps
        .iter()
        .map(|&(gap_ms, cost)| {
            now_ms += resolve(gap_ms, last);
            let decision = match algorithm {
                Algorithm::FixedWindow(quota) => {
                    let (decision, state) = algo::fixed_window::decide(quota, fixed, now_ms, cost);
                    fixed = if decision.allowed { Some(state) } else { fixed };
                    decision
                }
                Algorithm::SlidingWindow(quota) => {
                    let (decision, state) =
                        algo::sliding_window::decide(quota, sliding, now_ms, cost);
                    sliding = if decision.allowed {
                        Some(state)
                    } else {
                        sliding
                    };
                    decision
                }
                Algorithm::SlidingLog(quota) => {
                    algo::sliding_log::decide(quota, &mut log, now_ms, cost)
                }
                Algorithm::TokenBucket(quota) => {
                    let (decision, state) = algo::token_bucket::decide(quota, bucket, now_ms, cost);
                    bucket = Some(state);
                    decision
                }
                Algorithm::Gcra(quota) => {
                    let (decision, stored) = algo::gcra::decide(quota, tat, now_ms, cost);
                    tat = stored.or(tat);
                    decision
                }
            };
            last = Some(decision);
            (now_ms, decision)
        })
        .collect()
}

/// Whether `source` agrees with `algorithm`'s reference on `steps`. With `gateway_clock`
/// the time goes in ARGV and Redis's own clock runs at half speed, so a script that read TIME
/// instead would disagree; otherwise the script reads TIME.
fn agrees(source: &str, algorithm: Algorithm, gateway_clock: bool, steps: &[(u64, u64)]) -> bool {
    let start_ms = 1_700_000_000_000;
    let expected = reference(algorithm, steps, start_ms);
    let mut model = Model::new(NodeConfig::standalone(11));
    let mut session = model.connect("mutant");
    for (&(_, cost), (now_ms, expected)) in steps.iter().zip(expected) {
        let mut argv = vec![
            b"EVAL".to_vec(),
            source.as_bytes().to_vec(),
            b"1".to_vec(),
            b"k".to_vec(),
        ];
        argv.extend(algorithm.args(cost, gateway_clock.then_some(now_ms)));
        // Redis's clock runs at half speed: always behind (a key outlives its TTL, which the
        // scripts allow), and a script that read TIME would see other gaps.
        let redis_ms = if gateway_clock {
            start_ms + (now_ms - start_ms) / 2
        } else {
            now_ms
        };
        let reply = model.exec(redis_ms, &mut session, &argv);
        if parse_decision(&reply).ok() != Some(expected) {
            return false;
        }
    }
    true
}

fn steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
    let gap = prop_oneof![4 => Just(0u64), 4 => 0u64..300, 1 => 0u64..5_000];
    prop::collection::vec((gap, 0u64..5), 1..60)
}

/// Clients that retry when told (or a millisecond early) between the same kinds of gaps.
fn obedient_steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
    let gap = prop_oneof![
        4 => Just(0u64),
        4 => 0u64..300,
        1 => 0u64..5_000,
        3 => Just(RETRY),
        3 => Just(RETRY_EARLY),
    ];
    prop::collection::vec((gap, 0u64..5), 1..60)
}

/// Killed by the pinned-seed properties (a fresh runner per mutant and strategy, so each
/// sees the same cases).
fn killed(source: &str, algorithm: Algorithm, gateway_clock: bool) -> bool {
    let judge = |steps: &Vec<(u64, u64)>| agrees(source, algorithm, gateway_clock, steps);
    fails(steps(), judge) || fails(obedient_steps(), judge)
}

/// Each script under two quotas (a common one, and the smallest: interval or window 1 ms,
/// where rounding shows) and both clocks.
fn configurations(kind: usize) -> Vec<(Algorithm, bool)> {
    let quotas = [(3, 1_000, 100), (2, 1, 1)];
    let mut all = Vec::new();
    for (limit, window_ms, interval_ms) in quotas {
        let window = WindowQuota::new(limit, window_ms).expect("valid");
        let rate = RateQuota::new(limit, interval_ms).expect("valid");
        let algorithm = [
            Algorithm::FixedWindow(window),
            Algorithm::SlidingWindow(window),
            Algorithm::SlidingLog(window),
            Algorithm::TokenBucket(rate),
            Algorithm::Gcra(rate),
        ][kind];
        all.extend([(algorithm, false), (algorithm, true)]);
    }
    all
}

/// Whether `check` fails on any case `strategy` draws from the pinned seed (a fresh runner
/// per call, so every mutant sees the same cases).
fn fails<S: Strategy>(strategy: S, check: impl Fn(&S::Value) -> bool) -> bool {
    let config = Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&strategy, |value| {
            prop_assert!(check(&value));
            Ok(())
        })
        .is_err()
}

/// The integers of an array reply (`None` for anything else, an error included).
fn integers(reply: &Reply) -> Option<Vec<i64>> {
    let Reply::Array(items) = reply else {
        return None;
    };
    items
        .iter()
        .map(|item| match item {
            Reply::Integer(value) => Some(*value),
            _ => None,
        })
        .collect()
}

/// `u64::MAX` ("never") as the scripts send it: -1.
fn wire(value: u64) -> i64 {
    if value == u64::MAX {
        -1
    } else {
        i64::try_from(value).expect("fits")
    }
}

/// The Redis time for gateway time `now_ms`: the same, or (with the gateway clock) half speed.
fn redis_time(start_ms: u64, now_ms: u64, gateway_clock: bool) -> u64 {
    if gateway_clock {
        start_ms + (now_ms - start_ms) / 2
    } else {
        now_ms
    }
}

/// Whether `multi_limit` source agrees with `algo::gcra::decide_all` on `steps`, every field
/// of the reply (`denied_by` included) compared.
fn multi_agrees(
    source: &str,
    quotas: &[RateQuota],
    gateway_clock: bool,
    steps: &[(u64, u64)],
) -> bool {
    let start_ms = 1_700_000_000_000;
    let mut model = Model::new(NodeConfig::standalone(11));
    let mut session = model.connect("mutant");
    let mut tats: Vec<Option<u64>> = vec![None; quotas.len()];
    let mut now_ms = start_ms;
    let mut last = None;
    for &(gap_ms, cost) in steps {
        now_ms += resolve(gap_ms, last);
        let pairs: Vec<(RateQuota, Option<u64>)> =
            quotas.iter().copied().zip(tats.iter().copied()).collect();
        let (expected, stores) = algo::gcra::decide_all(&pairs, now_ms, cost);
        for (tat, store) in tats.iter_mut().zip(stores) {
            *tat = store.or(*tat);
        }
        last = Some(expected.decision);
        let mut argv = vec![
            b"EVAL".to_vec(),
            source.as_bytes().to_vec(),
            quotas.len().to_string().into_bytes(),
        ];
        argv.extend((0..quotas.len()).map(|index| format!("m{index}").into_bytes()));
        argv.push(cost.to_string().into_bytes());
        argv.push(if gateway_clock {
            now_ms.to_string().into_bytes()
        } else {
            Vec::new()
        });
        for quota in quotas {
            argv.push(quota.burst().to_string().into_bytes());
            argv.push(quota.interval_ms().to_string().into_bytes());
        }
        let reply = model.exec(
            redis_time(start_ms, now_ms, gateway_clock),
            &mut session,
            &argv,
        );
        let decision = expected.decision;
        let want = vec![
            i64::from(decision.allowed),
            expected
                .denied_by
                .map_or(0, |index| i64::try_from(index).expect("fits") + 1),
            wire(decision.remaining),
            wire(decision.retry_after_ms),
            wire(decision.reset_after_ms),
        ];
        if integers(&reply) != Some(want) {
            return false;
        }
    }
    true
}

/// One step of the success limit: a gap, then an admission (`0`, or when nothing is held) or
/// the completion of the oldest ticket (`1` failed, otherwise succeeded).
fn success_steps() -> impl Strategy<Value = Vec<(u64, u8)>> {
    let gap = prop_oneof![
        3 => Just(0u64),
        4 => 0u64..400,
        1 => 0u64..3_000,
        2 => Just(RETRY),
        2 => Just(RETRY_EARLY),
    ];
    prop::collection::vec((gap, 0u8..4), 1..60)
}

/// Whether the success scripts `reserve` and `complete` agree with `algo::reservation` on
/// `steps`: every admission's decision and whether it got an id, every completion's
/// `{held, recorded}`, and after each call a TTL on every key that exists.
fn success_agrees(
    reserve: &str,
    complete: &str,
    quota: SuccessQuota,
    gateway_clock: bool,
    steps: &[(u64, u8)],
) -> bool {
    let start_ms = 1_700_000_000_000;
    let mut model = Model::new(NodeConfig::standalone(11));
    let mut session = model.connect("mutant");
    let mut state = algo::reservation::State::default();
    let mut tickets: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut now_ms = start_ms;
    let mut last = None;
    let keys = [b"ok".to_vec(), b"held".to_vec(), b"ids".to_vec()];
    let clock = |now_ms: u64| {
        if gateway_clock {
            now_ms.to_string().into_bytes()
        } else {
            Vec::new()
        }
    };
    for &(gap_ms, action) in steps {
        now_ms += resolve(gap_ms, last);
        let redis_ms = redis_time(start_ms, now_ms, gateway_clock);
        let mut argv = vec![b"EVAL".to_vec(), Vec::new(), b"3".to_vec()];
        argv.extend(keys.iter().cloned());
        if action == 0 || tickets.is_empty() {
            let (expected, id) = algo::reservation::reserve(quota, &mut state, now_ms);
            last = Some(expected);
            argv[1] = reserve.as_bytes().to_vec();
            argv.extend([
                quota.limit().to_string().into_bytes(),
                quota.window_ms().to_string().into_bytes(),
                quota.lease_ms().to_string().into_bytes(),
                clock(now_ms),
            ]);
            let Reply::Array(mut items) = model.exec(redis_ms, &mut session, &argv) else {
                return false;
            };
            let ticket = match items.pop() {
                Some(Reply::Bulk(ticket)) => ticket,
                _ => return false,
            };
            if parse_decision(&Reply::Array(items)).ok() != Some(expected)
                || ticket.is_empty() == id.is_some()
            {
                return false;
            }
            if let Some(id) = id {
                tickets.push((ticket, id));
            }
        } else {
            let (ticket, id) = tickets.remove(0);
            let succeeded = action != 1;
            let held = algo::reservation::complete(quota, &mut state, id, succeeded, now_ms);
            argv[1] = complete.as_bytes().to_vec();
            argv.extend([
                ticket,
                if succeeded {
                    b"1".to_vec()
                } else {
                    b"0".to_vec()
                },
                quota.window_ms().to_string().into_bytes(),
                clock(now_ms),
            ]);
            let reply = model.exec(redis_ms, &mut session, &argv);
            if integers(&reply) != Some(vec![i64::from(held), i64::from(succeeded)]) {
                return false;
            }
        }
        // The scripts' other promise: every key they leave has a TTL (-1 would be none).
        for key in &keys {
            let ttl = model.exec(redis_ms, &mut session, &[b"PTTL".to_vec(), key.clone()]);
            if ttl == Reply::Integer(-1) {
                return false;
            }
        }
    }
    true
}

/// new-api's bucket as `lua/newapi_token_bucket.lua` documents it (there is no Rust twin:
/// this is its reference): whole seconds of Redis time, refill `elapsed × rate` capped at the
/// capacity, no clamp when the clock steps back, and the state written on every call.
fn newapi_reference(
    state: &mut Option<(i64, i64)>,
    now_s: i64,
    requested: i64,
    rate: i64,
    capacity: i64,
) -> bool {
    let tokens = match *state {
        None => capacity,
        Some((tokens, last_s)) => capacity.min(tokens + (now_s - last_s) * rate),
    };
    let admitted = tokens >= requested;
    *state = Some((if admitted { tokens - requested } else { tokens }, now_s));
    admitted
}

/// Steps for new-api's bucket: gaps in ms (some of them back: the script does not clamp) and
/// the tokens requested.
fn newapi_steps() -> impl Strategy<Value = Vec<(i64, i64)>> {
    let gap = prop_oneof![
        3 => Just(0i64),
        3 => 0i64..1_500,
        2 => 0i64..6_000,
        1 => -3_000i64..0,
    ];
    prop::collection::vec((gap, 0i64..5), 1..60)
}

/// Whether `newapi_token_bucket` source agrees with [`newapi_reference`] on `steps`; the
/// script reads Redis TIME, so the model's clock is the only clock.
fn newapi_agrees(source: &str, rate: i64, capacity: i64, steps: &[(i64, i64)]) -> bool {
    let mut model = Model::new(NodeConfig::standalone(11));
    let mut session = model.connect("mutant");
    let mut state = None;
    let mut now_ms: i64 = 1_700_000_000_000;
    for &(gap_ms, requested) in steps {
        now_ms += gap_ms;
        let expected = newapi_reference(&mut state, now_ms / 1_000, requested, rate, capacity);
        let argv = vec![
            b"EVAL".to_vec(),
            source.as_bytes().to_vec(),
            b"1".to_vec(),
            b"bucket".to_vec(),
            requested.to_string().into_bytes(),
            rate.to_string().into_bytes(),
            capacity.to_string().into_bytes(),
        ];
        let reply = model.exec(
            u64::try_from(now_ms).expect("positive"),
            &mut session,
            &argv,
        );
        if reply != Reply::Integer(i64::from(expected)) {
            return false;
        }
    }
    true
}

/// A script and the judge of its mutants: `true` when a mutant's source is killed.
struct Target {
    name: &'static str,
    source: &'static str,
    killed: Box<dyn Fn(&str) -> bool>,
}

fn targets() -> Vec<Target> {
    let mut all = Vec::new();
    for kind in 0..5 {
        let configurations = configurations(kind);
        let script = configurations[0].0.script();
        all.push(Target {
            name: script.name(),
            source: script.source(),
            killed: Box::new(move |source| {
                configurations
                    .iter()
                    .any(|&(algorithm, gateway_clock)| killed(source, algorithm, gateway_clock))
            }),
        });
    }
    let rate = |burst, interval_ms| RateQuota::new(burst, interval_ms).expect("valid");
    let limit_sets = [
        vec![rate(2, 1)],
        vec![rate(3, 100), rate(2, 1)],
        vec![rate(2, 50), rate(1, 1), rate(4, 300)],
    ];
    all.push(Target {
        name: Script::MultiLimit.name(),
        source: Script::MultiLimit.source(),
        killed: Box::new(move |source| {
            limit_sets.iter().any(|quotas| {
                [false, true].into_iter().any(|gateway_clock| {
                    [steps().boxed(), obedient_steps().boxed()]
                        .into_iter()
                        .any(|strategy| {
                            fails(strategy, |steps| {
                                multi_agrees(source, quotas, gateway_clock, steps)
                            })
                        })
                })
            })
        }),
    });
    let success_quotas = [
        SuccessQuota::new(2, 1_000, 700).expect("valid"),
        SuccessQuota::new(1, 1, 1).expect("valid"),
        SuccessQuota::new(2, 1_000, 1).expect("valid"),
        SuccessQuota::new(3, 300, 500).expect("valid"),
    ];
    let success_judge = move |reserve: &str, complete: &str| {
        success_quotas.iter().any(|&quota| {
            [false, true].into_iter().any(|gateway_clock| {
                fails(success_steps(), |steps| {
                    success_agrees(reserve, complete, quota, gateway_clock, steps)
                })
            })
        })
    };
    let judge = success_judge;
    all.push(Target {
        name: Script::SuccessReserve.name(),
        source: Script::SuccessReserve.source(),
        killed: Box::new(move |source| judge(source, Script::SuccessComplete.source())),
    });
    all.push(Target {
        name: Script::SuccessComplete.name(),
        source: Script::SuccessComplete.source(),
        killed: Box::new(move |source| success_judge(Script::SuccessReserve.source(), source)),
    });
    all.push(Target {
        name: Script::NewapiTokenBucket.name(),
        source: Script::NewapiTokenBucket.source(),
        killed: Box::new(|source| {
            [(1, 3), (2, 5), (3, 3)]
                .into_iter()
                .any(|(rate, capacity)| {
                    fails(newapi_steps(), |steps| {
                        newapi_agrees(source, rate, capacity, steps)
                    })
                })
        }),
    });
    all
}

fn main() {
    let only = std::env::args().nth(1);
    for target in targets() {
        if only.as_deref().is_some_and(|name| name != target.name) {
            continue;
        }
        assert!(
            !(target.killed)(target.source),
            "{}: the original must pass",
            target.name
        );
        let all = mutants(target.source);
        let mut survivors = Vec::new();
        for mutant in &all {
            if !(target.killed)(&mutant.source) {
                survivors.push(format!(
                    "  survived: lua/{}.lua:{} {}",
                    target.name, mutant.line, mutant.what
                ));
            }
        }
        let killed_count = all.len() - survivors.len();
        println!(
            "lua/{}.lua: {killed_count}/{} killed ({:.0}%)",
            target.name,
            all.len(),
            100.0 * killed_count as f64 / all.len().max(1) as f64
        );
        for line in survivors {
            println!("{line}");
        }
    }
}

//! Each atomic script, run by a real Redis, agrees with the same script run by the model.
//!
//! Goal: the model's Lua host and command implementations are faithful for exactly the code
//! paths the limiters use, so that a simulation result about a script is a result about real
//! Redis. Method: proptest draws request sequences (gaps, costs, quotas); each sequence runs
//! through the same limiter type on both backends, with the gateway clock passed to the script
//! (`ScriptClock::Gateway`), since real Redis's TIME cannot be steered; every raw decision must
//! be equal. The real server is started by the test (or `REDIS_URL`); without one the test
//! prints a visible skip line, and `RATELAB_REQUIRE_REDIS=1` makes that a failure.
//!
//! The Redis-TIME path (the script reads the server's clock, as in production) is checked
//! apart, against the `algo` references: see `check_redis_time`.
//!
//! new-api's legacy token bucket is left out: it reads Redis TIME in whole seconds and takes no
//! time argument, so the two backends cannot be given the same clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ratelab::algo::reservation::SuccessQuota;
use ratelab::algo::{self, Decision, RateQuota, WindowQuota};
use ratelab::keys::{Identity, KeyScheme};
use ratelab::limiter::atomic::{
    Algorithm, MultiLimiter, ScriptClock, ScriptLimiter, SuccessLimiter,
};
use ratelab::limiter::{Limiter, OutcomeLimiter, Request};
use ratelab::model::{Model, NodeConfig, Reply};
use ratelab::real::{RealConfig, RealRedis};
use ratelab::redis::{Cmd, Local, Redis};
use ratelab::redis_server::{RedisServer, real_redis_or_skip};

/// Cases per algorithm (each of the five window and rate scripts gets its own run), and for
/// the multi-limit and success pair. Each case is one fresh key and up to 40 steps; the
/// gateway time is drawn, not slept, so a case costs a few ms.
const CASES_PER_ALGORITHM: u32 = 64;

/// Cases per algorithm on the Redis-TIME path, whose gaps are real sleeps (a few ms each).
const REDIS_TIME_CASES_PER_ALGORITHM: u32 = 16;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// Runs `test` over `strategy` for `cases` cases against `server`.
fn run_cases<S, F>(server: &RedisServer, name: &str, cases: u32, strategy: S, test: F)
where
    S: Strategy,
    F: Fn(&RedisServer, S::Value),
{
    let mut runner = proptest::test_runner::TestRunner::new(config(cases));
    let outcome = runner.run(&strategy, |value| {
        test(server, value);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{name}: {failure}");
    }
}

/// Runs `test` over `strategy` with one real server for all its cases (started here and
/// stopped when the test ends), or prints the skip line.
fn with_server<S, F>(name: &str, strategy: S, test: F)
where
    S: Strategy,
    F: Fn(&RedisServer, S::Value),
{
    let Some(server) = real_redis_or_skip(name) else {
        return;
    };
    run_cases(&server, name, CASES_PER_ALGORITHM, strategy, test);
}

/// The five window and rate algorithms, by index, with their quotas.
fn algorithm(kind: u8, limit: u64, window_ms: u64, interval_ms: u64) -> Algorithm {
    let window = WindowQuota::new(limit, window_ms).unwrap();
    let rate = RateQuota::new(limit, interval_ms).unwrap();
    match kind {
        0 => Algorithm::FixedWindow(window),
        1 => Algorithm::SlidingWindow(window),
        2 => Algorithm::SlidingLog(window),
        3 => Algorithm::TokenBucket(rate),
        _ => Algorithm::Gcra(rate),
    }
}

/// The gateway time passed to the scripts: the drawn gaps plus the real time that has passed.
///
/// Scripts set TTLs relative to the server's own clock. Real Redis counts those in real time,
/// so if the gateway time moved slower than real time, a key could expire on the real server
/// before its window ended in gateway time, and the two backends would disagree for a reason
/// that has nothing to do with fidelity (this flaked on a loaded machine). With the real time
/// added, a key never expires on the real server before the scripts' own logic has let go of
/// it, so both backends must decide alike.
struct GatewayClock {
    now_ms: u64,
    last_real: std::time::Instant,
}

impl GatewayClock {
    fn start() -> GatewayClock {
        GatewayClock {
            now_ms: 1_700_000_000_000,
            last_real: std::time::Instant::now(),
        }
    }

    fn advance(&mut self, gap_ms: u64) -> u64 {
        let real_ms = u64::try_from(self.last_real.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Carry the sub-millisecond remainder so that real time is never undercounted.
        self.last_real += std::time::Duration::from_millis(real_ms);
        // Real time can then lead the gateway time by less than 1 ms, which the scripts
        // tolerate: each key's TTL ends exactly where its state becomes equivalent to a
        // missing key (a new window, a full bucket, an empty log).
        self.now_ms += gap_ms + real_ms;
        self.now_ms
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request(cost: u64, now_ms: u64) -> Request {
    Request {
        identity: Identity::new("api").with("user", "42"),
        cost,
        now_ms,
    }
}

/// A fresh model client; its clock is irrelevant (the scripts get the gateway time).
fn local() -> Local {
    let model = Arc::new(Mutex::new(Model::new(NodeConfig::standalone(5))));
    let now_ms = Arc::new(AtomicU64::new(1));
    Local::connect(model, Arc::new(move || now_ms.load(Ordering::SeqCst)))
}

async fn real(server: &RedisServer) -> RealRedis {
    let url = format!("redis://{}:{}/", server.host(), server.port());
    let mut redis = RealRedis::connect(RealConfig::multiplexed(&url))
        .await
        .expect("connect to the test server");
    let flushed = redis
        .exec(Cmd::Del {
            key: b"rl:api:42".to_vec(),
        })
        .await;
    assert!(flushed.is_ok(), "{flushed:?}");
    redis
}

/// Gaps: bursts in one millisecond, steps inside a window, a few long jumps.
fn steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
    let gap = prop_oneof![3 => Just(0u64), 4 => 0u64..300, 1 => 0u64..3_000];
    prop::collection::vec((gap, 0u64..4), 1..40)
}

fn check_algorithm(server: &RedisServer, algorithm: Algorithm, steps: &[(u64, u64)]) {
    runtime().block_on(async {
        let scheme = KeyScheme::parse("rl:$ns:$user", 1).unwrap();
        let mut on_model =
            ScriptLimiter::new(local(), scheme.clone(), algorithm, ScriptClock::Gateway);
        let mut on_redis =
            ScriptLimiter::new(real(server).await, scheme, algorithm, ScriptClock::Gateway);
        let mut clock = GatewayClock::start();
        for &(gap_ms, cost) in steps {
            let now_ms = clock.advance(gap_ms);
            let model = on_model.check(&request(cost, now_ms)).await.unwrap();
            let redis = on_redis.check(&request(cost, now_ms)).await.unwrap();
            assert_eq!(
                model.decision, redis.decision,
                "{algorithm:?} at {now_ms} cost {cost}"
            );
        }
    });
}

#[test]
fn window_and_rate_scripts_agree_on_real_redis() {
    // Goal and method: see the module doc; each algorithm gets its own
    // CASES_PER_ALGORITHM cases (it had about 10 when the five shared 48).
    let name = "window_and_rate_scripts_agree_on_real_redis";
    let Some(server) = real_redis_or_skip(name) else {
        return;
    };
    for kind in 0u8..5 {
        run_cases(
            &server,
            &format!("{name} (algorithm {kind})"),
            CASES_PER_ALGORITHM,
            (steps(), 1u64..6, 1u64..300),
            |server, (steps, limit, interval_ms)| {
                check_algorithm(server, algorithm(kind, limit, 1_000, interval_ms), &steps);
            },
        );
    }
}

/// The reference's state for each algorithm (only the one in use moves).
#[derive(Clone, Debug, Default, PartialEq)]
struct Reference {
    fixed: Option<algo::fixed_window::State>,
    sliding: Option<algo::sliding_window::State>,
    log: Vec<u64>,
    bucket: Option<algo::token_bucket::State>,
    tat: Option<u64>,
}

impl Reference {
    /// The reference's decision at `now_ms`, moving its state.
    fn decide(&mut self, algorithm: Algorithm, now_ms: u64, cost: u64) -> Decision {
        match algorithm {
            Algorithm::FixedWindow(quota) => {
                let (decision, state) = algo::fixed_window::decide(quota, self.fixed, now_ms, cost);
                if decision.allowed {
                    self.fixed = Some(state);
                }
                decision
            }
            Algorithm::SlidingWindow(quota) => {
                let (decision, state) =
                    algo::sliding_window::decide(quota, self.sliding, now_ms, cost);
                if decision.allowed {
                    self.sliding = Some(state);
                }
                decision
            }
            Algorithm::SlidingLog(quota) => {
                algo::sliding_log::decide(quota, &mut self.log, now_ms, cost)
            }
            Algorithm::TokenBucket(quota) => {
                let (decision, state) =
                    algo::token_bucket::decide(quota, self.bucket, now_ms, cost);
                self.bucket = Some(state);
                decision
            }
            Algorithm::Gcra(quota) => {
                let (decision, stored) = algo::gcra::decide(quota, self.tat, now_ms, cost);
                self.tat = stored.or(self.tat);
                decision
            }
        }
    }
}

/// The real server's clock, ms (`TIME`).
async fn server_ms(redis: &mut RealRedis) -> u64 {
    match redis.exec(Cmd::Time).await.unwrap() {
        Reply::Array(parts) => match parts.as_slice() {
            [Reply::Bulk(seconds), Reply::Bulk(micros)] => {
                let number =
                    |bytes: &[u8]| -> u64 { std::str::from_utf8(bytes).unwrap().parse().unwrap() };
                number(seconds) * 1_000 + number(micros) / 1_000
            }
            other => panic!("TIME answered {other:?}"),
        },
        other => panic!("TIME answered {other:?}"),
    }
}

/// One case on the Redis-TIME path: the script reads real Redis's clock itself
/// (`ScriptClock::Redis`, the production path). That clock cannot be steered, so the test
/// reads TIME before and after each decision and keeps every reference state whose decision
/// at some ms in between equals the script's: at least one must survive each step.
fn check_redis_time(server: &RedisServer, algorithm: Algorithm, steps: &[(u64, u64)]) {
    runtime().block_on(async {
        let scheme = KeyScheme::parse("rl:$ns:$user", 1).unwrap();
        let mut limiter =
            ScriptLimiter::new(real(server).await, scheme, algorithm, ScriptClock::Redis);
        let mut clock = real(server).await;
        let mut candidates = vec![Reference::default()];
        for (index, &(gap_ms, cost)) in steps.iter().enumerate() {
            tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
            let before_ms = server_ms(&mut clock).await;
            let verdict = limiter.check(&request(cost, 0)).await.unwrap();
            let after_ms = server_ms(&mut clock).await;
            let mut next = Vec::new();
            for candidate in &candidates {
                for now_ms in before_ms..=after_ms {
                    let mut moved = candidate.clone();
                    if moved.decide(algorithm, now_ms, cost) == verdict.decision
                        && !next.contains(&moved)
                    {
                        next.push(moved);
                    }
                }
            }
            assert!(
                !next.is_empty(),
                "{algorithm:?} step {index} cost {cost}: {:?} matches no reference decision in [{before_ms}, {after_ms}] ms",
                verdict.decision
            );
            candidates = next;
        }
    });
}

#[test]
fn window_and_rate_scripts_on_redis_time_agree_with_their_references() {
    // Goal: the production clock path (the script calls TIME and turns seconds and
    // microseconds into ms) is right on real Redis, not only on the model. Method: see
    // `check_redis_time`; windows of 200 ms and gaps of real sleeps up to 60 ms, so that
    // windows roll over within a case.
    let name = "window_and_rate_scripts_on_redis_time_agree_with_their_references";
    let Some(server) = real_redis_or_skip(name) else {
        return;
    };
    let gap = prop_oneof![3 => Just(0u64), 2 => 0u64..60];
    for kind in 0u8..5 {
        run_cases(
            &server,
            &format!("{name} (algorithm {kind})"),
            REDIS_TIME_CASES_PER_ALGORITHM,
            (
                prop::collection::vec((gap.clone(), 0u64..4), 1..20),
                1u64..6,
                1u64..60,
            ),
            |server, (steps, limit, interval_ms)| {
                check_redis_time(server, algorithm(kind, limit, 200, interval_ms), &steps);
            },
        );
    }
}

#[test]
fn multi_limit_and_success_scripts_agree_on_real_redis() {
    let strategy = (
        prop::collection::vec((0u64..400, 0u8..4), 1..40),
        prop::collection::vec((1u64..4, 1u64..200), 1..4),
    );
    with_server(
        "multi_limit_and_success_scripts_agree_on_real_redis",
        strategy,
        |server, (steps, quotas)| {
            runtime().block_on(async {
                let limits: Vec<(KeyScheme, RateQuota)> = quotas
                    .iter()
                    .enumerate()
                    .map(|(index, &(burst, interval_ms))| {
                        (
                            KeyScheme::parse(&format!("rl:m{index}:{{u:$user}}"), 1).unwrap(),
                            RateQuota::new(burst, interval_ms).unwrap(),
                        )
                    })
                    .collect();
                let mut multi_model =
                    MultiLimiter::new(local(), limits.clone(), ScriptClock::Gateway);
                let mut real_multi = real(server).await;
                for index in 0..limits.len() {
                    real_multi
                        .exec(Cmd::Del {
                            key: format!("rl:m{index}:{{u:42}}").into_bytes(),
                        })
                        .await
                        .unwrap();
                }
                let mut multi_redis = MultiLimiter::new(real_multi, limits, ScriptClock::Gateway);
                let quota = SuccessQuota::new(2, 1_000, 600).unwrap();
                let scheme = KeyScheme::parse("rl:ok:{u:$user}", 1).unwrap();
                let mut success_model =
                    SuccessLimiter::new(local(), scheme.clone(), quota, ScriptClock::Gateway);
                let mut real_success = real(server).await;
                for suffix in [":ok", ":res", ":seq"] {
                    real_success
                        .exec(Cmd::Del {
                            key: format!("rl:ok:{{u:42}}{suffix}").into_bytes(),
                        })
                        .await
                        .unwrap();
                }
                let mut success_redis =
                    SuccessLimiter::new(real_success, scheme, quota, ScriptClock::Gateway);
                let mut tickets = Vec::new();
                let mut clock = GatewayClock::start();
                for &(gap_ms, action) in &steps {
                    let now_ms = clock.advance(gap_ms);
                    let cost = u64::from(action % 3);
                    let (model, model_denied_by) = multi_model
                        .check_detailed(&request(cost, now_ms))
                        .await
                        .unwrap();
                    let (redis, redis_denied_by) = multi_redis
                        .check_detailed(&request(cost, now_ms))
                        .await
                        .unwrap();
                    assert_eq!(
                        (model.decision, model_denied_by),
                        (redis.decision, redis_denied_by),
                        "multi at {now_ms}"
                    );
                    if action == 0 || tickets.is_empty() {
                        let (model, model_ticket) =
                            success_model.admit(&request(1, now_ms)).await.unwrap();
                        let (redis, redis_ticket) =
                            success_redis.admit(&request(1, now_ms)).await.unwrap();
                        assert_eq!(model.decision, redis.decision, "admit at {now_ms}");
                        assert_eq!(model_ticket, redis_ticket, "the same reservation id");
                        if let (Some(model_ticket), Some(redis_ticket)) =
                            (model_ticket, redis_ticket)
                        {
                            tickets.push((model_ticket, redis_ticket));
                        }
                    } else {
                        let (model_ticket, redis_ticket) = tickets.remove(0);
                        let succeeded = action != 1;
                        success_model
                            .complete(model_ticket, succeeded, now_ms)
                            .await
                            .unwrap();
                        success_redis
                            .complete(redis_ticket, succeeded, now_ms)
                            .await
                            .unwrap();
                    }
                }
            });
        },
    );
}

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
//! new-api's legacy token bucket is left out: it reads Redis TIME in whole seconds and takes no
//! time argument, so the two backends cannot be given the same clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ratelab::algo::reservation::SuccessQuota;
use ratelab::algo::{RateQuota, WindowQuota};
use ratelab::keys::{Identity, KeyScheme};
use ratelab::limiter::atomic::{
    Algorithm, MultiLimiter, ScriptClock, ScriptLimiter, SuccessLimiter,
};
use ratelab::limiter::{Limiter, OutcomeLimiter, Request};
use ratelab::model::{Model, NodeConfig};
use ratelab::real::{RealConfig, RealRedis};
use ratelab::redis::{Cmd, Local, Redis};
use ratelab::redis_server::{RedisServer, real_redis_or_skip};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
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
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let outcome = runner.run(&strategy, |value| {
        test(&server, value);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{name}: {failure}");
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
    let strategy = (steps(), 0u8..5, 1u64..6, 1u64..300);
    with_server(
        "window_and_rate_scripts_agree_on_real_redis",
        strategy,
        |server, (steps, kind, limit, interval_ms)| {
            let window = WindowQuota::new(limit, 1_000).unwrap();
            let rate = RateQuota::new(limit, interval_ms).unwrap();
            let algorithm = match kind {
                0 => Algorithm::FixedWindow(window),
                1 => Algorithm::SlidingWindow(window),
                2 => Algorithm::SlidingLog(window),
                3 => Algorithm::TokenBucket(rate),
                _ => Algorithm::Gcra(rate),
            };
            check_algorithm(server, algorithm, &steps);
        },
    );
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

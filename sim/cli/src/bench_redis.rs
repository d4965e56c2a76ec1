//! `ratelab bench`, the Redis half: every limiter against a real redis-server, at several
//! concurrencies, with round trips and commands per decision, decisions per second and
//! latency percentiles.
//!
//! Each cell runs `concurrency` tokio tasks for a fixed time; every task owns a limiter (a
//! gateway's worth of state) over a clone of one Redis handle, so concurrent decisions share
//! connections the way a gateway's do: by multiplexing (one connection, pipelined across
//! requests) unless the row says `@pool10` (go-redis v8's pool of 10, as new-api configures
//! it, one connection held per call). Quotas are generous, so the steady-state (admitting)
//! path is what is timed; keys cycle over 1000 users.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratelab::algo::reservation::SuccessQuota;
use ratelab::algo::{RateQuota, WindowQuota};
use ratelab::keys::{Identity, KeyScheme};
use ratelab::limiter::atomic::{
    Algorithm, MultiLimiter, PipelinedFixedWindow, ScriptClock, ScriptLimiter, ShardedLimiter,
    SuccessLimiter,
};
use ratelab::limiter::hybrid::{HybridLimiter, SLACK_PERCENT_DEFAULT};
use ratelab::limiter::legacy::GatewayClock;
use ratelab::limiter::legacy::email::{EmailLimiter, EmailQuota};
use ratelab::limiter::legacy::in_memory::{InMemoryRateLimiter, MemoryListLogLimiter};
use ratelab::limiter::legacy::list_log::{ListLogLimiter, ListLogQuota};
use ratelab::limiter::legacy::model_request::{
    ModelQuota, ModelRequestLimiter, TokenBucketLimiter,
};
use ratelab::limiter::memory::MemoryGcra;
use ratelab::limiter::{Limiter, LimiterError, OutcomeLimiter, Request, Verdict};
use ratelab::memory::MemoryLimiter;
use ratelab::real::{RealConfig, RealRedis, Strategy};

/// One measured cell.
#[derive(Clone, Debug)]
pub struct Row {
    /// Limiter name (`family` below says which family).
    pub limiter: String,
    /// `legacy`, `atomic`, `hybrid` or `memory`.
    pub family: &'static str,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Mean Redis round trips per decision.
    pub round_trips_per_decision: f64,
    /// Mean Redis commands per decision.
    pub commands_per_decision: f64,
    /// Decisions per wall second, all tasks together.
    pub decisions_per_s: f64,
    /// Median decision latency.
    pub p50_us: f64,
    /// 99th percentile decision latency.
    pub p99_us: f64,
}

/// The CSV header the closing notes and plots read.
pub const CSV_HEADER: &str = "limiter,family,concurrency,round_trips_per_decision,commands_per_decision,decisions_per_s,p50_us,p99_us";

impl Row {
    /// The row as CSV.
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{:.2},{:.2},{:.0},{:.1},{:.1}",
            self.limiter,
            self.family,
            self.concurrency,
            self.round_trips_per_decision,
            self.commands_per_decision,
            self.decisions_per_s,
            self.p50_us,
            self.p99_us
        )
    }
}

/// Runs an outcome limiter's admission and its successful completion as one decision (that is
/// what a gateway pays per request).
struct AdmitAndSucceed<O>(O);

impl<O: OutcomeLimiter> Limiter for AdmitAndSucceed<O> {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let (mut verdict, ticket) = self.0.admit(request).await?;
        if let Some(ticket) = ticket {
            let usage = self.0.complete(ticket, true, request.now_ms).await?;
            verdict.usage.round_trips += usage.round_trips;
            verdict.usage.commands += usage.commands;
        }
        Ok(verdict)
    }
}

/// The adapter `ratelab bench` used before `MemoryGcra`: the key is the identity's `Debug`
/// text, formatted and allocated per decision. Kept as a row to show what that cost.
struct DebugKeyed(Arc<MemoryLimiter>);

impl Limiter for DebugKeyed {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        let key = format!("{:?}", request.identity).into_bytes();
        Ok(Verdict {
            decision: self.0.check(&key, request.now_ms, request.cost),
            usage: Default::default(),
        })
    }
}

/// governor's keyed (dashmap) limiter behind the same `Limiter` call and key rendering as
/// `MemoryGcra`, so that the two differ only in the limiter.
struct Governor {
    limiter: Arc<governor::DefaultKeyedRateLimiter<Vec<u8>>>,
    scheme: KeyScheme,
    key: Vec<u8>,
}

impl Limiter for Governor {
    async fn check(&mut self, request: &Request) -> Result<Verdict, LimiterError> {
        self.scheme
            .render_into(&request.identity, 0, &mut self.key)
            .map_err(|error| LimiterError::Reply(error.to_string()))?;
        let allowed = self.limiter.check_key(&self.key).is_ok();
        Ok(Verdict {
            decision: ratelab::algo::Decision {
                allowed,
                remaining: 0,
                retry_after_ms: 0,
                reset_after_ms: 0,
            },
            usage: Default::default(),
        })
    }
}

fn wall_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one cell: `concurrency` tasks, each with a limiter from `make`, for `duration`.
async fn cell<L, F>(
    limiter: &str,
    family: &'static str,
    concurrency: usize,
    duration: Duration,
    make: F,
) -> Result<Row, LimiterError>
where
    L: Limiter + 'static,
    F: Fn(usize) -> L,
{
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let mut limiter = make(task);
            tokio::spawn(async move {
                let mut latencies_ns = Vec::new();
                let (mut round_trips, mut commands) = (0u64, 0u64);
                // The 1000 users' requests are built once: building one per decision (five
                // fields, four allocations) cost more than an in-memory decision.
                let first = u64::try_from(task).expect("fits") * 7919;
                let mut requests: Vec<Request> = (0..1000)
                    .map(|index| {
                        let user = (first + index) % 1000;
                        Request {
                            identity: Identity::new("bench")
                                .with("user", user.to_string())
                                .with("ip", format!("10.0.{}.{}", user / 256, user % 256))
                                .with("group", "default")
                                .with("model", "m"),
                            cost: 1,
                            now_ms: 0,
                        }
                    })
                    .collect();
                let mut index = 0usize;
                while Instant::now() < deadline {
                    let request = &mut requests[index % 1000];
                    index += 1;
                    request.now_ms = wall_ms();
                    let begin = Instant::now();
                    let verdict = limiter.check(request).await?;
                    latencies_ns
                        .push(u64::try_from(begin.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    round_trips += verdict.usage.round_trips;
                    commands += verdict.usage.commands;
                }
                Ok::<_, LimiterError>((latencies_ns, round_trips, commands))
            })
        })
        .collect();
    let mut latencies_ns = Vec::new();
    let (mut round_trips, mut commands) = (0u64, 0u64);
    for task in tasks {
        let (task_latencies, task_round_trips, task_commands) =
            task.await.expect("bench tasks do not panic")?;
        latencies_ns.extend(task_latencies);
        round_trips += task_round_trips;
        commands += task_commands;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    let decisions = latencies_ns.len().max(1) as f64;
    let percentile = |fraction: f64| {
        let index = ((latencies_ns.len() as f64 - 1.0) * fraction).round() as usize;
        latencies_ns.get(index).copied().unwrap_or(0) as f64 / 1_000.0
    };
    Ok(Row {
        limiter: limiter.to_owned(),
        family,
        concurrency,
        round_trips_per_decision: round_trips as f64 / decisions,
        commands_per_decision: commands as f64 / decisions,
        decisions_per_s: latencies_ns.len() as f64 / elapsed_s,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
    })
}

/// Every limiter at every concurrency. `url` is a standalone Redis.
pub async fn run_all(
    url: &str,
    concurrencies: &[usize],
    duration: Duration,
) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let multiplexed = RealRedis::connect(RealConfig::multiplexed(url)).await?;
    let pooled = RealRedis::connect(RealConfig::go_redis_v8_newapi(url).with_strategy(
        Strategy::Pool {
            size: 10,
            wait_timeout: Duration::from_secs(4),
        },
    ))
    .await?;
    let window = WindowQuota::new(1_000_000, 60_000)?;
    let rate = RateQuota::new(1_000_000, 1)?;
    // Each limiter gets its own namespace, so no two share a key (their types differ).
    let scheme_for = |name: &str| KeyScheme::parse(&format!("rl:{name}:{{u:$user}}"), 1);
    let gateway = GatewayClock::new(0)?;
    let list_quota = ListLogQuota::new(1_000_000, 60)?;
    let model_quota = ModelQuota::new(1_000_000, 1_000_000, 1)?;
    let mut rows = Vec::new();
    for &concurrency in concurrencies {
        let redis = || multiplexed.clone();
        macro_rules! measure {
            ($name:expr, $family:expr, $make:expr) => {{
                let row = cell($name, $family, concurrency, duration, $make).await?;
                eprintln!("{}", row.csv());
                rows.push(row);
            }};
        }
        // new-api as built.
        measure!("newapi_ip_list", "legacy", |_| ListLogLimiter::newapi_ip(
            redis(),
            list_quota,
            gateway
        ));
        measure!("newapi_ip_list@pool10", "legacy", |_| {
            ListLogLimiter::newapi_ip(pooled.clone(), list_quota, gateway)
        });
        measure!("newapi_model_request", "legacy", |_| AdmitAndSucceed(
            ModelRequestLimiter::new(redis(), model_quota, gateway)
        ));
        measure!(
            "newapi_model_request@pool10",
            "legacy",
            |_| AdmitAndSucceed(ModelRequestLimiter::new(
                pooled.clone(),
                model_quota,
                gateway
            ))
        );
        let bucket = TokenBucketLimiter::new(redis(), model_quota);
        measure!("newapi_token_bucket", "legacy", |_| bucket.sibling(redis()));
        measure!("newapi_email_incr", "legacy", |_| EmailLimiter::new(
            redis(),
            EmailQuota::new(1_000_000, 30).expect("a valid quota")
        ));
        // The redesign.
        for (name, algorithm) in [
            ("fixed_window", Algorithm::FixedWindow(window)),
            ("sliding_window", Algorithm::SlidingWindow(window)),
            (
                "sliding_log",
                Algorithm::SlidingLog(WindowQuota::new(1_000, 1_000)?),
            ),
            ("token_bucket", Algorithm::TokenBucket(rate)),
            ("gcra", Algorithm::Gcra(rate)),
        ] {
            let scheme = scheme_for(name)?;
            measure!(name, "atomic", |_| ScriptLimiter::new(
                redis(),
                scheme.clone(),
                algorithm,
                ScriptClock::Redis
            ));
        }
        let scheme = scheme_for("token_bucket")?;
        measure!("token_bucket@pool10", "atomic", |_| ScriptLimiter::new(
            pooled.clone(),
            scheme.clone(),
            Algorithm::TokenBucket(rate),
            ScriptClock::Redis
        ));
        let scheme = scheme_for("gcra")?;
        measure!("gcra@pool10", "atomic", |_| ScriptLimiter::new(
            pooled.clone(),
            scheme.clone(),
            Algorithm::Gcra(rate),
            ScriptClock::Redis
        ));
        let scheme = scheme_for("pipelined")?;
        measure!("pipelined_fixed_window", "atomic", |_| {
            PipelinedFixedWindow::new(redis(), scheme.clone(), window)
        });
        let three_limits = vec![
            (KeyScheme::parse("rl:total:{u:$user}", 1)?, rate),
            (KeyScheme::parse("rl:model:{u:$user}:$model", 1)?, rate),
            (KeyScheme::parse("rl:group:{u:$user}:$group", 1)?, rate),
        ];
        measure!("multi_limit_3", "atomic", |_| MultiLimiter::new(
            redis(),
            three_limits.clone(),
            ScriptClock::Redis
        ));
        let success = SuccessQuota::new(1_000_000, 60_000, 120_000)?;
        let scheme = scheme_for("success")?;
        measure!("success_reservation", "atomic", |_| AdmitAndSucceed(
            SuccessLimiter::new(redis(), scheme.clone(), success, ScriptClock::Redis)
        ));
        let sharded = KeyScheme::plan_sharded(4)?;
        measure!("sharded_gcra_4", "atomic", |_| ShardedLimiter::new(
            redis(),
            sharded.clone(),
            Algorithm::Gcra(rate),
            ScriptClock::Redis
        )
        .expect("a quota larger than the shard count"));
        // Hybrid: local pre-check and deny cache in front of GCRA.
        let scheme = scheme_for("hybrid")?;
        measure!("hybrid_gcra", "hybrid", |_| HybridLimiter::new(
            ScriptLimiter::new(
                redis(),
                scheme.clone(),
                Algorithm::Gcra(rate),
                ScriptClock::Redis
            ),
            scheme.clone(),
            rate,
            SLACK_PERCENT_DEFAULT,
        )
        .expect("a valid quota"));
    }
    Ok(rows)
}

/// The in-process limiters through the same `Limiter` call and harness as the Redis rows: the
/// redesign's sharded GCRA, new-api's global-mutex list log, and governor's keyed limiter.
pub async fn run_memory(
    concurrencies: &[usize],
    duration: Duration,
) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let rate = RateQuota::new(1_000_000, 1)?;
    let list_quota = ListLogQuota::new(1_000_000, 60)?;
    let scheme = KeyScheme::parse("rl:memory:{u:$user}", 1)?;
    let governor_quota = governor::Quota::per_second(std::num::NonZeroU32::MAX);
    let mut rows = Vec::new();
    for &concurrency in concurrencies {
        let memory = Arc::new(MemoryLimiter::new(rate));
        let row = cell("memory_gcra", "memory", concurrency, duration, |_| {
            MemoryGcra::new(Arc::clone(&memory), scheme.clone())
        })
        .await?;
        rows.push(row);
        let memory = Arc::new(MemoryLimiter::new(rate));
        let row = cell(
            "memory_gcra_debug_key",
            "memory",
            concurrency,
            duration,
            |_| DebugKeyed(Arc::clone(&memory)),
        )
        .await?;
        rows.push(row);
        let store = InMemoryRateLimiter::new();
        let row = cell("newapi_memory", "memory", concurrency, duration, |_| {
            MemoryListLogLimiter::newapi_ip(store.clone(), list_quota)
        })
        .await?;
        rows.push(row);
        let keyed = Arc::new(governor::RateLimiter::dashmap(governor_quota));
        let row = cell("governor_keyed", "memory", concurrency, duration, |_| {
            Governor {
                limiter: Arc::clone(&keyed),
                scheme: scheme.clone(),
                key: Vec::new(),
            }
        })
        .await?;
        rows.push(row);
    }
    Ok(rows)
}

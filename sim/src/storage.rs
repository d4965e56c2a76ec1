//! The seed's storage comparison (memory, Redis called sequentially, the hybrid), as data.
//!
//! The seed claims: an in-memory limiter decides 2M times a second, a Redis limiter called
//! in a loop 4k times (500× fewer), and a hybrid that rejects ~90 % of requests locally
//! costs ~0.1 ms a decision. Here the same three run the same workload: one sequential
//! caller, requests arriving every [`ARRIVAL_GAP_MS`] over [`KEYS`] users, each user at ten
//! times its quota, so that after the burst nine requests in ten must be refused and the
//! hybrid's local pre-check can refuse them without a round trip.
//!
//! **Simulated** ([`simulate`]): the real limiter code (the GCRA script on the in-process
//! model, the sharded memory GCRA, the hybrid over the script) with time from the workload;
//! each decision costs its round trips × the RTT in virtual time, and nothing else: CPU is
//! free in virtual time. So "decisions per simulated second" is one sequential caller's rate,
//! `1000 / mean decision ms`, and an in-memory limiter, which makes no round trip, decides in
//! 0 ms: its rate is unbounded here (`None`), which is the point of the measured version
//! (`ratelab bench --only storage`), which feeds the same requests to the same limiters
//! against a real redis-server and reads the wall clock. The turmoil harness is not used:
//! its load is open (arrivals at a rate, over a pool), not one caller that awaits each
//! decision, and a sequential caller has nothing to queue behind, so round trips × RTT is
//! all the harness would add (at 1 ms RTT it runs time-scaled, `network.min_latency_us`).
//!
//! The scripts take the request's time (`ScriptClock::Gateway`), so both versions make the
//! same decisions whatever the machine's clock says.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ratelab::algo::RateQuota;
use ratelab::keys::{Identity, KeyScheme};
use ratelab::limiter::atomic::{Algorithm, ScriptClock, ScriptLimiter};
use ratelab::limiter::hybrid::{HybridLimiter, SLACK_PERCENT_DEFAULT};
use ratelab::limiter::memory::MemoryGcra;
use ratelab::limiter::{Limiter, Verdict};
use ratelab::memory::MemoryLimiter;
use ratelab::model::{Model, NodeConfig};
use ratelab::redis::Local;

/// The simulated RTT, µs.
pub const RTT_US: u64 = 1_000;
/// Decisions per limiter (the seed's loop made 10 000).
pub const DECISIONS: u64 = 20_000;
/// Users the requests cycle over.
pub const KEYS: u64 = 10;
/// Time between arrivals, ms: 1000 requests a second in all, 100 per user.
pub const ARRIVAL_GAP_MS: u64 = 1;
/// Where the workload's clock starts (Unix ms; any fixed value).
pub const START_MS: u64 = 1_700_000_000_000;

/// Each user's quota: 10 at once, then one every 100 ms (10 a second: a tenth of what each
/// user asks for).
pub fn quota() -> RateQuota {
    RateQuota::new(10, 100).expect("a valid quota")
}

/// The key template of every limiter here.
pub fn scheme() -> KeyScheme {
    KeyScheme::parse("rl:$ns:{u:$user}", 1).expect("a valid template")
}

/// The three limiters of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The redesign's in-memory GCRA through the `Limiter` trait.
    Memory,
    /// The GCRA script on Redis, one caller awaiting each decision before the next.
    RedisSequential,
    /// The hybrid: deny cache and local pre-check in front of the same script.
    Hybrid,
}

impl Subject {
    /// All three, in the figure's order.
    pub const ALL: [Subject; 3] = [Subject::Memory, Subject::RedisSequential, Subject::Hybrid];

    /// The name in the CSV and the figure.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Memory => "memory_gcra",
            Subject::RedisSequential => "redis_gcra_sequential",
            Subject::Hybrid => "hybrid_gcra",
        }
    }

    /// The colour family (as the sweeps' `family`).
    pub fn family(self) -> &'static str {
        match self {
            Subject::Memory => "memory",
            Subject::RedisSequential | Subject::Hybrid => "atomic",
        }
    }

    /// The seed's own figures: decisions per second and ms per decision, where it gives
    /// them (the hybrid's rate it does not; its memory latency it gives as "< 1 µs").
    pub fn seed_figures(self) -> (Option<f64>, Option<f64>) {
        match self {
            // 10 000 decisions in 0.005 s.
            Subject::Memory => (Some(2_000_000.0), Some(0.0005)),
            // 10 000 decisions in 2.5 s: 0.25 ms each (its prose says ~1 ms).
            Subject::RedisSequential => (Some(4_000.0), Some(0.25)),
            Subject::Hybrid => (None, Some(0.1)),
        }
    }
}

/// The workload: [`DECISIONS`] requests in arrival order, in namespace `namespace` (a fresh
/// namespace starts every key empty).
pub fn requests(namespace: &str) -> Vec<ratelab::limiter::Request> {
    (0..DECISIONS)
        .map(|index| ratelab::limiter::Request {
            identity: Identity::new(namespace).with("user", (index % KEYS).to_string()),
            cost: 1,
            now_ms: START_MS + index * ARRIVAL_GAP_MS,
        })
        .collect()
}

/// What a run of one limiter over the workload gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Decisions made.
    pub decisions: u64,
    /// Of them, admissions.
    pub admitted: u64,
    /// Of them, answered without a round trip (locally).
    pub local: u64,
    /// Round trips in all.
    pub round_trips: u64,
    /// Each decision's latency, ns (simulated: round trips × RTT).
    pub latencies_ns: Vec<u64>,
}

impl Tally {
    /// Counts one decision that took `latency_ns`.
    pub fn record(&mut self, verdict: &Verdict, latency_ns: u64) {
        self.decisions += 1;
        self.admitted += u64::from(verdict.decision.allowed);
        self.local += u64::from(verdict.usage.round_trips == 0);
        self.round_trips += verdict.usage.round_trips;
        self.latencies_ns.push(latency_ns);
    }

    /// The row, with `busy_ns` the caller's time for all the decisions (simulated: the sum
    /// of the latencies; measured: the loop's wall time).
    pub fn row(mut self, subject: Subject, source: &str, busy_ns: u64) -> Row {
        self.latencies_ns.sort_unstable();
        let decisions = self.decisions.max(1) as f64;
        let nearest = |per_mille: u64| {
            let count = self.latencies_ns.len() as u64;
            let rank = (count * per_mille).div_ceil(1_000).max(1);
            self.latencies_ns
                .get(usize::try_from(rank - 1).unwrap_or(0))
                .copied()
                .unwrap_or(0)
        };
        let sum_ns: u64 = self.latencies_ns.iter().sum();
        Row {
            limiter: subject.name(),
            family: subject.family(),
            source: source.to_owned(),
            decisions: self.decisions,
            admitted: self.admitted,
            local_pct: 100.0 * self.local as f64 / decisions,
            round_trips_per_decision: self.round_trips as f64 / decisions,
            latency_mean_ms: sum_ns as f64 / decisions / 1e6,
            latency_p50_ms: nearest(500) as f64 / 1e6,
            latency_p99_ms: nearest(990) as f64 / 1e6,
            decisions_per_s: (busy_ns > 0).then(|| self.decisions as f64 * 1e9 / busy_ns as f64),
        }
    }
}

/// One limiter's figures in the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// [`Subject::name`].
    pub limiter: &'static str,
    /// [`Subject::family`].
    pub family: &'static str,
    /// `simulated (RTT 1 ms)`, `measured`, ...
    pub source: String,
    /// Decisions made.
    pub decisions: u64,
    /// Admissions among them.
    pub admitted: u64,
    /// Decisions answered without a round trip, %.
    pub local_pct: f64,
    /// Mean round trips per decision.
    pub round_trips_per_decision: f64,
    /// Mean decision latency, ms.
    pub latency_mean_ms: f64,
    /// Median decision latency, ms (nearest rank).
    pub latency_p50_ms: f64,
    /// 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// One sequential caller's decisions per second; `None` when the decisions took no time
    /// at all (in-memory decisions in virtual time).
    pub decisions_per_s: Option<f64>,
}

/// The CSV header of [`csv`].
pub const CSV_HEADER: &str = "limiter,family,source,decisions,admitted,local_pct,round_trips_per_decision,latency_mean_ms,latency_p50_ms,latency_p99_ms,decisions_per_s,seed_decisions_per_s,seed_latency_ms";

/// The rows as CSV (fixed precision), each with the seed's figures beside it; an unbounded
/// rate is written `unbounded`, a figure the seed does not give is left empty.
pub fn csv(rows: &[Row]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for row in rows {
        let subject = Subject::ALL
            .into_iter()
            .find(|subject| subject.name() == row.limiter);
        let (seed_rate, seed_latency) = subject.map_or((None, None), Subject::seed_figures);
        let optional = |value: Option<f64>, digits: usize| {
            value.map_or(String::new(), |value| format!("{value:.digits$}"))
        };
        out.push_str(&format!(
            "{},{},{},{},{},{:.2},{:.4},{:.6},{:.6},{:.6},{},{},{}\n",
            row.limiter,
            row.family,
            row.source,
            row.decisions,
            row.admitted,
            row.local_pct,
            row.round_trips_per_decision,
            row.latency_mean_ms,
            row.latency_p50_ms,
            row.latency_p99_ms,
            row.decisions_per_s
                .map_or("unbounded".to_owned(), |rate| format!("{rate:.0}")),
            optional(seed_rate, 0),
            optional(seed_latency, 4),
        ));
    }
    out
}

/// Polls an in-process limiter's future to its end: the model and the memory limiter never
/// wait, so a pending poll is a bug here.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1_000 {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
    }
    panic!("an in-process limiter waited: nothing here should");
}

/// Runs `limiter` over the workload in virtual time at `rtt_us`.
fn run_simulated<L: Limiter>(
    limiter: &mut L,
    clock: &AtomicU64,
    subject: Subject,
    rtt_us: u64,
) -> Result<Row, String> {
    let mut tally = Tally::default();
    for request in requests("storage") {
        clock.store(request.now_ms, Ordering::SeqCst);
        let verdict = ready(limiter.check(&request))
            .map_err(|error| format!("{}: {error}", subject.name()))?;
        tally.record(&verdict, verdict.usage.round_trips * rtt_us * 1_000);
    }
    let busy_ns = tally.latencies_ns.iter().sum();
    Ok(tally.row(
        subject,
        &format!("simulated (RTT {} ms)", rtt_us as f64 / 1e3),
        busy_ns,
    ))
}

/// The three limiters over the workload in virtual time, each on its own fresh model.
pub fn simulate(rtt_us: u64) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for subject in Subject::ALL {
        let clock = Arc::new(AtomicU64::new(START_MS));
        let model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(1))));
        let reads = Arc::clone(&clock);
        let redis = Local::connect(model, Arc::new(move || reads.load(Ordering::SeqCst)));
        let script = ScriptLimiter::new(
            redis,
            scheme(),
            Algorithm::Gcra(quota()),
            ScriptClock::Gateway,
        );
        let row = match subject {
            Subject::Memory => run_simulated(
                &mut MemoryGcra::new(Arc::new(MemoryLimiter::with_seed(quota(), 1)), scheme()),
                &clock,
                subject,
                rtt_us,
            )?,
            Subject::RedisSequential => run_simulated(&mut { script }, &clock, subject, rtt_us)?,
            Subject::Hybrid => run_simulated(
                &mut HybridLimiter::new(script, scheme(), quota(), SLACK_PERCENT_DEFAULT)
                    .map_err(|error| error.to_string())?,
                &clock,
                subject,
                rtt_us,
            )?,
        };
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the simulated comparison shows what the seed claims, for the reasons it
    /// claims: the three limiters admit the same requests (the hybrid only refuses locally
    /// what Redis would refuse), Redis costs one round trip a decision, the hybrid about a
    /// tenth, the memory limiter none. Method: run it at 1 ms and compare the rows.
    #[test]
    fn the_three_admit_alike_and_differ_in_round_trips() {
        let rows = simulate(RTT_US).expect("runs");
        let [memory, redis, hybrid] = &rows[..] else {
            panic!("three rows: {rows:?}");
        };
        assert_eq!(memory.decisions, DECISIONS);
        assert!(
            memory.admitted > 0 && memory.admitted < DECISIONS / 5,
            "{memory:?}"
        );
        assert_eq!(
            memory.admitted, redis.admitted,
            "same algorithm, same requests"
        );
        assert!(hybrid.admitted <= redis.admitted, "{hybrid:?}");
        assert_eq!(memory.round_trips_per_decision, 0.0);
        assert_eq!(memory.decisions_per_s, None, "no time passes in memory");
        assert!(
            (redis.round_trips_per_decision - 1.0).abs() < 0.01,
            "{redis:?}"
        );
        assert_eq!(redis.latency_p50_ms, 1.0);
        let redis_rate = redis.decisions_per_s.expect("time passed");
        assert!((900.0..=1_000.0).contains(&redis_rate), "{redis:?}");
        assert!((80.0..95.0).contains(&hybrid.local_pct), "{hybrid:?}");
        let hybrid_rate = hybrid.decisions_per_s.expect("time passed");
        assert!(hybrid_rate > 5.0 * redis_rate, "{hybrid:?}");
        let text = csv(&rows);
        assert!(text.starts_with(CSV_HEADER));
        assert!(text.contains(",unbounded,2000000,0.0005\n"), "{text}");
    }

    /// Goal: the row's percentiles and rate are what the latencies say. Method: a tally of
    /// four decisions by hand.
    #[test]
    fn tally_rows() {
        let mut tally = Tally::default();
        let verdict = |allowed: bool, round_trips: u64| Verdict {
            decision: ratelab::algo::Decision {
                allowed,
                remaining: 0,
                retry_after_ms: 0,
                reset_after_ms: 0,
            },
            usage: ratelab::redis::Usage {
                round_trips,
                commands: round_trips,
            },
        };
        for (allowed, trips, ns) in [
            (true, 1, 1_000_000),
            (false, 0, 0),
            (false, 0, 0),
            (false, 1, 3_000_000),
        ] {
            tally.record(&verdict(allowed, trips), ns);
        }
        let row = tally.row(Subject::Hybrid, "test", 4_000_000);
        assert_eq!((row.decisions, row.admitted), (4, 1));
        assert_eq!(row.local_pct, 50.0);
        assert_eq!(row.latency_mean_ms, 1.0);
        assert_eq!(row.latency_p50_ms, 0.0);
        assert_eq!(row.latency_p99_ms, 3.0);
        assert_eq!(row.decisions_per_s, Some(1_000.0));
    }
}

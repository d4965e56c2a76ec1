//! The checker: a pure function from a scenario and its event log to named verdicts and
//! metrics. No IO, no clock, no harness types: a saved trace can be judged again.
//!
//! **Safety** (a failure is exit code 1):
//! * admissions per key within the limiter's stated bound in every trailing window: fixed
//!   window 2L per window, sliding log and new-api's IP list L, GCRA and token buckets
//!   B + ⌊Δ/T⌋ in any interval Δ (new-api's bucket: N + ⌊Δ/(W/N)⌋, its ~2N − 1 per window);
//!   the sliding window counter and the pipelined fixed window 2L, and besides (their
//!   exact bound, `admissions_within_aligned_windows`) L per aligned window of the clock
//!   they read: Redis's for the scripts, each admitting gateway's for the pipelined window
//!   (the sliding window counter, exactly: `current × W + previous × (W − elapsed) <= L × W`
//!   at each admission, so L per aligned window and L only after an empty one),
//!   the sharded GCRA and the hybrid B + ⌊Δ/T⌋ (the shards' shares add up to the whole; the
//!   hybrid admits only what its authority admits), the multi-limit each of its limits on
//!   that limit's own keys;
//!   successes per key within M per window for success limits (legacy C1 and reservations).
//!   Fail-open admissions are not counted in the bound; they are their own figure;
//! * every request resolved: a decision (or the fail mode's answer), or an abort the log
//!   records (a gateway restart). A request task that panicked leaves none;
//! * no protocol error while Redis was healthy: a reply the client could not parse outside
//!   every fault's outage, whatever the fail mode made of it;
//! * no 5xx while Redis was healthy: no limiter error from a reply (NOSCRIPT, a vanished
//!   entry) while the request's whole life was outside every fault's outage. Transport errors
//!   outside faults (pool exhaustion, a link slower than the read timeout, pooled connections
//!   a restart broke, for the pool's worst command time after it) are a figure of their own;
//! * every key in Redis at the end has a TTL (new-api's bucket hash breaks this by design);
//!   a log without a snapshot fails it (not judged is not held).
//!
//! **Topologies.** A failover is a reset (one more L + 1 per key); the admissions beyond
//! the plain bound, which only the failover's lost writes excuse, are reported apart
//! (`failover_excess`, `failover_allowance`). Cluster runs report commands per node and
//! slot, the hottest of each, MOVED redirects and CROSSSLOT errors.
//!
//! **Coverage** (reported, never a failure of the run, but `Report::assert_safe` demands
//! it: a run without it proves little): a request was denied; each scheduled fault fired and
//! took effect (the harness saw it act, or the log shows requests it caught).
//!
//! **Time.** Events carry the time the gateway saw them, not the time Redis ran the command:
//! Redis ran an admission somewhere between the request's arrival and its decision. Each
//! admission carries that interval (its own path's margin), and a window or interval counts
//! only the admissions surely inside it, so the check never blames a limiter for the
//! network, and one slow link widens only its own requests' intervals. A key's margin is
//! its widest interval; beyond a quarter of the bound's span the check refuses to judge (a
//! failed verdict) rather than pass what it cannot see. Clock faults get no margin: a skewed
//! or drifting clock that makes a limiter over-admit in true time is what the check exists
//! to show. new-api's bucket reads Redis TIME in whole seconds, so its Δ gets one more second.
//!
//! **Resets** (restarts, flushes, failovers, clock steps that can reset a window) excuse at
//! most one more `base + 1` per window, and only as much as the key admitted in that window
//! before them; the stretch after a reset is held to the base bound alone. On a cluster a
//! Redis restart bounces one node (`redis-0`): only keys whose slot it owns earn it
//! (`Resets::for_key`, `on_restarted_shard`).
//!
//! **Resolution** (`Metrics::over_admission_resolution`): computed from the log, the least
//! headroom (allowed − counted) over every window or interval the checks judge, plus one:
//! the smallest over-admission the check sees at the tightest place of the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::dynamics::drift_ms;
use crate::event::{ErrorClass, Event, Outcome};
use crate::harness::EPOCH_MS;
use crate::scenario::{
    Durability, FaultKind, LimiterKind, SHARDED_SCHEME_DEFAULT, Scenario, Topology,
};

/// What a verdict is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// A property that must hold: a failure fails the run.
    Safety,
    /// A property that should happen at least once, so the run proves something.
    Coverage,
}

/// One named property and whether it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Short stable name (`admissions_within_bound`).
    pub name: String,
    /// Safety or coverage.
    pub kind: VerdictKind,
    /// Whether it held.
    pub held: bool,
    /// The figures behind it, in words.
    pub detail: String,
}

/// Distribution figures of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Requests that arrived.
    pub requests: u64,
    /// Decisions made (every request that got an answer).
    pub decisions: u64,
    /// Admitted by the limiter.
    pub allowed: u64,
    /// Denied by the limiter.
    pub denied: u64,
    /// Admitted because the limiter could not decide and the gateway fails open.
    pub fail_open: u64,
    /// 5xx because the limiter could not decide and the gateway fails closed.
    pub errors: u64,
    /// 5xx from transport errors (pool timeout, read timeout) while no fault was active:
    /// the pool or the timeouts are too small for the load or the link, not a limiter bug.
    pub transport_errors_while_healthy: u64,
    /// Upstream calls that succeeded.
    pub successes: u64,
    /// Successes an outcome limiter should have recorded but could not (Redis unreachable).
    pub unrecorded_successes: u64,
    /// Decision latency percentiles, ms.
    pub latency_p50_ms: u64,
    /// Each gateway's median decision latency, ms, by gateway index (gateways that made
    /// no decision are left out).
    pub latency_p50_ms_per_gateway: Vec<(u32, u64)>,
    /// 99th percentile decision latency, ms.
    pub latency_p99_ms: u64,
    /// Largest decision latency, ms.
    pub latency_max_ms: u64,
    /// Mean Redis round trips per decision.
    pub round_trips_per_decision: f64,
    /// Mean Redis commands per decision.
    pub commands_per_decision: f64,
    /// Pool wait per decision, 50th percentile, ms.
    pub pool_wait_p50_ms: u64,
    /// Pool wait per decision, 99th percentile, ms.
    pub pool_wait_p99_ms: u64,
    /// Failovers that fired.
    pub failovers: u64,
    /// What a failover may lawfully cost, per key and per failover, in units: one more limit
    /// (plus one, as any reset), for the writes the promoted replica had not received.
    pub failover_allowance: u64,
    /// The worst key's admissions beyond the plain bound (without the failover allowance):
    /// the over-admission failovers caused. 0 when nothing was lost.
    pub failover_excess: u64,
    /// Cluster: commands the gateways sent to each node, in host order.
    pub commands_per_node: Vec<(String, u64)>,
    /// Cluster: the node that received the most commands, with its count.
    pub hottest_node: Option<(String, u64)>,
    /// Cluster: the slot that received the most commands, with its count.
    pub hottest_slot: Option<(u16, u64)>,
    /// Cluster: slots that received any command.
    pub slots_used: u64,
    /// Cluster: MOVED redirects the gateways followed.
    pub moved_redirects: u64,
    /// Decisions that failed on a CROSSSLOT reply (keys of one call in different slots).
    pub crossslot_errors: u64,
    /// The worst key's admissions beyond its stated bound (allowances included), in units;
    /// 0 when every key is within. Fail-open admissions are not counted (they are outside
    /// the bound by design). The report's figures plot this.
    pub over_admission_max: u64,
    /// The smallest over-admission (units beyond the bound) the check sees: 1 plus the
    /// least headroom (allowed − counted, reset allowances included) over every window or
    /// interval its admission checks judge on any key, computed from the log (a saturated
    /// key gives 1 whatever its margin). 0 when no admission bound was judged.
    pub over_admission_resolution: u64,
    /// The largest per-key time margin, ms: for each key, the 90th percentile of the
    /// intervals in which its admissions may have happened in Redis (arrival to decision:
    /// each request's own path), plus the legacy bucket's whole second.
    pub margin_ms_max: u64,
    /// Admissions (units) whose own interval is wider than a quarter of the bound's span
    /// (held by a partition, retried after a timeout): the check cannot place them finely;
    /// an over-admission hidden among them is at most this many units.
    pub unjudged_admissions: u64,
    /// The median over keys of that per-key margin, ms.
    pub margin_ms_p50_key: u64,
    /// Per path (gateway index): the widest admission interval of its requests, ms (the
    /// widest, not a percentile: a slow path shows here even when it is rare).
    pub margin_ms_per_gateway: Vec<(u32, u64)>,
    /// Requests that got no decision and no logged abort (a request task that panicked or
    /// vanished).
    pub unresolved: u64,
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The run's seed.
    pub seed: u64,
    /// Every verdict, safety first.
    pub verdicts: Vec<Verdict>,
    /// The run's figures.
    pub metrics: Metrics,
    /// For each violated bound: the offending key's events around its worst window.
    pub timelines: Vec<String>,
    /// The command that replays the run, when the caller knows one (the checker sees only
    /// the events); printed last.
    pub replay: Option<String>,
}

impl Report {
    /// Whether every safety property held.
    pub fn safe(&self) -> bool {
        self.verdicts
            .iter()
            .all(|verdict| verdict.kind != VerdictKind::Safety || verdict.held)
    }

    /// The verdict called `name`, if the checker produced one.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|verdict| verdict.name == name)
    }

    /// Whether the verdict `name` exists and failed.
    pub fn violated(&self, name: &str) -> bool {
        self.verdict(name).is_some_and(|verdict| !verdict.held)
    }

    /// Whether every coverage property held too: something was denied, every fault took
    /// effect. A safe run without them proves little.
    pub fn covered(&self) -> bool {
        self.verdicts
            .iter()
            .all(|verdict| verdict.kind != VerdictKind::Coverage || verdict.held)
    }

    /// Panics with the report unless the run holds as a proof: every safety property held
    /// *and* every coverage property (denials happened, each fault took effect); a snapshot
    /// exists (`every_key_has_ttl` fails without one). For tests.
    pub fn assert_safe(&self) {
        assert!(self.safe(), "a safety property failed:\n{self}");
        assert!(
            self.covered(),
            "the run is safe but quiet (a coverage property failed), so it proves nothing:\n{self}"
        );
    }

    /// Panics unless every safety property held; coverage is not demanded. Only for runs
    /// that are quiet on purpose (a baseline without the fault); say why at the call.
    pub fn assert_safe_even_if_quiet(&self) {
        assert!(self.safe(), "a safety property failed:\n{self}");
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {}", self.seed)?;
        for verdict in &self.verdicts {
            let mark = match (verdict.kind, verdict.held) {
                (_, true) => "ok  ",
                (VerdictKind::Safety, false) => "FAIL",
                (VerdictKind::Coverage, false) => "none",
            };
            let kind = match verdict.kind {
                VerdictKind::Safety => "safety",
                VerdictKind::Coverage => "coverage",
            };
            writeln!(f, "  {mark} {kind:<8} {}: {}", verdict.name, verdict.detail)?;
        }
        let m = &self.metrics;
        writeln!(
            f,
            "  requests {} decisions {} allowed {} denied {} fail-open {} 5xx {} successes {} (unrecorded {})",
            m.requests,
            m.decisions,
            m.allowed,
            m.denied,
            m.fail_open,
            m.errors,
            m.successes,
            m.unrecorded_successes
        )?;
        writeln!(
            f,
            "  decision latency p50 {} ms p99 {} ms max {} ms; round trips/decision {:.2}, commands/decision {:.2}; pool wait p50 {} ms p99 {} ms",
            m.latency_p50_ms,
            m.latency_p99_ms,
            m.latency_max_ms,
            m.round_trips_per_decision,
            m.commands_per_decision,
            m.pool_wait_p50_ms,
            m.pool_wait_p99_ms
        )?;
        writeln!(
            f,
            "  over-admission max {} (the check sees {} or more; {} admissions too slow to place); time margin per key max {} ms, median {} ms; per gateway {:?}; {} requests unresolved",
            m.over_admission_max,
            m.over_admission_resolution,
            m.unjudged_admissions,
            m.margin_ms_max,
            m.margin_ms_p50_key,
            m.margin_ms_per_gateway,
            m.unresolved
        )?;
        if m.latency_p50_ms_per_gateway.len() > 1 {
            let medians: Vec<String> = m
                .latency_p50_ms_per_gateway
                .iter()
                .map(|(gateway, median)| format!("gateway-{gateway} {median} ms"))
                .collect();
            writeln!(
                f,
                "  decision latency p50 per gateway: {}",
                medians.join(", ")
            )?;
        }
        if m.failovers > 0 {
            writeln!(
                f,
                "  failovers {}: allowance {} per key per failover; worst key {} over the plain bound",
                m.failovers, m.failover_allowance, m.failover_excess
            )?;
        }
        if !m.commands_per_node.is_empty() {
            let nodes: Vec<String> = m
                .commands_per_node
                .iter()
                .map(|(host, count)| format!("{host} {count}"))
                .collect();
            writeln!(
                f,
                "  commands per node: {}; hottest node {:?}, hottest slot {:?} of {} used; {} MOVED followed; {} CROSSSLOT",
                nodes.join(", "),
                m.hottest_node,
                m.hottest_slot,
                m.slots_used,
                m.moved_redirects,
                m.crossslot_errors
            )?;
        }
        for timeline in &self.timelines {
            write!(f, "{timeline}")?;
        }
        if let Some(replay) = &self.replay {
            writeln!(f, "  replay: {replay}")?;
        }
        Ok(())
    }
}

/// A limiter's stated bound on weighted events per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// At most `limit` in every trailing window of `span_ms`.
    Window {
        /// The most allowed.
        limit: u64,
        /// The window.
        span_ms: u64,
    },
    /// At most `burst + ⌊Δ / interval_ms⌋` in every interval of length Δ.
    Rate {
        /// B.
        burst: u64,
        /// T.
        interval_ms: u64,
    },
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Window { limit, span_ms } => write!(f, "{limit} per {span_ms} ms window"),
            Bound::Rate { burst, interval_ms } => {
                write!(f, "{burst} + floor(Δ / {interval_ms} ms) in any Δ")
            }
        }
    }
}

/// The bound on admissions (weighted by cost) of `kind`, if it states one.
pub fn admission_bound(kind: LimiterKind, scenario: &Scenario) -> Option<Bound> {
    let limit = scenario.limit.limit;
    let window_ms = scenario.limit.window_ms;
    match kind {
        LimiterKind::LegacyIpList
        | LimiterKind::AtomicSlidingLog
        | LimiterKind::LegacyMemoryList => Some(Bound::Window {
            limit,
            span_ms: window_ms,
        }),
        // new-api's email INCR is a fixed window that starts at the key's first request; the
        // sliding window counter and the pipelined fixed window admit L per aligned window.
        LimiterKind::AtomicFixedWindow
        | LimiterKind::LegacyEmail
        | LimiterKind::AtomicSlidingWindow
        | LimiterKind::PipelinedFixedWindow => Some(Bound::Window {
            limit: 2 * limit,
            span_ms: window_ms,
        }),
        LimiterKind::AtomicGcra
        | LimiterKind::AtomicTokenBucket
        | LimiterKind::LegacyTokenBucket
        | LimiterKind::MemoryGcra
        // The shards' shares add up to the whole; the hybrid admits only what its
        // authority (the GCRA script) admits.
        | LimiterKind::ShardedGcra
        | LimiterKind::HybridGcra => Some(Bound::Rate {
            burst: limit,
            interval_ms: window_ms / limit,
        }),
        LimiterKind::LegacyModelRequest if scenario.limit.total > 0 => Some(Bound::Rate {
            burst: scenario.limit.total,
            interval_ms: window_ms / scenario.limit.total,
        }),
        // Each of its limits is judged on its own keys: `multi_limit_verdict`.
        LimiterKind::LegacyModelRequest
        | LimiterKind::SuccessReservation
        | LimiterKind::MultiLimit => None,
    }
}

/// The bound on successes of `kind`, if it is a success limit.
pub fn success_bound(kind: LimiterKind, scenario: &Scenario) -> Option<Bound> {
    kind.counts_successes().then_some(Bound::Window {
        limit: scenario.limit.limit,
        span_ms: scenario.limit.window_ms,
    })
}

/// Whether requests of `kind` are weighted by cost (new-api's limiters count requests).
fn weighted(kind: LimiterKind) -> bool {
    !kind.is_legacy()
}

/// The fault instants that lawfully let a limiter start over: Redis restarts (each by its
/// persistence: [`restart_reset`]), flushes, failovers, forward Redis clock steps (and backward ones for clock-aligned
/// windows), the same gateway clock steps when a legacy limiter (gateway time) runs, and
/// restarts of a gateway whose limiter keeps its state in the process (`legacy_memory_list`,
/// `memory_gcra`: the new process starts empty). A restart of a gateway with a Redis-backed
/// limiter is no reset: the state is in Redis and survives it.
pub fn resets(scenario: &Scenario, kinds: &[LimiterKind]) -> Resets {
    let legacy = kinds.iter().any(|kind| kind.uses_gateway_clock());
    let in_memory_gateway = |host: &str| {
        host.strip_prefix("gateway-")
            .and_then(|index| index.parse::<u32>().ok())
            .and_then(|index| scenario.gateway_group(index))
            .is_some_and(|group| group.limiter.is_in_memory())
    };
    let mut at_ms: Vec<u64> = scenario
        .faults
        .iter()
        .filter(|fault| match &fault.kind {
            FaultKind::RedisRestart { .. } => restart_reset(&fault.kind, fault.at_ms).is_some(),
            FaultKind::Flush {} | FaultKind::Failover {} => true,
            // A step back only makes a limiter stricter (its state looks newer), except
            // where windows are aligned to the clock: stepping into an earlier window finds
            // no count for it.
            FaultKind::ClockStep { host, step_ms } => {
                (legacy || host.starts_with("redis-"))
                    && (*step_ms > 0 || kinds.iter().any(|kind| clock_aligned(*kind)))
            }
            FaultKind::GatewayRestart { host, .. } => in_memory_gateway(host),
            _ => false,
        })
        .map(|fault| fault.at_ms)
        .collect();
    at_ms.sort_unstable();
    // A restart that kept an earlier state forgets less, unless a full reset shares its
    // instant (then that one forgets everything before it).
    let mut kept_as_of_ms: BTreeMap<u64, u64> = BTreeMap::new();
    for fault in &scenario.faults {
        if let Some(Some(kept)) = restart_reset(&fault.kind, fault.at_ms) {
            kept_as_of_ms.insert(fault.at_ms, kept);
        }
    }
    kept_as_of_ms.retain(|at, _| {
        at_ms.iter().filter(|reset| *reset == at).count()
            == scenario
                .faults
                .iter()
                .filter(|fault| {
                    fault.at_ms == *at && matches!(restart_reset(&fault.kind, *at), Some(Some(_)))
                })
                .count()
    });
    // On a cluster a Redis restart bounces `redis-0`, one shard: only the keys whose slot
    // that node owns lose their state (`Resets::for_key`).
    let mut shard_restart_ms = Vec::new();
    if scenario.redis.topology == Topology::Cluster {
        for fault in &scenario.faults {
            if matches!(fault.kind, FaultKind::RedisRestart { .. })
                && restart_reset(&fault.kind, fault.at_ms).is_some()
                && let Some(position) = at_ms.iter().position(|&at| at == fault.at_ms)
            {
                at_ms.remove(position);
                shard_restart_ms.push(fault.at_ms);
            }
        }
    }
    Resets {
        at_ms,
        reach_ms: 0,
        shard_restart_ms,
        kept_as_of_ms,
    }
}

/// Whether a key of the log (`k3`, `ip:k3`) or a rendered Redis key lives, on a cluster, on
/// the node a Redis restart bounces (`redis-0`, the first slot range): rendered as each
/// gateway group renders it (its template, every shard of a sharded key), any of its Redis
/// keys in `redis-0`'s slots. A key the log cannot name is taken to be there (the
/// allowance is then granted, never wrongly withheld). Always true off a cluster.
pub fn on_restarted_shard(scenario: &Scenario, key: &str) -> bool {
    use crate::harness::{identity, parse_key_name};
    use crate::topology::shard_slots;
    use ratelab::keys::{KeyScheme, key_slot};

    if scenario.redis.topology != Topology::Cluster {
        return true;
    }
    let (low, high) = shard_slots(0, scenario.redis.shards.max(1));
    let on_first = |rendered: &[u8]| (low..=high).contains(&key_slot(rendered));
    let Some((kind, number)) = parse_key_name(key) else {
        // A rendered key (the multi-limit's per-limit keys).
        return on_first(key.as_bytes());
    };
    scenario.gateways.iter().any(|group| {
        let (template, shards) = match group.limiter {
            LimiterKind::ShardedGcra => (SHARDED_SCHEME_DEFAULT, group.key_shards()),
            _ => ("rl:$ns:{u:$user}", 1),
        };
        let who = identity(
            group.limiter,
            kind,
            number,
            group.group.as_deref().unwrap_or("default"),
        );
        let Ok(scheme) = KeyScheme::parse(group.key_scheme.as_deref().unwrap_or(template), shards)
        else {
            return true;
        };
        match scheme.render_all(&who) {
            Ok(keys) => keys.iter().any(|rendered| on_first(rendered)),
            Err(_) => true,
        }
    })
}

/// The reset a Redis restart at `at_ms` is, by its persistence: `None` when it is none;
/// `Some(None)` when it forgets every write before it; `Some(Some(kept_ms))` when it forgets
/// only the writes after `kept_ms`. Without persistence the node starts empty (today's
/// allowance: what a key admitted before the restart). `aof_always` kept every acknowledged
/// write, so it earns no allowance. `aof_everysec` kept the state of its last whole-second
/// fsync, so a key's allowance is at most what it admitted in the last second before the
/// restart; `rdb` kept its last snapshot, so what the key admitted since that snapshot.
pub fn restart_reset(kind: &FaultKind, at_ms: u64) -> Option<Option<u64>> {
    match kind.durability(at_ms)? {
        Durability::Nothing => Some(None),
        Durability::Everything => None,
        Durability::AsOf { synced_at_ms } => Some(Some(synced_at_ms)),
    }
}

/// Whether `kind`'s windows are aligned to its clock (a step back re-enters a window whose
/// count is gone). A kind whose state only ages with the clock (logs, GCRA, buckets) is
/// made stricter by a step back and earns no allowance for it.
fn clock_aligned(kind: LimiterKind) -> bool {
    matches!(
        kind,
        LimiterKind::AtomicFixedWindow
            | LimiterKind::AtomicSlidingWindow
            | LimiterKind::PipelinedFixedWindow
    )
}

/// The worst window found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Excess {
    key: String,
    start_ms: u64,
    end_ms: u64,
    counted: u64,
    allowed: u64,
}

/// Instants at which a limiter may lawfully start over (a Redis restart loses its state; a
/// clock step moves its windows). Each is worth at most one more `base + 1` in a window or
/// interval that contains it, and only as much as that key had admitted in it before the
/// reset: a reset that forgets nothing of a key earns that key nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resets {
    /// Sorted times, ms: resets of every key.
    pub at_ms: Vec<u64>,
    /// Cluster: Redis restarts of one shard (`redis-0`), resets only of the keys whose slot
    /// it owns; [`Resets::for_key`] adds them for those keys.
    pub shard_restart_ms: Vec<u64>,
    /// How long after a reset its effect lasts, ms: 0 for admissions; for successes, the
    /// longest a request admitted before it can take to complete after it (its success lands
    /// on the fresh state that no longer holds its reservation).
    pub reach_ms: u64,
    /// For a restart that brought back the state of an earlier fsync or snapshot: its
    /// instant → that sync's instant. Only what a key may have admitted after the sync was
    /// forgotten, so only that is excused (a point whose latest time is at or before the sync
    /// surely ran before it).
    pub kept_as_of_ms: BTreeMap<u64, u64>,
}

impl Resets {
    /// The resets of one key: every reset, plus the cluster shard restarts when the key
    /// lives on the restarted node (`on_restarted_shard`). The one place that decides which
    /// resets a key earns an allowance for.
    pub fn for_key(&self, on_restarted_shard: bool) -> Resets {
        let mut at_ms = self.at_ms.clone();
        if on_restarted_shard {
            at_ms.extend(&self.shard_restart_ms);
            at_ms.sort_unstable();
        }
        Resets {
            at_ms,
            reach_ms: self.reach_ms,
            shard_restart_ms: Vec::new(),
            kept_as_of_ms: self.kept_as_of_ms.clone(),
        }
    }

    /// What the resets inside `[start_ms, end_ms]` excuse in `set`: per reset, the set's
    /// weight that may lie before it (its earliest time at or before the reset, plus the
    /// reach), capped at `base_plus_one`.
    fn allowance(&self, set: &[Point], start_ms: u64, end_ms: u64, base_plus_one: u64) -> u64 {
        self.at_ms
            .iter()
            .filter(|&&at| at + self.reach_ms >= start_ms && at <= end_ms)
            .map(|&at| {
                let kept = self.kept_as_of_ms.get(&at).copied();
                let before: u64 = set
                    .iter()
                    .filter(|point| point.1 <= at + self.reach_ms)
                    .filter(|point| kept.is_none_or(|kept| point.0 > kept))
                    .map(|point| point.2)
                    .sum();
                before.min(base_plus_one)
            })
            .sum()
    }
}

/// One counted event: `(latest_ms, earliest_ms, weight)`. Redis ran it somewhere in
/// `[earliest_ms, latest_ms]` (true time): from the request's arrival to the gateway's
/// reading the reply. Each point carries its own path's margin, so one slow link widens
/// only the intervals of the requests that took it.
type Point = (u64, u64, u64);

/// The worst excess over `bound` in `points` sorted by their latest time, if any, as
/// `(start_ms, end_ms, counted, allowed)`. For each end `e` (a point's latest time) the
/// check takes every point that surely lies in a window or interval ending at `e`: latest
/// at most `e`, earliest at or after the start. A window takes every such point whose
/// earliest is within `span - 1` of `e`; an interval tries each start `s` (an earliest
/// time) and is allowed `burst + floor((e - s + extra) / T)`. A slow point is left out of
/// a set it cannot surely be in, without widening the set. `extra_ms` widens every span
/// (new-api's bucket, whose Redis TIME has whole seconds).
fn worst_excess(
    points: &[Point],
    bound: Bound,
    extra_ms: u64,
    resets: &Resets,
) -> Option<(u64, u64, u64, u64)> {
    let mut worst: Option<(u64, u64, u64, u64)> = None;
    let mut consider = |start: u64, end: u64, counted: u64, allowed: u64| {
        if counted > allowed
            && worst.is_none_or(|(_, _, worst_counted, worst_allowed)| {
                counted - allowed > worst_counted - worst_allowed
            })
        {
            worst = Some((start, end, counted, allowed));
        }
    };
    let weight_of = |set: &[Point]| set.iter().map(|point| point.2).sum::<u64>();
    match bound {
        Bound::Window { limit, span_ms } => {
            let span = span_ms.saturating_sub(extra_ms);
            if span == 0 {
                return None;
            }
            for last in 0..points.len() {
                let end = points[last].0;
                // Points ending after `end - span` (earlier ones cannot start after it).
                let from = points.partition_point(|point| point.0 + span <= end);
                let set: Vec<Point> = points[from..=last]
                    .iter()
                    .filter(|point| point.1 + span > end)
                    .copied()
                    .collect();
                if weight_of(&set) <= limit {
                    continue;
                }
                let start = set.iter().map(|point| point.1).min().unwrap_or(end);
                // The whole, and each tail that surely starts after a reset inside it (a
                // tail may exceed the base limit while the whole, which earns the reset's
                // allowance, does not).
                let mut sets = vec![set.clone()];
                for &at in &resets.at_ms {
                    if at >= start && at <= end {
                        sets.push(set.iter().filter(|point| point.1 > at).copied().collect());
                    }
                }
                for set in sets {
                    let counted = weight_of(&set);
                    if counted <= limit {
                        continue;
                    }
                    let set_start = set.iter().map(|point| point.1).min().unwrap_or(end);
                    let allowed = limit + resets.allowance(&set, set_start, end, limit + 1);
                    consider(set_start, end, counted, allowed);
                }
            }
        }
        Bound::Rate { burst, interval_ms } => {
            let interval = interval_ms.max(1);
            // The points with latest at most `end`, by earliest time.
            let mut by_earliest: Vec<Point> = Vec::with_capacity(points.len());
            let mut total = 0;
            for &point in points {
                let position = by_earliest.partition_point(|other| other.1 <= point.1);
                by_earliest.insert(position, point);
                total += point.2;
                let end = point.0;
                let mut counted = 0;
                for index in (0..by_earliest.len()).rev() {
                    counted += by_earliest[index].2;
                    let start = by_earliest[index].1;
                    let base = burst + (end - start + extra_ms) / interval;
                    if counted > base {
                        let set = &by_earliest[index..];
                        let allowed = base + resets.allowance(set, start, end, burst + 1);
                        consider(start, end, counted, allowed);
                    }
                    // Earlier starts add at most what is left; once the base allowance is
                    // ahead by more than that, no earlier start can exceed it (the allowance
                    // only grows as the start moves back).
                    if base.saturating_sub(counted) > total - counted {
                        break;
                    }
                }
            }
        }
    }
    worst
}

/// The span a bound judges over, ms: the window, or for a rate the burst's refill time.
fn bound_span_ms(bound: Bound) -> u64 {
    match bound {
        Bound::Window { span_ms, .. } => span_ms,
        Bound::Rate { burst, interval_ms } => burst.saturating_mul(interval_ms),
    }
}

/// The smallest over-admission (units) the check sees on this key's log: 1 plus the least
/// headroom `allowed - counted` over every window or interval the check judges (the sets
/// [`worst_excess`] forms, reset allowances included), so one unit more admitted inside the
/// tightest of them fails the verdict. Computed from the log, not from a formula on the
/// margin: a saturated key's resolution is 1 whatever its margin, an idle key's is large.
/// `None` for a key without admissions.
fn resolution(points: &[Point], bound: Bound, extra_ms: u64, resets: &Resets) -> Option<u64> {
    let mut least: Option<u64> = None;
    let note = |least: &mut Option<u64>, headroom: u64| {
        *least = Some(least.map_or(headroom, |least| least.min(headroom)));
    };
    match bound {
        Bound::Window { limit, span_ms } => {
            let span = span_ms.saturating_sub(extra_ms).max(1);
            for last in 0..points.len() {
                let end = points[last].0;
                let from = points.partition_point(|point| point.0 + span <= end);
                let set: Vec<Point> = points[from..=last]
                    .iter()
                    .filter(|point| point.1 + span > end)
                    .copied()
                    .collect();
                let counted: u64 = set.iter().map(|point| point.2).sum();
                let bare = limit.saturating_sub(counted);
                if least.is_some_and(|least| bare >= least) {
                    continue;
                }
                let start = set.iter().map(|point| point.1).min().unwrap_or(end);
                // The whole and each tail after a reset, as `worst_excess` judges them.
                let mut sets = vec![set.clone()];
                for &at in &resets.at_ms {
                    if at >= start && at <= end {
                        sets.push(set.iter().filter(|point| point.1 > at).copied().collect());
                    }
                }
                for set in sets {
                    let counted: u64 = set.iter().map(|point| point.2).sum();
                    let set_start = set.iter().map(|point| point.1).min().unwrap_or(end);
                    let allowance = resets.allowance(&set, set_start, end, limit + 1);
                    note(&mut least, (limit + allowance).saturating_sub(counted));
                }
            }
        }
        Bound::Rate { burst, interval_ms } => {
            let interval = interval_ms.max(1);
            let mut by_earliest: Vec<Point> = Vec::with_capacity(points.len());
            let mut total = 0;
            for &point in points {
                let position = by_earliest.partition_point(|other| other.1 <= point.1);
                by_earliest.insert(position, point);
                total += point.2;
                let end = point.0;
                let mut counted = 0;
                for index in (0..by_earliest.len()).rev() {
                    counted += by_earliest[index].2;
                    let start = by_earliest[index].1;
                    let base = burst + (end - start + extra_ms) / interval;
                    let bare = base.saturating_sub(counted);
                    if least.is_none_or(|least| bare < least) {
                        let set = &by_earliest[index..];
                        let allowance = resets.allowance(set, start, end, burst + 1);
                        note(&mut least, (base + allowance).saturating_sub(counted));
                    }
                    // Earlier starts have at least `base - total` of headroom (their base
                    // only grows, their count is at most the total).
                    if least.is_some_and(|least| base.saturating_sub(total) >= least) {
                        break;
                    }
                }
            }
        }
    }
    least.map(|headroom| headroom + 1)
}

/// The smaller of two resolutions, where 0 means none judged.
fn finer(resolution: u64, other: Option<u64>) -> u64 {
    match other {
        Some(other) if resolution == 0 || other < resolution => other,
        _ => resolution,
    }
}

/// What a time margin could hide at the bound's rate (`ceil(margin × limit / window)`, or
/// `ceil(margin / T)`): said when the check refuses a margin.
fn hidden_by_margin(bound: Bound, margin_ms: u64) -> u64 {
    match bound {
        Bound::Window { limit, span_ms } => (margin_ms * limit).div_ceil(span_ms.max(1)),
        Bound::Rate { interval_ms, .. } => margin_ms.div_ceil(interval_ms.max(1)),
    }
}

/// The largest margin against a bound's span that the check still judges under: a quarter.
/// Beyond it the check refuses (a failed verdict, never "ok"): a margin that wide would
/// hide a quarter of the limit.
pub const MARGIN_SHARE_MAX: u64 = 4;

/// A key's margin, ms: the 90th percentile of its admission intervals (its usual paths),
/// plus `extra_ms`. The few wider ones (a request held by a partition, a retry after a
/// timeout) are counted apart by [`wide_points`]: each can hide at most itself.
fn key_margin_ms(points: &[Point], extra_ms: u64) -> u64 {
    let mut widths: Vec<u64> = points
        .iter()
        .map(|&(latest, earliest, _)| latest - earliest)
        .collect();
    widths.sort_unstable();
    percentile(&widths, 900) + extra_ms
}

/// The weight of the admissions whose own interval (plus `extra_ms`) is wider than the
/// refusal threshold: the check cannot place them in a window finely, so an over-admission
/// among them may go unseen, at most their weight.
fn wide_points(points: &[Point], extra_ms: u64, bound: Bound) -> u64 {
    points
        .iter()
        .filter(|&&(latest, earliest, _)| {
            (latest - earliest + extra_ms) * MARGIN_SHARE_MAX > bound_span_ms(bound)
        })
        .map(|point| point.2)
        .sum()
}

fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = (sorted.len() * per_mille).div_ceil(1_000).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

/// Judges one run. Pure: the same inputs always give the same report.
pub fn check(scenario: &Scenario, seed: u64, events: &[Event]) -> Report {
    // Per request: (gateway, key, arrival, cost).
    let mut requests: BTreeMap<u64, (u32, String, u64, u64)> = BTreeMap::new();
    let mut decisions: BTreeMap<u64, (u64, Outcome)> = BTreeMap::new();
    let mut metrics = Metrics::default();
    let mut latencies = Vec::new();
    let mut gateway_latencies: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut pool_waits = Vec::new();
    let mut round_trips = 0u64;
    let mut commands = 0u64;
    let mut fired = vec![false; scenario.faults.len()];
    let mut took_effect: Vec<Option<bool>> = vec![None; scenario.faults.len()];
    let mut aborted: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    // Hosts whose clock drifted, with the drift the harness applied in all (ms).
    let mut drifted: Vec<(&str, i64)> = Vec::new();
    let mut snapshot: Option<&Vec<(String, i64)>> = None;
    let mut levels: &[(String, String, String)] = &[];
    // Per key: admissions and recorded successes as points (latest, earliest, weight).
    let mut admissions: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    let mut successes: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    // The same admissions with the gateway that made them (whose clock a pipelined fixed
    // window reads).
    let mut aligned: BTreeMap<String, Vec<AlignedPoint>> = BTreeMap::new();
    // Per gateway (path): the widest admission interval.
    let mut gateway_margins: BTreeMap<u32, u64> = BTreeMap::new();
    let mut desyncs: Vec<(u64, u64, String)> = Vec::new();
    // Per (group index, key), when groups have their own limits (R5).
    let grouped = scenario.has_group_limits();
    let mut group_admissions: BTreeMap<(usize, String), Vec<Point>> = BTreeMap::new();
    let mut errors_while_healthy: Vec<(u64, u64, String)> = Vec::new();

    let outages: Vec<(u64, u64)> = scenario
        .faults
        .iter()
        .filter(|fault| fault.kind.outage_ms() > 0)
        .map(|fault| (fault.at_ms, fault.at_ms + fault.kind.outage_ms()))
        .collect();
    let reconnect_grace_ms = scenario
        .gateways
        .iter()
        .map(|group| group.pool.worst_command_ms())
        .max()
        .unwrap_or(0);
    let kind_of = |gateway: u32| {
        scenario
            .gateway_group(gateway)
            .map(|group| group.limiter)
            .unwrap_or(LimiterKind::AtomicGcra)
    };

    for event in events {
        match event {
            Event::Request {
                id,
                gateway,
                key,
                at_ms,
                cost,
            } => {
                metrics.requests += 1;
                requests.insert(*id, (*gateway, key.clone(), *at_ms, *cost));
            }
            Event::Decision {
                id,
                at_ms,
                outcome,
                latency_ms,
                round_trips: trips,
                commands: sent,
                pool_wait_ms,
                error_class,
                error,
                ..
            } => {
                if error
                    .as_deref()
                    .is_some_and(|error| error.contains("CROSSSLOT"))
                {
                    metrics.crossslot_errors += 1;
                }
                metrics.decisions += 1;
                latencies.push(*latency_ms);
                if let Some((gateway, ..)) = requests.get(id) {
                    gateway_latencies
                        .entry(*gateway)
                        .or_default()
                        .push(*latency_ms);
                }
                pool_waits.push(*pool_wait_ms);
                round_trips += trips;
                commands += sent;
                decisions.insert(*id, (*at_ms, *outcome));
                let Some((gateway, key, arrived_ms, cost)) = requests.get(id) else {
                    continue;
                };
                // A desync is judged whatever the fail mode made of it (a 5xx or an admission).
                if *error_class == Some(ErrorClass::Protocol)
                    && !outages
                        .iter()
                        .any(|&(start, end)| *arrived_ms <= end && *at_ms >= start)
                {
                    desyncs.push((*id, *at_ms, key.clone()));
                }
                match outcome {
                    Outcome::Allowed => {
                        metrics.allowed += 1;
                        let weight = if weighted(kind_of(*gateway)) {
                            *cost
                        } else {
                            1
                        };
                        let point = (*at_ms, (*arrived_ms).min(*at_ms), weight);
                        let path = gateway_margins.entry(*gateway).or_default();
                        *path = (*path).max(point.0 - point.1);
                        admissions.entry(key.clone()).or_default().push(point);
                        aligned
                            .entry(key.clone())
                            .or_default()
                            .push((point, *gateway));
                        if let Some(group) = scenario.group_index(*gateway).filter(|_| grouped) {
                            group_admissions
                                .entry((group, key.clone()))
                                .or_default()
                                .push(point);
                        }
                    }
                    Outcome::Denied => metrics.denied += 1,
                    Outcome::FailOpen => metrics.fail_open += 1,
                    Outcome::Error => {
                        metrics.errors += 1;
                        let grace = match error_class {
                            Some(ErrorClass::Transport) => reconnect_grace_ms,
                            _ => 0,
                        };
                        let overlaps = outages.iter().any(|&(start, end)| {
                            *arrived_ms <= end.saturating_add(grace) && *at_ms >= start
                        });
                        match error_class {
                            _ if overlaps => {}
                            // Redis is up but could not be reached in time: the pool is
                            // exhausted or the link is slower than the read timeout. Those
                            // are load and latency faults, reported as a figure.
                            Some(ErrorClass::Transport) => {
                                metrics.transport_errors_while_healthy += 1
                            }
                            _ => errors_while_healthy.push((*id, *at_ms, key.clone())),
                        }
                    }
                }
            }
            Event::Completion {
                id,
                at_ms: finished_ms,
                success,
                recorded_at_ms,
            } => {
                if !success {
                    continue;
                }
                metrics.successes += 1;
                let Some((gateway, key, _, _)) = requests.get(id) else {
                    continue;
                };
                if !kind_of(*gateway).counts_successes() {
                    continue;
                }
                let admitted = decisions
                    .get(id)
                    .is_some_and(|(_, outcome)| *outcome == Outcome::Allowed);
                match recorded_at_ms {
                    Some(recorded_ms) if admitted => successes
                        .entry(key.clone())
                        .or_default()
                        .push((*recorded_ms, (*finished_ms).min(*recorded_ms), 1)),
                    _ => metrics.unrecorded_successes += u64::from(admitted),
                }
            }
            Event::Fault {
                index,
                took_effect: effect,
                ..
            } => {
                if let Some(slot) = fired.get_mut(*index) {
                    // The first event (a start) says whether the fault took; an end says
                    // nothing new.
                    if !*slot {
                        took_effect[*index] = *effect;
                    }
                    *slot = true;
                }
            }
            Event::Aborted { id, .. } => {
                aborted.insert(*id);
            }
            Event::ClockDrift { host, drift_ms, .. } => {
                drifted.push((host.as_str(), *drift_ms));
            }
            Event::Snapshot {
                keys,
                levels: stored,
                ..
            } => {
                snapshot = Some(keys);
                levels = stored;
            }
            Event::Load {
                nodes,
                slots,
                redirects,
                ..
            } => {
                metrics.commands_per_node = nodes.clone();
                // Ties go to the first in order (host, slot), so the figure is stable.
                metrics.hottest_node = nodes
                    .iter()
                    .fold(None::<&(String, u64)>, |best, node| match best {
                        Some(best) if best.1 >= node.1 => Some(best),
                        _ => Some(node),
                    })
                    .cloned();
                metrics.hottest_slot = slots.iter().fold(
                    None,
                    |best: Option<(u16, u64)>, &(slot, count)| match best {
                        Some(best) if best.1 >= count => Some(best),
                        _ => Some((slot, count)),
                    },
                );
                metrics.slots_used = u64::try_from(slots.len()).expect("fits");
                metrics.moved_redirects = *redirects;
            }
        }
    }

    latencies.sort_unstable();
    pool_waits.sort_unstable();
    metrics.latency_p50_ms_per_gateway = gateway_latencies
        .into_iter()
        .map(|(gateway, mut latencies)| {
            latencies.sort_unstable();
            (gateway, percentile(&latencies, 500))
        })
        .collect();
    metrics.latency_p50_ms = percentile(&latencies, 500);
    metrics.latency_p99_ms = percentile(&latencies, 990);
    metrics.latency_max_ms = latencies.last().copied().unwrap_or(0);
    metrics.pool_wait_p50_ms = percentile(&pool_waits, 500);
    metrics.pool_wait_p99_ms = percentile(&pool_waits, 990);
    if metrics.decisions > 0 {
        metrics.round_trips_per_decision = round_trips as f64 / metrics.decisions as f64;
        metrics.commands_per_decision = commands as f64 / metrics.decisions as f64;
    }

    let mut verdicts = Vec::new();
    let mut timelines = Vec::new();
    // The first group states the limit; a second kind on the same keys (a rolling upgrade)
    // is judged against it, so an upgrade that doubles the limit is found.
    let first_kind = scenario.gateways[0].limiter;
    let kinds: Vec<LimiterKind> = scenario
        .gateways
        .iter()
        .map(|group| group.limiter)
        .collect();
    let bucket_margin = if kinds.iter().any(|kind| kind.is_legacy()) {
        1_000
    } else {
        0
    };
    let resets = resets(scenario, &kinds);
    let failover_at_ms: Vec<u64> = scenario
        .faults
        .iter()
        .filter(|fault| matches!(fault.kind, FaultKind::Failover {}))
        .map(|fault| fault.at_ms)
        .collect();
    metrics.failovers = u64::try_from(failover_at_ms.len()).expect("fits");
    if metrics.failovers > 0 {
        metrics.failover_allowance = scenario.limit.limit + 1;
    }
    // The same resets without the failovers: the plain bound, against which a failover's
    // lost writes show as excess.
    let plain_resets = {
        let mut plain = resets.clone();
        for at in &failover_at_ms {
            if let Some(position) = plain.at_ms.iter().position(|reset| reset == at) {
                plain.at_ms.remove(position);
            }
        }
        plain
    };
    let mut bound_checks = Vec::new();
    // With per-group limits the first group's bound says nothing about the others' keys;
    // each group is judged against its own below.
    if let Some(bound) = admission_bound(first_kind, scenario).filter(|_| !grouped) {
        bound_checks.push(("admissions_within_bound", "admissions", bound, &admissions));
    }
    if let Some(bound) = success_bound(first_kind, scenario) {
        bound_checks.push(("successes_within_bound", "successes", bound, &successes));
    }
    let worst_command_ms = scenario
        .gateways
        .iter()
        .map(|group| group.pool.worst_command_ms())
        .max()
        .unwrap_or(0);
    let success_resets = Resets {
        reach_ms: scenario.upstream.latency.max_ms() + worst_command_ms,
        ..resets.clone()
    };
    let extra_of = |bound: Bound| match bound {
        Bound::Rate { .. } => bucket_margin,
        Bound::Window { .. } => 0,
    };
    let mut key_margins: Vec<u64> = Vec::new();
    for (name, what, bound, per_key) in bound_checks {
        let all_resets = if what == "successes" {
            &success_resets
        } else {
            &resets
        };
        let extra = extra_of(bound);
        let mut worst: Option<Excess> = None;
        let mut keys_over = 0;
        // The key with the widest margin: whether the check may judge.
        let mut widest: Option<(u64, &String)> = None;
        // The finest resolution over keys (0: none judged yet).
        let mut finest = 0;
        for (key, points) in per_key {
            let mut points = points.clone();
            points.sort_unstable();
            let on_shard = on_restarted_shard(scenario, key);
            let resets = &all_resets.for_key(on_shard);
            let plain_resets = &plain_resets.for_key(on_shard);
            finest = finer(finest, resolution(&points, bound, extra, resets));
            let margin = key_margin_ms(&points, extra);
            if what == "admissions" {
                key_margins.push(margin);
                metrics.unjudged_admissions += wide_points(&points, extra, bound);
            }
            if widest.is_none_or(|(widest, _)| margin > widest) {
                widest = Some((margin, key));
            }
            if what == "admissions"
                && metrics.failovers > 0
                && let Some((_, _, counted, allowed)) =
                    worst_excess(&points, bound, extra, plain_resets)
            {
                metrics.failover_excess = metrics.failover_excess.max(counted - allowed);
            }
            if let Some((start_ms, end_ms, counted, allowed)) =
                worst_excess(&points, bound, extra, resets)
            {
                keys_over += 1;
                let excess = Excess {
                    key: key.clone(),
                    start_ms,
                    end_ms,
                    counted,
                    allowed,
                };
                if worst
                    .as_ref()
                    .is_none_or(|worst| counted - allowed > worst.counted - worst.allowed)
                {
                    worst = Some(excess);
                }
            }
        }
        let (margin, widest_key) = widest.map_or((0, "-"), |(margin, key)| (margin, key.as_str()));
        let refused = margin * MARGIN_SHARE_MAX > bound_span_ms(bound);
        if what == "admissions" {
            metrics.over_admission_max = worst
                .as_ref()
                .map_or(0, |excess| excess.counted - excess.allowed);
            metrics.over_admission_resolution = finest;
        }
        let detail = match &worst {
            _ if refused => format!(
                "refused to judge: key {widest_key}'s time margin {margin} ms is more than 1/{MARGIN_SHARE_MAX} of the bound's {} ms ({bound}), so it could hide {} units{}",
                bound_span_ms(bound),
                hidden_by_margin(bound, margin),
                worst.as_ref().map_or(String::new(), |excess| format!(
                    "; even so, key {} had {} {what} in [{} ms, {} ms] where {} are allowed",
                    excess.key, excess.counted, excess.start_ms, excess.end_ms, excess.allowed
                ))
            ),
            None => format!(
                "every key within {bound} (widest time margin {margin} ms on key {widest_key}; sees an over-admission of {finest} at the tightest place; {} admissions too slow to place; {} reset allowances, each only where a key had admitted before it; {} fail-open admissions not counted)",
                metrics.unjudged_admissions,
                all_resets.at_ms.len() + all_resets.shard_restart_ms.len(),
                metrics.fail_open
            ),
            Some(excess) => format!(
                "{keys_over} key(s) over {bound}; worst: key {} had {} {what} in [{} ms, {} ms] where {} are allowed",
                excess.key, excess.counted, excess.start_ms, excess.end_ms, excess.allowed
            ),
        };
        if let Some(excess) = &worst {
            timelines.push(timeline(name, excess, events, &requests));
        }
        verdicts.push(Verdict {
            name: name.to_owned(),
            kind: VerdictKind::Safety,
            held: worst.is_none() && !refused,
            detail,
        });
    }

    if first_kind == LimiterKind::MultiLimit {
        verdicts.push(multi_limit_verdict(
            scenario,
            events,
            bucket_margin,
            &resets,
            &mut metrics,
        ));
    }

    if !grouped && kinds.iter().all(|kind| clock_aligned(*kind)) {
        verdicts.push(aligned_windows_verdict(
            scenario,
            &aligned,
            &resets,
            &mut metrics,
        ));
    }

    if grouped {
        let mut over = Vec::new();
        let mut refusals = Vec::new();
        let mut finest = 0;
        for ((group, key), points) in &group_admissions {
            let settings = &scenario.gateways[*group];
            let Some(bound) = admission_bound(settings.limiter, &scenario.for_group(settings))
            else {
                continue;
            };
            let extra = extra_of(bound);
            let mut points = points.clone();
            points.sort_unstable();
            let margin = key_margin_ms(&points, extra);
            key_margins.push(margin);
            metrics.unjudged_admissions += wide_points(&points, extra, bound);
            let resets = &resets.for_key(on_restarted_shard(scenario, key));
            finest = finer(finest, resolution(&points, bound, extra, resets));
            if margin * MARGIN_SHARE_MAX > bound_span_ms(bound) {
                refusals.push(format!(
                    "group {group} key {key}: time margin {margin} ms against {bound}"
                ));
            }
            if let Some((start_ms, end_ms, counted, allowed)) =
                worst_excess(&points, bound, extra, resets)
            {
                metrics.over_admission_max = metrics.over_admission_max.max(counted - allowed);
                over.push(format!(
                    "group {group} ({}) key {key}: {counted} admissions in [{start_ms} ms, {end_ms} ms] where {allowed} are allowed ({bound})",
                    settings.group.as_deref().unwrap_or("default")
                ));
            }
        }
        metrics.over_admission_resolution = finest;
        verdicts.push(Verdict {
            name: "group_admissions_within_bound".to_owned(),
            kind: VerdictKind::Safety,
            held: over.is_empty() && refusals.is_empty(),
            detail: if let Some(refusal) = refusals.first() {
                format!("refused to judge: {refusal} (more than 1/{MARGIN_SHARE_MAX} of its span)")
            } else if over.is_empty() {
                format!(
                    "every group's admissions on every key within its own bound (sees an over-admission of {finest} at the tightest place)"
                )
            } else {
                format!("{} (group, key) pairs over: {}", over.len(), over[0])
            },
        });
    }
    key_margins.sort_unstable();
    metrics.margin_ms_max = key_margins.last().copied().unwrap_or(0);
    metrics.margin_ms_p50_key = percentile(&key_margins, 500);
    metrics.margin_ms_per_gateway = gateway_margins.into_iter().collect();

    verdicts.push(Verdict {
        name: "no_5xx_while_redis_healthy".to_owned(),
        kind: VerdictKind::Safety,
        held: errors_while_healthy.is_empty(),
        detail: match errors_while_healthy.first() {
            None => format!(
                "{} 5xx: none from a reply outside a fault; {} transport 5xx outside faults (pool or timeouts)",
                metrics.errors, metrics.transport_errors_while_healthy
            ),
            Some((id, at_ms, key)) => format!(
                "{} 5xx while no fault was active; first: request {id:#x} on key {key} at {at_ms} ms",
                errors_while_healthy.len()
            ),
        },
    });

    let unresolved: Vec<u64> = requests
        .keys()
        .filter(|id| !decisions.contains_key(id) && !aborted.contains(id))
        .copied()
        .collect();
    metrics.unresolved = u64::try_from(unresolved.len()).expect("fits");
    verdicts.push(Verdict {
        name: "every_request_resolved".to_owned(),
        kind: VerdictKind::Safety,
        held: unresolved.is_empty(),
        detail: match unresolved.first() {
            None => format!(
                "{} requests: {} decided, {} aborted by a gateway restart",
                metrics.requests,
                metrics.decisions,
                aborted.len()
            ),
            Some(id) => format!(
                "{} of {} requests ended with no decision and no logged abort (a request task panicked or vanished); first: request {id:#x} on key {}",
                unresolved.len(),
                metrics.requests,
                requests.get(id).map(|request| request.1.as_str()).unwrap_or("?")
            ),
        },
    });
    verdicts.push(Verdict {
        name: "no_protocol_error_while_redis_healthy".to_owned(),
        kind: VerdictKind::Safety,
        held: desyncs.is_empty(),
        detail: match desyncs.first() {
            None => "every reply parsed while no fault was active".to_owned(),
            Some((id, at_ms, key)) => format!(
                "{} replies the client could not parse while Redis was healthy; first: request {id:#x} on key {key} at {at_ms} ms",
                desyncs.len()
            ),
        },
    });

    let without_ttl: Vec<&String> = snapshot
        .map(|keys| {
            keys.iter()
                .filter(|(_, ttl)| *ttl == -1)
                .map(|(key, _)| key)
                .collect()
        })
        .unwrap_or_default();
    verdicts.push(Verdict {
        name: "every_key_has_ttl".to_owned(),
        kind: VerdictKind::Safety,
        held: snapshot.is_some() && without_ttl.is_empty(),
        detail: match snapshot {
            None => "not judged: no snapshot of Redis in the log".to_owned(),
            Some(keys) if without_ttl.is_empty() => format!("{} keys, all with a TTL", keys.len()),
            Some(keys) => format!(
                "{} of {} keys have no TTL: {}{}",
                without_ttl.len(),
                keys.len(),
                without_ttl
                    .iter()
                    .take(5)
                    .map(|key| key.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if without_ttl.len() > 5 { ", ..." } else { "" }
            ),
        },
    });

    if let Some(verdict) = bucket_levels_verdict(scenario, levels) {
        verdicts.push(verdict);
    }

    verdicts.push(Verdict {
        name: "some_request_denied".to_owned(),
        kind: VerdictKind::Coverage,
        held: metrics.denied > 0,
        detail: format!("{} denials", metrics.denied),
    });
    for (index, fault) in scenario.faults.iter().enumerate() {
        verdicts.push(Verdict {
            name: format!("fault_{index}_fired"),
            kind: VerdictKind::Coverage,
            held: fired[index],
            detail: format!("{:?} at {} ms", fault.kind, fault.at_ms),
        });
        let (effect, how) = match took_effect[index] {
            _ if !fired[index] => (false, "never fired"),
            Some(effect) => (effect, "as the harness saw it"),
            None => fault_effect_in_log(fault, &requests, &decisions),
        };
        verdicts.push(Verdict {
            name: format!("fault_{index}_took_effect"),
            kind: VerdictKind::Coverage,
            held: effect,
            detail: format!("{:?} at {} ms: {how}", fault.kind, fault.at_ms),
        });
    }

    if let Some(verdict) = drift_verdict(scenario, &drifted) {
        verdicts.push(verdict);
    }

    Report {
        seed,
        verdicts,
        metrics,
        timelines,
        replay: None,
    }
}

/// `clock_drift_took_effect`, when the scenario drifts any clock: every drifting host's
/// clock moved by at least 1 ms over the run, as the harness's `clock_drift` events say (a
/// drift too small for the run's length moves nothing and proves nothing).
fn drift_verdict(scenario: &Scenario, drifted: &[(&str, i64)]) -> Option<Verdict> {
    let drifts =
        scenario.redis.drift_ppm != 0 || scenario.gateways.iter().any(|group| group.drift_ppm != 0);
    if !drifts {
        return None;
    }
    let moved: Vec<String> = drifted
        .iter()
        .map(|(host, drift_ms)| format!("{host} {drift_ms:+} ms"))
        .collect();
    Some(Verdict {
        name: "clock_drift_took_effect".to_owned(),
        kind: VerdictKind::Coverage,
        held: !drifted.is_empty() && drifted.iter().all(|(_, drift_ms)| *drift_ms != 0),
        detail: if moved.is_empty() {
            "no drifting clock was logged".to_owned()
        } else {
            format!("clocks moved by drift: {}", moved.join(", "))
        },
    })
}

/// A host's clock as the harness moves it, as a function of true time: the Unix epoch of
/// the simulation, the host's offset, its clock steps (from their instant on) and its
/// drift (`dynamics::drift_ms`).
struct HostClock {
    offset_ms: i64,
    drift_ppm: i64,
    steps: Vec<(u64, i64)>,
}

impl HostClock {
    fn of(scenario: &Scenario, host: &str) -> HostClock {
        let (offset_ms, drift_ppm) = if host.starts_with("redis-") {
            (scenario.redis.clock_offset_ms, scenario.redis.drift_ppm)
        } else {
            host.strip_prefix("gateway-")
                .and_then(|index| index.parse::<u32>().ok())
                .and_then(|index| scenario.gateway_group(index))
                .map_or((0, 0), |group| (group.clock_offset_ms, group.drift_ppm))
        };
        let steps = scenario
            .faults
            .iter()
            .filter_map(|fault| match &fault.kind {
                FaultKind::ClockStep {
                    host: stepped,
                    step_ms,
                } if stepped == host => Some((fault.at_ms, *step_ms)),
                _ => None,
            })
            .collect();
        HostClock {
            offset_ms,
            drift_ppm,
            steps,
        }
    }

    fn at(&self, true_ms: u64) -> i128 {
        let stepped: i128 = self
            .steps
            .iter()
            .filter(|(at, _)| *at <= true_ms)
            .map(|(_, step)| i128::from(*step))
            .sum();
        i128::from(EPOCH_MS)
            + i128::from(true_ms)
            + i128::from(self.offset_ms)
            + stepped
            + i128::from(drift_ms(self.drift_ppm, true_ms))
    }

    /// The aligned window (its start on this clock) that every instant of `[earliest,
    /// latest]` (true time) falls in, and the most of it elapsed by `latest`; `None` when
    /// the interval may straddle a boundary or a step (then the point is placed in no
    /// window: left out, it can only hide an over-admission, never invent one). A drifting
    /// clock is read one ms either way (the harness applies drift once per ms).
    fn window(&self, earliest: u64, latest: u64, span_ms: u64) -> Option<(i128, u64)> {
        if self
            .steps
            .iter()
            .any(|(at, _)| *at >= earliest && *at <= latest)
        {
            return None;
        }
        let slack = i128::from(self.drift_ppm != 0);
        let span = i128::from(span_ms.max(1));
        let low = self.at(earliest) - slack;
        let high = self.at(latest) + slack;
        let start = low - low.rem_euclid(span);
        (high < start + span).then(|| {
            let elapsed = u64::try_from(high - start).unwrap_or(0);
            (start, elapsed)
        })
    }
}

/// One admission of an aligned-window limiter: its point and the gateway that admitted it.
type AlignedPoint = (Point, u32);

/// `admissions_within_aligned_windows`, for the clock-aligned kinds (the fixed window
/// script, the sliding window counter, the pipelined fixed window): their exact bound, on
/// the clock they read, where the trailing check can only say 2L.
///
/// * Fixed window (script or pipelined): at most L units per aligned window `[kW, (k+1)W)`
///   of its clock: the count of window k is one number (a hash field; an INCR'd key) that
///   admits only while `count + cost <= L`.
/// * Sliding window counter: at the admission of a unit at `e` ms into aligned window k+1,
///   `current × W + previous × (W − e) <= L × W` (exact integers in the script), with
///   `current` every unit window k+1 admitted up to and including it and `previous` window
///   k's units. So per aligned window at most L (previous ≥ 0), and L only where the window
///   before was empty. The check takes, for each admission, the units of its window surely
///   run before it (decided before it arrived) and the largest `e` its interval allows,
///   both lower bounds of what the script saw.
///
/// The clock: Redis's for the scripts (`redis-0`; `redis-1` after a failover promotes it);
/// each admitting gateway's own clock, read at the request's arrival, for the pipelined
/// window. So a clock-skewed pair of gateways keeps L per window id (each counts on its own
/// key) while the trailing check, in true time, still shows the 2L breach it causes.
///
/// Resets (restarts, flushes, failovers, clock steps) excuse, per window, what the key
/// admitted in it before each reset, at most L each (the count starts from 0 after one):
/// [`Resets::allowance`] with base L.
fn aligned_windows_verdict(
    scenario: &Scenario,
    per_key: &BTreeMap<String, Vec<AlignedPoint>>,
    resets: &Resets,
    metrics: &mut Metrics,
) -> Verdict {
    let limit = scenario.limit.limit;
    let span = scenario.limit.window_ms.max(1);
    let kind_of = |gateway: u32| {
        scenario
            .gateway_group(gateway)
            .map_or(LimiterKind::AtomicFixedWindow, |group| group.limiter)
    };
    let sliding = scenario
        .gateways
        .iter()
        .all(|group| group.limiter == LimiterKind::AtomicSlidingWindow);
    let failover_ms = scenario
        .faults
        .iter()
        .find(|fault| matches!(fault.kind, FaultKind::Failover {}))
        .map(|fault| fault.at_ms);
    let redis_clocks = [
        HostClock::of(scenario, crate::harness::REDIS_HOST),
        HostClock::of(scenario, crate::harness::PROMOTED_HOST),
    ];
    let mut gateway_clocks: BTreeMap<u32, HostClock> = BTreeMap::new();
    let mut worst: Option<Excess> = None;
    let mut keys_over = 0;
    let mut unplaced = 0;
    let mut finest: Option<u64> = None;
    let mut windows_judged = 0;
    for (key, points) in per_key {
        let resets = resets.for_key(on_restarted_shard(scenario, key));
        // Window start (on its clock) -> (point, elapsed at its latest).
        let mut windows: BTreeMap<i128, Vec<(Point, u64)>> = BTreeMap::new();
        for &(point, gateway) in points {
            let (latest, earliest, _) = point;
            let placed = if kind_of(gateway).uses_gateway_clock() {
                // Read at arrival: exactly the earliest time.
                gateway_clocks
                    .entry(gateway)
                    .or_insert_with(|| HostClock::of(scenario, &format!("gateway-{gateway}")))
                    .window(earliest, earliest, span)
            } else {
                match failover_ms {
                    Some(at) if earliest <= at && latest >= at => None,
                    Some(at) if earliest > at => redis_clocks[1].window(earliest, latest, span),
                    _ => redis_clocks[0].window(earliest, latest, span),
                }
            };
            match placed {
                Some((start, elapsed)) => windows.entry(start).or_default().push((point, elapsed)),
                None => unplaced += point.2,
            }
        }
        let mut consider = |excess: Excess| {
            if worst
                .as_ref()
                .is_none_or(|worst| excess.counted - excess.allowed > worst.counted - worst.allowed)
            {
                worst = Some(excess);
            }
        };
        let mut key_over = false;
        for (start, placed) in &windows {
            windows_judged += 1;
            let set: Vec<Point> = placed.iter().map(|(point, _)| *point).collect();
            let counted: u64 = set.iter().map(|point| point.2).sum();
            let first = set.iter().map(|point| point.1).min().unwrap_or(0);
            let last = set.iter().map(|point| point.0).max().unwrap_or(0);
            let allowed = limit + resets.allowance(&set, first, last, limit);
            let headroom = allowed.saturating_sub(counted);
            finest = Some(finest.map_or(headroom + 1, |finest| finest.min(headroom + 1)));
            if counted > allowed {
                key_over = true;
                consider(Excess {
                    key: key.clone(),
                    start_ms: first,
                    end_ms: last,
                    counted,
                    allowed,
                });
            }
            if !sliding {
                continue;
            }
            // The window before (empty when nothing of it was placed).
            let previous_all: Vec<Point> = windows
                .get(&(start - i128::from(span)))
                .map(|placed| placed.iter().map(|(point, _)| *point).collect())
                .unwrap_or_default();
            for &(admission, elapsed) in placed {
                // Of the window before, only the units surely run before this admission: a
                // clock stepped back revisits that window later in true time, and what it
                // admits then was not in the count this admission saw.
                let previous: Vec<Point> = previous_all
                    .iter()
                    .filter(|point| point.0 < admission.1)
                    .copied()
                    .collect();
                let previous_units: u64 = previous.iter().map(|point| point.2).sum();
                // Units of this window surely run before it, and itself.
                let mut before: Vec<Point> = set
                    .iter()
                    .filter(|point| point.0 < admission.1)
                    .copied()
                    .collect();
                let current = before.iter().map(|point| point.2).sum::<u64>() + admission.2;
                before.push(admission);
                before.extend(&previous);
                let set_start = before.iter().map(|point| point.1).min().unwrap_or(0);
                let allowance = resets.allowance(&before, set_start, admission.0, limit);
                let weighted = current * span + previous_units * span.saturating_sub(elapsed);
                let budget = (limit + allowance) * span;
                let resolution = budget.saturating_sub(weighted) / span + 1;
                finest = Some(finest.map_or(resolution, |finest| finest.min(resolution)));
                if weighted > budget {
                    key_over = true;
                    let over = (weighted - budget).div_ceil(span);
                    consider(Excess {
                        key: key.clone(),
                        start_ms: set_start,
                        end_ms: admission.0,
                        counted: limit + allowance + over,
                        allowed: limit + allowance,
                    });
                }
            }
        }
        keys_over += u64::from(key_over);
    }
    let over = worst
        .as_ref()
        .map_or(0, |excess| excess.counted - excess.allowed);
    metrics.over_admission_max = metrics.over_admission_max.max(over);
    metrics.over_admission_resolution = finer(metrics.over_admission_resolution, finest);
    let what = if sliding {
        "L × W ≥ current × W + previous × (W − elapsed) at each admission, so L per aligned window"
    } else {
        "L per aligned window"
    };
    Verdict {
        name: "admissions_within_aligned_windows".to_owned(),
        kind: VerdictKind::Safety,
        held: worst.is_none(),
        detail: match &worst {
            None => format!(
                "every key within {what} ({limit} per {span} ms on the limiter's clock; {windows_judged} windows judged; {unplaced} admissions not placeable in one window; sees an over-admission of {} at the tightest place)",
                finest.unwrap_or(0)
            ),
            Some(excess) => format!(
                "{keys_over} key(s) over {what} ({limit} per {span} ms on the limiter's clock); worst: key {} had {} units (weighted) in one aligned window, admitted in [{} ms, {} ms] (true time), where {} are allowed",
                excess.key, excess.counted, excess.start_ms, excess.end_ms, excess.allowed
            ),
        },
    }
}

/// Whether a partition, hold, link latency or gateway restart took effect, judged from the
/// requests it caught (the harness cannot see turmoil drop or hold a message): a request
/// of a gateway on the link in flight during the outage that failed or was decided after
/// it; a decision on that gateway at least the new latency slow; a request served by the
/// restarted gateway's new process. A fault on a link no gateway is on (between Redis
/// nodes) is not observable here and counts as not taking effect.
fn fault_effect_in_log(
    fault: &crate::scenario::Fault,
    requests: &BTreeMap<u64, (u32, String, u64, u64)>,
    decisions: &BTreeMap<u64, (u64, Outcome)>,
) -> (bool, &'static str) {
    let gateway_of = |host: &str| {
        host.strip_prefix("gateway-")
            .and_then(|index| index.parse::<u32>().ok())
    };
    let on = |a: &str, b: &str| [gateway_of(a), gateway_of(b)];
    let decided = |gateways: [Option<u32>; 2]| {
        requests
            .iter()
            .filter_map(move |(id, (gateway, _, arrived_ms, _))| {
                let (decided_ms, outcome) = decisions.get(id)?;
                gateways
                    .contains(&Some(*gateway))
                    .then_some((*arrived_ms, *decided_ms, *outcome))
            })
    };
    let start = fault.at_ms;
    match &fault.kind {
        FaultKind::Partition { a, b, .. } | FaultKind::Hold { a, b, .. } => {
            let end = start + fault.kind.outage_ms();
            let caught = decided(on(a, b)).any(|(arrived, decided, outcome)| {
                arrived <= end
                    && decided >= start
                    && (matches!(outcome, Outcome::FailOpen | Outcome::Error) || decided > end)
            });
            (
                caught,
                "a request on the link failed or waited past the outage",
            )
        }
        FaultKind::LinkLatency { a, b, latency_ms } => {
            let slowed = decided(on(a, b))
                .any(|(arrived, decided, _)| arrived >= start && decided - arrived >= *latency_ms);
            (
                slowed,
                "a decision on the link took at least the new latency",
            )
        }
        FaultKind::GatewayRestart { host, down_ms } => {
            let served = decided(on(host, host))
                .any(|(arrived, _, _)| arrived >= start.saturating_add(*down_ms));
            (served, "the new process decided a request")
        }
        _ => (false, "the harness did not say"),
    }
}

/// `admissions_within_bound` for `multi_limit`: every limit its script checks is judged on
/// its own keys. Each admission counts (weighted by cost) on the key each limit of its
/// gateway's group renders for it (`rl:global:{$group}` collects every request of the
/// group, `rl:user:{$group}:$user` one user's), and each key must stay within its limit's
/// B + ⌊Δ/T⌋ (L per `limit.window_ms` as a GCRA rate), with the usual margin and resets.
/// A template several groups name is judged against the first group's limit for it.
fn multi_limit_verdict(
    scenario: &Scenario,
    events: &[Event],
    extra_ms: u64,
    resets: &Resets,
    metrics: &mut Metrics,
) -> Verdict {
    let mut bounds: BTreeMap<String, Bound> = BTreeMap::new();
    for group in &scenario.gateways {
        for spec in &group.limits {
            bounds
                .entry(spec.key_scheme.clone())
                .or_insert(Bound::Rate {
                    burst: spec.limit,
                    interval_ms: scenario.limit.window_ms / spec.limit,
                });
        }
    }
    let points = multi_limit_points(scenario, events);
    // The worst (template, excess), by how far it went over.
    let mut worst: Option<(String, Excess)> = None;
    let mut keys_over = 0;
    let mut margin_max = 0;
    // The first key whose margin is too wide to judge, with that margin.
    let mut refused: Option<(String, u64)> = None;
    for ((template, key), admitted) in &points {
        let Some(&bound) = bounds.get(template) else {
            continue;
        };
        let mut admitted = admitted.clone();
        admitted.sort_unstable();
        let margin = key_margin_ms(&admitted, extra_ms);
        margin_max = margin_max.max(margin);
        let resets = &resets.for_key(on_restarted_shard(scenario, key));
        metrics.over_admission_resolution = finer(
            metrics.over_admission_resolution,
            resolution(&admitted, bound, extra_ms, resets),
        );
        metrics.unjudged_admissions += wide_points(&admitted, extra_ms, bound);
        if margin * MARGIN_SHARE_MAX > bound_span_ms(bound) {
            refused.get_or_insert((key.clone(), margin));
        }
        let Some((start_ms, end_ms, counted, allowed)) =
            worst_excess(&admitted, bound, extra_ms, resets)
        else {
            continue;
        };
        keys_over += 1;
        if worst
            .as_ref()
            .is_none_or(|(_, worst)| counted - allowed > worst.counted - worst.allowed)
        {
            let excess = Excess {
                key: key.clone(),
                start_ms,
                end_ms,
                counted,
                allowed,
            };
            worst = Some((template.clone(), excess));
        }
    }
    metrics.over_admission_max = worst
        .as_ref()
        .map_or(0, |(_, excess)| excess.counted - excess.allowed);
    let detail = match (&worst, &refused) {
        (_, Some((key, margin))) => format!(
            "refused to judge: key {key}'s time margin {margin} ms is more than 1/{MARGIN_SHARE_MAX} of its limit's span"
        ),
        (None, None) => format!(
            "every key of its {} limit(s) within its own bound ({}; widest time margin {margin_max} ms; {} reset allowances); {} keys judged",
            bounds.len(),
            bounds
                .iter()
                .map(|(template, bound)| format!("{template}: {bound}"))
                .collect::<Vec<_>>()
                .join(", "),
            resets.at_ms.len(),
            points.len()
        ),
        (Some((template, excess)), None) => format!(
            "{keys_over} key(s) over their limit's bound; worst: limit {template} ({}) key {} had {} admissions in [{} ms, {} ms] where {} are allowed",
            bounds[template],
            excess.key,
            excess.counted,
            excess.start_ms,
            excess.end_ms,
            excess.allowed
        ),
    };
    Verdict {
        name: "admissions_within_bound".to_owned(),
        kind: VerdictKind::Safety,
        held: worst.is_none() && refused.is_none(),
        detail,
    }
}

/// The multi-limit's admissions `(time, weight)` per (limit template, rendered key): each
/// admission once on the key of every limit its gateway's group checks.
fn multi_limit_points(
    scenario: &Scenario,
    events: &[Event],
) -> BTreeMap<(String, String), Vec<Point>> {
    use crate::harness::{identity, parse_key_name};
    use ratelab::keys::KeyScheme;

    let mut requests: BTreeMap<u64, (u32, &str, u64, u64)> = BTreeMap::new();
    let mut points: BTreeMap<(String, String), Vec<Point>> = BTreeMap::new();
    for event in events {
        match event {
            Event::Request {
                id,
                gateway,
                key,
                cost,
                at_ms,
            } => {
                requests.insert(*id, (*gateway, key.as_str(), *cost, *at_ms));
            }
            Event::Decision {
                id,
                at_ms,
                outcome: Outcome::Allowed,
                ..
            } => {
                let Some(&(gateway, key, cost, arrived_ms)) = requests.get(id) else {
                    continue;
                };
                let (Some(group), Some((kind, number))) =
                    (scenario.gateway_group(gateway), parse_key_name(key))
                else {
                    continue;
                };
                let who = identity(
                    group.limiter,
                    kind,
                    number,
                    group.group.as_deref().unwrap_or("default"),
                );
                for spec in &group.limits {
                    // The harness made the same keys (it failed the request otherwise).
                    let Ok(rendered) = KeyScheme::parse(&spec.key_scheme, 1)
                        .and_then(|scheme| scheme.render(&who, 0))
                    else {
                        continue;
                    };
                    let rendered = String::from_utf8_lossy(&rendered).into_owned();
                    points
                        .entry((spec.key_scheme.clone(), rendered))
                        .or_default()
                        .push((*at_ms, arrived_ms.min(*at_ms), cost));
                }
            }
            _ => {}
        }
    }
    points
}

/// `bucket_levels_in_range`, when a token bucket runs: every stored level at the end is in
/// [0, capacity]: new-api's `tokens` in [0, N], the atomic bucket's `credit` in [0, B × T]
/// ms. A Redis clock step back drives new-api's below zero (R9); the atomic one clamps.
fn bucket_levels_verdict(
    scenario: &Scenario,
    levels: &[(String, String, String)],
) -> Option<Verdict> {
    let limit = &scenario.limit;
    // With per-group limits, a bucket is full at the largest group's capacity.
    let group_limit = |group: &crate::scenario::GatewayGroup| group.limit.unwrap_or(limit.limit);
    let tokens_max = scenario
        .gateways
        .iter()
        .filter_map(|group| match group.limiter {
            LimiterKind::LegacyTokenBucket => Some(group_limit(group)),
            LimiterKind::LegacyModelRequest if limit.total > 0 => Some(limit.total),
            _ => None,
        })
        .max();
    let credit_max_ms = scenario
        .gateways
        .iter()
        .filter(|group| group.limiter == LimiterKind::AtomicTokenBucket)
        .map(|group| group_limit(group) * (limit.window_ms / group_limit(group)))
        .max();
    if tokens_max.is_none() && credit_max_ms.is_none() {
        return None;
    }
    let mut outside = Vec::new();
    for (key, field, value) in levels {
        let max = match field.as_str() {
            "tokens" => tokens_max,
            "credit" => credit_max_ms,
            _ => None,
        };
        let Some(max) = max else { continue };
        let in_range = value
            .parse::<f64>()
            .is_ok_and(|level| (0.0..=max as f64).contains(&level));
        if !in_range {
            outside.push(format!("{key}.{field} = {value} (range [0, {max}])"));
        }
    }
    Some(Verdict {
        name: "bucket_levels_in_range".to_owned(),
        kind: VerdictKind::Safety,
        held: outside.is_empty(),
        detail: if outside.is_empty() {
            format!("{} bucket levels, all in [0, capacity]", levels.len())
        } else {
            format!(
                "{} of {} levels outside [0, capacity]: {}",
                outside.len(),
                levels.len(),
                outside
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    })
}

/// The offending key's events in its worst window (and a little before), at most 40 lines.
fn timeline(
    name: &str,
    excess: &Excess,
    events: &[Event],
    requests: &BTreeMap<u64, (u32, String, u64, u64)>,
) -> String {
    const LINES_MAX: usize = 40;
    let mut out = format!(
        "  timeline for {name}: key {} from {} ms to {} ms\n",
        excess.key, excess.start_ms, excess.end_ms
    );
    let lead_ms = 50;
    let mut lines = 0;
    let mut skipped = 0;
    for event in events {
        let at_ms = match event {
            Event::Completion {
                recorded_at_ms: Some(recorded),
                ..
            } => *recorded,
            other => other.at_ms(),
        };
        if at_ms + lead_ms < excess.start_ms || at_ms > excess.end_ms {
            continue;
        }
        let line = match event {
            Event::Fault { what, .. } => format!("fault: {what}"),
            _ => {
                let Some(id) = event.request_id() else {
                    continue;
                };
                let Some((gateway, key, _, _)) = requests.get(&id) else {
                    continue;
                };
                if *key != excess.key {
                    continue;
                }
                let what = match event {
                    Event::Request { .. } => "arrives".to_owned(),
                    Event::Decision {
                        outcome,
                        round_trips,
                        ..
                    } => format!("{outcome:?} after {round_trips} round trips"),
                    Event::Completion {
                        success,
                        recorded_at_ms,
                        ..
                    } => match (success, recorded_at_ms) {
                        (true, Some(_)) => "upstream ok, success recorded".to_owned(),
                        (true, None) => "upstream ok, not recorded".to_owned(),
                        (false, _) => "upstream failed".to_owned(),
                    },
                    _ => continue,
                };
                format!("gateway-{gateway} request {id:#x} {what}")
            }
        };
        if lines >= LINES_MAX {
            skipped += 1;
            continue;
        }
        lines += 1;
        let _ = writeln!(out, "    {at_ms:>8} ms  {line}");
    }
    if skipped > 0 {
        let _ = writeln!(out, "    ... {skipped} more events in the window");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `worst_excess` over `times` (weight 1 each, each decided `margin` ms after it
    /// arrived; times start at 1000 so that the arrival is not before zero) for `bound`:
    /// the excess `counted - allowed`, or 0 when within the bound.
    fn check(times: &[u64], bound: Bound, margin: u64, expected_excess: u64) {
        let points: Vec<Point> = times
            .iter()
            .map(|&time| (1_000 + time, 1_000 + time - margin, 1))
            .collect();
        let excess = worst_excess(&points, bound, 0, &Resets::default())
            .map(|(_, _, counted, allowed)| counted - allowed)
            .unwrap_or(0);
        assert_eq!(excess, expected_excess, "{times:?} against {bound}");
    }

    #[test]
    fn window_and_rate_bounds() {
        let window = |limit, span_ms| Bound::Window { limit, span_ms };
        let rate = |burst, interval_ms| Bound::Rate { burst, interval_ms };
        let cases: &[(&[u64], Bound, u64, u64)] = &[
            (&[], window(1, 1_000), 0, 0),
            (&[0, 999], window(1, 1_000), 0, 1),
            (&[0, 1_000], window(1, 1_000), 0, 0),
            (&[0, 500, 999, 1_500], window(2, 1_000), 0, 1),
            // A margin shrinks the window: 0 and 998 are 998 apart, outside a 997 ms window.
            (&[0, 998], window(1, 1_000), 3, 0),
            (&[0, 0, 0], rate(2, 100), 0, 1),
            (&[0, 0, 100], rate(2, 100), 0, 0),
            (&[0, 0, 99], rate(2, 100), 0, 1),
            (&[0, 0, 99], rate(2, 100), 1, 0),
            // Ten at once, then one per interval: always exactly at the bound.
            (
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 200, 300],
                rate(10, 100),
                0,
                0,
            ),
            (
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 150, 300],
                rate(10, 100),
                0,
                1,
            ),
        ];
        for (times, bound, margin, excess) in cases {
            check(times, *bound, *margin, *excess);
        }
    }

    #[test]
    fn a_gateway_restart_is_a_reset_only_for_in_memory_limiters() {
        // Goal: a gateway restart empties in-process state, not Redis. Method: two groups,
        // gateway-0 on `memory_gcra`, gateway-1 on `atomic_gcra`, a restart of each; only
        // gateway-0's counts as a reset, whatever kinds the run has.
        let scenario = Scenario::from_toml(
            r#"
duration_ms = 2000
[limit]
limit = 5
window_ms = 1000
[[gateways]]
limiter = "memory_gcra"
[[gateways]]
limiter = "atomic_gcra"
[load]
rate_per_s = 10
[[faults]]
at_ms = 300
kind = "gateway_restart"
host = "gateway-0"
[[faults]]
at_ms = 700
kind = "gateway_restart"
host = "gateway-1"
down_ms = 50
"#,
        )
        .expect("a valid scenario");
        let kinds = [LimiterKind::MemoryGcra, LimiterKind::AtomicGcra];
        assert_eq!(resets(&scenario, &kinds).at_ms, vec![300]);
        assert_eq!(
            resets(&scenario, &[LimiterKind::AtomicGcra]).at_ms,
            vec![300],
            "the restarted gateway's own kind decides"
        );
    }

    #[test]
    fn a_restart_that_kept_a_synced_state_excuses_only_what_came_after_the_sync() {
        // A rate of 1 per 100 ms, burst 3. The key admitted at 0, 100, 200 (saturated), the
        // node synced at 150 and restarted at 250: it came back with the TAT of 150, so the
        // admission at 200 was forgotten and is admitted again at 260 (plus the rate's own
        // at 300). Kept as of 150, the allowance is the one admission after the sync.
        let rate = Bound::Rate {
            burst: 3,
            interval_ms: 100,
        };
        let kept = |kept_ms: u64| Resets {
            at_ms: vec![250],
            kept_as_of_ms: [(250, kept_ms)].into_iter().collect(),
            ..Resets::default()
        };
        let relived: Vec<Point> = [0, 0, 0, 100, 200, 260, 300]
            .iter()
            .map(|&t| (t, t, 1))
            .collect();
        assert!(worst_excess(&relived, rate, 0, &Resets::default()).is_some());
        assert_eq!(worst_excess(&relived, rate, 0, &kept(150)), None);
        // Synced after the admission at 200 (as aof_always): nothing was lost, nothing is
        // excused.
        assert_eq!(
            worst_excess(&relived, rate, 0, &kept(220)).map(|w| w.2 - w.3),
            Some(1)
        );
        // One more after the restart is beyond the allowance.
        let mut one_more = relived.clone();
        one_more.push((270, 270, 1));
        one_more.sort_unstable();
        assert_eq!(
            worst_excess(&one_more, rate, 0, &kept(150)).map(|w| w.2 - w.3),
            Some(1)
        );
        // Without persistence the same restart excuses up to B + 1 (everything before it).
        let forgot_all = Resets {
            at_ms: vec![250],
            ..Resets::default()
        };
        assert_eq!(worst_excess(&one_more, rate, 0, &forgot_all), None);
    }

    #[test]
    fn restart_resets_follow_the_persistence_mode() {
        use crate::scenario::Persistence;
        let restart = |persistence, rdb_every_ms| FaultKind::RedisRestart {
            persistence,
            rdb_every_ms,
        };
        let cases = [
            (restart(Persistence::None, None), 7_700, Some(None)),
            (restart(Persistence::AofAlways, None), 7_700, None),
            (
                restart(Persistence::AofEverysec, None),
                7_700,
                Some(Some(7_000)),
            ),
            (
                restart(Persistence::AofEverysec, None),
                7_000,
                Some(Some(7_000)),
            ),
            (
                restart(Persistence::Rdb, Some(3_000)),
                7_700,
                Some(Some(6_000)),
            ),
            (restart(Persistence::Rdb, Some(3_000)), 2_999, Some(Some(0))),
            (FaultKind::Flush {}, 7_700, None),
        ];
        for (kind, at_ms, expected) in cases {
            assert_eq!(restart_reset(&kind, at_ms), expected, "{kind:?} at {at_ms}");
        }
    }

    #[test]
    fn a_reset_earns_one_more_base_allowance() {
        let resets = Resets {
            at_ms: vec![500],
            ..Resets::default()
        };
        let points: Vec<Point> = [0, 0, 600, 600, 600].iter().map(|&t| (t, t, 1)).collect();
        let window = Bound::Window {
            limit: 2,
            span_ms: 1_000,
        };
        assert_eq!(
            worst_excess(&points, window, 0, &Resets::default()).map(|w| w.2),
            Some(5)
        );
        // Two before the reset, three after: the whole earns min(L + 1, 2) more, 5 > 4,
        // and the tail alone is over L; either way one too many.
        assert_eq!(
            worst_excess(&points, window, 0, &resets).map(|w| w.2 - w.3),
            Some(1)
        );
        let two_after: Vec<Point> = [0, 0, 600, 600].iter().map(|&t| (t, t, 1)).collect();
        assert_eq!(worst_excess(&two_after, window, 0, &resets), None);
        // A reset with nothing of this key before it in the window forgets nothing and
        // excuses nothing: three after it are one too many.
        let none_before: Vec<Point> = [600, 600, 600].iter().map(|&t| (t, t, 1)).collect();
        assert_eq!(
            worst_excess(&none_before, window, 0, &resets).map(|w| (w.2, w.3)),
            Some((3, 2))
        );
        // One before it: the reset excuses one.
        let one_before: Vec<Point> = [400, 600, 600, 600].iter().map(|&t| (t, t, 1)).collect();
        assert_eq!(
            worst_excess(&one_before, window, 0, &resets).map(|w| w.2 - w.3),
            Some(1),
            "the tail after the reset is still over the base limit"
        );
        // Resets every 100 ms: each segment between two is judged on its own, so one more
        // in one segment is seen though the window holds ten resets.
        let many = Resets {
            at_ms: (1..=10).map(|step| step * 100).collect(),
            ..Resets::default()
        };
        let mut saturated: Vec<Point> = (0..10)
            .flat_map(|step| [step * 100 + 10, step * 100 + 20])
            .map(|t| (t, t, 1))
            .collect();
        assert_eq!(worst_excess(&saturated, window, 0, &many), None);
        saturated.push((535, 535, 1));
        saturated.sort_unstable();
        assert_eq!(
            worst_excess(&saturated, window, 0, &many).map(|w| w.2 - w.3),
            Some(1)
        );
    }

    #[test]
    fn bucket_levels_are_judged_against_each_kind_and_groups_capacity() {
        let scenario = |kind: LimiterKind, group_limit: Option<u64>| {
            let mut text = format!(
                "duration_ms = 1000\n[limit]\nlimit = 10\nwindow_ms = 60000\n[[gateways]]\nlimiter = \"{}\"\n",
                serde_json::to_value(kind)
                    .expect("serialises")
                    .as_str()
                    .expect("a string")
            );
            if let Some(limit) = group_limit {
                text.push_str(&format!("limit = {limit}\n"));
            }
            text.push_str("[load]\nrate_per_s = 1\n");
            Scenario::from_toml(&text).expect("valid")
        };
        let level =
            |field: &str, value: &str| vec![("k".to_owned(), field.to_owned(), value.to_owned())];
        type Case = (
            LimiterKind,
            Option<u64>,
            Vec<(String, String, String)>,
            Option<bool>,
        );
        let cases: &[Case] = &[
            (
                LimiterKind::LegacyTokenBucket,
                None,
                level("tokens", "10"),
                Some(true),
            ),
            (
                LimiterKind::LegacyTokenBucket,
                None,
                level("tokens", "0"),
                Some(true),
            ),
            (
                LimiterKind::LegacyTokenBucket,
                None,
                level("tokens", "-0.5"),
                Some(false),
            ),
            (
                LimiterKind::LegacyTokenBucket,
                None,
                level("tokens", "10.5"),
                Some(false),
            ),
            (
                LimiterKind::LegacyTokenBucket,
                Some(20),
                level("tokens", "15"),
                Some(true),
            ),
            (
                LimiterKind::LegacyTokenBucket,
                None,
                level("tokens", "nan?"),
                Some(false),
            ),
            // Capacity B × T = 10 × 6000 ms.
            (
                LimiterKind::AtomicTokenBucket,
                None,
                level("credit", "60000"),
                Some(true),
            ),
            (
                LimiterKind::AtomicTokenBucket,
                None,
                level("credit", "60001"),
                Some(false),
            ),
            // A field of another kind is not judged.
            (
                LimiterKind::AtomicTokenBucket,
                None,
                level("tokens", "-5"),
                Some(true),
            ),
            (LimiterKind::AtomicGcra, None, level("tokens", "-5"), None),
        ];
        for (kind, group_limit, levels, expected) in cases {
            let verdict = bucket_levels_verdict(&scenario(*kind, *group_limit), levels);
            assert_eq!(
                verdict.as_ref().map(|verdict| verdict.held),
                *expected,
                "{kind:?} {group_limit:?} {levels:?}: {verdict:?}"
            );
        }
    }

    /// Goal: each admission carries its own path's margin, so a slow path widens only its
    /// own points. Method: a window of 1000 ms, L = 2: three fast points (1 ms each) within
    /// 500 ms are one too many; with a slow third point whose interval may end past the
    /// window, the three cannot be placed in one window and nothing is blamed; the per-key margin is the widest
    /// interval, and its resolution and the refusal threshold follow from it.
    #[test]
    fn each_point_carries_its_own_margin() {
        let window = Bound::Window {
            limit: 2,
            span_ms: 1_000,
        };
        let fast: Vec<Point> = vec![(1_000, 999, 1), (1_200, 1_199, 1), (1_500, 1_499, 1)];
        assert_eq!(
            worst_excess(&fast, window, 0, &Resets::default()).map(|w| w.2 - w.3),
            Some(1)
        );
        let slow: Vec<Point> = vec![(1_000, 999, 1), (1_200, 1_199, 1), (2_100, 1_300, 1)];
        assert_eq!(worst_excess(&slow, window, 0, &Resets::default()), None);
        assert_eq!(key_margin_ms(&slow, 0), 800);
        assert_eq!(
            hidden_by_margin(window, 2),
            1,
            "2 ms at 2 per second hides one"
        );
        let rate = Bound::Rate {
            burst: 50,
            interval_ms: 20,
        };
        assert_eq!(hidden_by_margin(rate, 0), 0);
        assert_eq!(hidden_by_margin(rate, 202), 11);
        assert!(202 * MARGIN_SHARE_MAX <= bound_span_ms(rate));
        assert!(251 * MARGIN_SHARE_MAX > bound_span_ms(rate));
    }

    /// Goal: the resolution is the least headroom the check finds, plus one, computed from
    /// the log (the old formula, `1 + ceil(margin × L / W)`, said 2 where one too many is
    /// caught). Method: L = 2 per 1000 ms with 2 ms margins: two admissions in a window
    /// leave no headroom (resolution 1, and a third is caught); one leaves one (2); a
    /// reset with two before it adds L + 1 of headroom; a rate bound saturated by its
    /// burst is at 1.
    #[test]
    fn the_resolution_is_the_least_headroom_plus_one() {
        let window = Bound::Window {
            limit: 2,
            span_ms: 1_000,
        };
        let points = |times: &[u64]| -> Vec<Point> {
            times.iter().map(|&t| (1_000 + t, 998 + t, 1)).collect()
        };
        let none = Resets::default();
        assert_eq!(resolution(&points(&[0, 300]), window, 0, &none), Some(1));
        assert_eq!(
            worst_excess(&points(&[0, 300, 400]), window, 0, &none).map(|w| w.2 - w.3),
            Some(1),
            "one more where the headroom is 0 is caught"
        );
        assert_eq!(resolution(&points(&[0, 1_500]), window, 0, &none), Some(2));
        assert_eq!(resolution(&[], window, 0, &none), None);
        let reset = Resets {
            at_ms: vec![1_500],
            ..Resets::default()
        };
        assert_eq!(resolution(&points(&[0, 700]), window, 0, &none), Some(1));
        assert_eq!(
            resolution(&points(&[0, 700]), window, 0, &reset),
            Some(2),
            "one before the reset: the window has L + 1 allowed, 2 counted"
        );
        let rate = Bound::Rate {
            burst: 3,
            interval_ms: 100,
        };
        assert_eq!(
            resolution(&points(&[0, 0, 0, 100, 200]), rate, 0, &none),
            Some(1)
        );
        assert_eq!(resolution(&points(&[0, 500]), rate, 0, &none), Some(3));
    }

    /// Goal: the aligned-window check places each admission in the window of the clock the
    /// limiter reads, and refuses to place one that may straddle a boundary or a step.
    #[test]
    fn host_clocks_place_points_in_aligned_windows() {
        let clock = HostClock {
            offset_ms: 300,
            drift_ppm: 0,
            steps: vec![(5_000, -1_000)],
        };
        // True 1000..1600 is 1300..1900 on the clock: window [1000, 2000), 900 ms elapsed.
        let start = i128::from(EPOCH_MS) + 1_000;
        assert_eq!(clock.window(1_000, 1_600, 1_000), Some((start, 900)));
        assert_eq!(clock.window(1_600, 1_800, 1_000), None, "straddles 2000");
        assert_eq!(clock.window(4_990, 5_010, 1_000), None, "a step inside");
        // After the step back, true 5100 reads 4400.
        assert_eq!(
            clock.window(5_100, 5_100, 1_000),
            Some((start + 3_000, 400))
        );
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 500), 0);
        assert_eq!(percentile(&[7], 990), 7);
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 500), 50);
        assert_eq!(percentile(&hundred, 990), 99);
    }
}

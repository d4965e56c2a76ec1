//! The checker: a pure function from a scenario and its event log to named verdicts and
//! metrics. No IO, no clock, no harness types: a saved trace can be judged again.
//!
//! **Safety** (a failure is exit code 1):
//! * admissions per key within the limiter's stated bound in every trailing window: fixed
//!   window 2L per window, sliding log and new-api's IP list L, GCRA and token buckets
//!   B + ⌊Δ/T⌋ in any interval Δ (new-api's bucket: N + ⌊Δ/(W/N)⌋, its ~2N − 1 per window);
//!   the sliding window counter and the pipelined fixed window 2L (L per aligned window),
//!   the sharded GCRA and the hybrid B + ⌊Δ/T⌋ (the shards' shares add up to the whole; the
//!   hybrid admits only what its authority admits), the multi-limit each of its limits on
//!   that limit's own keys;
//!   successes per key within M per window for success limits (legacy C1 and reservations).
//!   Fail-open admissions are not counted in the bound; they are their own figure;
//! * no 5xx while Redis was healthy: no limiter error from a reply (NOSCRIPT, a vanished
//!   entry) while the request's whole life was outside every fault's outage. Transport errors
//!   outside faults (pool exhaustion, a link slower than the read timeout, pooled connections
//!   a restart broke, for the pool's worst command time after it) are a figure of their own;
//! * every key in Redis at the end has a TTL (new-api's bucket hash breaks this by design).
//!
//! **Topologies.** A failover is a reset (one more L + 1 per key); the admissions beyond
//! the plain bound, which only the failover's lost writes excuse, are reported apart
//! (`failover_excess`, `failover_allowance`). Cluster runs report commands per node and
//! slot, the hottest of each, MOVED redirects and CROSSSLOT errors.
//!
//! **Coverage** (reported, never a failure, but a run without them proves little): a request
//! was denied; each scheduled fault fired.
//!
//! **Time.** Events carry the time the gateway saw them, not the time Redis ran the command.
//! The two differ by the reply's network latency, so windows are shrunk (and intervals Δ
//! widened) by the run's latency jitter (the network's spread, the longest latency a fault
//! or a per-link distribution sets): the check never blames a limiter for the network.
//! Clock faults get no margin: a skewed or drifting clock that makes a limiter over-admit in
//! true time is what the check exists to show.
//! new-api's bucket reads Redis TIME in whole seconds, so its Δ gets one more second.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::event::{ErrorClass, Event, Outcome};
use crate::scenario::{FaultKind, LimiterKind, Scenario};

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

    /// Panics with the report when a safety property failed (for tests).
    pub fn assert_safe(&self) {
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

/// How far the gateway's view of a time may be from Redis's, ms: the network jitter plus
/// two ticks, plus the longest latency a fault or a per-link distribution can set.
/// Admissions are stamped when the gateway reads the reply, so a reply that takes longer
/// than another moves its admission later by up to the difference. Clock drift gets no
/// margin: a Redis clock that runs fast really makes a Redis-clock limiter over-admit in
/// true time, and the checker is there to show it.
pub fn jitter_ms(scenario: &Scenario) -> u64 {
    let fault_latency = scenario
        .faults
        .iter()
        .filter_map(|fault| match fault.kind {
            FaultKind::LinkLatency { latency_ms, .. } => Some(latency_ms),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let link_latency = scenario
        .network
        .links
        .iter()
        .map(|link| link.latency.max_ms())
        .max()
        .unwrap_or(0);
    scenario.network.max_latency_ms - scenario.network.min_latency_ms
        + 2
        + fault_latency.max(link_latency)
}

/// The fault instants that lawfully let a limiter start over: Redis restarts (state lost),
/// Redis clock steps, gateway clock steps when a legacy limiter (gateway time) runs, and
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
            FaultKind::RedisRestart {} | FaultKind::Flush {} | FaultKind::Failover {} => true,
            FaultKind::ClockStep { host, .. } => legacy || host.starts_with("redis-"),
            FaultKind::GatewayRestart { host, .. } => in_memory_gateway(host),
            _ => false,
        })
        .map(|fault| fault.at_ms)
        .collect();
    at_ms.sort_unstable();
    Resets { at_ms, reach_ms: 0 }
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
/// clock step moves its windows), each worth one more `base + 1` in any window or interval
/// that contains it (within the margin).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resets {
    /// Sorted times, ms.
    pub at_ms: Vec<u64>,
    /// How long after a reset its effect lasts, ms: 0 for admissions; for successes, the
    /// longest a request admitted before it can take to complete after it (its success lands
    /// on the fresh state that no longer holds its reservation).
    pub reach_ms: u64,
}

impl Resets {
    fn within(&self, start_ms: u64, end_ms: u64, margin_ms: u64) -> u64 {
        let count = self
            .at_ms
            .iter()
            .filter(|&&at| at + margin_ms + self.reach_ms >= start_ms && at <= end_ms + margin_ms)
            .count();
        u64::try_from(count).expect("fits")
    }
}

/// The worst excess over `bound` in `(time, weight)` pairs sorted by time, if any, as
/// `(start_ms, end_ms, counted, allowed)`.
fn worst_excess(
    points: &[(u64, u64)],
    bound: Bound,
    margin_ms: u64,
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
    let mut before = vec![0u64; points.len() + 1];
    for (index, &(_, weight)) in points.iter().enumerate() {
        before[index + 1] = before[index] + weight;
    }
    match bound {
        Bound::Window { limit, span_ms } => {
            // The gateway may see two Redis-side instants `span` apart as `span - margin`.
            let span = span_ms.saturating_sub(margin_ms);
            if span == 0 {
                return None;
            }
            let mut first = 0;
            for last in 0..points.len() {
                let end = points[last].0;
                while end - points[first].0 >= span {
                    first += 1;
                }
                // The longest window ending here, and each tail that starts after a reset
                // inside it (a tail may exceed the base limit while the whole, which earns
                // the reset's allowance, does not).
                let mut starts = vec![first];
                for &at in &resets.at_ms {
                    if at >= points[first].0 && at <= end {
                        starts.push(points.partition_point(|&(time, _)| time <= at + margin_ms));
                    }
                }
                for start in starts {
                    if start > last {
                        continue;
                    }
                    let counted = before[last + 1] - before[start];
                    let allowed =
                        limit + resets.within(points[start].0, end, margin_ms) * (limit + 1);
                    consider(points[start].0, end, counted, allowed);
                }
            }
        }
        Bound::Rate { burst, interval_ms } => {
            let interval = interval_ms.max(1);
            for last in 0..points.len() {
                let end = points[last].0;
                for first in (0..=last).rev() {
                    let counted = before[last + 1] - before[first];
                    let start = points[first].0;
                    let allowed = burst
                        + (end - start + margin_ms) / interval
                        + resets.within(start, end, margin_ms) * (burst + 1);
                    consider(start, end, counted, allowed);
                    // Earlier starts add at most `before[first]`; once the allowance is ahead
                    // by more than that, no earlier start can exceed it (the allowance only
                    // grows as the start moves back).
                    if allowed.saturating_sub(counted) > before[first] {
                        break;
                    }
                }
            }
        }
    }
    worst
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
    let mut snapshot: Option<&Vec<(String, i64)>> = None;
    let mut levels: &[(String, String, String)] = &[];
    // Per key: admissions (time, weight) and recorded successes (time, 1).
    let mut admissions: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut successes: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    // Per (group index, key), when groups have their own limits (R5).
    let grouped = scenario.has_group_limits();
    let mut group_admissions: BTreeMap<(usize, String), Vec<(u64, u64)>> = BTreeMap::new();
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
                match outcome {
                    Outcome::Allowed => {
                        metrics.allowed += 1;
                        let weight = if weighted(kind_of(*gateway)) {
                            *cost
                        } else {
                            1
                        };
                        admissions
                            .entry(key.clone())
                            .or_default()
                            .push((*at_ms, weight));
                        if let Some(group) = scenario.group_index(*gateway).filter(|_| grouped) {
                            group_admissions
                                .entry((group, key.clone()))
                                .or_default()
                                .push((*at_ms, weight));
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
                success,
                recorded_at_ms,
                ..
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
                        .push((*recorded_ms, 1)),
                    _ => metrics.unrecorded_successes += u64::from(admitted),
                }
            }
            Event::Fault { index, .. } => {
                if let Some(slot) = fired.get_mut(*index) {
                    *slot = true;
                }
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
    let jitter = jitter_ms(scenario);
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
        let margin = match bound {
            Bound::Rate { .. } => jitter + bucket_margin,
            Bound::Window { .. } => jitter,
        };
        bound_checks.push((
            "admissions_within_bound",
            "admissions",
            bound,
            margin,
            &admissions,
        ));
    }
    if let Some(bound) = success_bound(first_kind, scenario) {
        bound_checks.push((
            "successes_within_bound",
            "successes",
            bound,
            jitter,
            &successes,
        ));
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
    for (name, what, bound, margin, per_key) in bound_checks {
        let resets = if what == "successes" {
            &success_resets
        } else {
            &resets
        };
        let mut worst: Option<Excess> = None;
        let mut keys_over = 0;
        for (key, points) in per_key {
            let mut points = points.clone();
            points.sort_unstable();
            if what == "admissions"
                && metrics.failovers > 0
                && let Some((_, _, counted, allowed)) =
                    worst_excess(&points, bound, margin, &plain_resets)
            {
                metrics.failover_excess = metrics.failover_excess.max(counted - allowed);
            }
            if let Some((start_ms, end_ms, counted, allowed)) =
                worst_excess(&points, bound, margin, resets)
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
        let detail = match &worst {
            None => format!(
                "every key within {bound} (gateway/Redis time margin {margin} ms; {} reset allowances; {} fail-open admissions not counted)",
                resets.at_ms.len(),
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
            held: worst.is_none(),
            detail,
        });
    }

    if first_kind == LimiterKind::MultiLimit {
        verdicts.push(multi_limit_verdict(
            scenario,
            events,
            jitter + bucket_margin,
            &resets,
        ));
    }

    if grouped {
        let mut over = Vec::new();
        for ((group, key), points) in &group_admissions {
            let settings = &scenario.gateways[*group];
            let Some(bound) = admission_bound(settings.limiter, &scenario.for_group(settings))
            else {
                continue;
            };
            let margin = match bound {
                Bound::Rate { .. } => jitter + bucket_margin,
                Bound::Window { .. } => jitter,
            };
            let mut points = points.clone();
            points.sort_unstable();
            if let Some((start_ms, end_ms, counted, allowed)) =
                worst_excess(&points, bound, margin, &resets)
            {
                over.push(format!(
                    "group {group} ({}) key {key}: {counted} admissions in [{start_ms} ms, {end_ms} ms] where {allowed} are allowed ({bound})",
                    settings.group.as_deref().unwrap_or("default")
                ));
            }
        }
        verdicts.push(Verdict {
            name: "group_admissions_within_bound".to_owned(),
            kind: VerdictKind::Safety,
            held: over.is_empty(),
            detail: if over.is_empty() {
                "every group's admissions on every key within its own bound".to_owned()
            } else {
                format!("{} (group, key) pairs over: {}", over.len(), over[0])
            },
        });
    }

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
        held: without_ttl.is_empty(),
        detail: match snapshot {
            None => "no snapshot of Redis in the log".to_owned(),
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
    }

    Report {
        seed,
        verdicts,
        metrics,
        timelines,
        replay: None,
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
    margin: u64,
    resets: &Resets,
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
    for ((template, key), admitted) in &points {
        let Some(&bound) = bounds.get(template) else {
            continue;
        };
        let mut admitted = admitted.clone();
        admitted.sort_unstable();
        let Some((start_ms, end_ms, counted, allowed)) =
            worst_excess(&admitted, bound, margin, resets)
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
    let detail = match &worst {
        None => format!(
            "every key of its {} limit(s) within its own bound ({}; gateway/Redis time margin {margin} ms; {} reset allowances); {} keys judged",
            bounds.len(),
            bounds
                .iter()
                .map(|(template, bound)| format!("{template}: {bound}"))
                .collect::<Vec<_>>()
                .join(", "),
            resets.at_ms.len(),
            points.len()
        ),
        Some((template, excess)) => format!(
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
        held: worst.is_none(),
        detail,
    }
}

/// The multi-limit's admissions `(time, weight)` per (limit template, rendered key): each
/// admission once on the key of every limit its gateway's group checks.
fn multi_limit_points(
    scenario: &Scenario,
    events: &[Event],
) -> BTreeMap<(String, String), Vec<(u64, u64)>> {
    use crate::harness::{identity, parse_key_name};
    use ratelab::keys::KeyScheme;

    let mut requests: BTreeMap<u64, (u32, &str, u64)> = BTreeMap::new();
    let mut points: BTreeMap<(String, String), Vec<(u64, u64)>> = BTreeMap::new();
    for event in events {
        match event {
            Event::Request {
                id,
                gateway,
                key,
                cost,
                ..
            } => {
                requests.insert(*id, (*gateway, key.as_str(), *cost));
            }
            Event::Decision {
                id,
                at_ms,
                outcome: Outcome::Allowed,
                ..
            } => {
                let Some(&(gateway, key, cost)) = requests.get(id) else {
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
                        .push((*at_ms, cost));
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

    /// `worst_excess` over `times` (weight 1 each) for `bound` with `margin`: the excess
    /// `counted - allowed`, or 0 when within the bound.
    fn check(times: &[u64], bound: Bound, margin: u64, expected_excess: u64) {
        let points: Vec<(u64, u64)> = times.iter().map(|&time| (time, 1)).collect();
        let excess = worst_excess(&points, bound, margin, &Resets::default())
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
    fn a_reset_earns_one_more_base_allowance() {
        let resets = Resets {
            at_ms: vec![500],
            reach_ms: 0,
        };
        let points: Vec<(u64, u64)> = [0, 0, 600, 600, 600].iter().map(|&t| (t, 1)).collect();
        let window = Bound::Window {
            limit: 2,
            span_ms: 1_000,
        };
        assert_eq!(
            worst_excess(&points, window, 0, &Resets::default()).map(|w| w.2),
            Some(5)
        );
        assert_eq!(
            worst_excess(&points, window, 0, &resets).map(|w| (w.2, w.3)),
            Some((3, 2))
        );
        let two_after: Vec<(u64, u64)> = [0, 0, 600, 600].iter().map(|&t| (t, 1)).collect();
        assert_eq!(worst_excess(&two_after, window, 0, &resets), None);
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

    /// Goal: the gateway/Redis margin grows with every source of latency spread a scenario
    /// has (network spread, a fault's link latency, a per-link distribution's longest draw),
    /// so that a lawful run is not flagged, and not with clock drift (which really
    /// over-admits). Method: one base scenario, each source added alone, the margin computed
    /// by hand.
    #[test]
    fn the_margin_counts_every_source_of_timing_spread() {
        let base = "duration_ms = 9000\n[limit]\nlimit = 10\nwindow_ms = 1000\n\
                    [[gateways]]\nlimiter = \"atomic_gcra\"\n[load]\nrate_per_s = 1\n";
        let cases: &[(&str, u64)] = &[
            ("", 2),
            ("[network]\nmin_latency_ms = 1\nmax_latency_ms = 5\n", 6),
            (
                "[[network.links]]\na = \"gateway-0\"\nb = \"redis-0\"\n\
                 latency = { kind = \"uniform\", min_ms = 1, max_ms = 40 }\n",
                42,
            ),
            (
                "[[faults]]\nat_ms = 10\nkind = \"link_latency\"\na = \"gateway-0\"\n\
                 b = \"redis-0\"\nlatency_ms = 30\n",
                32,
            ),
            ("[redis]\ndrift_ppm = -1000\n", 2),
        ];
        for (extra, expected_ms) in cases {
            let scenario = Scenario::from_toml(&format!("{base}{extra}")).expect("valid");
            assert_eq!(jitter_ms(&scenario), *expected_ms, "with {extra:?}");
        }
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

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
//! Redis restart bounces one node (`redis-0`) and a Redis clock step moves one node's
//! clock: only keys whose slot that node owns earn it (`Resets::for_key`, `key_on_node`),
//! and the aligned windows of a key are read on its node's clock.
//!
//! **Resolution** (`Metrics::over_admission_resolution`): computed from the log, the least
//! headroom (allowed − counted) over every window or interval the checks judge, plus one:
//! the smallest over-admission the check sees at the tightest place of the run.

//!
//! **Layout.** `ledger` reads the log once (per-key series and metrics), `bounds` holds the
//! series to each limiter's stated bound, `properties` judges the rest and the coverage;
//! [`check`] runs the three in that order.

mod bounds;
mod ledger;
mod properties;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::event::Event;
use crate::scenario::Scenario;

pub use self::bounds::*;
use self::ledger::*;

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
    /// The same for the success bound (a success limit's): the smallest excess of
    /// successes its check sees. 0 when no success bound was judged.
    pub success_resolution: u64,
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
            "  over-admission max {} (the check sees {} or more{}; {} admissions too slow to place); time margin per key max {} ms, median {} ms; per gateway {:?}; {} requests unresolved",
            m.over_admission_max,
            m.over_admission_resolution,
            if m.success_resolution > 0 {
                format!(", successes {} or more", m.success_resolution)
            } else {
                String::new()
            },
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

/// Judges one run. Pure: the same inputs always give the same report.
pub fn check(scenario: &Scenario, seed: u64, events: &[Event]) -> Report {
    let mut ledger = ledger::record(scenario, events);
    let (mut verdicts, timelines) = bounds::judge(scenario, events, &mut ledger);
    properties::judge(scenario, &mut ledger, &mut verdicts);
    Report {
        seed,
        verdicts,
        metrics: ledger.metrics,
        timelines,
        replay: None,
    }
}

//! Shrinking: from a run that violates a safety property, the smallest variant of its
//! scenario (same seed) that still violates it, so a reader sees the race and little else.
//!
//! The search is greedy and bounded: each round tries candidates in a fixed order (drop one
//! fault, drop one gateway, drop one link latency distribution, zero one drift, drop the
//! limit-kind mix, halve the duration, halve the rate, halve the key count) and keeps the
//! first that still violates the same property; it stops when no candidate does
//! or the run budget is spent. Every candidate is strictly smaller in one dimension and no
//! larger in any other, so the search ends. Candidates that do not validate (a fault naming
//! a gateway that is gone, a fault after the new end) are skipped without a run.
//!
//! The seed stays fixed: a smaller scenario draws a different schedule from it, which is
//! fine, since the point is a replayable small run, not the same interleaving.

use std::fmt::Write as _;

use crate::checker::{Report, VerdictKind};
use crate::event::{Event, Outcome};
use crate::scenario::Scenario;

/// Shortest duration a candidate may have, ms.
const DURATION_MS_MIN: u64 = 200;

/// Lowest total rate a candidate may have, requests per second.
const RATE_PER_S_MIN: f64 = 1.0;

/// The smallest violating variant found.
#[derive(Debug)]
pub struct Shrunk {
    /// The property that still fails (the first safety verdict that failed originally).
    pub property: String,
    /// The smallest scenario found.
    pub scenario: Scenario,
    /// Its report (the property fails in it).
    pub report: Report,
    /// Its event log.
    pub events: Vec<Event>,
    /// What each accepted step did, in order.
    pub steps: Vec<String>,
    /// Simulations run while shrinking.
    pub runs: u32,
}

/// How big a scenario is, for comparing a shrunk one with its original: (gateways, faults,
/// duration ms, requests per second, keys).
pub fn size(scenario: &Scenario) -> (u32, usize, u64, f64, u64) {
    (
        scenario.gateway_count(),
        scenario.faults.len(),
        scenario.duration_ms,
        scenario.load.rate_per_s,
        scenario.load.keys,
    )
}

/// The first safety property `report` says failed.
pub fn first_violation(report: &Report) -> Option<String> {
    report
        .verdicts
        .iter()
        .find(|verdict| verdict.kind == VerdictKind::Safety && !verdict.held)
        .map(|verdict| verdict.name.clone())
}

/// Candidates one step smaller than `scenario` that keep at least `gateways_min` gateways,
/// with a word on each, in the order tried.
fn candidates(scenario: &Scenario, gateways_min: u32) -> Vec<(String, Scenario)> {
    let mut out = Vec::new();
    // Faults first: a race that needs no fault is the clearest.
    for index in (0..scenario.faults.len()).rev() {
        let mut smaller = scenario.clone();
        let fault = smaller.faults.remove(index);
        out.push((
            format!(
                "drop fault {index} ({:?} at {} ms)",
                fault.kind, fault.at_ms
            ),
            smaller,
        ));
    }
    // Gateways: the last group loses one (or goes, when it has one and is not alone).
    if let Some(last) = scenario.gateways.len().checked_sub(1) {
        let mut smaller = scenario.clone();
        if smaller.gateways[last].count > 1 {
            smaller.gateways[last].count -= 1;
            out.push((
                format!(
                    "one gateway fewer in group {last} ({})",
                    smaller.gateways[last].count
                ),
                smaller,
            ));
        } else if last > 0 {
            smaller.gateways.pop();
            out.push((format!("drop gateway group {last}"), smaller));
        }
    }
    for (index, group) in scenario.gateways.iter().enumerate() {
        if group.count > 1 && index + 1 < scenario.gateways.len() {
            let mut smaller = scenario.clone();
            smaller.gateways[index].count -= 1;
            out.push((format!("one gateway fewer in group {index}"), smaller));
        }
    }
    // Time-varying knobs: a link distribution, a group's drift, the Redis nodes' drift.
    for index in (0..scenario.network.links.len()).rev() {
        let mut smaller = scenario.clone();
        let link = smaller.network.links.remove(index);
        out.push((
            format!("drop link latency {index} ({} <-> {})", link.a, link.b),
            smaller,
        ));
    }
    for (index, group) in scenario.gateways.iter().enumerate() {
        if group.drift_ppm != 0 {
            let mut smaller = scenario.clone();
            smaller.gateways[index].drift_ppm = 0;
            out.push((format!("no drift in gateway group {index}"), smaller));
        }
    }
    if scenario.redis.drift_ppm != 0 {
        let mut smaller = scenario.clone();
        smaller.redis.drift_ppm = 0;
        out.push(("no drift on the Redis nodes".to_owned(), smaller));
    }
    // One kind of limit instead of a mix (the keys lose their kind prefix).
    if scenario.load.mix.is_some() {
        let mut smaller = scenario.clone();
        smaller.load.mix = None;
        out.push(("no limit-kind mix".to_owned(), smaller));
    }
    if scenario.duration_ms / 2 >= DURATION_MS_MIN {
        let mut smaller = scenario.clone();
        smaller.duration_ms /= 2;
        smaller
            .faults
            .retain(|fault| fault.at_ms <= smaller.duration_ms);
        out.push((
            format!("halve the duration to {} ms", smaller.duration_ms),
            smaller,
        ));
    }
    if scenario.load.rate_per_s / 2.0 >= RATE_PER_S_MIN {
        let mut smaller = scenario.clone();
        smaller.load.rate_per_s /= 2.0;
        out.push((
            format!("halve the rate to {} per s", smaller.load.rate_per_s),
            smaller,
        ));
    }
    if scenario.load.keys > 1 {
        let mut smaller = scenario.clone();
        smaller.load.keys /= 2;
        out.push((format!("halve the keys to {}", smaller.load.keys), smaller));
    }
    out.retain(|(_, candidate)| {
        candidate.gateway_count() >= gateways_min && candidate.validate().is_ok()
    });
    out
}

/// Shrinks `scenario` (which violated a safety property with `seed`, as `report` says),
/// running at most `budget_runs` simulations. `None` when the report shows no violation.
pub fn shrink(
    scenario: &Scenario,
    seed: u64,
    report: &Report,
    events: Vec<Event>,
    budget_runs: u32,
) -> Option<Shrunk> {
    shrink_keeping(scenario, seed, report, events, budget_runs, 1)
}

/// [`shrink`], never below `gateways_min` gateways (or the original count, if smaller): a
/// race between gateways needs two to be told, even when one gateway's concurrent requests
/// already violate the property.
pub fn shrink_keeping(
    scenario: &Scenario,
    seed: u64,
    report: &Report,
    events: Vec<Event>,
    budget_runs: u32,
    gateways_min: u32,
) -> Option<Shrunk> {
    let gateways_min = gateways_min.min(scenario.gateway_count());
    let property = first_violation(report)?;
    let mut best = Shrunk {
        property,
        scenario: scenario.clone(),
        report: report.clone(),
        events,
        steps: Vec::new(),
        runs: 0,
    };
    'rounds: while best.runs < budget_runs {
        for (step, candidate) in candidates(&best.scenario, gateways_min) {
            if best.runs >= budget_runs {
                break 'rounds;
            }
            best.runs += 1;
            // A candidate the harness cannot finish is simply not smaller-and-violating.
            let Ok((report, events)) = crate::simulate(&candidate, seed) else {
                continue;
            };
            if report.violated(&best.property) {
                best.scenario = candidate;
                best.report = report;
                best.events = events;
                best.steps.push(step);
                continue 'rounds;
            }
        }
        break;
    }
    Some(best)
}

/// The shrunk run as text: the steps taken, the failing verdict, a short timeline (the
/// checker's for a bound; otherwise the faults and the non-admissions around the first
/// failure), the scenario, and the one command that replays it.
pub fn render(shrunk: &Shrunk, seed: u64, replay: &str) -> String {
    const LINES_MAX: usize = 30;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shrunk in {} runs, {} steps: {} gateways, {} faults, {} ms, {} per s, {} keys",
        shrunk.runs,
        shrunk.steps.len(),
        shrunk.scenario.gateway_count(),
        shrunk.scenario.faults.len(),
        shrunk.scenario.duration_ms,
        shrunk.scenario.load.rate_per_s,
        shrunk.scenario.load.keys
    );
    for step in &shrunk.steps {
        let _ = writeln!(out, "  - {step}");
    }
    if let Some(verdict) = shrunk.report.verdict(&shrunk.property) {
        let _ = writeln!(out, "  FAIL {}: {}", verdict.name, verdict.detail);
    }
    if shrunk.report.timelines.is_empty() {
        let _ = writeln!(out, "  timeline (faults and refusals):");
        let mut lines = 0;
        for event in &shrunk.events {
            let line = match event {
                Event::Fault { what, .. } => format!("fault: {what}"),
                Event::Decision {
                    id,
                    outcome: outcome @ (Outcome::Error | Outcome::FailOpen),
                    error,
                    ..
                } => format!(
                    "request {id:#x} {outcome:?}: {}",
                    error.as_deref().unwrap_or("")
                ),
                Event::Snapshot { keys, .. } => {
                    let without: Vec<&str> = keys
                        .iter()
                        .filter(|(_, ttl)| *ttl == -1)
                        .take(3)
                        .map(|(key, _)| key.as_str())
                        .collect();
                    format!("end: {} keys; without TTL: {without:?}", keys.len())
                }
                _ => continue,
            };
            if lines < LINES_MAX || matches!(event, Event::Snapshot { .. }) {
                let _ = writeln!(out, "    {:>8} ms  {line}", event.at_ms());
            }
            lines += 1;
        }
    } else {
        for timeline in &shrunk.report.timelines {
            out.push_str(timeline);
        }
    }
    let _ = writeln!(out, "# the shrunk scenario (seed {seed}):");
    out.push_str(&shrunk.scenario.to_toml());
    let _ = writeln!(out, "replay: {replay}");
    out
}

//! `shardcheck --simulate`: one scenario's load run through the simulation (gateways,
//! pools, the simulated network and Redis) under both key schemes, compared request by
//! request, with the noise floor subtracted.
//!
//! In the simulation a decision also depends on timing: when a script reaches Redis moves
//! with latency, queueing and which node a key lives on, so two schemes can decide a request
//! differently for no reason of their own. The noise floor is measured as Twitter's Diffy
//! does: the old scheme runs twice with the same load and different network seeds (the
//! primary and the secondary), and the new scheme once with the primary's seeds (the
//! candidate). Per limit, the differences primary/candidate are blamed on the scheme only
//! when they clearly exceed the differences primary/secondary: more than twice as many.
//! Per request, a difference where primary and secondary agree is "stable" (timing alone
//! did not move that request); those are listed first.
//!
//! A fourth run is the cut-over: gateways switch from the old scheme to the new one at the
//! times the in-process cut-over uses, each deciding through `atomic::Rollout`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::compare::{CompareError, Cutover, EXAMPLES_MAX};
use crate::harness::{Seeds, run_with};
use crate::per_limit::{LimitDecision, Recorded, SchemePlan};
use crate::scenario::Scenario;
use crate::schemes::SchemeSet;
use crate::traffic::TrafficRequest;

/// The network seed of the secondary run (the noise floor): the load's seed plus this.
pub const NOISE_SEED_OFFSET: u64 = 1;

/// One limit's simulated differences against its noise floor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LimitNoise {
    /// The limit kind.
    pub kind: String,
    /// Requests decided differently, old scheme against new (same seeds).
    pub differing: u64,
    /// Requests decided differently by the old scheme under two network seeds.
    pub noise: u64,
    /// Of `differing`, those where the old scheme's two runs agree.
    pub stable: u64,
    /// `differing` minus `noise` (at least 0).
    pub excess: u64,
    /// Blamed on the scheme: `differing` more than twice `noise`.
    pub blamed: bool,
}

/// A request the simulation decided differently under the two schemes.
#[derive(Clone, Debug, Serialize)]
pub struct SimDifference {
    /// The request id (gateway in the high 32 bits, its sequence below).
    pub id: u64,
    /// The request.
    pub request: TrafficRequest,
    /// Its decisions under the old scheme (primary run).
    pub before: Vec<LimitDecision>,
    /// Under the new scheme.
    pub after: Vec<LimitDecision>,
    /// Whether the old scheme decided it alike under the other network seed.
    pub stable: bool,
}

/// What `--simulate` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Simulated {
    /// The load seed (also the primary's and the candidate's network seed).
    pub seed: u64,
    /// The secondary's network seed.
    pub noise_seed: u64,
    /// Requests decided in all three runs (those compared).
    pub requests: u64,
    /// Requests with a differing decision, old against new.
    pub differing: u64,
    /// Requests the old scheme decided differently under two network seeds.
    pub noise: u64,
    /// Differing requests on which the old scheme's two runs agree.
    pub stable: u64,
    /// Per limit kind.
    pub per_limit: Vec<LimitNoise>,
    /// Differing decisions beyond the noise floor: the excess of every blamed limit.
    pub beyond_noise: u64,
    /// The first differing requests, stable ones first.
    pub examples: Vec<SimDifference>,
    /// The simulated cut-over.
    pub cutover: Cutover,
}

/// One simulated run of `scenario` under `plan` with `seeds`.
fn run(
    scenario: &Scenario,
    seeds: Seeds,
    plan: SchemePlan,
) -> Result<BTreeMap<u64, Recorded>, CompareError> {
    let plan = Arc::new(plan);
    run_with(scenario, seeds, None, Some(Arc::clone(&plan)))
        .map_err(|error| CompareError(error.to_string()))?;
    Ok(plan.recorded())
}

/// Runs `scenario` (its load from `seed`) under `before` and `after` in the simulation and
/// compares; `traffic` is the same load as the in-process replay saw it (for the cut-over's
/// switch times).
pub fn simulate(
    before: &SchemeSet,
    after: &SchemeSet,
    scenario: &Scenario,
    seed: u64,
    traffic: &[TrafficRequest],
) -> Result<Simulated, CompareError> {
    let noise_seed = seed.wrapping_add(NOISE_SEED_OFFSET);
    let primary_seeds = Seeds::one(seed);
    let secondary_seeds = Seeds {
        load: seed,
        network: noise_seed,
    };
    let switch_ms = match (traffic.first(), traffic.last()) {
        (Some(first), Some(last)) => crate::compare::switch_times(first.at_ms, last.at_ms, traffic),
        _ => Vec::new(),
    };
    // Four independent runs, one thread each (each shares nothing; results by name).
    let (primary, secondary, candidate, cut) = std::thread::scope(|scope| {
        let primary =
            scope.spawn(|| run(scenario, primary_seeds, SchemePlan::one(before.clone())));
        let secondary =
            scope.spawn(|| run(scenario, secondary_seeds, SchemePlan::one(before.clone())));
        let candidate =
            scope.spawn(|| run(scenario, primary_seeds, SchemePlan::one(after.clone())));
        let cut = run(
            scenario,
            primary_seeds,
            SchemePlan::cutover(before.clone(), after.clone(), switch_ms.clone()),
        );
        let join = |handle: std::thread::ScopedJoinHandle<'_, _>| {
            handle
                .join()
                .unwrap_or_else(|_| Err(CompareError("a simulated run panicked".to_owned())))
        };
        (join(primary), join(secondary), join(candidate), cut)
    });
    let (primary, secondary, candidate, cut) = (primary?, secondary?, candidate?, cut?);
    let mut report = compare_runs(&primary, &secondary, &candidate);
    report.seed = seed;
    report.noise_seed = noise_seed;
    report.cutover = cutover(before, after, &cut, &primary, switch_ms);
    Ok(report)
}

/// Per kind: allowed, denied, or failed (`None`).
fn verdicts(recorded: &Recorded) -> BTreeMap<&str, Option<bool>> {
    recorded
        .decided
        .iter()
        .map(|decision| (decision.kind.as_str(), decision.allowed))
        .collect()
}

/// The kinds on which two records of one request differ.
fn differing_kinds<'a>(first: &'a Recorded, second: &'a Recorded) -> BTreeSet<&'a str> {
    let (a, b) = (verdicts(first), verdicts(second));
    a.keys()
        .chain(b.keys())
        .copied()
        .filter(|kind| a.get(kind) != b.get(kind))
        .collect()
}

/// Diffy's comparison of the three runs (seeds and cut-over left empty).
pub fn compare_runs(
    primary: &BTreeMap<u64, Recorded>,
    secondary: &BTreeMap<u64, Recorded>,
    candidate: &BTreeMap<u64, Recorded>,
) -> Simulated {
    let mut per_limit: BTreeMap<String, LimitNoise> = BTreeMap::new();
    let mut report = Simulated {
        seed: 0,
        noise_seed: 0,
        requests: 0,
        differing: 0,
        noise: 0,
        stable: 0,
        per_limit: Vec::new(),
        beyond_noise: 0,
        examples: Vec::new(),
        cutover: Cutover::default(),
    };
    let mut unstable_examples = Vec::new();
    for (id, old) in primary {
        let (Some(other), Some(new)) = (secondary.get(id), candidate.get(id)) else {
            continue;
        };
        report.requests += 1;
        let noisy = differing_kinds(old, other);
        let changed = differing_kinds(old, new);
        for kind in &noisy {
            let entry = per_limit.entry((*kind).to_owned()).or_default();
            entry.noise += 1;
        }
        for kind in &changed {
            let entry = per_limit.entry((*kind).to_owned()).or_default();
            entry.differing += 1;
            if !noisy.contains(kind) {
                entry.stable += 1;
            }
        }
        report.noise += u64::from(!noisy.is_empty());
        if changed.is_empty() {
            continue;
        }
        report.differing += 1;
        let stable = changed.iter().all(|kind| !noisy.contains(kind));
        report.stable += u64::from(stable);
        let example = SimDifference {
            id: *id,
            request: old.request.clone(),
            before: old.decided.clone(),
            after: new.decided.clone(),
            stable,
        };
        if stable && report.examples.len() < EXAMPLES_MAX {
            report.examples.push(example);
        } else if !stable && unstable_examples.len() < EXAMPLES_MAX {
            unstable_examples.push(example);
        }
    }
    let room = EXAMPLES_MAX - report.examples.len();
    report
        .examples
        .extend(unstable_examples.into_iter().take(room));
    for (kind, mut limit) in per_limit {
        limit.kind = kind;
        limit.excess = limit.differing.saturating_sub(limit.noise);
        limit.blamed = limit.differing > 2 * limit.noise;
        if limit.blamed {
            report.beyond_noise += limit.excess;
        }
        report.per_limit.push(limit);
    }
    report
}

/// Admissions per logical key, at the simulated ms of each decision.
fn admitted(set: &SchemeSet, run: &BTreeMap<u64, Recorded>) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut admitted: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for recorded in run.values() {
        for decision in &recorded.decided {
            let Some(limit) = set.limits.get(&decision.kind) else {
                continue;
            };
            if decision.allowed == Some(true) {
                admitted
                    .entry(crate::compare::logical_key(limit, &recorded.request))
                    .or_default()
                    .push((recorded.decided_ms, recorded.request.cost));
            }
        }
    }
    for times in admitted.values_mut() {
        times.sort_unstable();
    }
    admitted
}

/// The simulated cut-over against the old scheme alone (the primary run).
fn cutover(
    before: &SchemeSet,
    after: &SchemeSet,
    cut: &BTreeMap<u64, Recorded>,
    primary: &BTreeMap<u64, Recorded>,
    switch_ms: Vec<u64>,
) -> Cutover {
    let mut renamed: BTreeMap<String, bool> = BTreeMap::new();
    for recorded in cut.values() {
        for decision in &recorded.decided {
            let Some(limit) = before.limits.get(&decision.kind) else {
                continue;
            };
            let logical = crate::compare::logical_key(limit, &recorded.request);
            if renamed.contains_key(&logical) {
                continue;
            }
            let render = |set: &SchemeSet| {
                set.limits.get(&decision.kind).and_then(|limit| {
                    limit
                        .scheme
                        .render(&recorded.request.identity(&limit.namespace), 0)
                        .ok()
                })
            };
            let old_key = render(before);
            renamed.insert(logical, old_key.is_none() || old_key != render(after));
        }
    }
    let mut report = Cutover {
        switch_ms,
        logical_keys: renamed.len() as u64,
        keys_renamed: renamed.values().filter(|&&renamed| renamed).count() as u64,
        ..Cutover::default()
    };
    crate::compare::worst_over_admission(
        &mut report,
        (before, after),
        &admitted(before, cut),
        &admitted(before, primary),
        &renamed,
    );
    report
}

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
    /// The scenario's scheduled faults: a Redis restart or failover loses counters, a clock
    /// step moves windows, so under faults the cut-over can exceed its bound for reasons of
    /// its own.
    pub faults: u64,
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
        let primary = scope.spawn(|| run(scenario, primary_seeds, SchemePlan::one(before.clone())));
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
    report.faults = scenario.faults.len() as u64;
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
        faults: 0,
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

#[cfg(test)]
mod tests {
    //! Each finding of the simulated half with a pair that triggers it and one that does not,
    //! on the noisy cluster load shipped beside the example schemes.

    use super::*;

    fn example(name: &str) -> SchemeSet {
        let path = format!(
            "{}/schemes/examples/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        SchemeSet::from_toml(&std::fs::read_to_string(path).expect("shipped"), name)
            .expect("a shipped scheme loads")
    }

    fn noisy() -> Scenario {
        Scenario::from_toml(include_str!("../schemes/examples/noisy-cluster-load.toml"))
            .expect("the shipped load loads")
    }

    fn simulated(after: &str) -> Simulated {
        let scenario = noisy();
        let traffic = crate::traffic::from_scenario(&scenario, 1).unwrap();
        simulate(&example("base"), &example(after), &scenario, 1, &traffic).unwrap()
    }

    fn limit<'a>(report: &'a Simulated, kind: &str) -> &'a LimitNoise {
        report
            .per_limit
            .iter()
            .find(|limit| limit.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in {:?}", report.per_limit))
    }

    #[test]
    fn a_shard_count_change_differs_beyond_the_noise_floor() {
        // Goal: a real change of decisions is blamed on the scheme although timing alone
        // moves decisions too. Method: base against shards (the ip limit over 4 shards) in
        // the simulation: the noise floor is not zero (the check could excuse), and the ip
        // limit's differences still exceed twice it; the limits the change leaves alone are
        // not blamed.
        let report = simulated("shards");
        assert!(report.noise > 10, "a quiet noise floor: {report:?}");
        let ip = limit(&report, "ip");
        assert!(ip.noise > 0, "{ip:?}");
        assert!(ip.blamed && ip.differing > 2 * ip.noise, "{ip:?}");
        assert!(report.beyond_noise >= ip.excess && ip.excess > 0);
        for kind in ["user", "model"] {
            assert!(!limit(&report, kind).blamed, "{:?}", report.per_limit);
        }
    }

    #[test]
    fn a_hash_tag_move_differs_only_by_noise() {
        // Goal: keys that move to other nodes change timing, and with it some decisions; the
        // noise floor excuses them. Method: base against tag-move (same limits, other hash
        // tags): the simulation does decide requests differently (so an unfiltered
        // comparison would blame the change), but no limit exceeds twice its noise.
        let report = simulated("tag-move");
        assert!(report.differing > 10, "{report:?}");
        assert!(report.noise > 10, "{report:?}");
        assert_eq!(report.beyond_noise, 0, "{:?}", report.per_limit);
        assert!(report.per_limit.iter().all(|limit| !limit.blamed));
    }

    #[test]
    fn a_rename_on_the_same_slots_decides_alike_and_resets_counters_at_the_cut_over() {
        // Goal: the simulated cut-over reports the over-admission a rename causes and its
        // bound. Method: base against rename (same hash tags: same nodes, same timing): no
        // differing decision at all; during the rolling switch a key is admitted more than
        // the old scheme alone admitted, within the sum of both schemes' bounds.
        let report = simulated("rename");
        assert_eq!(report.differing, 0, "{:?}", report.examples);
        let cutover = &report.cutover;
        assert_eq!(cutover.keys_renamed, cutover.logical_keys);
        assert!(cutover.worst_over_admission > 0, "{cutover:?}");
        assert!(
            cutover.worst_over_admission <= cutover.worst_bound,
            "{cutover:?}"
        );
        assert!(
            cutover.worst_in_window <= cutover.bound_in_window,
            "{cutover:?}"
        );
        // The old scheme's own bound would be exceeded: the split counters are the cause.
        let old_upper = crate::compare::bound(&example("base").limits["user"]).upper_per_window;
        assert!(cutover.bound_in_window > old_upper, "{cutover:?}");
    }

    #[test]
    fn identical_schemes_differ_by_nothing_and_cut_over_admits_nothing_extra() {
        // Goal: the null pair: the candidate run is the primary run. Method: base against
        // base: no difference at all, no renamed key, no excess at the cut-over.
        let report = simulated("base");
        assert_eq!((report.differing, report.beyond_noise), (0, 0));
        assert!(report.noise > 0);
        assert_eq!(report.cutover.keys_renamed, 0);
        assert_eq!(report.cutover.worst_over_admission, 0);
    }

    #[test]
    fn the_network_seed_moves_timing_and_not_the_load() {
        // Goal: the two seeds are apart. Method: one load seed under two network seeds gives
        // the same requests (ids, gateways, arrival ms, fields) and different decision
        // times; one seed for both is `harness::run` exactly.
        let scenario = noisy();
        let plan = || Arc::new(SchemePlan::one(example("base")));
        let record = |seeds: Seeds| {
            let plan = plan();
            run_with(&scenario, seeds, None, Some(Arc::clone(&plan))).unwrap();
            plan.recorded()
        };
        let first = record(Seeds::one(3));
        let second = record(Seeds {
            load: 3,
            network: 4,
        });
        let requests = |run: &BTreeMap<u64, Recorded>| -> Vec<(u64, TrafficRequest)> {
            run.iter()
                .map(|(id, recorded)| (*id, recorded.request.clone()))
                .collect()
        };
        assert!(first.len() > 500);
        assert_eq!(requests(&first), requests(&second));
        let decided = |run: &BTreeMap<u64, Recorded>| -> Vec<u64> {
            run.values().map(|recorded| recorded.decided_ms).collect()
        };
        assert_ne!(decided(&first), decided(&second));
        let plain = crate::harness::run(&scenario, 3).unwrap().events;
        let split = run_with(&scenario, Seeds::one(3), None, None)
            .unwrap()
            .events;
        assert_eq!(format!("{plain:?}"), format!("{split:?}"));
    }
}

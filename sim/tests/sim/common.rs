//! Helpers shared by the simulation's test modules.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sim::checker::Report;
use sim::event::Event;
use sim::harness::{Tamper, TamperAction, TamperCall};
use sim::scenario::{LimiterKind, Scenario};

/// A scenario shipped in `sim/scenarios/` (a bad one is a bug in the repository).
pub fn parse(text: &str) -> Scenario {
    Scenario::from_toml(text).unwrap_or_else(|error| panic!("a shipped scenario is bad: {error}"))
}

/// The same scenario with every gateway group running `kind`.
pub fn with_limiter(text: &str, kind: LimiterKind) -> Scenario {
    let mut scenario = parse(text);
    for group in &mut scenario.gateways {
        group.limiter = kind;
    }
    scenario
}

/// Simulates and judges one seed.
pub fn run(scenario: &Scenario, seed: u64) -> Report {
    run_with_log(scenario, seed).0
}

/// Simulates and judges one seed, keeping the event log. The report carries the command that
/// replays the run, so every failing assertion that prints it says how to replay it.
pub fn run_with_log(scenario: &Scenario, seed: u64) -> (Report, Vec<Event>) {
    let (mut report, events) =
        sim::simulate(scenario, seed).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    report.replay = Some(replay(scenario, seed));
    (report, events)
}

/// Writes the scenario as the test ran it (tests change shipped files: another limiter,
/// another seed's faults) to a file named by its content, and gives the `ratelab run` command
/// that replays it.
fn replay(scenario: &Scenario, seed: u64) -> String {
    use std::hash::{Hash, Hasher};

    let text = scenario.to_toml();
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    let path = std::env::temp_dir().join(format!("ratelab-test-{:016x}.toml", hasher.finish()));
    match std::fs::write(&path, &text) {
        Ok(()) => format!(
            "cargo run --release -p sim -- run --scenario {} --seed {seed}",
            path.display()
        ),
        Err(error) => format!("(cannot write {}: {error})", path.display()),
    }
}

/// Panics unless `report` holds as a proof: every safety property held, the run denied
/// something, every fault fired and took effect, Redis was snapshotted (so
/// `every_key_has_ttl` was judged), and every stated bound was judged (not refused).
pub fn assert_holds(report: &Report) {
    report.assert_safe();
    assert!(report.metrics.denied > 0, "nothing was denied:\n{report}");
    assert!(
        report
            .verdict("every_key_has_ttl")
            .is_some_and(|verdict| verdict.held),
        "no snapshot:\n{report}"
    );
}

/// What [`admit_one`] admitted: `(key, at_ms)`, once it has.
pub type Admitted = Arc<Mutex<Option<(String, u64)>>>;

/// A wrong limiter: admits the first request it denies at or after `from_ms`, where the
/// key is saturated and no time in `avoid_ms` is within 20 ms (a fault's instant, whose
/// allowance would excuse it). The limiter does not count it: exactly one admission too
/// many.
/// `saturated`: `Some((count, span_ms))` for a window bound, where the key must already
/// have had `count` admissions in the trailing `span_ms` (as the hook saw them); `None` for
/// a rate bound, whose denial is saturation. Returns the hook and what it admitted,
/// `(key, at_ms)`.
pub fn admit_one(
    saturated: Option<(u64, u64)>,
    from_ms: u64,
    avoid_ms: Vec<u64>,
) -> (Tamper, Admitted) {
    let admitted: Admitted = Arc::new(Mutex::new(None));
    let record = Arc::clone(&admitted);
    let history: Mutex<BTreeMap<String, Vec<u64>>> = Mutex::new(BTreeMap::new());
    let tamper: Tamper = Arc::new(move |call: &TamperCall<'_>| {
        let mut history = history.lock().expect("not poisoned");
        let times = history.entry(call.key.to_owned()).or_default();
        let mut admitted = record.lock().expect("not poisoned");
        let full = || match saturated {
            None => true,
            Some((count, span_ms)) => {
                let recent = times
                    .iter()
                    .filter(|&&at| at + span_ms > call.at_ms)
                    .count();
                recent as u64 >= count
            }
        };
        let action = match call.allowed {
            Some(false)
                if admitted.is_none()
                    && call.at_ms >= from_ms
                    && avoid_ms.iter().all(|&at| call.at_ms.abs_diff(at) > 20)
                    && full() =>
            {
                *admitted = Some((call.key.to_owned(), call.at_ms));
                TamperAction::Admit
            }
            _ => TamperAction::Keep,
        };
        if call.allowed == Some(true) {
            times.push(call.at_ms);
        }
        action
    });
    (tamper, admitted)
}

/// A wrong limiter that does `action` to the `nth` decision (counted from 0) it sees and
/// leaves the rest alone.
pub fn on_nth_decision(nth: u64, action: TamperAction) -> Tamper {
    let seen = Arc::new(Mutex::new(0u64));
    Arc::new(move |_: &TamperCall<'_>| {
        let mut seen = seen.lock().expect("not poisoned");
        *seen += 1;
        if *seen == nth + 1 {
            action
        } else {
            TamperAction::Keep
        }
    })
}

/// Simulates `seed` with a wrong limiter and judges it (with the replay line).
pub fn run_tampered(scenario: &Scenario, seed: u64, tamper: Tamper) -> (Report, Vec<Event>) {
    let (mut report, events) = sim::simulate_tampered(scenario, seed, Some(tamper))
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
    report.replay = Some(format!(
        "{} (with the test's wrong limiter)",
        replay(scenario, seed)
    ));
    (report, events)
}

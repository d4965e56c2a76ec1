//! Helpers shared by the simulation's test modules.

use sim::checker::Report;
use sim::event::Event;
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

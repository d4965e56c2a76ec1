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

/// Simulates and judges one seed, keeping the event log.
pub fn run_with_log(scenario: &Scenario, seed: u64) -> (Report, Vec<Event>) {
    sim::simulate(scenario, seed).unwrap_or_else(|error| panic!("seed {seed}: {error}"))
}

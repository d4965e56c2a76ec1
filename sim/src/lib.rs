//! The ratelab simulation: limiters on gateway hosts talking to a Redis model over turmoil's
//! simulated TCP, with scheduled faults, and a checker that judges the event log.
//!
//! * [`scenario`]: a run as data (TOML or a swarm seed), validated field by field.
//! * [`harness`]: the turmoil world that runs a scenario and records [`event::Event`]s.
//! * [`pool`]: a go-redis-like connection pool over turmoil TCP.
//! * [`topology`]: replication with a lag and failover, and the cluster slot router.
//! * [`dynamics`]: per-link latency distributions and clock drift, advanced every ms.
//! * [`checker`]: a pure function from the event log to verdicts and metrics.
//! * [`shrink`]: the smallest variant of a violating scenario that still violates.
//! * [`explore`]: a seed-ordered worker pool for independent runs.
//! * [`schemes`], [`traffic`], [`compare`]: `shardcheck`: key-scheme files, traffic (from a
//!   scenario's load generator, a trace or a swarm seed), and one traffic under two schemes.
//! * [`timeline`]: a shrunk counterexample laid out per gateway, for the report's timeline.
//! * [`sweep`]: a figure's runs as data (one axis, the limiters, the seeds) and their rows.
//! * [`storage`]: the seed's storage comparison (memory, Redis sequential, hybrid) in
//!   virtual time, and its workload for the measured version.
//!
//! The `ratelab` binary (package `sim`, in `cli/`) is a thin front over [`simulate`]; this
//! library knows no command line and no output format.

pub mod checker;
pub mod compare;
pub mod dynamics;
pub mod event;
pub mod explore;
pub mod harness;
pub mod per_limit;
pub mod pool;
pub mod scenario;
pub mod schemes;
pub mod shardsim;
pub mod shrink;
pub mod storage;
pub mod sweep;
pub mod timeline;
pub mod topology;
pub mod traffic;

/// Runs `scenario` with `seed` and judges the log: the one call the CLI and the tests make.
pub fn simulate(
    scenario: &scenario::Scenario,
    seed: u64,
) -> Result<(checker::Report, Vec<event::Event>), harness::HarnessError> {
    simulate_tampered(scenario, seed, None)
}

/// [`simulate`] with a wrong limiter ([`harness::Tamper`]): for tests that show the checker
/// catches what a limiter gets wrong.
pub fn simulate_tampered(
    scenario: &scenario::Scenario,
    seed: u64,
    tamper: Option<harness::Tamper>,
) -> Result<(checker::Report, Vec<event::Event>), harness::HarnessError> {
    let output = harness::run_tampered(scenario, seed, tamper)?;
    // The log is in the scaled run's clock: judged against the scenario the harness ran.
    let report = checker::check(&scenario.scaled(), seed, &output.events);
    Ok((report, output.events))
}

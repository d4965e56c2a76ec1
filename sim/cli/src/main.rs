//! `ratelab`: the command-line front of the simulator.
//!
//! * `run`: one scenario (a TOML file, or a swarm seed), its verdicts and metrics;
//! * `explore`: many swarm seeds with a progress bar, listing the failing ones, each with
//!   the replay command of its shrunk scenario (`--no-shrink` to skip shrinking);
//! * `serve`: the in-process Redis model on a TCP port;
//! * `bench`: the limiters against a real Redis;
//! * `shardcheck`: a key-scheme change checked before it ships (exit 0 unchanged semantics,
//!   1 changed, 2 bad input).
//! * `report`: the figures (sweeps in `sim/sweeps/`) as SVG, PNG, CSV and a README.
//!
//! Exit codes of `run` and `explore` (`report`: 0 or 2): 0 every safety property held, 1 one was violated, 2 bad
//! input (an unreadable or invalid scenario, a run that could not complete).

mod bench;
mod bench_accept;
mod bench_redis;
mod bench_storage;
mod report;
mod serve;
mod shardcheck;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sim::scenario::Scenario;

/// Deterministic simulator and verification suite for Redis-backed rate limiters.
#[derive(Parser, Debug)]
#[command(name = "ratelab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the in-process Redis 7.0 model over RESP on a TCP port (until Ctrl-C).
    Serve(serve::ServeArgs),
    /// Benchmark the limiters against their peers and print the numbers.
    Bench(bench::BenchArgs),
    /// Simulate one scenario and judge it.
    Run(RunArgs),
    /// Simulate many swarm seeds and list the ones that violate a safety property.
    Explore(ExploreArgs),
    /// Check a key-scheme change: decisions, collisions, CROSSSLOT, load, bounds, cut-over.
    Shardcheck(shardcheck::ShardcheckArgs),
    /// Run the figures' sweeps and write plots (SVG, PNG), their CSV and a README.
    Report(report::ReportArgs),
}

/// How `run` prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Verdicts, metrics and timelines as text.
    Text,
    /// One JSON object: seed, verdicts, metrics, timelines.
    Json,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The scenario file (TOML). Without it the scenario is drawn from the seed (swarm).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// The run's seed (turmoil, arrivals, upstream). Without it one is chosen and printed.
    #[arg(long)]
    seed: Option<u64>,
    /// Write the event log here, one JSON object per line.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// On a violation (text format), at most this many extra runs to shrink the scenario
    /// to a smaller one that still violates; 0 turns shrinking off.
    #[arg(long, default_value_t = 40)]
    shrink_runs: u32,
    /// Where to write the shrunk scenario; default `ratelab-shrunk-<seed>.toml` in the
    /// system's temporary directory.
    #[arg(long)]
    shrunk_to: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ExploreArgs {
    /// How many seeds to run.
    #[arg(long)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Run this scenario with each seed instead of drawing a scenario from each seed.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// List the failing seeds without shrinking them.
    #[arg(long)]
    no_shrink: bool,
    /// For each failing seed, at most this many extra runs to shrink its scenario.
    #[arg(long, default_value_t = 40)]
    shrink_runs: u32,
    /// Where to write the shrunk scenarios (`ratelab-shrunk-<seed>.toml`); default the
    /// system's temporary directory.
    #[arg(long)]
    shrunk_dir: Option<PathBuf>,
    /// Seeds run at once, each on its own thread (a run is one thread; seeds share nothing).
    /// Default: the machine's cores. The listing is in seed order whatever this is.
    #[arg(long)]
    jobs: Option<usize>,
}

/// A reader that closes our standard output early (`ratelab run … | head`) ends the process
/// quietly with 141, as SIGPIPE ends a C tool, instead of a panic and a backtrace: `print!`
/// panics on a broken pipe, and this hook tells that panic from every other one.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Run(args) => return run(&args),
        Command::Explore(args) => return explore(&args),
        Command::Shardcheck(args) => return shardcheck::run(&args),
        Command::Report(args) => return report::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ratelab: {error}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &PathBuf) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Scenario::from_toml(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// The one command that replays a run.
fn replay_command(scenario: Option<&PathBuf>, seed: u64) -> String {
    match scenario {
        Some(path) => format!("ratelab run --scenario {} --seed {seed}", path.display()),
        None => format!("ratelab run --seed {seed}"),
    }
}

/// A seed when none was given: from the process id and the address of a stack value, so that
/// no wall clock is read; it is printed, so the run can be replayed.
fn fresh_seed() -> u64 {
    let marker = 0u8;
    let address = std::ptr::addr_of!(marker) as u64;
    u64::from(std::process::id()).rotate_left(32) ^ address
}

fn run(args: &RunArgs) -> ExitCode {
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let scenario = match &args.scenario {
        Some(path) => match load(path) {
            Ok(scenario) => scenario,
            Err(error) => {
                eprintln!("ratelab: {error}");
                return ExitCode::from(2);
            }
        },
        None => Scenario::swarm(seed),
    };
    let replay = replay_command(args.scenario.as_ref(), seed);
    if args.format == Format::Text {
        println!("# seed {seed}; replay: {replay}");
        println!("{}", scenario.to_toml());
        let scale = scenario.time_scale();
        if scale > 1 {
            println!(
                "# time_scale {scale}: run as its {scale}x slower equivalent; the times below are in that clock"
            );
        }
    }
    let (report, events) = match sim::simulate(&scenario, seed) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("ratelab: {error}\n  replay: {replay}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.trace {
        let mut text = String::new();
        for event in &events {
            text.push_str(&serde_json::to_string(event).expect("events always serialise"));
            text.push('\n');
        }
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("ratelab: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    match args.format {
        Format::Text => {
            print!("{report}");
            if !report.safe() {
                println!("VIOLATED (seed {seed}); replay: {replay}");
                if args.shrink_runs > 0 {
                    shrink_and_print(args, &scenario, seed, &report, events);
                }
            }
        }
        Format::Json => {
            let object = serde_json::json!({
                "seed": seed,
                "replay": replay,
                "safe": report.safe(),
                "event_log_hash": format!("{:016x}", sim::event::log_hash(&events)),
                "report": report,
            });
            println!("{object}");
        }
    }
    if report.safe() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Shrinks a violating run, writes the smallest scenario to a file and prints its timeline
/// with the command that replays it.
fn shrink_and_print(
    args: &RunArgs,
    scenario: &Scenario,
    seed: u64,
    report: &sim::checker::Report,
    events: Vec<sim::event::Event>,
) {
    let Some(shrunk) = sim::shrink::shrink(scenario, seed, report, events, args.shrink_runs) else {
        return;
    };
    if shrunk.steps.is_empty() {
        println!(
            "shrinking: no smaller variant still violates {}",
            shrunk.property
        );
        return;
    }
    let path = args
        .shrunk_to
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ratelab-shrunk-{seed}.toml")));
    let replay = match std::fs::write(&path, shrunk.scenario.to_toml()) {
        Ok(()) => replay_command(Some(&path), seed),
        Err(error) => format!("(cannot write {}: {error})", path.display()),
    };
    print!("{}", sim::shrink::render(&shrunk, seed, &replay));
}

/// Shrinks one failing explore seed, writes the smallest scenario found and says how to
/// replay it (one line).
fn shrink_seed(
    args: &ExploreArgs,
    scenario: &Scenario,
    seed: u64,
    report: &sim::checker::Report,
    events: Vec<sim::event::Event>,
) -> String {
    let Some(shrunk) = sim::shrink::shrink(scenario, seed, report, events, args.shrink_runs) else {
        return "shrunk: nothing to shrink".to_owned();
    };
    if shrunk.steps.is_empty() {
        return format!(
            "shrunk: no smaller variant still violates {} ({} runs)",
            shrunk.property, shrunk.runs
        );
    }
    let directory = args.shrunk_dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = directory.join(format!("ratelab-shrunk-{seed}.toml"));
    let (gateways, faults, duration_ms, rate_per_s, keys) = sim::shrink::size(&shrunk.scenario);
    let replay = match std::fs::write(&path, shrunk.scenario.to_toml()) {
        Ok(()) => replay_command(Some(&path), seed),
        Err(error) => format!("(cannot write {}: {error})", path.display()),
    };
    format!(
        "shrunk ({} steps, {} runs: {gateways} gateways, {faults} faults, {duration_ms} ms, {rate_per_s} per s, {keys} keys; still violates {}): {replay}",
        shrunk.steps.len(),
        shrunk.runs,
        shrunk.property
    )
}

/// What one explored seed came to.
enum SeedOutcome {
    /// Every safety property held.
    Safe,
    /// The run could not complete.
    Broken(String),
    /// Safety properties failed: their names, and the shrunk scenario's summary.
    Failing {
        names: String,
        shrunk: Option<String>,
    },
}

/// Runs one seed of `explore` (the fixed scenario, or the one the seed draws) and shrinks
/// it if it fails.
fn explore_seed(args: &ExploreArgs, fixed: Option<&Scenario>, seed: u64) -> SeedOutcome {
    let scenario = fixed.cloned().unwrap_or_else(|| Scenario::swarm(seed));
    match sim::simulate(&scenario, seed) {
        Ok((report, events)) if !report.safe() => {
            let names: Vec<&str> = report
                .verdicts
                .iter()
                .filter(|verdict| {
                    !verdict.held && verdict.kind == sim::checker::VerdictKind::Safety
                })
                .map(|verdict| verdict.name.as_str())
                .collect();
            let shrunk = if args.no_shrink || args.shrink_runs == 0 {
                None
            } else {
                Some(shrink_seed(args, &scenario, seed, &report, events))
            };
            SeedOutcome::Failing {
                names: names.join(", "),
                shrunk,
            }
        }
        Ok(_) => SeedOutcome::Safe,
        Err(error) => SeedOutcome::Broken(error.to_string()),
    }
}

fn explore(args: &ExploreArgs) -> ExitCode {
    let fixed = match &args.scenario {
        Some(path) => match load(path) {
            Ok(scenario) => Some(scenario),
            Err(error) => {
                eprintln!("ratelab: {error}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let bar = indicatif::ProgressBar::new(args.seeds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if args.jobs == Some(0) {
        eprintln!("ratelab: --jobs must be at least 1");
        return ExitCode::from(2);
    }
    let jobs = args.jobs.unwrap_or_else(sim::explore::jobs_default);
    let failing_so_far = std::sync::atomic::AtomicU64::new(0);
    let outcomes = sim::explore::run_ordered(
        args.first_seed,
        args.seeds,
        jobs,
        |seed| explore_seed(args, fixed.as_ref(), seed),
        |seed, outcome| {
            match outcome {
                SeedOutcome::Broken(error) => bar.println(format!("seed {seed}: {error}")),
                SeedOutcome::Failing { .. } => {
                    failing_so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                SeedOutcome::Safe => {}
            }
            let failing = failing_so_far.load(std::sync::atomic::Ordering::Relaxed);
            bar.set_message(format!("{failing} failing"));
            bar.inc(1);
        },
    );
    let mut failing = Vec::new();
    let mut broken = 0u64;
    for (seed, outcome) in outcomes {
        match outcome {
            SeedOutcome::Safe => {}
            SeedOutcome::Broken(_) => broken += 1,
            SeedOutcome::Failing { names, shrunk } => failing.push((seed, names, shrunk)),
        }
    }
    bar.finish();
    for (seed, names, shrunk) in &failing {
        println!(
            "seed {seed} violates {names}; replay: {}",
            replay_command(args.scenario.as_ref(), *seed)
        );
        if let Some(shrunk) = shrunk {
            println!("  {shrunk}");
        }
    }
    println!(
        "{} of {} seeds violated a safety property; {broken} could not run",
        failing.len(),
        args.seeds
    );
    if broken > 0 {
        ExitCode::from(2)
    } else if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

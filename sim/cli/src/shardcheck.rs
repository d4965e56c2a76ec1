//! `ratelab shardcheck`: check a key-scheme change before it ships.
//!
//! Exit codes: 0 decisions, collisions and CROSSSLOT unchanged (load moves and bound changes
//! are reported, not failures); 1 the semantics changed; 2 bad input (the field named).

use std::path::PathBuf;
use std::process::ExitCode;

use sim::compare::{Report, SchemeReport};
use sim::schemes::SchemeSet;
use sim::traffic::TrafficRequest;

use crate::Format;

#[derive(clap::Args, Debug)]
pub struct ShardcheckArgs {
    /// The key-scheme file in use (TOML, see sim/schemes/README.md).
    #[arg(long)]
    before: PathBuf,
    /// The key-scheme file to move to.
    #[arg(long)]
    after: PathBuf,
    /// Traffic: the load this scenario generates (its seed: --seed).
    #[arg(long, group = "traffic")]
    scenario: Option<PathBuf>,
    /// Traffic: a recorded request log, one JSON object per line.
    #[arg(long, group = "traffic")]
    trace: Option<PathBuf>,
    /// Traffic: the load swarm seed N draws.
    #[arg(long, group = "traffic")]
    swarm: Option<u64>,
    /// The scenario's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also run the load through the simulation under both schemes (needs --scenario or
    /// --swarm): decisions compared with the noise floor subtracted, and the cut-over.
    #[arg(long)]
    simulate: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn scheme(path: &PathBuf) -> Result<SchemeSet, String> {
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    SchemeSet::from_toml(&read(path)?, &name)
        .map_err(|error| format!("{}: {error}", path.display()))
}

/// The scenario and seed `--simulate` runs.
fn simulated_scenario(args: &ShardcheckArgs) -> Result<(sim::scenario::Scenario, u64), String> {
    if let Some(path) = &args.scenario {
        Ok((crate::load(path)?, args.seed))
    } else if let Some(seed) = args.swarm {
        Ok((sim::scenario::Scenario::swarm(seed), seed))
    } else {
        Err(
            "--simulate: needs --scenario or --swarm (a trace has no network to simulate)"
                .to_owned(),
        )
    }
}

fn traffic(args: &ShardcheckArgs) -> Result<Vec<TrafficRequest>, String> {
    if let Some(path) = &args.scenario {
        let scenario = crate::load(path)?;
        sim::traffic::from_scenario(&scenario, args.seed)
            .map_err(|error| format!("{}: {error}", path.display()))
    } else if let Some(path) = &args.trace {
        sim::traffic::from_trace(&read(path)?)
            .map_err(|error| format!("{}: {error}", path.display()))
    } else if let Some(seed) = args.swarm {
        sim::traffic::from_swarm(seed)
    } else {
        Err("traffic: give one of --scenario, --trace, --swarm".to_owned())
    }
}

pub fn run(args: &ShardcheckArgs) -> ExitCode {
    let outcome = scheme(&args.before).and_then(|before| {
        let after = scheme(&args.after)?;
        let simulated_on = if args.simulate {
            Some(simulated_scenario(args)?)
        } else {
            None
        };
        let traffic = traffic(args)?;
        let report =
            sim::compare::compare(&before, &after, &traffic).map_err(|error| error.to_string())?;
        let simulated = match simulated_on {
            Some((scenario, seed)) => Some(
                sim::shardsim::simulate(&before, &after, &scenario, seed, &traffic)
                    .map_err(|error| error.to_string())?,
            ),
            None => None,
        };
        Ok((report, simulated))
    });
    let (report, simulated) = match outcome {
        Ok(found) => found,
        Err(error) => {
            eprintln!("ratelab shardcheck: {error}");
            return ExitCode::from(2);
        }
    };
    let mut changes = report.semantic_changes();
    if let Some(simulated) = &simulated
        && simulated.beyond_noise > 0
    {
        changes.push(format!(
            "{} simulated decisions differ beyond the noise floor",
            simulated.beyond_noise
        ));
    }
    match args.format {
        Format::Text => {
            // The verdict line last, after the simulated sections.
            let mut text = render(&report);
            if let Some(simulated) = &simulated {
                text.push_str(&render_simulated(simulated, &report.cutover));
            }
            text.push_str(&verdict(&changes));
            print!("{text}");
        }
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "semantics_changed": changes,
                "report": report,
                "simulated": simulated,
            })
        ),
    }
    if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn render_scheme(out: &mut String, report: &SchemeReport) {
    use std::fmt::Write;
    let load = &report.load;
    let topology = if report.cluster {
        format!("cluster of {}", report.nodes)
    } else {
        "standalone".to_owned()
    };
    let _ = writeln!(out, "  {} ({topology})", report.name);
    let hottest_node = load.hottest_node.map_or("-".to_owned(), |(node, share)| {
        format!("node {node} {}", pct(share))
    });
    let hottest_slot = load.hottest_slot.map_or("-".to_owned(), |(slot, share)| {
        format!("slot {slot} {}", pct(share))
    });
    let run = match load.hot_run {
        Some((first, last)) if first == last => format!("one hot slot ({first})"),
        Some((first, last)) => format!(
            "a run of hot slots {first}-{last} ({})",
            pct(load.hot_run_share)
        ),
        None => "no hot slot".to_owned(),
    };
    let _ = writeln!(
        out,
        "    load: {} keys, {} commands on {} slots; hottest {hottest_slot}, {hottest_node} (max/mean {:.2}); {} hot slots, {run}",
        load.keys, load.commands, load.slots_used, load.node_max_over_mean, load.hot_slots
    );
    let nodes: Vec<String> = load
        .per_node
        .iter()
        .enumerate()
        .map(|(node, (keys, commands))| format!("{node}: {keys}/{commands}"))
        .collect();
    let slots: Vec<String> = load
        .top_slots
        .iter()
        .take(5)
        .map(|(slot, keys, commands)| format!("{slot}: {keys}/{commands}"))
        .collect();
    let _ = writeln!(
        out,
        "    keys/commands per node [{}]; busiest slots [{}]",
        nodes.join(", "),
        slots.join(", ")
    );
    let _ = writeln!(
        out,
        "    memory: {} keys touched, {} live, ~{} bytes",
        report.memory.keys_touched, report.memory.keys_live, report.memory.bytes
    );
    for bound in &report.bounds {
        let _ = writeln!(
            out,
            "    bound {}: {}: at most {} per window, as few as {} before a refusal ({})",
            bound.kind, bound.quota, bound.upper_per_window, bound.floor_before_refusal, bound.why
        );
    }
    for collision in &report.collisions {
        let _ = writeln!(
            out,
            "    collision ({}) {} / {}: e.g. {:?}",
            collision.cause, collision.kinds.0, collision.kinds.1, collision.witness
        );
    }
    let _ = writeln!(
        out,
        "    collisions seen in traffic: {}",
        report.confirmed_count
    );
    for seen in &report.confirmed {
        let _ = writeln!(
            out,
            "      {:?}: {} {} and {} {}",
            seen.key, seen.first.0, seen.first.1, seen.second.0, seen.second.1
        );
    }
    if let Some(example) = &report.outside_alphabet_example {
        let _ = writeln!(
            out,
            "    field values outside their declared alphabet: {} (e.g. {example}): the collision analysis does not cover them",
            report.outside_alphabet
        );
    }
    let _ = writeln!(out, "    CROSSSLOT decisions: {}", report.crossslot_count);
    for cross in &report.crossslot {
        let keys: Vec<String> = cross
            .keys
            .iter()
            .map(|(key, slot)| format!("{key}@{slot}"))
            .collect();
        let _ = writeln!(out, "      request {}: {}", cross.index, keys.join(" "));
    }
}

fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "shardcheck over {} requests", report.requests);
    render_scheme(&mut out, &report.before);
    render_scheme(&mut out, &report.after);
    let differences = &report.differences;
    let _ = writeln!(
        out,
        "  decisions that differ: {} ({})",
        differences.count,
        pct(differences.share)
    );
    for (kind, count) in &differences.per_limit {
        let _ = writeln!(out, "    {kind}: {count}");
    }
    for example in &differences.examples {
        let show = |decided: &[sim::compare::Decided]| {
            decided
                .iter()
                .map(|d| {
                    format!(
                        "{} {} {}",
                        d.kind,
                        d.key,
                        if d.allowed { "allow" } else { "deny" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "    request {} at {} ms: before [{}] after [{}]",
            example.index,
            example.at_ms,
            show(&example.before),
            show(&example.after)
        );
    }
    let cutover = &report.cutover;
    let _ = writeln!(
        out,
        "  cut-over ({} gateways switching at {:?} ms): {} of {} logical keys get a new key (a fresh counter); worst over-admission {} on {} (bound {})",
        cutover.switch_ms.len(),
        cutover.switch_ms,
        cutover.keys_renamed,
        cutover.logical_keys,
        cutover.worst_over_admission,
        cutover.worst_key.as_deref().unwrap_or("-"),
        cutover.worst_bound
    );
    let _ = writeln!(
        out,
        "    worst {} admitted in one window on {} (bound {}: both schemes' bounds summed when renamed)",
        cutover.worst_in_window,
        cutover.worst_in_window_key.as_deref().unwrap_or("-"),
        cutover.bound_in_window
    );
    out
}

fn verdict(changes: &[String]) -> String {
    if changes.is_empty() {
        "semantics unchanged\n".to_owned()
    } else {
        format!("SEMANTICS CHANGED: {}\n", changes.join("; "))
    }
}

fn render_simulated(
    simulated: &sim::shardsim::Simulated,
    in_process: &sim::compare::Cutover,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  simulated (load seed {}, network seeds {} and {} for the noise floor): {} requests compared",
        simulated.seed, simulated.seed, simulated.noise_seed, simulated.requests
    );
    let _ = writeln!(
        out,
        "    decisions that differ: {} ({} where the old scheme is stable across network seeds); noise floor (old vs old): {}; beyond the noise floor: {}",
        simulated.differing, simulated.stable, simulated.noise, simulated.beyond_noise
    );
    for limit in &simulated.per_limit {
        let _ = writeln!(
            out,
            "    {}: {} differ, noise {}, stable {}, excess {}{}",
            limit.kind,
            limit.differing,
            limit.noise,
            limit.stable,
            limit.excess,
            if limit.blamed {
                " BLAMED (more than twice the noise)"
            } else {
                " (within twice the noise: not blamed)"
            }
        );
    }
    let show = |decided: &[sim::per_limit::LimitDecision]| {
        decided
            .iter()
            .map(|d| {
                let verdict = match d.allowed {
                    Some(true) => "allow",
                    Some(false) => "deny",
                    None => "error",
                };
                format!("{} {} {verdict}", d.kind, d.key)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for example in &simulated.examples {
        let _ = writeln!(
            out,
            "    request {:#x} at {} ms{}: before [{}] after [{}]",
            example.id,
            example.request.at_ms,
            if example.stable { "" } else { " (noisy)" },
            show(&example.before),
            show(&example.after)
        );
    }
    let cutover = &simulated.cutover;
    let _ = writeln!(
        out,
        "    cut-over simulated: worst {} admitted in one window on {} (bound {}, both schemes' bounds summed when renamed); over the old scheme alone {} on {} (bound {}; in process: {}, bound {})",
        cutover.worst_in_window,
        cutover.worst_in_window_key.as_deref().unwrap_or("-"),
        cutover.bound_in_window,
        cutover.worst_over_admission,
        cutover.worst_key.as_deref().unwrap_or("-"),
        cutover.worst_bound,
        in_process.worst_over_admission,
        in_process.worst_bound
    );
    if cutover.worst_in_window > cutover.bound_in_window
        || cutover.worst_over_admission > cutover.worst_bound
    {
        let _ = writeln!(
            out,
            "    the simulated cut-over EXCEEDS its bound{}",
            if simulated.faults > 0 {
                format!(
                    ": the scenario schedules {} faults (a restart or failover loses counters, a clock step moves windows)",
                    simulated.faults
                )
            } else {
                String::new()
            }
        );
    }
    out
}

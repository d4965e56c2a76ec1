//! `ratelab report`: runs the figures' sweeps (`sim::sweep`) on every core and writes, per
//! figure, an SVG, a PNG and the CSV they were drawn from, then `README.md` with each figure,
//! one sentence computed from its data, and the command that made it.
//!
//! Everything written is a function of the sweep files and the code: no wall clock, no
//! machine name, floats printed at fixed precision, so CI can regenerate `results/` and
//! demand the same bytes.

mod glyphs;
mod heatmap;
mod plot;
mod storage;
mod summary;
mod timeline;
mod verdicts;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sim::sweep::{Row, Sweep};

/// The built-in figures, in the README's order: (file name, text). Shipped in
/// `sim/sweeps/`, embedded so the binary needs no checkout to run them.
const BUILTIN: [(&str, &str); 9] = [
    (
        "latency-vs-rtt.toml",
        include_str!("../../../sweeps/latency-vs-rtt.toml"),
    ),
    (
        "round-trips.toml",
        include_str!("../../../sweeps/round-trips.toml"),
    ),
    (
        "latency-vs-load.toml",
        include_str!("../../../sweeps/latency-vs-load.toml"),
    ),
    (
        "pool-wait-vs-pool-size.toml",
        include_str!("../../../sweeps/pool-wait-vs-pool-size.toml"),
    ),
    (
        "latency-vs-gateways.toml",
        include_str!("../../../sweeps/latency-vs-gateways.toml"),
    ),
    (
        "latency-vs-shards.toml",
        include_str!("../../../sweeps/latency-vs-shards.toml"),
    ),
    (
        "hottest-share-vs-shards.toml",
        include_str!("../../../sweeps/hottest-share-vs-shards.toml"),
    ),
    (
        "over-admission-by-fault.toml",
        include_str!("../../../sweeps/over-admission-by-fault.toml"),
    ),
    (
        "latency-percentiles.toml",
        include_str!("../../../sweeps/latency-percentiles.toml"),
    ),
];

/// The counterexample figure's name, scenario and seed: new-api's race R3 on the IP list,
/// shrunk.
const COUNTEREXAMPLE: &str = "counterexample-r3";
const COUNTEREXAMPLE_SCENARIO: &str = include_str!("../../../scenarios/r3-legacy-ip-list.toml");
const COUNTEREXAMPLE_SEED: u64 = 1;
/// Shrinking runs for the counterexample (as `ratelab run`'s default).
const COUNTEREXAMPLE_SHRINK_RUNS: u32 = 40;

/// The storage comparison's name (simulated, `sim::storage`); not a sweep.
pub const STORAGE: &str = "storage-comparison";
/// The verdict table's name (`--only verdicts`) and file.
const VERDICTS: &str = "verdicts";

/// One figure of the README.
struct Section {
    name: String,
    title: String,
    sentence: String,
    runs: usize,
    command: String,
}

/// Arguments of `ratelab report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Where the figures, their CSV and README.md go (created if missing).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Shorter runs and fewer points per sweep (each sweep's `[quick]`), for a first look.
    #[arg(long)]
    quick: bool,
    /// Only these figures (sweep names, e.g. `latency-vs-rtt`, or `counterexample-r3`).
    #[arg(long, num_args = 1..)]
    only: Vec<String>,
    /// Runs at once, each on its own thread. Default: the machine's cores. The output does
    /// not depend on it.
    #[arg(long)]
    jobs: Option<usize>,
    /// Run this sweep file (repeatable) instead of the built-in figures.
    #[arg(long)]
    sweep: Vec<PathBuf>,
}

/// A failure of the command: bad input (exit 2) or a run that could not complete (exit 2).
#[derive(Debug)]
enum ReportError {
    /// A sweep file is unreadable or invalid.
    Sweep(String),
    /// The arguments ask for something that does not exist.
    Usage(String),
    /// The output cannot be written.
    Output(String),
    /// A simulation could not complete.
    Run(String),
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Sweep(text)
            | ReportError::Usage(text)
            | ReportError::Output(text)
            | ReportError::Run(text) => f.write_str(text),
        }
    }
}

/// Runs `ratelab report`; exit 0 when every figure was written, 2 otherwise.
pub fn run(args: &ReportArgs) -> ExitCode {
    match report(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ratelab report: {error}");
            ExitCode::from(2)
        }
    }
}

/// The storage comparison's sentence for `rows` (`what`: `Simulated`, `Measured`).
pub fn storage_sentence(rows: &[sim::storage::Row], what: &str) -> String {
    storage::sentence(rows, what)
}

/// Writes the storage comparison's `<stem>.svg` and `<stem>.png` into `out` (for `ratelab
/// bench --only storage`, which draws the measured rows as the report draws the simulated).
pub fn write_storage_figure(
    out: &Path,
    stem: &str,
    title: &str,
    rows: &[sim::storage::Row],
) -> Result<(), String> {
    plot::register_font()?;
    let svg = storage::svg(title, rows)?;
    std::fs::write(out.join(format!("{stem}.svg")), svg)
        .map_err(|error| format!("cannot write {}: {error}", out.display()))?;
    storage::png(title, rows, &out.join(format!("{stem}.png")))
}

/// The built-in sweeps, parsed (their `base` is inline, so the directory is not read).
pub fn builtin_sweeps() -> Result<Vec<Sweep>, String> {
    BUILTIN
        .iter()
        .map(|(file, text)| {
            Sweep::from_toml(text, Path::new("sim/sweeps"))
                .map_err(|error| format!("sim/sweeps/{file}: {error}"))
        })
        .collect()
}

fn select_sweeps(args: &ReportArgs) -> Result<Vec<Sweep>, ReportError> {
    let all = if args.sweep.is_empty() {
        builtin_sweeps().map_err(ReportError::Sweep)?
    } else {
        args.sweep
            .iter()
            .map(|path| {
                Sweep::from_path(path)
                    .map_err(|error| ReportError::Sweep(format!("{}: {error}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    for name in &args.only {
        let special = args.sweep.is_empty()
            && (name == COUNTEREXAMPLE || name == STORAGE || name == VERDICTS);
        if !special && !all.iter().any(|sweep| &sweep.name == name) {
            let mut names: Vec<&str> = all.iter().map(|sweep| sweep.name.as_str()).collect();
            if args.sweep.is_empty() {
                names.push(STORAGE);
                names.push(COUNTEREXAMPLE);
                names.push(VERDICTS);
            }
            return Err(ReportError::Usage(format!(
                "--only {name}: no such figure (there are {})",
                names.join(", ")
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|sweep| args.only.is_empty() || args.only.contains(&sweep.name))
        .collect())
}

/// Creates the output directory and proves it writable before any run starts.
fn prepare_out(out: &Path) -> Result<(), ReportError> {
    let unwritable = |error: std::io::Error| {
        ReportError::Output(format!("cannot write to {}: {error}", out.display()))
    };
    std::fs::create_dir_all(out).map_err(unwritable)?;
    let probe = out.join(".ratelab-report-probe");
    std::fs::write(&probe, b"").map_err(unwritable)?;
    std::fs::remove_file(&probe).map_err(unwritable)
}

fn report(args: &ReportArgs) -> Result<(), ReportError> {
    if args.jobs == Some(0) {
        return Err(ReportError::Usage("--jobs must be at least 1".to_owned()));
    }
    let sweeps = select_sweeps(args)?;
    prepare_out(&args.out)?;
    plot::register_font().map_err(ReportError::Output)?;
    let jobs = args.jobs.unwrap_or_else(sim::explore::jobs_default);
    let total = sim::sweep::run_count(&sweeps, args.quick);
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rows = sim::sweep::run(&sweeps, args.quick, jobs, || bar.inc(1))
        .map_err(|error| ReportError::Run(error.to_string()))?;
    bar.finish_and_clear();
    let mut sections = Vec::new();
    for (sweep, rows) in sweeps.iter().zip(&rows) {
        let sentence = write_figure(&args.out, sweep, rows)?;
        println!("{}: {sentence}", sweep.name);
        sections.push(Section {
            name: sweep.name.clone(),
            title: sweep.title.clone(),
            sentence,
            runs: sweep.runs(args.quick).len(),
            command: command(&sweep.name, args, sweep_path(args, &sweep.name)),
        });
    }
    let wants = |name: &str| args.only.is_empty() || args.only.iter().any(|n| n == name);
    if args.sweep.is_empty() && wants(STORAGE) {
        let section = write_storage(&args.out, args)?;
        println!("{}: {}", section.name, section.sentence);
        sections.push(section);
    }
    if args.sweep.is_empty() && wants(COUNTEREXAMPLE) {
        let section = write_counterexample(&args.out, args)?;
        println!("{}: {}", section.name, section.sentence);
        sections.push(section);
    }
    let verdicts = args.sweep.is_empty() && wants(VERDICTS);
    if verdicts {
        write_verdicts(&args.out, args, jobs)?;
    }
    let readme = readme(
        &sections,
        args.quick,
        verdicts.then(|| command(VERDICTS, args, None)),
    );
    // A partial run (`--only`) keeps the README a full run wrote: its other figures' sections
    // would otherwise vanish (and CI's byte check would fail on results/README.md).
    let readme_path = args.out.join("README.md");
    if args.only.is_empty() || !readme_path.exists() {
        write(&readme_path, readme.as_bytes())?;
    } else {
        println!(
            "{} left as it was (--only: a partial run)",
            readme_path.display()
        );
    }
    println!(
        "{} figure(s), {total} runs, written to {}",
        sections.len(),
        args.out.display()
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes)
        .map_err(|error| ReportError::Output(format!("cannot write {}: {error}", path.display())))
}

/// Writes one figure's CSV, SVG and PNG; returns its README sentence.
fn write_figure(out: &Path, sweep: &Sweep, rows: &[Row]) -> Result<String, ReportError> {
    write(
        &out.join(format!("{}.csv", sweep.name)),
        sim::sweep::csv(rows).as_bytes(),
    )?;
    let png_path = out.join(format!("{}.png", sweep.name));
    // A heatmap's height follows its rows, so it has its own canvas.
    let svg = if sweep.plot.kind == sim::sweep::PlotKind::Heatmap {
        heatmap::png(sweep, rows, &png_path).map_err(ReportError::Output)?;
        heatmap::svg(sweep, rows).map_err(ReportError::Output)?
    } else {
        plot::png(sweep, rows, &png_path).map_err(ReportError::Output)?;
        plot::svg(sweep, rows).map_err(ReportError::Output)?
    };
    write(&out.join(format!("{}.svg", sweep.name)), svg.as_bytes())?;
    Ok(summary::sentence(sweep, rows))
}

/// The seed's storage comparison, simulated at 1 ms RTT (`sim::storage`).
fn write_storage(out: &Path, args: &ReportArgs) -> Result<Section, ReportError> {
    let rows = sim::storage::simulate(sim::storage::RTT_US)
        .map_err(|error| ReportError::Run(format!("{STORAGE}: {error}")))?;
    let title = "The seed's storage comparison, simulated: one sequential caller, RTT 1 ms";
    write(
        &out.join(format!("{STORAGE}.csv")),
        sim::storage::csv(&rows).as_bytes(),
    )?;
    let svg = storage::svg(title, &rows).map_err(ReportError::Output)?;
    write(&out.join(format!("{STORAGE}.svg")), svg.as_bytes())?;
    storage::png(title, &rows, &out.join(format!("{STORAGE}.png"))).map_err(ReportError::Output)?;
    let sentence = format!(
        "What it measures: {} requests from one caller that awaits each decision, {} users each \
         asking ten times its quota (10/s), through the real limiter code (the GCRA script on \
         the in-process model); a decision costs its round trips × 1 ms of virtual time and \
         nothing else, so the rate is one caller's decisions per simulated second and CPU is \
         free; the machine's own figures are the measured version, written by `ratelab bench \
         --only storage --out results/measured` into [`measured/`](measured/README.md), \
         outside CI's byte check. {}",
        sim::storage::DECISIONS,
        sim::storage::KEYS,
        storage::sentence(&rows, "Simulated")
    );
    Ok(Section {
        name: STORAGE.to_owned(),
        title: title.to_owned(),
        sentence,
        runs: sim::storage::Subject::ALL.len(),
        command: command(STORAGE, args, None),
    })
}

/// The counterexample: R3 on new-api's IP list, shrunk, as a timeline.
fn write_counterexample(out: &Path, args: &ReportArgs) -> Result<Section, ReportError> {
    let scenario = sim::scenario::Scenario::from_toml(COUNTEREXAMPLE_SCENARIO)
        .map_err(|error| ReportError::Sweep(format!("r3-legacy-ip-list.toml: {error}")))?;
    let found =
        sim::timeline::counterexample(&scenario, COUNTEREXAMPLE_SEED, COUNTEREXAMPLE_SHRINK_RUNS)
            .map_err(|error| ReportError::Run(format!("{COUNTEREXAMPLE}: {error}")))?;
    let Some(timeline) = found else {
        return Err(ReportError::Run(format!(
            "{COUNTEREXAMPLE}: r3-legacy-ip-list.toml with seed {COUNTEREXAMPLE_SEED} no longer violates anything"
        )));
    };
    let (gateways, _, duration_ms, _, _) = sim::shrink::size(&timeline.scenario);
    let title = format!(
        "Counterexample: new-api's R3 on the IP list (seed {COUNTEREXAMPLE_SEED}, shrunk to {gateways} gateway(s), {duration_ms} ms)"
    );
    write(
        &out.join(format!("{COUNTEREXAMPLE}.csv")),
        sim::timeline::csv(&timeline).as_bytes(),
    )?;
    let svg = timeline::svg(&timeline, &title).map_err(ReportError::Output)?;
    write(&out.join(format!("{COUNTEREXAMPLE}.svg")), svg.as_bytes())?;
    timeline::png(
        &timeline,
        &title,
        &out.join(format!("{COUNTEREXAMPLE}.png")),
    )
    .map_err(ReportError::Output)?;
    Ok(Section {
        name: COUNTEREXAMPLE.to_owned(),
        title,
        sentence: summary::counterexample(&timeline),
        runs: 1,
        command: command(COUNTEREXAMPLE, args, None),
    })
}

/// The verdict table: `verdicts.md`, and beside it in `verdicts/` the scenario of each
/// simulated cell that violated (its replay command names the file). Files left there by an
/// earlier run are removed first, so a cell that stops violating leaves nothing behind.
fn write_verdicts(out: &Path, args: &ReportArgs, jobs: usize) -> Result<(), ReportError> {
    let options = verdicts::Options::new(args.quick, jobs);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} verdict checks")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let table = verdicts::compute(&options, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .map_err(ReportError::Run)?;
    bar.finish_and_clear();
    let (text, files) = verdicts::render(&table, out, &command(VERDICTS, args, None));
    let directory = out.join(VERDICTS);
    if directory.is_dir() {
        let entries = std::fs::read_dir(&directory).map_err(|error| {
            ReportError::Output(format!("cannot read {}: {error}", directory.display()))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                std::fs::remove_file(&path).map_err(|error| {
                    ReportError::Output(format!("cannot remove {}: {error}", path.display()))
                })?;
            }
        }
    }
    if !files.is_empty() {
        std::fs::create_dir_all(&directory).map_err(|error| {
            ReportError::Output(format!("cannot create {}: {error}", directory.display()))
        })?;
    }
    for (file, toml) in &files {
        write(&out.join(file), toml.as_bytes())?;
    }
    write(&out.join(format!("{VERDICTS}.md")), text.as_bytes())?;
    let count = |verdict| {
        table
            .cells
            .iter()
            .flatten()
            .filter(|cell| cell.verdict() == verdict)
            .count()
    };
    println!(
        "{VERDICTS}: {} cells hold, {} violated, {} unproven, {} n/a ({} exhaustive orders, {} random cases, {} simulated runs)",
        count(verdicts::Verdict::Holds),
        count(verdicts::Verdict::Violated),
        count(verdicts::Verdict::Unproven),
        count(verdicts::Verdict::NotApplicable),
        table.orders,
        table.cases,
        table.runs
    );
    Ok(())
}

/// The `--sweep` file that holds the sweep `name`, when sweeps came from files.
fn sweep_path<'a>(args: &'a ReportArgs, name: &str) -> Option<&'a Path> {
    args.sweep
        .iter()
        .map(PathBuf::as_path)
        .find(|path| Sweep::from_path(path).is_ok_and(|sweep| sweep.name == name))
}

/// The command that makes one figure, as the README prints it.
fn command(name: &str, args: &ReportArgs, file: Option<&Path>) -> String {
    let mut command = String::from("cargo run --release -p sim -- report");
    if args.quick {
        command.push_str(" --quick");
    }
    if let Some(file) = file {
        command.push_str(&format!(" --sweep {}", file.display()));
    }
    command.push_str(&format!(" --only {name}"));
    command
}

fn readme(sections: &[Section], quick: bool, verdicts: Option<String>) -> String {
    let mut text = String::from(
        "# ratelab report\n\nGenerated by `ratelab report`; do not edit (CI regenerates this \
         folder and fails on any difference). Every figure is simulated from fixed seeds, \
         so the numbers are the same on every machine. Each figure's CSV beside it holds \
         one row per run; the sweep that made it is in `sim/sweeps/`.\n\n\
         Colours: warm (red, orange, brown) for new-api's legacy limiters, cool (blue, \
         green, teal) for the atomic scripts, grey and purple for in-process limiters; \
         dashed lines are the second metric of a figure (p99 beside p50).\n",
    );
    if quick {
        text.push_str("\n**Quick mode**: shorter runs and fewer points than the full report.\n");
    }
    for (index, section) in sections.iter().enumerate() {
        text.push_str(&format!(
            "\n## {}. {}\n\n![{}]({}.svg)\n\n{}\n\nData: [`{}.csv`]({}.csv) \
             ({} runs). Made by `{}`.\n",
            index + 1,
            section.title,
            section.title,
            section.name,
            section.sentence,
            section.name,
            section.name,
            section.runs,
            section.command
        ));
    }
    if let Some(command) = verdicts {
        text.push_str(&format!(
            "\n## Verdict table\n\nEvery limiter against every fault class, each cell computed \
             by running its checks (every interleaving of a few gateways' round trips, and the \
             simulation with fixed seeds): [`verdicts.md`](verdicts.md). Made by `{command}`.\n"
        ));
    }
    text
}

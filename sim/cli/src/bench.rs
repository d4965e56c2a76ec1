//! `ratelab bench`: numbers for the closing notes, printed, never asserted.
//!
//! Each figure is measured against a peer in the same run, so that a ratio survives a noisy
//! machine: the in-memory limiter against the `governor` crate's keyed limiter. (The Redis
//! limiters' table against a real redis-server joins it with the limiters.)
//!
//! Wall-clock reads here are fine: this is the edge, not simulated code.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use ratelab::algo::RateQuota;
use ratelab::memory::MemoryLimiter;

/// Text for people: stdout, except under `--format csv`, where stdout carries only the CSV
/// rows (one header, so that the output parses as one CSV file) and everything else, the
/// titles, ratios and the other tables, goes to stderr.
macro_rules! text {
    ($format:expr, $($arg:tt)*) => {
        if $format == Format::Csv {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}

/// Which benchmarks to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    /// Both the Redis limiters and the in-memory limiter.
    All,
    /// Only the limiters against a real redis-server.
    Redis,
    /// Only the in-memory limiter against governor.
    Memory,
    /// Only the simulation's speed: simulated decisions per wall-second, 1 to 16 gateways.
    Sim,
    /// Only accepting connections: `ratelab serve` against redis-server, many at once.
    Accept,
    /// Only the seed's storage comparison (memory, Redis sequential, hybrid) against a real
    /// redis-server; with `--out DIR` its CSV, figure and a stamped README go there
    /// (`results/measured`).
    Storage,
}

/// Output format of the Redis table.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table for people.
    Table,
    /// CSV with the header `limiter,family,concurrency,...` on stdout: the limiter rows
    /// (Redis and in-process) only; every other line goes to stderr.
    Csv,
}

/// Options of `ratelab bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A Redis to measure against (`redis://host:port/`); without it a redis-server from PATH
    /// is started on a free port with persistence off.
    #[arg(long)]
    pub redis: Option<String>,
    /// Which benchmarks to run.
    #[arg(long, value_enum, default_value_t = Only::All)]
    pub only: Only,
    /// Output format for the Redis limiters.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Concurrent decisions (tasks) per Redis measurement, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Wall time per Redis measurement, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub duration_ms: u64,
    /// Decisions per measured case (per thread in the two-thread case).
    #[arg(long, default_value_t = 5_000_000)]
    pub decisions: u64,
    /// Keys for the bytes-per-key measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Gateway counts for the simulation's speed, comma-separated (the load stays 10k
    /// requests per simulated second in all).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub gateways: Vec<u32>,
    /// Connections opened at once by the accept benchmark.
    #[arg(long, default_value_t = 3_000)]
    pub connections: usize,
    /// A model server already running (`host:port`) for the accept benchmark; without it this
    /// binary's `serve` is started on a free port.
    #[arg(long)]
    pub model: Option<String>,
    /// Also write every table as CSV into this directory, one file per table (`limiters.csv`,
    /// `ratios.csv`, `memory_bare.csv`, `memory_bytes.csv`, `sim.csv`, `sim_summary.csv`,
    /// `accept.csv`), each with one header.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// Every table of the run as CSV, by file name: header and rows. Filled as the tables are
/// printed and written at the end with `--out`.
static TABLES: std::sync::Mutex<
    std::collections::BTreeMap<&'static str, (&'static str, Vec<String>)>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Adds a CSV row to table `name` (fields joined by commas, quoted when they hold one).
pub fn record(name: &'static str, header: &'static str, fields: &[String]) {
    let row = fields
        .iter()
        .map(|field| {
            if field.contains([',', '"', '\n']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    if let Ok(mut tables) = TABLES.lock() {
        tables
            .entry(name)
            .or_insert((header, Vec::new()))
            .1
            .push(row);
    }
}

fn write_tables(directory: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    let tables = TABLES
        .lock()
        .map_err(|_| std::io::Error::other("a bench thread panicked"))?;
    for (name, (header, rows)) in tables.iter() {
        let mut text = format!("{header}\n");
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        let path = directory.join(format!("{name}.csv"));
        std::fs::write(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs the benchmarks and prints their tables.
pub fn run(args: &BenchArgs) -> std::io::Result<()> {
    if matches!(args.only, Only::All | Only::Redis) {
        run_redis(args)?;
    }
    if matches!(args.only, Only::All | Only::Memory) {
        run_memory(args);
        run_memory_trait(args)?;
    }
    if matches!(args.only, Only::All | Only::Sim) {
        run_sim(args)?;
    }
    if matches!(args.only, Only::All | Only::Accept) {
        crate::bench_accept::run(
            args.connections,
            args.model.as_deref(),
            args.format == Format::Csv,
        )?;
    }
    if matches!(args.only, Only::All | Only::Storage) {
        crate::bench_storage::run(args.redis.as_deref(), args.out.as_deref())?;
    }
    if let Some(directory) = &args.out
        && !TABLES.lock().map_or(true, |tables| tables.is_empty())
    {
        write_tables(directory)?;
    }
    Ok(())
}

/// The throughput scenario: 4 gateways, 3 shards, 10k requests/s, atomic GCRA.
const PERF_SCENARIO: &str = include_str!("../../scenarios/perf-4-gateways-3-shards.toml");

/// The simulation's speed. Each row runs the throughput scenario with its gateway count (the
/// load is the same 10k requests per simulated second, split among them) and times the
/// harness (turmoil, RESP over simulated TCP, the model, the limiters) and the checker apart.
/// The peer, in the same run: the same decisions with the same script straight on one
/// in-process model (no turmoil, no RESP, no pool), the floor the simulation's overhead
/// stands on.
fn run_sim(args: &BenchArgs) -> std::io::Result<()> {
    use sim::checker;
    use sim::harness;
    use sim::scenario::Scenario;

    if args.gateways.is_empty() || args.gateways.contains(&0) {
        return Err(std::io::Error::other("--gateways needs positive numbers"));
    }
    let base = Scenario::from_toml(PERF_SCENARIO)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    text!(
        args.format,
        "simulation speed: {} ms of 10k requests/s on 1000 Zipf keys, atomic GCRA, 3-shard cluster, seed 1",
        base.duration_ms
    );
    text!(
        args.format,
        "{:>8} {:>10} {:>9} {:>9} {:>12} {:>12} {:>9}",
        "gateways",
        "decisions",
        "sim_s",
        "wall_s",
        "decisions/s",
        "sim/wall",
        "check_s"
    );
    let mut four_gateways = None;
    for &gateways in &args.gateways {
        let mut scenario = base.clone();
        scenario.gateways[0].count = gateways;
        let started = Instant::now();
        let output = harness::run(&scenario, 1).map_err(|error| std::io::Error::other(error.0))?;
        let harness_s = started.elapsed().as_secs_f64();
        let checked = Instant::now();
        let report = checker::check(&scenario, 1, &output.events);
        let check_s = checked.elapsed().as_secs_f64();
        let decisions = report.metrics.decisions;
        let wall_s = harness_s + check_s;
        let sim_s = output.simulated_ms as f64 / 1_000.0;
        let per_s = decisions as f64 / wall_s;
        text!(
            args.format,
            "{gateways:>8} {decisions:>10} {sim_s:>9.1} {wall_s:>9.2} {per_s:>12.0} {:>12.1} {check_s:>9.2}{}",
            sim_s / wall_s,
            if report.safe() {
                ""
            } else {
                "  (a safety property failed!)"
            }
        );
        record(
            "sim",
            "gateways,decisions,sim_s,wall_s,decisions_per_s,sim_per_wall,check_s,safe",
            &[
                gateways.to_string(),
                decisions.to_string(),
                format!("{sim_s:.1}"),
                format!("{wall_s:.2}"),
                format!("{per_s:.0}"),
                format!("{:.1}", sim_s / wall_s),
                format!("{check_s:.2}"),
                report.safe().to_string(),
            ],
        );
        if gateways == 4 {
            four_gateways = Some(per_s);
        }
    }
    // `explore` runs seeds on every core; the same scenario on as many threads at once
    // (seeds 1..=cores) gives the machine's aggregate rate.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut four = base.clone();
    four.gateways[0].count = 4;
    let started = Instant::now();
    let decisions: u64 = std::thread::scope(|scope| {
        let runs: Vec<_> = (1..=cores as u64)
            .map(|seed| {
                let scenario = &four;
                scope.spawn(move || {
                    sim::simulate(scenario, seed).map(|(report, _)| report.metrics.decisions)
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| match run.join() {
                Ok(Ok(decisions)) => Ok(decisions),
                Ok(Err(error)) => Err(std::io::Error::other(error.0)),
                Err(_) => Err(std::io::Error::other("a simulation thread panicked")),
            })
            .sum::<std::io::Result<u64>>()
    })?;
    let wall_s = started.elapsed().as_secs_f64();
    text!(
        args.format,
        "4 gateways, {cores} seeds on {cores} threads at once: {decisions} decisions in {wall_s:.2} s = {:.0} decisions/s, {:.1} simulated s per wall s in all",
        decisions as f64 / wall_s,
        base.duration_ms as f64 / 1_000.0 * cores as f64 / wall_s
    );
    let bare = bare_gcra_decisions_per_s(100_000);
    text!(
        args.format,
        "peer: the same GCRA script on one in-process model, no network: {bare:.0} decisions/s"
    );
    let summary = [
        (
            format!("decisions_per_s_{cores}_threads_4_gateways"),
            decisions as f64 / wall_s,
        ),
        ("bare_gcra_decisions_per_s".to_owned(), bare),
    ];
    for (measure, value) in summary {
        record(
            "sim_summary",
            "measure,value",
            &[measure, format!("{value:.0}")],
        );
    }
    if let Some(simulated) = four_gateways {
        text!(
            args.format,
            "simulated (4 gateways) / bare: {:.2} (the share of a decision's cost that is the limiter and the model)",
            simulated / bare
        );
    }
    Ok(())
}

/// Decisions per wall-second of the atomic GCRA limiter on a local model: 1000 keys in
/// turn, the model's clock moving 0.1 ms per decision (10k/s), quota 20 per second.
fn bare_gcra_decisions_per_s(decisions: u64) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};

    use ratelab::keys::{Identity, KeyScheme};
    use ratelab::limiter::atomic::{Algorithm, ScriptClock, ScriptLimiter};
    use ratelab::limiter::{Limiter, Request};
    use ratelab::model::{Model, NodeConfig};
    use ratelab::redis::Local;

    let tenth_ms = Arc::new(AtomicU64::new(17_000_000_000_000));
    let clock_tenths = Arc::clone(&tenth_ms);
    let model = Arc::new(std::sync::Mutex::new(Model::new(NodeConfig::standalone(1))));
    let local = Local::connect(
        model,
        Arc::new(move || clock_tenths.load(Ordering::Relaxed) / 10),
    );
    let scheme = KeyScheme::parse("rl:$ns:{u:$user}", 1).expect("a valid template");
    let quota = RateQuota::per_window(20, 1_000).expect("a valid quota");
    let mut limiter = ScriptLimiter::new(local, scheme, Algorithm::Gcra(quota), ScriptClock::Redis);
    let requests: Vec<Request> = (0..1_000u64)
        .map(|key| Request {
            identity: Identity::new("model").with("user", key.to_string()),
            cost: 1,
            now_ms: 0,
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let started = Instant::now();
    runtime.block_on(async {
        for decision in 0..decisions {
            tenth_ms.fetch_add(1, Ordering::Relaxed);
            let request = &requests[(decision % 1_000) as usize];
            black_box(
                limiter
                    .check(request)
                    .await
                    .expect("the local model always answers"),
            );
        }
    });
    decisions as f64 / started.elapsed().as_secs_f64()
}

fn run_redis(args: &BenchArgs) -> std::io::Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err(std::io::Error::other(
            "--concurrency needs positive numbers",
        ));
    }
    let started;
    let url = match &args.redis {
        Some(url) => url.clone(),
        None => {
            started = ratelab::redis_server::RedisServer::start()?;
            format!("redis://{}:{}/", started.host(), started.port())
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rows = runtime
        .block_on(crate::bench_redis::run_all(
            &url,
            &args.concurrency,
            Duration::from_millis(args.duration_ms),
        ))
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    text!(
        args.format,
        "limiters against a real redis-server ({url}), {} ms per cell",
        args.duration_ms
    );
    print_rows(&rows, args.format);
    text!(
        args.format,
        "atomic / legacy decisions per second, same concurrency:"
    );
    for &(atomic, legacy) in &[
        ("gcra", "newapi_ip_list"),
        ("sliding_log", "newapi_ip_list"),
        ("token_bucket", "newapi_model_request"),
        ("token_bucket@pool10", "newapi_model_request@pool10"),
        ("gcra@pool10", "newapi_ip_list@pool10"),
        ("multi_limit_3", "newapi_model_request"),
        ("success_reservation", "newapi_model_request"),
    ] {
        for &concurrency in &args.concurrency {
            let find = |name: &str| {
                rows.iter()
                    .find(|row| row.limiter == name && row.concurrency == concurrency)
                    .map(|row| row.decisions_per_s)
            };
            if let (Some(ours), Some(theirs)) = (find(atomic), find(legacy)) {
                text!(
                    args.format,
                    "  {atomic} / {legacy} at {concurrency}: {:.2}x",
                    ours / theirs
                );
                record(
                    "ratios",
                    "limiter,peer,concurrency,ratio",
                    &[
                        atomic.to_owned(),
                        legacy.to_owned(),
                        concurrency.to_string(),
                        format!("{:.2}", ours / theirs),
                    ],
                );
            }
        }
    }
    Ok(())
}

/// The in-process limiters through the `Limiter` trait and the same harness as the Redis
/// rows (the decision a gateway makes), with the ratios the closing notes quote.
fn run_memory_trait(args: &BenchArgs) -> std::io::Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err(std::io::Error::other(
            "--concurrency needs positive numbers",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rows = runtime
        .block_on(crate::bench_redis::run_memory(
            &args.concurrency,
            Duration::from_millis(args.duration_ms),
        ))
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    text!(
        args.format,
        "in-process limiters through the Limiter trait (key rendered from the request), {} ms per cell",
        args.duration_ms
    );
    print_rows(&rows, args.format);
    text!(
        args.format,
        "memory_gcra / peer decisions per second, same concurrency:"
    );
    for peer in ["newapi_memory", "governor_keyed"] {
        for &concurrency in &args.concurrency {
            let find = |name: &str| {
                rows.iter()
                    .find(|row| row.limiter == name && row.concurrency == concurrency)
                    .map(|row| row.decisions_per_s)
            };
            if let (Some(ours), Some(theirs)) = (find("memory_gcra"), find(peer)) {
                text!(
                    args.format,
                    "  memory_gcra / {peer} at {concurrency}: {:.2}x",
                    ours / theirs
                );
                record(
                    "ratios",
                    "limiter,peer,concurrency,ratio",
                    &[
                        "memory_gcra".to_owned(),
                        peer.to_owned(),
                        concurrency.to_string(),
                        format!("{:.2}", ours / theirs),
                    ],
                );
            }
        }
    }
    Ok(())
}

fn print_rows(rows: &[crate::bench_redis::Row], format: Format) {
    for row in rows {
        if let Ok(mut tables) = TABLES.lock() {
            tables
                .entry("limiters")
                .or_insert((crate::bench_redis::CSV_HEADER, Vec::new()))
                .1
                .push(row.csv());
        }
    }
    match format {
        Format::Csv => {
            // One header for every limiter table in the run (they share the columns).
            static HEADER_DONE: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !HEADER_DONE.swap(true, std::sync::atomic::Ordering::Relaxed) {
                println!("{}", crate::bench_redis::CSV_HEADER);
            }
            for row in rows {
                println!("{}", row.csv());
            }
        }
        Format::Table => {
            println!(
                "{:<24} {:<7} {:>4} {:>7} {:>7} {:>12} {:>9} {:>9}",
                "limiter", "family", "conc", "rt/dec", "cmd/dec", "decisions/s", "p50_us", "p99_us"
            );
            for row in rows {
                println!(
                    "{:<24} {:<7} {:>4} {:>7.2} {:>7.2} {:>12.0} {:>9.1} {:>9.1}",
                    row.limiter,
                    row.family,
                    row.concurrency,
                    row.round_trips_per_decision,
                    row.commands_per_decision,
                    row.decisions_per_s,
                    row.p50_us,
                    row.p99_us
                );
            }
        }
    }
}

fn run_memory(args: &BenchArgs) {
    text!(
        args.format,
        "in-memory limiter vs governor's keyed (dashmap) limiter, ns per decision (lower is better)"
    );
    text!(
        args.format,
        "ratelab reads std's Instant per decision; governor is run with the same clock (std)"
    );
    text!(
        args.format,
        "and with its default TSC clock (quanta); ratios are ratelab / governor-std."
    );
    text!(
        args.format,
        "{:<36} {:>9} {:>13} {:>16} {:>7}",
        "case",
        "ratelab",
        "governor-std",
        "governor-quanta",
        "ratio"
    );
    for case in MemoryCase::ALL {
        let ours = case.ratelab(args.decisions);
        let same_clock = case.governor(args.decisions, governor::clock::MonotonicClock);
        let default_clock = case.governor(args.decisions, governor::clock::QuantaClock::default());
        text!(
            args.format,
            "{:<36} {:>9.1} {:>13.1} {:>16.1} {:>7.2}",
            case.name(),
            ours,
            same_clock,
            default_clock,
            ours / same_clock
        );
        record(
            "memory_bare",
            "case,ratelab_ns,governor_std_ns,governor_quanta_ns,ratio",
            &[
                case.name().to_owned(),
                format!("{ours:.1}"),
                format!("{same_clock:.1}"),
                format!("{default_clock:.1}"),
                format!("{:.2}", ours / same_clock),
            ],
        );
    }
    match bytes_per_key(args.keys) {
        Some(bytes) => {
            text!(
                args.format,
                "ratelab memory limiter: {bytes:.0} bytes per key at {} keys (RSS growth)",
                args.keys
            );
            record(
                "memory_bytes",
                "keys,bytes_per_key",
                &[args.keys.to_string(), format!("{bytes:.0}")],
            );
        }
        None => {
            text!(
                args.format,
                "ratelab memory limiter: bytes per key unavailable (no /proc/self/status)"
            )
        }
    }
}

/// The measured situations.
#[derive(Clone, Copy, Debug)]
enum MemoryCase {
    /// One thread, one key, mostly allowed (a generous quota).
    OneKeyAllow,
    /// One thread, one key, mostly denied.
    OneKeyDeny,
    /// One thread, keys drawn from 100k.
    ManyKeys,
    /// Two threads on one hot key.
    TwoThreadsHotKey,
}

impl MemoryCase {
    const ALL: [MemoryCase; 4] = [
        MemoryCase::OneKeyAllow,
        MemoryCase::OneKeyDeny,
        MemoryCase::ManyKeys,
        MemoryCase::TwoThreadsHotKey,
    ];

    fn name(self) -> &'static str {
        match self {
            MemoryCase::OneKeyAllow => "1 thread, 1 key, allow",
            MemoryCase::OneKeyDeny => "1 thread, 1 key, mostly deny",
            MemoryCase::ManyKeys => "1 thread, 100k keys",
            MemoryCase::TwoThreadsHotKey => "2 threads, 1 hot key (per decision)",
        }
    }

    /// Burst and per-unit interval (ms) for the case: huge for "allow", tiny for "deny".
    fn quota(self) -> (u32, u64) {
        match self {
            MemoryCase::OneKeyDeny => (10, 1_000),
            _ => (1_000_000, 1),
        }
    }

    fn keys(self) -> Vec<Vec<u8>> {
        let count = if matches!(self, MemoryCase::ManyKeys) {
            100_000
        } else {
            1
        };
        (0..count)
            .map(|index| format!("user:{index}").into_bytes())
            .collect()
    }

    fn threads(self) -> u64 {
        if matches!(self, MemoryCase::TwoThreadsHotKey) {
            2
        } else {
            1
        }
    }

    /// ns per decision for ratelab's limiter, reading a clock per decision as governor does.
    fn ratelab(self, decisions: u64) -> f64 {
        let (burst, interval_ms) = self.quota();
        let limiter = Arc::new(MemoryLimiter::new(
            RateQuota::new(u64::from(burst), interval_ms).expect("a valid bench quota"),
        ));
        let keys = Arc::new(self.keys());
        let epoch = Instant::now();
        timed(self.threads(), decisions, move |thread, count| {
            let mut allowed = 0u64;
            for index in 0..count {
                let key = &keys
                    [usize::try_from((index * 7919 + thread) % keys.len() as u64).expect("fits")];
                let now_ms = 1 + u64::try_from(epoch.elapsed().as_millis()).expect("fits");
                allowed += u64::from(limiter.check(key, now_ms, 1).allowed);
            }
            black_box(allowed);
        })
    }

    /// ns per decision for governor's keyed (dashmap) limiter with the given clock.
    fn governor<C>(self, decisions: u64, clock: C) -> f64
    where
        C: governor::clock::Clock + Send + Sync + 'static,
        C::Instant: governor::clock::Reference + Send + Sync,
    {
        let (burst, interval_ms) = self.quota();
        let quota = governor::Quota::with_period(Duration::from_millis(interval_ms))
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst).expect("a positive burst"));
        let limiter = Arc::new(governor::RateLimiter::dashmap_with_clock(quota, clock));
        let keys = Arc::new(self.keys());
        timed(self.threads(), decisions, move |thread, count| {
            let mut allowed = 0u64;
            for index in 0..count {
                let key = &keys
                    [usize::try_from((index * 7919 + thread) % keys.len() as u64).expect("fits")];
                allowed += u64::from(limiter.check_key(key).is_ok());
            }
            black_box(allowed);
        })
    }
}

/// Runs `work(thread, decisions)` on `threads` threads after a warm-up, and returns wall ns
/// per decision (per thread, so two threads doing the same work at full speed show the same
/// figure as one).
fn timed<F>(threads: u64, decisions: u64, work: F) -> f64
where
    F: Fn(u64, u64) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    work(0, decisions / 10);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let work = work.clone();
            std::thread::spawn(move || work(thread, decisions))
        })
        .collect();
    for handle in handles {
        handle.join().expect("bench threads do not panic");
    }
    start.elapsed().as_nanos() as f64 / decisions as f64
}

/// Resident memory growth per key after inserting `keys` keys, from /proc/self/status.
fn bytes_per_key(keys: u64) -> Option<f64> {
    let before = resident_bytes()?;
    let limiter = MemoryLimiter::new(RateQuota::new(10, 1_000).expect("a valid bench quota"));
    for index in 0..keys {
        limiter.check(format!("user:{index:08}").as_bytes(), 1_000, 1);
    }
    let after = resident_bytes()?;
    black_box(&limiter);
    Some(after.saturating_sub(before) as f64 / keys as f64)
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

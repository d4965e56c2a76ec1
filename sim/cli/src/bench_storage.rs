//! `ratelab bench --only storage`: the seed's storage comparison measured on this machine.
//!
//! The same requests as the simulated figure (`sim::storage::requests`: one caller, each
//! of 10 users asking ten times its quota) go through the same limiters: the in-memory GCRA,
//! the GCRA script on a real redis-server called sequentially (one connection, each decision
//! awaited before the next), and the hybrid over that script. Each limiter runs the workload
//! on fresh keys a warm-up pass, then five passes untimed per call, whose median rate
//! (decisions over the loop's wall time) is the figure, then one with every call timed, for
//! the latency percentiles (reading the clock per call costs more than an in-memory decision,
//! so the two are kept apart).
//!
//! With `--out DIR` it writes `storage.csv`, `storage.svg`, `storage.png` and a README stamped
//! with the machine's cores, the Redis version (INFO) and the date: wall-clock data, which
//! is why it lives in `results/measured/`, outside CI's byte-for-byte check.

use std::path::Path;
use std::time::Instant;

use ratelab::algo::RateQuota;
use ratelab::limiter::Limiter;
use ratelab::limiter::atomic::{Algorithm, ScriptClock, ScriptLimiter};
use ratelab::limiter::hybrid::{HybridLimiter, SLACK_PERCENT_DEFAULT};
use ratelab::limiter::memory::MemoryGcra;
use ratelab::memory::MemoryLimiter;
use ratelab::real::{RealConfig, RealRedis};
use ratelab::redis_server::RedisServer;
use sim::storage::{Row, Subject, Tally};

/// Runs the comparison, prints it, and with `out` writes its files.
pub fn run(redis: Option<&str>, out: Option<&Path>) -> std::io::Result<()> {
    let server = match redis {
        Some(url) => RedisServer::external(url)?,
        None => RedisServer::start()?,
    };
    let url = format!("redis://{}:{}/", server.host(), server.port());
    let version = redis_version(&server)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = runtime
        .block_on(measure(&url))
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    println!(
        "storage comparison against redis-server {version} ({url}), {} decisions each:",
        sim::storage::DECISIONS
    );
    print!("{}", sim::storage::csv(&rows));
    let sentence = crate::report::storage_sentence(&rows, "Measured");
    println!("{sentence}");
    if let Some(out) = out {
        write(out, &rows, &version, &sentence)?;
    }
    Ok(())
}

/// `redis_version` from INFO server.
fn redis_version(server: &RedisServer) -> std::io::Result<String> {
    let reply = server.connect()?.command(&["INFO", "server"])?;
    let ratelab::model::Reply::Bulk(bytes) = reply else {
        return Err(std::io::Error::other(format!(
            "INFO server answered {reply:?}"
        )));
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

/// One pass over the workload in namespace `namespace`; with `timed`, every call is timed.
/// Returns the tally and the loop's wall time, ns.
async fn pass<L: Limiter>(
    limiter: &mut L,
    namespace: &str,
    timed: bool,
) -> Result<(Tally, u64), ratelab::limiter::LimiterError> {
    let requests = sim::storage::requests(namespace);
    let mut tally = Tally::default();
    let started = Instant::now();
    for request in &requests {
        if timed {
            let begin = Instant::now();
            let verdict = limiter.check(request).await?;
            let latency_ns = u64::try_from(begin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            tally.record(&verdict, latency_ns);
        } else {
            let verdict = limiter.check(request).await?;
            tally.record(&verdict, 0);
        }
    }
    let busy_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    Ok((tally, busy_ns))
}

/// Untimed passes per limiter; the rate is their median, so one pass that another process
/// on the machine interrupted does not make the figure.
const RATE_PASSES: usize = 5;

/// A row from untimed passes (the median rate) and a timed pass (the latencies).
fn combine(subject: Subject, untimed: Vec<(Tally, u64)>, timed: (Tally, u64)) -> Row {
    let mut rates: Vec<f64> = untimed
        .into_iter()
        .filter_map(|(tally, busy_ns)| tally.row(subject, "measured", busy_ns).decisions_per_s)
        .collect();
    rates.sort_by(f64::total_cmp);
    let mut row = timed.0.row(subject, "measured", timed.1);
    row.decisions_per_s = rates.get(rates.len() / 2).copied();
    row
}

/// The untimed passes of one limiter, each on a fresh limiter from `make` and fresh keys.
async fn rate_passes<L: Limiter>(
    make: impl Fn() -> L,
    namespace: impl Fn(&str) -> String,
) -> Result<Vec<(Tally, u64)>, ratelab::limiter::LimiterError> {
    let mut passes = Vec::new();
    for index in 0..RATE_PASSES {
        passes.push(pass(&mut make(), &namespace(&format!("rate{index}")), false).await?);
    }
    Ok(passes)
}

async fn measure(url: &str) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let quota: RateQuota = sim::storage::quota();
    let scheme = sim::storage::scheme();
    let redis = RealRedis::connect(RealConfig::multiplexed(url)).await?;
    let script = || {
        ScriptLimiter::new(
            redis.clone(),
            scheme.clone(),
            Algorithm::Gcra(quota),
            ScriptClock::Gateway,
        )
    };
    // Every pass gets fresh keys: its own namespace, under a prefix of this process.
    let prefix = format!("storage-bench-{}", std::process::id());
    let mut rows = Vec::new();
    for subject in Subject::ALL {
        let namespace = |pass: &str| format!("{prefix}-{}-{pass}", subject.name());
        let row = match subject {
            Subject::Memory => {
                let make = || {
                    MemoryGcra::new(
                        std::sync::Arc::new(MemoryLimiter::new(quota)),
                        scheme.clone(),
                    )
                };
                // A warm-up pass first: the first touches of the maps allocate.
                pass(&mut make(), &namespace("warm"), false).await?;
                let untimed = rate_passes(&make, &namespace).await?;
                let timed = pass(&mut make(), &namespace("latency"), true).await?;
                combine(subject, untimed, timed)
            }
            Subject::RedisSequential => {
                pass(&mut script(), &namespace("warm"), false).await?;
                let untimed = rate_passes(&script, &namespace).await?;
                let timed = pass(&mut script(), &namespace("latency"), true).await?;
                combine(subject, untimed, timed)
            }
            Subject::Hybrid => {
                let make = || {
                    HybridLimiter::new(script(), scheme.clone(), quota, SLACK_PERCENT_DEFAULT)
                        .expect("a valid quota")
                };
                pass(&mut make(), &namespace("warm"), false).await?;
                let untimed = rate_passes(&make, &namespace).await?;
                let timed = pass(&mut make(), &namespace("latency"), true).await?;
                combine(subject, untimed, timed)
            }
        };
        eprintln!("{}: done", subject.name());
        rows.push(row);
    }
    Ok(rows)
}

/// Today's date (UTC) from the wall clock, `YYYY-MM-DD`.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn write(out: &Path, rows: &[Row], version: &str, sentence: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let date = today();
    // How busy the machine was: the 1-minute load average, where Linux gives it.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    std::fs::write(out.join("storage.csv"), sim::storage::csv(rows))?;
    let title = format!(
        "The seed's storage comparison, measured: redis-server {version}, {cores} cores, {date}"
    );
    crate::report::write_storage_figure(out, "storage", &title, rows)
        .map_err(std::io::Error::other)?;
    let readme = format!(
        "# Measured: the seed's storage comparison\n\n\
         Written by `cargo run --release -p sim -- bench --only storage --out results/measured`; \
         wall-clock numbers from one machine, so CI does not regenerate or compare this folder \
         (the simulated version is `results/storage-comparison.*`).\n\n\
         - Machine: {cores} cores (`available_parallelism`), shared with other work while \
         measured (1-minute load average {load} when written)\n\
         - Redis: redis-server {version} (INFO server), started from PATH with persistence off, \
         over loopback TCP, one multiplexed connection\n\
         - Date: {date} (UTC)\n\n\
         ![storage comparison](storage.svg)\n\n\
         {sentence}\n\n\
         The workload is the simulated figure's: {} requests from one caller that awaits each \
         decision, {} users each asking ten times its quota (10/s), the scripts on the \
         request's clock (`ScriptClock::Gateway`) so the decisions are the simulation's. After a \
         warm-up pass, the rate is the median of five passes without per-call timing (decisions \
         over the loop's wall time); the latencies (mean, p50, p99 in the CSV) come from one \
         more pass with every call timed. Each pass has fresh keys and a fresh limiter. Data: [`storage.csv`](storage.csv) \
         (the seed's figures in its last two columns).\n",
        sim::storage::DECISIONS,
        sim::storage::KEYS,
    );
    std::fs::write(out.join("README.md"), readme)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

//! The report's sweeps (`sim/sweeps/*.toml`): every shipped file parses, and the figures'
//! data (their CSV rows, run in quick mode) has the shape and shows the facts the report
//! claims: atomic limiters below new-api's path A at every RTT, one round trip per atomic
//! script, the hockey stick of the legacy path under load, pool wait falling with pool size,
//! the hottest node's share falling as shards grow, and the R3 counterexample of figure 10.

use std::path::Path;

use sim::sweep::{Row, Sweep, series, value_at};

const SWEEPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sweeps");

fn shipped(name: &str) -> Sweep {
    Sweep::from_path(&Path::new(SWEEPS).join(format!("{name}.toml")))
        .unwrap_or_else(|error| panic!("a shipped sweep is bad: {error}"))
}

/// Runs a shipped sweep in quick mode and checks the rows' shape: one per run, in run order,
/// every run decided something.
fn quick_rows(name: &str) -> (Sweep, Vec<Row>) {
    let sweep = shipped(name);
    let runs = sweep.runs(true);
    let rows = sim::sweep::run(std::slice::from_ref(&sweep), true, 2, || {})
        .unwrap_or_else(|error| panic!("{error}"))
        .remove(0);
    assert_eq!(rows.len(), runs.len(), "{name}: one row per run");
    for (row, run) in rows.iter().zip(&runs) {
        assert_eq!(
            row.x, sweep.points[run.point].x,
            "{name}: rows in run order"
        );
        assert_eq!(row.limiter, sim::sweep::limiter_name(run.limiter));
        assert!(
            row.metrics.decisions > 0,
            "{name}: {} decided nothing",
            row.limiter
        );
        assert_eq!(row.csv_fields().len(), Row::COLUMNS.len());
    }
    (sweep, rows)
}

fn atomic_scripts(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .filter(|row| row.family == "atomic")
        .map(|row| row.limiter.clone())
        .collect();
    names.dedup();
    names
}

/// Goal: every file in `sim/sweeps/` parses and validates, and names a distinct figure.
/// Method: read the directory.
#[test]
fn every_shipped_sweep_parses() {
    let mut names = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(SWEEPS)
        .expect("sim/sweeps exists")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let sweep = Sweep::from_path(&path).unwrap_or_else(|error| panic!("{error}"));
        assert!(!sweep.runs(true).is_empty() && sweep.runs(true).len() <= sweep.runs(false).len());
        names.push(sweep.name);
    }
    assert!(names.len() >= 8, "{names:?}");
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "figure names are distinct");
}

/// Goal: figure 1's fact: at every RTT, every atomic script decides faster than new-api's
/// path A at p50 and p99, and at the smallest RTT by about its 3 → 1 round trips.
/// Method: the quick sweep's rows.
#[test]
fn atomic_limiters_decide_below_legacy_path_a_at_every_rtt() {
    let (_, rows) = quick_rows("latency-vs-rtt");
    let legacy = series(&rows, "legacy_ip_list", "latency_p50_ms");
    // The axis runs from 0.1 ms (time-scaled runs) to 20 ms.
    assert!(legacy.len() >= 3, "{legacy:?}");
    assert_eq!(legacy.first().map(|(x, _)| *x), Some(0.1));
    assert_eq!(legacy.last().map(|(x, _)| *x), Some(20.0));
    for atomic in atomic_scripts(&rows) {
        for metric in ["latency_p50_ms", "latency_p99_ms"] {
            let legacy = series(&rows, "legacy_ip_list", metric);
            for ((x, ours), (_, theirs)) in series(&rows, &atomic, metric).iter().zip(&legacy) {
                assert!(
                    ours < theirs,
                    "{atomic} {metric} at RTT {x}: {ours} vs {theirs}"
                );
            }
        }
    }
    for rtt in [0.1, 1.0] {
        let a = value_at(&rows, "legacy_ip_list", "latency_p50_ms", Some(rtt)).expect("point");
        let b = value_at(&rows, "atomic_gcra", "latency_p50_ms", Some(rtt)).expect("point");
        assert!(a / b >= 2.5, "RTT {rtt} ms: path A {a} ms vs GCRA {b} ms");
        // Sub-ms latencies are real: one RTT is the atomic script's floor.
        assert!(b >= rtt && b < 2.0 * rtt, "RTT {rtt} ms: GCRA p50 {b} ms");
    }
}

/// A one-limiter-pair sweep of `base` (a TOML table body) at one point: its rows.
fn one_point(name: &str, base: &str) -> Vec<Row> {
    let text = format!(
        "name = \"{name}\"\ntitle = \"t\"\nlimiters = [\"legacy_ip_list\", \"atomic_gcra\"]\n\
         seeds = [1, 2]\n[base]\n{base}\n[axis]\nname = \"keys\"\nunit = \"\"\n\
         fields = [\"load.keys\"]\nvalues = [3]\n[plot]\nkind = \"bars\"\n\
         metrics = [\"latency_p50_ms\"]\ny_label = \"ms\"\n"
    );
    let sweep =
        Sweep::from_toml(&text, Path::new(SWEEPS)).unwrap_or_else(|error| panic!("{error}"));
    sim::sweep::run(std::slice::from_ref(&sweep), false, 2, || {})
        .unwrap_or_else(|error| panic!("{error}"))
        .remove(0)
}

/// Goal: a time-scaled run is the same system seen through a k times slower clock: RTT
/// 0.2 ms (100 µs one way, so k = 10) gives the same admissions and denials as its unscaled
/// equivalent (RTT 2 ms and every other duration and the load's gaps 10 times longer,
/// written out by hand) and latencies exactly 10 times smaller. Method: two one-point sweeps
/// with path A and GCRA, a partition and a clock step among the scaled fields; then the
/// check that the two differ as soon as one field of the equivalent is not scaled.
#[test]
fn a_time_scaled_run_is_its_unscaled_equivalent_with_latencies_k_times_smaller() {
    let scaled_base = "duration_ms = 2000\n[base.network]\nmin_latency_us = 100\n\
         max_latency_us = 100\n[[base.gateways]]\ncount = 2\nlimiter = \"atomic_gcra\"\n\
         pool = { size = 2, pool_timeout_ms = 40, read_timeout_ms = 30 }\n\
         [base.limit]\nlimit = 10\nwindow_ms = 1000\n[base.load]\nrate_per_s = 300\n\
         [base.upstream]\nlatency = { kind = \"uniform\", min_ms = 5, max_ms = 50 }\n\
         [[base.faults]]\nat_ms = 500\nkind = \"partition\"\na = \"gateway-0\"\n\
         b = \"redis-0\"\nduration_ms = 100\n\
         [[base.faults]]\nat_ms = 900\nkind = \"clock_step\"\nhost = \"gateway-1\"\n\
         step_ms = -300\n";
    let equivalent = |window_ms: u64| {
        format!(
            "duration_ms = 20000\n[base.network]\nmin_latency_ms = 1\nmax_latency_ms = 1\n\
             resample_ms = 100\n[[base.gateways]]\ncount = 2\nlimiter = \"atomic_gcra\"\n\
             pool = {{ size = 2, pool_timeout_ms = 400, read_timeout_ms = 300, \
             dial_timeout_ms = 50000, backoff_min_ms = 80, backoff_max_ms = 5120 }}\n\
             [base.limit]\nlimit = 10\nwindow_ms = {window_ms}\n[base.load]\nrate_per_s = 30\n\
             [base.upstream]\nlatency = {{ kind = \"uniform\", min_ms = 50, max_ms = 500 }}\n\
             [[base.faults]]\nat_ms = 5000\nkind = \"partition\"\na = \"gateway-0\"\n\
             b = \"redis-0\"\nduration_ms = 1000\n\
             [[base.faults]]\nat_ms = 9000\nkind = \"clock_step\"\nhost = \"gateway-1\"\n\
             step_ms = -3000\n"
        )
    };
    let scaled = one_point("scaled", scaled_base);
    let unscaled = one_point("unscaled", &equivalent(10_000));
    assert_eq!(scaled.len(), 4);
    assert_eq!(scaled.len(), unscaled.len());
    let metrics = [
        "latency_p50_ms",
        "latency_p90_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "pool_wait_p99_ms",
    ];
    for (ours, theirs) in scaled.iter().zip(&unscaled) {
        let what = format!("{} seed {}", ours.limiter, ours.seed);
        assert_eq!(ours.time_scale, 10, "{what}");
        assert_eq!(theirs.time_scale, 1, "{what}");
        for count in ["requests", "allowed", "denied", "fail_open", "errors"] {
            assert_eq!(ours.value(count), theirs.value(count), "{what}: {count}");
        }
        assert!(
            ours.metrics.denied > 0 && ours.metrics.allowed > 0,
            "{what}"
        );
        assert_eq!(
            (ours.faults, ours.faults_took_effect),
            (2, 2),
            "{what}: both faults bit"
        );
        assert!(
            theirs.metrics.latency_p50_ms >= 2,
            "{what}: at least one RTT"
        );
        for metric in metrics {
            let (a, b) = (ours.value(metric).unwrap(), theirs.value(metric).unwrap());
            assert!((a * 10.0 - b).abs() < 1e-9, "{what}: {metric} {a} vs {b}");
        }
    }
    // The check can fail: the equivalent with one field left unscaled (the window) is
    // another system, and admits differently.
    let wrong = one_point("wrong", &equivalent(1_000));
    assert!(
        wrong
            .iter()
            .zip(&scaled)
            .any(|(w, s)| w.metrics.allowed != s.metrics.allowed),
        "an unscaled window went unnoticed"
    );
}

/// Goal: a time scale the simulation cannot run is an error naming the field. Method: parse
/// bad scenarios.
#[test]
fn bad_time_scales_name_the_field() {
    let base = "duration_ms = 1000\n[limit]\nlimit = 5\nwindow_ms = 1000\n\
        [[gateways]]\nlimiter = \"atomic_gcra\"\n[load]\nrate_per_s = 10\n";
    let cases = [
        (format!("time_scale = 0\n{base}"), "time_scale"),
        (format!("time_scale = -2\n{base}"), "time_scale"),
        (format!("time_scale = 1000\n{base}"), "time_scale"),
        (
            format!("time_scale = 10\n{base}[network]\nmin_latency_us = 50\nmax_latency_us = 50\n"),
            "network.min_latency_us",
        ),
        (
            format!("{base}[network]\nmin_latency_us = 1\nmax_latency_us = 1\n"),
            "network.min_latency_us",
        ),
        (
            format!("{base}[network]\nmin_latency_us = 100\n"),
            "network.max_latency_us",
        ),
        (
            format!(
                "{base}[network]\nmin_latency_ms = 2\nmax_latency_ms = 2\nmin_latency_us = 100\nmax_latency_us = 100\n"
            ),
            "network.min_latency_us",
        ),
    ];
    for (text, field) in cases {
        let error = sim::scenario::Scenario::from_toml(&text)
            .expect_err(&format!("accepted: {text}"))
            .to_string();
        assert!(error.contains(field), "{field}: {error}");
    }
    let fine =
        format!("time_scale = 20\n{base}[network]\nmin_latency_us = 50\nmax_latency_us = 50\n");
    let scenario = sim::scenario::Scenario::from_toml(&fine).expect("50 µs at k = 20 is 1 ms");
    assert_eq!(scenario.scaled().network.min_latency_ms, 1);
    assert_eq!(scenario.scaled().duration_ms, 20_000);
}

/// Goal: figure 5's fact: every atomic script decides in one round trip and one command (the
/// first call per Redis also pays EVALSHA's NOSCRIPT and an EVAL, hence "at most 1.05"),
/// new-api's path A in three, the in-memory limiters in none. Method: the quick sweep.
#[test]
fn one_round_trip_per_atomic_script() {
    let (_, rows) = quick_rows("round-trips");
    let atomic = atomic_scripts(&rows);
    assert!(atomic.len() >= 4, "{atomic:?}");
    for name in &atomic {
        for metric in ["round_trips_per_decision", "commands_per_decision"] {
            let value = value_at(&rows, name, metric, None).expect("row");
            assert!((1.0..=1.05).contains(&value), "{name} {metric} {value}");
        }
    }
    let legacy = value_at(&rows, "legacy_ip_list", "round_trips_per_decision", None);
    assert_eq!(legacy, Some(3.0));
    assert_eq!(
        value_at(&rows, "memory_gcra", "round_trips_per_decision", None),
        Some(0.0)
    );
}

/// Goal: figure 3's fact: the legacy path saturates its pool at a fraction of the load the
/// atomic script takes. Method: at the lowest load both decide within a few RTTs; at
/// 2000 req/s path A's p50 is many times GCRA's, which is still near one RTT.
#[test]
fn legacy_path_saturates_the_pool_first() {
    let (_, rows) = quick_rows("latency-vs-load");
    let low = |name| value_at(&rows, name, "latency_p50_ms", Some(250.0)).expect("point");
    assert!(low("legacy_ip_list") <= 8.0 && low("atomic_gcra") <= 3.0);
    let at = |name| value_at(&rows, name, "latency_p50_ms", Some(2000.0)).expect("point");
    assert!(at("atomic_gcra") <= 4.0, "GCRA {}", at("atomic_gcra"));
    assert!(at("legacy_ip_list") >= 5.0 * at("atomic_gcra"));
}

/// Goal: figure 4's fact: pool wait falls as the pool grows, to nothing at 64 connections,
/// and a pool of one is at the pool timeout. Method: the quick sweep's p99 waits.
#[test]
fn pool_wait_falls_with_pool_size() {
    let (_, rows) = quick_rows("pool-wait-vs-pool-size");
    for name in ["legacy_ip_list", "atomic_gcra"] {
        let waits = series(&rows, name, "pool_wait_p99_ms");
        for pair in waits.windows(2) {
            assert!(pair[1].1 <= pair[0].1, "{name}: {waits:?}");
        }
        assert_eq!(waits.last().map(|p| p.1), Some(0.0), "{name}: {waits:?}");
    }
    let one = value_at(&rows, "legacy_ip_list", "pool_wait_p99_ms", Some(1.0)).expect("point");
    assert!(one >= 1000.0, "pool of one: {one} ms");
}

/// Goal: figure 6's fact: one node takes everything with one shard, and the hottest node's
/// share falls as shards are added, while the hottest slot's share stays (one hot key is one
/// slot). Method: the quick sweep's shares.
#[test]
fn hottest_node_share_falls_as_shards_grow() {
    let (_, rows) = quick_rows("hottest-share-vs-shards");
    for name in ["legacy_ip_list", "atomic_gcra"] {
        let nodes = series(&rows, name, "hottest_node_share_pct");
        assert_eq!(nodes.first().map(|p| p.1), Some(100.0), "{name}: {nodes:?}");
        for pair in nodes.windows(2) {
            assert!(pair[1].1 < pair[0].1, "{name}: {nodes:?}");
        }
        assert!(nodes.last().expect("points").1 < 50.0, "{name}: {nodes:?}");
        let slots = series(&rows, name, "hottest_slot_share_pct");
        assert!(slots.iter().all(|p| p.1 < 30.0), "{name}: {slots:?}");
    }
}

/// Goal: figure 10's data: new-api's IP list on the R3 scenario yields a shrunk
/// counterexample whose worst key exceeds its bound in one window, and the atomic sliding
/// log with the same bound yields none. Method: `timeline::counterexample` on both.
#[test]
fn r3_counterexample_timeline_and_its_fix() {
    let text = include_str!("../../scenarios/r3-legacy-ip-list.toml");
    let scenario = sim::scenario::Scenario::from_toml(text).expect("shipped scenario");
    let timeline = sim::timeline::counterexample(&scenario, 1, 40)
        .expect("runs")
        .expect("R3 violates");
    assert_eq!(timeline.property, "admissions_within_bound");
    let (limit, span_ms) = timeline.bound.expect("a window bound");
    assert_eq!((limit, span_ms), (5, 1000));
    assert!(
        timeline.worst_in_window() > limit,
        "{}",
        sim::timeline::csv(&timeline)
    );
    assert!(!timeline.marks.is_empty() && timeline.marks.iter().all(|m| m.round_trips == 3));
    // The story of a race between gateways: two lanes, both with requests of the key, and
    // each request's three round trips drawn in order, its length read first.
    assert!(
        timeline.gateways() >= 2,
        "{}",
        sim::timeline::csv(&timeline)
    );
    for gateway in 0..2 {
        assert!(timeline.marks.iter().any(|m| m.gateway == gateway));
    }
    for mark in &timeline.marks {
        assert_eq!(mark.trips.len(), 3, "{mark:?}");
        assert_eq!(mark.trips[0].commands, "LLEN", "{mark:?}");
        assert!(
            mark.trips
                .windows(2)
                .all(|w| w[0].replied_ms <= w[1].sent_ms)
        );
        assert_eq!(
            mark.trips.last().map(|t| t.replied_ms),
            Some(mark.decided_ms)
        );
    }
    let mut fixed = scenario.clone();
    fixed.gateways[0].limiter = sim::scenario::LimiterKind::AtomicSlidingLog;
    assert_eq!(
        sim::timeline::counterexample(&fixed, 1, 40).expect("runs"),
        None
    );
}

/// Goal: figure 7's facts: under every fault class that took effect, no Redis-backed atomic
/// limiter admits beyond its stated bound; each class's faults took effect for atomic GCRA
/// (so its zeros were tested); outages show as fail-open admissions, counted apart; and the
/// figure can show an over-admission (new-api's per-gateway memory list admits L per gateway
/// with no fault at all), so its zeros are not the figure's blindness. Method: the quick
/// sweep's rows.
#[test]
fn over_admission_per_fault_class() {
    let (sweep, rows) = quick_rows("over-admission-by-fault");
    let labels: Vec<&str> = sweep.points.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "none",
            "partition",
            "Redis restart",
            "failover (lag 600 ms)",
            "clock step",
            "clock drift",
            "flush",
            "gateway restart"
        ]
    );
    let at = |limiter: &str, label: &str| {
        rows.iter()
            .find(|row| row.limiter == limiter && row.label == label)
            .unwrap_or_else(|| panic!("no row for {limiter} under {label}"))
    };
    for label in &labels {
        let gcra = at("atomic_gcra", label);
        let expected_faults = match *label {
            "none" => 0,
            "clock step" => 2,
            _ => 1,
        };
        assert_eq!(gcra.faults, expected_faults, "{label}");
        assert!(sim::sweep::effective(gcra), "{label}: {gcra:?}");
    }
    for row in rows.iter().filter(|row| row.family == "atomic") {
        if sim::sweep::effective(row) {
            assert_eq!(
                row.metrics.over_admission_max, 0,
                "{} under {}: beyond its bound",
                row.limiter, row.label
            );
        }
    }
    assert!(at("atomic_gcra", "partition").metrics.fail_open > 0);
    assert_eq!(at("atomic_gcra", "none").metrics.fail_open, 0);
    assert!(at("legacy_memory_list", "none").metrics.over_admission_max > 0);
    // multi_limit runs with its own limits (`overrides.multi_limit`) and they bind.
    for label in &labels {
        assert!(at("multi_limit", label).metrics.denied > 0, "{label}");
    }
    assert!(
        rows.iter()
            .any(|row| row.faults > 0 && !sim::sweep::effective(row)),
        "some fault does not reach some limiter (the hybrid's local denials keep its requests off a partitioned link): the n/a cells"
    );
}

/// A two-limiter sweep, `multi_limit` among them, with `overrides` as given.
fn with_overrides(overrides: &str) -> Result<Sweep, sim::sweep::SweepError> {
    let text = format!(
        r#"
name = "overrides"
title = "overrides"
limiters = ["atomic_gcra", "multi_limit"]
[base]
duration_ms = 300
[[base.gateways]]
count = 2
limiter = "atomic_gcra"
[base.limit]
limit = 5
window_ms = 1000
[base.load]
rate_per_s = 100
keys = 3
[axis]
name = "RTT"
fields = ["network.min_latency_ms", "network.max_latency_ms"]
values = [1, 2]
{overrides}
"#
    );
    Sweep::from_toml(&text, Path::new("."))
}

/// Goal: `overrides.<limiter>` sets fields in that limiter's runs only, so a limiter whose
/// fields every other kind refuses (multi_limit's `limits`) shares a sweep with them; a bad
/// override is refused with its field named. Method: a sweep with and without the override,
/// and three broken ones.
#[test]
fn overrides_set_fields_for_one_limiter_only() {
    let limits = r#"
[overrides.multi_limit]
"gateways[0].limits" = [{ key_scheme = "rl:u:{$group}:$user", limit = 5 }]
"#;
    let sweep = with_overrides(limits).unwrap_or_else(|error| panic!("{error}"));
    let runs = sweep.runs(false);
    assert_eq!(runs.len(), 4);
    for run in &runs {
        let group = &run.scenario.gateways[0];
        assert_eq!(group.limiter, run.limiter);
        let multi = run.limiter == sim::scenario::LimiterKind::MultiLimit;
        assert_eq!(group.limits.len(), usize::from(multi), "{:?}", run.limiter);
        // The axis still applies to the overridden runs.
        assert_eq!(
            run.scenario.network.min_latency_ms,
            [1, 2][run.point],
            "{:?}",
            run.limiter
        );
    }
    let cases = [
        ("", "multi_limit"),
        (
            "[overrides.gcra]\nlimit = { limit = 3 }\n",
            "overrides.gcra",
        ),
        (
            "[overrides.multi_limit]\n\"gateways[0].limits\" = 3\n",
            "overrides.multi_limit",
        ),
        (
            "[overrides.multi_limit]\n\"gateways[0].limits\" = [{ key_scheme = \"k:$user\", limit = 0 }]\n",
            "overrides.multi_limit",
        ),
    ];
    for (overrides, field) in cases {
        let error = with_overrides(overrides)
            .err()
            .unwrap_or_else(|| panic!("accepted: {overrides}"))
            .to_string();
        assert!(error.contains(field), "{field} not named in: {error}");
    }
}

//! The `ratelab` binary as a user runs it: exit codes, errors that name the field, and the
//! replay lines `explore` prints. Everything behind the command line is tested in the
//! libraries; these tests check only what the binary adds.

mod report;
mod shardcheck;

use sim::checker::Report;
use sim::scenario::Scenario;

const GCRA: &str = include_str!("../../../scenarios/gcra-two-gateways.toml");
const MIXED: &str = include_str!("../../../scenarios/mixed-limit-kinds.toml");

/// The shipped scenarios, as the binary reads them.
const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");

/// A shipped scenario (a bad one is a bug in the repository).
fn parse(text: &str) -> Scenario {
    Scenario::from_toml(text).unwrap_or_else(|error| panic!("a shipped scenario is bad: {error}"))
}

/// Simulates and judges one seed.
fn run(scenario: &Scenario, seed: u64) -> Report {
    sim::simulate(scenario, seed)
        .unwrap_or_else(|error| panic!("seed {seed}: {error}"))
        .0
}

#[test]
fn bad_scenario_files_name_the_field_and_exit_2() {
    // Goal: bad input is exit code 2 with the field named, never a panic; a violation is 1
    // and a safe run 0. Method: run the binary on broken and on shipped files.
    let binary = env!("CARGO_BIN_EXE_ratelab");
    let dir = std::env::temp_dir().join(format!("ratelab-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (GCRA.replace("limit = 10", "limit = 0"), "limit.limit"),
        (GCRA.replace("count = 2", "count = 0"), "gateways[0].count"),
        (GCRA.replace("atomic_gcra", "atomic_gcrx"), "atomic_gcrx"),
        (
            format!(
                "{GCRA}\n[[faults]]\nat_ms = 1\nkind = \"hold\"\na = \"gateway-9\"\nb = \"redis-0\"\nduration_ms = 5\n"
            ),
            "faults[0].a",
        ),
        (
            GCRA.replace("duration_ms = 3000", "duration_ms = \"soon\""),
            "duration_ms",
        ),
        (
            MIXED.replace("ip = 2,", "ip = -2,"),
            "load.mix.ip: must be a weight",
        ),
        (format!("time_scale = 0\n{GCRA}"), "time_scale"),
        (format!("time_scale = -1\n{GCRA}"), "time_scale"),
        (
            format!(
                "time_scale = 4\n{GCRA}\n[network]\nmin_latency_us = 100\nmax_latency_us = 100\n"
            ),
            "network.min_latency_us",
        ),
    ];
    for (index, (text, field)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad-{index}.toml"));
        std::fs::write(&path, text).expect("write");
        let output = std::process::Command::new(binary)
            .args(["run", "--scenario"])
            .arg(&path)
            .args(["--seed", "1"])
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        assert!(
            stderr.contains(field),
            "the error does not name {field}: {stderr}"
        );
    }
    let missing = std::process::Command::new(binary)
        .args(["run", "--scenario", "/nonexistent/scenario.toml"])
        .output()
        .expect("the binary runs");
    assert_eq!(missing.status.code(), Some(2));
    for (file, code) in [("gcra-two-gateways.toml", 0), ("r3-legacy-ip-list.toml", 1)] {
        let path = format!("{SCENARIOS}/{file}");
        let output = std::process::Command::new(binary)
            .args([
                "run",
                "--scenario",
                &path,
                "--seed",
                "1",
                "--format",
                "json",
            ])
            .output()
            .expect("the binary runs");
        assert_eq!(output.status.code(), Some(code), "{file}");
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("--format json prints one object");
        assert_eq!(json["safe"], serde_json::Value::Bool(code == 0));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explore_shrinks_each_failing_seed_and_prints_both_replays() {
    // Goal: `ratelab explore` gives, next to each failing seed's replay, the replay of a
    // smaller scenario that still fails, and `--no-shrink` skips that. Method: explore the
    // R6 scenario (gateway clock skew) at seeds 2 and 3, where it fails; each failing line
    // must be followed by a `shrunk` line naming a written file; that file must parse, be
    // smaller than the original, and still violate the property when run with the seed.
    let r6 = &format!("{SCENARIOS}/r6-gateway-clock-skew.toml");
    let directory = std::env::temp_dir().join(format!("ratelab-faults-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let explore = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ratelab"))
            .args([
                "explore",
                "--scenario",
                r6,
                "--seeds",
                "2",
                "--first-seed",
                "2",
            ])
            .args(extra)
            .output()
            .expect("ratelab runs");
        assert_eq!(output.status.code(), Some(1), "a violation exits 1");
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let directory_arg = directory.to_str().expect("utf-8 path");
    let text = explore(&["--shrink-runs", "8", "--shrunk-dir", directory_arg]);
    let original = parse(include_str!(
        "../../../scenarios/r6-gateway-clock-skew.toml"
    ));
    for seed in [2u64, 3] {
        assert!(
            text.contains(&format!(
                "seed {seed} violates admissions_within_bound; replay: ratelab run --scenario {r6} --seed {seed}"
            )),
            "{text}"
        );
        let path = directory.join(format!("ratelab-shrunk-{seed}.toml"));
        let replay = format!("ratelab run --scenario {} --seed {seed}", path.display());
        assert!(
            text.contains(&replay),
            "no shrunk replay for {seed}:\n{text}"
        );
        let shrunk = parse(&std::fs::read_to_string(&path).expect("the shrunk file"));
        assert!(
            sim::shrink::size(&shrunk) != sim::shrink::size(&original),
            "seed {seed}: not shrunk"
        );
        assert!(run(&shrunk, seed).violated("admissions_within_bound"));
    }
    let plain = explore(&["--no-shrink"]);
    assert!(plain.contains("seed 2 violates"), "{plain}");
    assert!(!plain.contains("shrunk"), "{plain}");
    let _ = std::fs::remove_dir_all(&directory);
}

/// A CSV line's fields: commas split, except inside double quotes (`""` is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            other => fields.last_mut().expect("one field").push(other),
        }
    }
    assert!(!quoted, "unbalanced quotes in {line:?}");
    fields
}

/// Checks a CSV text: one header, `rows` rows with its columns, numbers after the first
/// `text_columns` columns.
fn check_csv(name: &str, text: &str, rows: usize, text_columns: usize) {
    let mut lines = text.lines();
    let header = csv_fields(lines.next().expect("a header"));
    let mut count = 0;
    for line in lines {
        let fields = csv_fields(line);
        assert_eq!(fields.len(), header.len(), "{name}: {line:?}");
        for number in &fields[text_columns..] {
            assert!(number.parse::<f64>().is_ok(), "{name}: {line:?}");
        }
        count += 1;
    }
    assert_eq!(count, rows, "{name}: {text}");
}

#[test]
fn bench_csv_output_parses_as_one_csv_table() {
    // Goal: `ratelab bench --format csv` writes only CSV on stdout (one header, every row with
    // the header's columns), so the file parses as CSV; the text tables that used to follow
    // it go to stderr. With `--out DIR` every table is also a CSV file of its own.
    // Regression: the memory and ratio tables were printed after the CSV. Method: the
    // in-process benchmarks (no Redis needed), tiny, at two concurrencies; parse stdout and
    // each written file field by field and check the numeric columns are numbers.
    let directory = std::env::temp_dir().join(format!("ratelab-bench-csv-{}", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ratelab"))
        .args([
            "bench",
            "--only",
            "memory",
            "--format",
            "csv",
            "--concurrency",
            "1,2",
            "--duration-ms",
            "20",
            "--decisions",
            "20000",
            "--keys",
            "1000",
            "--out",
            directory.to_str().expect("utf-8 path"),
        ])
        .output()
        .expect("ratelab runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(stdout.starts_with("limiter,family,"), "{stdout}");
    // Four limiters at two concurrencies.
    check_csv("stdout", &stdout, 8, 2);
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.contains("memory_gcra / newapi_memory at 1:"),
        "{stderr}"
    );
    for (name, rows, text_columns) in [
        ("limiters", 8, 2),
        ("ratios", 4, 2),
        ("memory_bare", 4, 1),
        ("memory_bytes", 1, 0),
    ] {
        let text = std::fs::read_to_string(directory.join(format!("{name}.csv")))
            .unwrap_or_else(|error| panic!("{name}.csv: {error}"));
        check_csv(name, &text, rows, text_columns);
    }
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn a_reader_that_closes_stdout_early_ends_the_run_quietly() {
    // Goal: `ratelab run … | head` does not panic when `head` leaves: the process ends with
    // 141 (as SIGPIPE ends a C tool) and nothing on stderr. Method: the reading end of its
    // stdout is closed before it prints; before the fix it panicked ("failed printing to
    // stdout: Broken pipe") with exit code 101 and a backtrace.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ratelab"))
        .args(["run", "--seed", "1", "--scenario"])
        .arg(format!("{SCENARIOS}/gcra-two-gateways.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ratelab runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("ratelab ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

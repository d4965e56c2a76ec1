//! `ratelab report` as a user runs it: golden bytes for one small figure, the same bytes on a
//! second run, and exit code 2 with a clear message for bad sweeps, unknown figures and an
//! output directory that cannot be written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/golden");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ratelab-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn report(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ratelab"))
        .arg("report")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("the binary runs")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Goal: a rendering change is noticed: the small figure's SVG, PNG and CSV are the committed
/// bytes, and a second run (with another job count) writes the same bytes, README included.
/// Method: run the golden sweep twice into fresh directories and compare. To accept an
/// intended change, run with `RATELAB_BLESS=1` and commit the files it writes.
#[test]
fn golden_figure_bytes() {
    let sweep = Path::new(GOLDEN).join("tiny.toml");
    let sweep = sweep.to_str().expect("utf-8 path");
    let first = temp_dir("golden-1");
    let second = temp_dir("golden-2");
    for (out, jobs) in [(&first, "1"), (&second, "2")] {
        let output = report(&["--sweep", sweep, "--jobs", jobs], out);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for file in ["tiny.svg", "tiny.png", "tiny.csv", "README.md"] {
        assert!(
            read(&first.join(file)) == read(&second.join(file)),
            "{file} differs between two runs"
        );
    }
    let bless = std::env::var_os("RATELAB_BLESS").is_some();
    for file in ["tiny.svg", "tiny.png", "tiny.csv"] {
        let golden = Path::new(GOLDEN).join(file);
        if bless {
            std::fs::copy(first.join(file), &golden).expect("bless");
        }
        assert!(
            read(&first.join(file)) == read(&golden),
            "{file} differs from {} (RATELAB_BLESS=1 accepts the new bytes)",
            golden.display()
        );
    }
    let stdout = String::from_utf8_lossy(&report(&["--sweep", sweep], &first).stdout).into_owned();
    assert!(stdout.contains("tiny: At RTT = 2 ms"), "{stdout}");
}

/// Goal: a partial run (`--only`) leaves the README of a full run alone, and a full run
/// rewrites it. Method: a sentinel README, then `--only tiny`, then the full sweep.
#[test]
fn only_keeps_the_readme_of_a_full_run() {
    let sweep = Path::new(GOLDEN).join("tiny.toml");
    let sweep = sweep.to_str().expect("utf-8 path");
    let out = temp_dir("only-readme");
    std::fs::create_dir_all(&out).expect("out dir");
    std::fs::write(out.join("README.md"), "sentinel").expect("sentinel");
    let partial = report(&["--sweep", sweep, "--only", "tiny"], &out);
    assert!(
        partial.status.success(),
        "{}",
        String::from_utf8_lossy(&partial.stderr)
    );
    assert_eq!(read(&out.join("README.md")), b"sentinel");
    assert!(
        out.join("tiny.csv").exists(),
        "the figure itself is written"
    );
    let full = report(&["--sweep", sweep], &out);
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    assert!(String::from_utf8_lossy(&read(&out.join("README.md"))).contains("tiny"));
}

/// Goal: bad input is exit 2 with the field or the problem named, and nothing is run.
/// Method: a broken sweep file, a missing one, an unknown `--only`, `--jobs 0`.
#[test]
fn bad_sweeps_and_arguments_exit_2() {
    let dir = temp_dir("bad");
    let good = std::fs::read_to_string(Path::new(GOLDEN).join("tiny.toml")).expect("golden");
    let cases = [
        (
            good.replace("\"atomic_gcra\"]", "\"atomic_gcrx\"]"),
            "limiters[1]",
        ),
        (
            good.replace("values = [1, 4]", "values = [1, 4, 5]"),
            "axis.x",
        ),
        (good.replace("latency_p99_ms", "p99"), "plot.metrics[1]"),
        (good.replace("limit = 5", "limit = 0"), "base.limit.limit"),
    ];
    for (index, (text, field)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad-{index}.toml"));
        std::fs::write(&path, text).expect("write");
        let output = report(
            &["--sweep", path.to_str().expect("utf-8")],
            &dir.join("out"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        assert!(stderr.contains(field), "{field} not named in: {stderr}");
    }
    let missing = report(&["--sweep", "/nonexistent/sweep.toml"], &dir.join("out"));
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    let only = report(&["--only", "no-such-figure"], &dir.join("out"));
    assert_eq!(only.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&only.stderr).contains("no such figure"));
    let jobs = report(&["--jobs", "0"], &dir.join("out"));
    assert_eq!(jobs.status.code(), Some(2));
}

/// Goal: an output directory that cannot be written is exit 2 with its path named, before
/// any simulation runs. Method: `--out` below a regular file (no permission tricks, so it
/// also fails as root).
#[test]
fn unwritable_output_directory_exits_2() {
    let dir = temp_dir("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let sweep = Path::new(GOLDEN).join("tiny.toml");
    let output = report(
        &["--sweep", sweep.to_str().expect("utf-8")],
        &file.join("results"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write to") && stderr.contains("a-file"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("figure(s)"));
}

/// Goal: a fault-class sweep (`axis.sets`) with a mistake is exit 2 naming the set and the
/// field, before anything runs. Method: the shipped figure 7 sweep with a drift on a gateway
/// group that does not exist, a misspelt fault kind, and both `fields` and `sets`.
#[test]
fn bad_fault_class_sweeps_exit_2_naming_the_field() {
    let dir = temp_dir("bad-sets");
    let good = include_str!("../../../sweeps/over-admission-by-fault.toml");
    let cases = [
        (
            good.replace("\"gateways[1].drift_ppm\"", "\"gateways[7].drift_ppm\""),
            "axis.sets[5].gateways[7].drift_ppm",
        ),
        (
            good.replace("kind = \"failover\"", "kind = \"failovr\""),
            "axis.sets[3]",
        ),
        (
            good.replace(
                "name = \"fault class\"",
                "name = \"fault class\"\nfields = [\"faults\"]",
            ),
            "axis.sets",
        ),
        (good.replace("  \"none\", ", "  "), "axis.labels"),
    ];
    for (index, (text, field)) in cases.iter().enumerate() {
        assert_ne!(text, good, "case {index} changed nothing");
        let path = dir.join(format!("bad-{index}.toml"));
        std::fs::write(&path, text).expect("write");
        let output = report(
            &["--sweep", path.to_str().expect("utf-8")],
            &dir.join("out"),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        assert!(stderr.contains(field), "{field} not named in: {stderr}");
    }
}

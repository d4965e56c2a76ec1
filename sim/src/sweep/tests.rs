use super::*;

const GOOD: &str = r#"
name = "tiny"
title = "Tiny"
limiters = ["legacy_ip_list", "atomic_gcra"]
seeds = [1, 2]
[base]
duration_ms = 200
[[base.gateways]]
limiter = "atomic_gcra"
[base.limit]
limit = 5
window_ms = 60000
[base.load]
rate_per_s = 100
[axis]
name = "RTT"
unit = "ms"
fields = ["network.min_latency_ms", "network.max_latency_ms"]
values = [1, 2, 5]
x = [2.0, 4.0, 10.0]
[quick]
duration_ms = 100
points = [0, 2]
[plot]
metrics = ["latency_p50_ms", "latency_p99_ms"]
x_log = true
compare = { at = 2.0, a = "legacy_ip_list", b = "atomic_gcra" }
"#;

fn parse(text: &str) -> Result<Sweep, SweepError> {
    Sweep::from_toml(text, Path::new("."))
}

/// The field a bad sweep names.
fn field_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(error) => error.field,
    }
}

/// Goal: a good sweep parses into points whose scenarios carry the axis values in every
/// named field, with x and labels as written. Method: parse, look at each point.
#[test]
fn points_carry_the_axis_values() {
    let sweep = parse(GOOD).expect("parses");
    assert_eq!(sweep.points.len(), 3);
    for (point, (value, x)) in sweep.points.iter().zip([(1, 2.0), (2, 4.0), (5, 10.0)]) {
        assert_eq!(point.scenario.network.min_latency_ms, value);
        assert_eq!(point.scenario.network.max_latency_ms, value);
        assert_eq!(point.x, x);
        assert_eq!(point.label, value.to_string());
    }
    assert_eq!(sweep.axis_title(), "RTT (ms)");
    assert_eq!(
        sweep.limiters,
        [LimiterKind::LegacyIpList, LimiterKind::AtomicGcra]
    );
}

/// Goal: runs are points × limiters × seeds in order, each with its limiter in every group,
/// and quick mode keeps its points with its duration. Method: count and inspect.
#[test]
fn runs_cover_points_limiters_and_seeds() {
    let sweep = parse(GOOD).expect("parses");
    let full = sweep.runs(false);
    assert_eq!(full.len(), 3 * 2 * 2);
    assert_eq!((full[0].point, full[0].seed), (0, 1));
    assert_eq!(full[2].limiter, LimiterKind::AtomicGcra);
    assert!(
        full.iter()
            .all(|run| run.scenario.gateways[0].limiter == run.limiter)
    );
    assert!(full.iter().all(|run| run.scenario.duration_ms == 200));
    let quick = sweep.runs(true);
    assert_eq!(quick.len(), 2 * 2, "quick mode runs the first seed only");
    assert!(quick.iter().all(|run| run.seed == 1));
    assert!(
        quick
            .iter()
            .all(|run| run.point != 1 && run.scenario.duration_ms == 100)
    );
}

/// Goal: paths reach into arrays of tables and create missing tables. Method: set
/// `gateways[0].pool.size` and `redis.shards` on a base without a `[redis]` table.
#[test]
fn set_path_indexes_arrays_and_creates_tables() {
    let text = GOOD
        .replace(
            r#"fields = ["network.min_latency_ms", "network.max_latency_ms"]"#,
            r#"fields = ["gateways[0].pool.size"]"#,
        )
        .replace("x = [2.0, 4.0, 10.0]", "");
    let sweep = parse(&text).expect("parses");
    assert_eq!(sweep.points[2].scenario.gateways[0].pool.size, 5);
    assert_eq!(sweep.points[2].x, 5.0);
    let mut value: toml::Value = toml::from_str("a = 1").expect("toml");
    set_path(&mut value, "redis.shards", toml::Value::Integer(4)).expect("creates");
    assert_eq!(value["redis"]["shards"].as_integer(), Some(4));
    assert!(set_path(&mut value, "a.b", toml::Value::Integer(1)).is_err());
    assert!(set_path(&mut value, "list[3].b", toml::Value::Integer(1)).is_err());
    assert!(set_path(&mut value, "x[a]", toml::Value::Integer(1)).is_err());
}

/// Goal: a non-numeric axis (fault classes) takes its x and labels from the file. Method: an
/// axis over `faults` with a list of fault tables per value.
#[test]
fn fault_class_axis() {
    let text = GOOD.replace(
        r#"[axis]
name = "RTT"
unit = "ms"
fields = ["network.min_latency_ms", "network.max_latency_ms"]
values = [1, 2, 5]
x = [2.0, 4.0, 10.0]"#,
        r#"[axis]
name = "fault"
fields = ["faults"]
values = [[], [{ at_ms = 50, kind = "flush" }], [{ at_ms = 50, kind = "redis_restart" }]]
x = [2.0, 4.0, 10.0]
labels = ["none", "flush", "restart"]"#,
    );
    let sweep = parse(&text).expect("parses");
    assert!(sweep.points[0].scenario.faults.is_empty());
    assert_eq!(sweep.points[1].scenario.faults.len(), 1);
    assert_eq!(sweep.points[2].label, "restart");
}

/// Goal: every kind of mistake names its field. Method: one bad variant of the good file per
/// field, and the field each error names.
#[test]
fn bad_sweeps_name_the_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            GOOD.replace("\"atomic_gcra\"]", "\"atomic_gcr\"]"),
            "limiters[1]",
        ),
        (GOOD.replace("seeds = [1, 2]", "seeds = []"), "seeds"),
        (
            GOOD.replace("values = [1, 2, 5]", "values = [1, 2]"),
            "axis.x",
        ),
        (
            GOOD.replace("values = [1, 2, 5]", "values = [1, -1, 5]"),
            "axis.values[1]",
        ),
        (
            GOOD.replace("values = [1, 2, 5]", "values = [1, \"x\", 5]"),
            "axis.values[1]",
        ),
        (
            GOOD.replace("points = [0, 2]", "points = [0, 3]"),
            "quick.points[1]",
        ),
        (
            GOOD.replace("\"latency_p99_ms\"]", "\"latency\"]"),
            "plot.metrics[1]",
        ),
        (GOOD.replace("at = 2.0", "at = 3.0"), "plot.compare.at"),
        (
            GOOD.replace("a = \"legacy_ip_list\"", "a = \"memory_gcra\""),
            "plot.compare.a",
        ),
        (
            GOOD.replace("x = [2.0, 4.0, 10.0]", "x = [0.0, 4.0, 10.0]"),
            "plot.x_log",
        ),
        (GOOD.replace("name = \"tiny\"", "name = \"a/b\""), "name"),
        (GOOD.replace("limit = 5", "limit = 0"), "base.limit.limit"),
        (GOOD.replace("[quick]", "[quick]\nspeed = 2"), "sweep"),
        (
            GOOD.replace("network.max_latency_ms\"]", "network.max_latency_ms[0]\"]"),
            "axis.fields[1]",
        ),
        (
            GOOD.replace("seeds = [1, 2]", "seeds = [1, 2]\nbase = 3"),
            "sweep",
        ),
    ];
    for (text, field) in cases {
        assert_eq!(field_of(&text), field, "for:\n{text}");
    }
    // A base given as a file that does not exist names `base`.
    let text = GOOD.replace("[base]\n", "base = \"missing.toml\"\n[unused]\n");
    assert!(matches!(parse(&text), Err(e) if e.field == "sweep" || e.field == "base"));
}

/// Goal: a legacy window that is not whole minutes is refused at parse time for the limiter
/// that needs it, naming the point. Method: window 1500 ms with the legacy model limiter.
#[test]
fn a_point_invalid_for_one_limiter_is_refused() {
    let text = GOOD
        .replace("window_ms = 60000", "window_ms = 1500")
        .replace(
            "\"legacy_ip_list\", \"atomic_gcra\"]",
            "\"atomic_gcra\", \"legacy_model_request\"]",
        )
        .replace("a = \"legacy_ip_list\"", "a = \"atomic_gcra\"");
    let error = parse(&text).expect_err("refused");
    assert_eq!(error.field, "axis.values[0]");
    assert!(error.problem.contains("LegacyModelRequest"), "{error}");
}

/// Goal: CSV bytes are stable: the header, integers without decimals, floats with four,
/// labels with commas quoted. Method: one row by hand.
#[test]
fn csv_rows() {
    let sweep = parse(GOOD).expect("parses");
    let runs = sweep.runs(false);
    let metrics = Metrics {
        decisions: 3,
        latency_p50_ms: 2,
        round_trips_per_decision: 1.0 / 3.0,
        ..Metrics::default()
    };
    let mut row = row(&sweep, &runs[0], metrics, &[]);
    row.label = "a,b".to_owned();
    let text = csv(&[row]);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(Row::COLUMNS.join(",").as_str()));
    let fields: Vec<&str> = lines.next().expect("a row").split(',').collect();
    assert_eq!(&fields[..4], ["tiny", "2", "\"a", "b\""]);
    assert!(text.contains(",0.3333,"), "{text}");
    assert!(text.contains(",legacy_ip_list,legacy,1,"), "{text}");
}

/// Goal: the series helper averages seeds per x in axis order. Method: two seeds' rows.
#[test]
fn series_means_over_seeds() {
    let sweep = parse(GOOD).expect("parses");
    let rows: Vec<Row> = sweep
        .runs(false)
        .iter()
        .map(|run| {
            let metrics = Metrics {
                latency_p50_ms: run.seed * 10 + run.point as u64,
                ..Metrics::default()
            };
            row(&sweep, run, metrics, &[])
        })
        .collect();
    let series = series(&rows, "atomic_gcra", "latency_p50_ms");
    assert_eq!(series, [(2.0, 15.0), (4.0, 16.0), (10.0, 17.0)]);
    assert_eq!(
        value_at(&rows, "atomic_gcra", "latency_p50_ms", Some(4.0)),
        Some(16.0)
    );
    assert_eq!(
        value_at(&rows, "atomic_gcra", "latency_p50_ms", None),
        Some(15.0)
    );
}

/// Goal: nearest-rank percentiles at the tail. Method: 10 000 values 1..=10 000.
#[test]
fn percentiles_per_million() {
    let values: Vec<u64> = (1..=10_000).collect();
    assert_eq!(latency_percentile(&values, 500_000), 5_000);
    assert_eq!(latency_percentile(&values, 999_000), 9_990);
    assert_eq!(latency_percentile(&values, 999_900), 9_999);
    assert_eq!(latency_percentile(&[], 500_000), 0);
}

/// The tiny sweep with its axis replaced by `axis` (a whole `[axis]` section).
fn with_axis(axis: &str) -> String {
    GOOD.replace(
        r#"[axis]
name = "RTT"
unit = "ms"
fields = ["network.min_latency_ms", "network.max_latency_ms"]
values = [1, 2, 5]
x = [2.0, 4.0, 10.0]"#,
        axis,
    )
    .replace("at = 2.0, ", "")
    .replace("x_log = true", "")
}

const SETS: &str = r#"[axis]
name = "fault class"
labels = ["none", "drift", "failover"]
[[axis.sets]]
[[axis.sets]]
"gateways[0].drift_ppm" = 400000
[[axis.sets]]
"redis.topology" = "replicated"
"redis.replication_lag_ms" = 600
faults = [{ at_ms = 50, kind = "failover" }]
"#;

/// Goal: a fault-class axis whose points set different fields (a drift at one, a topology
/// and a fault at another) builds each point with its own fields, at x = its index. Method:
/// parse an `axis.sets` sweep and look at each point's scenario.
#[test]
fn axis_sets_set_their_own_fields() {
    let sweep = parse(&with_axis(SETS)).expect("parses");
    let [none, drift, failover] = &sweep.points[..] else {
        panic!("three points");
    };
    assert_eq!((none.x, none.label.as_str()), (0.0, "none"));
    assert!(none.scenario.faults.is_empty());
    assert_eq!(none.scenario.gateways[0].drift_ppm, 0);
    assert_eq!(drift.scenario.gateways[0].drift_ppm, 400_000);
    assert!(drift.scenario.faults.is_empty());
    assert_eq!(failover.x, 2.0);
    assert_eq!(failover.scenario.redis.replication_lag_ms, 600);
    assert_eq!(failover.scenario.faults.len(), 1);
    assert_eq!(failover.scenario.gateways[0].drift_ppm, 0);
}

/// Goal: every mistake in `axis.sets` names its field, so `ratelab report --sweep` exits 2
/// saying where. Method: one bad variant per mistake.
#[test]
fn bad_axis_sets_name_the_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            with_axis(&SETS.replace("labels = [\"none\", \"drift\", \"failover\"]\n", "")),
            "axis.labels",
        ),
        (with_axis(&SETS.replace("\"none\", ", "")), "axis.labels"),
        (
            with_axis(&SETS.replace("[axis]\n", "[axis]\nfields = [\"faults\"]\n")),
            "axis.sets",
        ),
        (
            with_axis(&SETS.replace("gateways[0].drift_ppm", "gateways[3].drift_ppm")),
            "axis.sets[1].gateways[3].drift_ppm",
        ),
        (
            with_axis(&SETS.replace("400000", "4000000")),
            "axis.sets[1]",
        ),
        (
            with_axis(&SETS.replace("kind = \"failover\"", "kind = \"failovr\"")),
            "axis.sets[2]",
        ),
        (
            with_axis(&SETS.replace("\"redis.topology\" = \"replicated\"\n", "")),
            "axis.sets[2]",
        ),
        (
            with_axis("[axis]\nname = \"x\"\nsets = []\nlabels = []"),
            "axis.sets",
        ),
    ];
    for (text, field) in cases {
        assert_eq!(field_of(&text), field, "for:\n{text}");
    }
}

/// Goal: a run's fault coverage reaches its row: the faults it had to take effect and how
/// many did, and a row is effective only when all did. Method: a report with one held and
/// one failed `took_effect` verdict, and one without faults.
#[test]
fn fault_effects_come_from_coverage_verdicts() {
    let verdict = |name: &str, held: bool| crate::checker::Verdict {
        name: name.to_owned(),
        kind: VerdictKind::Coverage,
        held,
        detail: String::new(),
    };
    let report = Report {
        seed: 1,
        verdicts: vec![
            verdict("some_request_denied", true),
            verdict("fault_0_fired", true),
            verdict("fault_0_took_effect", true),
            verdict("fault_1_took_effect", false),
            verdict("clock_drift_took_effect", true),
        ],
        metrics: Metrics::default(),
        timelines: Vec::new(),
        replay: None,
    };
    assert_eq!(fault_effects(&report), (3, 2));
    let sweep = parse(GOOD).expect("parses");
    let mut row = row(&sweep, &sweep.runs(false)[0], Metrics::default(), &[]);
    assert!(effective(&row), "no faults: effective");
    (row.faults, row.faults_took_effect) = fault_effects(&report);
    assert!(!effective(&row));
}

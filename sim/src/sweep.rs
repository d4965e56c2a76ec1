//! Sweeps: a figure's runs as data. A sweep file (TOML, documented in `sim/sweeps/README.md`)
//! names a base scenario, one axis (scenario fields and the values they take), the limiters
//! and the seeds; [`run`] simulates every (point, limiter, seed) and gives one [`Row`] per run,
//! the CSV the report plots. Rendering is the binary's; this module only knows numbers.
//!
//! Why one axis: every figure of the report is a family of curves over one variable, one
//! curve per limiter. Several fields may move together (`network.min_latency_ms` and
//! `network.max_latency_ms` for a fixed RTT), and an axis value may be any TOML value (a list
//! of faults for a fault class), so one axis covers RTT, gateways at a fixed total load
//! (`load.rate_per_s` is already the total), Redis shards, offered load, pool size and fault
//! classes. Every point is built and validated before anything runs, so a bad sweep is an
//! error naming the field, never a failed run halfway through.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::checker::{Metrics, Report, VerdictKind};
use crate::event::Event;
use crate::scenario::{LimiterKind, Scenario};

/// Most runs one sweep may ask for (points × limiters × seeds).
pub const RUNS_MAX: usize = 2_000;

/// A sweep that cannot run: which field of the sweep file, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepError {
    /// The field's path in the sweep file (`axis.values[2]`, `limiters[1]`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for SweepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for SweepError {}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> SweepError {
    SweepError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The file as written, before its points are built.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: String,
    title: String,
    base: toml::Value,
    limiters: Vec<String>,
    #[serde(default = "seeds_default")]
    seeds: Vec<u64>,
    axis: AxisFile,
    #[serde(default)]
    quick: Quick,
    #[serde(default)]
    plot: Plot,
    /// Per limiter: scenario field paths and their values, set (after the axis) only in
    /// that limiter's runs, for a limiter that needs fields the others refuse
    /// (`multi_limit`'s `gateways[i].limits`).
    #[serde(default)]
    overrides: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

fn seeds_default() -> Vec<u64> {
    vec![1]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AxisFile {
    name: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    values: Vec<toml::Value>,
    /// Instead of `fields` and `values`: per point, a table of scenario field paths and the
    /// value each takes there (a fault class that is a fault list at one point and a clock
    /// drift or a topology at another).
    #[serde(default)]
    sets: Option<Vec<toml::map::Map<String, toml::Value>>>,
    #[serde(default)]
    x: Option<Vec<f64>>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

/// What `--quick` changes: a shorter run, fewer points. Both optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quick {
    /// The load's duration in quick mode, ms.
    pub duration_ms: Option<u64>,
    /// The indices of the axis values quick mode keeps.
    pub points: Option<Vec<usize>>,
}

/// How the figure is drawn (read by the binary's renderer; checked here against the columns).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Plot {
    /// `lines` (one line per limiter and metric), `bars` (groups per limiter, one bar per
    /// metric) or `percentiles` (latency against 1/(1−p), one line per limiter).
    pub kind: PlotKind,
    /// The columns drawn on y (see [`Row::COLUMNS`]).
    pub metrics: Vec<String>,
    /// The y axis's label, with its unit.
    pub y_label: String,
    /// Logarithmic x axis.
    pub x_log: bool,
    /// Logarithmic y axis (values below `y_floor` are drawn at it).
    pub y_log: bool,
    /// The headline: the point (an x value) and the two limiters whose `metrics[0]` the
    /// README's sentence compares.
    pub compare: Option<Compare>,
    /// Where the legend goes (inside the plot, in the corner the lines leave free).
    pub legend: Corner,
    /// The knee: the README names the first x from which the last metric stays at or below
    /// this, for each compared limiter (the pool size where waiting stops).
    pub knee_at_most: Option<f64>,
    /// A limiter whose lines need a word: the README gives its p50 and p99 in round trips
    /// at the last point, its share of denials and its round trips per decision, and why.
    pub note: Option<Note>,
}

/// A limiter's lines explained in the README's sentence (`plot.note`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The limiter.
    pub limiter: String,
    /// Why its lines look as they do, in words (the numbers come from the rows).
    pub why: String,
}

impl Default for Plot {
    fn default() -> Plot {
        Plot {
            kind: PlotKind::Lines,
            metrics: vec!["latency_p50_ms".to_owned()],
            y_label: "decision latency (ms)".to_owned(),
            x_log: false,
            y_log: false,
            compare: None,
            legend: Corner::UpperLeft,
            knee_at_most: None,
            note: None,
        }
    }
}

/// A figure's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlotKind {
    /// y against the axis, one line per (limiter, metric).
    Lines,
    /// Bars per limiter at the first point.
    Bars,
    /// The latency distribution at the first point: latency against 1/(1−p).
    Percentiles,
    /// A grid per metric: a row per limiter, a column per point, each cell coloured by the
    /// metric's mean; a cell whose faults did not all take effect reads n/a.
    Heatmap,
}

/// A corner of the plotting area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corner {
    /// Top left.
    UpperLeft,
    /// Top right.
    UpperRight,
    /// Bottom left.
    LowerLeft,
    /// Bottom right.
    LowerRight,
}

/// The headline comparison of a figure's README sentence.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The axis value (its `x`) to compare at; bars and percentiles use the first point.
    #[serde(default)]
    pub at: Option<f64>,
    /// The first limiter (usually the legacy one).
    pub a: String,
    /// The second limiter.
    pub b: String,
}

/// One point of the axis: where it is drawn, its label, and the scenario per limiter.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Its x coordinate (the axis value, or `axis.x`).
    pub x: f64,
    /// Its label (the value as written, or `axis.labels`).
    pub label: String,
    /// The scenario with the axis fields set, before the limiter is chosen.
    pub scenario: Scenario,
    /// The limiters with `overrides`: their scenario at this point, limiter chosen and
    /// overrides set.
    pub overridden: Vec<(LimiterKind, Scenario)>,
}

/// A parsed, validated sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// Short name: the figure's file names (`latency-vs-rtt`).
    pub name: String,
    /// The figure's title.
    pub title: String,
    /// The axis's name (`RTT`).
    pub axis_name: String,
    /// The axis's unit (`ms`), empty for none.
    pub axis_unit: String,
    /// Every point, in file order.
    pub points: Vec<Point>,
    /// The limiters, one line each, in file order.
    pub limiters: Vec<LimiterKind>,
    /// The seeds each (point, limiter) runs with.
    pub seeds: Vec<u64>,
    /// Quick mode's changes.
    pub quick: Quick,
    /// How it is drawn.
    pub plot: Plot,
}

impl Sweep {
    /// Parses and validates a sweep file's text. `dir` resolves a `base` given as a path
    /// (a scenario file, relative to the sweep file).
    pub fn from_toml(text: &str, dir: &Path) -> Result<Sweep, SweepError> {
        let file: SweepFile = toml::from_str(text)
            .map_err(|error| problem("sweep", error.to_string().trim_end().to_owned()))?;
        if file.name.is_empty()
            || !file
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(problem(
                "name",
                "must be non-empty: letters, digits, - and _",
            ));
        }
        let base = base_value(&file.base, dir)?;
        let limiters = limiter_kinds(&file.limiters)?;
        if file.seeds.is_empty() {
            return Err(problem("seeds", "must name at least one seed"));
        }
        let overrides = limiter_overrides(&file.overrides, &file.limiters, &limiters)?;
        let points = build_points(&file.axis, &base, &limiters, &overrides)?;
        validate_quick(&file.quick, points.len())?;
        validate_plot(&file.plot, &file.limiters, &points)?;
        let runs = points.len() * limiters.len() * file.seeds.len();
        if runs > RUNS_MAX {
            return Err(problem(
                "axis.values",
                format!("{runs} runs (points × limiters × seeds); at most {RUNS_MAX}"),
            ));
        }
        Ok(Sweep {
            name: file.name,
            title: file.title,
            axis_name: file.axis.name,
            axis_unit: file.axis.unit,
            points,
            limiters,
            seeds: file.seeds,
            quick: file.quick,
            plot: file.plot,
        })
    }

    /// Reads and parses a sweep file.
    pub fn from_path(path: &Path) -> Result<Sweep, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            problem("sweep", format!("cannot read {}: {error}", path.display()))
        })?;
        Sweep::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// The axis title with its unit: `RTT (ms)`.
    pub fn axis_title(&self) -> String {
        if self.axis_unit.is_empty() {
            self.axis_name.clone()
        } else {
            format!("{} ({})", self.axis_name, self.axis_unit)
        }
    }

    /// The runs, in order: (point index, limiter, seed, scenario). Quick mode runs the
    /// first seed only.
    pub fn runs(&self, quick: bool) -> Vec<Run> {
        let seeds = if quick {
            &self.seeds[..1]
        } else {
            &self.seeds[..]
        };
        let mut runs = Vec::new();
        for (index, point) in self.points.iter().enumerate() {
            if quick
                && self
                    .quick
                    .points
                    .as_ref()
                    .is_some_and(|keep| !keep.contains(&index))
            {
                continue;
            }
            for &limiter in &self.limiters {
                for &seed in seeds {
                    let mut scenario = match point.overridden.iter().find(|o| o.0 == limiter) {
                        Some((_, scenario)) => scenario.clone(),
                        None => with_limiter(&point.scenario, limiter),
                    };
                    if let Some(duration_ms) = self.quick.duration_ms.filter(|_| quick) {
                        scenario.duration_ms = duration_ms;
                    }
                    runs.push(Run {
                        point: index,
                        limiter,
                        seed,
                        scenario,
                    });
                }
            }
        }
        runs
    }
}

/// One simulation of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The point's index in [`Sweep::points`].
    pub point: usize,
    /// The limiter every gateway runs.
    pub limiter: LimiterKind,
    /// The seed.
    pub seed: u64,
    /// The scenario as run.
    pub scenario: Scenario,
}

fn base_value(base: &toml::Value, dir: &Path) -> Result<toml::Value, SweepError> {
    let scenario = match base {
        toml::Value::String(path) => {
            let full = dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|error| {
                problem("base", format!("cannot read {}: {error}", full.display()))
            })?;
            Scenario::from_toml(&text)
                .map_err(|error| problem(format!("base.{}", error.field), error.problem))?
        }
        toml::Value::Table(_) => {
            let scenario: Scenario =
                base.clone().try_into().map_err(|error: toml::de::Error| {
                    problem("base", error.to_string().trim_end().to_owned())
                })?;
            scenario
                .validate()
                .map_err(|error| problem(format!("base.{}", error.field), error.problem))?;
            scenario
        }
        _ => {
            return Err(problem(
                "base",
                "must be a scenario table or a scenario file's path",
            ));
        }
    };
    // Through the scenario and back, so every default is present for the axis to set.
    toml::Value::try_from(&scenario).map_err(|error| problem("base", error.to_string()))
}

fn limiter_kinds(names: &[String]) -> Result<Vec<LimiterKind>, SweepError> {
    if names.is_empty() {
        return Err(problem("limiters", "must name at least one limiter"));
    }
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            toml::Value::String(name.clone())
                .try_into::<LimiterKind>()
                .map_err(|_| {
                    problem(
                        format!("limiters[{index}]"),
                        format!("unknown limiter `{name}`"),
                    )
                })
        })
        .collect()
}

/// A limiter's overrides: (its kind, `overrides.<name>`, [(the field naming the path in errors, the path, the
/// value)]).
type Overrides = Vec<(LimiterKind, String, Vec<(String, String, toml::Value)>)>;

/// The `overrides` tables, each checked to name one of the sweep's limiters.
fn limiter_overrides(
    file: &BTreeMap<String, BTreeMap<String, toml::Value>>,
    names: &[String],
    kinds: &[LimiterKind],
) -> Result<Overrides, SweepError> {
    let mut overrides = Vec::new();
    for (name, fields) in file {
        let field = format!("overrides.{name}");
        let Some(position) = names.iter().position(|limiter| limiter == name) else {
            return Err(problem(field, "is not one of the sweep's limiters"));
        };
        if fields.is_empty() {
            return Err(problem(field, "must set at least one scenario field"));
        }
        let paths = fields
            .iter()
            .map(|(path, value)| (format!("{field}.{path}"), path.clone(), value.clone()))
            .collect();
        overrides.push((kinds[position], field, paths));
    }
    Ok(overrides)
}

fn build_points(
    axis: &AxisFile,
    base: &toml::Value,
    limiters: &[LimiterKind],
    overrides: &Overrides,
) -> Result<Vec<Point>, SweepError> {
    let assignments = assignments(axis)?;
    for (name, len) in [
        ("axis.x", axis.x.as_ref().map(Vec::len)),
        ("axis.labels", axis.labels.as_ref().map(Vec::len)),
    ] {
        if len.is_some_and(|len| len != assignments.len()) {
            return Err(problem(name, "must have one entry per axis value"));
        }
    }
    let mut points = Vec::new();
    for (index, (field, set)) in assignments.into_iter().enumerate() {
        let x = match (&axis.x, axis.sets.is_some(), axis.values.get(index)) {
            (Some(xs), _, _) => xs[index],
            // Sets are drawn at their index unless `x` says otherwise.
            (None, true, _) => index as f64,
            (None, false, Some(toml::Value::Integer(n))) => *n as f64,
            (None, false, Some(toml::Value::Float(f))) => *f,
            (None, false, _) => {
                return Err(problem("axis.x", "needed when the values are not numbers"));
            }
        };
        if !x.is_finite() {
            return Err(problem(format!("axis.x[{index}]"), "must be finite"));
        }
        let label = match (&axis.labels, axis.values.get(index)) {
            (Some(labels), _) => labels[index].clone(),
            (None, Some(value)) => value.to_string(),
            (None, None) => return Err(problem("axis.labels", "needed with axis.sets")),
        };
        let mut scenario_value = base.clone();
        for (path_field, path, value) in set {
            set_path(&mut scenario_value, &path, value).map_err(|why| problem(path_field, why))?;
        }
        let scenario: Scenario =
            scenario_value
                .clone()
                .try_into()
                .map_err(|error: toml::de::Error| {
                    problem(&field, error.to_string().trim_end().to_owned())
                })?;
        let mut overridden = Vec::new();
        for (limiter, override_field, paths) in overrides {
            let mut value = scenario_value.clone();
            for (path_field, path, override_value) in paths {
                set_path(&mut value, path, override_value.clone())
                    .map_err(|why| problem(path_field, why))?;
            }
            let parsed: Scenario = value.try_into().map_err(|error: toml::de::Error| {
                problem(override_field, error.to_string().trim_end().to_owned())
            })?;
            let parsed = with_limiter(&parsed, *limiter);
            parsed
                .validate()
                .map_err(|error| problem(override_field, format!("at {field}: {error}")))?;
            overridden.push((*limiter, parsed));
        }
        for &limiter in limiters {
            if overridden.iter().any(|o| o.0 == limiter) {
                continue;
            }
            with_limiter(&scenario, limiter)
                .validate()
                .map_err(|error| problem(&field, format!("with limiter {limiter:?}: {error}")))?;
        }
        points.push(Point {
            x,
            label,
            scenario,
            overridden,
        });
    }
    Ok(points)
}

/// What each point sets, per point: the field naming the point in errors, and (the field
/// naming the path in errors, the scenario path, the value) per assignment.
type Assignments = Vec<(String, Vec<(String, String, toml::Value)>)>;

/// The axis as assignments: every field to each value, or each set as written.
fn assignments(axis: &AxisFile) -> Result<Assignments, SweepError> {
    if let Some(sets) = &axis.sets {
        if !axis.fields.is_empty() || !axis.values.is_empty() {
            return Err(problem(
                "axis.sets",
                "give either axis.fields and axis.values, or axis.sets, not both",
            ));
        }
        if sets.is_empty() {
            return Err(problem("axis.sets", "must list at least one point"));
        }
        return Ok(sets
            .iter()
            .enumerate()
            .map(|(index, set)| {
                let field = format!("axis.sets[{index}]");
                let paths = set
                    .iter()
                    .map(|(path, value)| (format!("{field}.{path}"), path.clone(), value.clone()))
                    .collect();
                (field, paths)
            })
            .collect());
    }
    if axis.fields.is_empty() {
        return Err(problem(
            "axis.fields",
            "must name at least one scenario field",
        ));
    }
    if axis.values.is_empty() {
        return Err(problem("axis.values", "must list at least one value"));
    }
    Ok(axis
        .values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let paths = axis
                .fields
                .iter()
                .enumerate()
                .map(|(f, path)| (format!("axis.fields[{f}]"), path.clone(), value.clone()))
                .collect();
            (format!("axis.values[{index}]"), paths)
        })
        .collect())
}

/// Every gateway group runs `limiter`.
fn with_limiter(scenario: &Scenario, limiter: LimiterKind) -> Scenario {
    let mut scenario = scenario.clone();
    for group in &mut scenario.gateways {
        group.limiter = limiter;
    }
    scenario
}

/// Sets `path` (`network.min_latency_ms`, `gateways[0].pool.size`) in a scenario's TOML to
/// `value`, creating missing tables on the way.
fn set_path(root: &mut toml::Value, path: &str, value: toml::Value) -> Result<(), String> {
    let mut node = root;
    let segments: Vec<&str> = path.split('.').collect();
    for (depth, segment) in segments.iter().enumerate() {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => {
                let digits = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("`{path}`: `[` without `]`"))?;
                let index: usize = digits
                    .parse()
                    .map_err(|_| format!("`{path}`: `{digits}` is not an index"))?;
                (name, Some(index))
            }
            None => (*segment, None),
        };
        if name.is_empty() {
            return Err(format!("`{path}`: empty field name"));
        }
        let table = node
            .as_table_mut()
            .ok_or_else(|| format!("`{path}`: `{name}` is inside a value that is not a table"))?;
        let last = depth + 1 == segments.len();
        if last && index.is_none() {
            table.insert(name.to_owned(), value);
            return Ok(());
        }
        let child = table
            .entry(name.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::map::Map::new()));
        node = match index {
            Some(index) => child
                .as_array_mut()
                .and_then(|array| array.get_mut(index))
                .ok_or_else(|| format!("`{path}`: `{name}` has no element {index}"))?,
            None => child,
        };
        if last {
            *node = value;
            return Ok(());
        }
    }
    Err(format!("`{path}`: empty path"))
}

fn validate_quick(quick: &Quick, points: usize) -> Result<(), SweepError> {
    if let Some(keep) = &quick.points {
        if keep.is_empty() {
            return Err(problem("quick.points", "must keep at least one point"));
        }
        if let Some((i, bad)) = keep.iter().enumerate().find(|(_, p)| **p >= points) {
            return Err(problem(
                format!("quick.points[{i}]"),
                format!("{bad} is not a point index (there are {points})"),
            ));
        }
    }
    if quick.duration_ms.is_some_and(|ms| ms == 0) {
        return Err(problem("quick.duration_ms", "must be at least 1"));
    }
    Ok(())
}

fn validate_plot(plot: &Plot, limiters: &[String], points: &[Point]) -> Result<(), SweepError> {
    if plot.metrics.is_empty() {
        return Err(problem("plot.metrics", "must name at least one column"));
    }
    for (index, metric) in plot.metrics.iter().enumerate() {
        if !Row::COLUMNS.contains(&metric.as_str()) || NOT_PLOTTED.contains(&metric.as_str()) {
            return Err(problem(
                format!("plot.metrics[{index}]"),
                format!("`{metric}` is not a numeric column"),
            ));
        }
    }
    if plot.x_log && points.iter().any(|point| point.x <= 0.0) {
        return Err(problem(
            "plot.x_log",
            "every axis x must be positive on a log axis",
        ));
    }
    if let Some(note) = &plot.note
        && !limiters.contains(&note.limiter)
    {
        return Err(problem(
            "plot.note.limiter",
            format!("`{}` is not one of the sweep's limiters", note.limiter),
        ));
    }
    if let Some(compare) = &plot.compare {
        for (field, name) in [
            ("plot.compare.a", &compare.a),
            ("plot.compare.b", &compare.b),
        ] {
            if !limiters.contains(name) {
                return Err(problem(
                    field,
                    format!("`{name}` is not one of the sweep's limiters"),
                ));
            }
        }
        if let Some(at) = compare.at
            && !points.iter().any(|point| point.x == at)
        {
            return Err(problem("plot.compare.at", format!("{at} is not an axis x")));
        }
    }
    Ok(())
}

/// Columns that are not numbers to plot.
const NOT_PLOTTED: [&str; 4] = ["sweep", "label", "limiter", "family"];

/// One run's figures: a CSV row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The sweep's name.
    pub sweep: String,
    /// The point's x.
    pub x: f64,
    /// The point's label.
    pub label: String,
    /// The limiter, as written in scenarios (`atomic_gcra`).
    pub limiter: String,
    /// `legacy`, `atomic` or `memory`: the colour family.
    pub family: &'static str,
    /// The seed.
    pub seed: u64,
    /// The checker's metrics.
    pub metrics: Metrics,
    /// Decision latency at p90, p99.9 and p99.99, ms (the checker gives p50 and p99).
    pub latency_p90_ms: u64,
    /// 99.9th percentile, ms.
    pub latency_p999_ms: u64,
    /// 99.99th percentile, ms.
    pub latency_p9999_ms: u64,
    /// The run's load duration, ms (for rates).
    pub duration_ms: u64,
    /// The scheduled faults, plus 1 when a clock drifts: what the run had to take effect.
    pub faults: u64,
    /// Of those, how many took effect (the checker's `fault_<i>_took_effect` and
    /// `clock_drift_took_effect` coverage verdicts, from what the harness saw).
    pub faults_took_effect: u64,
    /// The run's time scale k (`Scenario::time_scale`): the log's times are k times the
    /// scenario's, so the latency columns are divided by it.
    pub time_scale: u64,
}

impl Row {
    /// The CSV header, in column order.
    pub const COLUMNS: [&'static str; 27] = [
        "sweep",
        "x",
        "label",
        "limiter",
        "family",
        "seed",
        "requests",
        "decisions",
        "allowed",
        "denied",
        "fail_open",
        "errors",
        "latency_p50_ms",
        "latency_p90_ms",
        "latency_p99_ms",
        "latency_p999_ms",
        "latency_p9999_ms",
        "latency_max_ms",
        "round_trips_per_decision",
        "commands_per_decision",
        "pool_wait_p50_ms",
        "pool_wait_p99_ms",
        "hottest_node_share_pct",
        "hottest_slot_share_pct",
        "over_admission_max",
        "faults",
        "faults_took_effect",
    ];

    /// The numeric column `name`, if it is one.
    pub fn value(&self, name: &str) -> Option<f64> {
        let m = &self.metrics;
        // The log's ms are the scaled run's; in the scenario's own clock they are k times
        // shorter (at k = 1 the integer itself).
        let ms = |value: u64| value as f64 / self.time_scale as f64;
        let value = match name {
            "x" => self.x,
            "seed" => self.seed as f64,
            "requests" => m.requests as f64,
            "decisions" => m.decisions as f64,
            "allowed" => m.allowed as f64,
            "denied" => m.denied as f64,
            "fail_open" => m.fail_open as f64,
            "errors" => m.errors as f64,
            "latency_p50_ms" => ms(m.latency_p50_ms),
            "latency_p90_ms" => ms(self.latency_p90_ms),
            "latency_p99_ms" => ms(m.latency_p99_ms),
            "latency_p999_ms" => ms(self.latency_p999_ms),
            "latency_p9999_ms" => ms(self.latency_p9999_ms),
            "latency_max_ms" => ms(m.latency_max_ms),
            "round_trips_per_decision" => m.round_trips_per_decision,
            "commands_per_decision" => m.commands_per_decision,
            "pool_wait_p50_ms" => ms(m.pool_wait_p50_ms),
            "pool_wait_p99_ms" => ms(m.pool_wait_p99_ms),
            "hottest_node_share_pct" => share_pct(m.hottest_node.as_ref().map(|n| n.1), m),
            "hottest_slot_share_pct" => share_pct(m.hottest_slot.map(|s| s.1), m),
            "over_admission_max" => m.over_admission_max as f64,
            "faults" => self.faults as f64,
            "faults_took_effect" => self.faults_took_effect as f64,
            _ => return None,
        };
        Some(value)
    }

    /// The row as CSV fields, in [`Row::COLUMNS`] order. Floats are printed with 4 decimals
    /// so the bytes do not depend on how a float happens to print.
    pub fn csv_fields(&self) -> Vec<String> {
        Row::COLUMNS
            .iter()
            .map(|&column| match column {
                "sweep" => self.sweep.clone(),
                "label" => csv_text(&self.label),
                "limiter" => self.limiter.clone(),
                "family" => self.family.to_owned(),
                _ => {
                    let value = self.value(column).expect("every other column is numeric");
                    if value.fract() == 0.0 && value.abs() < 1e15 {
                        format!("{value:.0}")
                    } else {
                        format!("{value:.4}")
                    }
                }
            })
            .collect()
    }
}

/// A text field quoted when it holds a comma or a quote.
fn csv_text(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The rows as CSV, header first.
pub fn csv(rows: &[Row]) -> String {
    let mut out = Row::COLUMNS.join(",");
    out.push('\n');
    for row in rows {
        out.push_str(&row.csv_fields().join(","));
        out.push('\n');
    }
    out
}

fn share_pct(count: Option<u64>, metrics: &Metrics) -> f64 {
    let total: u64 = metrics.commands_per_node.iter().map(|(_, n)| n).sum();
    match count {
        Some(count) if total > 0 => 100.0 * count as f64 / total as f64,
        // Standalone: one node takes everything.
        _ => 100.0,
    }
}

/// The limiter's name as scenarios write it (`atomic_gcra`).
pub fn limiter_name(kind: LimiterKind) -> String {
    match toml::Value::try_from(kind) {
        Ok(toml::Value::String(name)) => name,
        _ => format!("{kind:?}"),
    }
}

/// The colour family of a limiter: `legacy` (new-api's), `memory` (in-process) or `atomic`.
pub fn family(kind: LimiterKind) -> &'static str {
    if kind.is_legacy() {
        "legacy"
    } else if kind.is_in_memory() {
        "memory"
    } else {
        "atomic"
    }
}

/// The `per_million`-th latency of the log's decisions (nearest rank), ms.
fn latency_percentile(sorted: &[u64], per_million: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * per_million).div_ceil(1_000_000);
    sorted[(rank.saturating_sub(1) as usize).min(sorted.len() - 1)]
}

/// The row of one run from its metrics and log.
pub fn row(sweep: &Sweep, run: &Run, metrics: Metrics, events: &[Event]) -> Row {
    let mut latencies: Vec<u64> = events
        .iter()
        .filter_map(|event| match event {
            Event::Decision { latency_ms, .. } => Some(*latency_ms),
            _ => None,
        })
        .collect();
    latencies.sort_unstable();
    let point = &sweep.points[run.point];
    Row {
        sweep: sweep.name.clone(),
        x: point.x,
        label: point.label.clone(),
        limiter: limiter_name(run.limiter),
        family: family(run.limiter),
        seed: run.seed,
        metrics,
        latency_p90_ms: latency_percentile(&latencies, 900_000),
        latency_p999_ms: latency_percentile(&latencies, 999_000),
        latency_p9999_ms: latency_percentile(&latencies, 999_900),
        duration_ms: run.scenario.duration_ms,
        faults: 0,
        faults_took_effect: 0,
        time_scale: run.scenario.time_scale(),
    }
}

/// What a run had to take effect and what did, from the checker's coverage verdicts:
/// (`fault_<i>_took_effect` and `clock_drift_took_effect` verdicts, those that held).
pub fn fault_effects(report: &Report) -> (u64, u64) {
    let effects = report.verdicts.iter().filter(|verdict| {
        verdict.kind == VerdictKind::Coverage
            && (verdict.name == "clock_drift_took_effect"
                || (verdict.name.starts_with("fault_") && verdict.name.ends_with("_took_effect")))
    });
    effects.fold((0, 0), |(all, held), verdict| {
        (all + 1, held + u64::from(verdict.held))
    })
}

/// Whether every fault of the row's run took effect (true when it had none): a cell of a
/// fault figure shows its numbers only then.
pub fn effective(row: &Row) -> bool {
    row.faults_took_effect == row.faults
}

/// A run the simulation could not complete.
#[derive(Debug)]
pub struct RunError {
    /// The sweep.
    pub sweep: String,
    /// The point's label, the limiter and the seed.
    pub what: String,
    /// The harness's error.
    pub error: String,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sweep {} ({}): {}", self.sweep, self.what, self.error)
    }
}

/// Runs every run of `sweeps` on `jobs` threads; `on_done` is called after each (a progress
/// bar). Rows come back per sweep, in run order, whatever the number of threads.
pub fn run(
    sweeps: &[Sweep],
    quick: bool,
    jobs: usize,
    on_done: impl Fn() + Sync,
) -> Result<Vec<Vec<Row>>, RunError> {
    let all: Vec<(usize, Run)> = sweeps
        .iter()
        .enumerate()
        .flat_map(|(s, sweep)| sweep.runs(quick).into_iter().map(move |run| (s, run)))
        .collect();
    let results = crate::explore::run_ordered(
        0,
        all.len() as u64,
        jobs,
        |index| {
            let (s, run) = &all[index as usize];
            crate::simulate(&run.scenario, run.seed)
                .map(|(report, events)| {
                    let (faults, took_effect) = fault_effects(&report);
                    let mut row = row(&sweeps[*s], run, report.metrics, &events);
                    row.faults = faults;
                    row.faults_took_effect = took_effect;
                    row
                })
                .map_err(|error| RunError {
                    sweep: sweeps[*s].name.clone(),
                    what: format!(
                        "{} = {}, {}, seed {}",
                        sweeps[*s].axis_name,
                        sweeps[*s].points[run.point].label,
                        limiter_name(run.limiter),
                        run.seed
                    ),
                    error: error.to_string(),
                })
        },
        |_, _| on_done(),
    );
    let mut rows: Vec<Vec<Row>> = vec![Vec::new(); sweeps.len()];
    for (index, result) in results {
        rows[all[index as usize].0].push(result?);
    }
    Ok(rows)
}

/// The count of runs [`run`] will make.
pub fn run_count(sweeps: &[Sweep], quick: bool) -> usize {
    sweeps.iter().map(|sweep| sweep.runs(quick).len()).sum()
}

/// A (limiter, metric) series: x and the mean over seeds, in axis order.
pub fn series(rows: &[Row], limiter: &str, metric: &str) -> Vec<(f64, f64)> {
    let mut by_x: BTreeMap<u64, (f64, f64, u32)> = BTreeMap::new();
    let mut order: Vec<u64> = Vec::new();
    for row in rows.iter().filter(|row| row.limiter == limiter) {
        let Some(value) = row.value(metric) else {
            continue;
        };
        let key = row.x.to_bits();
        let entry = by_x.entry(key).or_insert_with(|| {
            order.push(key);
            (row.x, 0.0, 0)
        });
        entry.1 += value;
        entry.2 += 1;
    }
    order
        .into_iter()
        .map(|key| {
            let (x, sum, n) = by_x[&key];
            (x, sum / f64::from(n))
        })
        .collect()
}

/// The first x from which `limiter`'s `metric` stays at or below `at_most`.
pub fn knee(rows: &[Row], limiter: &str, metric: &str, at_most: f64) -> Option<f64> {
    let series = series(rows, limiter, metric);
    let last_above = series.iter().rposition(|(_, value)| *value > at_most);
    match last_above {
        None => series.first().map(|(x, _)| *x),
        Some(index) => series.get(index + 1).map(|(x, _)| *x),
    }
}

/// The mean of `metric` for `limiter` at `x` (the first point when `x` is `None`).
pub fn value_at(rows: &[Row], limiter: &str, metric: &str, x: Option<f64>) -> Option<f64> {
    let series = series(rows, limiter, metric);
    match x {
        Some(x) => series.iter().find(|(px, _)| *px == x).map(|(_, v)| *v),
        None => series.first().map(|(_, v)| *v),
    }
}

#[cfg(test)]
mod tests;

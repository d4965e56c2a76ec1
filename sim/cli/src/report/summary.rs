//! One sentence per figure, computed from its rows: the headline comparison the sweep file
//! names (`plot.compare`), plus the change along the axis.

use sim::sweep::{PlotKind, Row, Sweep, series, value_at};

/// The words for a column in a sentence.
pub fn describe(metric: &str) -> &str {
    match metric {
        "latency_p50_ms" => "p50 decision latency",
        "latency_p90_ms" => "p90 decision latency",
        "latency_p99_ms" => "p99 decision latency",
        "latency_p999_ms" => "p99.9 decision latency",
        "latency_p9999_ms" => "p99.99 decision latency",
        "latency_max_ms" => "longest decision",
        "round_trips_per_decision" => "round trips per decision",
        "commands_per_decision" => "Redis commands per decision",
        "pool_wait_p50_ms" => "p50 pool wait",
        "pool_wait_p99_ms" => "p99 pool wait",
        "hottest_node_share_pct" => "hottest node's share",
        "hottest_slot_share_pct" => "hottest slot's share",
        "over_admission_max" => "admissions beyond the stated bound",
        "fail_open" => "fail-open admissions",
        other => other,
    }
}

/// A number as the README prints it: at most two decimals, no trailing zeros.
pub fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn unit_of(metric: &str) -> &'static str {
    if metric.ends_with("_ms") {
        " ms"
    } else if metric.ends_with("_pct") {
        "%"
    } else {
        ""
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!(": {}×", number(a / b))
    } else {
        String::new()
    }
}

/// The figure's sentence.
pub fn sentence(sweep: &Sweep, rows: &[Row]) -> String {
    if sweep.plot.kind == PlotKind::Heatmap {
        return heatmap(sweep, rows);
    }
    let metric = sweep.plot.metrics[0].as_str();
    let unit = unit_of(metric);
    let Some(compare) = &sweep.plot.compare else {
        return format!("{} rows of {}.", rows.len(), describe(metric));
    };
    let at = match sweep.plot.kind {
        PlotKind::Lines => compare.at,
        PlotKind::Bars | PlotKind::Percentiles | PlotKind::Heatmap => None,
    };
    let (Some(a), Some(b)) = (
        value_at(rows, &compare.a, metric, at),
        value_at(rows, &compare.b, metric, at),
    ) else {
        return format!(
            "No data for {} and {} at the compared point.",
            compare.a, compare.b
        );
    };
    let place = match at {
        Some(x) => format!("At {} = {}{}", sweep.axis_name, number(x), axis_unit(sweep)),
        None => "Here".to_owned(),
    };
    let mut text = format!(
        "{place}, the {} of {} is {}{unit} and of {} {}{unit}{}.",
        describe(metric),
        compare.a,
        number(a),
        compare.b,
        number(b),
        ratio(a, b)
    );
    if let Some(at_most) = sweep.plot.knee_at_most {
        text.push_str(&knee(sweep, rows, compare, at_most));
    }
    if let Some(note) = &sweep.plot.note {
        text.push_str(&explain(sweep, rows, note));
    }
    match sweep.plot.kind {
        PlotKind::Lines => text.push_str(&along_axis(sweep, rows, &compare.a, metric)),
        PlotKind::Bars | PlotKind::Percentiles | PlotKind::Heatmap => {
            text.push_str(&second_metric(sweep, rows, &compare.a, &compare.b));
        }
    }
    text
}

/// A limiter's p50 and p99 at the last point in round trips (the axis is the RTT), its
/// denials and round trips per decision, and the sweep's words on why.
fn explain(sweep: &Sweep, rows: &[Row], note: &sim::sweep::Note) -> String {
    let limiter = note.limiter.as_str();
    let last = |metric: &str| series(rows, limiter, metric).last().copied();
    let (Some((x, p50)), Some((_, p99)), Some((_, denied)), Some((_, decisions)), Some((_, trips))) = (
        last("latency_p50_ms"),
        last("latency_p99_ms"),
        last("denied"),
        last("decisions"),
        last("round_trips_per_decision"),
    ) else {
        return String::new();
    };
    let share = if decisions > 0.0 {
        100.0 * denied / decisions
    } else {
        0.0
    };
    format!(
        " At {} = {}{}, {limiter}'s p50 is {} ms ({} round trips) and its p99 {} ms ({}); {}% of its decisions are denials, and it makes {} round trips per decision: {}",
        sweep.axis_name,
        number(x),
        axis_unit(sweep),
        number(p50),
        number(p50 / x),
        number(p99),
        number(p99 / x),
        number(share),
        number(trips),
        note.why
    )
}

/// Where each compared limiter's last metric settles at or below `at_most`.
fn knee(sweep: &Sweep, rows: &[Row], compare: &sim::sweep::Compare, at_most: f64) -> String {
    let Some(metric) = sweep.plot.metrics.last() else {
        return String::new();
    };
    let place = |limiter: &str| match sim::sweep::knee(rows, limiter, metric, at_most) {
        Some(x) => format!("{} = {}", sweep.axis_name, number(x)),
        None => "never in this sweep".to_owned(),
    };
    format!(
        " The {} stays at or below {}{unit} from {} for {} and from {} for {}.",
        describe(metric),
        number(at_most),
        place(&compare.a),
        compare.a,
        place(&compare.b),
        compare.b,
        unit = unit_of(metric)
    )
}

fn axis_unit(sweep: &Sweep) -> String {
    match sweep.axis_unit.as_str() {
        "" | "count" => String::new(),
        unit => format!(" {unit}"),
    }
}

/// How `limiter`'s `metric` moves from the first point to the last.
fn along_axis(sweep: &Sweep, rows: &[Row], limiter: &str, metric: &str) -> String {
    let points = series(rows, limiter, metric);
    match (points.first(), points.last()) {
        (Some(first), Some(last)) if points.len() > 1 => format!(
            " From {} = {} to {}{}, {limiter}'s goes from {}{unit} to {}{unit}.",
            sweep.axis_name,
            number(first.0),
            number(last.0),
            axis_unit(sweep),
            number(first.1),
            number(last.1),
            unit = unit_of(metric)
        ),
        _ => String::new(),
    }
}

/// The last metric of a bar or percentile figure, for the same two limiters.
fn second_metric(sweep: &Sweep, rows: &[Row], a: &str, b: &str) -> String {
    let Some(metric) = sweep
        .plot
        .metrics
        .last()
        .filter(|_| sweep.plot.metrics.len() > 1)
    else {
        return String::new();
    };
    match (
        value_at(rows, a, metric, None),
        value_at(rows, b, metric, None),
    ) {
        (Some(va), Some(vb)) => format!(
            " {}: {}{unit} against {}{unit}{}.",
            capitalise(describe(metric)),
            number(va),
            number(vb),
            ratio(va, vb),
            unit = unit_of(metric)
        ),
        _ => String::new(),
    }
}

/// The worst cell of `metric` over the cells whose faults took effect: (value, limiter,
/// column label), first in (limiter, column) order among equals.
fn worst_cell(
    sweep: &Sweep,
    rows: &[Row],
    metric: &str,
    family: Option<&str>,
) -> Option<(f64, String, String)> {
    let mut worst: Option<(f64, String, String)> = None;
    for limiter in limiter_names(rows, family) {
        for (x, label) in super::heatmap::columns(sweep, rows) {
            if let Some(Some(value)) = super::heatmap::cell(rows, &limiter, x, metric)
                && worst.as_ref().is_none_or(|(best, _, _)| value > *best)
            {
                worst = Some((value, limiter.clone(), label));
            }
        }
    }
    worst
}

/// The limiters of the rows in first-seen order, of one family or all.
fn limiter_names(rows: &[Row], family: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        if family.is_none_or(|family| row.family == family) && !names.contains(&row.limiter) {
            names.push(row.limiter.clone());
        }
    }
    names
}

/// A heatmap's sentence: how many cells stay within the bound, the worst cell overall and
/// among the atomic limiters, the later metrics' worst (fail-open admissions), and the n/a
/// count.
fn heatmap(sweep: &Sweep, rows: &[Row]) -> String {
    let metric = sweep.plot.metrics[0].as_str();
    let columns = super::heatmap::columns(sweep, rows);
    let (mut within, mut judged, mut unjudged) = (0, 0, 0);
    for limiter in limiter_names(rows, None) {
        for (x, _) in &columns {
            match super::heatmap::cell(rows, &limiter, *x, metric) {
                Some(Some(value)) => {
                    judged += 1;
                    within += usize::from(value == 0.0);
                }
                Some(None) => unjudged += 1,
                None => {}
            }
        }
    }
    let mut text = format!(
        "Of the {judged} cells (limiter × {}) whose faults took effect, {within} show no {}.",
        sweep.axis_name,
        describe(metric)
    );
    let over = |family: Option<&str>| {
        worst_cell(sweep, rows, metric, family).filter(|(value, _, _)| *value > 0.0)
    };
    match over(None) {
        Some((value, limiter, label)) => text.push_str(&format!(
            " The worst is {limiter} under {label}: {} beyond its bound (mean of the seeds).",
            number(value)
        )),
        None => text.push_str(" No cell goes beyond its bound."),
    }
    match over(Some("atomic")) {
        Some((value, limiter, label)) => text.push_str(&format!(
            " Among the atomic limiters the worst is {limiter} under {label}: {}.",
            number(value)
        )),
        None => text.push_str(" No atomic limiter goes beyond its bound under any class."),
    }
    for other in sweep.plot.metrics.iter().skip(1) {
        if let Some((value, limiter, label)) = worst_cell(sweep, rows, other, None) {
            text.push_str(&format!(
                " {} peak at {} ({limiter} under {label}).",
                capitalise(describe(other)),
                number(value)
            ));
        }
    }
    if unjudged > 0 {
        text.push_str(&format!(
            " {unjudged} cells are n/a: their fault did not take effect for that limiter."
        ));
    }
    text
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The counterexample's sentence: the key, its worst window against the bound, and who
/// admitted the first request beyond it.
pub fn counterexample(timeline: &sim::timeline::Timeline) -> String {
    let worst = timeline.worst_in_window();
    let (limit, span_ms) = timeline.bound.unwrap_or((0, 0));
    let first_over = timeline
        .marks
        .iter()
        .filter(|mark| mark.in_window > limit && mark.outcome == sim::event::Outcome::Allowed)
        .min_by_key(|mark| (mark.decided_ms, mark.id));
    let trips = timeline.marks.first().map_or(0, |mark| mark.round_trips);
    let mut text = format!(
        "{} fails: key {} has {worst} admissions in one {span_ms} ms window where {limit} are allowed",
        timeline.property, timeline.key
    );
    if let Some(mark) = first_over {
        text.push_str(&format!(
            "; the first beyond the bound is admitted by gateway-{} at {} ms",
            mark.gateway, mark.decided_ms
        ));
    }
    text.push_str(&format!(
        ". Each request makes {trips} round trips: it reads the list's length (LLEN) first and pushes in a later one, so requests in flight together all read a short list before any of them pushes. Shrunk in {} steps from `sim/scenarios/r3-legacy-ip-list.toml`.",
        timeline.steps.len()
    ));
    text
}

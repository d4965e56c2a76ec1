//! The counterexample figure: a lane per gateway with each request of the worst key drawn
//! from arrival to decision (green dot admitted, red cross denied, grey error), fault
//! windows as shaded bands with a legend, and beneath, the key's admissions in the trailing
//! window against the bound.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use sim::event::Outcome;
use sim::timeline::Timeline;

use super::plot::FONT;

/// The figure's size in pixels.
const SIZE: (u32, u32) = (1000, 640);

/// The figure as SVG text.
pub fn svg(timeline: &Timeline, title: &str) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(&root, timeline, title)?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(text)
}

/// The figure as a PNG file.
pub fn png(timeline: &Timeline, title: &str, path: &Path) -> Result<(), String> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(&root, timeline, title)?;
    root.present()
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

const ALLOWED: RGBColor = RGBColor(30, 140, 60);
const DENIED: RGBColor = RGBColor(200, 30, 30);
const ERROR: RGBColor = RGBColor(120, 120, 120);
const BANDS: [RGBColor; 3] = [
    RGBColor(250, 200, 80),
    RGBColor(150, 180, 250),
    RGBColor(200, 150, 220),
];

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    timeline: &Timeline,
    title: &str,
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    root.fill(&WHITE).map_err(failed)?;
    let root = root.titled(title, (FONT, 20)).map_err(failed)?;
    let (upper, lower) = root.split_vertically(SIZE.1 * 62 / 100);
    let from = timeline
        .marks
        .iter()
        .map(|m| m.arrived_ms)
        .chain(timeline.bands.iter().map(|b| b.from_ms))
        .min()
        .unwrap_or(0)
        .saturating_sub(10);
    let to = timeline
        .marks
        .iter()
        .map(|m| m.decided_ms)
        .chain(timeline.bands.iter().map(|b| b.to_ms))
        .max()
        .unwrap_or(1)
        + 10;
    let range = from as f64..to as f64;
    lanes(&upper, timeline, range.clone())?;
    counts(&lower, timeline, range)
}

fn lanes<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    timeline: &Timeline,
    range: std::ops::Range<f64>,
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let lanes = timeline.gateways().max(1);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(90)
        .build_cartesian_2d(range, -0.5..(f64::from(lanes) - 0.5))
        .map_err(failed)?;
    let lane_label = |y: &f64| {
        let lane = y.round();
        if (y - lane).abs() < 1e-6 && lane >= 0.0 {
            format!("gateway-{}", lane as u32)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(lanes as usize * 2 + 1)
        .y_label_formatter(&lane_label)
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .label_style((FONT, 13))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(failed)?;
    for (index, band) in timeline.bands.iter().enumerate() {
        let colour = BANDS[index % BANDS.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [
                    (band.from_ms as f64, -0.5),
                    (band.to_ms as f64, f64::from(lanes) - 0.5),
                ],
                colour.mix(0.35).filled(),
            )))
            .map_err(failed)?
            .label(format!("fault: {}", band.label))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled()));
    }
    marks(&mut chart, timeline, lanes)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(failed)?;
    Ok(())
}

/// Each request of the key: a line from arrival to decision, and its outcome's mark.
fn marks<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    timeline: &Timeline,
    lanes: u32,
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    // Requests on one lane are stacked so that concurrent ones do not hide each other.
    let mut per_lane = vec![0u32; lanes as usize];
    let mut drawn = Vec::new();
    for mark in &timeline.marks {
        let slot = &mut per_lane[(mark.gateway as usize).min(lanes as usize - 1)];
        let y = f64::from(mark.gateway) - 0.4 + f64::from(*slot % 12) * (0.8 / 12.0);
        *slot += 1;
        drawn.push((mark, y));
    }
    chart
        .draw_series(drawn.iter().map(|(mark, y)| {
            PathElement::new(
                vec![(mark.arrived_ms as f64, *y), (mark.decided_ms as f64, *y)],
                RGBColor(90, 90, 90).stroke_width(1),
            )
        }))
        .map_err(failed)?;
    for (outcome, colour, label) in [
        (Outcome::Allowed, ALLOWED, "admitted"),
        (Outcome::Denied, DENIED, "denied"),
        (Outcome::Error, ERROR, "error"),
        (Outcome::FailOpen, ERROR, "fail-open"),
    ] {
        let points: Vec<(f64, f64)> = drawn
            .iter()
            .filter(|(mark, _)| mark.outcome == outcome)
            .map(|(mark, y)| (mark.decided_ms as f64, *y))
            .collect();
        if points.is_empty() {
            continue;
        }
        if outcome == Outcome::Denied {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&p| Cross::new(p, 4, colour.stroke_width(2))),
                )
                .map_err(failed)?
                .label(label)
                .legend(move |(x, y)| Cross::new((x + 8, y), 4, colour.stroke_width(2)));
        } else {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(failed)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
    }
    Ok(())
}

fn counts<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    timeline: &Timeline,
    range: std::ops::Range<f64>,
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let limit = timeline.bound.map_or(0, |(limit, _)| limit);
    let high = (timeline.worst_in_window().max(limit) + 2) as f64;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(range.clone(), 0.0..high)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc("simulated time (ms)")
        .y_desc("admitted in window")
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .y_label_formatter(&|y: &f64| format!("{y:.0}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(failed)?;
    let mut steps: Vec<(u64, u64)> = timeline
        .marks
        .iter()
        .map(|m| (m.decided_ms, m.in_window))
        .collect();
    steps.sort_unstable();
    let mut points = vec![(range.start, 0.0)];
    for (at, count) in steps {
        let last = points.last().map_or(0.0, |p| p.1);
        points.push((at as f64, last));
        points.push((at as f64, count as f64));
    }
    points.push((range.end, points.last().map_or(0.0, |p| p.1)));
    chart
        .draw_series(LineSeries::new(
            points,
            RGBColor(20, 80, 200).stroke_width(2),
        ))
        .map_err(failed)?
        .label(format!(
            "key {}: admissions in the trailing window",
            timeline.key
        ))
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 20, y)],
                RGBColor(20, 80, 200).stroke_width(2),
            )
        });
    if let Some((limit, span_ms)) = timeline.bound {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(range.start, limit as f64), (range.end, limit as f64)],
                8,
                5,
                DENIED.stroke_width(2),
            ))
            .map_err(failed)?
            .label(format!("bound: {limit} per {span_ms} ms"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 10, y)], DENIED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(failed)?;
    Ok(())
}

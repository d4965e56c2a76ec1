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

use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::glyphs::Png;
use super::plot::{FONT, builder, legend, styled};

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
    let root = Png::new(path, SIZE).into_drawing_area();
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
        .saturating_sub(1);
    let to = timeline
        .marks
        .iter()
        .map(|m| m.decided_ms)
        .chain(
            timeline
                .marks
                .iter()
                .flat_map(|m| m.trips.iter().map(|t| t.replied_ms)),
        )
        .chain(timeline.bands.iter().map(|b| b.to_ms))
        .max()
        .unwrap_or(1)
        + 1;
    // Room on the right for the legends, clear of the requests.
    let range = from as f64..(to as f64 + (to - from) as f64 * 0.4);
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
    let (x0, x1) = (range.start, range.end);
    let mut chart = builder(area, None, (30, 90))
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
    styled(&mut chart.configure_mesh(), 13)
        .disable_y_mesh()
        .y_labels(lanes as usize * 2 + 1)
        .y_label_formatter(&lane_label)
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .draw()
        .map_err(failed)?;
    // Lane boundaries, so that each gateway's requests read as one group.
    chart
        .draw_series((1..lanes).map(|lane| {
            let y = f64::from(lane) - 0.5;
            PathElement::new(
                vec![(x0, y), (x1, y)],
                RGBColor(150, 150, 150).stroke_width(1),
            )
        }))
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
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// What a command does to the key, for its colour: reads, writes, scripts.
fn command_colour(commands: &str) -> (RGBColor, &'static str) {
    let first = commands.split('+').next().unwrap_or("");
    match first {
        "LLEN" | "LINDEX" | "GET" | "TTL" | "PING" | "TIME" => (READ, "read (LLEN, LINDEX)"),
        "EVALSHA" | "EVAL" | "SCRIPT LOAD" | "FCALL" | "FUNCTION LOAD" => {
            (SCRIPT, "script (EVALSHA, EVAL)")
        }
        _ => (WRITE, "write (LPUSH, LTRIM, EXPIRE)"),
    }
}

const READ: RGBColor = RGBColor(120, 170, 230);
const WRITE: RGBColor = RGBColor(245, 170, 90);
const SCRIPT: RGBColor = RGBColor(190, 140, 220);

/// Each request of the key on its own row of its gateway's lane (requests that overlap in
/// time take different rows): a line from arrival to decision, each Redis round trip as a
/// bar named by its commands, and the outcome's mark at the decision.
fn marks<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    timeline: &Timeline,
    lanes: u32,
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    // Rows per lane: a request takes the first row free since its arrival.
    let end = |mark: &sim::timeline::Mark| {
        mark.trips
            .iter()
            .map(|t| t.replied_ms)
            .chain(std::iter::once(mark.decided_ms))
            .max()
            .unwrap_or(mark.decided_ms)
    };
    let mut rows: Vec<Vec<u64>> = vec![Vec::new(); lanes as usize];
    let mut placed = Vec::new();
    for mark in &timeline.marks {
        let lane = &mut rows[(mark.gateway as usize).min(lanes as usize - 1)];
        let row = match lane
            .iter()
            .position(|&busy_until| busy_until < mark.arrived_ms)
        {
            Some(row) => row,
            None => {
                lane.push(0);
                lane.len() - 1
            }
        };
        lane[row] = end(mark);
        placed.push((mark, row));
    }
    let y_of = |mark: &sim::timeline::Mark, row: usize| {
        let lane = (mark.gateway as usize).min(lanes as usize - 1);
        let count = rows[lane].len().max(1) as f64;
        f64::from(mark.gateway) + 0.4 - (row as f64 + 0.5) * (0.8 / count)
    };
    let height = |mark: &sim::timeline::Mark| {
        let lane = (mark.gateway as usize).min(lanes as usize - 1);
        0.8 / rows[lane].len().max(1) as f64 * 0.35
    };
    chart
        .draw_series(placed.iter().map(|(mark, row)| {
            let y = y_of(mark, *row);
            PathElement::new(
                vec![(mark.arrived_ms as f64, y), (end(mark) as f64, y)],
                RGBColor(90, 90, 90).stroke_width(1),
            )
        }))
        .map_err(failed)?;
    let mut kinds: Vec<&'static str> = Vec::new();
    for (mark, row) in &placed {
        let y = y_of(mark, *row);
        let h = height(mark);
        for trip in &mark.trips {
            let (colour, kind) = command_colour(&trip.commands);
            // A hair inside its interval, so that round trips back to back stay apart.
            let corners = [
                (trip.sent_ms as f64 + 0.03, y - h),
                (trip.replied_ms.max(trip.sent_ms) as f64 - 0.03, y + h),
            ];
            let bar = chart
                .draw_series([
                    Rectangle::new(corners, colour.filled()),
                    Rectangle::new(corners, RGBColor(80, 80, 80).stroke_width(1)),
                ])
                .map_err(failed)?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
                bar.label(kind).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled())
                });
            }
        }
    }
    let text = (FONT, 11)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(placed.iter().flat_map(|(mark, row)| {
            let y = y_of(mark, *row);
            let text = text.clone();
            mark.trips.iter().map(move |trip| {
                Text::new(
                    trip.commands.clone(),
                    (trip.sent_ms as f64 + 0.1, y),
                    text.clone(),
                )
            })
        }))
        .map_err(failed)?;
    for (outcome, colour, label) in [
        (Outcome::Allowed, ALLOWED, "admitted"),
        (Outcome::Denied, DENIED, "denied"),
        (Outcome::Error, ERROR, "error"),
        (Outcome::FailOpen, ERROR, "fail-open"),
    ] {
        let points: Vec<(f64, f64)> = placed
            .iter()
            .filter(|(mark, _)| mark.outcome == outcome)
            .map(|(mark, row)| (mark.decided_ms as f64, y_of(mark, *row)))
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
    let mut chart = builder(area, None, (40, 90))
        .build_cartesian_2d(range.clone(), 0.0..high)
        .map_err(failed)?;
    styled(&mut chart.configure_mesh(), 13)
        .x_desc("simulated time (ms)")
        .y_desc("admitted in window")
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .y_label_formatter(&|y: &f64| format!("{y:.0}"))
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
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

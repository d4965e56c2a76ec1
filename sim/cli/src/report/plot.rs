//! Drawing a figure with plotters, the same code for the SVG and the PNG backend.
//!
//! Text is drawn by ab_glyph from DejaVu Sans embedded in the binary (`sim/cli/assets/`), so
//! nothing is read from the system and the PNG bytes do not depend on installed fonts. PNGs are
//! drawn through `glyphs::Png`, which places each glyph at its side bearing.

use std::path::Path;

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{
    AsRangedCoord, DefaultFormatting, KeyPointHint, KeyPointWeight, Ranged, SegmentValue,
    SegmentedCoord, ValueFormatter,
};
use plotters::coord::types::RangedCoordu32;
use plotters::prelude::*;
use sim::sweep::{Corner, PlotKind, Row, Sweep, series};

use super::glyphs::Png;
use super::summary::describe;

/// The figure's size in pixels.
const SIZE: (u32, u32) = (1000, 600);
/// The font every text uses.
pub const FONT: &str = "sans-serif";
pub(super) static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the embedded font with plotters (needed before any PNG text is drawn).
pub fn register_font() -> Result<(), String> {
    plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
        .map_err(|_| "the embedded font does not parse".to_owned())
}

/// The figure as SVG text.
pub fn svg(sweep: &Sweep, rows: &[Row]) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(&root, sweep, rows)?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(text)
}

/// The figure as a PNG file at `path`.
pub fn png(sweep: &Sweep, rows: &[Row], path: &Path) -> Result<(), String> {
    let root = Png::new(path, SIZE).into_drawing_area();
    draw(&root, sweep, rows)?;
    root.present()
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// The colours of a family, picked in order for its limiters: warm for new-api's, cool for
/// the atomic scripts, grey and purple for in-process limiters.
fn colour(family: &str, index: usize) -> RGBColor {
    const LEGACY: [RGBColor; 5] = [
        RGBColor(200, 30, 30),
        RGBColor(230, 120, 0),
        RGBColor(140, 70, 20),
        RGBColor(220, 60, 140),
        RGBColor(170, 140, 0),
    ];
    const ATOMIC: [RGBColor; 6] = [
        RGBColor(20, 80, 200),
        RGBColor(0, 150, 130),
        RGBColor(90, 160, 230),
        RGBColor(40, 120, 40),
        RGBColor(0, 60, 110),
        RGBColor(110, 190, 90),
    ];
    const MEMORY: [RGBColor; 3] = [
        RGBColor(110, 110, 110),
        RGBColor(120, 60, 170),
        RGBColor(60, 60, 60),
    ];
    let palette: &[RGBColor] = match family {
        "legacy" => &LEGACY,
        "memory" => &MEMORY,
        _ => &ATOMIC,
    };
    palette[index % palette.len()]
}

/// The limiters in the rows, in first-seen order, with their colours.
pub(super) fn limiters(rows: &[Row]) -> Vec<(String, RGBColor)> {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for row in rows {
        if !seen.iter().any(|(name, _)| *name == row.limiter) {
            seen.push((row.limiter.clone(), row.family));
        }
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    seen.iter()
        .map(|(name, family)| {
            let index = match counts.iter_mut().find(|(f, _)| f == family) {
                Some((_, count)) => {
                    *count += 1;
                    *count - 1
                }
                None => {
                    counts.push((family, 1));
                    0
                }
            };
            (name.clone(), colour(family, index))
        })
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sweep: &Sweep,
    rows: &[Row],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|error| error.to_string())?;
    match sweep.plot.kind {
        PlotKind::Lines => lines(root, sweep, rows),
        PlotKind::Bars => bars(root, sweep, rows),
        PlotKind::Percentiles => percentiles(root, sweep, rows),
        PlotKind::Heatmap => super::heatmap::draw(root, sweep, rows),
    }
}

/// One drawn line: its points, colour, label and whether it is dashed.
struct Line {
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    label: String,
    dashed: bool,
}

/// A range with 5% room on a linear axis, or a decade-aligned one on a log axis.
fn padded(low: f64, high: f64, log: bool) -> (f64, f64) {
    if log {
        let low = low.max(1e-3);
        (
            10f64.powf(low.log10().floor()),
            10f64.powf(high.max(low * 1.01).log10().ceil()),
        )
    } else {
        let low = low.min(0.0);
        let high = if high > low { high * 1.08 } else { low + 1.0 };
        (low, high)
    }
}

/// A log axis drawn the way people read one: light grid lines at 1 to 9 times each power of
/// ten, bold ones with a label at 1, 2 and 5 times it (only the powers of ten when those are
/// too many). plotters' own log axis starts its ticks at the first power of ten inside the
/// range, so the ticks below it (2 to 5 ms on an axis from 1.6 ms) had neither grid line nor
/// label, and it listed that power twice (a label drawn twice looks bold).
#[derive(Clone, Debug)]
pub struct LogAxis {
    low: f64,
    high: f64,
}

impl LogAxis {
    /// The axis over `range` (both ends positive).
    pub fn new(range: Range<f64>) -> LogAxis {
        let low = range.start.max(1e-9);
        LogAxis {
            low,
            high: range.end.max(low * 1.01),
        }
    }

    /// Every `step` × 10^k inside the range, ascending.
    fn points(&self, steps: &[f64]) -> Vec<f64> {
        let first = self.low.log10().floor() as i32;
        let last = self.high.log10().ceil() as i32;
        let mut points = Vec::new();
        for exponent in first..=last {
            let decade = 10f64.powi(exponent);
            for step in steps {
                let value = step * decade;
                if value >= self.low * (1.0 - 1e-9) && value <= self.high * (1.0 + 1e-9) {
                    points.push(value);
                }
            }
        }
        points
    }
}

impl Ranged for LogAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (low, high) = (self.low.ln(), self.high.ln());
        let at = (value.max(f64::MIN_POSITIVE).ln() - low) / (high - low);
        limit.0 + (f64::from(limit.1 - limit.0) * at).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let steps: &[f64] = match hint.weight() {
            KeyPointWeight::Bold => &[1.0, 2.0, 5.0],
            KeyPointWeight::Any => &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        };
        let points = self.points(steps);
        if points.len() > hint.max_num_points() {
            self.points(&[1.0])
        } else {
            points
        }
    }

    fn range(&self) -> Range<f64> {
        self.low..self.high
    }
}

/// Labels per axis: enough for 1, 2 and 5 in each of four decades.
const LABELS: usize = 16;

/// The start every chart shares: margin, label areas, and optionally a caption.
pub fn builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: Option<&str>,
    (x_area, y_area): (u32, u32),
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    if let Some(caption) = caption {
        builder.caption(caption, (FONT, 22)).margin(16);
    } else {
        builder.margin(12);
    }
    builder.x_label_area_size(x_area).y_label_area_size(y_area);
    builder
}

/// The mesh style every chart shares: label and axis-title fonts, a light grid.
pub fn styled<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>,
    label_size: u32,
) -> &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB> {
    mesh.label_style((FONT, label_size))
        .axis_desc_style((FONT, label_size + 2))
        .light_line_style(RGBColor(235, 235, 235))
}

/// The legend every chart shares, in `position`.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(|error| error.to_string())
}

fn lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sweep: &Sweep,
    rows: &[Row],
) -> Result<(), String> {
    let mut drawn = Vec::new();
    for (name, colour) in limiters(rows) {
        for (index, metric) in sweep.plot.metrics.iter().enumerate() {
            let points: Vec<(f64, f64)> = series(rows, &name, metric)
                .into_iter()
                .map(|(x, y)| (x, if sweep.plot.y_log { y.max(0.1) } else { y }))
                .collect();
            let label = if sweep.plot.metrics.len() > 1 {
                format!("{name} {}", short(metric))
            } else {
                name.clone()
            };
            drawn.push(Line {
                points,
                colour,
                label,
                dashed: index > 0,
            });
        }
    }
    let xs = drawn
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.0));
    let ys = drawn
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.1));
    let (x0, x1) = bounds(xs);
    let (y0, y1) = bounds(ys);
    let (x0, x1) = if sweep.plot.x_log {
        (x0 * 0.8, x1 * 1.25)
    } else {
        padded(x0, x1, false)
    };
    let (y0, y1) = padded(y0, y1, sweep.plot.y_log);
    let (x, y) = (LogAxis::new(x0..x1), LogAxis::new(y0..y1));
    let labels = Labels {
        legend: corner(sweep.plot.legend),
        title: &sweep.title,
        x: sweep.axis_title(),
        y: &sweep.plot.y_label,
        x_log: sweep.plot.x_log,
        y_log: sweep.plot.y_log,
    };
    match (sweep.plot.x_log, sweep.plot.y_log) {
        (false, false) => chart(root, &labels, x0..x1, y0..y1, &drawn),
        (true, false) => chart(root, &labels, x, y0..y1, &drawn),
        (false, true) => chart(root, &labels, x0..x1, y, &drawn),
        (true, true) => chart(root, &labels, x, y, &drawn),
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// A short name for a metric in a legend (`p99`).
fn short(metric: &str) -> String {
    let words = describe(metric);
    words
        .strip_suffix(" decision latency")
        .unwrap_or(words)
        .to_owned()
}

struct Labels<'a> {
    legend: SeriesLabelPosition,
    title: &'a str,
    x: String,
    y: &'a str,
    x_log: bool,
    y_log: bool,
}

/// A tick's label: the number (a log axis labels only its bold ticks, 1, 2 and 5 times a
/// power of ten; see [`LogAxis`]).
fn tick(value: f64) -> String {
    super::summary::number(value)
}

fn chart<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    labels: &Labels,
    x: X,
    y: Y,
    drawn: &[Line],
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let x_tick = |v: &f64| tick(*v);
    let y_tick = |v: &f64| tick(*v);
    let mut chart = builder(root, Some(labels.title), (48, 70))
        .build_cartesian_2d(x, y)
        .map_err(failed)?;
    styled(&mut chart.configure_mesh(), 14)
        .x_desc(labels.x.as_str())
        .y_desc(labels.y)
        .x_labels(if labels.x_log { LABELS } else { 20 })
        .y_labels(if labels.y_log { LABELS } else { 12 })
        .x_label_formatter(&x_tick)
        .y_label_formatter(&y_tick)
        .draw()
        .map_err(failed)?;
    for line in drawn {
        let style = line.colour.stroke_width(2);
        let colour = line.colour;
        let annotated = if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(line.points.clone(), 8, 5, style))
                .map_err(failed)?
        } else {
            chart
                .draw_series(LineSeries::new(line.points.clone(), style))
                .map_err(failed)?
        };
        let dashed = line.dashed;
        annotated.label(line.label.as_str()).legend(move |(x, y)| {
            let end = if dashed { x + 10 } else { x + 20 };
            PathElement::new(vec![(x, y), (end, y)], colour.stroke_width(2))
        });
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|&point| Circle::new(point, 3, colour.filled())),
            )
            .map_err(failed)?;
    }
    legend(&mut chart, labels.legend.clone())
}

/// Horizontal bars, one panel per metric, one bar per limiter at the sweep's first point.
fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sweep: &Sweep,
    rows: &[Row],
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let named = limiters(rows);
    let titled = root.titled(&sweep.title, (FONT, 22)).map_err(failed)?;
    let panels = titled.split_evenly((1, sweep.plot.metrics.len()));
    for (panel, metric) in panels.iter().zip(&sweep.plot.metrics) {
        let values: Vec<f64> = named
            .iter()
            .map(|(name, _)| series(rows, name, metric).first().map_or(0.0, |p| p.1))
            .collect();
        let high = values.iter().copied().fold(0.0, f64::max).max(1.0) * 1.15;
        let x_tick = |v: &f64| tick(*v);
        let count = named.len() as u32;
        let mut chart = builder(panel, None, (44, 170))
            .build_cartesian_2d(0.0..high, bar_slots(count))
            .map_err(failed)?;
        let names: Vec<String> = named.iter().map(|(name, _)| name.clone()).collect();
        let formatter = |value: &SegmentValue<u32>| match value {
            SegmentValue::CenterOf(index) => {
                names.get(*index as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        styled(&mut chart.configure_mesh(), 13)
            .disable_y_mesh()
            .y_labels(named.len())
            .y_label_formatter(&formatter)
            .x_label_formatter(&x_tick)
            .x_desc(format!("{} ({})", describe(metric), sweep.plot.y_label))
            .draw()
            .map_err(failed)?;
        chart
            .draw_series(named.iter().zip(&values).enumerate().map(
                |(index, ((_, colour), value))| {
                    let index = index as u32;
                    let mut bar = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(index)),
                            (*value, bar_end(index, count)),
                        ],
                        colour.filled(),
                    );
                    bar.set_margin(5, 5, 0, 0);
                    bar
                },
            ))
            .map_err(failed)?;
        chart
            .draw_series(
                named
                    .iter()
                    .zip(&values)
                    .enumerate()
                    .map(|(index, (_, value))| {
                        Text::new(
                            super::summary::number(*value),
                            (*value + high * 0.01, SegmentValue::CenterOf(index as u32)),
                            (FONT, 13).into_font(),
                        )
                    }),
            )
            .map_err(failed)?;
    }
    Ok(())
}

/// The category axis of a bar panel: exactly `count` slots. plotters counts an integer
/// range's end as a value (`0..n` has n + 1), and its segmented axis adds one more past the
/// last, so `0..count` left an empty slot at the top; `0..count − 1` has `count`.
fn bar_slots(count: u32) -> SegmentedCoord<RangedCoordu32> {
    (0..count.max(1) - 1).into_segmented()
}

/// Where bar `index` of `count` ends on [`bar_slots`]: the next slot, or the axis's end for
/// the last bar.
fn bar_end(index: u32, count: u32) -> SegmentValue<u32> {
    if index + 1 >= count {
        SegmentValue::Last
    } else {
        SegmentValue::Exact(index + 1)
    }
}

/// The latency distribution: each metric is a percentile p drawn at x = 1/(1 − p).
fn percentiles<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sweep: &Sweep,
    rows: &[Row],
) -> Result<(), String> {
    let drawn: Vec<Line> = limiters(rows)
        .into_iter()
        .map(|(name, colour)| Line {
            points: sweep
                .plot
                .metrics
                .iter()
                .filter_map(|metric| {
                    let p = percentile_of(metric)?;
                    let value = series(rows, &name, metric).first()?.1;
                    Some((1.0 / (1.0 - p), value.max(0.1)))
                })
                .collect(),
            colour,
            label: name,
            dashed: false,
        })
        .collect();
    let (y0, y1) = bounds(drawn.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
    let (y0, y1) = padded(y0, y1, true);
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let mut chart = builder(root, Some(&sweep.title), (48, 70))
        .build_cartesian_2d(LogAxis::new(1.5..15_000.0), LogAxis::new(y0..y1))
        .map_err(failed)?;
    let formatter = |x: &f64| percentile_label(*x);
    styled(&mut chart.configure_mesh(), 14)
        .x_desc("percentile (x = 1/(1 − p), log)")
        .y_desc(sweep.plot.y_label.as_str())
        .x_labels(LABELS)
        .x_label_formatter(&formatter)
        .y_labels(LABELS)
        .y_label_formatter(&|v: &f64| tick(*v))
        .draw()
        .map_err(failed)?;
    for line in &drawn {
        let colour = line.colour;
        chart
            .draw_series(LineSeries::new(line.points.clone(), colour.stroke_width(2)))
            .map_err(failed)?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|&point| Circle::new(point, 3, colour.filled())),
            )
            .map_err(failed)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn corner(corner: Corner) -> SeriesLabelPosition {
    match corner {
        Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
        Corner::UpperRight => SeriesLabelPosition::UpperRight,
        Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
        Corner::LowerRight => SeriesLabelPosition::LowerRight,
    }
}

/// The percentile a latency column stands for.
fn percentile_of(metric: &str) -> Option<f64> {
    match metric {
        "latency_p50_ms" => Some(0.5),
        "latency_p90_ms" => Some(0.9),
        "latency_p99_ms" => Some(0.99),
        "latency_p999_ms" => Some(0.999),
        "latency_p9999_ms" => Some(0.9999),
        _ => None,
    }
}

/// The x axis's tick label: the percentile p at x = 1/(1 − p) (2 is p50, 20 p95, 1000
/// p99.9).
fn percentile_label(x: f64) -> String {
    format!("p{}", super::summary::number(100.0 * (1.0 - 1.0 / x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: a bar panel has one slot per bar and no empty one: the first bar starts at
    /// the axis's start, the last ends at its end, and all slots are one width. Method: map
    /// the slots of 1 to 15 bars onto 0..1500 pixels.
    #[test]
    fn bar_slots_fill_the_axis_without_an_empty_one() {
        for count in 1..=15u32 {
            let slots = bar_slots(count);
            let at = |value: &SegmentValue<u32>| slots.map(value, (0, 1500));
            assert_eq!(at(&SegmentValue::Exact(0)), 0, "{count} bars");
            assert_eq!(at(&bar_end(count - 1, count)), 1500, "{count} bars");
            let width = 1500 / count as i32;
            for index in 0..count {
                let start = at(&SegmentValue::Exact(index));
                let end = at(&bar_end(index, count));
                assert!(
                    (end - start - width).abs() <= 1,
                    "{count} bars, bar {index}"
                );
            }
        }
    }

    /// Goal: a log axis labels 1, 2 and 5 in every decade it spans, the partial decade below
    /// its first power of ten included, each once; its light grid has 1 to 9. Method: the
    /// axis of figure 1 (0.08 to 25 ms) and a percentile axis.
    #[test]
    fn log_axis_ticks_are_one_two_five() {
        let axis = LogAxis::new(0.08..25.0);
        let bold = axis.key_points(plotters::coord::ranged1d::BoldPoints(LABELS));
        assert_eq!(bold, [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        let labels: Vec<String> = bold.iter().map(|v| tick(*v)).collect();
        assert_eq!(labels, ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20"]);
        let light = axis.key_points(plotters::coord::ranged1d::LightPoints::new(LABELS, 200));
        assert_eq!(light.len(), 22);
        // Too many for the hint: powers of ten only.
        let wide = LogAxis::new(1.0..1e6);
        assert_eq!(
            wide.key_points(plotters::coord::ranged1d::BoldPoints(8)),
            [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]
        );
        let percentiles = LogAxis::new(1.5..15_000.0);
        let labels: Vec<String> = percentiles
            .key_points(plotters::coord::ranged1d::BoldPoints(LABELS))
            .iter()
            .map(|x| percentile_label(*x))
            .collect();
        assert_eq!(labels[..4], ["p50", "p80", "p90", "p95"]);
        assert_eq!(labels.last().map(String::as_str), Some("p99.99"));
    }
}

//! The seed's storage comparison as a figure: per limiter (memory, Redis called
//! sequentially, hybrid), this run's decisions per second and mean decision latency beside
//! the seed's own figures, on log axes. The report draws the simulated rows
//! (`sim::storage::simulate`); `ratelab bench --only storage` draws the measured ones with
//! the same code.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use sim::storage::{Row, Subject};

use super::glyphs::Png;
use super::plot::FONT;
use super::summary::number;

/// The figure's size in pixels.
const SIZE: (u32, u32) = (1200, 560);
/// The seed's bars.
const SEED_COLOUR: RGBColor = RGBColor(190, 190, 190);

/// The figure as SVG text.
pub fn svg(title: &str, rows: &[Row]) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(&root, title, rows)?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(text)
}

/// The figure as a PNG file at `path`.
pub fn png(title: &str, rows: &[Row], path: &Path) -> Result<(), String> {
    let root = Png::new(path, SIZE).into_drawing_area();
    draw(&root, title, rows)?;
    root.present()
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// A number on a log axis: `2M`, `40k`, `0.001`.
fn compact(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", number(value / 1e6))
    } else if value >= 1e3 {
        format!("{}k", number(value / 1e3))
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 0.01 {
        number(value)
    } else if value > 0.0 {
        // Two significant digits.
        let digits = usize::try_from((-value.log10().floor()) as i64 + 1).unwrap_or(6);
        let text = format!("{value:.digits$}");
        text.trim_end_matches('0').to_owned()
    } else {
        "0".to_owned()
    }
}

/// A decade-aligned range around `values`.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|value| *value > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if !low.is_finite() {
        return (0.1, 10.0);
    }
    (
        10f64.powf(low.log10().floor()),
        10f64.powf((high * 1.5).log10().ceil()),
    )
}

/// One bar of a panel: its label, value (or the words drawn instead), colour.
struct Bar {
    label: String,
    value: Result<f64, String>,
    colour: RGBColor,
}

fn bars_of(rows: &[Row], rate: bool) -> Vec<Bar> {
    let mut bars = Vec::new();
    for row in rows {
        let subject = Subject::ALL
            .into_iter()
            .find(|subject| subject.name() == row.limiter);
        let colour = match row.limiter {
            "memory_gcra" => RGBColor(110, 110, 110),
            "hybrid_gcra" => RGBColor(0, 150, 130),
            _ => RGBColor(20, 80, 200),
        };
        let value = if rate {
            row.decisions_per_s
                .ok_or_else(|| "unbounded (no round trip; CPU is free)".into())
        } else if row.latency_mean_ms > 0.0 {
            Ok(row.latency_mean_ms)
        } else {
            Err("0 ms (no round trip; CPU is free)".into())
        };
        bars.push(Bar {
            label: format!("{} ({})", row.limiter, row.source),
            value,
            colour,
        });
        let (seed_rate, seed_latency) = subject.map_or((None, None), Subject::seed_figures);
        let seed = if rate { seed_rate } else { seed_latency };
        bars.push(Bar {
            label: format!("{} (the seed)", row.limiter),
            value: seed.ok_or_else(|| "the seed gives no figure".into()),
            colour: SEED_COLOUR,
        });
    }
    bars
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    rows: &[Row],
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    root.fill(&WHITE).map_err(failed)?;
    let titled = root.titled(title, (FONT, 20)).map_err(failed)?;
    let panels = titled.split_evenly((1, 2));
    for (panel, rate) in panels.iter().zip([true, false]) {
        let bars = bars_of(rows, rate);
        let (low, high) = decades(bars.iter().filter_map(|bar| bar.value.clone().ok()));
        // A segmented range of 0..n has n + 1 segments; the last bar is n - 1.
        let count = (bars.len() as u32).saturating_sub(1);
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(if rate { 300 } else { 20 })
            .build_cartesian_2d((low..high).log_scale(), (0..count).into_segmented())
            .map_err(failed)?;
        let labels: Vec<String> = bars.iter().map(|bar| bar.label.clone()).collect();
        let names = |value: &SegmentValue<u32>| match value {
            SegmentValue::CenterOf(index) if rate => {
                labels.get(*index as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        let x_tick = |value: &f64| {
            let mantissa = value / 10f64.powf(value.log10().floor());
            if (mantissa - 1.0).abs() < 1e-6 {
                compact(*value)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(bars.len())
            .y_label_formatter(&names)
            .x_label_formatter(&x_tick)
            .x_desc(if rate {
                "decisions per second, one sequential caller (log)"
            } else {
                "mean decision latency, ms (log)"
            })
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(failed)?;
        for (index, bar) in bars.iter().enumerate() {
            let index = index as u32;
            let (end, text) = match &bar.value {
                Ok(value) => (*value, compact(*value)),
                Err(words) => (low, words.clone()),
            };
            if bar.value.is_ok() {
                let mut rectangle = Rectangle::new(
                    [
                        (low, SegmentValue::Exact(index)),
                        (end, SegmentValue::Exact(index + 1)),
                    ],
                    bar.colour.filled(),
                );
                rectangle.set_margin(4, 4, 0, 0);
                chart
                    .draw_series(std::iter::once(rectangle))
                    .map_err(failed)?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (end * 1.1, SegmentValue::CenterOf(index)),
                    (FONT, 13).into_font(),
                )))
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// The figure's sentence: each rate and latency against the seed's, and the two ratios
/// (memory against Redis, hybrid against Redis).
pub fn sentence(rows: &[Row], what: &str) -> String {
    let find = |subject: Subject| rows.iter().find(|row| row.limiter == subject.name());
    let (Some(memory), Some(redis), Some(hybrid)) = (
        find(Subject::Memory),
        find(Subject::RedisSequential),
        find(Subject::Hybrid),
    ) else {
        return "The comparison is missing a limiter.".to_owned();
    };
    let rate = |row: &Row| {
        row.decisions_per_s
            .map_or("an unbounded rate".to_owned(), |rate| {
                format!("{} decisions/s", compact(rate))
            })
    };
    let ratio = |row: &Row| match (row.decisions_per_s, redis.decisions_per_s) {
        (Some(a), Some(b)) if b > 0.0 => format!("{}×", number(a / b)),
        _ => "unbounded".to_owned(),
    };
    let memory_text = match memory.decisions_per_s {
        Some(_) => format!(
            "the memory limiter {} at {} µs p50 (the seed: 2M/s), {} Redis's (the seed: 500×)",
            rate(memory),
            number(memory.latency_p50_ms * 1e3),
            ratio(memory)
        ),
        None => "the memory limiter makes no round trip, so in virtual time its rate is \
                 unbounded (the seed: 2M/s, 500× Redis's)"
            .to_owned(),
    };
    format!(
        "{what}: the Redis limiter called sequentially makes {} ({} ms per decision on average; \
         the seed: 4k/s, 0.25 ms); {memory_text}; the hybrid answers {}% of requests locally and \
         makes {} at {} ms per decision on average (the seed: ~0.1 ms), {} Redis's.",
        rate(redis),
        format!("{:.3}", redis.latency_mean_ms)
            .trim_end_matches('0')
            .trim_end_matches('.'),
        number(hybrid.local_pct),
        rate(hybrid),
        format!("{:.3}", hybrid.latency_mean_ms)
            .trim_end_matches('0')
            .trim_end_matches('.'),
        ratio(hybrid),
    )
}

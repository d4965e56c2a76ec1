//! A heatmap figure (`plot.kind = "heatmap"`): one panel per metric, stacked; in each, a row
//! per limiter and a column per axis point, the cell coloured by the metric's mean over the
//! seeds and labelled with it. A cell where some run's faults did not all take effect is
//! grey and reads n/a: a zero there would claim a safety the run never tested.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sim::sweep::{Row, Sweep};

use super::glyphs::Png;
use super::plot::{FONT, limiters};
use super::summary::{describe, number};

/// Width of the figure; its height follows the number of limiters.
const WIDTH: u32 = 1400;
/// Pixels for the limiter names on the left.
const NAMES_PX: i32 = 190;
/// Height of one row of cells.
const ROW_PX: i32 = 22;
/// Height of a panel's title and column labels.
const HEADER_PX: i32 = 52;
/// Height of the figure's title.
const TITLE_PX: i32 = 44;

/// One cell: the metric's mean over the seeds, or `None` (n/a) when a run's faults did not
/// all take effect.
pub fn cell(rows: &[Row], limiter: &str, x: f64, metric: &str) -> Option<Option<f64>> {
    let runs: Vec<&Row> = rows
        .iter()
        .filter(|row| row.limiter == limiter && row.x == x)
        .collect();
    if runs.is_empty() {
        return None;
    }
    if !runs.iter().all(|row| sim::sweep::effective(row)) {
        return Some(None);
    }
    let sum: f64 = runs.iter().filter_map(|row| row.value(metric)).sum();
    Some(Some(sum / runs.len() as f64))
}

/// The columns: each point's x and label, in axis order, for the points that ran.
pub fn columns(sweep: &Sweep, rows: &[Row]) -> Vec<(f64, String)> {
    sweep
        .points
        .iter()
        .filter(|point| rows.iter().any(|row| row.x == point.x))
        .map(|point| (point.x, point.label.clone()))
        .collect()
}

fn size(sweep: &Sweep, rows: &[Row]) -> (u32, u32) {
    let panels = sweep.plot.metrics.len() as i32;
    let names = limiters(rows).len() as i32;
    let height = TITLE_PX + panels * (HEADER_PX + names * ROW_PX + 16) + 30;
    (WIDTH, u32::try_from(height).unwrap_or(600))
}

/// The figure as SVG text.
pub fn svg(sweep: &Sweep, rows: &[Row]) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size(sweep, rows)).into_drawing_area();
        draw(&root, sweep, rows)?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(text)
}

/// The figure as a PNG file at `path`.
pub fn png(sweep: &Sweep, rows: &[Row], path: &Path) -> Result<(), String> {
    let root = Png::new(path, size(sweep, rows)).into_drawing_area();
    draw(&root, sweep, rows)?;
    root.present()
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// A cell's fill: white at 0, deepening with the value on a log scale up to `max`; the
/// first panel red (beyond the bound), later ones blue (fail-open, outside it by design).
fn fill(value: f64, max: f64, panel: usize) -> RGBColor {
    if value <= 0.0 {
        return RGBColor(240, 248, 240);
    }
    let depth = ((1.0 + value).ln() / (1.0 + max.max(1.0)).ln()).clamp(0.0, 1.0);
    let shade = |full: f64| (255.0 - depth * (255.0 - full)).round() as u8;
    if panel == 0 {
        RGBColor(shade(200.0), shade(40.0), shade(40.0))
    } else {
        RGBColor(shade(40.0), shade(90.0), shade(200.0))
    }
}

/// Draws every panel on `root`.
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sweep: &Sweep,
    rows: &[Row],
) -> Result<(), String> {
    let failed = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    root.fill(&WHITE).map_err(failed)?;
    let centred = |size: u32| {
        (FONT, size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center))
    };
    let left = |size: u32, colour: RGBColor| {
        (FONT, size)
            .into_font()
            .color(&colour)
            .pos(Pos::new(HPos::Left, VPos::Center))
    };
    let (width, _) = root.dim_in_pixel();
    let width = i32::try_from(width).unwrap_or(1400);
    root.draw(&Text::new(
        sweep.title.clone(),
        (width / 2, TITLE_PX / 2),
        centred(22),
    ))
    .map_err(failed)?;
    let named = limiters(rows);
    let columns = columns(sweep, rows);
    let column_px = (width - NAMES_PX - 16) / i32::try_from(columns.len().max(1)).unwrap_or(1);
    let mut top = TITLE_PX;
    for (panel, metric) in sweep.plot.metrics.iter().enumerate() {
        let cells: Vec<Vec<Option<Option<f64>>>> = named
            .iter()
            .map(|(name, _)| {
                columns
                    .iter()
                    .map(|(x, _)| cell(rows, name, *x, metric))
                    .collect()
            })
            .collect();
        let max = cells
            .iter()
            .flatten()
            .filter_map(|cell| cell.flatten())
            .fold(0.0, f64::max);
        let heading = format!(
            "{} ({}; mean of the seeds; grey n/a: the fault did not take effect)",
            panel_title(metric),
            sweep.plot.y_label
        );
        root.draw(&Text::new(heading, (NAMES_PX, top + 12), left(15, BLACK)))
            .map_err(failed)?;
        for (index, (_, label)) in columns.iter().enumerate() {
            let x = NAMES_PX + column_px * i32::try_from(index).unwrap_or(0) + column_px / 2;
            root.draw(&Text::new(label.clone(), (x, top + 38), centred(13)))
                .map_err(failed)?;
        }
        let body = top + HEADER_PX;
        for (row_index, ((name, colour), row_cells)) in named.iter().zip(&cells).enumerate() {
            let y = body + ROW_PX * i32::try_from(row_index).unwrap_or(0);
            root.draw(&Text::new(
                name.clone(),
                (8, y + ROW_PX / 2),
                left(13, *colour),
            ))
            .map_err(failed)?;
            for (index, value) in row_cells.iter().enumerate() {
                let x = NAMES_PX + column_px * i32::try_from(index).unwrap_or(0);
                let (background, text) = match value {
                    None => (WHITE, String::new()),
                    Some(None) => (RGBColor(200, 200, 200), "n/a".to_owned()),
                    Some(Some(value)) => (fill(*value, max, panel), number(*value)),
                };
                root.draw(&Rectangle::new(
                    [(x + 1, y + 1), (x + column_px - 1, y + ROW_PX - 1)],
                    background.filled(),
                ))
                .map_err(failed)?;
                root.draw(&Text::new(
                    text,
                    (x + column_px / 2, y + ROW_PX / 2),
                    centred(12),
                ))
                .map_err(failed)?;
            }
        }
        top = body + ROW_PX * i32::try_from(named.len()).unwrap_or(0) + 16;
    }
    root.draw(&Text::new(
        format!("columns: {}", sweep.axis_title()),
        (NAMES_PX, top + 10),
        left(13, RGBColor(90, 90, 90)),
    ))
    .map_err(failed)?;
    Ok(())
}

/// A panel's title.
fn panel_title(metric: &str) -> String {
    match metric {
        "over_admission_max" => "Worst key's admissions beyond its stated bound".to_owned(),
        "fail_open" => {
            "Fail-open admissions (Redis unreachable; outside the bound by design)".to_owned()
        }
        other => describe(other).to_owned(),
    }
}

//! What every PNG plot of diten shares: the embedded font, the colours, the frame
//! (title, chart area, legend column) and the axes.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary
//! (`trainer/assets/DejaVuSans.ttf`, license beside it): plotters' `ab_glyph`
//! backend never looks for system fonts, so plots look the same on every machine.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// The font every plot uses, registered with plotters as `sans-serif`.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Line colours (Okabe–Ito, distinguishable with colour-vision deficiencies).
pub(crate) const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// Registers the embedded font once per process.
pub(crate) fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_ok());
    anyhow::ensure!(ok, "the embedded plot font could not be loaded");
    Ok(())
}

/// A drawing area of a PNG being written.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// The error of drawing into the plot at `path`.
pub(crate) fn plot_err(path: &Path, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing {}: {e}", path.display())
}

/// The frame every plot shares, drawn into `tmp` (the temporary file of `path`):
/// a white canvas of `size` pixels with `title` on top, split into the chart area
/// on the left and a legend column `legend_width` pixels wide on the right. Returns
/// (root, chart area, legend area); present the root when done.
pub(crate) fn frame<'a>(
    path: &Path,
    tmp: &'a Path,
    size: (u32, u32),
    title: &str,
    legend_width: u32,
) -> anyhow::Result<(Area<'a>, Area<'a>, Area<'a>)> {
    let root = BitMapBackend::new(tmp, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, &e))?;
    let body = root
        .margin(10, 0, 0, 0)
        .titled(title, ("sans-serif", 22))
        .map_err(|e| plot_err(path, &e))?;
    let (chart, legend) = body.split_horizontally(size.0 - legend_width);
    Ok((root, chart, legend))
}

/// Cartesian axes over `x` × `y` in `area`, with room for the tick labels.
pub(crate) fn axes<'a, 'b>(
    path: &Path,
    area: &'b Area<'a>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> anyhow::Result<
    ChartContext<
        'b,
        BitMapBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
> {
    ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(|e| plot_err(path, &e))
}

/// The smallest and largest finite value, or (∞, −∞) when there is none.
pub(crate) fn finite_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

//! What every PNG plot of diten shares: the embedded font, the series styles
//! (colour, dash, mark), the frame (title, chart area, legend column sized to its
//! labels) and the axes.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary
//! (`trainer/assets/DejaVuSans.ttf`, license beside it): plotters' `ab_glyph`
//! backend never looks for system fonts, so plots look the same on every machine.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::CoordTranslate;
use plotters::element::DashedPathElement;
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

/// How a series' line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dash {
    /// Unbroken.
    Solid,
    /// Dashes of 10 pixels.
    Dashed,
    /// Dots.
    Dotted,
}

/// The symbol at a series' points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A filled circle.
    Circle,
    /// A filled triangle, point up.
    Triangle,
    /// A filled square.
    Square,
    /// An ×.
    Cross,
}

/// What tells one series of a plot from another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SeriesStyle {
    /// Line and mark colour.
    pub colour: RGBColor,
    /// The line.
    pub dash: Dash,
    /// The symbol at each point.
    pub mark: Mark,
}

/// The (dash, mark) of each round through [`COLOURS`]: the first eight series are
/// solid with circles, the next eight dashed with triangles, and so on; after 32
/// series the styles repeat.
const VARIANTS: [(Dash, Mark); 4] = [
    (Dash::Solid, Mark::Circle),
    (Dash::Dashed, Mark::Triangle),
    (Dash::Dotted, Mark::Square),
    (Dash::Dashed, Mark::Cross),
];

impl SeriesStyle {
    /// The style of series `i` (from 0): the colours in order, then again with
    /// another dash and mark once they are used up.
    pub(crate) fn nth(i: usize) -> Self {
        let (dash, mark) = VARIANTS[(i / COLOURS.len()) % VARIANTS.len()];
        SeriesStyle {
            colour: COLOURS[i % COLOURS.len()],
            dash,
            mark,
        }
    }
}

/// Draws a line through `points` in `area` (a chart's plotting area or a legend).
pub(crate) fn draw_line<CT: CoordTranslate>(
    path: &Path,
    area: &DrawingArea<BitMapBackend<'_>, CT>,
    points: Vec<CT::From>,
    colour: RGBColor,
    dash: Dash,
    width: u32,
) -> anyhow::Result<()>
where
    CT::From: Clone,
{
    let style = colour.stroke_width(width);
    let w = width as i32;
    match dash {
        Dash::Solid => area.draw(&PathElement::new(points, style)),
        Dash::Dashed => area.draw(&DashedPathElement::new(points, 10, 6, style)),
        Dash::Dotted => area.draw(&DashedPathElement::new(points, w, w + 3, style)),
    }
    .map_err(|e| plot_err(path, &e))
}

/// Draws `mark` at `at` in `area`, `size` pixels from its centre to its edge.
pub(crate) fn draw_mark<CT: CoordTranslate>(
    path: &Path,
    area: &DrawingArea<BitMapBackend<'_>, CT>,
    at: CT::From,
    mark: Mark,
    size: i32,
    colour: RGBColor,
) -> anyhow::Result<()> {
    match mark {
        Mark::Circle => area.draw(&Circle::new(at, size, colour.filled())),
        // About the circle's area: a triangle's corners are far from its centre.
        Mark::Triangle => area.draw(&TriangleMarker::new(at, size + size / 2, colour.filled())),
        Mark::Square => area.draw(
            &(EmptyElement::at(at)
                + Rectangle::new([(-size, -size), (size, size)], colour.filled())),
        ),
        Mark::Cross => area.draw(&Cross::new(at, size - 1, colour.stroke_width(3))),
    }
    .map_err(|e| plot_err(path, &e))
}

/// The font size of legend labels.
pub(crate) const LEGEND_FONT: u32 = 16;

/// Pixels from a legend's left edge to its labels (the key is left of them).
pub(crate) const LEGEND_TEXT_X: i32 = 46;

/// The widest a legend label is drawn, in pixels; [`fit_label`] shortens a longer one.
pub(crate) const LEGEND_LABEL_MAX: u32 = 440;

/// The narrowest the chart area of a [`frame`] gets: a wide legend widens the canvas.
const MIN_CHART_WIDTH: u32 = 560;

/// Draws the key of the legend row at height `y`: a short line (when `dash` is
/// given) with the mark in its middle (when `mark` is given), left of
/// [`LEGEND_TEXT_X`].
pub(crate) fn legend_key(
    path: &Path,
    legend: &Area<'_>,
    y: i32,
    colour: RGBColor,
    dash: Option<Dash>,
    mark: Option<(Mark, i32)>,
) -> anyhow::Result<()> {
    if let Some(dash) = dash {
        draw_line(path, legend, vec![(6, y), (38, y)], colour, dash, 3)?;
    }
    if let Some((mark, size)) = mark {
        draw_mark(path, legend, (22, y), mark, size, colour)?;
    }
    Ok(())
}

/// The width of `text` in pixels in the plots' font at `size` (after [`ensure_font`];
/// an estimate if the font cannot lay it out).
pub(crate) fn text_width(text: &str, size: u32) -> u32 {
    ("sans-serif", size)
        .into_font()
        .box_size(text)
        .map_or(size * text.chars().count() as u32 * 3 / 5, |(w, _)| w)
}

/// `label` as drawn in a legend at font `size`: unchanged when it is at most `max`
/// pixels wide, otherwise with its middle replaced by `…` (the start names the
/// variant, `budget=0:`, the end the file). Tables, CSV and JSON keep the full name.
pub(crate) fn fit_label(label: &str, size: u32, max: u32) -> String {
    if text_width(label, size) <= max {
        return label.to_owned();
    }
    let chars: Vec<char> = label.chars().collect();
    (1..=chars.len())
        .map(|dropped| {
            let kept = chars.len() - dropped;
            let (head, tail) = (kept / 2, kept - kept / 2);
            let mut short: String = chars[..head].iter().collect();
            short.push('…');
            short.extend(&chars[chars.len() - tail..]);
            short
        })
        .find(|short| text_width(short, size) <= max)
        .unwrap_or_else(|| "…".to_owned())
}

/// `labels` as a legend draws them ([`fit_label`] at [`LEGEND_FONT`] within
/// [`LEGEND_LABEL_MAX`]) and the widest one's width in pixels.
pub(crate) fn legend_labels<'a>(labels: impl Iterator<Item = &'a str>) -> (Vec<String>, u32) {
    let labels: Vec<String> = labels
        .map(|l| fit_label(l, LEGEND_FONT, LEGEND_LABEL_MAX))
        .collect();
    let widest = labels
        .iter()
        .map(|l| text_width(l, LEGEND_FONT))
        .max()
        .unwrap_or(0);
    (labels, widest)
}

/// The width of a legend column whose widest text is `text_px` pixels.
pub(crate) fn legend_width(text_px: u32) -> u32 {
    LEGEND_TEXT_X as u32 + text_px + 20
}

/// The height of the `i`th legend row's middle in a legend `height` pixels tall
/// with `rows` rows of one label each: 28 pixels apart, closer (down to 18) when
/// that many would not fit.
pub(crate) fn legend_row_y(i: usize, rows: usize, height: u32) -> i32 {
    let fit = (height.saturating_sub(LEGEND_TOP) / rows.max(1) as u32) as i32;
    LEGEND_TOP as i32 + fit.clamp(18, 28) * i as i32
}

/// The middle of the first legend row, pixels below the legend's top.
const LEGEND_TOP: u32 = 40;

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
/// on the left and a legend column `legend_width` pixels wide on the right. The
/// canvas is widened when the chart area would be narrower than
/// [`MIN_CHART_WIDTH`]. Returns (root, chart area, legend area); present the root
/// when done.
pub(crate) fn frame<'a>(
    path: &Path,
    tmp: &'a Path,
    size: (u32, u32),
    title: &str,
    legend_width: u32,
) -> anyhow::Result<(Area<'a>, Area<'a>, Area<'a>)> {
    let size = (size.0.max(MIN_CHART_WIDTH + legend_width), size.1);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Series a plot tells apart: [`SeriesStyle::nth`] repeats after this many.
    const DISTINCT_SERIES: usize = COLOURS.len() * VARIANTS.len();

    #[test]
    fn series_styles_differ_until_they_repeat() {
        for i in 0..DISTINCT_SERIES {
            for j in i + 1..DISTINCT_SERIES {
                assert_ne!(
                    SeriesStyle::nth(i),
                    SeriesStyle::nth(j),
                    "series {i} and {j}"
                );
            }
        }
        assert_eq!(SeriesStyle::nth(DISTINCT_SERIES), SeriesStyle::nth(0));
        // Up to eight series look as they always have: solid lines with circles.
        for (i, &colour) in COLOURS.iter().enumerate() {
            let expected = SeriesStyle {
                colour,
                dash: Dash::Solid,
                mark: Mark::Circle,
            };
            assert_eq!(SeriesStyle::nth(i), expected);
        }
        // The ninth shares the first's colour, but neither its line nor its mark.
        let (first, ninth) = (SeriesStyle::nth(0), SeriesStyle::nth(8));
        assert_eq!(first.colour, ninth.colour);
        assert!(first.dash != ninth.dash && first.mark != ninth.mark);
    }

    #[test]
    fn legend_rows_close_up_only_when_they_must() {
        // 10 rows in 550 pixels: 28 apart, the last at 40 + 9 × 28.
        assert_eq!(legend_row_y(0, 10, 550), 40);
        assert_eq!(legend_row_y(9, 10, 550), 292);
        // 25 rows: (550 − 40) / 25 = 20.4, so 20 apart, the last at 520.
        assert_eq!(legend_row_y(24, 25, 550), 520);
        // Never closer than 18.
        assert_eq!(legend_row_y(1, 100, 550), 58);
    }

    #[test]
    fn long_legend_labels_are_shortened_in_the_middle() {
        ensure_font().unwrap();
        let short = "nearest-random";
        assert_eq!(fit_label(short, LEGEND_FONT, LEGEND_LABEL_MAX), short);
        let long =
            "budget=0:/home/someone/checkouts/diten/onnx-models/general-2024-final/policy.bin";
        let max = 300;
        assert!(text_width(long, LEGEND_FONT) > max);
        let fitted = fit_label(long, LEGEND_FONT, max);
        assert!(text_width(&fitted, LEGEND_FONT) <= max, "{fitted}");
        // No more is dropped than needed (a character is under 20 pixels wide).
        assert!(text_width(&fitted, LEGEND_FONT) > max - 20, "{fitted}");
        let (head, tail) = fitted.split_once('…').unwrap();
        assert!(
            head.starts_with("budget=0:") && long.starts_with(head),
            "{fitted}"
        );
        assert!(
            tail.ends_with("policy.bin") && long.ends_with(tail),
            "{fitted}"
        );
        // Widths come from the font: a wide glyph takes more room than a narrow one.
        assert!(text_width("WWWW", LEGEND_FONT) > text_width("iiii", LEGEND_FONT));
    }
}

//! PNG plots in the style of the paper's Fig. 5–9: a metric against the number of
//! edge servers, one line per decision maker, error bars of ± one standard
//! deviation over seeds. One file per (metric, EMD value): `objective_phi0.2.png`.
//! The frame, font and series styles every plot shares are [`crate::util::plot`]'s:
//! past eight decision makers the colours repeat with another dash and mark, and
//! a legend label too long for its column is shortened in the middle (the tables
//! keep the full name).

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{emd_label, Metric, SummaryRow};
use crate::scenario::Emd;
use crate::util::fs::write_atomic_with;
use crate::util::plot::{
    axes, draw_line, draw_mark, ensure_font, finite_bounds, frame, legend_key, legend_labels,
    legend_row_y, legend_width, plot_err, Dash, Mark, SeriesStyle, COLOURS, LEGEND_FONT,
    LEGEND_TEXT_X,
};

/// The metrics plotted against the number of servers, in file order.
pub const PLOTTED: [Metric; 7] = [
    Metric::Objective,
    Metric::Utility,
    Metric::CostTotal,
    Metric::CostMig,
    Metric::CostSyn,
    Metric::CostCmp,
    Metric::Reward,
];

/// Pixel size of every plot.
const SIZE: (u32, u32) = (900, 600);

/// One decision maker's line: (servers, mean, std) points in increasing servers.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// (x, mean, standard deviation).
    pub points: Vec<(f64, f64, f64)>,
}

/// The name of the plot of `metric` at EMD `emd`: `cost_total_phi0.2.png`, or
/// `cost_total_phi-per-user.png` for per-user values.
pub fn file_name(metric: Metric, emd: &Emd) -> String {
    match emd {
        Emd::All(v) => format!("{}_phi{v}.png", metric.name()),
        Emd::PerUser(_) => format!("{}_phi-per-user.png", metric.name()),
    }
}

/// The y range shown: every mean ± std, padded by 8 %, never empty.
fn y_range(lines: &[Line]) -> (f64, f64) {
    padded_range(
        lines
            .iter()
            .flat_map(|l| l.points.iter())
            .flat_map(|&(_, m, s)| [m - s, m + s]),
    )
}

/// The range shown for `values`: their finite bounds padded by 8 %, never empty.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = finite_bounds(values);
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        0.08 * span
    } else {
        0.1 * lo.abs().max(1e-3)
    };
    (lo - pad, hi + pad)
}

/// A y tick label with about three significant digits over `span`, without
/// trailing zeros or a negative zero.
fn tick_label(v: f64, span: f64) -> String {
    let decimals = if span > 0.0 && span.is_finite() {
        (2.0 - span.log10().floor()).clamp(0.0, 12.0) as usize
    } else {
        3
    };
    let mut text = format!("{v:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    if text == "-0" {
        text = "0".to_owned();
    }
    text
}

/// Draws `lines` into a PNG at `path` (written atomically): the chart on the left,
/// the legend in a column of its own on the right (it never hides a point).
pub fn draw(path: &Path, title: &str, y_label: &str, lines: &[Line]) -> anyhow::Result<()> {
    ensure_font()?;
    let mut xs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (x_lo, x_hi) = match (xs.first(), xs.last()) {
        (Some(lo), Some(hi)) => (lo - 1.0, hi + 1.0),
        _ => (0.0, 1.0),
    };
    // Lines at the same x are shifted apart a little so their error bars stay visible.
    let gap = xs.windows(2).map(|w| w[1] - w[0]).fold(1.0, f64::min);
    let dodge = |i: usize| (i as f64 - (lines.len() as f64 - 1.0) / 2.0) * 0.06 * gap;
    let (y_lo, y_hi) = y_range(lines);
    let (labels, widest) = legend_labels(lines.iter().map(|l| l.label.as_str()));
    write_atomic_with(path, |tmp| {
        let plot_err = |e: &dyn std::fmt::Display| plot_err(path, e);
        let (root, chart_area, legend_area) = frame(path, tmp, SIZE, title, legend_width(widest))?;
        let mut chart = axes(path, &chart_area, x_lo..x_hi, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .x_desc("number of edge servers S")
            .y_desc(y_label)
            // Room for a label at every whole number; only whole numbers are printed.
            .x_labels(((x_hi - x_lo) as usize + 1).min(40))
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{}", x.round())
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| tick_label(*y, y_hi - y_lo))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| plot_err(&e))?;
        let area = chart.plotting_area();
        for (i, (line, label)) in lines.iter().zip(&labels).enumerate() {
            let style = SeriesStyle::nth(i);
            let shift = dodge(i);
            let points: Vec<(f64, f64, f64)> = line
                .points
                .iter()
                .map(|&(x, m, s)| (x + shift, m, s))
                .collect();
            let means = points.iter().map(|&(x, m, _)| (x, m)).collect();
            draw_line(path, area, means, style.colour, style.dash, 2)?;
            for &(x, m, s) in &points {
                error_bar(path, area, (x, m, s), style)?;
            }
            let y = legend_row_y(i, lines.len(), legend_area.dim_in_pixel().1);
            legend_key(
                path,
                &legend_area,
                y,
                style.colour,
                Some(style.dash),
                Some((style.mark, MARK_SIZE)),
            )?;
            legend_area
                .draw(&Text::new(
                    label.as_str(),
                    (LEGEND_TEXT_X, y - 9),
                    ("sans-serif", LEGEND_FONT).into_font(),
                ))
                .map_err(|e| plot_err(&e))?;
        }
        root.present().map_err(|e| plot_err(&e))?;
        Ok(())
    })
}

/// Pixels from a point's centre to the edge of its mark.
const MARK_SIZE: i32 = 5;

/// A mean ± std at `x`: a vertical bar with caps 10 pixels wide, solid whatever the
/// series' dash, and the series' mark at the mean.
fn error_bar(
    path: &Path,
    area: &DrawingArea<BitMapBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    (x, mean, std): (f64, f64, f64),
    style: SeriesStyle,
) -> anyhow::Result<()> {
    let ink = style.colour.stroke_width(2);
    let cap = |y: f64| EmptyElement::at((x, y)) + PathElement::new(vec![(-5, 0), (5, 0)], ink);
    area.draw(&PathElement::new(
        vec![(x, mean - std), (x, mean + std)],
        ink,
    ))
    .and_then(|()| area.draw(&cap(mean - std)))
    .and_then(|()| area.draw(&cap(mean + std)))
    .map_err(|e| plot_err(path, &e))?;
    draw_mark(path, area, (x, mean), style.mark, MARK_SIZE, style.colour)
}

/// A decision maker drawn as one point of a trade-off plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Legend text.
    pub label: String,
    /// Position.
    pub x: f64,
    /// Position.
    pub y: f64,
}

/// A trade-off plot into a PNG at `path` (written atomically): `curve` (its label
/// and (x, y, point label) in drawing order) as a line with each point labelled,
/// and every marker as a symbol of its own colour with a legend entry.
pub fn draw_tradeoff(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    (curve_label, curve): (&str, &[(f64, f64, String)]),
    markers: &[Marker],
) -> anyhow::Result<()> {
    ensure_font()?;
    let xs = curve.iter().map(|p| p.0).chain(markers.iter().map(|m| m.x));
    let ys = curve.iter().map(|p| p.1).chain(markers.iter().map(|m| m.y));
    let (x_lo, x_hi) = padded_range(xs);
    let (y_lo, y_hi) = padded_range(ys);
    let x_lo = x_lo.max(0.0);
    let (labels, widest) = legend_labels(
        [curve_label]
            .into_iter()
            .chain(markers.iter().map(|m| m.label.as_str())),
    );
    write_atomic_with(path, |tmp| {
        let plot_err = |e: &dyn std::fmt::Display| plot_err(path, e);
        let (root, chart_area, legend_area) = frame(path, tmp, SIZE, title, legend_width(widest))?;
        let mut chart = axes(path, &chart_area, x_lo..x_hi, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| tick_label(*x, x_hi - x_lo))
            .y_label_formatter(&|y| tick_label(*y, y_hi - y_lo))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| plot_err(&e))?;
        let ink = COLOURS[6];
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|&(x, y, _)| (x, y)),
                ink.stroke_width(2),
            ))
            .map_err(|e| plot_err(&e))?;
        chart
            .draw_series(
                curve
                    .iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 4, ink.filled())),
            )
            .map_err(|e| plot_err(&e))?;
        // Point labels, each a little right of its point; one that would overlap
        // the last label drawn (closer than 4 % of the y range and 12 % of the x
        // range) is left out.
        let mut last: Option<(f64, f64)> = None;
        let labelled: Vec<&(f64, f64, String)> = curve
            .iter()
            .filter(|&&(x, y, _)| {
                let near = last.is_some_and(|(lx, ly)| {
                    (x - lx).abs() < 0.12 * (x_hi - x_lo) && (y - ly).abs() < 0.04 * (y_hi - y_lo)
                });
                if !near {
                    last = Some((x, y));
                }
                !near
            })
            .collect();
        chart
            .draw_series(labelled.into_iter().map(|(x, y, text)| {
                Text::new(
                    text.clone(),
                    (*x + 0.01 * (x_hi - x_lo), *y),
                    ("sans-serif", 13).into_font(),
                )
            }))
            .map_err(|e| plot_err(&e))?;
        let legend = |i: usize, colour: RGBColor, dash: Option<Dash>, mark: (Mark, i32)| {
            let y = legend_row_y(i, labels.len(), legend_area.dim_in_pixel().1);
            legend_key(path, &legend_area, y, colour, dash, Some(mark))?;
            legend_area
                .draw(&Text::new(
                    labels[i].as_str(),
                    (LEGEND_TEXT_X, y - 9),
                    ("sans-serif", LEGEND_FONT).into_font(),
                ))
                .map_err(|e| plot_err(&e))
        };
        legend(0, ink, Some(Dash::Solid), (Mark::Circle, 4))?;
        // The curve's black is not a marker's colour; once the other seven are used
        // up, the markers go on as squares, then crosses.
        let marker_colours: Vec<RGBColor> = COLOURS
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 6)
            .map(|(_, &c)| c)
            .collect();
        let shapes = [Mark::Triangle, Mark::Square, Mark::Cross];
        for (i, m) in markers.iter().enumerate() {
            let colour = marker_colours[i % marker_colours.len()];
            let shape = shapes[(i / marker_colours.len()) % shapes.len()];
            draw_mark(path, chart.plotting_area(), (m.x, m.y), shape, 6, colour)?;
            legend(i + 1, colour, None, (shape, 5))?;
        }
        root.present().map_err(|e| plot_err(&e))?;
        Ok(())
    })
}

/// Draws every plot of [`PLOTTED`] for each EMD setting in `emds` with at least one
/// row, one line per policy of `policies` (in that order, by label); returns the
/// paths written.
pub fn write_plots(
    dir: &Path,
    policies: &[String],
    emds: &[Emd],
    rows: &[SummaryRow],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for emd in emds {
        let label = emd_label(emd);
        let rows_here: Vec<&SummaryRow> =
            rows.iter().filter(|r| emd_label(&r.emd) == label).collect();
        if rows_here.is_empty() {
            continue;
        }
        for metric in PLOTTED {
            let lines: Vec<Line> = policies
                .iter()
                .filter_map(|policy| {
                    let mut points: Vec<(f64, f64, f64)> = rows_here
                        .iter()
                        .filter(|r| r.policy == *policy)
                        .map(|r| {
                            let s = r.get(metric);
                            (r.servers as f64, s.mean, s.std)
                        })
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    (!points.is_empty()).then_some(Line {
                        label: policy.clone(),
                        points,
                    })
                })
                .collect();
            let path = dir.join(file_name(metric, emd));
            let title = format!("{} vs servers, φ = {label}", metric.title());
            draw(&path, &title, metric.title(), &lines)
                .with_context(|| format!("plotting {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_is_a_png() {
        let dir = std::env::temp_dir().join(format!("diten-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("objective_phi0.2.png");
        let lines = vec![
            Line {
                label: "nearest".into(),
                points: vec![(9.0, 0.1, 0.01), (15.0, 0.12, 0.02), (21.0, 0.13, 0.0)],
            },
            Line {
                label: "sticky".into(),
                points: vec![(9.0, 0.11, 0.01), (15.0, 0.125, 0.02), (21.0, 0.135, 0.005)],
            },
        ];
        draw(
            &path,
            "objective e per slot vs servers, φ = 0.2",
            "objective",
            &lines,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // A single point and a flat line still give a valid range.
        let single = [Line {
            label: "x".into(),
            points: vec![(3.0, 2.0, 0.0)],
        }];
        draw(&path, "single", "y", &single).unwrap();
        let (lo, hi) = y_range(&single);
        assert!(
            (lo - 1.8).abs() < 1e-12 && (hi - 2.2).abs() < 1e-12,
            "{lo} {hi}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(-0.0, 0.3), "0");
        assert_eq!(tick_label(-1e-17, 0.3), "0");
        assert_eq!(tick_label(0.15, 0.3), "0.15");
        assert_eq!(tick_label(-0.05, 0.3), "-0.05");
        assert_eq!(tick_label(12000.0, 9000.0), "12000");
        assert_eq!(tick_label(0.8525, 0.01), "0.8525");
    }

    #[test]
    fn file_names_follow_the_metric_and_emd() {
        assert_eq!(
            file_name(Metric::Objective, &Emd::All(0.2)),
            "objective_phi0.2.png"
        );
        assert_eq!(
            file_name(Metric::CostMig, &Emd::All(0.0)),
            "cost_mig_phi0.png"
        );
        assert_eq!(
            file_name(Metric::CostTotal, &Emd::PerUser(vec![0.1])),
            "cost_total_phi-per-user.png"
        );
    }
}

//! The demo's picture, `compare.png`: one scenario, one episode (the first seed),
//! every decision maker over time. Top: the objective e per slot; bottom: the
//! energy per slot E = Σ_s C_s (SPEC §2.1b, log scale). Both are smoothed with a
//! centred moving average so that the lines can be told apart; the legend gives
//! each decision maker's episode mean of both.
//!
//! The sweep keeps only episode means, so the episode is run again here with a
//! per-slot record (the simulator is deterministic: the same episode, the same
//! decisions).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::eval::{SlotMetrics, Sweep};
use crate::policy::PolicySpec;
use crate::sim::Env;
use crate::util::fs::write_atomic_with;
use crate::util::plot::{
    draw_line, ensure_font, finite_bounds, fit_label, frame, legend_key, legend_width, plot_err,
    text_width, SeriesStyle, LEGEND_FONT, LEGEND_LABEL_MAX, LEGEND_TEXT_X,
};

/// Slots in the moving average (centred; shorter at the episode's ends).
const WINDOW: usize = 25;
/// Pixel size of the picture.
const SIZE: (u32, u32) = (1000, 800);
/// Font size of the episode means under each legend label.
const MEANS_FONT: u32 = 13;

/// One decision maker's episode, slot by slot.
pub(crate) struct Series {
    /// Legend text.
    pub label: String,
    /// Objective e of each slot.
    pub objective: Vec<f64>,
    /// Energy Σ_s C_s of each slot.
    pub energy: Vec<f64>,
}

/// Runs the first episode of the sweep's first (servers, emd) for every policy, one
/// thread per policy, recording e and the energy of every slot. `labels` name the
/// policies in the legend (in `sweep.policies` order).
pub(crate) fn record(sweep: &Sweep, labels: &[String]) -> anyhow::Result<Vec<Series>> {
    let servers = sweep.servers[0];
    let scenario = sweep.scenario(servers, &sweep.emds[0]);
    let seed = sweep.seeds[0];
    let episode = |spec: &PolicySpec, label: &String| -> anyhow::Result<Series> {
        let policy = spec.load(servers)?;
        let mut dm = policy.decision_maker()?;
        let mut env = Env::new(&scenario, seed)?;
        dm.reset(seed);
        let mut series = Series {
            label: label.clone(),
            objective: Vec::with_capacity(scenario.slots),
            energy: Vec::with_capacity(scenario.slots),
        };
        while !env.done() {
            let t = env.t();
            let decision = dm
                .decide(&env)
                .with_context(|| format!("slot {t}: deciding"))?;
            let outcome = env.step(&decision).with_context(|| format!("slot {t}"))?;
            let m = SlotMetrics::of(&outcome, std::time::Duration::ZERO);
            series.objective.push(m.objective);
            series.energy.push(m.cost_total);
        }
        Ok(series)
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = sweep
            .policies
            .iter()
            .zip(labels)
            .map(|(spec, label)| {
                let episode = &episode;
                scope.spawn(move || episode(spec, label).with_context(|| label.clone()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a demo episode panicked"))?
            })
            .collect()
    })
}

/// The centred moving average of `values` over [`WINDOW`] slots.
fn smooth(values: &[f64]) -> Vec<f64> {
    let half = WINDOW / 2;
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(values.len());
            let window = &values[lo..hi];
            window.iter().sum::<f64>() / window.len() as f64
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Draws the two panels into `path` (written atomically).
pub(crate) fn draw(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    ensure_font()?;
    let slots = series.iter().map(|s| s.objective.len()).max().unwrap_or(1);
    let smoothed: Vec<(Vec<f64>, Vec<f64>)> = series
        .iter()
        .map(|s| (smooth(&s.objective), smooth(&s.energy)))
        .collect();
    let (e_lo, e_hi) = finite_bounds(smoothed.iter().flat_map(|(e, _)| e.iter().copied()));
    let pad = 0.05 * (e_hi - e_lo).max(1e-3);
    let (e_lo, e_hi) = (e_lo - pad, e_hi + pad);
    let (w_lo, w_hi) = finite_bounds(smoothed.iter().flat_map(|(_, w)| w.iter().copied()));
    let (w_lo, w_hi) = ((w_lo.max(1e-9)) / 1.3, w_hi.max(1e-9) * 1.3);
    // Each legend entry: the label, and below it the episode means.
    let entries: Vec<(String, String)> = series
        .iter()
        .map(|s| {
            let label = fit_label(&s.label, LEGEND_FONT, LEGEND_LABEL_MAX);
            let means = format!(
                "mean e {:+.4}, energy {:.0}",
                mean(&s.objective),
                mean(&s.energy)
            );
            (label, means)
        })
        .collect();
    let widest = entries
        .iter()
        .map(|(label, means)| text_width(label, LEGEND_FONT).max(text_width(means, MEANS_FONT)))
        .max()
        .unwrap_or(0);
    let x_hi = slots as f64;
    write_atomic_with(path, |tmp| {
        let err = |e: &dyn std::fmt::Display| plot_err(path, e);
        let (root, charts, legend) = frame(path, tmp, SIZE, title, legend_width(widest))?;
        let (top, bottom) = charts.split_vertically(charts.dim_in_pixel().1 / 2);
        let mut e_chart = ChartBuilder::on(&top)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(1.0..x_hi, e_lo..e_hi)
            .map_err(|e| err(&e))?;
        e_chart
            .configure_mesh()
            .y_desc(format!("objective e per slot ({WINDOW}-slot mean)"))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        let mut w_chart = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(1.0..x_hi, (w_lo..w_hi).log_scale())
            .map_err(|e| err(&e))?;
        w_chart
            .configure_mesh()
            .x_desc("slot")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(format!("energy Σ C_s per slot ({WINDOW}-slot mean, log)"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, ((label, means), (e, w))) in entries.iter().zip(&smoothed).enumerate() {
            // The lines alone (no marks: a point per slot), so past eight decision
            // makers only the dash tells a colour's second series from its first.
            let style = SeriesStyle::nth(i);
            let xy = |v: &[f64]| -> Vec<(f64, f64)> {
                v.iter()
                    .enumerate()
                    .map(|(t, &y)| ((t + 1) as f64, y))
                    .collect()
            };
            draw_line(
                path,
                e_chart.plotting_area(),
                xy(e),
                style.colour,
                style.dash,
                2,
            )?;
            let w = xy(w).into_iter().map(|(x, y)| (x, y.max(w_lo))).collect();
            draw_line(
                path,
                w_chart.plotting_area(),
                w,
                style.colour,
                style.dash,
                2,
            )?;
            let y = 40 + 52 * i as i32;
            legend_key(path, &legend, y, style.colour, Some(style.dash), None)?;
            legend
                .draw(&Text::new(
                    label.as_str(),
                    (LEGEND_TEXT_X, y - 9),
                    ("sans-serif", LEGEND_FONT).into_font(),
                ))
                .and_then(|()| {
                    legend.draw(&Text::new(
                        means.as_str(),
                        (LEGEND_TEXT_X, y + 11),
                        ("sans-serif", MEANS_FONT).into_font(),
                    ))
                })
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_a_centred_mean() {
        let v: Vec<f64> = (0..60).map(f64::from).collect();
        let s = smooth(&v);
        // interior: the mean of a symmetric window is the centre value
        assert_eq!(s[30], 30.0);
        // the first value averages slots 0..=12
        assert_eq!(s[0], 6.0);
        assert_eq!(s.len(), 60);
    }
}

//! `curve.png`: the learning curve of a run, like the paper's Fig. 4: reward and
//! objective per slot against training episodes, each iteration's value (thin) and
//! a moving average over 10 iterations (bold).

use std::path::Path;

use plotters::prelude::*;

use crate::util::fs::write_atomic_with;
use crate::util::plot::{ensure_font, COLOURS};

/// One point per iteration: (episodes so far, reward per slot, objective per slot).
pub type Point = (f64, f64, f64);

/// Moving average over the last `w` values.
fn smooth(ys: &[f64], w: usize) -> Vec<f64> {
    (0..ys.len())
        .map(|i| {
            let lo = i.saturating_sub(w - 1);
            ys[lo..=i].iter().sum::<f64>() / (i + 1 - lo) as f64
        })
        .collect()
}

fn range(ys: &[f64]) -> (f64, f64) {
    let lo = ys
        .iter()
        .copied()
        .filter(|y| y.is_finite())
        .fold(f64::INFINITY, f64::min);
    let hi = ys
        .iter()
        .copied()
        .filter(|y| y.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (lo - pad, hi + pad)
}

/// Draws the curve of `points` into `path` (atomically); `title` heads it.
pub fn draw(path: &Path, title: &str, points: &[Point]) -> anyhow::Result<()> {
    ensure_font()?;
    let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    let x_hi = xs.last().copied().unwrap_or(1.0).max(1e-9);
    let panels = [
        (
            "reward r per slot",
            points.iter().map(|p| p.1).collect::<Vec<_>>(),
        ),
        (
            "objective e per slot",
            points.iter().map(|p| p.2).collect::<Vec<_>>(),
        ),
    ];
    write_atomic_with(path, |tmp| {
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
        let root = BitMapBackend::new(tmp, (900, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let body = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| err(&e))?;
        let areas = body.split_evenly((2, 1));
        for (area, ((label, ys), colour)) in areas.iter().zip(panels.iter().zip(COLOURS)) {
            let (lo, hi) = range(ys);
            let mut chart = ChartBuilder::on(area)
                .margin(14)
                .x_label_area_size(44)
                .y_label_area_size(80)
                .build_cartesian_2d(0.0..x_hi, lo..hi)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_desc("training episodes")
                .y_desc(*label)
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|e| err(&e))?;
            chart
                .draw_series(LineSeries::new(
                    xs.iter().copied().zip(ys.iter().copied()),
                    colour.mix(0.3),
                ))
                .map_err(|e| err(&e))?;
            let smoothed = smooth(ys, 10);
            chart
                .draw_series(LineSeries::new(
                    xs.iter().copied().zip(smoothed),
                    colour.stroke_width(3),
                ))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn moving_average() {
        assert_eq!(
            super::smooth(&[1.0, 3.0, 5.0, 7.0], 2),
            vec![1.0, 2.0, 4.0, 6.0]
        );
    }
}

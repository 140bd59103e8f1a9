//! Running mean and variance (Chan et al.'s parallel update), for observation and
//! return normalisation. Pure Rust: inference without torch uses it too.

/// Running per-feature mean and variance.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningNorm {
    /// Mean per feature.
    pub mean: Vec<f64>,
    /// Population variance per feature.
    pub var: Vec<f64>,
    /// Samples seen (starts at a tiny ε so the first update is well defined).
    pub count: f64,
}

/// Normalised values are clipped to ±`CLIP`.
pub const CLIP: f64 = 10.0;
/// Added to the variance before the square root.
pub const EPS: f64 = 1e-8;

impl RunningNorm {
    /// Mean 0, variance 1, no samples.
    pub fn new(dim: usize) -> Self {
        RunningNorm {
            mean: vec![0.0; dim],
            var: vec![1.0; dim],
            count: 1e-4,
        }
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Folds a batch of rows (`rows.len()` a multiple of [`dim`](Self::dim)) in.
    pub fn update(&mut self, rows: &[f32]) {
        let dim = self.dim();
        if dim == 0 || rows.is_empty() {
            return;
        }
        let n = (rows.len() / dim) as f64;
        let mut bmean = vec![0.0; dim];
        for row in rows.chunks_exact(dim) {
            for (m, &x) in bmean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        bmean.iter_mut().for_each(|m| *m /= n);
        let mut bvar = vec![0.0; dim];
        for row in rows.chunks_exact(dim) {
            for ((v, &x), m) in bvar.iter_mut().zip(row).zip(&bmean) {
                let d = f64::from(x) - m;
                *v += d * d;
            }
        }
        bvar.iter_mut().for_each(|v| *v /= n);
        let total = self.count + n;
        for i in 0..dim {
            let delta = bmean[i] - self.mean[i];
            let m2 =
                self.var[i] * self.count + bvar[i] * n + delta * delta * self.count * n / total;
            self.mean[i] += delta * n / total;
            self.var[i] = m2 / total;
        }
        self.count = total;
    }

    /// The normaliser folded into `f32` `(mean, inv_std)` with
    /// `inv_std = 1/sqrt(var + ε)`, as the ONNX graph and the blob apply it.
    pub fn folded(&self) -> (Vec<f32>, Vec<f32>) {
        let mean = self.mean.iter().map(|&m| m as f32).collect();
        let inv_std = self
            .var
            .iter()
            .map(|&v| (1.0 / (v + EPS).sqrt()) as f32)
            .collect();
        (mean, inv_std)
    }

    /// Normalises `row` in place: (x − mean) / sqrt(var + ε), clipped to ±[`CLIP`].
    pub fn apply(&self, row: &mut [f32]) {
        for ((x, m), v) in row.iter_mut().zip(&self.mean).zip(&self.var) {
            *x = ((f64::from(*x) - m) / (v + EPS).sqrt()).clamp(-CLIP, CLIP) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_agree_with_the_two_pass_formula() {
        let data: Vec<f32> = (0..40)
            .map(|i| ((i * 37) % 11) as f32 * 0.5 - 1.0)
            .collect();
        let mut norm = RunningNorm::new(2);
        norm.count = 0.0;
        for chunk in data.chunks(6) {
            norm.update(chunk);
        }
        for f in 0..2 {
            let xs: Vec<f64> = data
                .iter()
                .skip(f)
                .step_by(2)
                .map(|&x| f64::from(x))
                .collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            assert!((norm.mean[f] - mean).abs() < 1e-12, "mean {f}");
            assert!((norm.var[f] - var).abs() < 1e-12, "var {f}");
        }
        let mut row = [100.0f32, -1.0];
        norm.apply(&mut row);
        assert_eq!(row[0], CLIP as f32);
    }
}

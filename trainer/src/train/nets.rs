//! The networks and the optimiser on libtorch: MLPs with orthogonal initialisation,
//! Adam written out (so its moments live in the checkpoint and `--resume` continues
//! exactly where the run stopped), and global-norm gradient clipping.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// An MLP on a var store path: `sizes[0] → sizes[1] → … → sizes[n]`, tanh between
/// layers, orthogonal weights (gain √2 for hidden layers, `out_gain` for the last),
/// zero biases.
#[derive(Debug)]
pub struct Net {
    layers: Vec<nn::Linear>,
}

impl Net {
    /// Builds the layers under `path` as `l0`, `l1`, ….
    pub fn new(path: &nn::Path, sizes: &[usize], out_gain: f64) -> Net {
        let n = sizes.len().saturating_sub(1);
        let layers = (0..n)
            .map(|i| {
                let gain = if i + 1 == n { out_gain } else { 2f64.sqrt() };
                let config = nn::LinearConfig {
                    ws_init: nn::Init::Orthogonal { gain },
                    bs_init: Some(nn::Init::Const(0.0)),
                    bias: true,
                };
                nn::linear(
                    path / format!("l{i}"),
                    sizes[i] as i64,
                    sizes[i + 1] as i64,
                    config,
                )
            })
            .collect();
        Net { layers }
    }

    /// The network applied to a `[batch, inputs]` tensor.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let last = self.layers.len().saturating_sub(1);
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h);
            if i < last {
                h = h.tanh();
            }
        }
        h
    }
}

/// Adam (Kingma and Ba) over every trainable variable of a var store.
#[derive(Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    vars: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
    pub step: i64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-5;

impl Adam {
    /// Adam with zero moments over the variables of `vs`, in name order.
    pub fn new(vs: &nn::VarStore, lr: f64) -> Adam {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        let v = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        Adam {
            lr,
            vars,
            m,
            v,
            step: 0,
        }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, t) in &mut self.vars {
            t.zero_grad();
        }
    }

    /// Scales the gradients so their global L2 norm is at most `max_norm`; returns
    /// the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let norm = tch::no_grad(|| {
            let mut sq = 0.0;
            for (_, t) in &self.vars {
                let g = t.grad();
                if g.defined() {
                    sq += g.pow_tensor_scalar(2).sum(Kind::Double).double_value(&[]);
                }
            }
            sq.sqrt()
        });
        if norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            tch::no_grad(|| {
                for (_, t) in &self.vars {
                    let mut g = t.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(scale);
                    }
                }
            });
        }
        norm
    }

    /// One Adam step with the current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as f64;
        let (c1, c2) = (1.0 - BETA1.powf(t), 1.0 - BETA2.powf(t));
        let step_size = self.lr / c1;
        tch::no_grad(|| {
            for (((_, p), m), v) in self.vars.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(BETA1);
                let _ = m.g_add_(&(&g * (1.0 - BETA1)));
                let _ = v.g_mul_scalar_(BETA2);
                let _ = v.g_add_(&(&g * &g * (1.0 - BETA2)));
                let denom = (&*v / c2).sqrt() + ADAM_EPS;
                let _ = p.g_sub_(&(&*m / denom * step_size));
            }
        });
    }

    /// The moments and step count as named tensors under `prefix`.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((name, _), (m, v)) in self.vars.iter().zip(self.m.iter().zip(&self.v)) {
            out.push((format!("{prefix}.m.{name}"), m.shallow_clone()));
            out.push((format!("{prefix}.v.{name}"), v.shallow_clone()));
        }
        out.push((format!("{prefix}.step"), Tensor::from_slice(&[self.step])));
        out
    }

    /// Restores the moments and step count saved by [`state`](Self::state).
    pub fn load_state(
        &mut self,
        prefix: &str,
        get: &dyn Fn(&str) -> anyhow::Result<Tensor>,
    ) -> anyhow::Result<()> {
        for ((name, _), (m, v)) in self
            .vars
            .iter()
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            let (sm, sv) = (
                get(&format!("{prefix}.m.{name}"))?,
                get(&format!("{prefix}.v.{name}"))?,
            );
            anyhow::ensure!(
                sm.size() == m.size() && sv.size() == v.size(),
                "{prefix}.{name}: optimizer state of shape {:?}, expected {:?}",
                sm.size(),
                m.size()
            );
            tch::no_grad(|| {
                m.copy_(&sm);
                v.copy_(&sv);
            });
        }
        self.step = get(&format!("{prefix}.step"))?.int64_value(&[0]);
        Ok(())
    }
}

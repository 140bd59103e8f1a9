//! A trained policy (PPO, A2C or DDPG actor) as a decision maker: the actor's
//! weights ([`Mlp`], the container training, checkpoints and the ONNX exporter
//! share) encoded with its normaliser as a firmware blob ([`actor_blob`]) and run
//! by the controller's engine, the one forward pass of diten, so evaluation
//! threads never contend for libtorch's thread pool and measure what a gateway
//! would compute. [`Mlp::forward`] is a plain-Rust reference of that forward pass
//! (f32, `tanh` from std) for tests that need an independent evaluation.

use anyhow::{anyhow, bail, ensure};
use diten_controller::obs::observe;
use diten_controller::policy::{
    encode, encoded_len, F32Le, LayerRef, ModelRef, Policy, PriorRef, U32Le,
};
use diten_controller::CostNorm;

use super::norm::RunningNorm;
use super::DecisionMaker;
use crate::sim::{Decision, Env};

/// A dense layer: `weight` is `outputs × inputs`, row-major (torch's layout).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `outputs × inputs` weights.
    pub weight: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

/// A prior: `out[k] += weight[k] · x[index[k]]`, one gathered input per output
/// (the controller's `PriorRef`; the stay prior reads each user's previous-server
/// one-hot).
#[derive(Clone, Debug, PartialEq)]
pub struct Prior {
    /// The input each output reads.
    pub index: Vec<usize>,
    /// One weight per output.
    pub weight: Vec<f32>,
}

impl Prior {
    /// The stay prior for `users` × `servers` logits: logit (u, s) reads the
    /// observation's "previous server of u is s" feature.
    pub fn stay(users: usize, servers: usize, weight: Vec<f32>) -> Prior {
        Prior {
            index: Prior::stay_index(users, servers),
            weight,
        }
    }

    /// The inputs the stay prior reads, logit by logit (user-major).
    pub fn stay_index(users: usize, servers: usize) -> Vec<usize> {
        (0..users)
            .flat_map(|u| {
                (0..servers).map(move |s| diten_controller::obs::prev_server_feature(u, s, servers))
            })
            .collect()
    }
}

/// A multilayer perceptron: tanh after every layer but the last, plus an optional
/// linear skip from the input straight to the output and an optional [`Prior`].
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    layers: Vec<Dense>,
    skip: Option<Dense>,
    prior: Option<Prior>,
}

impl Mlp {
    /// Checks that consecutive layers fit and every buffer has its size.
    pub fn new(layers: Vec<Dense>) -> anyhow::Result<Mlp> {
        ensure!(!layers.is_empty(), "an MLP needs at least one layer");
        for (i, l) in layers.iter().enumerate() {
            ensure!(
                l.weight.len() == l.inputs * l.outputs && l.bias.len() == l.outputs,
                "layer {i}: weight has {} values and bias {} for {}x{}",
                l.weight.len(),
                l.bias.len(),
                l.outputs,
                l.inputs
            );
            if let Some(next) = layers.get(i + 1) {
                ensure!(
                    next.inputs == l.outputs,
                    "layer {} takes {} inputs but layer {i} gives {}",
                    i + 1,
                    next.inputs,
                    l.outputs
                );
            }
        }
        Ok(Mlp {
            layers,
            skip: None,
            prior: None,
        })
    }

    /// Adds a linear skip `input → output` (same widths as the MLP).
    pub fn with_skip(mut self, skip: Dense) -> anyhow::Result<Mlp> {
        ensure!(
            skip.inputs == self.inputs() && skip.outputs == self.outputs(),
            "skip layer is {}x{}, the MLP maps {} to {}",
            skip.outputs,
            skip.inputs,
            self.inputs(),
            self.outputs()
        );
        ensure!(
            skip.weight.len() == skip.inputs * skip.outputs && skip.bias.len() == skip.outputs,
            "skip layer: weight or bias of the wrong length"
        );
        self.skip = Some(skip);
        Ok(self)
    }

    /// The skip layer, if any.
    pub fn skip(&self) -> Option<&Dense> {
        self.skip.as_ref()
    }

    /// Adds a prior (one index and weight per output, indices below the input width).
    pub fn with_prior(mut self, prior: Prior) -> anyhow::Result<Mlp> {
        ensure!(
            prior.index.len() == self.outputs() && prior.weight.len() == self.outputs(),
            "prior has {} indices and {} weights for {} outputs",
            prior.index.len(),
            prior.weight.len(),
            self.outputs()
        );
        if let Some(i) = prior.index.iter().find(|&&i| i >= self.inputs()) {
            bail!("prior reads input {i} of {}", self.inputs());
        }
        self.prior = Some(prior);
        Ok(self)
    }

    /// The prior, if any.
    pub fn prior(&self) -> Option<&Prior> {
        self.prior.as_ref()
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// The layers.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// Evaluates the MLP on `x` (length [`inputs`](Self::inputs)); the output is
    /// left in `out`. A reference for tests: decisions run the controller's engine
    /// on [`actor_blob`].
    pub fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        self.forward_with(x, &mut Vec::new(), out);
    }

    /// [`forward`](Self::forward) with `tmp` holding the hidden activations, so a
    /// caller that keeps both buffers allocates nothing after the first call.
    pub fn forward_with(&self, x: &[f32], tmp: &mut Vec<f32>, out: &mut Vec<f32>) {
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let input: &[f32] = if i == 0 { x } else { tmp };
            out.clear();
            for (row, b) in l.weight.chunks_exact(l.inputs).zip(&l.bias) {
                let z: f32 = row.iter().zip(input).map(|(w, v)| w * v).sum::<f32>() + b;
                out.push(if i < last { z.tanh() } else { z });
            }
            if i < last {
                std::mem::swap(tmp, out);
            }
        }
        if let Some(skip) = &self.skip {
            for ((o, row), b) in out
                .iter_mut()
                .zip(skip.weight.chunks_exact(skip.inputs))
                .zip(&skip.bias)
            {
                *o += row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + b;
            }
        }
        if let Some(prior) = &self.prior {
            for ((o, &i), w) in out.iter_mut().zip(&prior.index).zip(&prior.weight) {
                *o += w * x[i];
            }
        }
    }
}

/// The firmware blob (SPEC §3.3) of a trained actor for `users` × `servers`: the
/// normaliser folded into `f32` as [`RunningNorm::folded`] does, the layers, the
/// skip layer and the prior as they are, and `cost_norm` in the header. It is the
/// blob `diten export` then `diten convert` make of the same checkpoint.
pub fn actor_blob(
    users: usize,
    servers: usize,
    norm: &RunningNorm,
    actor: &Mlp,
    cost_norm: CostNorm,
) -> anyhow::Result<Vec<u8>> {
    let le = |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let bytes = |l: &Dense| LayerBytes {
        inputs: l.inputs,
        outputs: l.outputs,
        weight: le(&l.weight),
        bias: le(&l.bias),
    };
    let layers: Vec<LayerBytes> = actor.layers().iter().map(bytes).collect();
    let skip = actor.skip().map(bytes);
    let prior = actor.prior().map(|p| {
        let index: Vec<u8> = p
            .index
            .iter()
            .flat_map(|&i| u32::try_from(i).unwrap_or(u32::MAX).to_le_bytes())
            .collect();
        (index, le(&p.weight))
    });
    let layer_refs: Vec<LayerRef<'_>> = layers.iter().map(LayerBytes::as_ref).collect();
    let (mean, inv_std) = norm.folded();
    let (mean, inv_std) = (le(&mean), le(&inv_std));
    let model = ModelRef {
        users,
        servers,
        norm_mean: F32Le::new(&mean),
        norm_inv_std: F32Le::new(&inv_std),
        layers: &layer_refs,
        skip: skip.as_ref().map(LayerBytes::as_ref),
        prior: prior.as_ref().map(|(index, weight)| PriorRef {
            index: U32Le::new(index),
            weight: F32Le::new(weight),
        }),
        cost_norm,
    };
    encode_blob(&model)
}

/// A dense layer's values as little-endian bytes, what a blob's [`LayerRef`]
/// borrows.
#[derive(Clone, Debug)]
pub struct LayerBytes {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `outputs × inputs` weights, row-major, as `f32` little-endian.
    pub weight: Vec<u8>,
    /// `outputs` biases, as `f32` little-endian.
    pub bias: Vec<u8>,
}

impl LayerBytes {
    /// The layer as the blob encoder takes it.
    pub fn as_ref(&self) -> LayerRef<'_> {
        LayerRef {
            // Bounded by the model checks in `encode` (widths ≤ 12 800).
            inputs: u32::try_from(self.inputs).unwrap_or(u32::MAX),
            outputs: u32::try_from(self.outputs).unwrap_or(u32::MAX),
            weight: F32Le::new(&self.weight),
            bias: F32Le::new(&self.bias),
        }
    }
}

/// The `policy-v1` blob of `model`, or an error saying why it does not fit one.
pub fn encode_blob(model: &ModelRef<'_>) -> anyhow::Result<Vec<u8>> {
    let fit = |e: diten_controller::Error| anyhow!("the model does not fit a policy blob: {e}");
    let mut blob = vec![0; encoded_len(model).map_err(fit)?];
    let len = encode(model, &mut blob).map_err(fit)?;
    blob.truncate(len);
    Ok(blob)
}

/// A trained actor as a decision maker: the controller's engine
/// ([`diten_controller::policy::Policy`]) on a blob it borrows, then the
/// best-scoring server per user; γ from the simulator's solver. Unlike
/// [`ControllerPolicy`](super::ControllerPolicy) no repair, consolidation or
/// improvement follows: this is the network's own decision.
#[derive(Clone, Debug)]
pub struct TrainedPolicy<'a> {
    name: String,
    policy: Policy<'a>,
    obs: Vec<f32>,
    scratch: Vec<f32>,
    logits: Vec<f32>,
}

impl<'a> TrainedPolicy<'a> {
    /// A policy running the `policy-v1` blob `blob` (as [`actor_blob`] makes it);
    /// `name` is its label in tables.
    pub fn new(name: String, blob: &'a [u8]) -> anyhow::Result<TrainedPolicy<'a>> {
        let policy = Policy::parse(blob).map_err(|e| anyhow!("{e}"))?;
        Ok(TrainedPolicy {
            name,
            obs: vec![0.0; policy.obs_dim()],
            scratch: vec![0.0; policy.scratch_len()],
            logits: vec![0.0; policy.logits_len()],
            policy,
        })
    }

    /// Users the policy was trained for.
    pub fn users(&self) -> usize {
        self.policy.users()
    }

    /// Servers the policy was trained for.
    pub fn servers(&self) -> usize {
        self.policy.servers()
    }

    /// Scores (logits) of every (user, server), user-major, for `env`'s slot.
    pub fn scores(&mut self, env: &Env) -> anyhow::Result<&[f32]> {
        let status = env.status();
        let (u, s) = (status.users().len(), status.servers().len());
        if (u, s) != (self.users(), self.servers()) {
            bail!(
                "policy `{}` was trained for {} users and {} servers, the scenario has {u} and {s}",
                self.name,
                self.users(),
                self.servers()
            );
        }
        observe(status, &mut self.obs).map_err(|e| anyhow!("observation: {e}"))?;
        self.policy
            .logits(&self.obs, &mut self.scratch, &mut self.logits)
            .map_err(|e| anyhow!("policy `{}`: {e}", self.name))?;
        Ok(&self.logits)
    }
}

/// Index of the largest score in each row of `servers` scores (ties: lowest index).
pub fn argmax_rows(scores: &[f32], servers: usize) -> Vec<usize> {
    scores
        .chunks_exact(servers.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

impl DecisionMaker for TrainedPolicy<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
        let servers = self.servers();
        let scores = self.scores(env)?;
        Ok(Decision::optimal(argmax_rows(scores, servers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_by_hand() {
        // 2 -> 2 (tanh) -> 1
        let mlp = Mlp::new(vec![
            Dense {
                inputs: 2,
                outputs: 2,
                weight: vec![1.0, 0.0, 0.5, -1.0],
                bias: vec![0.0, 0.25],
            },
            Dense {
                inputs: 2,
                outputs: 1,
                weight: vec![2.0, 1.0],
                bias: vec![-0.5],
            },
        ])
        .unwrap();
        let mut out = Vec::new();
        mlp.forward(&[0.5, 0.25], &mut out);
        let h0 = 0.5f32.tanh();
        let h1 = (0.25f32 - 0.25 + 0.25).tanh();
        assert!((out[0] - (2.0 * h0 + h1 - 0.5)).abs() < 1e-6);
    }

    #[test]
    fn skip_adds_a_linear_map_of_the_input() {
        let mlp = Mlp::new(vec![Dense {
            inputs: 2,
            outputs: 1,
            weight: vec![1.0, 1.0],
            bias: vec![0.0],
        }])
        .unwrap()
        .with_skip(Dense {
            inputs: 2,
            outputs: 1,
            weight: vec![3.0, 0.0],
            bias: vec![0.5],
        })
        .unwrap();
        let mut out = Vec::new();
        mlp.forward(&[1.0, 2.0], &mut out);
        assert_eq!(out, vec![3.0 + 3.0 + 0.5]);
    }

    #[test]
    fn mismatched_layers_are_rejected() {
        let l = |i, o| Dense {
            inputs: i,
            outputs: o,
            weight: vec![0.0; i * o],
            bias: vec![0.0; o],
        };
        assert!(Mlp::new(vec![l(2, 3), l(4, 1)]).is_err());
        assert!(Mlp::new(vec![]).is_err());
    }

    #[test]
    fn argmax_per_user() {
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.3, 2.0, -1.0, 2.0], 3), vec![1, 0]);
    }
}

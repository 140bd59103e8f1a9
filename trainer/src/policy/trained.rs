//! A trained policy (PPO, A2C or DDPG actor) as a decision maker: the observation
//! of `diten_controller::obs`, the learnt normalisation, an MLP with tanh hidden
//! layers in plain Rust, and the best-scoring server per user; γ from the solver.
//! The MLP is evaluated in f32 here without torch, so evaluation threads never
//! contend for libtorch's thread pool.

use anyhow::{bail, ensure};
use diten_controller::obs::{obs_dim, observe};

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
    /// left in `out`.
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

/// A trained actor as a decision maker.
#[derive(Clone, Debug)]
pub struct TrainedPolicy {
    name: String,
    users: usize,
    servers: usize,
    norm: RunningNorm,
    actor: Mlp,
    obs: Vec<f32>,
    out: Vec<f32>,
    hidden: Vec<f32>,
}

impl TrainedPolicy {
    /// A policy for `users` × `servers` from its observation normalisation and actor
    /// (input `obs_dim(users, servers)`, output `users·servers` scores, user-major).
    pub fn new(
        name: String,
        users: usize,
        servers: usize,
        norm: RunningNorm,
        actor: Mlp,
    ) -> anyhow::Result<TrainedPolicy> {
        let dim = obs_dim(users, servers);
        ensure!(
            actor.inputs() == dim && norm.dim() == dim,
            "the actor takes {} inputs and the normalisation has {}, but {users} users and \
             {servers} servers give observations of {dim}",
            actor.inputs(),
            norm.dim()
        );
        ensure!(
            actor.outputs() == users * servers,
            "the actor gives {} scores, not users x servers = {}",
            actor.outputs(),
            users * servers
        );
        Ok(TrainedPolicy {
            name,
            users,
            servers,
            norm,
            actor,
            obs: vec![0.0; dim],
            out: Vec::new(),
            hidden: Vec::new(),
        })
    }

    /// Users the policy was trained for.
    pub fn users(&self) -> usize {
        self.users
    }

    /// Servers the policy was trained for.
    pub fn servers(&self) -> usize {
        self.servers
    }

    /// Scores (logits) of every (user, server), user-major, for `env`'s slot.
    pub fn scores(&mut self, env: &Env) -> anyhow::Result<&[f32]> {
        let status = env.status();
        let (u, s) = (status.users().len(), status.servers().len());
        if (u, s) != (self.users, self.servers) {
            bail!(
                "policy `{}` was trained for {} users and {} servers, the scenario has {u} and {s}",
                self.name,
                self.users,
                self.servers
            );
        }
        observe(status, &mut self.obs).map_err(|e| anyhow::anyhow!("observation: {e}"))?;
        self.norm.apply(&mut self.obs);
        self.actor
            .forward_with(&self.obs, &mut self.hidden, &mut self.out);
        Ok(&self.out)
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

impl DecisionMaker for TrainedPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
        let servers = self.servers;
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

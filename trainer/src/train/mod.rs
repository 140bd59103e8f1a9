//! Training on libtorch (tch): PPO (the paper's Algorithm 1, SPEC §2.3), the
//! actor-critic Baseline 1 (`a2c`) and the DDPG Baseline 4, all in the simulator of
//! [`crate::sim`] with the γ solver of `diten-controller` inside every step.
//!
//! A run lives in one folder: `config.toml` (the resolved [`TrainConfig`], scenario
//! included), `metrics.csv` (one row per iteration), `curve.png` (the learning
//! curve, like the paper's Fig. 4) and `checkpoint.ot` (networks, optimiser moments,
//! normalisers and counters; written atomically every `checkpoint_every`
//! iterations, at the end and on Ctrl-C). `--resume DIR` continues from the
//! checkpoint with the same weights, moments and normalisers; the episodes in
//! progress restart from fresh seeds, so a resumed curve is not bit-identical to an
//! uninterrupted one. An uninterrupted run is: the same config and seed give the
//! same `metrics.csv` on the CPU (one libtorch thread).

#[cfg(feature = "torch")]
pub mod curve;
#[cfg(feature = "torch")]
mod ddpg;
#[cfg(feature = "torch")]
pub mod general;
#[cfg(feature = "torch")]
pub mod general_rl;
#[cfg(feature = "torch")]
mod learner;
#[cfg(feature = "torch")]
pub mod nets;
#[cfg(feature = "torch")]
mod ppo;
#[cfg(feature = "torch")]
pub mod run;

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

/// The learning algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    /// PPO with clipping, GAE and minibatches (the paper's Algorithm 1).
    Ppo,
    /// Baseline 1: advantage actor-critic, same networks, one full-batch step per
    /// rollout, no clipping.
    A2c,
    /// Baseline 4: DDPG on continuous per-(user, server) scores, argmax per user.
    Ddpg,
}

impl Algo {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::A2c => "a2c",
            Algo::Ddpg => "ddpg",
        }
    }
}

/// What the agent is rewarded with each slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RewardSignal {
    /// r of SPEC §2 eq. (25): objective, clamped barriers, violation penalty (the paper).
    Reward,
    /// The objective e, minus the violation penalty.
    Objective,
}

/// How PPO forms its probability ratio for the multi-discrete action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Ratio {
    /// One ratio per slot from the log-probabilities summed over users (SPEC §2.3).
    Joint,
    /// One ratio per (slot, user), each clipped on its own.
    PerUser,
}

/// DDPG's own settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DdpgConfig {
    /// Replay buffer capacity, in transitions.
    pub buffer: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Soft target update rate τ.
    pub tau: f64,
    /// Standard deviation of the Gaussian exploration noise on the scores.
    pub noise: f64,
    /// Transitions with uniformly random scores before learning starts.
    pub warmup: usize,
}

impl Default for DdpgConfig {
    fn default() -> Self {
        DdpgConfig {
            buffer: 20_000,
            batch: 256,
            tau: 0.005,
            noise: 0.2,
            warmup: 2_000,
        }
    }
}

/// Imitation of the oracle at the start of a PPO/A2C run (DAgger, see
/// `train::ppo::imitate`): the actor learns the oracle's association by
/// cross-entropy on every slot it visits, and the environments are driven first by
/// the oracle, then more and more by the actor itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImitateConfig {
    /// Iterations of imitation before PPO takes over (0: none, the paper).
    pub iterations: usize,
    /// Actor learning rate while imitating.
    pub lr: f64,
    /// Passes over the aggregated demonstrations per iteration.
    pub epochs: usize,
    /// Slots per minibatch.
    pub minibatch: usize,
    /// Most demonstrations kept (the oldest are dropped first).
    pub max_samples: usize,
    /// Share of the imitation iterations over which the oracle's share of the
    /// environments falls from all to none (DAgger's β).
    pub handover: f64,
}

impl Default for ImitateConfig {
    fn default() -> Self {
        ImitateConfig {
            iterations: 0,
            lr: 1e-3,
            epochs: 2,
            minibatch: 256,
            max_samples: 32_768,
            handover: 0.5,
        }
    }
}

/// Everything that defines a training run (written to `config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The algorithm.
    pub algo: Algo,
    /// Seed of the networks, the sampling and the episodes.
    pub seed: u64,
    /// Environments stepped in lockstep.
    pub envs: usize,
    /// Slots per environment per iteration.
    pub rollout: usize,
    /// Iterations in all (a resumed run stops at the same total).
    pub iterations: usize,
    /// Actor learning rate χ_a.
    pub lr_actor: f64,
    /// Critic learning rate χ_c.
    pub lr_critic: f64,
    /// Discount σ.
    pub discount: f64,
    /// GAE λ.
    pub gae_lambda: f64,
    /// PPO clip ε.
    pub clip: f64,
    /// PPO epochs over each rollout.
    pub epochs: usize,
    /// Minibatches per epoch.
    pub minibatches: usize,
    /// Weight of the entropy bonus on the mean per-user entropy (the policy's
    /// entropy per user, averaged over users and slots).
    pub entropy: f64,
    /// Gradient clipping (global L2 norm).
    pub max_grad_norm: f64,
    /// Hidden layer widths of actor and critic.
    pub hidden: Vec<usize>,
    /// The training signal.
    pub reward: RewardSignal,
    /// PPO's probability ratio.
    pub ratio: Ratio,
    /// PPO/A2C only: 0 gives the paper's plain MLP actor; c > 0 adds the stay
    /// prior: logit (u, s) gets w_us times the normalised "previous server of u is
    /// s" one-hot, w_us learnt and starting at c (a prior toward staying, which
    /// the training then reshapes; a few kilobytes in the blob).
    #[serde(default)]
    pub stay_prior: f64,
    /// Iterations between checkpoints.
    pub checkpoint_every: usize,
    /// PPO/A2C: imitation of the oracle before the policy-gradient iterations.
    #[serde(default)]
    pub imitate: ImitateConfig,
    /// DDPG's settings.
    #[serde(default)]
    pub ddpg: DdpgConfig,
    /// The scenario trained on.
    pub scenario: Scenario,
}

impl TrainConfig {
    /// SPEC §2.3's settings for `algo` on `scenario`.
    pub fn defaults(algo: Algo, scenario: Scenario) -> TrainConfig {
        let a2c = algo == Algo::A2c;
        TrainConfig {
            algo,
            seed: scenario.seed,
            envs: 8,
            rollout: if a2c { 16 } else { 64 },
            iterations: 300,
            lr_actor: 2.5e-4,
            lr_critic: 1.5e-3,
            discount: 0.98,
            gae_lambda: 0.9,
            clip: 0.2,
            epochs: if a2c { 1 } else { 4 },
            minibatches: if a2c { 1 } else { 4 },
            entropy: 0.01,
            max_grad_norm: 0.5,
            hidden: vec![128, 128],
            reward: RewardSignal::Reward,
            ratio: Ratio::Joint,
            stay_prior: 0.0,
            checkpoint_every: 10,
            imitate: ImitateConfig::default(),
            ddpg: DdpgConfig::default(),
            scenario,
        }
    }

    /// Rejects settings that cannot train, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::ensure;
        ensure!(self.envs >= 1, "envs: must be >= 1");
        ensure!(self.rollout >= 1, "rollout: must be >= 1");
        ensure!(self.iterations >= 1, "iterations: must be >= 1");
        ensure!(self.epochs >= 1, "epochs: must be >= 1");
        ensure!(
            self.minibatches >= 1 && self.minibatches <= self.envs * self.rollout,
            "minibatches: must be in 1..=envs*rollout ({})",
            self.envs * self.rollout
        );
        for (key, v) in [("lr_actor", self.lr_actor), ("lr_critic", self.lr_critic)] {
            ensure!(v.is_finite() && v > 0.0, "{key}: must be > 0");
        }
        for (key, v) in [("discount", self.discount), ("gae_lambda", self.gae_lambda)] {
            ensure!((0.0..=1.0).contains(&v), "{key}: must be in [0, 1]");
        }
        ensure!(
            self.clip > 0.0 && self.clip.is_finite(),
            "clip: must be > 0"
        );
        ensure!(
            self.entropy >= 0.0 && self.entropy.is_finite(),
            "entropy: must be >= 0"
        );
        ensure!(self.max_grad_norm > 0.0, "max_grad_norm: must be > 0");
        ensure!(
            !self.hidden.is_empty() && self.hidden.iter().all(|&h| h >= 1),
            "hidden: give at least one layer width >= 1"
        );
        ensure!(
            self.stay_prior >= 0.0 && self.stay_prior.is_finite(),
            "stay_prior: must be >= 0"
        );
        ensure!(self.checkpoint_every >= 1, "checkpoint_every: must be >= 1");
        let im = &self.imitate;
        ensure!(
            im.iterations == 0 || self.algo != Algo::Ddpg,
            "imitate.iterations: imitation is for ppo and a2c, not ddpg"
        );
        ensure!(im.lr.is_finite() && im.lr > 0.0, "imitate.lr: must be > 0");
        ensure!(im.epochs >= 1, "imitate.epochs: must be >= 1");
        ensure!(
            im.minibatch >= 1 && im.max_samples >= im.minibatch,
            "imitate.max_samples: must be >= imitate.minibatch >= 1"
        );
        ensure!(
            im.handover > 0.0 && im.handover <= 1.0,
            "imitate.handover: must be in (0, 1]"
        );
        let d = &self.ddpg;
        ensure!(
            d.batch >= 1 && d.buffer >= d.batch,
            "ddpg.buffer: must be >= ddpg.batch >= 1"
        );
        ensure!((0.0..=1.0).contains(&d.tau), "ddpg.tau: must be in [0, 1]");
        ensure!(d.noise >= 0.0, "ddpg.noise: must be >= 0");
        self.scenario
            .validate()
            .map_err(|e| anyhow::anyhow!("scenario.{e}"))?;
        Ok(())
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Reads a config written by [`to_toml`](Self::to_toml); `origin` names the file
    /// in errors.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<TrainConfig> {
        let de = toml::Deserializer::new(text);
        let config: TrainConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("{origin}: {}: {}", e.path(), e.inner().message()))?;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(config)
    }
}

/// The columns of `metrics.csv`, in order.
pub const METRICS_COLUMNS: &[&str] = &[
    "iteration",
    "slots",
    "episodes",
    "wall_s",
    "slots_per_s",
    "reward",
    "objective",
    "utility",
    "cost_mig",
    "cost_syn",
    "cost_cmp",
    "cost_total",
    "migrations",
    "violations",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
    "explained_var",
    "agreement",
];

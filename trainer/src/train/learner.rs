//! What every learning algorithm shares: the [`Learner`] trait the training loop
//! ([`run`](super::run)) drives, the statistics of an iteration, the rollout
//! helpers (observations of every environment, the learning signal of a slot) and
//! the tensors every learner checkpoints. PPO/A2C ([`ppo`](super::ppo)) and DDPG
//! ([`ddpg`](super::ddpg)) import this module; the loop picks one of them.

use diten_controller::obs::observe;
use tch::nn::VarStore;
use tch::Tensor;

use super::nets::Adam;
use super::RewardSignal;
use crate::eval::EpisodeMetrics;
use crate::policy::checkpoint::{load_norm, load_vars, norm_tensors};
use crate::policy::norm::RunningNorm;
use crate::sim::VecEnv;

/// What one iteration (rollout and update) measured.
#[derive(Clone, Debug)]
pub struct IterStats {
    /// Means per slot over the rollout's slots.
    pub slots: EpisodeMetrics,
    /// Policy (actor) loss.
    pub policy_loss: f64,
    /// Value (critic) loss.
    pub value_loss: f64,
    /// Entropy per user (NaN for DDPG).
    pub entropy: f64,
    /// Approximate KL between the rollout policy and the updated one (NaN for DDPG).
    pub approx_kl: f64,
    /// Share of samples whose ratio was clipped (PPO only).
    pub clip_frac: f64,
    /// Explained variance of the value function (NaN for DDPG).
    pub explained_var: f64,
    /// While imitating the oracle: the share of users whose greedy server is the
    /// oracle's, over the demonstrations trained on (NaN otherwise).
    pub agreement: f64,
}

/// A learning algorithm as the loop drives it.
pub(crate) trait Learner {
    /// One rollout through `venv` and one update; `iteration` counts the
    /// iterations done before this one (it survives `--resume`).
    fn iterate(&mut self, venv: &mut VecEnv, iteration: usize) -> anyhow::Result<IterStats>;
    /// Everything to checkpoint.
    fn tensors(&self) -> Vec<(String, Tensor)>;
    /// Restores what [`tensors`](Learner::tensors) saved.
    fn load(&mut self, get: &dyn Fn(&str) -> anyhow::Result<Tensor>) -> anyhow::Result<()>;
}

/// Slot reward for learning.
pub(crate) fn signal(kind: RewardSignal, outcome: &crate::sim::Outcome, penalty: f64) -> f64 {
    let e = &outcome.evaluation;
    match kind {
        RewardSignal::Reward => e.reward,
        RewardSignal::Objective => e.objective - penalty * e.violations.total() as f64,
    }
}

/// Raw observations of every environment, row by row.
pub(crate) fn observe_all(venv: &VecEnv, dim: usize, out: &mut Vec<f32>) -> anyhow::Result<()> {
    out.resize(venv.len() * dim, 0.0);
    for (env, row) in venv.envs().iter().zip(out.chunks_exact_mut(dim)) {
        observe(env.status(), row).map_err(|e| anyhow::anyhow!("observation: {e}"))?;
    }
    Ok(())
}

/// What every learner checkpoints: its networks' variables, the actor's and the
/// critic's Adam state, and the observation and return normalisers.
pub(crate) fn learner_tensors(
    nets: &[&VarStore],
    actor_opt: &Adam,
    critic_opt: &Adam,
    obs_norm: &RunningNorm,
    ret_norm: &RunningNorm,
) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for vs in nets {
        out.extend(vs.variables());
    }
    out.extend(actor_opt.state("adam_actor"));
    out.extend(critic_opt.state("adam_critic"));
    out.extend(norm_tensors("obs_norm", obs_norm));
    out.extend(norm_tensors("ret_norm", ret_norm));
    out
}

/// Restores what [`learner_tensors`] saved; returns the observation normaliser (of
/// `dim` features) and the return normaliser.
pub(crate) fn load_learner(
    get: &dyn Fn(&str) -> anyhow::Result<Tensor>,
    nets: &mut [&mut VarStore],
    actor_opt: &mut Adam,
    critic_opt: &mut Adam,
    dim: usize,
) -> anyhow::Result<(RunningNorm, RunningNorm)> {
    for vs in nets.iter_mut() {
        load_vars(vs, get)?;
    }
    actor_opt.load_state("adam_actor", get)?;
    critic_opt.load_state("adam_critic", get)?;
    Ok((
        load_norm("obs_norm", dim, get)?,
        load_norm("ret_norm", 1, get)?,
    ))
}

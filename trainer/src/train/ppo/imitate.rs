//! Imitation of the oracle (DAgger) at the start of a PPO/A2C run.
//!
//! PPO on the paper's reward learns to stay put: the objective e rewards packing
//! users onto a few servers (RESULTS.md), a coordinated move that a policy sampling
//! each user's server on its own never stumbles on. The oracle (`policy::Oracle`)
//! knows how to pack, so the actor first learns to copy it:
//!
//! * every slot of every environment is labelled with the oracle's association for
//!   that slot (as the environment stands, so also in states the actor led into);
//! * the environments are driven by the oracle at first and then by the actor's own
//!   greedy choice, the oracle's share falling linearly from all environments to
//!   none over [`ImitateConfig::handover`] of the
//!   imitation iterations (DAgger's β; the actor then sees the states its own
//!   mistakes lead to, with the oracle's correction);
//! * each iteration, the actor takes [`ImitateConfig::epochs`] passes of
//!   cross-entropy (per user, the oracle's server as the class) over all
//!   demonstrations so far (at most `max_samples`, the oldest dropped first),
//!   normalised with the current observation statistics;
//! * the critic learns the value of the driven trajectories as in PPO, so PPO
//!   starts with a fitted critic.
//!
//! The demonstrations are not checkpointed: a run resumed during imitation
//! aggregates afresh from there.
//!
//! [`ImitateConfig::handover`]: crate::train::ImitateConfig::handover
//! [`ImitateConfig::epochs`]: crate::train::ImitateConfig::epochs

use std::collections::VecDeque;

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use super::{observe_all, Ppo, Rollout, UpdateStats};
use crate::eval::EpisodeAccumulator;
use crate::policy::{DecisionMaker, Oracle};
use crate::sim::{Decision, Env, VecEnv};
use crate::train::learner::IterStats;

/// One demonstration: a raw observation and the oracle's server for each user.
type Demo = (Box<[f32]>, Box<[i64]>);

/// The aggregated demonstrations and one oracle per environment.
pub(crate) struct Demos {
    oracles: Vec<Oracle>,
    /// Raw observations with the oracle's association, oldest first.
    samples: VecDeque<Demo>,
}

impl Demos {
    pub(crate) fn new(envs: usize) -> Demos {
        Demos {
            oracles: (0..envs).map(|_| Oracle::new()).collect(),
            samples: VecDeque::new(),
        }
    }
}

/// The oracle's decision for every environment, in parallel (one thread each).
fn label(oracles: &mut [Oracle], envs: &[Env]) -> anyhow::Result<Vec<Decision>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = oracles
            .iter_mut()
            .zip(envs)
            .map(|(oracle, env)| scope.spawn(move || oracle.decide(env)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("the oracle's thread panicked"))?
            })
            .collect()
    })
}

/// Share of the environments the oracle drives in imitation iteration `iteration`
/// of `total`, with the hand-over done after `handover · total` iterations.
pub(crate) fn oracle_share(iteration: usize, total: usize, handover: f64) -> f64 {
    let span = (handover * total as f64).max(1.0);
    (1.0 - iteration as f64 / span).clamp(0.0, 1.0)
}

impl Ppo {
    /// One imitation iteration (see the module docs).
    pub(super) fn imitate(
        &mut self,
        venv: &mut VecEnv,
        iteration: usize,
    ) -> anyhow::Result<IterStats> {
        let im = self.config.imitate.clone();
        let (n, steps, dim, users, servers) = (
            venv.len(),
            self.config.rollout,
            self.dim,
            self.users,
            self.servers,
        );
        let share = oracle_share(iteration, im.iterations, im.handover);
        let driven = (share * n as f64).round() as usize;
        let mut rollout = Rollout::with_capacity(n * steps);
        let mut obs_buf = Vec::with_capacity(n * steps * dim);
        let mut acc = EpisodeAccumulator::default();
        let mut raw = Vec::new();
        observe_all(venv, dim, &mut raw)?;
        for _ in 0..steps {
            let labels = label(&mut self.demos.oracles, venv.envs()).context("the oracle")?;
            for (row, d) in raw.chunks_exact(dim).zip(&labels) {
                let classes: Vec<i64> = d.association.iter().map(|&s| s as i64).collect();
                self.demos.samples.push_back((row.into(), classes.into()));
            }
            self.obs_norm.update(&raw);
            let mut x = raw.clone();
            for row in x.chunks_exact_mut(dim) {
                self.obs_norm.apply(row);
            }
            obs_buf.extend_from_slice(&x);
            let x = self.to_tensor(&x, dim);
            let (greedy, value) = tch::no_grad(|| {
                let logits = self.logits(&x).view([(n * users) as i64, servers as i64]);
                (
                    logits.argmax(-1, false),
                    self.critic.forward(&x).view([n as i64]),
                )
            });
            let greedy = Vec::<i64>::try_from(greedy.to_device(Device::Cpu))?;
            rollout
                .values
                .extend(Vec::<f32>::try_from(value.to_device(Device::Cpu))?);
            let decisions: Vec<Decision> = labels
                .into_iter()
                .zip(greedy.chunks_exact(users))
                .enumerate()
                .map(|(i, (oracle, own))| {
                    if i < driven {
                        oracle
                    } else {
                        Decision::optimal(own.iter().map(|&s| s as usize).collect())
                    }
                })
                .collect();
            let outcomes = venv.step(&decisions).context("stepping the environments")?;
            self.record(&outcomes, &mut acc, &mut rollout);
            observe_all(venv, dim, &mut raw)?;
        }
        while self.demos.samples.len() > im.max_samples {
            self.demos.samples.pop_front();
        }
        let (_, ret) = self.advantages(&raw, &rollout)?;
        let explained_var = super::explained_variance(&rollout.values, &ret);

        let mut stats = UpdateStats::default();
        let mut hits = Vec::new();
        self.actor_opt.lr = im.lr;
        let total = self.demos.samples.len();
        let mut rows = vec![0f32; im.minibatch * dim];
        for _ in 0..im.epochs {
            let perm =
                Vec::<i64>::try_from(Tensor::randperm(total as i64, (Kind::Int64, Device::Cpu)))?;
            for chunk in perm.chunks(im.minibatch) {
                let rows = &mut rows[..chunk.len() * dim];
                let mut classes = Vec::with_capacity(chunk.len() * users);
                for (&k, row) in chunk.iter().zip(rows.chunks_exact_mut(dim)) {
                    let (obs, label) = &self.demos.samples[k as usize];
                    row.copy_from_slice(obs);
                    self.obs_norm.apply(row);
                    classes.extend_from_slice(label);
                }
                let o = self.to_tensor(rows, dim);
                let target = Tensor::from_slice(&classes).to_device(self.device);
                let logp = self
                    .logits(&o)
                    .view([(chunk.len() * users) as i64, servers as i64])
                    .log_softmax(-1, Kind::Float);
                let ce = -logp
                    .gather(1, &target.view([-1, 1]), false)
                    .mean(Kind::Float);
                self.actor_opt.zero_grad();
                ce.backward();
                self.actor_opt.clip_grad_norm(self.config.max_grad_norm);
                self.actor_opt.step();
                let (ce, entropy, hit) = tch::no_grad(|| {
                    let entropy =
                        -(logp.exp() * &logp).sum(Kind::Float) / (chunk.len() * users) as f64;
                    let hit = logp
                        .argmax(-1, false)
                        .eq_tensor(&target)
                        .to_kind(Kind::Float)
                        .mean(Kind::Float);
                    (
                        ce.double_value(&[]),
                        entropy.double_value(&[]),
                        hit.double_value(&[]),
                    )
                });
                stats.add(ce, 0.0, entropy, 0.0, 0.0);
                hits.push(hit);
            }
        }
        // The critic: this rollout's returns, PPO's epochs and minibatches.
        let obs = self.to_tensor(&obs_buf, dim);
        let ret_t = Tensor::from_slice(&ret).to_device(self.device);
        let batch = ret.len();
        let mb = (batch / self.config.minibatches).max(1);
        let mut v_losses = Vec::new();
        for _ in 0..self.config.epochs {
            let perm = Tensor::randperm(batch as i64, (Kind::Int64, self.device));
            for m in 0..batch / mb {
                let idx = perm.narrow(0, (m * mb) as i64, mb as i64);
                let v = self.critic_step(&obs.index_select(0, &idx), &ret_t.index_select(0, &idx));
                v_losses.push(tch::no_grad(|| v.double_value(&[])));
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let mut out = stats.finish(acc, explained_var, false);
        out.value_loss = mean(&v_losses);
        out.approx_kl = f64::NAN;
        out.agreement = mean(&hits);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::oracle_share;

    #[test]
    fn the_oracle_hands_over_linearly() {
        // 10 imitation iterations, hand-over over the first half: 1, 0.8, …, 0.2, 0, 0…
        let shares: Vec<f64> = (0..10).map(|i| oracle_share(i, 10, 0.5)).collect();
        let expected = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (got, want) in shares.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{shares:?}");
        }
        assert_eq!(oracle_share(0, 1, 0.5), 1.0);
    }
}

//! PPO (clipped surrogate, GAE, minibatches, several epochs) and, with one epoch, one
//! minibatch and no clipping, the A2C Baseline 1. The action is one categorical
//! choice of server per user; its log-probability is the sum over users.

use std::time::Duration;

use anyhow::Context;
use diten_controller::obs::obs_dim;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::learner::{self, observe_all, signal, IterStats, Learner};
use super::nets::{Adam, Net};
use super::{Algo, TrainConfig};
use crate::eval::{EpisodeAccumulator, SlotMetrics};
use crate::policy::norm::RunningNorm;
use crate::policy::trained::Prior;
use crate::sim::{Decision, VecEnv};

mod imitate;

/// PPO or A2C state: networks, optimisers, normalisers.
pub(crate) struct Ppo {
    config: TrainConfig,
    device: Device,
    users: usize,
    servers: usize,
    dim: usize,
    actor_vs: VarStore,
    critic_vs: VarStore,
    actor: Net,
    /// The optional stay prior (`stay_prior` > 0): a weight per logit (variable
    /// `actor.prior.weight`) and the observation column each logit reads.
    prior: Option<(Tensor, Tensor)>,
    critic: Net,
    actor_opt: Adam,
    critic_opt: Adam,
    obs_norm: RunningNorm,
    ret_norm: RunningNorm,
    /// Running discounted return per environment (for reward scaling).
    returns: Vec<f64>,
    /// The oracle's demonstrations while imitating (not checkpointed).
    demos: imitate::Demos,
}

impl Ppo {
    pub(crate) fn new(config: &TrainConfig, device: Device) -> Ppo {
        let (users, servers) = (config.scenario.users, config.scenario.servers);
        let dim = obs_dim(users, servers);
        let actor_vs = VarStore::new(device);
        let critic_vs = VarStore::new(device);
        let mut sizes = vec![dim];
        sizes.extend(&config.hidden);
        let mut actor_sizes = sizes.clone();
        actor_sizes.push(users * servers);
        sizes.push(1);
        let actor = Net::new(&(actor_vs.root() / "actor"), &actor_sizes, 0.01);
        let prior = (config.stay_prior > 0.0).then(|| {
            let weight = (actor_vs.root() / "actor" / "prior").var(
                "weight",
                &[(users * servers) as i64],
                tch::nn::Init::Const(config.stay_prior),
            );
            let columns: Vec<i64> = Prior::stay_index(users, servers)
                .into_iter()
                .map(|c| c as i64)
                .collect();
            (weight, Tensor::from_slice(&columns).to_device(device))
        });
        let critic = Net::new(&(critic_vs.root() / "critic"), &sizes, 1.0);
        let actor_opt = Adam::new(&actor_vs, config.lr_actor);
        let critic_opt = Adam::new(&critic_vs, config.lr_critic);
        Ppo {
            config: config.clone(),
            device,
            users,
            servers,
            dim,
            actor_vs,
            critic_vs,
            actor,
            prior,
            critic,
            actor_opt,
            critic_opt,
            obs_norm: RunningNorm::new(dim),
            ret_norm: RunningNorm::new(1),
            returns: vec![0.0; config.envs],
            demos: imitate::Demos::new(config.envs),
        }
    }

    /// The actor's logits for a `[batch, dim]` observation tensor.
    fn logits(&self, x: &Tensor) -> Tensor {
        let mlp = self.actor.forward(x);
        match &self.prior {
            Some((weight, columns)) => mlp + x.index_select(1, columns) * weight,
            None => mlp,
        }
    }

    fn to_tensor(&self, rows: &[f32], cols: usize) -> Tensor {
        Tensor::from_slice(rows)
            .view([(rows.len() / cols) as i64, cols as i64])
            .to_device(self.device)
    }
    /// Folds one step's outcomes into the metrics and the rollout: the training
    /// signal scaled by the running standard deviation of the discounted return.
    fn record(
        &mut self,
        outcomes: &[crate::sim::Outcome],
        acc: &mut EpisodeAccumulator,
        rollout: &mut Rollout,
    ) {
        let c = &self.config;
        let penalty = c.scenario.params.infeasible_penalty;
        let mut scaled = Vec::with_capacity(outcomes.len());
        for (g, o) in self.returns.iter_mut().zip(outcomes) {
            acc.add(&SlotMetrics::of(o, Duration::ZERO));
            let r = signal(c.reward, o, penalty);
            *g = *g * c.discount + r;
            scaled.push(r);
            rollout.dones.push(if o.done { 1.0 } else { 0.0 });
        }
        let rets: Vec<f32> = self.returns.iter().map(|&g| g as f32).collect();
        self.ret_norm.update(&rets);
        let scale = (self.ret_norm.var[0] + 1e-8).sqrt();
        for ((g, o), r) in self.returns.iter_mut().zip(outcomes).zip(scaled) {
            rollout.rewards.push((r / scale) as f32);
            if o.done {
                *g = 0.0;
            }
        }
    }

    /// GAE advantages and returns of a rollout (step-major buffers: index t·n + i),
    /// bootstrapped from the critic on `raw_last`, the raw observations after it
    /// (normalised here, statistics not updated).
    fn advantages(
        &self,
        raw_last: &[f32],
        rollout: &Rollout,
    ) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        let c = &self.config;
        let dim = self.dim;
        let mut last = raw_last.to_vec();
        for row in last.chunks_exact_mut(dim) {
            self.obs_norm.apply(row);
        }
        let last_x = self.to_tensor(&last, dim);
        let last_v = Vec::<f32>::try_from(
            tch::no_grad(|| self.critic.forward(&last_x).view([-1])).to_device(Device::Cpu),
        )?;
        let (val, rew, done) = (&rollout.values, &rollout.rewards, &rollout.dones);
        let (gamma, lambda) = (c.discount as f32, c.gae_lambda as f32);
        let adv = gae(val, rew, done, &last_v, gamma, lambda);
        let ret = adv.iter().zip(val).map(|(a, v)| a + v).collect();
        Ok((adv, ret))
    }

    /// One critic step toward `target` on the normalised observations `o`; returns
    /// the value loss.
    fn critic_step(&mut self, o: &Tensor, target: &Tensor) -> Tensor {
        let value = self.critic.forward(o).view([-1]);
        let v_loss = (value - target).square().mean(Kind::Float) * 0.5;
        self.critic_opt.zero_grad();
        v_loss.backward();
        self.critic_opt.clip_grad_norm(self.config.max_grad_norm);
        self.critic_opt.step();
        v_loss
    }
}

/// Per-slot values, scaled rewards and episode ends of one rollout, step-major.
#[derive(Default)]
struct Rollout {
    values: Vec<f32>,
    rewards: Vec<f32>,
    dones: Vec<f32>,
}

impl Rollout {
    fn with_capacity(batch: usize) -> Rollout {
        Rollout {
            values: Vec::with_capacity(batch),
            rewards: Vec::with_capacity(batch),
            dones: Vec::with_capacity(batch),
        }
    }
}

impl Learner for Ppo {
    fn iterate(&mut self, venv: &mut VecEnv, iteration: usize) -> anyhow::Result<IterStats> {
        if iteration < self.config.imitate.iterations {
            return self.imitate(venv, iteration);
        }
        self.actor_opt.lr = self.config.lr_actor;
        let c = self.config.clone();
        let c = &c;
        let (n, steps, dim, users, servers) =
            (venv.len(), c.rollout, self.dim, self.users, self.servers);
        let batch = n * steps;
        let mut obs_buf = Vec::with_capacity(batch * dim);
        let mut act_buf: Vec<i64> = Vec::with_capacity(batch * users);
        let mut logp_buf: Vec<f32> = Vec::with_capacity(batch * users);
        let mut rollout = Rollout::with_capacity(batch);
        let mut acc = EpisodeAccumulator::default();
        let mut raw = Vec::new();
        observe_all(venv, dim, &mut raw)?;
        for _ in 0..steps {
            self.obs_norm.update(&raw);
            for row in raw.chunks_exact_mut(dim) {
                self.obs_norm.apply(row);
            }
            let x = self.to_tensor(&raw, dim);
            obs_buf.extend_from_slice(&raw);
            let (actions, logp, value) = tch::no_grad(|| {
                let logits = self.logits(&x).view([(n * users) as i64, servers as i64]);
                let actions = logits.softmax(-1, Kind::Float).multinomial(1, true);
                let logp = logits
                    .log_softmax(-1, Kind::Float)
                    .gather(1, &actions, false)
                    .view([(n * users) as i64]);
                let value = self.critic.forward(&x).view([n as i64]);
                (actions.view([-1]), logp, value)
            });
            let actions = Vec::<i64>::try_from(actions.to_device(Device::Cpu))?;
            logp_buf.extend(Vec::<f32>::try_from(logp.to_device(Device::Cpu))?);
            rollout
                .values
                .extend(Vec::<f32>::try_from(value.to_device(Device::Cpu))?);
            let decisions: Vec<Decision> = actions
                .chunks_exact(users)
                .map(|a| Decision::optimal(a.iter().map(|&s| s as usize).collect()))
                .collect();
            act_buf.extend(&actions);
            let outcomes = venv.step(&decisions).context("stepping the environments")?;
            self.record(&outcomes, &mut acc, &mut rollout);
            observe_all(venv, dim, &mut raw)?;
        }
        let (adv, ret) = self.advantages(&raw, &rollout)?;
        let val_buf = rollout.values;
        let explained_var = explained_variance(&val_buf, &ret);

        let obs = self.to_tensor(&obs_buf, dim);
        let act = Tensor::from_slice(&act_buf)
            .view([batch as i64, users as i64])
            .to_device(self.device);
        let old_logp = Tensor::from_slice(&logp_buf)
            .view([batch as i64, users as i64])
            .to_device(self.device);
        let per_user = c.ratio == super::Ratio::PerUser;
        let adv_t = Tensor::from_slice(&adv).to_device(self.device);
        let ret_t = Tensor::from_slice(&ret).to_device(self.device);
        let ppo = c.algo == Algo::Ppo;
        let mb = batch / c.minibatches;
        let mut stats = UpdateStats::default();
        for _ in 0..c.epochs {
            let perm = Tensor::randperm(batch as i64, (Kind::Int64, self.device));
            for m in 0..c.minibatches {
                let idx = perm.narrow(0, (m * mb) as i64, mb as i64);
                let o = obs.index_select(0, &idx);
                let a = act.index_select(0, &idx);
                let adv = adv_t.index_select(0, &idx);
                let adv = (&adv - adv.mean(Kind::Float)) / (adv.std(true) + 1e-8);
                let logits = self.logits(&o).view([(mb * users) as i64, servers as i64]);
                let logp_all = logits.log_softmax(-1, Kind::Float);
                let logp_u = logp_all
                    .gather(1, &a.view([-1, 1]), false)
                    .view([mb as i64, users as i64]);
                let entropy = -(logp_all.exp() * &logp_all).sum(Kind::Float) / (mb * users) as f64;
                let old_u = old_logp.index_select(0, &idx);
                // Joint (the paper): one ratio per sample from the summed
                // log-probabilities. Per user: a ratio per (sample, user), each
                // clipped on its own, all with the sample's advantage.
                let (logp, old, adv) = if per_user {
                    (logp_u.shallow_clone(), old_u, adv.view([mb as i64, 1]))
                } else {
                    let sum = |t: &Tensor| t.sum_dim_intlist(1, false, Kind::Float);
                    (sum(&logp_u), sum(&old_u), adv)
                };
                let log_ratio = &logp - &old;
                let ratio = log_ratio.exp();
                let pg_loss = if ppo {
                    let clipped = ratio.clamp(1.0 - c.clip, 1.0 + c.clip);
                    -(&ratio * &adv).minimum(&(clipped * &adv)).mean(Kind::Float)
                } else {
                    -(&logp * &adv).mean(Kind::Float)
                };
                let loss = &pg_loss - &entropy * c.entropy;
                self.actor_opt.zero_grad();
                loss.backward();
                self.actor_opt.clip_grad_norm(c.max_grad_norm);
                self.actor_opt.step();

                let v_loss = self.critic_step(&o, &ret_t.index_select(0, &idx));

                tch::no_grad(|| {
                    stats.add(
                        pg_loss.double_value(&[]),
                        v_loss.double_value(&[]),
                        entropy.double_value(&[]),
                        ((&ratio - 1.0) - &log_ratio)
                            .mean(Kind::Float)
                            .double_value(&[]),
                        (&ratio - 1.0)
                            .abs()
                            .gt(c.clip)
                            .to_kind(Kind::Float)
                            .mean(Kind::Float)
                            .double_value(&[]),
                    )
                });
            }
        }
        Ok(stats.finish(acc, explained_var, ppo))
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        learner::learner_tensors(
            &[&self.actor_vs, &self.critic_vs],
            &self.actor_opt,
            &self.critic_opt,
            &self.obs_norm,
            &self.ret_norm,
        )
    }

    fn load(&mut self, get: &dyn Fn(&str) -> anyhow::Result<Tensor>) -> anyhow::Result<()> {
        (self.obs_norm, self.ret_norm) = learner::load_learner(
            get,
            &mut [&mut self.actor_vs, &mut self.critic_vs],
            &mut self.actor_opt,
            &mut self.critic_opt,
            self.dim,
        )?;
        Ok(())
    }
}

/// 1 − Var(returns − values) / Var(returns); NaN when the returns are constant.
pub(crate) fn explained_variance(values: &[f32], returns: &[f32]) -> f64 {
    let var = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64
    };
    let vr = var(&mut returns.iter().map(|&r| f64::from(r)));
    let vd = var(&mut returns.iter().zip(values).map(|(&r, &v)| f64::from(r - v)));
    if vr == 0.0 {
        f64::NAN
    } else {
        1.0 - vd / vr
    }
}

/// Loss statistics averaged over the minibatches of one update.
#[derive(Default)]
struct UpdateStats {
    n: f64,
    pg: f64,
    v: f64,
    ent: f64,
    kl: f64,
    clip: f64,
}

impl UpdateStats {
    fn add(&mut self, pg: f64, v: f64, ent: f64, kl: f64, clip: f64) {
        self.n += 1.0;
        self.pg += pg;
        self.v += v;
        self.ent += ent;
        self.kl += kl;
        self.clip += clip;
    }

    fn finish(self, acc: EpisodeAccumulator, explained_var: f64, ppo: bool) -> IterStats {
        let n = self.n.max(1.0);
        IterStats {
            slots: acc.finish(),
            policy_loss: self.pg / n,
            value_loss: self.v / n,
            entropy: self.ent / n,
            approx_kl: self.kl / n,
            clip_frac: if ppo { self.clip / n } else { f64::NAN },
            explained_var,
            agreement: f64::NAN,
        }
    }
}

/// GAE advantages of step-major buffers (index t·n + i for n environments), the
/// value after the rollout `last_v` (one per environment). The episode end
/// (`done`) is a time limit, not a terminal state (SPEC §2.3): the value is
/// bootstrapped there too. The simulator has no state after the last slot (the
/// environment restarts), so the critic's value of the last slot's own state
/// stands in for it, and the GAE trace is cut at the boundary.
fn gae(
    val: &[f32],
    rew: &[f32],
    done: &[f32],
    last_v: &[f32],
    gamma: f32,
    lambda: f32,
) -> Vec<f32> {
    let n = last_v.len();
    let batch = val.len();
    let steps = batch / n.max(1);
    let mut adv = vec![0f32; batch];
    let mut trace = vec![0f32; n];
    for t in (0..steps).rev() {
        for i in 0..n {
            let k = t * n + i;
            let (next_v, carry) = if done[k] > 0.0 {
                (val[k], 0.0)
            } else if t + 1 == steps {
                (last_v[i], 1.0)
            } else {
                (val[k + n], 1.0)
            };
            let delta = rew[k] + gamma * next_v - val[k];
            trace[i] = delta + gamma * lambda * carry * trace[i];
            adv[k] = trace[i];
        }
    }
    adv
}

#[cfg(test)]
mod gae_tests {
    /// One environment, three slots, the episode ending (time limit) after the
    /// second: worked by hand with γ = 0.5, λ = 0.5.
    #[test]
    fn the_time_limit_bootstraps_and_cuts_the_trace() {
        let val = [1.0, 2.0, 4.0];
        let rew = [1.0, 1.0, 1.0];
        let done = [0.0, 1.0, 0.0];
        let adv = super::gae(&val, &rew, &done, &[8.0], 0.5, 0.5);
        // t = 2 (new episode): δ = 1 + 0.5·8 − 4 = 1.
        // t = 1 (last slot): δ = 1 + 0.5·2 − 2 = 0 (bootstrapped on its own value;
        // a terminal state would give 1 − 2 = −1), trace cut.
        // t = 0: δ = 1 + 0.5·2 − 1 = 1, plus 0.25 × 0.
        assert_eq!(adv, vec![1.0, 0.0, 1.0]);
    }
}

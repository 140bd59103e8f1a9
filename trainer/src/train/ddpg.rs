//! DDPG, the paper's Baseline 4: a deterministic actor gives a score in [−1, 1] per
//! (user, server); each user goes to its best-scoring server and γ comes from the
//! solver. Critic Q(s, a) on the scores, target networks with soft updates, a replay
//! buffer kept as one tensor, Gaussian exploration noise after a uniform warm-up.
//! The replay buffer is not checkpointed: a resumed run refills it (warm-up again).

use std::time::Duration;

use anyhow::Context;
use diten_controller::obs::obs_dim;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::learner::{self, observe_all, signal, IterStats, Learner};
use super::nets::{Adam, Net};
use super::TrainConfig;
use crate::eval::{EpisodeAccumulator, SlotMetrics};
use crate::policy::norm::RunningNorm;
use crate::policy::trained::argmax_rows;
use crate::sim::{Decision, VecEnv};

pub(crate) struct Ddpg {
    config: TrainConfig,
    device: Device,
    users: usize,
    servers: usize,
    dim: usize,
    actor_vs: VarStore,
    critic_vs: VarStore,
    actor_t_vs: VarStore,
    critic_t_vs: VarStore,
    actor: Net,
    critic: Net,
    actor_t: Net,
    critic_t: Net,
    actor_opt: Adam,
    critic_opt: Adam,
    obs_norm: RunningNorm,
    ret_norm: RunningNorm,
    returns: Vec<f64>,
    buf_obs: Tensor,
    buf_act: Tensor,
    buf_rew: Tensor,
    buf_next: Tensor,
    buf_done: Tensor,
    len: usize,
    pos: usize,
    seen: usize,
}

impl Ddpg {
    pub(crate) fn new(config: &TrainConfig, device: Device) -> Ddpg {
        let (users, servers) = (config.scenario.users, config.scenario.servers);
        let dim = obs_dim(users, servers);
        let act = users * servers;
        let mut actor_sizes = vec![dim];
        actor_sizes.extend(&config.hidden);
        actor_sizes.push(act);
        let mut critic_sizes = vec![dim + act];
        critic_sizes.extend(&config.hidden);
        critic_sizes.push(1);
        let actor_vs = VarStore::new(device);
        let critic_vs = VarStore::new(device);
        let mut actor_t_vs = VarStore::new(device);
        let mut critic_t_vs = VarStore::new(device);
        let actor = Net::new(&(actor_vs.root() / "actor"), &actor_sizes, 0.01);
        let critic = Net::new(&(critic_vs.root() / "critic"), &critic_sizes, 1.0);
        let actor_t = Net::new(&(actor_t_vs.root() / "actor"), &actor_sizes, 0.01);
        let critic_t = Net::new(&(critic_t_vs.root() / "critic"), &critic_sizes, 1.0);
        // Same names and shapes by construction, so copying cannot fail.
        let _ = actor_t_vs.copy(&actor_vs);
        let _ = critic_t_vs.copy(&critic_vs);
        let actor_opt = Adam::new(&actor_vs, config.lr_actor);
        let critic_opt = Adam::new(&critic_vs, config.lr_critic);
        let cap = config.ddpg.buffer as i64;
        let opts = (Kind::Float, device);
        Ddpg {
            config: config.clone(),
            device,
            users,
            servers,
            dim,
            actor_vs,
            critic_vs,
            actor_t_vs,
            critic_t_vs,
            actor,
            critic,
            actor_t,
            critic_t,
            actor_opt,
            critic_opt,
            obs_norm: RunningNorm::new(dim),
            ret_norm: RunningNorm::new(1),
            returns: vec![0.0; config.envs],
            buf_obs: Tensor::zeros([cap, dim as i64], opts),
            buf_act: Tensor::zeros([cap, act as i64], opts),
            buf_rew: Tensor::zeros([cap], opts),
            buf_next: Tensor::zeros([cap, dim as i64], opts),
            buf_done: Tensor::zeros([cap], opts),
            len: 0,
            pos: 0,
            seen: 0,
        }
    }

    fn act(&self, net: &Net, obs: &Tensor) -> Tensor {
        net.forward(obs).tanh()
    }

    fn q(&self, net: &Net, obs: &Tensor, act: &Tensor) -> Tensor {
        net.forward(&Tensor::cat(&[obs, act], 1)).view([-1])
    }

    fn store(&mut self, obs: &Tensor, act: &Tensor, rew: &[f32], next: &Tensor, done: &[f32]) {
        let cap = self.config.ddpg.buffer;
        let rew = Tensor::from_slice(rew).to_device(self.device);
        let done = Tensor::from_slice(done).to_device(self.device);
        tch::no_grad(|| {
            for i in 0..rew.size()[0] {
                let p = self.pos as i64;
                self.buf_obs.get(p).copy_(&obs.get(i));
                self.buf_act.get(p).copy_(&act.get(i));
                self.buf_rew.get(p).copy_(&rew.get(i));
                self.buf_next.get(p).copy_(&next.get(i));
                self.buf_done.get(p).copy_(&done.get(i));
                self.pos = (self.pos + 1) % cap;
                self.len = (self.len + 1).min(cap);
            }
        });
    }

    fn soft_update(target: &mut VarStore, source: &VarStore, tau: f64) {
        let src = source.variables();
        tch::no_grad(|| {
            for (name, mut t) in target.variables() {
                if let Some(s) = src.get(&name) {
                    let mixed = &t * (1.0 - tau) + s * tau;
                    t.copy_(&mixed);
                }
            }
        });
    }

    /// One gradient step on critic and actor from a sampled minibatch.
    fn update(&mut self) -> (f64, f64) {
        let c = &self.config;
        let idx = Tensor::randint(
            self.len as i64,
            [c.ddpg.batch as i64],
            (Kind::Int64, self.device),
        );
        let o = self.buf_obs.index_select(0, &idx);
        let a = self.buf_act.index_select(0, &idx);
        let r = self.buf_rew.index_select(0, &idx);
        let o2 = self.buf_next.index_select(0, &idx);
        let d = self.buf_done.index_select(0, &idx);
        let y: Tensor = tch::no_grad(|| {
            let a2 = self.act(&self.actor_t, &o2);
            let not_done = d.neg() + 1.0;
            &r + not_done * self.q(&self.critic_t, &o2, &a2) * c.discount
        });
        let q_loss = (self.q(&self.critic, &o, &a) - y)
            .square()
            .mean(Kind::Float);
        self.critic_opt.zero_grad();
        q_loss.backward();
        self.critic_opt.clip_grad_norm(c.max_grad_norm);
        self.critic_opt.step();
        let pi_loss = -self
            .q(&self.critic, &o, &self.act(&self.actor, &o))
            .mean(Kind::Float);
        self.actor_opt.zero_grad();
        pi_loss.backward();
        self.actor_opt.clip_grad_norm(c.max_grad_norm);
        self.actor_opt.step();
        let tau = c.ddpg.tau;
        Self::soft_update(&mut self.actor_t_vs, &self.actor_vs, tau);
        Self::soft_update(&mut self.critic_t_vs, &self.critic_vs, tau);
        (pi_loss.double_value(&[]), q_loss.double_value(&[]))
    }
}

impl Learner for Ddpg {
    fn iterate(&mut self, venv: &mut VecEnv, _iteration: usize) -> anyhow::Result<IterStats> {
        let (n, dim, users, servers) = (venv.len(), self.dim, self.users, self.servers);
        let penalty = self.config.scenario.params.infeasible_penalty;
        let mut acc = EpisodeAccumulator::default();
        let mut raw = Vec::new();
        let (mut pi_sum, mut q_sum, mut updates) = (0.0, 0.0, 0usize);
        observe_all(venv, dim, &mut raw)?;
        for _ in 0..self.config.rollout {
            self.obs_norm.update(&raw);
            let mut obs = raw.clone();
            obs.chunks_exact_mut(dim)
                .for_each(|r| self.obs_norm.apply(r));
            let x = Tensor::from_slice(&obs)
                .view([n as i64, dim as i64])
                .to_device(self.device);
            let act = tch::no_grad(|| {
                if self.seen < self.config.ddpg.warmup {
                    Tensor::rand(
                        [n as i64, (users * servers) as i64],
                        (Kind::Float, self.device),
                    ) * 2.0
                        - 1.0
                } else {
                    let a = self.act(&self.actor, &x);
                    (&a + a.randn_like() * self.config.ddpg.noise).clamp(-1.0, 1.0)
                }
            });
            let scores = Vec::<f32>::try_from(act.to_device(Device::Cpu).flatten(0, -1))?;
            let decisions: Vec<Decision> = scores
                .chunks_exact(users * servers)
                .map(|row| Decision::optimal(argmax_rows(row, servers)))
                .collect();
            let outcomes = venv.step(&decisions).context("stepping the environments")?;
            let mut rew = Vec::with_capacity(n);
            let mut done = Vec::with_capacity(n);
            for (i, o) in outcomes.iter().enumerate() {
                acc.add(&SlotMetrics::of(o, Duration::ZERO));
                let r = signal(self.config.reward, o, penalty);
                self.returns[i] = self.returns[i] * self.config.discount + r;
                rew.push(r);
                done.push(if o.done { 1.0f32 } else { 0.0 });
            }
            let rets: Vec<f32> = self.returns.iter().map(|&g| g as f32).collect();
            self.ret_norm.update(&rets);
            let scale = (self.ret_norm.var[0] + 1e-8).sqrt();
            let rew: Vec<f32> = rew.iter().map(|r| (r / scale) as f32).collect();
            for (g, d) in self.returns.iter_mut().zip(&done) {
                if *d > 0.0 {
                    *g = 0.0;
                }
            }
            observe_all(venv, dim, &mut raw)?;
            let mut next = raw.clone();
            next.chunks_exact_mut(dim)
                .for_each(|r| self.obs_norm.apply(r));
            let next = Tensor::from_slice(&next)
                .view([n as i64, dim as i64])
                .to_device(self.device);
            self.store(&x, &act, &rew, &next, &done);
            self.seen += n;
            if self.seen >= self.config.ddpg.warmup && self.len >= self.config.ddpg.batch {
                let (pi, q) = self.update();
                pi_sum += pi;
                q_sum += q;
                updates += 1;
            }
        }
        let k = updates.max(1) as f64;
        let nan_if_none = |v: f64| if updates == 0 { f64::NAN } else { v / k };
        Ok(IterStats {
            slots: acc.finish(),
            policy_loss: nan_if_none(pi_sum),
            value_loss: nan_if_none(q_sum),
            entropy: f64::NAN,
            approx_kl: f64::NAN,
            clip_frac: f64::NAN,
            explained_var: f64::NAN,
            agreement: f64::NAN,
        })
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = learner::learner_tensors(
            &[&self.actor_vs, &self.critic_vs],
            &self.actor_opt,
            &self.critic_opt,
            &self.obs_norm,
            &self.ret_norm,
        );
        for vs in [&self.actor_t_vs, &self.critic_t_vs] {
            out.extend(
                vs.variables()
                    .into_iter()
                    .map(|(n, t)| (format!("target.{n}"), t)),
            );
        }
        out
    }

    fn load(&mut self, get: &dyn Fn(&str) -> anyhow::Result<Tensor>) -> anyhow::Result<()> {
        (self.obs_norm, self.ret_norm) = learner::load_learner(
            get,
            &mut [&mut self.actor_vs, &mut self.critic_vs],
            &mut self.actor_opt,
            &mut self.critic_opt,
            self.dim,
        )?;
        let target = |n: &str| get(&format!("target.{n}"));
        crate::policy::checkpoint::load_vars(&mut self.actor_t_vs, &target)?;
        crate::policy::checkpoint::load_vars(&mut self.critic_t_vs, &target)?;
        Ok(())
    }
}

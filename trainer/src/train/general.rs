//! The size-agnostic policy's learner (`diten train-general`, SPEC §3.2a):
//! imitation of the oracle over mixed sizes, with and without churn.
//!
//! # Data
//!
//! Episodes of random shape (U in `users`, S in `servers`, φ from `emds`, half
//! of them with the `[churn]` defaults) are driven by the oracle; every slot
//! becomes one sample: the pair features of
//! [`diten_controller::policy::general::pair_features`], and for each user, in
//! user order, the decoder's features and penalties of
//! [`user_step`] with the oracle's placement of the users before it (teacher
//! forcing: the decoder's state is exactly what it would be had the policy
//! chosen as the oracle did), and the oracle's server as the target. Episodes
//! are labelled on `jobs` threads; every seed comes from `seed`, so the data are
//! a pure function of the arguments.
//!
//! [`user_step`]: diten_controller::policy::general::user_step
//!
//! # Model and loss
//!
//! The network of the controller's module docs, written in tch (the same
//! formulas, f32); the loss is the cross-entropy of each user's decoded logits
//! against the oracle's server, mean over users, Adam on minibatches of slots.
//! The pair features' normalisation (mean and 1/std over the training data) is
//! fixed before training. A tenth of the episodes is held out; the best epoch
//! on it is kept.
//!
//! # Output
//!
//! `policy.bin` (a `policy-v2` blob the controller runs), `metrics.csv` (epoch,
//! loss, held-out loss and accuracy) and `config.toml` under the run folder,
//! every file written atomically; `policy.bin` is the best epoch so far by
//! held-out accuracy, rewritten whenever it improves.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Context;
use diten_controller::policy::blob::{F32Le, LayerRef};
use diten_controller::policy::general::{
    encode_general, general_encoded_len, GeneralRef, LoadF32, Placed, SlotIn, DYN_FEATURES,
    MAX_HIDDEN, PAIR_FEATURES,
};
use diten_controller::CostNorm;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::policy::{DecisionMaker, Oracle};
use crate::scenario::{Churn, Emd, Scenario};
use crate::sim::{Env, Status};
use crate::util::fs::write_atomic;

/// Stand-in for −∞ in the loss (an unavailable server): far below any logit,
/// finite so the softmax stays a number.
pub(super) const DOWN: f32 = -1.0e9;

/// What `diten train-general` trains on and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralConfig {
    /// Users per episode, inclusive range.
    pub users: [usize; 2],
    /// Servers per episode, inclusive range.
    pub servers: [usize; 2],
    /// φ values the episodes draw from.
    pub emds: Vec<f64>,
    /// Episodes labelled by the oracle.
    pub episodes: usize,
    /// Slots per episode.
    pub slots: usize,
    /// Share of episodes with churn (the `[churn]` defaults).
    pub churn_share: f64,
    /// Hidden width H.
    pub hidden: usize,
    /// Passes over the training samples.
    pub epochs: usize,
    /// Slots per Adam step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seed of the episodes' shapes and seeds and of the initial weights.
    pub seed: u64,
    /// Threads labelling episodes.
    pub jobs: usize,
    /// A `policy-v2` blob that drives `driven` more episodes (the controller at
    /// budget 0) while the oracle labels them (DAgger: the states the policy
    /// itself visits).
    #[serde(default)]
    pub drive: Option<std::path::PathBuf>,
    /// Episodes driven by `drive`, beyond `episodes`.
    #[serde(default)]
    pub driven: usize,
    /// The objective the policy is trained for (SPEC §2.1b); the blob records it.
    #[serde(default)]
    pub cost_norm: CostNorm,
    /// Under the linear objective, the energy prices f0 the episodes draw from
    /// (one model for all of them: the price reaches the network through the
    /// features that divide by f0).
    #[serde(default = "default_prices")]
    pub prices: Vec<f64>,
}

fn default_prices() -> Vec<f64> {
    vec![1000.0, 3000.0, 10000.0]
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            users: [10, 30],
            servers: [9, 21],
            emds: vec![0.0, 0.2, 0.4, 0.6],
            episodes: 64,
            slots: 100,
            churn_share: 0.5,
            hidden: 16,
            epochs: 30,
            batch: 16,
            lr: 3e-3,
            seed: 1,
            jobs: 2,
            drive: None,
            driven: 0,
            cost_norm: CostNorm::Paper,
            prices: default_prices(),
        }
    }
}

impl GeneralConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let range = |name: &str, [lo, hi]: [usize; 2], max: usize| {
            anyhow::ensure!(
                1 <= lo && lo <= hi && hi <= max,
                "{name}: [{lo}, {hi}] must satisfy 1 <= lo <= hi <= {max}"
            );
            Ok(())
        };
        range(
            "users",
            self.users,
            diten_controller::policy::general::MAX_GENERAL_USERS,
        )?;
        range(
            "servers",
            self.servers,
            diten_controller::policy::general::MAX_GENERAL_SERVERS,
        )?;
        anyhow::ensure!(!self.emds.is_empty(), "emds: at least one value");
        anyhow::ensure!(self.episodes >= 2, "episodes: at least 2 (one is held out)");
        anyhow::ensure!(self.slots >= 1, "slots: at least 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.churn_share),
            "churn_share: must be in [0, 1]"
        );
        anyhow::ensure!(
            (1..=MAX_HIDDEN).contains(&self.hidden),
            "hidden: must be in 1..={MAX_HIDDEN}"
        );
        anyhow::ensure!(
            self.epochs >= 1 && self.batch >= 1,
            "epochs, batch: at least 1"
        );
        anyhow::ensure!(self.lr > 0.0 && self.lr.is_finite(), "lr: must be > 0");
        anyhow::ensure!(self.jobs >= 1, "jobs: at least 1");
        anyhow::ensure!(
            self.cost_norm == CostNorm::Paper
                || (!self.prices.is_empty()
                    && self.prices.iter().all(|&f| f > 0.0 && f.is_finite())),
            "prices: at least one energy price f0 > 0 under the linear objective"
        );
        anyhow::ensure!(
            self.drive.is_some() || self.driven == 0,
            "driven: episodes driven by a policy need `drive`"
        );
        Ok(())
    }

    /// The scenario of episode `k` (its shape, φ, churn and seed).
    pub fn scenario(&self, k: usize) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (k as u64).wrapping_mul(0x9E37_79B9));
        let mut pick = |[lo, hi]: [usize; 2]| lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
        let users = pick(self.users);
        let servers = pick(self.servers);
        let emd = self.emds[pick([0, self.emds.len() - 1])];
        let churn = (rng.next_u64() % 1000) < (self.churn_share * 1000.0) as u64;
        let mut params = diten_controller::Params {
            cost_norm: self.cost_norm,
            ..diten_controller::Params::default()
        };
        if self.cost_norm == CostNorm::Linear {
            params.f0 = self.prices[(rng.next_u64() % self.prices.len() as u64) as usize];
        }
        Scenario {
            params,
            users,
            servers,
            slots: self.slots,
            seed: 1_000_000 + self.seed * 10_000 + k as u64,
            emd: Emd::All(emd),
            churn: churn.then(Churn::default),
            ..Scenario::default()
        }
    }
}

/// One labelled slot.
#[derive(Clone, Debug)]
pub struct Sample {
    users: usize,
    servers: usize,
    /// `users × servers × PAIR_FEATURES`.
    pairs: Vec<f32>,
    /// `users × servers × DYN_FEATURES`, with the oracle's placement.
    decoder: Vec<f32>,
    /// `users × servers` penalties ([`DOWN`] for −∞).
    penalty: Vec<f32>,
    /// The oracle's server of each user.
    target: Vec<i64>,
}

/// The sample of `slot` with the oracle's `association`; `None` when some user's
/// oracle server carries a penalty (an infeasible slot: nothing to imitate).
pub fn sample(
    params: &diten_controller::Params,
    slot: &Status,
    association: &[usize],
) -> Option<Sample> {
    let (n, m) = (slot.users().len(), slot.servers().len());
    let inputs = SlotIn::new(params, slot);
    let mut pairs = Vec::with_capacity(n * m * PAIR_FEATURES);
    for u in 0..n {
        for s in 0..m {
            pairs.extend_from_slice(&inputs.features(u, s)?);
        }
    }
    let mut placed = vec![Placed::default(); m];
    let mut features = vec![[0.0f32; DYN_FEATURES]; m];
    let (mut pen, mut loads) = (vec![0.0f32; m], vec![LoadF32::default(); m]);
    let mut decoder = Vec::with_capacity(n * m * DYN_FEATURES);
    let mut penalty = Vec::with_capacity(n * m);
    for (u, &t) in association.iter().enumerate() {
        inputs.step(params, u, &placed, &mut features, &mut pen, &mut loads);
        if pen[t] != 0.0 {
            return None;
        }
        decoder.extend(features.iter().flatten());
        penalty.extend(pen.iter().map(|&p| p.max(DOWN)));
        placed[t].add(params, loads[t]);
    }
    Some(Sample {
        users: n,
        servers: m,
        pairs,
        decoder,
        penalty,
        target: association.iter().map(|&s| s as i64).collect(),
    })
}

/// Runs episode `k` and returns its samples: the oracle labels every slot and
/// drives the first `episodes`; `drive` (at budget 0) drives the others.
fn label(config: &GeneralConfig, k: usize) -> anyhow::Result<Vec<Sample>> {
    let sc = config.scenario(k);
    let mut env = Env::new(&sc, sc.seed)?;
    let mut oracle = Oracle::new();
    oracle.reset(sc.seed);
    let drive = match (&config.drive, k >= config.episodes) {
        (Some(path), true) => Some((path, crate::policy::controller::read_blob(path)?)),
        _ => None,
    };
    let mut driver = match &drive {
        Some((path, blob)) => {
            let mut p = crate::policy::ControllerPolicy::from_blob(blob, "drive".into())
                .with_context(|| format!("{}", path.display()))?;
            p.set_improvement_budget(0);
            Some(p)
        }
        None => None,
    };
    let mut out = Vec::with_capacity(sc.slots);
    while !env.done() {
        let d = oracle.decide(&env)?;
        if let Some(s) = sample(&sc.params, env.status(), &d.association) {
            out.push(s);
        }
        match driver.as_mut() {
            Some(p) => env.step(&p.decide(&env)?)?,
            None => env.step(&d)?,
        };
    }
    Ok(out)
}

/// Labels every episode on `config.jobs` threads (episode order kept), with a
/// progress line on stderr.
pub fn label_all(config: &GeneralConfig, stop: &AtomicBool) -> anyhow::Result<Vec<Vec<Sample>>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let mut results: Vec<Option<anyhow::Result<Vec<Sample>>>> =
        (0..config.episodes + config.driven).map(|_| None).collect();
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|scope| {
        for _ in 0..config.jobs {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= config.episodes + config.driven || stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = label(config, k);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                eprint!(
                    "\rtrain-general: labelling episodes with the oracle {d}/{}",
                    config.episodes + config.driven
                );
                slots.lock().unwrap_or_else(|e| e.into_inner())[k] = Some(r);
            });
        }
    });
    eprintln!();
    anyhow::ensure!(!stop.load(Ordering::Relaxed), "interrupted while labelling");
    results
        .into_iter()
        .enumerate()
        .map(|(k, r)| r.unwrap_or_else(|| Err(anyhow::anyhow!("episode {k} not labelled"))))
        .collect()
}

/// The network's weights in tch.
pub(super) struct Net {
    mean: Tensor,
    inv_std: Tensor,
    embed_w: Tensor,
    embed_b: Tensor,
    mix_w: Tensor,
    mix_b: Tensor,
    out_w: Tensor,
    out_b: Tensor,
    pub(super) decoder: Tensor,
    hidden: i64,
}

impl Net {
    fn new(vs: &nn::Path, hidden: usize, mean: &[f32], inv_std: &[f32]) -> Net {
        let h = hidden as i64;
        let f = PAIR_FEATURES as i64;
        let uniform = |name: &str, shape: &[i64], fan_in: i64| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            vs.var(
                name,
                shape,
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )
        };
        Net {
            mean: Tensor::from_slice(mean),
            inv_std: Tensor::from_slice(inv_std),
            embed_w: uniform("embed_w", &[h, f], f),
            embed_b: uniform("embed_b", &[h], f),
            mix_w: uniform("mix_w", &[h, 3 * h], 3 * h),
            mix_b: uniform("mix_b", &[h], 3 * h),
            out_w: uniform("out_w", &[1, h], h),
            out_b: uniform("out_b", &[1], h),
            decoder: vs.var("decoder", &[DYN_FEATURES as i64], nn::Init::Const(0.0)),
            hidden: h,
        }
    }

    /// The network of `model` (a parsed blob), to train further.
    pub(super) fn from_model(vs: &nn::Path, model: &GeneralRef<'_>) -> Net {
        let collect = |v: F32Le<'_>| v.iter().collect::<Vec<f32>>();
        let mean = collect(model.pair_mean);
        let inv_std = collect(model.pair_inv_std);
        let net = Net::new(vs, model.hidden(), &mean, &inv_std);
        tch::no_grad(|| {
            for (t, v) in [
                (&net.embed_w, model.embed.weight),
                (&net.embed_b, model.embed.bias),
                (&net.mix_w, model.mix.weight),
                (&net.mix_b, model.mix.bias),
                (&net.out_w, model.out.weight),
                (&net.out_b, model.out.bias),
                (&net.decoder, model.decoder),
            ] {
                let mut t = t.shallow_clone();
                t.copy_(&Tensor::from_slice(&collect(v)).view_as(&t));
            }
        });
        net
    }

    /// The base logits `[U, S]` (before decoding) of `users × servers` pairs'
    /// features `pairs`.
    pub(super) fn base(&self, pairs: &[f32], users: usize, servers: usize) -> Tensor {
        let (n, m, h) = (users as i64, servers as i64, self.hidden);
        let x = Tensor::from_slice(pairs).view([n, m, PAIR_FEATURES as i64]);
        let x = ((x - &self.mean) * &self.inv_std).clamp(-10.0, 10.0);
        let hid = (x.matmul(&self.embed_w.tr()) + &self.embed_b).relu();
        let g = hid.mean_dim(0, false, Kind::Float); // [m, h]
        let k = hid.mean_dim(1, false, Kind::Float); // [n, h]
        let wh = self.mix_w.narrow(1, 0, h);
        let wg = self.mix_w.narrow(1, h, h);
        let wk = self.mix_w.narrow(1, 2 * h, h);
        let z = (hid.matmul(&wh.tr())
            + g.matmul(&wg.tr()).unsqueeze(0)
            + (k.matmul(&wk.tr()) + &self.mix_b).unsqueeze(1))
        .relu();
        z.matmul(&self.out_w.tr()).squeeze_dim(-1) + &self.out_b
    }

    /// The decoded logits `[U, S]` of a sample (teacher-forced decoder state).
    fn logits(&self, s: &Sample) -> Tensor {
        let (n, m) = (s.users as i64, s.servers as i64);
        let base = self.base(&s.pairs, s.users, s.servers);
        let d = Tensor::from_slice(&s.decoder).view([n, m, DYN_FEATURES as i64]);
        let pen = Tensor::from_slice(&s.penalty).view([n, m]);
        base + d.matmul(&self.decoder) + pen
    }

    /// Mean cross-entropy and correct users of one sample.
    fn loss(&self, s: &Sample) -> (Tensor, i64) {
        let logits = self.logits(s);
        let target = Tensor::from_slice(&s.target);
        let correct = logits.argmax(-1, false).eq_tensor(&target).sum(Kind::Int64);
        (
            logits.cross_entropy_for_logits(&target),
            correct.int64_value(&[]),
        )
    }

    pub(super) fn values(t: &Tensor) -> Vec<f32> {
        let t = t.detach().to_device(Device::Cpu).contiguous().view(-1);
        Vec::<f32>::try_from(&t).unwrap_or_default()
    }

    /// The `policy-v2` blob of the current weights.
    pub(super) fn blob(&self, cost_norm: CostNorm) -> anyhow::Result<Vec<u8>> {
        let le = |v: Vec<f32>| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let parts: Vec<Vec<u8>> = [
            &self.mean,
            &self.inv_std,
            &self.embed_w,
            &self.embed_b,
            &self.mix_w,
            &self.mix_b,
            &self.out_w,
            &self.out_b,
            &self.decoder,
        ]
        .iter()
        .map(|t| le(Net::values(t)))
        .collect();
        let h = self.hidden as u32;
        fn layer<'a>(inputs: u32, outputs: u32, w: &'a [u8], b: &'a [u8]) -> LayerRef<'a> {
            LayerRef {
                inputs,
                outputs,
                weight: F32Le::new(w),
                bias: F32Le::new(b),
            }
        }
        let model = GeneralRef {
            pair_mean: F32Le::new(&parts[0]),
            pair_inv_std: F32Le::new(&parts[1]),
            embed: layer(PAIR_FEATURES as u32, h, &parts[2], &parts[3]),
            mix: layer(3 * h, h, &parts[4], &parts[5]),
            out: layer(h, 1, &parts[6], &parts[7]),
            decoder: F32Le::new(&parts[8]),
            cost_norm,
        };
        let mut out = vec![0u8; general_encoded_len(&model).map_err(|e| anyhow::anyhow!("{e}"))?];
        encode_general(&model, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(out)
    }
}

/// Mean and 1/std per pair feature over `samples` (std floored at 1e-3).
fn normalisation(samples: &[&Sample]) -> (Vec<f32>, Vec<f32>) {
    let mut sum = [0.0f64; PAIR_FEATURES];
    let mut sq = [0.0f64; PAIR_FEATURES];
    let mut count = 0.0f64;
    for s in samples {
        for row in s.pairs.chunks_exact(PAIR_FEATURES) {
            for (i, &v) in row.iter().enumerate() {
                sum[i] += f64::from(v);
                sq[i] += f64::from(v) * f64::from(v);
            }
            count += 1.0;
        }
    }
    let count = count.max(1.0);
    let mean: Vec<f32> = sum.iter().map(|v| (v / count) as f32).collect();
    let inv: Vec<f32> = (0..PAIR_FEATURES)
        .map(|i| {
            let var = (sq[i] / count - (sum[i] / count).powi(2)).max(0.0);
            (1.0 / var.sqrt().max(1e-3)) as f32
        })
        .collect();
    (mean, inv)
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct GeneralDone {
    /// Training and held-out samples.
    pub samples: (usize, usize),
    /// Held-out accuracy (users whose decoded argmax is the oracle's server) at
    /// the kept epoch.
    pub accuracy: f64,
    /// The kept epoch (1-based).
    pub epoch: usize,
    /// Seconds labelling and training.
    pub wall_s: (f64, f64),
}

/// Labels, trains and writes `policy.bin`, `metrics.csv` and `config.toml`
/// into `out` (module docs).
pub fn train(config: &GeneralConfig, out: &Path, stop: &AtomicBool) -> anyhow::Result<GeneralDone> {
    config.validate()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(
        &out.join("config.toml"),
        toml::to_string(config).context("config.toml")?.as_bytes(),
    )?;
    tch::manual_seed(config.seed as i64);
    let t0 = std::time::Instant::now();
    let episodes = label_all(config, stop)?;
    let label_s = t0.elapsed().as_secs_f64();
    let held = (config.episodes / 10).max(1);
    let (val_eps, train_eps) = episodes.split_at(held);
    let train_set: Vec<&Sample> = train_eps.iter().flatten().collect();
    let val_set: Vec<&Sample> = val_eps.iter().flatten().collect();
    anyhow::ensure!(!train_set.is_empty(), "the oracle gave no training samples");
    let (mean, inv_std) = normalisation(&train_set);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), config.hidden, &mean, &inv_std);
    let mut opt = nn::Adam::default().build(&vs, config.lr)?;
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut metrics = String::from("epoch,loss,val_loss,val_accuracy\n");
    let mut best: Option<(f64, usize, Vec<u8>)> = None;
    let t1 = std::time::Instant::now();
    for epoch in 1..=config.epochs {
        anyhow::ensure!(
            !stop.load(Ordering::Relaxed),
            "interrupted at epoch {epoch}"
        );
        // Fisher–Yates with the run's stream.
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut total = 0.0;
        for chunk in order.chunks(config.batch) {
            let losses: Vec<Tensor> = chunk.iter().map(|&i| net.loss(train_set[i]).0).collect();
            let loss = Tensor::stack(&losses, 0).mean(Kind::Float);
            opt.backward_step(&loss);
            total += loss.double_value(&[]) * chunk.len() as f64;
        }
        let (mut val_loss, mut correct, mut users) = (0.0, 0i64, 0i64);
        tch::no_grad(|| {
            for s in &val_set {
                let (l, c) = net.loss(s);
                val_loss += l.double_value(&[]);
                correct += c;
                users += s.users as i64;
            }
        });
        let val_loss = val_loss / val_set.len().max(1) as f64;
        let accuracy = correct as f64 / users.max(1) as f64;
        let loss = total / train_set.len() as f64;
        metrics.push_str(&format!("{epoch},{loss:.6},{val_loss:.6},{accuracy:.6}\n"));
        eprintln!(
            "train-general: epoch {epoch}/{}: loss {loss:.4}, held-out loss {val_loss:.4}, \
             accuracy {:.1} %",
            config.epochs,
            100.0 * accuracy
        );
        if best.as_ref().is_none_or(|(a, ..)| accuracy > *a) {
            let blob = net.blob(config.cost_norm)?;
            // The best so far is on disk at every epoch: an interrupted run
            // leaves a usable policy.
            write_atomic(&out.join("policy.bin"), &blob)?;
            best = Some((accuracy, epoch, blob));
        }
        write_atomic(&out.join("metrics.csv"), metrics.as_bytes())?;
    }
    let (accuracy, epoch, _) = best.context("no epoch ran")?;
    Ok(GeneralDone {
        samples: (train_set.len(), val_set.len()),
        accuracy,
        epoch,
        wall_s: (label_s, t1.elapsed().as_secs_f64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diten_controller::policy::GeneralPolicy;

    /// The tch network gives the controller engine's logits on the same slot
    /// (its decoder replayed with the engine's own placement equals the teacher's
    /// when the teacher is the engine's argmax).
    #[test]
    fn the_tch_network_and_the_controller_engine_agree() {
        let vs = nn::VarStore::new(Device::Cpu);
        tch::manual_seed(4);
        let mean = vec![0.1f32; PAIR_FEATURES];
        let inv = vec![1.5f32; PAIR_FEATURES];
        let mut net = Net::new(&vs.root(), 8, &mean, &inv);
        tch::no_grad(|| {
            net.decoder
                .copy_(&Tensor::from_slice(&[0.5f32, -0.3, 1.0, -2.0, 0.7]));
        });
        let blob = net.blob(CostNorm::Paper).unwrap();
        let policy = GeneralPolicy::parse(&blob).unwrap();
        let sc = Scenario {
            users: 12,
            servers: 7,
            churn: Some(Churn {
                fail_p: 0.2,
                ..Churn::default()
            }),
            emd: Emd::All(0.2),
            ..Scenario::default()
        };
        let mut env = Env::new(&sc, 5).unwrap();
        for _ in 0..5 {
            let slot = env.status().clone();
            let (n, m) = (slot.users().len(), slot.servers().len());
            let mut scratch = vec![0.0; policy.scratch_len(n, m)];
            let mut logits = vec![0.0; n * m];
            policy
                .logits(&sc.params, &slot, &mut scratch, &mut logits)
                .unwrap();
            let assoc: Vec<usize> = logits
                .chunks_exact(m)
                .map(|row| (0..m).fold(0, |b, s| if row[s] > row[b] { s } else { b }))
                .collect();
            let sample = sample(&sc.params, &slot, &assoc).unwrap();
            let ours = Net::values(&tch::no_grad(|| net.logits(&sample)));
            for (a, b) in ours.iter().zip(&logits) {
                if *b == f32::NEG_INFINITY {
                    assert!(*a <= DOWN / 2.0);
                } else {
                    assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
            env.step(&crate::sim::Decision::optimal(assoc)).unwrap();
        }
    }
}

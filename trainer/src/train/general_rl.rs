//! Reinforcement-learning fine-tuning of a `policy-v2` network on e
//! (`diten train-general --fine-tune POLICY`): several decodings sampled per
//! slot, their mean reward as the shared baseline (POMO's baseline, Kwon et al.
//! 2020, on Kool et al.'s attention-model recipe).
//!
//! # Data
//!
//! Episodes of random shape, as the imitation draws them (`GeneralConfig::scenario`,
//! numbered after the imitation's so their seeds differ), driven by the starting
//! policy through the controller at budget 0; every slot is kept.
//!
//! # One step
//!
//! For each slot of a minibatch: the network's base logits (one forward pass);
//! then `rollouts` decodings through the controller's own decoding step
//! ([`user_step`]), each user's server drawn from the softmax of its decoded
//! logits (the first rollout takes the argmax, so the greedy decision is always
//! among them); each decoding's reward is e of the decision the controller makes
//! from it at budget 0 (repair, consolidation, exact γ) plus `alone` × e of the
//! network's own association (repair and γ, no consolidation), each less 0.1
//! when it still breaks C2 or C3 (`alone` = 0 by default: the budget-0
//! decision is what the controller runs; the network then learns to leave the
//! packing to the consolidation, and its own association scores worse). The loss is
//! `−Σ_k (R_k − mean_k R) · log π(a_k)`, the log-probability summed over users
//! with the decoder's state of that rollout, advantages divided by their
//! standard deviation over the minibatch. Adam; the blob is written after
//! every epoch whose greedy reward on the held-out slots is the best so far.
//!
//! [`user_step`]: diten_controller::policy::general::user_step

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use diten_controller::policy::general::{LoadF32, Placed, SlotIn};
use diten_controller::policy::general::{DYN_FEATURES, PAIR_FEATURES};
use diten_controller::policy::GeneralPolicy;
use diten_controller::{Controller, Params, MAX_SERVERS, MAX_USERS};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use super::general::{GeneralConfig, Net, DOWN};
use crate::policy::controller::FixedLogits;
use crate::policy::{ControllerPolicy, DecisionMaker};
use crate::sim::{Env, Status};
use crate::util::fs::write_atomic;

/// How the fine-tuning runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FineTuneConfig {
    /// Decodings sampled per slot (the first one greedy).
    pub rollouts: usize,
    /// Episodes whose slots it trains on (a tenth held out).
    pub episodes: usize,
    /// Passes over the slots.
    pub epochs: usize,
    /// Slots per Adam step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of the network's own association (no consolidation) in the
    /// reward, beside the budget-0 decision's (0: the budget-0 decision alone).
    pub alone: f64,
}

/// A controller over a rollout's logits, for the simulator's slots.
type Ctl<'p, 'w> = Controller<'p, 'w, MAX_USERS, MAX_SERVERS, FixedLogits<'p>>;

/// The reward of the controller's decisions from `logits`: e of its budget-0
/// decision (repair, consolidation, exact γ) plus `alone` × e of the network's
/// own association (repair and γ only, `unconsolidated:`), each less 0.1 when it
/// still breaks C2 or C3.
fn reward(params: &Params, slot: &Status, logits: &[f32], alone: f64) -> anyhow::Result<f64> {
    let engine = FixedLogits {
        logits,
        cost_norm: params.cost_norm,
    };
    let mut ws = vec![0.0f32; Ctl::workspace_len(&engine)];
    let mut ctl: Ctl<'_, '_> =
        Controller::new(engine, *params, &mut ws).map_err(|e| anyhow::anyhow!("{e}"))?;
    ctl.set_improvement_budget(0);
    let score = |ctl: &mut Ctl<'_, '_>| -> anyhow::Result<f64> {
        let d = ctl.decide(slot).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(d.evaluation.objective - if d.feasible { 0.0 } else { 0.1 })
    };
    let mut r = score(&mut ctl)?;
    if alone != 0.0 {
        ctl.set_consolidation(false);
        r += alone * score(&mut ctl)?;
    }
    Ok(r)
}

/// One slot to train on.
struct Slot {
    params: Params,
    status: Status,
    /// The slot's f32 inputs (pair features and decoding steps), built once.
    inputs: SlotIn<MAX_USERS, MAX_SERVERS>,
    /// `users × servers × PAIR_FEATURES`.
    pairs: Vec<f32>,
}

impl Slot {
    fn new(params: Params, status: Status) -> anyhow::Result<Slot> {
        let inputs = SlotIn::new(&params, &status);
        let (n, m) = (status.users().len(), status.servers().len());
        let mut pairs = Vec::with_capacity(n * m * PAIR_FEATURES);
        for u in 0..n {
            for s in 0..m {
                pairs.extend_from_slice(&inputs.features(u, s).context("pair features")?);
            }
        }
        Ok(Slot {
            params,
            status,
            inputs,
            pairs,
        })
    }
}

/// The slots of episodes `first..first + count`, driven by `start` at budget 0.
fn collect(
    config: &GeneralConfig,
    start: &Path,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Slot>> {
    let mut out = Vec::new();
    let blob = std::fs::read(start).with_context(|| format!("reading {}", start.display()))?;
    for k in first..first + count {
        let sc = config.scenario(k);
        let mut env = Env::new(&sc, sc.seed)?;
        let mut driver = ControllerPolicy::from_blob(&blob, "start".into())?;
        driver.set_improvement_budget(0);
        while !env.done() {
            out.push(Slot::new(sc.params, env.status().clone())?);
            env.step(&driver.decide(&env)?)?;
        }
        eprint!(
            "\rfine-tune: collecting slots, episode {}/{count}",
            k - first + 1
        );
    }
    eprintln!();
    Ok(out)
}

/// One rollout: the servers drawn, the decoder features and penalties each user
/// saw, and the decoded logits (the controller's input).
struct Rollout {
    actions: Vec<i64>,
    decoder: Vec<f32>,
    penalty: Vec<f32>,
    logits: Vec<f32>,
}

/// Decodes `slot` from the base logits `base` with decoder weights `v`, drawing
/// each user's server from the softmax of its decoded logits (`greedy`: the argmax).
fn rollout(slot: &Slot, base: &[f32], v: &[f32], greedy: bool, rng: &mut ChaCha8Rng) -> Rollout {
    let (n, m) = (slot.status.users().len(), slot.status.servers().len());
    let mut placed = vec![Placed::default(); m];
    let mut features = vec![[0.0f32; DYN_FEATURES]; m];
    let (mut pen, mut loads) = (vec![0.0f32; m], vec![LoadF32::default(); m]);
    let mut r = Rollout {
        actions: Vec::with_capacity(n),
        decoder: Vec::with_capacity(n * m * DYN_FEATURES),
        penalty: Vec::with_capacity(n * m),
        logits: Vec::with_capacity(n * m),
    };
    let mut row = vec![0.0f32; m];
    for u in 0..n {
        slot.inputs.step(
            &slot.params,
            u,
            &placed,
            &mut features,
            &mut pen,
            &mut loads,
        );
        for s in 0..m {
            let term: f32 = features[s].iter().zip(v).map(|(a, b)| a * b).sum();
            row[s] = base[u * m + s] + term + pen[s];
        }
        let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let pick = if greedy {
            (0..m).fold(0, |b, s| if row[s] > row[b] { s } else { b })
        } else {
            let weights: Vec<f64> = row.iter().map(|&x| f64::from(x - top).exp()).collect();
            let total: f64 = weights.iter().sum();
            let mut draw = (rng.next_u64() as f64 / u64::MAX as f64) * total;
            let mut pick = m - 1;
            for (s, w) in weights.iter().enumerate() {
                if draw < *w {
                    pick = s;
                    break;
                }
                draw -= w;
            }
            pick
        };
        r.actions.push(pick as i64);
        r.decoder.extend(features.iter().flatten());
        r.penalty.extend(pen.iter().map(|&p| p.max(DOWN)));
        // The controller's input: this row, with the drawn server on top.
        let at = r.logits.len() + pick;
        r.logits.extend_from_slice(&row);
        r.logits[at] = top.max(row[pick]) + 1.0;
        placed[pick].add(&slot.params, loads[pick]);
    }
    r
}

/// What a fine-tuning run reports.
#[derive(Clone, Debug)]
pub struct FineTuneDone {
    /// Training and held-out slots.
    pub slots: (usize, usize),
    /// Mean greedy reward on the held-out slots before and at the kept epoch.
    pub held_out: (f64, f64),
    /// The kept epoch (0: the starting policy).
    pub epoch: usize,
}

/// The mean greedy reward of `net` over `slots`.
fn greedy_reward(net: &Net, slots: &[Slot], alone: f64) -> anyhow::Result<f64> {
    let v = Net::values(&net.decoder);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut sum = 0.0;
    for slot in slots {
        let (n, m) = (slot.status.users().len(), slot.status.servers().len());
        let base = Net::values(&tch::no_grad(|| net.base(&slot.pairs, n, m)));
        let r = rollout(slot, &base, &v, true, &mut rng);
        sum += reward(&slot.params, &slot.status, &r.logits, alone)?;
    }
    Ok(sum / slots.len().max(1) as f64)
}

/// Fine-tunes the `policy-v2` blob `start` (module docs) and writes `policy.bin`,
/// `metrics.csv` and `config.toml` (the start, this run's settings and the
/// episodes' draw) into `out`, each atomically.
pub fn fine_tune(
    config: &GeneralConfig,
    ft: &FineTuneConfig,
    start: &Path,
    out: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<FineTuneDone> {
    anyhow::ensure!(
        ft.rollouts >= 2,
        "rollouts: at least 2 (the baseline is their mean)"
    );
    anyhow::ensure!(ft.episodes >= 2, "episodes: at least 2 (one is held out)");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    #[derive(serde::Serialize)]
    struct Record<'a> {
        start: &'a Path,
        fine_tune: &'a FineTuneConfig,
        episodes: &'a GeneralConfig,
    }
    let record = Record {
        start,
        fine_tune: ft,
        episodes: config,
    };
    write_atomic(
        &out.join("config.toml"),
        toml::to_string(&record).context("config.toml")?.as_bytes(),
    )?;
    let blob = std::fs::read(start).with_context(|| format!("reading {}", start.display()))?;
    let policy =
        GeneralPolicy::parse(&blob).map_err(|e| anyhow::anyhow!("{}: {e}", start.display()))?;
    anyhow::ensure!(
        policy.model().cost_norm == config.cost_norm,
        "{}: trained for another objective",
        start.display()
    );
    tch::manual_seed(config.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::from_model(&vs.root(), &policy.model());
    let mut opt = nn::Adam::default().build(&vs, ft.lr)?;
    // Episodes numbered after the imitation's, so their seeds are new.
    let first = config.episodes + config.driven + 1000;
    let held = (ft.episodes / 10).max(1);
    let val = collect(config, start, first, held)?;
    let train = collect(config, start, first + held, ft.episodes - held)?;
    let before = greedy_reward(&net, &val, ft.alone)?;
    eprintln!(
        "fine-tune: {} training and {} held-out slots; held-out greedy reward {before:.5}",
        train.len(),
        val.len()
    );
    let mut metrics = String::from("epoch,reward_mean,val_reward\n");
    metrics.push_str(&format!("0,,{before:.6}\n"));
    let mut best = (before, 0usize);
    write_atomic(&out.join("policy.bin"), &blob)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xF1E7);
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=ft.epochs {
        anyhow::ensure!(
            !stop.load(Ordering::Relaxed),
            "interrupted at epoch {epoch}"
        );
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut reward_sum = 0.0;
        let mut count = 0usize;
        for (b, chunk) in order.chunks(ft.batch).enumerate() {
            let v = Net::values(&net.decoder);
            let mut terms = Vec::new();
            let mut advantages = Vec::new();
            for &i in chunk {
                let slot = &train[i];
                let (n, m) = (slot.status.users().len(), slot.status.servers().len());
                let base = net.base(&slot.pairs, n, m);
                let base_v = Net::values(&base);
                let rollouts: Vec<Rollout> = (0..ft.rollouts)
                    .map(|k| rollout(slot, &base_v, &v, k == 0, &mut rng))
                    .collect();
                let rewards = rollouts
                    .iter()
                    .map(|r| reward(&slot.params, &slot.status, &r.logits, ft.alone))
                    .collect::<anyhow::Result<Vec<f64>>>()?;
                let mean = rewards.iter().sum::<f64>() / rewards.len() as f64;
                reward_sum += rewards[0];
                count += 1;
                for (r, reward) in rollouts.iter().zip(&rewards) {
                    let d = Tensor::from_slice(&r.decoder).view([
                        n as i64,
                        m as i64,
                        DYN_FEATURES as i64,
                    ]);
                    let pen = Tensor::from_slice(&r.penalty).view([n as i64, m as i64]);
                    let logits = &base + d.matmul(&net.decoder) + pen;
                    let logp = logits
                        .log_softmax(-1, Kind::Float)
                        .gather(1, &Tensor::from_slice(&r.actions).unsqueeze(1), false)
                        .sum(Kind::Float);
                    terms.push(logp);
                    advantages.push((reward - mean) as f32);
                }
            }
            let sd = {
                let k = advantages.len().max(1) as f32;
                let var = advantages.iter().map(|a| a * a).sum::<f32>() / k;
                var.sqrt().max(1e-6)
            };
            let adv = Tensor::from_slice(&advantages) / f64::from(sd);
            let loss = -(Tensor::stack(&terms, 0) * adv).sum(Kind::Float) / chunk.len() as f64;
            opt.backward_step(&loss);
            eprint!(
                "\rfine-tune: epoch {epoch}/{} batch {}/{}",
                ft.epochs,
                b + 1,
                order.len().div_ceil(ft.batch)
            );
        }
        let val_reward = greedy_reward(&net, &val, ft.alone)?;
        let mean = reward_sum / count.max(1) as f64;
        eprintln!(
            "\rfine-tune: epoch {epoch}/{}: greedy reward {mean:.5} (training), {val_reward:.5} \
             held out (start {before:.5})",
            ft.epochs
        );
        metrics.push_str(&format!("{epoch},{mean:.6},{val_reward:.6}\n"));
        write_atomic(&out.join("metrics.csv"), metrics.as_bytes())?;
        if val_reward > best.0 {
            best = (val_reward, epoch);
            write_atomic(&out.join("policy.bin"), &net.blob(config.cost_norm)?)?;
        }
    }
    Ok(FineTuneDone {
        slots: (train.len(), val.len()),
        held_out: (before, best.0),
        epoch: best.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Churn, Emd, Scenario};
    use diten_controller::CostNorm;

    /// A blob read into tch and written back is the same bytes, and a greedy
    /// rollout from the tch network's base logits decides as the controller's
    /// engine does (the engine's decoded logits, the rollout's row by row).
    #[test]
    fn a_greedy_rollout_is_the_engines_decoding() {
        let blob = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../onnx-models/general/policy.bin"),
        )
        .unwrap();
        let policy = GeneralPolicy::parse(&blob).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::from_model(&vs.root(), &policy.model());
        assert_eq!(net.blob(CostNorm::Paper).unwrap(), blob);
        let sc = Scenario {
            users: 14,
            servers: 9,
            churn: Some(Churn {
                fail_p: 0.2,
                ..Churn::default()
            }),
            emd: Emd::All(0.4),
            ..Scenario::default()
        };
        let mut env = Env::new(&sc, 3).unwrap();
        let v = Net::values(&net.decoder);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..6 {
            let status = env.status().clone();
            let (n, m) = (status.users().len(), status.servers().len());
            let slot = Slot::new(sc.params, status.clone()).unwrap();
            let base = Net::values(&tch::no_grad(|| net.base(&slot.pairs, n, m)));
            let r = rollout(&slot, &base, &v, true, &mut rng);
            let mut scratch = vec![0.0; policy.scratch_len(n, m)];
            let mut logits = vec![0.0; n * m];
            policy
                .logits(&sc.params, &status, &mut scratch, &mut logits)
                .unwrap();
            let engine: Vec<i64> = logits
                .chunks_exact(m)
                .map(|row| (0..m).fold(0, |b, s| if row[s] > row[b] { s } else { b }) as i64)
                .collect();
            assert_eq!(r.actions, engine);
            let assoc: Vec<usize> = engine.iter().map(|&s| s as usize).collect();
            env.step(&crate::sim::Decision::optimal(assoc)).unwrap();
        }
    }
}

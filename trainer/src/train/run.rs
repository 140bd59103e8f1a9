//! The training loop around a learner: run folder, metrics, checkpoints, resume,
//! progress bar and Ctrl-C. When stderr is not a terminal (a log file, CI) the bar
//! draws nothing, so a plain progress line is printed at every checkpoint instead.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tch::Device;

use super::learner::Learner;
use super::{Algo, TrainConfig, METRICS_COLUMNS};
use crate::policy::checkpoint::{self, Counters, Loaded, Meta};
use crate::sim::VecEnv;
use crate::util::fs::write_atomic;

/// The plain progress line printed at a checkpoint when stderr is not a terminal:
/// `iteration` of `total`, the minutes this process has trained (`elapsed_s`, over
/// `done` iterations) and the remaining time at that pace.
fn progress_line(iteration: usize, total: usize, elapsed_s: f64, done: usize, msg: &str) -> String {
    let per_iteration = elapsed_s / done.max(1) as f64;
    let left = per_iteration * total.saturating_sub(iteration) as f64;
    format!(
        "iteration {iteration}/{total}, {:.1} min, about {:.1} min left | {msg}",
        elapsed_s / 60.0,
        left / 60.0
    )
}

/// How a training run ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Iterations done in all.
    pub iterations: usize,
    /// Slots simulated in all.
    pub slots: u64,
    /// Training wall time in all, seconds.
    pub wall_s: f64,
    /// Stopped by Ctrl-C before the last iteration.
    pub interrupted: bool,
    /// Mean objective per slot over the last 10 % of iterations (at least one).
    pub final_objective: f64,
    /// Mean reward per slot over the same iterations.
    pub final_reward: f64,
}

/// Picks the device: `auto` is CUDA when libtorch sees a GPU, else the CPU.
pub fn device(name: &str) -> anyhow::Result<Device> {
    Ok(match name {
        "cpu" => Device::Cpu,
        "cuda" => {
            if !tch::Cuda::is_available() {
                bail!("--device cuda: libtorch sees no CUDA device");
            }
            Device::Cuda(0)
        }
        "auto" => Device::cuda_if_available(),
        other => bail!("--device: `{other}` is not auto, cpu or cuda"),
    })
}

fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

/// Temporary files of [`write_atomic`](crate::util::fs::write_atomic_with)
/// start with this; one left in a run folder is from a writer that was killed.
const TMP_PREFIX: &str = ".tmp-";

/// Removes the temporary files a killed run left in `out` (never a finished file:
/// those are only ever renamed into place whole).
fn remove_stale_tmp(out: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", out.display()))?;
        let stale = entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_file());
        if stale {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Trains `config` into the run folder `out` (created if missing). With `resume`,
/// continues from `out/checkpoint.ot` and `out/metrics.csv`; `out/config.toml` must
/// then describe the same run (only `iterations` may change). A run killed before
/// its first checkpoint has none: resuming it starts over. `stop` is polled
/// between iterations.
///
/// Every file is written whole to a temporary file and renamed (metrics first,
/// then the checkpoint, then the curve), so a run killed at any moment leaves a
/// checkpoint and a `metrics.csv` with at least the checkpoint's rows; temporary
/// files of a killed run are removed when it resumes.
pub fn train(
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    device: Device,
    stop: &std::sync::atomic::AtomicBool,
    show_progress: bool,
) -> anyhow::Result<Finished> {
    config.validate()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    remove_stale_tmp(out)?;
    tch::set_num_threads(1);
    tch::manual_seed(config.seed as i64);
    let mut learner: Box<dyn Learner> = match config.algo {
        Algo::Ppo | Algo::A2c => Box::new(super::ppo::Ppo::new(config, device)),
        Algo::Ddpg => Box::new(super::ddpg::Ddpg::new(config, device)),
    };
    let meta = Meta {
        users: config.scenario.users,
        servers: config.scenario.servers,
        algo: config.algo.name().to_owned(),
    };
    let ckpt_path = out.join(checkpoint::FILE);
    let metrics_path = out.join("metrics.csv");
    let mut rows: Vec<String> = Vec::new();
    let mut curve: Vec<super::curve::Point> = Vec::new();
    let mut counters = Counters::default();
    // Resuming a run without a checkpoint is running it afresh, seeds included.
    let resumed = resume && ckpt_path.exists();
    if resume && !resumed {
        eprintln!(
            "{} has no checkpoint yet (killed before the first one): starting over",
            out.display()
        );
    }
    if resumed {
        let loaded = Loaded::read(&ckpt_path)?;
        learner
            .load(&|n| loaded.get(n))
            .with_context(|| format!("{}", ckpt_path.display()))?;
        counters = loaded.counters()?;
        let text = std::fs::read_to_string(&metrics_path)
            .with_context(|| format!("reading {}", metrics_path.display()))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if header != METRICS_COLUMNS.join(",") {
            bail!(
                "{}: line 1: the header is not diten's metrics columns ({})",
                metrics_path.display(),
                METRICS_COLUMNS.join(",")
            );
        }
        for (n, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != METRICS_COLUMNS.len() {
                bail!(
                    "{}: line {}: {} fields, the header has {}",
                    metrics_path.display(),
                    n + 2,
                    fields.len(),
                    METRICS_COLUMNS.len()
                );
            }
            let it: usize = fields
                .first()
                .and_then(|f| f.parse().ok())
                .with_context(|| {
                    format!(
                        "{}: line {}: iteration: not a number",
                        metrics_path.display(),
                        n + 2
                    )
                })?;
            if it != n + 1 {
                bail!(
                    "{}: line {}: iteration {it}, expected {}",
                    metrics_path.display(),
                    n + 2,
                    n + 1
                );
            }
            if it <= counters.iteration {
                let num = |i: usize| {
                    fields
                        .get(i)
                        .and_then(|f| f.parse::<f64>().ok())
                        .unwrap_or(f64::NAN)
                };
                curve.push((num(2), num(5), num(6)));
                rows.push(line.to_owned());
            }
        }
        if rows.len() != counters.iteration {
            bail!(
                "{}: {} rows, but the checkpoint {} is at iteration {}",
                metrics_path.display(),
                rows.len(),
                ckpt_path.display(),
                counters.iteration
            );
        }
        tch::manual_seed(mix(config.seed, counters.iteration as u64) as i64);
        eprintln!(
            "resuming {} at iteration {} of {} ({} slots so far)",
            out.display(),
            counters.iteration,
            config.iterations,
            counters.slots
        );
    }
    write_atomic(&out.join("config.toml"), config.to_toml().as_bytes())?;
    let base_seed = if resumed {
        mix(config.seed, counters.iteration as u64)
    } else {
        config.seed
    };
    let mut venv = VecEnv::new(&config.scenario, config.envs, base_seed)?;
    let slots_per_iter = (config.envs * config.rollout) as u64;
    let slots_per_episode = config.scenario.slots as f64;

    let plain_progress = show_progress && !std::io::stderr().is_terminal();
    let bar = if show_progress {
        ProgressBar::with_draw_target(
            Some(config.iterations as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] it {pos}/{len}, ETA {eta} | {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(counters.iteration as u64);
    bar.enable_steady_tick(Duration::from_millis(500));

    let title = format!(
        "{} on U = {}, S = {}, φ = {}",
        config.algo.name().to_uppercase(),
        config.scenario.users,
        config.scenario.servers,
        crate::eval::emd_label(&config.scenario.emd)
    );
    let save = |learner: &dyn Learner,
                counters: Counters,
                rows: &[String],
                curve: &[super::curve::Point]|
     -> anyhow::Result<()> {
        let mut csv = METRICS_COLUMNS.join(",");
        csv.push('\n');
        for r in rows {
            csv.push_str(r);
            csv.push('\n');
        }
        write_atomic(&metrics_path, csv.as_bytes())?;
        checkpoint::save(&ckpt_path, learner.tensors(), counters, &meta)?;
        super::curve::draw(&out.join("curve.png"), &title, curve)
    };

    let started = Instant::now();
    let wall_before = counters.wall_s;
    let first_iteration = counters.iteration;
    let mut interrupted = false;
    while counters.iteration < config.iterations {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let t0 = Instant::now();
        let s = learner
            .iterate(&mut venv, counters.iteration)
            .with_context(|| format!("iteration {}", counters.iteration + 1))?;
        let dt = t0.elapsed().as_secs_f64();
        counters.iteration += 1;
        counters.slots += slots_per_iter;
        counters.wall_s = wall_before + started.elapsed().as_secs_f64();
        let episodes = counters.slots as f64 / slots_per_episode;
        let m = &s.slots;
        rows.push(
            [
                counters.iteration.to_string(),
                counters.slots.to_string(),
                fmt(episodes),
                format!("{:.3}", counters.wall_s),
                format!("{:.1}", slots_per_iter as f64 / dt),
                fmt(m.reward),
                fmt(m.objective),
                fmt(m.utility),
                fmt(m.cost_mig),
                fmt(m.cost_syn),
                fmt(m.cost_cmp),
                fmt(m.cost_total),
                fmt(m.migrations),
                fmt(m.violations as f64 / m.slots.max(1) as f64),
                fmt(s.policy_loss),
                fmt(s.value_loss),
                fmt(s.entropy),
                fmt(s.approx_kl),
                fmt(s.clip_frac),
                fmt(s.explained_var),
                fmt(s.agreement),
            ]
            .join(","),
        );
        curve.push((episodes, m.reward, m.objective));
        bar.set_position(counters.iteration as u64);
        let imitating = if s.agreement.is_nan() {
            String::new()
        } else {
            format!(", imitating: {:.1} % agree", 100.0 * s.agreement)
        };
        bar.set_message(format!(
            "reward {:.3}, objective {:.4}{imitating}",
            m.reward, m.objective
        ));
        let last = counters.iteration == config.iterations;
        if last || counters.iteration % config.checkpoint_every == 0 {
            save(learner.as_ref(), counters, &rows, &curve)?;
            if plain_progress {
                eprintln!(
                    "{}",
                    progress_line(
                        counters.iteration,
                        config.iterations,
                        started.elapsed().as_secs_f64(),
                        counters.iteration - first_iteration,
                        &format!(
                            "reward {:.3}, objective {:.4}{imitating}",
                            m.reward, m.objective
                        )
                    )
                );
            }
        }
    }
    if interrupted {
        save(learner.as_ref(), counters, &rows, &curve)?;
    }
    bar.finish_and_clear();
    let tail = (curve.len() / 10).max(1);
    let recent = &curve[curve.len().saturating_sub(tail)..];
    let mean = |f: fn(&super::curve::Point) -> f64| {
        recent.iter().map(f).sum::<f64>() / recent.len().max(1) as f64
    };
    Ok(Finished {
        iterations: counters.iteration,
        slots: counters.slots,
        wall_s: counters.wall_s,
        interrupted,
        final_objective: mean(|p| p.2),
        final_reward: mean(|p| p.1),
    })
}

#[cfg(test)]
mod tests {
    use super::progress_line;

    #[test]
    fn progress_line_extrapolates_the_pace_of_this_process() {
        // 20 iterations in 210 s: 10.5 s each, 76 left = 798 s = 13.3 min.
        assert_eq!(
            progress_line(20, 96, 210.0, 20, "objective 0.0770"),
            "iteration 20/96, 3.5 min, about 13.3 min left | objective 0.0770"
        );
        // Resumed at 40: the pace counts only this process's 10 iterations.
        assert_eq!(
            progress_line(50, 96, 60.0, 10, "x"),
            "iteration 50/96, 1.0 min, about 4.6 min left | x"
        );
    }
}

//! `diten train-general`: trains the size-agnostic `policy-v2` network by
//! imitating the oracle over mixed sizes (see `train::general`).

use std::path::PathBuf;

use clap::Args;

/// Arguments of `diten train-general`.
#[derive(Debug, Args)]
pub struct TrainGeneralArgs {
    /// Episodes the oracle labels (shapes drawn from U 10–30, S 9–21, φ 0–0.6,
    /// half with churn; default 64).
    #[arg(long, value_name = "N")]
    pub episodes: Option<usize>,
    /// Slots per episode (default 100).
    #[arg(long, value_name = "N")]
    pub slots: Option<usize>,
    /// Passes over the samples (default 30).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Hidden width H (default 16).
    #[arg(long, value_name = "H")]
    pub hidden: Option<usize>,
    /// Adam's learning rate (default 3e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the episodes and the initial weights (default 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads labelling episodes (default 2).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// The objective to train for: paper (the default) or linear (SPEC §2.1b; one
    /// model for every energy price of --prices).
    #[arg(long, value_parser = parse_objective, value_name = "paper|linear")]
    pub objective: Option<diten_controller::CostNorm>,
    /// Under --objective linear, the energy prices f0 the episodes draw from
    /// (default 1000,3000,10000).
    #[arg(long, value_delimiter = ',', value_name = "F0,...")]
    pub prices: Option<Vec<f64>>,
    /// DAgger: a `policy-v2` blob (an earlier run's policy.bin) that drives
    /// --driven more episodes at budget 0 while the oracle labels them.
    #[arg(long, value_name = "PATH", requires = "driven")]
    pub drive: Option<PathBuf>,
    /// Episodes driven by --drive (beyond --episodes).
    #[arg(long, value_name = "N", requires = "drive")]
    pub driven: Option<usize>,
    /// Reinforcement-learning fine-tuning on e of this `policy-v2` blob instead of
    /// imitation: several decodings sampled per slot, their mean reward the
    /// baseline (see `train::general_rl`). --episodes (default 24), --epochs
    /// (default 4) and --lr (default 3e-4) then apply to it.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["drive", "driven"])]
    pub fine_tune: Option<PathBuf>,
    /// With --fine-tune: decodings sampled per slot (default 8).
    #[arg(long, value_name = "K", requires = "fine_tune")]
    pub rollouts: Option<usize>,
    /// With --fine-tune: weight of the network's own association (no
    /// consolidation, `unconsolidated:`) in the reward beside the budget-0
    /// decision's (default 0: the budget-0 decision alone).
    #[arg(long, value_name = "W", requires = "fine_tune")]
    pub alone_weight: Option<f64>,
    /// Run folder, created if missing (default: a fresh `runs/train-general-<UTC timestamp>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_objective(text: &str) -> Result<diten_controller::CostNorm, String> {
    diten_controller::CostNorm::from_name(text)
        .ok_or_else(|| format!("`{text}` is not an objective (paper or linear)"))
}

/// Runs `diten train-general`.
#[cfg(feature = "torch")]
pub fn run(args: &TrainGeneralArgs) -> anyhow::Result<()> {
    use crate::train::general::{train, GeneralConfig};

    let mut config = GeneralConfig::default();
    macro_rules! set {
        ($($field:ident),*) => {$(if let Some(v) = args.$field { config.$field = v; })*};
    }
    set!(episodes, slots, epochs, hidden, lr, seed, jobs, driven);
    config.drive = args.drive.clone();
    if let Some(norm) = args.objective {
        config.cost_norm = norm;
    }
    if let Some(prices) = &args.prices {
        config.prices = prices.clone();
    }
    config.validate()?;
    if let Some(start) = &args.fine_tune {
        return fine_tune(args, &config, start);
    }
    let out = super::evaluate::output_dir("train-general", args.out.as_deref())?;
    eprintln!(
        "train-general: {} episodes of {} slots labelled by the oracle, H = {}, {} epochs; run folder {}",
        config.episodes,
        config.slots,
        config.hidden,
        config.epochs,
        out.display()
    );
    let stop = super::evaluate::interrupt_flag();
    let done = train(&config, &out, stop)?;
    eprintln!(
        "{} training and {} held-out slots; labelling {:.0} s, training {:.0} s; held-out \
         accuracy {:.1} % at epoch {}; policy {}",
        done.samples.0,
        done.samples.1,
        done.wall_s.0,
        done.wall_s.1,
        100.0 * done.accuracy,
        done.epoch,
        out.join("policy.bin").display()
    );
    Ok(())
}

/// Runs `diten train-general --fine-tune`.
#[cfg(feature = "torch")]
fn fine_tune(
    args: &TrainGeneralArgs,
    config: &crate::train::general::GeneralConfig,
    start: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::train::general_rl::{fine_tune, FineTuneConfig};

    let ft = FineTuneConfig {
        rollouts: args.rollouts.unwrap_or(8),
        episodes: args.episodes.unwrap_or(24),
        epochs: args.epochs.unwrap_or(4),
        batch: 16,
        lr: args.lr.unwrap_or(3e-4),
        alone: args.alone_weight.unwrap_or(0.0),
    };
    let out = super::evaluate::output_dir("train-general", args.out.as_deref())?;
    eprintln!(
        "train-general: fine-tuning {} on e, {} rollouts per slot, {} episodes of {} slots, {} \
         epochs; run folder {}",
        start.display(),
        ft.rollouts,
        ft.episodes,
        config.slots,
        ft.epochs,
        out.display()
    );
    let stop = super::evaluate::interrupt_flag();
    let done = fine_tune(config, &ft, start, &out, stop)?;
    eprintln!(
        "{} training and {} held-out slots; held-out greedy reward {:.5} -> {:.5} (epoch {}); \
         policy {}",
        done.slots.0,
        done.slots.1,
        done.held_out.0,
        done.held_out.1,
        done.epoch,
        out.join("policy.bin").display()
    );
    Ok(())
}

/// Runs `diten train-general` in a build without libtorch: explains how to get one.
#[cfg(not(feature = "torch"))]
pub fn run(_args: &TrainGeneralArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "train-general: this diten was built without the `torch` feature; build with default \
         features (`make torch` installs libtorch)"
    )
}

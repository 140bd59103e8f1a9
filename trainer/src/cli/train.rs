//! `diten train`: resolves the config from the flags (or a run folder to resume),
//! trains, and reports where everything went.

use anyhow::Context;

use super::TrainArgs;

/// Runs `diten train`.
#[cfg(feature = "torch")]
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    use crate::train::{run, TrainConfig};

    let (config, out, resume) = if let Some(dir) = &args.resume {
        let path = dir.join("config.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("--resume: reading {}", path.display()))?;
        let mut config = TrainConfig::from_toml(&text, &path.display().to_string())?;
        let others = [
            args.scenario.any(),
            args.envs.is_some(),
            args.rollout.is_some(),
            args.reward.is_some(),
            args.ratio.is_some(),
            args.stay_prior.is_some(),
            args.imitate.is_some(),
            args.entropy.is_some(),
            args.lr_actor.is_some(),
            args.lr_critic.is_some(),
        ];
        anyhow::ensure!(
            !others.iter().any(|&b| b),
            "--resume: the run's config.toml fixes everything but --iterations and --device"
        );
        if let Some(n) = args.iterations {
            config.iterations = n;
        }
        // Fail before saying anything when the checkpoint is unusable. A run killed
        // before its first checkpoint has none: it starts over in the same folder.
        if dir.join(crate::policy::checkpoint::FILE).exists() {
            crate::policy::checkpoint::Loaded::read(dir)?;
        }
        (config, dir.clone(), true)
    } else {
        let scenario = args.scenario.load()?;
        let mut config = TrainConfig::defaults(args.algo, scenario);
        macro_rules! set {
            ($($field:ident),*) => {$(if let Some(v) = args.$field { config.$field = v; })*};
        }
        set!(iterations, envs, rollout, reward, ratio, stay_prior, entropy, lr_actor, lr_critic);
        if let Some(n) = args.imitate {
            config.imitate.iterations = n;
        }
        config.validate()?;
        let out = super::evaluate::output_dir("train", args.out.as_deref())?;
        (config, out, false)
    };
    let device = run::device(&args.device)?;
    eprintln!(
        "train: {} on {} users, {} servers, φ = {}, {} iterations of {} envs x {} slots, on {:?}; \
         run folder {}",
        config.algo.name(),
        config.scenario.users,
        config.scenario.servers,
        crate::eval::emd_label(&config.scenario.emd),
        config.iterations,
        config.envs,
        config.rollout,
        device,
        out.display()
    );
    let stop = super::evaluate::interrupt_flag();
    let done = run::train(&config, &out, resume, device, stop, true)?;
    // The policy is exported only from a finished run; an interrupted one resumes.
    let policy = if done.interrupted {
        String::new()
    } else {
        let path = out.join(crate::onnx::FILE);
        crate::onnx::export(&out, &path, &[])?;
        format!(", policy {}", path.display())
    };
    eprintln!(
        "{} iterations, {} slots in {:.1} s; last 10 %: objective {:.4}, reward {:.4} per slot; \
         checkpoint {}{policy}",
        done.iterations,
        done.slots,
        done.wall_s,
        done.final_objective,
        done.final_reward,
        out.join(crate::policy::checkpoint::FILE).display()
    );
    if done.interrupted {
        eprintln!(
            "interrupted: resume with `diten train --resume {}`",
            out.display()
        );
        std::process::exit(super::evaluate::INTERRUPTED_EXIT_CODE);
    }
    Ok(())
}

/// Runs `diten train` in a build without libtorch: explains how to get one.
#[cfg(not(feature = "torch"))]
pub fn run(_args: &TrainArgs) -> anyhow::Result<()> {
    Err(anyhow::anyhow!(
        "this diten was built without the `torch` feature; build with default features \
         (`make demo` installs libtorch)"
    ))
    .context("train")
}

//! `diten demo`: a shipped policy at work. It loads a model folder (default
//! `onnx-models/general`, the size-agnostic policy, else the first model
//! `diten models` lists), runs the default scenario (SPEC §2) at the model's U, S
//! and φ (for a size-agnostic model: U = 20, S = 15, φ = 0.2) through the controller's
//! decision loop ([`ControllerPolicy`](crate::policy::ControllerPolicy)) and the
//! baselines on the same episodes, prints the comparison table with each decision
//! maker's gap to the oracle and a verdict, and writes the tables and plots.
//!
//! Outputs under `--out` (default `runs/demo-<UTC timestamp>`): `compare.png`
//! (the first episode over time: e and the energy per slot of every decision
//! maker, drawn by `demo_plot`), `scenario.toml`, `episodes.csv`, `summary.csv`,
//! `summary.json` and one plot per metric, as `diten compare` writes them.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use super::demo_plot;
use super::evaluate::{self, Seeds};
use super::models::{self, ModelInfo};
use crate::eval::card::POLICY_LABEL;
use crate::eval::compare::{comparison_table, verdicts};
use crate::eval::{self, plot, report, Sweep};
use crate::policy::{Builtin, PolicySpec};
use crate::scenario::{Emd, Scenario};
use crate::util::fs::write_atomic;

/// The model `diten demo` runs without `--model`, when present.
pub const DEFAULT_MODEL: &str = "general";

/// The shape and φ a size-agnostic model is shown at: SPEC §2's 20 users on 15
/// servers, at the φ the flat models were trained at.
const GENERAL_SHAPE: (usize, usize, f64) = (20, 15, 0.2);

/// Arguments of `diten demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// A shipped model folder (policy.bin, or policy.onnx converted in memory);
    /// default: onnx-models/general (the size-agnostic policy, shown at 20 users,
    /// 15 servers, φ = 0.2) when present, else the first model that `diten
    /// models` lists.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Output folder, created if missing (default: a fresh `runs/demo-<UTC timestamp>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Slots per episode T.
    #[arg(long, value_name = "T", default_value_t = 750)]
    pub slots: usize,
    /// Episode seeds: a count N (the seeds 1..=N), a comma list or a range `A..=B`.
    #[arg(long, value_name = "SEEDS", value_parser = evaluate::parse_seeds, default_value = "1")]
    pub seeds: Seeds,
    /// Episodes run at the same time (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,
}

/// The model of folder `dir`, a size-agnostic one at [`GENERAL_SHAPE`].
fn read(dir: &Path) -> anyhow::Result<ModelInfo> {
    if models::is_general(dir) {
        let (users, servers, emd) = GENERAL_SHAPE;
        models::read_general(dir, users, servers, emd)
    } else {
        models::read_model(dir)
    }
}

/// The model folder to run: `--model`, else `onnx-models/general`, else the first
/// readable model of `onnx-models/`.
fn pick_model(args: &DemoArgs) -> anyhow::Result<ModelInfo> {
    if let Some(dir) = &args.model {
        return read(dir).context("--model");
    }
    let root = Path::new(models::DEFAULT_DIR);
    let preferred = root.join(DEFAULT_MODEL);
    if preferred.join(crate::onnx::FILE).is_file() {
        return read(&preferred);
    }
    let dirs = models::model_dirs(root).with_context(|| {
        format!(
            "no --model given and no {} (run from the repository root, or give --model DIR)",
            preferred.display()
        )
    })?;
    for dir in dirs {
        if let Ok(model) = models::read_model(&dir) {
            return Ok(model);
        }
    }
    bail!(
        "no --model given and {} has no readable model",
        root.display()
    )
}

/// Runs `diten demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let model = pick_model(args)?;
    let out = evaluate::output_dir("demo", args.out.as_deref())?;
    let blob = model.path.join(POLICY_LABEL);
    let blob = if blob.is_file() {
        blob
    } else {
        // An ONNX-only folder: convert into the output folder, run that.
        let onnx = model.path.join(crate::onnx::FILE);
        let bytes = std::fs::read(&onnx).with_context(|| format!("reading {}", onnx.display()))?;
        let converted = crate::onnx::onnx_to_blob(&bytes)
            .with_context(|| format!("converting {}", onnx.display()))?;
        let path = out.join(POLICY_LABEL);
        write_atomic(&path, &converted)?;
        path
    };
    let base = Scenario {
        users: model.users,
        servers: model.servers,
        emd: model.emd.clone().unwrap_or(Emd::All(0.0)),
        slots: args.slots,
        seed: args.seeds.0[0],
        ..Scenario::default()
    };
    let mut policies = vec![PolicySpec::File(blob)];
    policies.extend(Builtin::BASELINES.map(PolicySpec::Builtin));
    let mut sweep = Sweep {
        servers: vec![base.servers],
        emds: vec![base.emd.clone()],
        seeds: args.seeds.0.clone(),
        base,
        policies,
    };
    sweep.validate().map_err(|e| match e.key.as_str() {
        "slots" => anyhow::anyhow!("--slots: {}", e.problem),
        _ => anyhow::anyhow!("model {}: {e}", model.path.display()),
    })?;
    eprintln!(
        "demo: {} ({} users, {} servers, φ = {}, {}) through the controller against {}",
        model.path.display(),
        model.users,
        model.servers,
        model.emd_label(),
        model.algo,
        Builtin::BASELINES.map(Builtin::name).join(", ")
    );
    write_atomic(
        &out.join("scenario.toml"),
        evaluate::scenario_toml("demo", &sweep).as_bytes(),
    )?;
    let result = evaluate::run_with_progress("demo", &sweep, args.jobs)?;
    // Tables and plots name the policy by its model (`u20-s15/policy.bin`).
    let model_label = PolicySpec::File(Path::new(&model.name).join(POLICY_LABEL));
    let mut labels = sweep.labels();
    labels[0] = model_label.label();
    let series = if result.complete() {
        demo_plot::record(&sweep, &labels)?
    } else {
        Vec::new()
    };
    sweep.policies[0] = model_label;
    let rows = eval::summarise(&sweep, &result);
    let summary = report::summary_json("demo", &sweep, &result, &rows);
    report::write_tables(&out, &sweep, &result, &summary, &rows)?;
    plot::write_plots(&out, &sweep.labels(), &sweep.emds, &rows)?;
    let plot_path = out.join("compare.png");
    if !series.is_empty() {
        let title = format!(
            "{}: one episode (seed {}), {} users, {} servers, φ = {}",
            model.name,
            sweep.seeds[0],
            model.users,
            model.servers,
            model.emd_label()
        );
        demo_plot::draw(&plot_path, &title, &series)?;
    }
    super::print_line(comparison_table(&rows).render_text().trim_end())?;
    for paragraph in verdicts(&sweep, &result, 0) {
        super::print_line("")?;
        super::print_line(&paragraph)?;
    }
    if !result.complete() {
        eprintln!(
            "interrupted: {} of {} episodes finished; partial results in {}",
            result.episodes.len(),
            result.planned,
            out.display()
        );
        std::process::exit(evaluate::INTERRUPTED_EXIT_CODE);
    }
    eprintln!(
        "demo: plot {}, tables and more plots in {} ({:.1} s)",
        plot_path.display(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

//! `diten ship`: a training run made shippable. The run's checkpoint is exported
//! (`policy.onnx`, SPEC §3.2) and converted (`policy.bin`, SPEC §3.3); the blob
//! runs through the controller's decision loop
//! ([`ControllerPolicy`](crate::policy::ControllerPolicy)) against every other
//! decision maker on the run's scenario; the evaluation summary goes into the
//! model's `diten.evaluation` metadata; and a model card, `MODEL.md`, tells what
//! the model is and how it compares, with its gap to the oracle and a verdict
//! computed from the numbers.
//!
//! The model folder (`--out`) gets `policy.onnx`, `policy.bin`, `MODEL.md`,
//! `compare.png` and `evaluation/` (the `diten compare` outputs of the run:
//! `scenario.toml`, `episodes.csv`, `summary.csv`, `summary.json` and plots). Every
//! file is written atomically, `MODEL.md` last; the run folder is only read. On
//! Ctrl-C nothing but `evaluation/` is written (exit code 130).
//!
//! The comparison table, the verdict and the card are [`crate::eval`]'s
//! ([`compare`](crate::eval::compare), [`card`](crate::eval::card)).
//!
//! Exporting and converting need the `onnx` feature: without it [`run`] is the
//! one-line error [`NO_ONNX`](crate::onnx::NO_ONNX).
// Without `onnx`, the run's own helpers are compiled (they are plain Rust) but
// unused; gating each of them would spread cfg attributes over the whole file.
#![cfg_attr(not(feature = "onnx"), allow(dead_code, unused_imports))]

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::Args;
#[cfg(feature = "onnx")]
use prost::Message;
#[cfg(feature = "onnx")]
use tract_onnx::pb;

use super::evaluate::{self, Seeds};
use crate::eval::card::{Card, Trained, COMPARED, POLICY_LABEL};
use crate::eval::compare::{comparison_table, verdicts, write_compare_plot};
use crate::eval::{self, plot, report, Sweep};
use crate::onnx::keys;
use crate::policy::PolicySpec;
use crate::scenario::Scenario;
use crate::util::fs::write_atomic;

/// Arguments of `diten ship`.
#[derive(Debug, Args)]
pub struct ShipArgs {
    /// The training run folder (config.toml, metrics.csv, checkpoint.ot), as
    /// `diten train --out` writes it; it is only read.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The model folder to write, created if missing: policy.onnx, policy.bin,
    /// MODEL.md, compare.png and evaluation/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Evaluation episode seeds: a count N (the seeds 1..=N), a comma list or an
    /// inclusive range `A..=B` (default 5: the seeds 1 to 5).
    #[arg(long, value_name = "SEEDS", value_parser = evaluate::parse_seeds)]
    pub seeds: Option<Seeds>,
    /// Numbers of edge servers to evaluate on, comma-separated (default: the run's;
    /// the policy decides for its training S only, so other values are refused).
    #[arg(long, value_name = "S,...", value_delimiter = ',')]
    pub servers: Vec<usize>,
    /// EMD φ values to evaluate on, comma-separated (default: the run's).
    #[arg(long, value_name = "PHI,...", value_delimiter = ',')]
    pub emd: Vec<f64>,
    /// Slots per evaluation episode T (default: the run's scenario's).
    #[arg(long, value_name = "T")]
    pub slots: Option<usize>,
    /// The model's name in the card (default: the name of the --out folder).
    #[arg(long)]
    pub name: Option<String>,
    /// Episodes run at the same time (default: the number of CPUs). Results do not
    /// depend on it.
    #[arg(long, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,
}

/// The default number of evaluation seeds.
const DEFAULT_SEEDS: u64 = 5;

/// What `ship` reads from a training run folder.
#[derive(Debug)]
struct Run {
    /// The run folder.
    dir: PathBuf,
    /// config.toml as a table.
    config: toml::Table,
    /// Its `[scenario]`.
    scenario: Scenario,
    /// Its `algo`.
    algo: String,
    /// Training progress from metrics.csv.
    trained: Trained,
}

impl Run {
    fn read(dir: &Path) -> anyhow::Result<Run> {
        anyhow::ensure!(
            dir.is_dir(),
            "--run {}: not a folder (give a training run folder)",
            dir.display()
        );
        let path = dir.join("config.toml");
        let file = path.display();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
        let config: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow!("{file}: {}", e.message()))?;
        let table = config
            .get("scenario")
            .and_then(toml::Value::as_table)
            .with_context(|| format!("{file}: scenario: missing or not a table"))?;
        let scenario = Scenario::from_toml(
            &toml::to_string(table).with_context(|| format!("{file}: scenario"))?,
            &format!("{file} [scenario]"),
        )?;
        let algo = config
            .get("algo")
            .and_then(toml::Value::as_str)
            .with_context(|| format!("{file}: algo: missing or not a string"))?
            .to_owned();
        let trained = read_metrics(&dir.join("metrics.csv"))?;
        Ok(Run {
            dir: dir.to_owned(),
            config,
            scenario,
            algo,
            trained,
        })
    }

    /// The training options: every top-level value of config.toml but `algo`
    /// (tables, such as DDPG's, only for the algorithm they configure).
    fn options(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, value) in &self.config {
            match value {
                toml::Value::Table(t) if key == &self.algo => {
                    for (k, v) in t {
                        out.push(format!("{key}.{k} = {v}"));
                    }
                }
                toml::Value::Table(_) => {}
                _ if key == "algo" => {}
                v => out.push(format!("{key} = {v}")),
            }
        }
        out
    }
}

/// The training progress in the last row of `path` (metrics.csv): iterations,
/// slots, episodes and wall time in all (the columns are cumulative, also across
/// `--resume`).
fn read_metrics(path: &Path) -> anyhow::Result<Trained> {
    let file = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {file}"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .with_context(|| format!("{file}: empty"))?
        .split(',')
        .collect();
    let last: Vec<&str> = lines
        .next_back()
        .with_context(|| format!("{file}: no iteration recorded"))?
        .split(',')
        .collect();
    let get = |name: &str| -> anyhow::Result<f64> {
        let i = header
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("{file}: no `{name}` column"))?;
        let cell = last.get(i).map_or("", |c| c.trim());
        cell.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .with_context(|| format!("{file}: {name}: `{cell}` in the last row is not a count"))
    };
    Ok(Trained {
        iterations: get("iteration")? as u64,
        slots: get("slots")? as u64,
        episodes: get("episodes")?,
        wall_s: get("wall_s")?,
    })
}

/// The exported model of the run, with the run's metadata (evaluation `none`).
#[cfg(feature = "torch")]
fn export_model(run: &Run, out: &Path) -> anyhow::Result<pb::ModelProto> {
    let tmp = out.join(format!(".tmp-ship-{}-export.onnx", std::process::id()));
    let _cleanup = RemoveOnDrop(tmp.clone());
    crate::onnx::export(&run.dir, &tmp, &[])?;
    let bytes = std::fs::read(&tmp).with_context(|| format!("reading {}", tmp.display()))?;
    pb::ModelProto::decode(&bytes[..]).with_context(|| format!("decoding {}", tmp.display()))
}

/// Without libtorch the checkpoint cannot be read: use the policy.onnx that
/// `diten train` exported at the end of the run.
#[cfg(all(feature = "onnx", not(feature = "torch")))]
fn export_model(run: &Run, _out: &Path) -> anyhow::Result<pb::ModelProto> {
    let path = run.dir.join(crate::onnx::FILE);
    anyhow::ensure!(
        path.is_file(),
        "{}: missing, and this diten was built without the `torch` feature, which \
         exporting the checkpoint needs",
        path.display()
    );
    eprintln!(
        "ship: built without torch: using the run's {} instead of exporting checkpoint.ot",
        path.display()
    );
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    pb::ModelProto::decode(&bytes[..]).with_context(|| format!("decoding {}", path.display()))
}

/// Removes a temporary file when dropped (best effort; errors are irrelevant then).
#[cfg(feature = "torch")]
struct RemoveOnDrop(PathBuf);

#[cfg(feature = "torch")]
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The value of metadata `key` of `model`.
#[cfg(feature = "onnx")]
pub(crate) fn metadata<'a>(model: &'a pb::ModelProto, key: &str) -> Option<&'a str> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// Runs `diten ship` in a build without the `onnx` feature: the error
/// [`NO_ONNX`](crate::onnx::NO_ONNX).
#[cfg(not(feature = "onnx"))]
pub fn run(_args: &ShipArgs) -> anyhow::Result<()> {
    bail!("ship: {}", crate::onnx::NO_ONNX)
}

/// Runs `diten ship`.
#[cfg(feature = "onnx")]
pub fn run(args: &ShipArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let run = Run::read(&args.run)?;
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("--out: creating {}", out.display()))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => std::fs::canonicalize(out)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "policy".to_owned()),
    };

    let mut model = export_model(&run, out)?;
    let blob =
        crate::onnx::convert::model_to_blob(&model).context("converting the exported policy")?;
    let users: usize = metadata(&model, keys::USERS)
        .and_then(|v| v.parse().ok())
        .context("the exported model has no diten.users")?;
    let servers: usize = metadata(&model, keys::SERVERS)
        .and_then(|v| v.parse().ok())
        .context("the exported model has no diten.servers")?;
    anyhow::ensure!(
        (users, servers) == (run.scenario.users, run.scenario.servers),
        "{}: the checkpoint decides for {users} users and {servers} servers, the run's \
         scenario has {} and {}",
        run.dir.display(),
        run.scenario.users,
        run.scenario.servers
    );

    // The evaluation runs the blob from memory, named by its file in the model
    // folder; policy.bin is written with the rest once the evaluation has finished.
    let sweep = build_sweep(args, &run)?;
    let shipped: Arc<[u8]> = blob.as_slice().into();
    let load = |spec: &PolicySpec, servers: usize| match spec {
        PolicySpec::Builtin(_) => spec.load(servers),
        _ => spec.load_blob(Arc::clone(&shipped)),
    };
    let result = evaluate::run_loading_with_progress("ship", &sweep, args.jobs, &load)?;
    let eval_dir = out.join("evaluation");
    std::fs::create_dir_all(&eval_dir)
        .with_context(|| format!("creating {}", eval_dir.display()))?;
    write_atomic(
        &eval_dir.join("scenario.toml"),
        evaluate::scenario_toml("ship", &sweep).as_bytes(),
    )?;
    let rows = eval::summarise(&sweep, &result);
    let summary = report::summary_json("ship", &sweep, &result, &rows);
    report::write_tables(&eval_dir, &sweep, &result, &summary, &rows)?;
    if !result.complete() {
        eprintln!(
            "interrupted: {} of {} episodes finished; partial evaluation in {}; the model \
             was not written",
            result.episodes.len(),
            result.planned,
            eval_dir.display()
        );
        std::process::exit(evaluate::INTERRUPTED_EXIT_CODE);
    }
    plot::write_plots(&eval_dir, &sweep.labels(), &sweep.emds, &rows)?;
    write_compare_plot(&out.join("compare.png"), &name, &sweep, &rows)?;

    let evaluation = serde_json::to_string(&summary).context("serialising the summary")?;
    match model
        .metadata_props
        .iter_mut()
        .find(|p| p.key == keys::EVALUATION)
    {
        Some(p) => p.value = evaluation,
        None => model.metadata_props.push(pb::StringStringEntryProto {
            key: keys::EVALUATION.to_owned(),
            value: evaluation,
        }),
    }
    let onnx = model.encode_to_vec();
    // The metadata is not part of the blob: the shipped pair must agree.
    anyhow::ensure!(
        crate::onnx::onnx_to_blob(&onnx)? == blob,
        "the final policy.onnx converts to another blob than the one evaluated"
    );
    write_atomic(&out.join(POLICY_LABEL), &blob)?;
    write_atomic(&out.join(crate::onnx::FILE), &onnx)?;

    let card = Card {
        name: &name,
        run_dir: &run.dir,
        scenario: &run.scenario,
        algo: &run.algo,
        seed: metadata(&model, keys::SEED).unwrap_or("unknown"),
        options: &run.options(),
        trained: &run.trained,
        sweep: &sweep,
        result: &result,
        rows: &rows,
        onnx: &onnx,
        blob: &blob,
        command: &command_line(),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(&out.join("MODEL.md"), card.render().as_bytes())?;

    super::print_line(comparison_table(&rows).render_text().trim_end())?;
    for paragraph in verdicts(&sweep, &result, 0) {
        super::print_line("")?;
        super::print_line(&paragraph)?;
    }
    eprintln!(
        "ship: {name} in {} (policy.onnx, policy.bin, MODEL.md, compare.png, evaluation/)",
        out.display()
    );
    Ok(())
}

/// The evaluation sweep: the run's scenario with the flags applied; the policy
/// ([`POLICY_LABEL`]) first, then the same blob without the improvement and
/// without the consolidation, then [`COMPARED`].
fn build_sweep(args: &ShipArgs, run: &Run) -> anyhow::Result<Sweep> {
    evaluate::check_unique("--servers", &args.servers)?;
    evaluate::check_unique("--emd", &args.emd)?;
    let mut base = run.scenario.clone();
    if let Some(slots) = args.slots {
        base.slots = slots;
    }
    let servers = if args.servers.is_empty() {
        vec![base.servers]
    } else {
        args.servers.clone()
    };
    if let Some(s) = servers.iter().find(|&&s| s != run.scenario.servers) {
        bail!(
            "--servers {s}: the policy decides for the {} servers it was trained on",
            run.scenario.servers
        );
    }
    let emds = evaluate::emd_list(&args.emd, &base.emd);
    let seeds = args
        .seeds
        .as_ref()
        .map_or_else(|| (1..=DEFAULT_SEEDS).collect(), |s| s.0.clone());
    base.emd = emds[0].clone();
    base.seed = seeds[0];
    let blob = PathBuf::from(POLICY_LABEL);
    let mut policies = vec![
        PolicySpec::File(blob.clone()),
        PolicySpec::Unimproved(blob.clone()),
        PolicySpec::Unconsolidated(blob),
    ];
    policies.extend(COMPARED.map(PolicySpec::Builtin));
    let sweep = Sweep {
        base,
        policies,
        servers,
        emds,
        seeds,
    };
    sweep.validate().map_err(|e| match e.key.as_str() {
        "slots" if args.slots.is_some() => anyhow!("--slots: {}", e.problem),
        "emd" if !args.emd.is_empty() => anyhow!("--emd: {}", e.problem),
        _ => anyhow!("{} [scenario]: {e}", run.dir.join("config.toml").display()),
    })?;
    Ok(sweep)
}

/// The command line as typed, the program shown as `diten`, arguments quoted for a
/// POSIX shell where needed.
fn command_line() -> String {
    let mut words = vec!["diten".to_owned()];
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy().into_owned();
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
        words.push(if plain {
            arg
        } else {
            format!("'{}'", arg.replace('\'', "'\\''"))
        });
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_csv_gives_the_last_row() {
        let dir = std::env::temp_dir().join(format!("diten-ship-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        std::fs::write(
            &path,
            "iteration,slots,episodes,wall_s,reward\n1,512,0.5,0.4,1\n2,1024,1.0,0.9,2\n",
        )
        .unwrap();
        let t = read_metrics(&path).unwrap();
        assert_eq!((t.iterations, t.slots), (2, 1024));
        assert_eq!((t.episodes, t.wall_s), (1.0, 0.9));
        std::fs::write(&path, "iteration,slots,episodes\n1,512,0.5\n").unwrap();
        let err = format!("{:#}", read_metrics(&path).unwrap_err());
        assert!(err.ends_with("metrics.csv: no `wall_s` column"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

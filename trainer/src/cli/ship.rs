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
//! The comparison table and the verdict are shared with `diten demo`
//! ([`comparison_table`], [`verdicts`]).
//!
//! Exporting and converting need the `onnx` feature: without it [`run`] is the
//! one-line error [`NO_ONNX`](crate::onnx::NO_ONNX), and only the pieces `demo`,
//! `models` and `results` share are used.
// Without `onnx`, the run's own helpers are compiled (they are plain Rust) but
// unused; gating each of them would spread cfg attributes over the whole file.
#![cfg_attr(not(feature = "onnx"), allow(dead_code, unused_imports))]

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
#[cfg(feature = "onnx")]
use prost::Message;
use sha2::{Digest, Sha256};
#[cfg(feature = "onnx")]
use tract_onnx::pb;

use super::evaluate::{self, Seeds};
use crate::eval::{self, emd_label, plot, report, Metric, SummaryRow, Sweep};
use crate::onnx::keys;
use crate::policy::{spec, Builtin, PolicySpec};
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

/// Every decision maker the policy is compared with, in table order after it.
pub(crate) const OTHERS: [Builtin; 5] = [
    Builtin::Nearest,
    Builtin::NearestRandom,
    Builtin::Sticky,
    Builtin::Oracle,
    Builtin::Random,
];

/// The policy's label in the evaluation files: its file name in the model folder.
pub(crate) const POLICY_LABEL: &str = "policy.bin";

/// The label of the same blob run without the controller's improvement, the
/// first ablation row of every card.
pub(crate) const UNIMPROVED_LABEL: &str = "unimproved:policy.bin";

/// The label of the same blob run without the controller's consolidation and
/// improvement (the policy alone), the second ablation row of every card.
pub(crate) const UNCONSOLIDATED_LABEL: &str = "unconsolidated:policy.bin";

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

/// The last line of metrics.csv.
#[derive(Debug)]
struct Trained {
    iterations: u64,
    slots: u64,
    episodes: f64,
    wall_s: f64,
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
struct RemoveOnDrop(PathBuf);

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

    // The evaluation runs the blob from a temporary file; policy.bin is written
    // with the rest once the evaluation has finished.
    let tmp_blob = out.join(format!(".tmp-ship-{}-policy.bin", std::process::id()));
    let cleanup = RemoveOnDrop(tmp_blob.clone());
    write_atomic(&tmp_blob, &blob)?;
    let mut sweep = build_sweep(args, &run, &tmp_blob)?;
    let result = evaluate::run_with_progress("ship", &sweep, args.jobs)?;
    // From here on the policy is named by its file in the model folder.
    sweep.policies[0] = PolicySpec::File(PathBuf::from(POLICY_LABEL));
    sweep.policies[1] = PolicySpec::Unimproved(PathBuf::from(POLICY_LABEL));
    sweep.policies[2] = PolicySpec::Unconsolidated(PathBuf::from(POLICY_LABEL));
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
        drop(cleanup);
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
    drop(cleanup);

    let card = Card {
        name: &name,
        run: &run,
        model: &model,
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
/// (the blob at `blob`) first, the same blob without the consolidation second,
/// then [`OTHERS`].
fn build_sweep(args: &ShipArgs, run: &Run, blob: &Path) -> anyhow::Result<Sweep> {
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
    let mut policies = vec![
        PolicySpec::File(blob.to_owned()),
        PolicySpec::Unimproved(blob.to_owned()),
        PolicySpec::Unconsolidated(blob.to_owned()),
    ];
    policies.extend(OTHERS.map(PolicySpec::Builtin));
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

/// A table of text cells: rendered aligned for a terminal or as Markdown.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows of cells, one per column.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Aligned columns, two spaces apart, the first to the left, the others to the
    /// right, with a rule under the header.
    pub fn render_text(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let pad = " ".repeat(widths[c] - cell.chars().count());
                match c {
                    0 => text.push_str(&format!("{cell}{pad}")),
                    _ => text.push_str(&format!("  {pad}{cell}")),
                }
            }
            text.trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.header);
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }

    /// A GitHub-flavoured Markdown table, numbers right-aligned.
    pub fn render_markdown(&self) -> String {
        let row = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = row(&self.header);
        let rule: Vec<String> = (0..self.header.len())
            .map(|c| if c == 0 { "---" } else { "---:" }.to_owned())
            .collect();
        out.push_str(&row(&rule));
        for r in &self.rows {
            out.push_str(&row(r));
        }
        out
    }
}

/// The oracle's row at the same (servers, emd) as `row`.
pub(crate) fn oracle_of<'a>(rows: &'a [SummaryRow], row: &SummaryRow) -> Option<&'a SummaryRow> {
    row.peer(rows, Builtin::Oracle.name())
}

/// `value / |reference|` in percent, or `None` when the reference is 0.
pub(crate) fn relative_percent(value: f64, reference: f64) -> Option<f64> {
    (reference != 0.0).then(|| 100.0 * value / reference.abs())
}

/// A signed number with `digits` decimals (`+0.00123`, `-0.00123`, `0.00000`).
fn signed(value: f64, digits: usize) -> String {
    let text = format!("{value:+.digits$}");
    if text[1..].chars().all(|c| c == '0' || c == '.') {
        text[1..].to_owned()
    } else {
        text
    }
}

/// The comparison: per (decision maker, servers, emd), mean ± standard deviation
/// over seeds, and each decision maker's objective gap to the oracle (absolute and
/// relative to the oracle's objective; negative = below the oracle), and its energy
/// per slot with the ratio to sticky's (SPEC §2.1b).
pub(crate) fn comparison_table(rows: &[SummaryRow]) -> Table {
    let pm = |s: eval::Stats, digits: usize| format!("{:.digits$} ± {:.digits$}", s.mean, s.std);
    let header = [
        "decision maker",
        "S",
        "φ",
        "seeds",
        "objective",
        "gap to oracle",
        "rel. gap",
        "utility",
        "energy",
        "vs sticky",
        "migr/slot",
        "viol. slots",
        "µs/decision",
    ];
    let rows = rows
        .iter()
        .map(|r| {
            let objective = r.get(Metric::Objective).mean;
            let (gap, rel) = match oracle_of(rows, r) {
                Some(o) => {
                    let oracle = o.get(Metric::Objective).mean;
                    let gap = objective - oracle;
                    let rel = relative_percent(gap, oracle)
                        .map_or_else(|| "–".to_owned(), |p| format!("{} %", signed(p, 2)));
                    (signed(gap, 5), rel)
                }
                None => ("–".to_owned(), "–".to_owned()),
            };
            vec![
                r.policy.clone(),
                r.servers.to_string(),
                emd_label(&r.emd),
                r.seeds.len().to_string(),
                pm(r.get(Metric::Objective), 5),
                gap,
                rel,
                pm(r.get(Metric::Utility), 4),
                pm(r.get(Metric::CostTotal), 1),
                eval::ratio_text(r.energy_vs_sticky(rows)),
                format!("{:.3}", r.get(Metric::Migrations).mean),
                format!("{:.1}", r.get(Metric::ViolatingSlots).mean),
                format!("{:.0}", r.get(Metric::DecideUs).mean),
            ]
        })
        .collect();
    Table {
        header: header.iter().map(|h| (*h).to_owned()).collect(),
        rows,
    }
}

/// The objective of every finished episode of `policy` at (servers, emd), by seed.
fn objectives(
    result: &eval::SweepResult,
    policy: usize,
    servers: usize,
    emd: usize,
) -> Vec<(u64, f64)> {
    result
        .episodes
        .iter()
        .filter(|e| e.job.policy == policy && e.job.servers == servers && e.job.emd == emd)
        .map(|e| (e.job.seed, e.metrics.objective))
        .collect()
}

/// One paragraph per (servers, emd) of the sweep: how the decision maker at index
/// `subject` compares with each other one (mean objective difference, relative to
/// the other's, and on how many of the shared seeds it is ahead) and with the
/// oracle, and its constraint violations. Computed from the episodes alone.
pub(crate) fn verdicts(sweep: &Sweep, result: &eval::SweepResult, subject: usize) -> Vec<String> {
    let mut paragraphs = Vec::new();
    let label = |p: usize| sweep.policies[p].label();
    let mean = |v: &[(u64, f64)]| v.iter().map(|x| x.1).sum::<f64>() / v.len().max(1) as f64;
    for &servers in &sweep.servers {
        for (e, emd) in sweep.emds.iter().enumerate() {
            let mine = objectives(result, subject, servers, e);
            if mine.is_empty() {
                continue;
            }
            let m = mean(&mine);
            let mut ahead = Vec::new();
            let mut behind = Vec::new();
            let mut ties = Vec::new();
            let mut oracle_sentence = String::new();
            let mut unimproved_sentence = String::new();
            let mut ablation_sentence = String::new();
            for p in (0..sweep.policies.len()).filter(|&p| p != subject) {
                let theirs = objectives(result, p, servers, e);
                if theirs.is_empty() {
                    continue;
                }
                let t = mean(&theirs);
                let diff = m - t;
                // The size of the difference relative to the other's objective.
                let rel = relative_percent(diff.abs(), t)
                    .map_or_else(String::new, |r| format!("{r:.2} %; "));
                let pairs: Vec<(f64, f64)> = mine
                    .iter()
                    .filter_map(|&(seed, a)| {
                        theirs.iter().find(|x| x.0 == seed).map(|&(_, b)| (a, b))
                    })
                    .collect();
                let wins = pairs.iter().filter(|(a, b)| a > b).count();
                let losses = pairs.iter().filter(|(a, b)| a < b).count();
                let name = label(p);
                if name.starts_with(spec::UNIMPROVED_PREFIX) {
                    unimproved_sentence = format!(
                        " Without the improvement ({name}) it has {t:.5}: the improvement \
                         adds {} (ahead on {wins} of {} seeds).",
                        signed(diff, 5),
                        pairs.len()
                    );
                } else if name.starts_with(spec::UNCONSOLIDATED_PREFIX) {
                    ablation_sentence = format!(
                        " Without the consolidation and the improvement ({name}) the policy \
                         has {t:.5}: the two add {} (ahead on {wins} of {} seeds).",
                        signed(diff, 5),
                        pairs.len()
                    );
                } else if name == Builtin::Oracle.name() {
                    let rel = relative_percent(diff, t)
                        .map_or_else(String::new, |r| format!(" ({} %)", signed(r, 2)));
                    let within = relative_percent(-diff, t).is_some_and(|r| r <= 2.0);
                    oracle_sentence = format!(
                        " Its gap to the oracle is {}{rel}: {}.",
                        signed(diff, 5),
                        if diff >= 0.0 {
                            "at or above the oracle's search"
                        } else if within {
                            "within 2 % of it"
                        } else {
                            "more than 2 % below it"
                        }
                    );
                } else if diff > 0.0 {
                    ahead.push(format!(
                        "{name} by {:.5} ({rel}ahead on {wins} of {} seeds)",
                        diff,
                        pairs.len()
                    ));
                } else if diff < 0.0 {
                    behind.push(format!(
                        "{name} by {:.5} ({rel}behind on {losses} of {} seeds)",
                        -diff,
                        pairs.len()
                    ));
                } else {
                    ties.push(name);
                }
            }
            let violations: Vec<String> = (0..sweep.policies.len())
                .filter_map(|p| {
                    let v: Vec<f64> = result
                        .episodes
                        .iter()
                        .filter(|ep| {
                            ep.job.policy == p && ep.job.servers == servers && ep.job.emd == e
                        })
                        .map(|ep| ep.metrics.violating_slots as f64)
                        .collect();
                    (!v.is_empty()).then(|| {
                        format!("{} {:.1}", label(p), v.iter().sum::<f64>() / v.len() as f64)
                    })
                })
                .collect();
            let mut text = format!(
                "At S = {servers}, φ = {} ({} seed{} of {} slots) {} has a mean objective of {m:.5}.",
                emd_label(emd),
                mine.len(),
                if mine.len() == 1 { "" } else { "s" },
                sweep.base.slots,
                label(subject)
            );
            match (ahead.is_empty(), behind.is_empty()) {
                (false, false) => {
                    let _ = write!(
                        text,
                        " It beats {}; it trails {}.",
                        join_and(&ahead),
                        join_and(&behind)
                    );
                }
                (false, true) => {
                    let _ = write!(text, " It beats every baseline: {}.", join_and(&ahead));
                }
                (true, false) => {
                    let _ = write!(
                        text,
                        " It beats no baseline: it trails {}.",
                        join_and(&behind)
                    );
                }
                (true, true) => {}
            }
            if !ties.is_empty() {
                let _ = write!(text, " It ties with {}.", join_and(&ties));
            }
            text.push_str(&unimproved_sentence);
            text.push_str(&ablation_sentence);
            text.push_str(&oracle_sentence);
            let _ = write!(
                text,
                " Violating slots per episode: {}.",
                violations.join(", ")
            );
            text.push_str(&energy_sentence(sweep, result, subject, servers, e));
            paragraphs.push(text);
        }
    }
    paragraphs
}

/// What each decision maker spends in energy at (servers, emd): Σ_s C_s per slot,
/// mean over the finished episodes, and the subject's ratio to sticky's.
fn energy_sentence(
    sweep: &Sweep,
    result: &eval::SweepResult,
    subject: usize,
    servers: usize,
    emd: usize,
) -> String {
    let energy = |p: usize| {
        let v: Vec<f64> = result
            .episodes
            .iter()
            .filter(|ep| ep.job.policy == p && ep.job.servers == servers && ep.job.emd == emd)
            .map(|ep| ep.metrics.cost_total)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let Some(mine) = energy(subject) else {
        return String::new();
    };
    let label = |p: usize| sweep.policies[p].label();
    let others: Vec<String> = (0..sweep.policies.len())
        .filter(|&p| p != subject)
        .filter_map(|p| energy(p).map(|x| format!("{} {x:.0}", label(p))))
        .collect();
    let sticky = (0..sweep.policies.len())
        .find(|&p| label(p) == Builtin::Sticky.name())
        .and_then(energy)
        .filter(|&x| x > 0.0)
        .map_or_else(String::new, |x| format!(" ({:.2}× sticky's)", mine / x));
    let mut text = format!(" Energy per slot (Σ C_s): {mine:.0}{sticky}");
    if !others.is_empty() {
        let _ = write!(text, "; {}", others.join(", "));
    }
    text.push('.');
    text
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `compare.png`: the mean objective ± one standard deviation of every decision
/// maker against the number of servers, at the first φ of the sweep.
pub(crate) fn write_compare_plot(
    path: &Path,
    name: &str,
    sweep: &Sweep,
    rows: &[SummaryRow],
) -> anyhow::Result<()> {
    let emd = emd_label(&sweep.emds[0]);
    let lines: Vec<plot::Line> = sweep
        .policies
        .iter()
        .map(PolicySpec::label)
        .filter_map(|policy| {
            let points: Vec<(f64, f64, f64)> = rows
                .iter()
                .filter(|r| r.policy == policy && emd_label(&r.emd) == emd)
                .map(|r| {
                    let s = r.get(Metric::Objective);
                    (r.servers as f64, s.mean, s.std)
                })
                .collect();
            (!points.is_empty()).then_some(plot::Line {
                label: policy,
                points,
            })
        })
        .collect();
    let title = format!(
        "{name}: objective per slot, {} users, φ = {emd}",
        sweep.base.users
    );
    plot::draw(path, &title, Metric::Objective.title(), &lines)
        .with_context(|| format!("plotting {}", path.display()))
}

/// Size and SHA-256 of a file's bytes, for the card.
fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} bytes, SHA-256 `{hex}`", bytes.len())
}

/// Seconds as `382 s (6.4 min)` or `5.2 h`.
fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{seconds:.0} s ({:.1} min)", seconds / 60.0)
    } else {
        format!("{seconds:.0} s ({:.1} h)", seconds / 3600.0)
    }
}

/// Seeds as a short text: `1..=5` for a run of consecutive seeds, else a list.
fn seeds_text(seeds: &[u64]) -> String {
    let consecutive = seeds.windows(2).all(|w| w[1] == w[0] + 1);
    match seeds {
        [first, .., last] if consecutive => format!("{first}..={last}"),
        _ => seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Everything the model card shows.
#[cfg(feature = "onnx")]
struct Card<'a> {
    name: &'a str,
    run: &'a Run,
    model: &'a pb::ModelProto,
    sweep: &'a Sweep,
    result: &'a eval::SweepResult,
    rows: &'a [SummaryRow],
    onnx: &'a [u8],
    blob: &'a [u8],
    command: &'a str,
    seconds: f64,
}

#[cfg(feature = "onnx")]
impl Card<'_> {
    fn render(&self) -> String {
        let sc = &self.run.scenario;
        let emd = emd_label(&sc.emd);
        let seed = metadata(self.model, keys::SEED).unwrap_or("unknown");
        let t = &self.run.trained;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# {} — {} policy for {} users and {} edge servers, φ = {emd}\n",
            self.name,
            self.run.algo.to_uppercase(),
            sc.users,
            sc.servers
        );
        let _ = writeln!(
            md,
            "Written by `diten ship` (diten {}) from the training run `{}`. The policy \
             decides, every slot, the edge server of each user's digital twin; the \
             controller repairs the association where it would break C2/C3 and solves \
             the data reuse γ exactly.\n",
            env!("CARGO_PKG_VERSION"),
            self.run.dir.display()
        );
        let facts = [
            ("users U", sc.users.to_string()),
            ("edge servers S", sc.servers.to_string()),
            ("EMD φ", emd.clone()),
            ("slots per episode T", sc.slots.to_string()),
            ("training scenario seed", sc.seed.to_string()),
            ("algorithm", self.run.algo.clone()),
            ("training seed", seed.to_owned()),
            (
                "options",
                self.run
                    .options()
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "training",
                format!(
                    "{} iterations, {} slots ({:.1} episodes) in {}",
                    t.iterations,
                    t.slots,
                    t.episodes,
                    duration(t.wall_s)
                ),
            ),
            ("policy.onnx", fingerprint(self.onnx)),
            ("policy.bin", fingerprint(self.blob)),
        ];
        md.push_str("| | |\n|---|---|\n");
        for (k, v) in facts {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        let _ = writeln!(
            md,
            "\n`policy.onnx` follows SPEC §3.2 (metadata: format, observation layout, U, S, \
             algorithm, training scenario and seed, and this evaluation as \
             `diten.evaluation`); `policy.bin` is its firmware blob (SPEC §3.3), the file \
             the controller runs.\n"
        );

        let _ = writeln!(md, "## Evaluation\n");
        let _ = writeln!(
            md,
            "Every decision maker ran the same episodes: the training scenario, seeds {} \
             ({} per point), {} slots each. Mean ± sample standard deviation over the \
             seeds. `policy.bin` is the shipped blob run through the controller's decision \
             loop (observation, network, best server per user, repair, γ); the others are \
             the built-in decision makers: `nearest` (Baseline 2), `nearest-random` \
             (Baseline 3), `sticky`, `oracle` (a per-slot search with full knowledge, the \
             upper reference) and `random`. The gap to the oracle is the objective \
             difference (negative = below the oracle) and its size relative to the \
             oracle's objective. µs/decision is the wall time of one decision on the \
             machine that shipped the model; for `policy.bin` it includes the γ solve, \
             which the simulator does outside the timing for the others.\n",
            seeds_text(&self.sweep.seeds),
            self.sweep.seeds.len(),
            self.sweep.base.slots,
        );
        md.push_str(&comparison_table(self.rows).render_markdown());
        md.push_str("\n![objective of every decision maker](compare.png)\n\n");
        let _ = writeln!(md, "## Verdict\n");
        for paragraph in verdicts(self.sweep, self.result, 0) {
            let _ = writeln!(md, "{paragraph}\n");
        }
        let _ = writeln!(md, "## Reproduce\n");
        let _ = writeln!(
            md,
            "This card, the files beside it and `evaluation/` (episodes.csv, summary.csv, \
             summary.json, scenario.toml and a plot per metric) came from (in {}):\n",
            duration(self.seconds)
        );
        let _ = writeln!(md, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(
            md,
            "The same comparison without shipping, run in this folder (`--out` a folder of \
             your choice): `diten compare --scenario evaluation/scenario.toml --policy \
             {POLICY_LABEL},{UNIMPROVED_LABEL},{UNCONSOLIDATED_LABEL},{} --seeds {} --out DIR`.",
            OTHERS.map(Builtin::name).join(","),
            seeds_text(&self.sweep.seeds)
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_numbers_have_no_negative_zero() {
        assert_eq!(signed(0.001234, 5), "+0.00123");
        assert_eq!(signed(-0.001234, 5), "-0.00123");
        assert_eq!(signed(-0.000001, 5), "0.00000");
        assert_eq!(signed(0.0, 2), "0.00");
    }

    #[test]
    fn lists_and_seeds_read_naturally() {
        let s = |v: &[&str]| join_and(&v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a and b");
        assert_eq!(s(&["a", "b", "c"]), "a, b and c");
        assert_eq!(seeds_text(&[1, 2, 3]), "1..=3");
        assert_eq!(seeds_text(&[3, 1]), "3,1");
        assert_eq!(seeds_text(&[7]), "7");
    }

    #[test]
    fn tables_render_aligned_and_as_markdown() {
        let t = Table {
            header: vec!["name".into(), "x".into()],
            rows: vec![
                vec!["a".into(), "1.5".into()],
                vec!["bbb".into(), "-2".into()],
            ],
        };
        assert_eq!(
            t.render_text(),
            "name    x\n---------\na     1.5\nbbb    -2\n"
        );
        assert_eq!(
            t.render_markdown(),
            "| name | x |\n| --- | ---: |\n| a | 1.5 |\n| bbb | -2 |\n"
        );
    }

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

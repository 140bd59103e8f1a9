//! `diten models`: the shipped policies of a folder (default `onnx-models/`), one
//! per subfolder holding a `policy.onnx`, listed from their ONNX metadata
//! (`diten.*`, see [`crate::onnx`]) and, when the folder has one, the size of the
//! firmware blob `policy.bin`.
//!
//! The objective and the gap to the oracle come from the model's
//! `diten.evaluation` metadata (the evaluation summary `diten ship` stores): the
//! row of the policy (`policy.bin`, or the first decision maker that is not a
//! built-in) at the model's S and φ, and the oracle's row there.
//!
//! A model that cannot be read is one line on stderr naming the file; the others
//! are still listed, and the exit code is non-zero.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use diten_controller::policy::Policy;
use serde::Serialize;
use serde_json::Value;

use crate::eval::card::POLICY_LABEL;
use crate::eval::compare::{relative_percent, Table};
use crate::onnx::{keys, Metadata, FORMAT};
use crate::policy::Builtin;
use crate::scenario::{Emd, Scenario};

/// The folder `diten models` and `diten demo` look in by default.
pub const DEFAULT_DIR: &str = "onnx-models";

/// Arguments of `diten models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// The folder of shipped models: each subfolder with a policy.onnx is one.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Print the list as JSON (an array, one object per model) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One shipped model, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// The folder name (`u20-s15`).
    pub name: String,
    /// The model folder.
    pub path: PathBuf,
    /// Users U.
    pub users: usize,
    /// Servers S.
    pub servers: usize,
    /// φ of the training scenario (a number or a per-user list), when known.
    pub emd: Option<Emd>,
    /// Training algorithm (`ppo`, `a2c`, `ddpg`, or `unknown`).
    pub algo: String,
    /// Training seed, as the metadata has it.
    pub seed: String,
    /// Size of policy.onnx, bytes.
    pub onnx_bytes: u64,
    /// Size of policy.bin, bytes (none when the folder has no blob).
    pub blob_bytes: Option<u64>,
    /// The evaluation stored in the model, if any.
    pub evaluation: Option<Evaluation>,
}

/// The policy's line of a stored evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// Seeds the means are over.
    pub seeds: usize,
    /// Slots per episode.
    pub slots: Option<u64>,
    /// Servers of the evaluated point.
    pub servers: usize,
    /// Mean objective per slot.
    pub objective: f64,
    /// Its standard deviation over seeds.
    pub objective_std: f64,
    /// The oracle's mean objective at the same point, if it was evaluated.
    pub oracle_objective: Option<f64>,
    /// `objective − oracle_objective` (negative: below the oracle).
    pub gap_to_oracle: Option<f64>,
    /// The gap relative to the oracle's objective, percent.
    pub gap_to_oracle_percent: Option<f64>,
}

impl ModelInfo {
    /// The scenario's φ as a label (`0.2`, `per-user`, `?`).
    pub fn emd_label(&self) -> String {
        self.emd
            .as_ref()
            .map_or_else(|| "?".to_owned(), crate::eval::emd_label)
    }
}

/// Reads the model in folder `dir`: `policy.onnx` (ONNX, `diten.format` =
/// `policy-v1`) and, when present, `policy.bin`, which must parse and have the
/// same U and S. Errors name the file and the field.
pub fn read_model(dir: &Path) -> anyhow::Result<ModelInfo> {
    let onnx = dir.join(crate::onnx::FILE);
    let file = onnx.display().to_string();
    let bytes = std::fs::read(&onnx).with_context(|| format!("reading {file}"))?;
    // Only the metadata: this runs in builds without the `onnx` feature (`diten demo`).
    let model = Metadata::read(&bytes).map_err(|e| anyhow!("{file}: not an ONNX model ({e})"))?;
    let meta = |key: &str| {
        model
            .get(key)
            .with_context(|| format!("{file}: metadata {key}: missing"))
    };
    let format = meta(keys::FORMAT)?;
    if format != FORMAT {
        bail!(
            "{file}: metadata {}: `{format}`, expected `{FORMAT}`",
            keys::FORMAT
        );
    }
    let count = |key: &str| -> anyhow::Result<usize> {
        let text = meta(key)?;
        text.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("{file}: metadata {key}: `{text}` is not a count"))
    };
    let (users, servers) = (count(keys::USERS)?, count(keys::SERVERS)?);
    let emd = match model.get(keys::SCENARIO) {
        None | Some("unknown") => None,
        Some(text) => {
            Some(Scenario::from_toml(text, &format!("{file}: metadata {}", keys::SCENARIO))?.emd)
        }
    };
    let evaluation = match model.get(keys::EVALUATION) {
        None | Some("none") => None,
        Some(text) => {
            let summary: Value = serde_json::from_str(text)
                .map_err(|e| anyhow!("{file}: metadata {}: not JSON ({e})", keys::EVALUATION))?;
            policy_line(&summary, servers, emd.as_ref())
                .with_context(|| format!("{file}: metadata {}", keys::EVALUATION))?
        }
    };
    let blob_path = dir.join(POLICY_LABEL);
    let blob_bytes = if blob_path.is_file() {
        let blob = std::fs::read(&blob_path)
            .with_context(|| format!("reading {}", blob_path.display()))?;
        let policy = Policy::parse(&blob).map_err(|e| anyhow!("{}: {e}", blob_path.display()))?;
        if (policy.users(), policy.servers()) != (users, servers) {
            bail!(
                "{}: decides for {} users and {} servers, {file} for {users} and {servers}",
                blob_path.display(),
                policy.users(),
                policy.servers()
            );
        }
        Some(blob.len() as u64)
    } else {
        None
    };
    Ok(ModelInfo {
        name: folder_name(dir),
        path: dir.to_owned(),
        users,
        servers,
        emd,
        algo: model.get(keys::ALGO).unwrap_or("unknown").to_owned(),
        seed: model.get(keys::SEED).unwrap_or("unknown").to_owned(),
        onnx_bytes: bytes.len() as u64,
        blob_bytes,
        evaluation,
    })
}

/// A model's name: its folder's (`u20-s15`), else the path as given.
fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The size-agnostic model in folder `dir` (`policy.onnx` with `diten.format` =
/// `policy-v2`, and `policy.bin`), described for a run at `users` × `servers`
/// and φ = `emd`: it serves every such shape, so the run chooses one. The blob
/// must parse as `policy-v2`; errors name the file.
pub fn read_general(
    dir: &Path,
    users: usize,
    servers: usize,
    emd: f64,
) -> anyhow::Result<ModelInfo> {
    let onnx = dir.join(crate::onnx::FILE);
    let bytes = std::fs::read(&onnx).with_context(|| format!("reading {}", onnx.display()))?;
    let blob_path = dir.join(POLICY_LABEL);
    let blob =
        std::fs::read(&blob_path).with_context(|| format!("reading {}", blob_path.display()))?;
    diten_controller::policy::GeneralPolicy::parse(&blob)
        .map_err(|e| anyhow!("{}: {e}", blob_path.display()))?;
    Ok(ModelInfo {
        name: folder_name(dir),
        path: dir.to_owned(),
        users,
        servers,
        emd: Some(Emd::All(emd)),
        algo: "size-agnostic".to_owned(),
        seed: "unknown".to_owned(),
        onnx_bytes: bytes.len() as u64,
        blob_bytes: Some(blob.len() as u64),
        evaluation: None,
    })
}

/// The policy's line of an evaluation summary (as `diten ship`, `compare` and
/// `evaluate` write it) at `servers` and, when given and evaluated, `emd`; `None`
/// when the summary has no row for the policy there.
fn policy_line(
    summary: &Value,
    servers: usize,
    emd: Option<&Emd>,
) -> anyhow::Result<Option<Evaluation>> {
    let rows = summary["rows"].as_array().context("rows: missing")?;
    let builtin = |p: &str| Builtin::parse(p).is_some();
    let policy_of = |r: &Value| r["policy"].as_str().unwrap_or("").to_owned();
    let label = rows
        .iter()
        .map(policy_of)
        .find(|p| p == POLICY_LABEL)
        .or_else(|| rows.iter().map(policy_of).find(|p| !builtin(p)));
    let Some(label) = label else {
        return Ok(None);
    };
    let at_servers = |r: &&Value| r["servers"].as_u64() == Some(servers as u64);
    let emd_value = emd.and_then(|e| serde_json::to_value(e).ok());
    let mine: Vec<&Value> = rows
        .iter()
        .filter(|r| policy_of(r) == label)
        .filter(at_servers)
        .collect();
    let Some(row) = mine
        .iter()
        .find(|r| emd_value.as_ref().is_some_and(|e| &r["emd"] == e))
        .or(mine.first())
    else {
        return Ok(None);
    };
    let number = |r: &Value, path: &str| -> anyhow::Result<f64> {
        path.split('.')
            .fold(r, |v, k| &v[k])
            .as_f64()
            .with_context(|| format!("rows: {label}: {path}: missing or not a number"))
    };
    let objective = number(row, "objective.mean")?;
    let oracle = rows
        .iter()
        .filter(|r| policy_of(r) == Builtin::Oracle.name())
        .filter(at_servers)
        .find(|r| r["emd"] == row["emd"])
        .map(|r| number(r, "objective.mean"))
        .transpose()?;
    let gap = oracle.map(|o| objective - o);
    Ok(Some(Evaluation {
        seeds: row["seeds"].as_array().map_or(0, Vec::len),
        slots: summary["slots"].as_u64(),
        servers,
        objective,
        objective_std: number(row, "objective.std")?,
        oracle_objective: oracle,
        gap_to_oracle: gap,
        gap_to_oracle_percent: gap.zip(oracle).and_then(|(g, o)| relative_percent(g, o)),
    }))
}

/// Every model folder of `dir` (subfolders with a policy.onnx), sorted by name with
/// digit runs compared as numbers (`u20-s9` before `u20-s11`). The size-agnostic
/// policies (`diten.format` = `policy-v2`, SPEC §3.2a) are left out: they serve
/// every U and S, have their own cards and no per-S evaluation to list or merge.
pub fn model_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("--dir {}: reading", dir.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("--dir {}: reading", dir.display()))?;
        let path = entry.path();
        if path.is_dir() && path.join(crate::onnx::FILE).is_file() && !is_general(&path) {
            dirs.push(path);
        }
    }
    dirs.sort_by_cached_key(|p| natural_key(&p.to_string_lossy()));
    Ok(dirs)
}

/// Whether the policy.onnx of `dir` is a size-agnostic `policy-v2` model; a file
/// that cannot be read is not (its error is `read_model`'s to report).
pub fn is_general(dir: &Path) -> bool {
    std::fs::read(dir.join(crate::onnx::FILE))
        .ok()
        .and_then(|bytes| Metadata::read(&bytes).ok())
        .is_some_and(|m| m.get(keys::FORMAT) == Some(crate::onnx::FORMAT_V2))
}

/// `name` split into text and numbers, so numbers sort by value.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10) {
            let mut n = u64::from(d);
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(u64::from(d));
                chars.next();
            }
            key.push((std::mem::take(&mut text), n));
        } else {
            text.push(c);
        }
    }
    key.push((text, 0));
    key
}

/// The table `diten models` prints.
fn table(models: &[ModelInfo]) -> Table {
    let header = [
        "name",
        "U",
        "S",
        "φ",
        "algo",
        "seed",
        "blob",
        "objective",
        "gap to oracle",
        "rel. gap",
        "seeds × slots",
    ];
    let rows = models
        .iter()
        .map(|m| {
            let e = m.evaluation.as_ref();
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "–".to_owned());
            vec![
                m.name.clone(),
                m.users.to_string(),
                m.servers.to_string(),
                m.emd_label(),
                m.algo.clone(),
                m.seed.clone(),
                or_dash(
                    m.blob_bytes
                        .map(|b| format!("{:.1} KiB", b as f64 / 1024.0)),
                ),
                or_dash(e.map(|e| format!("{:.5}", e.objective))),
                or_dash(e.and_then(|e| e.gap_to_oracle).map(|g| format!("{g:+.5}"))),
                or_dash(
                    e.and_then(|e| e.gap_to_oracle_percent)
                        .map(|p| format!("{p:+.2} %")),
                ),
                or_dash(e.map(|e| match e.slots {
                    Some(t) => format!("{} × {t}", e.seeds),
                    None => e.seeds.to_string(),
                })),
            ]
        })
        .collect();
    Table {
        header: header.iter().map(|h| (*h).to_owned()).collect(),
        rows,
    }
}

/// Runs `diten models`.
pub fn run(args: &ModelsArgs) -> anyhow::Result<()> {
    let dirs = model_dirs(&args.dir)?;
    let mut models = Vec::new();
    let mut bad = 0;
    for dir in &dirs {
        match read_model(dir) {
            Ok(m) => models.push(m),
            Err(e) => {
                bad += 1;
                eprintln!("error: {}", super::one_line(&format!("{e:#}")));
            }
        }
    }
    if args.json {
        super::print_line(&serde_json::to_string_pretty(&models).context("serialising")?)?;
    } else if models.is_empty() {
        eprintln!("models: no readable model in {}", args.dir.display());
    } else {
        super::print_line(table(&models).render_text().trim_end())?;
    }
    if bad > 0 {
        bail!(
            "models: {bad} of {} models in {} could not be read",
            dirs.len(),
            args.dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_names_sort_by_value() {
        let mut names = ["u20-s11", "u20-s9", "u20-s21", "u3-s2", "alpha"];
        names.sort_by_cached_key(|n| natural_key(n));
        assert_eq!(names, ["alpha", "u3-s2", "u20-s9", "u20-s11", "u20-s21"]);
    }

    fn summary(policy: &str) -> Value {
        serde_json::json!({
            "slots": 20,
            "rows": [
                {"policy": policy, "servers": 3, "emd": 0.0, "seeds": [1, 2],
                 "objective": {"mean": 0.5, "std": 0.1}},
                {"policy": policy, "servers": 3, "emd": 0.2, "seeds": [1, 2],
                 "objective": {"mean": 0.3, "std": 0.1}},
                {"policy": "oracle", "servers": 3, "emd": 0.0, "seeds": [1, 2],
                 "objective": {"mean": 0.6, "std": 0.0}},
                {"policy": "oracle", "servers": 3, "emd": 0.2, "seeds": [1, 2],
                 "objective": {"mean": 0.4, "std": 0.0}},
            ]
        })
    }

    #[test]
    fn the_policy_line_is_at_the_models_point() {
        let e = policy_line(&summary(POLICY_LABEL), 3, Some(&Emd::All(0.2)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.objective, e.oracle_objective, e.seeds),
            (0.3, Some(0.4), 2)
        );
        assert!((e.gap_to_oracle.unwrap() + 0.1).abs() < 1e-12);
        assert!((e.gap_to_oracle_percent.unwrap() + 25.0).abs() < 1e-9);
        // A checkpoint path as the label, and no φ: the first row.
        let e = policy_line(&summary("runs/x/checkpoint.ot"), 3, None)
            .unwrap()
            .unwrap();
        assert_eq!(e.objective, 0.5);
        // Another S: nothing to show.
        assert!(policy_line(&summary(POLICY_LABEL), 9, None)
            .unwrap()
            .is_none());
        assert!(policy_line(&serde_json::json!({}), 3, None).is_err());
    }
}

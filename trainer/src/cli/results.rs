//! `diten results`: the shipped models' evaluations side by side. Each model folder
//! (as `diten models` finds them) holds `evaluation/summary.json` from `diten ship`:
//! every decision maker on the model's own S. Put together they are the paper's
//! Fig. 5–9 with the shipped policy on the axis: one `summary.csv`, the plots of
//! `diten compare` (a metric against S, one per φ) and `results.md`, the objective
//! of each decision maker per S with its mean gap to the oracle, one table per φ.
//! Nothing is re-run: the numbers are the cards'.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::Value;

use crate::eval::card::{POLICY_LABEL, UNCONSOLIDATED_LABEL, UNIMPROVED_LABEL};
use crate::eval::metrics::{Metric, Stats};
use crate::eval::report::summary_csv;
use crate::eval::{emd_label, plot, ratio_text, SummaryRow};
use crate::policy::Builtin;
use crate::scenario::Emd;
use crate::util::fs::write_atomic;

/// The shipped policy's name in the merged tables and plots.
pub const SHIPPED_LABEL: &str = "shipped policy";

/// The shipped policy without the controller's consolidation and improvement (the
/// policy alone), in the merged tables.
pub const UNCONSOLIDATED_SHIPPED_LABEL: &str = "shipped policy, unconsolidated";

/// The shipped policy without the controller's improvement, in the merged tables.
pub const UNIMPROVED_SHIPPED_LABEL: &str = "shipped policy, unimproved";

/// Arguments of `diten results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The folder of shipped models (each subfolder with a policy.onnx is one).
    #[arg(long, value_name = "DIR", default_value = super::models::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Output folder, created if missing: summary.csv, results.md, the plots.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `diten results`.
pub fn run(args: &ResultsArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let dirs = super::models::model_dirs(&args.dir)?;
    if dirs.is_empty() {
        bail!(
            "--dir {}: no model folder (none holds a policy.onnx)",
            args.dir.display()
        );
    }
    for dir in &dirs {
        let path = dir.join("evaluation").join("summary.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: reading", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let found = read_rows(&json).with_context(|| format!("{}", path.display()))?;
        for row in found {
            if rows.iter().any(|r: &SummaryRow| {
                r.policy == row.policy && r.servers == row.servers && r.emd == row.emd
            }) {
                bail!(
                    "{}: {} at S = {}, φ = {} is already in another model's evaluation",
                    path.display(),
                    row.policy,
                    row.servers,
                    emd_label(&row.emd)
                );
            }
            rows.push(row);
        }
    }
    let labels = ordered(rows.iter().map(|r| r.policy.clone()));
    let emds = ordered(rows.iter().map(|r| r.emd.clone()));
    rows.sort_by(|a, b| {
        let pos = |p: &str| labels.iter().position(|l| l == p);
        (pos(&a.policy), a.servers).cmp(&(pos(&b.policy), b.servers))
    });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: creating", args.out.display()))?;
    write_atomic(&args.out.join("summary.csv"), summary_csv(&rows).as_bytes())?;
    let md = markdown(&rows, &labels, &emds, &dirs);
    write_atomic(&args.out.join("results.md"), md.as_bytes())?;
    let plots = plot::write_plots(&args.out, &labels, &emds, &rows)?;
    print!("{md}");
    eprintln!(
        "results: {} models, {} rows, {} plots in {}",
        dirs.len(),
        rows.len(),
        plots.len(),
        args.out.display()
    );
    Ok(())
}

/// The rows of one summary.json, the shipped policy renamed [`SHIPPED_LABEL`] (and
/// its ablations [`UNIMPROVED_SHIPPED_LABEL`] and [`UNCONSOLIDATED_SHIPPED_LABEL`]).
fn read_rows(json: &Value) -> anyhow::Result<Vec<SummaryRow>> {
    let rows = json["rows"]
        .as_array()
        .ok_or_else(|| anyhow!("rows: missing"))?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let field = |name: &str| format!("rows[{i}].{name}");
            let policy = r["policy"]
                .as_str()
                .ok_or_else(|| anyhow!("{}: missing", field("policy")))?;
            let servers = r["servers"]
                .as_u64()
                .ok_or_else(|| anyhow!("{}: missing", field("servers")))?;
            let emd: Emd = serde_json::from_value(r["emd"].clone())
                .map_err(|e| anyhow!("{}: {e}", field("emd")))?;
            let seeds = r["seeds"]
                .as_array()
                .ok_or_else(|| anyhow!("{}: missing", field("seeds")))?
                .iter()
                .map(|s| {
                    s.as_u64()
                        .ok_or_else(|| anyhow!("{}: not a seed", field("seeds")))
                })
                .collect::<anyhow::Result<Vec<u64>>>()?;
            let stats = Metric::ALL
                .iter()
                .map(|&m| {
                    let s = &r[m.name()];
                    let num = |k: &str| {
                        s[k].as_f64().ok_or_else(|| {
                            anyhow!("{}: missing", field(&format!("{}.{k}", m.name())))
                        })
                    };
                    Ok((
                        m,
                        Stats {
                            mean: num("mean")?,
                            std: num("std")?,
                            min: num("min")?,
                            max: num("max")?,
                        },
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(SummaryRow {
                policy: match policy {
                    POLICY_LABEL => SHIPPED_LABEL.to_owned(),
                    UNCONSOLIDATED_LABEL => UNCONSOLIDATED_SHIPPED_LABEL.to_owned(),
                    UNIMPROVED_LABEL => UNIMPROVED_SHIPPED_LABEL.to_owned(),
                    other => other.to_owned(),
                },
                servers: servers as usize,
                emd,
                seeds,
                stats,
            })
        })
        .collect()
}

/// The distinct values in order of first appearance.
fn ordered<T: PartialEq>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// One table per φ: the objective (mean ± sd over seeds) of each decision maker
/// per S, and its mean gap to the oracle over the S where both were evaluated; then
/// one per φ of the energy per slot and its ratio to sticky's.
fn markdown(rows: &[SummaryRow], labels: &[String], emds: &[Emd], dirs: &[PathBuf]) -> String {
    let mut servers: Vec<usize> = rows.iter().map(|r| r.servers).collect();
    servers.sort_unstable();
    servers.dedup();
    let names: Vec<String> = dirs.iter().map(|d| folder_name(d)).collect();
    let mut md = format!(
        "Objective e per slot of every decision maker, mean ± sd over the seeds, from \
         the evaluations of the shipped models ({}), merged by `diten results`.\n",
        names.join(", ")
    );
    for emd in emds {
        let here = |policy: &str, s: usize| {
            rows.iter()
                .find(|r| r.policy == policy && r.servers == s && r.emd == *emd)
                .map(|r| r.get(Metric::Objective))
        };
        md += &table_head(
            &format!("φ = {}", emd_label(emd)),
            &servers,
            "mean gap to oracle",
        );
        for label in labels {
            md += &format!("| {label} |");
            let mut gaps = Vec::new();
            for &s in &servers {
                match here(label, s) {
                    Some(st) => {
                        md += &format!(" {:+.4} ± {:.4} |", st.mean, st.std);
                        if let Some(o) = here(Builtin::Oracle.name(), s) {
                            gaps.push(st.mean - o.mean);
                        }
                    }
                    None => md += " — |",
                }
            }
            match gaps.is_empty() {
                true => md += " — |\n",
                false => {
                    md += &format!(" {:+.4} |\n", gaps.iter().sum::<f64>() / gaps.len() as f64)
                }
            }
        }
    }
    md += "\nEnergy per slot Σ_s C_s (eq. (21), SPEC §2.1b) of every decision maker, mean \
           over the seeds, and in brackets its ratio to sticky's at the same S.\n";
    for emd in emds {
        md += &table_head(
            &format!("Energy, φ = {}", emd_label(emd)),
            &servers,
            "mean ratio to sticky",
        );
        for label in labels {
            md += &format!("| {label} |");
            let mut ratios = Vec::new();
            for &s in &servers {
                let row = rows
                    .iter()
                    .find(|r| r.policy == *label && r.servers == s && r.emd == *emd);
                match row {
                    Some(r) => {
                        let ratio = r.energy_vs_sticky(rows);
                        ratios.extend(ratio);
                        md += &format!(
                            " {:.0} ({}) |",
                            r.get(Metric::CostTotal).mean,
                            ratio_text(ratio)
                        );
                    }
                    None => md += " — |",
                }
            }
            match ratios.is_empty() {
                true => md += " — |\n",
                false => {
                    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
                    md += &format!(" {} |\n", ratio_text(Some(mean)));
                }
            }
        }
    }
    md
}

/// A heading `### {title}` and the head of a table with one column per S and a
/// last column `last`.
fn table_head(title: &str, servers: &[usize], last: &str) -> String {
    let mut md = format!("\n### {title}\n\n| decision maker |");
    for s in servers {
        md += &format!(" S = {s} |");
    }
    md += &format!(" {last} |\n|---|");
    md += &"---:|".repeat(servers.len() + 1);
    md += "\n";
    md
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

//! Writing results: `episodes.csv`, `summary.csv`, `summary.json` and the text table,
//! each through [`write_atomic`].
//!
//! Numbers in the CSV and JSON files are printed in Rust's shortest round-trip
//! form (`0.1`, `1.2345678901234567`), so they read back to the same f64 and a
//! rerun writes the same bytes (except the timing column, `decide_us`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::{emd_label, ratio_text, Metric, Stats, SummaryRow, Sweep, SweepResult};
use crate::scenario::Emd;
use crate::util::fs::write_atomic;

/// A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// `episodes.csv`: one row per finished (policy, servers, emd, seed), in sweep
/// order; a column per [`Metric`].
pub fn episodes_csv(sweep: &Sweep, result: &SweepResult) -> String {
    let mut out = String::from("policy,servers,emd,seed,slots");
    for m in Metric::ALL {
        out.push(',');
        out.push_str(m.name());
    }
    out.push('\n');
    for ep in &result.episodes {
        let j = &ep.job;
        let _ = write!(
            out,
            "{},{},{},{},{}",
            csv_field(&sweep.policies[j.policy].label()),
            j.servers,
            emd_label(&sweep.emds[j.emd]),
            j.seed,
            ep.metrics.slots
        );
        for m in Metric::ALL {
            let _ = write!(out, ",{}", ep.metrics.get(m));
        }
        out.push('\n');
    }
    out
}

/// `summary.csv`: one row per (policy, servers, emd) with the number of seeds and,
/// per metric, `<metric>_mean`, `_std`, `_min`, `_max`.
pub fn summary_csv(rows: &[SummaryRow]) -> String {
    let mut out = String::from("policy,servers,emd,seeds");
    for m in Metric::ALL {
        for stat in ["mean", "std", "min", "max"] {
            let _ = write!(out, ",{}_{stat}", m.name());
        }
    }
    out.push_str(",energy_vs_sticky\n");
    for row in rows {
        let _ = write!(
            out,
            "{},{},{},{}",
            csv_field(&row.policy),
            row.servers,
            emd_label(&row.emd),
            row.seeds.len()
        );
        for (_, s) in &row.stats {
            let _ = write!(out, ",{},{},{},{}", s.mean, s.std, s.min, s.max);
        }
        out.push(',');
        if let Some(r) = row.energy_vs_sticky(rows) {
            let _ = write!(out, "{r}");
        }
        out.push('\n');
    }
    out
}

/// The content of `summary.json` (and of `--json` on stdout).
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    /// The command that produced it (`evaluate`, `compare`).
    pub command: String,
    /// False when the run was interrupted and only some episodes finished.
    pub complete: bool,
    /// Episodes that finished.
    pub episodes_finished: usize,
    /// Episodes the sweep has.
    pub episodes_planned: usize,
    /// Users U.
    pub users: usize,
    /// Slots per episode T.
    pub slots: usize,
    /// The decision makers, in row order.
    pub policies: Vec<String>,
    /// The server counts swept.
    pub servers: Vec<usize>,
    /// The EMD settings swept (a number, or a list with one φ per user).
    pub emd: Vec<Emd>,
    /// The seeds of the sweep.
    pub seeds: Vec<u64>,
    /// How the `std` fields are computed.
    pub std: &'static str,
    /// Per metric: what it measures.
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// One entry per (policy, servers, emd) with at least one finished episode.
    pub rows: Vec<SummaryJsonRow>,
}

/// One row of [`SummaryJson`].
#[derive(Debug, Serialize)]
pub struct SummaryJsonRow {
    /// The decision maker.
    pub policy: String,
    /// Number of edge servers.
    pub servers: usize,
    /// The EMD setting.
    pub emd: Emd,
    /// The seeds that finished.
    pub seeds: Vec<u64>,
    /// Statistics over seeds, by metric name.
    #[serde(flatten)]
    pub stats: serde_json::Map<String, serde_json::Value>,
    /// Mean energy per slot (`cost_total`) relative to sticky's at the same point,
    /// or null when sticky did not run there.
    pub energy_vs_sticky: Option<f64>,
}

/// Builds the summary document of a (possibly partial) run.
pub fn summary_json(
    command: &str,
    sweep: &Sweep,
    result: &SweepResult,
    rows: &[SummaryRow],
) -> SummaryJson {
    let stats_value = |s: &Stats| serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
    SummaryJson {
        command: command.to_owned(),
        complete: result.complete(),
        episodes_finished: result.episodes.len(),
        episodes_planned: result.planned,
        users: sweep.base.users,
        slots: sweep.base.slots,
        policies: sweep.policies.iter().map(|p| p.label()).collect(),
        servers: sweep.servers.clone(),
        emd: sweep.emds.clone(),
        seeds: sweep.seeds.clone(),
        std: "sample standard deviation over seeds (divisor n - 1; 0 for one seed)",
        metrics: Metric::ALL
            .iter()
            .map(|m| (m.name().to_owned(), m.title().into()))
            .collect(),
        rows: rows
            .iter()
            .map(|r| SummaryJsonRow {
                policy: r.policy.clone(),
                servers: r.servers,
                emd: r.emd.clone(),
                seeds: r.seeds.clone(),
                stats: r
                    .stats
                    .iter()
                    .map(|(m, s)| (m.name().to_owned(), stats_value(s)))
                    .collect(),
                energy_vs_sticky: r.energy_vs_sticky(rows),
            })
            .collect(),
    }
}

/// The summary as an aligned text table: one line per (policy, servers, emd),
/// mean ± standard deviation over seeds; energy is Σ_s C_s per slot (eq. (21)) with
/// its three parts and its ratio to sticky's (SPEC §2.1b).
pub fn table(rows: &[SummaryRow]) -> String {
    let pm = |s: Stats, digits: usize| format!("{:.digits$} ± {:.digits$}", s.mean, s.std);
    let header = [
        "policy",
        "S",
        "φ",
        "seeds",
        "objective",
        "utility",
        "energy",
        "vs sticky",
        "mig",
        "syn",
        "cmp",
        "migr/slot",
        "viol. slots",
        "µs/decision",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in rows {
        lines.push(vec![
            r.policy.clone(),
            r.servers.to_string(),
            emd_label(&r.emd),
            r.seeds.len().to_string(),
            pm(r.get(Metric::Objective), 4),
            pm(r.get(Metric::Utility), 4),
            pm(r.get(Metric::CostTotal), 1),
            ratio_text(r.energy_vs_sticky(rows)),
            format!("{:.2}", r.get(Metric::CostMig).mean),
            format!("{:.2}", r.get(Metric::CostSyn).mean),
            format!("{:.1}", r.get(Metric::CostCmp).mean),
            format!("{:.3}", r.get(Metric::Migrations).mean),
            format!("{:.1}", r.get(Metric::ViolatingSlots).mean),
            format!("{:.0}", r.get(Metric::DecideUs).mean),
        ]);
    }
    align(&lines)
}

/// Lines of cells as an aligned text table: the first line is the header,
/// underlined; text in the first column to the left, the rest to the right.
pub fn align(lines: &[Vec<String>]) -> String {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c > 0 {
                text.push_str("  ");
            }
            // Text columns to the left, numbers to the right.
            if c == 0 {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            } else {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (columns - 1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// Writes `episodes.csv`, `summary.csv` and `summary.json` into `dir`; returns
/// their paths.
pub fn write_tables(
    dir: &Path,
    sweep: &Sweep,
    result: &SweepResult,
    summary: &SummaryJson,
    rows: &[SummaryRow],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut json = serde_json::to_string_pretty(summary).context("serialising the summary")?;
    json.push('\n');
    let files = [
        ("episodes.csv", episodes_csv(sweep, result)),
        ("summary.csv", summary_csv(rows)),
        ("summary.json", json),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("nearest"), "nearest");
        assert_eq!(csv_field("a,b.onnx"), "\"a,b.onnx\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn the_table_is_aligned() {
        let stats = |mean| Stats {
            mean,
            std: 0.5,
            min: mean,
            max: mean,
        };
        let row = |policy: &str, servers, mean| SummaryRow {
            policy: policy.into(),
            servers,
            emd: Emd::All(0.2),
            seeds: vec![1, 2],
            stats: Metric::ALL.iter().map(|&m| (m, stats(mean))).collect(),
        };
        let text = table(&[row("nearest", 9, 1.0), row("nearest-random", 21, 123.0)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].chars().all(|c| c == '-'));
        // Every right-aligned column ends at the same place: the lines are equally long.
        let width = lines[1].chars().count();
        for l in [lines[0], lines[2], lines[3]] {
            assert_eq!(l.chars().count(), width, "{l:?}");
        }
        assert!(
            lines[3].starts_with("nearest-random  21  0.2      2  123.0000 ± 0.5000"),
            "{}",
            lines[3]
        );
    }
}

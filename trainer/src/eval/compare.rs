//! How decision makers compare, as `diten ship`'s model card, `diten demo` and
//! `diten models` show it: the comparison [`Table`] (each decision maker's gap to
//! the oracle and energy against sticky's), the verdict paragraphs computed from
//! the episodes alone ([`verdicts`]) and `compare.png`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::{emd_label, plot, ratio_text, Metric, Stats, SummaryRow, Sweep, SweepResult};
use crate::policy::{spec, Builtin, PolicySpec};

/// A table of text cells: rendered aligned for a terminal or as Markdown.
#[derive(Clone, Debug)]
pub struct Table {
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
pub fn oracle_of<'a>(rows: &'a [SummaryRow], row: &SummaryRow) -> Option<&'a SummaryRow> {
    row.peer(rows, Builtin::Oracle.name())
}

/// `value / |reference|` in percent, or `None` when the reference is 0.
pub fn relative_percent(value: f64, reference: f64) -> Option<f64> {
    (reference != 0.0).then(|| 100.0 * value / reference.abs())
}

/// A signed number with `digits` decimals (`+0.00123`, `-0.00123`, `0.00000`).
pub fn signed(value: f64, digits: usize) -> String {
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
pub fn comparison_table(rows: &[SummaryRow]) -> Table {
    let pm = |s: Stats, digits: usize| format!("{:.digits$} ± {:.digits$}", s.mean, s.std);
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
                ratio_text(r.energy_vs_sticky(rows)),
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
fn objectives(result: &SweepResult, policy: usize, servers: usize, emd: usize) -> Vec<(u64, f64)> {
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
pub fn verdicts(sweep: &Sweep, result: &SweepResult, subject: usize) -> Vec<String> {
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
    result: &SweepResult,
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
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `compare.png`: the mean objective ± one standard deviation of every decision
/// maker against the number of servers, at the first φ of the sweep.
pub fn write_compare_plot(
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
    fn lists_read_naturally() {
        let s = |v: &[&str]| join_and(&v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a and b");
        assert_eq!(s(&["a", "b", "c"]), "a, b and c");
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
}

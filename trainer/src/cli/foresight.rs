//! `diten foresight`: what foresight is worth. The oracle maximises each slot's e
//! on its own; the [lookahead](crate::policy::lookahead) plans two slots ahead
//! knowing the next slot (it steps a clone of the simulator). Both run on the same
//! episodes, under each objective of `--objectives`; the gain is the lookahead's
//! mean e per slot minus the oracle's, per episode.
//!
//! Outputs under `--out`: `foresight.csv` (one row per objective, S, φ and seed:
//! the mean e per slot of both, the gain, their energy per slot Σ_s C_s, utility,
//! migrations per slot and decision time), `foresight.md` (per objective, S and φ:
//! the mean ± sample standard deviation over seeds), `scenario.toml`, and the
//! table on stdout (`--json`: the rows as JSON). Ctrl-C keeps what finished, as in
//! `compare`.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use diten_controller::CostNorm;

use super::evaluate::{build_sweep, output_dir, run_with_progress, scenario_toml};
use super::{ForesightArgs, INTERRUPTED_EXIT_CODE};
use crate::eval::{emd_label, EpisodeMetrics, Stats, Sweep, SweepResult};
use crate::policy::{Builtin, PolicySpec};
use crate::util::fs::write_atomic;

/// The two decision makers compared, in sweep order: myopic, then lookahead.
const POLICIES: [Builtin; 2] = [Builtin::Oracle, Builtin::Lookahead];

/// One episode pair: the same (objective, S, φ, seed) run by both.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    /// The objective (`paper` or `linear`).
    pub cost_norm: &'static str,
    /// Its f0.
    pub f0: f64,
    /// Edge servers S.
    pub servers: usize,
    /// φ.
    pub emd: String,
    /// Episode seed.
    pub seed: u64,
    /// Slots of the episode.
    pub slots: usize,
    /// The myopic oracle's episode.
    pub myopic: EpisodeMetrics,
    /// The lookahead's episode.
    pub lookahead: EpisodeMetrics,
}

impl Row {
    /// Mean e per slot of the lookahead minus the oracle's.
    pub fn gain(&self) -> f64 {
        self.lookahead.objective - self.myopic.objective
    }
}

/// Runs `diten foresight`.
pub fn run(args: &ForesightArgs) -> anyhow::Result<()> {
    if !(args.linear_f0.is_finite() && args.linear_f0 > 0.0) {
        bail!(
            "--linear-f0: `{}` is not a price (f0 must be a finite number > 0)",
            args.linear_f0
        );
    }
    let objectives = if args.objectives.is_empty() {
        vec![CostNorm::Paper, CostNorm::Linear]
    } else {
        args.objectives.clone()
    };
    let mut reference = build_sweep(&args.sweep, &[])?;
    reference.policies = POLICIES.map(PolicySpec::Builtin).to_vec();
    let sweeps: Vec<Sweep> = objectives
        .iter()
        .map(|&norm| {
            let mut sweep = reference.clone();
            sweep.base.params.cost_norm = norm;
            if norm == CostNorm::Linear {
                sweep.base.params.f0 = args.linear_f0;
            }
            sweep
                .validate()
                .map_err(|e| anyhow::anyhow!("--objectives {}: {e}", norm.name()))?;
            Ok(sweep)
        })
        .collect::<anyhow::Result<_>>()?;
    let out = output_dir("foresight", args.sweep.out.as_deref())?;
    write_atomic(
        &out.join("scenario.toml"),
        scenario_toml("foresight", &reference).as_bytes(),
    )?;

    let mut rows = Vec::new();
    let mut complete = true;
    for (i, sweep) in sweeps.iter().enumerate() {
        let norm = sweep.base.params.cost_norm;
        eprintln!(
            "foresight: objective {} of {}: {} (f0 = {})",
            i + 1,
            sweeps.len(),
            norm.name(),
            sweep.base.params.f0
        );
        let result = run_with_progress("foresight", sweep, args.sweep.jobs)?;
        complete &= result.complete();
        rows.extend(pairs(sweep, &result));
        if !complete {
            break;
        }
    }
    write_atomic(&out.join("foresight.csv"), csv(&rows).as_bytes())?;
    write_atomic(&out.join("foresight.md"), markdown(&rows).as_bytes())?;
    if args.sweep.json {
        super::print_line(&serde_json::to_string_pretty(&rows).context("serialising")?)?;
    } else {
        super::print_line(markdown(&rows).trim_end())?;
    }
    if !complete {
        eprintln!(
            "interrupted: partial results in {} ({} episode pairs)",
            out.display(),
            rows.len()
        );
        std::process::exit(INTERRUPTED_EXIT_CODE);
    }
    eprintln!(
        "foresight: {} episode pairs in {}",
        rows.len(),
        out.display()
    );
    Ok(())
}

/// The finished episode pairs of `sweep`, in sweep order (S, φ, seed).
fn pairs(sweep: &Sweep, result: &SweepResult) -> Vec<Row> {
    let params = &sweep.base.params;
    let episode = |policy: usize, servers: usize, emd: usize, seed: u64| {
        result
            .episodes
            .iter()
            .find(|ep| {
                let j = &ep.job;
                (j.policy, j.servers, j.emd, j.seed) == (policy, servers, emd, seed)
            })
            .map(|ep| ep.metrics)
    };
    let mut rows = Vec::new();
    for &servers in &sweep.servers {
        for (e, emd) in sweep.emds.iter().enumerate() {
            for &seed in &sweep.seeds {
                let (Some(myopic), Some(lookahead)) =
                    (episode(0, servers, e, seed), episode(1, servers, e, seed))
                else {
                    continue;
                };
                rows.push(Row {
                    cost_norm: params.cost_norm.name(),
                    f0: params.f0,
                    servers,
                    emd: emd_label(emd),
                    seed,
                    slots: myopic.slots,
                    myopic,
                    lookahead,
                });
            }
        }
    }
    rows
}

/// `foresight.csv`: one row per episode pair.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "cost_norm,servers,seed,slots,myopic_objective,lookahead_objective,gain,\
         myopic_energy,lookahead_energy,f0,emd,myopic_utility,lookahead_utility,\
         myopic_migrations,lookahead_migrations,myopic_violations,lookahead_violations,\
         myopic_decide_us,lookahead_decide_us\n",
    );
    for r in rows {
        let (m, l) = (&r.myopic, &r.lookahead);
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.cost_norm,
            r.servers,
            r.seed,
            r.slots,
            m.objective,
            l.objective,
            r.gain(),
            m.cost_total,
            l.cost_total,
            r.f0,
            r.emd,
            m.utility,
            l.utility,
            m.migrations,
            l.migrations,
            m.violations,
            l.violations,
            m.decide_us,
            l.decide_us
        );
    }
    out
}

/// `foresight.md`: per objective, S and φ, mean ± sd over seeds.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| objective | S | φ | seeds | slots | e, oracle | e, lookahead | gain in e per slot | \
         energy, oracle | energy, lookahead | migrations, oracle | migrations, lookahead | \
         ms per slot, lookahead |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut groups: Vec<(&str, f64, usize, &str)> = Vec::new();
    for r in rows {
        let key = (r.cost_norm, r.f0, r.servers, r.emd.as_str());
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    for key in groups {
        let group: Vec<&Row> = rows
            .iter()
            .filter(|r| (r.cost_norm, r.f0, r.servers, r.emd.as_str()) == key)
            .collect();
        let stats = |f: &dyn Fn(&Row) -> f64| {
            let values: Vec<f64> = group.iter().map(|r| f(r)).collect();
            Stats::of(&values).expect("a group has a row")
        };
        let pm = |s: Stats, digits: usize| format!("{:.digits$} ± {:.digits$}", s.mean, s.std);
        let (norm, f0, servers, emd) = key;
        let _ = writeln!(
            out,
            "| {norm} (f0 = {f0}) | {servers} | {emd} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            group.len(),
            group[0].slots,
            pm(stats(&|r| r.myopic.objective), 4),
            pm(stats(&|r| r.lookahead.objective), 4),
            pm(stats(&|r| r.gain()), 5),
            pm(stats(&|r| r.myopic.cost_total), 0),
            pm(stats(&|r| r.lookahead.cost_total), 0),
            pm(stats(&|r| r.myopic.migrations), 2),
            pm(stats(&|r| r.lookahead.migrations), 2),
            stats(&|r| r.lookahead.decide_us).mean / 1000.0,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(servers: usize, seed: u64, myopic: f64, lookahead: f64) -> Row {
        let metrics = |objective: f64, cost_total: f64| EpisodeMetrics {
            slots: 10,
            objective,
            cost_total,
            ..EpisodeMetrics::default()
        };
        Row {
            cost_norm: "paper",
            f0: 200.0,
            servers,
            emd: "0.2".to_owned(),
            seed,
            slots: 10,
            myopic: metrics(myopic, 100.0),
            lookahead: metrics(lookahead, 50.0),
        }
    }

    #[test]
    fn csv_and_summary_by_hand() {
        let rows = [
            row(9, 1, 0.25, 0.5),
            row(9, 2, 0.5, 0.5),
            row(15, 1, 0.0, 0.0),
        ];
        let csv = csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with(
            "cost_norm,servers,seed,slots,myopic_objective,lookahead_objective,gain,\
             myopic_energy,lookahead_energy,"
        ));
        assert!(lines[1].starts_with("paper,9,1,10,0.25,0.5,0.25,100,50,200,0.2,"));
        let md = markdown(&rows);
        // Gains 0.25 and 0: mean 0.125, sample sd √(2 · 0.125²) = 0.17678.
        assert!(md.contains("| paper (f0 = 200) | 9 | 0.2 | 2 | 10 | 0.3750 ± 0.1768 | 0.5000 ± 0.0000 | 0.12500 ± 0.17678 | 100 ± 0 | 50 ± 0 |"), "{md}");
        assert!(md.contains("| paper (f0 = 200) | 15 | 0.2 | 1 |"), "{md}");
    }
}

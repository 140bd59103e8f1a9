//! `diten frontier`: the trade-off between utility and energy (SPEC §2.1b), drawn.
//!
//! The paper's objective e saturates in energy, so the decisions that maximise it
//! spend the most. Under `cost_norm = "linear"` energy has a price: e =
//! (β1/U) Σ ρ − (β2/S) Σ C_s / (4 f0), and f0 sets how many energy units one unit
//! of utility is worth. `frontier` sweeps that price: for each f0 of `--prices` the
//! oracle maximises the linear e, and each of its decisions is one point (energy
//! per slot, mean utility) of the energy-aware frontier. The decision makers of
//! `--policy` run on the same episodes under the scenario's own objective (the
//! paper's, by default) and are drawn as points on the same axes: a point below
//! and to the right of the frontier is dominated.
//!
//! Outputs under `--out`: `frontier.csv` (one row per point: `servers, policy,
//! price, utility, energy, objective`, then the spreads and the energy's three
//! parts; `price` is empty for the points that are not on the sweep),
//! `frontier_s<S>.png` per S, `scenario.toml`, and the table on stdout (`--json`:
//! the rows as JSON). Ctrl-C keeps what finished, as in `compare`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use diten_controller::CostNorm;

use super::evaluate::{build_sweep, output_dir, run_with_progress, scenario_toml};
use super::{FrontierArgs, INTERRUPTED_EXIT_CODE};
use crate::eval::metrics::Metric;
use crate::eval::{self, emd_label, plot, report, SummaryRow, Sweep};
use crate::policy::{Builtin, PolicySpec};
use crate::util::fs::write_atomic;

/// The label of the frontier's points in tables, the CSV and the plots.
pub const FRONTIER_LABEL: &str = "oracle, linear e";

/// The prices f0 swept when `--prices` is not given: from "energy dominates"
/// (f0 = 100: one migration, ≈ 5 000 energy units, costs more e than any
/// utility gain) to "utility dominates" (f0 = 10⁶).
pub const DEFAULT_PRICES: [f64; 8] = [
    100.0,
    1_000.0,
    3_000.0,
    10_000.0,
    30_000.0,
    100_000.0,
    300_000.0,
    1_000_000.0,
];

/// One point of the figure.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Point {
    /// Edge servers S.
    pub servers: usize,
    /// φ of the point.
    pub emd: String,
    /// The decision maker ([`FRONTIER_LABEL`] for the sweep).
    pub policy: String,
    /// f0 of the linear objective the point optimised, or `None` off the sweep.
    pub price: Option<f64>,
    /// The objective the point was measured with (`paper` or `linear`).
    pub cost_norm: &'static str,
    /// Mean utility ρ over users and slots (mean over seeds) and its spread.
    pub utility: f64,
    /// Sample standard deviation of the utility over seeds.
    pub utility_std: f64,
    /// Energy per slot Σ_s C_s (mean over seeds) and its spread.
    pub energy: f64,
    /// Sample standard deviation of the energy over seeds.
    pub energy_std: f64,
    /// Its migration, synchronisation and computation parts.
    pub energy_mig: f64,
    /// Synchronisation part.
    pub energy_syn: f64,
    /// Computation part.
    pub energy_cmp: f64,
    /// e per slot under the point's own objective.
    pub objective: f64,
    /// Seeds averaged.
    pub seeds: usize,
}

impl Point {
    fn new(row: &SummaryRow, price: Option<f64>, cost_norm: CostNorm) -> Point {
        Point {
            servers: row.servers,
            emd: emd_label(&row.emd),
            policy: row.policy.clone(),
            price,
            cost_norm: cost_norm.name(),
            utility: row.get(Metric::Utility).mean,
            utility_std: row.get(Metric::Utility).std,
            energy: row.get(Metric::CostTotal).mean,
            energy_std: row.get(Metric::CostTotal).std,
            energy_mig: row.get(Metric::CostMig).mean,
            energy_syn: row.get(Metric::CostSyn).mean,
            energy_cmp: row.get(Metric::CostCmp).mean,
            objective: row.get(Metric::Objective).mean,
            seeds: row.seeds.len(),
        }
    }
}

/// Runs `diten frontier`.
pub fn run(args: &FrontierArgs) -> anyhow::Result<()> {
    let prices = if args.prices.is_empty() {
        DEFAULT_PRICES.to_vec()
    } else {
        args.prices.clone()
    };
    for &p in &prices {
        if !(p.is_finite() && p > 0.0) {
            bail!("--prices: `{p}` is not a price (f0 must be a finite number > 0)");
        }
    }
    super::evaluate::check_unique("--prices", &prices)?;
    let reference = build_sweep(&args.sweep, &args.policy)?;
    let reference_norm = reference.base.params.cost_norm;
    let sweeps: Vec<(f64, Sweep)> = prices
        .iter()
        .map(|&price| {
            let mut sweep = reference.clone();
            sweep.base.params.cost_norm = CostNorm::Linear;
            sweep.base.params.f0 = price;
            sweep.policies = vec![PolicySpec::Builtin(Builtin::Oracle)];
            sweep
                .validate()
                .map_err(|e| anyhow::anyhow!("--prices {price}: {e}"))?;
            Ok((price, sweep))
        })
        .collect::<anyhow::Result<_>>()?;
    let out = output_dir("frontier", args.sweep.out.as_deref())?;
    write_atomic(
        &out.join("scenario.toml"),
        scenario_toml("frontier", &reference).as_bytes(),
    )?;

    let mut points = Vec::new();
    let mut complete = true;
    for (i, (price, sweep)) in sweeps.iter().enumerate() {
        eprintln!(
            "frontier: price {} of {}: f0 = {price}",
            i + 1,
            sweeps.len()
        );
        let result = run_with_progress("frontier", sweep, args.sweep.jobs)?;
        complete &= result.complete();
        for row in eval::summarise(sweep, &result) {
            let mut point = Point::new(&row, Some(*price), CostNorm::Linear);
            point.policy = FRONTIER_LABEL.to_owned();
            points.push(point);
        }
        if !complete {
            break;
        }
    }
    if complete && !reference.policies.is_empty() {
        eprintln!("frontier: the decision makers under the scenario's objective");
        let result = run_with_progress("frontier", &reference, args.sweep.jobs)?;
        complete &= result.complete();
        for row in eval::summarise(&reference, &result) {
            points.push(Point::new(&row, None, reference_norm));
        }
    }
    points.sort_by(|a, b| {
        (a.servers, &a.emd)
            .cmp(&(b.servers, &b.emd))
            .then_with(|| a.price.is_none().cmp(&b.price.is_none()))
    });
    write_atomic(&out.join("frontier.csv"), csv(&points).as_bytes())?;
    let mut written = Vec::new();
    for &servers in &reference.servers {
        for emd in &reference.emds {
            let label = emd_label(emd);
            let here: Vec<&Point> = points
                .iter()
                .filter(|p| p.servers == servers && p.emd == label)
                .collect();
            if here.is_empty() {
                continue;
            }
            let name = if reference.emds.len() == 1 {
                format!("frontier_s{servers}.png")
            } else {
                format!("frontier_s{servers}_phi{label}.png")
            };
            let path = out.join(name);
            draw(&path, servers, &label, reference.base.users, &here)?;
            written.push(path);
        }
    }
    if args.sweep.json {
        super::print_line(&serde_json::to_string_pretty(&points).context("serialising")?)?;
    } else {
        super::print_line(table(&points).trim_end())?;
    }
    if !complete {
        eprintln!(
            "interrupted: partial frontier in {} ({} points)",
            out.display(),
            points.len()
        );
        std::process::exit(INTERRUPTED_EXIT_CODE);
    }
    eprintln!(
        "frontier: {} points, {} plots in {}",
        points.len(),
        written.len(),
        out.display()
    );
    Ok(())
}

/// `frontier.csv`.
pub fn csv(points: &[Point]) -> String {
    let mut out = String::from(
        "servers,policy,price,utility,energy,objective,emd,cost_norm,utility_std,energy_std,\
         energy_mig,energy_syn,energy_cmp,seeds\n",
    );
    for p in points {
        let price = p.price.map_or_else(String::new, |v| v.to_string());
        let policy = if p.policy.contains([',', '"']) {
            format!("\"{}\"", p.policy.replace('"', "\"\""))
        } else {
            p.policy.clone()
        };
        let _ = writeln!(
            out,
            "{},{policy},{price},{},{},{},{},{},{},{},{},{},{},{}",
            p.servers,
            p.utility,
            p.energy,
            p.objective,
            p.emd,
            p.cost_norm,
            p.utility_std,
            p.energy_std,
            p.energy_mig,
            p.energy_syn,
            p.energy_cmp,
            p.seeds
        );
    }
    out
}

/// The points as an aligned text table.
fn table(points: &[Point]) -> String {
    let header = [
        "policy", "S", "φ", "f0", "e", "utility", "energy", "mig", "syn", "cmp",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for p in points {
        lines.push(vec![
            p.policy.clone(),
            p.servers.to_string(),
            p.emd.clone(),
            p.price.map_or_else(|| "–".to_owned(), |v| format!("{v}")),
            format!("{:+.4} ({})", p.objective, p.cost_norm),
            format!("{:.4} ± {:.4}", p.utility, p.utility_std),
            format!("{:.0} ± {:.0}", p.energy, p.energy_std),
            format!("{:.0}", p.energy_mig),
            format!("{:.0}", p.energy_syn),
            format!("{:.0}", p.energy_cmp),
        ]);
    }
    report::align(&lines)
}

/// One frontier plot: energy per slot against utility, the sweep as a line with
/// its prices written beside the points, every other decision maker as a marker.
fn draw(
    path: &Path,
    servers: usize,
    emd: &str,
    users: usize,
    points: &[&Point],
) -> anyhow::Result<()> {
    let mut sweep: Vec<(f64, f64, String)> = points
        .iter()
        .filter_map(|p| p.price.map(|f0| (p.energy, p.utility, format!("f0={f0}"))))
        .collect();
    sweep.sort_by(|a, b| a.0.total_cmp(&b.0));
    let others: Vec<plot::Marker> = points
        .iter()
        .filter(|p| p.price.is_none())
        .map(|p| plot::Marker {
            label: format!("{} ({} e)", p.policy, p.cost_norm),
            x: p.energy,
            y: p.utility,
        })
        .collect();
    let title = format!("S = {servers}, φ = {emd}, {users} users: utility against energy");
    plot::draw_tradeoff(
        path,
        &title,
        ("energy per slot Σ C_s", "mean utility ρ"),
        (FRONTIER_LABEL, &sweep),
        &others,
    )
    .with_context(|| format!("plotting {}", path.display()))
}

//! `diten solve`: one slot, JSON in, JSON out (SPEC §3.1).
//!
//! The instance is parsed strictly (unknown keys are rejected at every level), the
//! controller validates it ([`Slot::new`], then [`solve_gamma`], which checks the
//! parameters and the association), solves γ and evaluates the decision. Every
//! number printed comes from the controller. `--solver f32` solves γ with the
//! controller's single-precision path ([`solve_gamma_f32`]) instead of the exact
//! one; the figures are still evaluated exactly, so anyone can check its γ.

use anyhow::{bail, Context};
use diten_controller::{
    evaluate, solve_gamma, solve_gamma_f32, Params, Server, ServerCost, Slot, User,
};
use serde::{Deserialize, Serialize};

use super::input::{parse_json, read_text, Origin};
use super::SolveArgs;

/// Which γ solver `diten solve` runs (`--solver`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum GammaSolver {
    /// The exact f64 solver: the global optimum within 1e-6 on e (SPEC §2.1).
    #[default]
    Exact,
    /// The single-precision solver of targets without a double-precision FPU.
    F32,
}

impl From<GammaSolver> for diten_controller::GammaSolver {
    fn from(solver: GammaSolver) -> Self {
        match solver {
            GammaSolver::Exact => diten_controller::GammaSolver::Exact,
            GammaSolver::F32 => diten_controller::GammaSolver::F32,
        }
    }
}

/// The input of `diten solve`, exactly SPEC §3.1's object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Instance {
    /// Overrides of the model constants; absent = SPEC §2 defaults.
    #[serde(default)]
    params: Params,
    servers: Vec<Server>,
    users: Vec<User>,
    /// Server of each user; absent when a policy is to decide.
    #[serde(default)]
    association: Option<Vec<usize>>,
}

/// The output of `diten solve`; the field order is the contract's.
#[derive(Debug, Serialize)]
struct Solution<'a> {
    association: &'a [usize],
    gamma: &'a [f64],
    objective: f64,
    reward: f64,
    feasible: bool,
    utility: &'a [f64],
    servers: Vec<Costs>,
}

/// One server's costs as printed.
#[derive(Debug, Serialize)]
struct Costs {
    mig: f64,
    syn: f64,
    cmp: f64,
    total: f64,
}

impl From<&ServerCost> for Costs {
    fn from(c: &ServerCost) -> Self {
        Costs {
            mig: c.mig,
            syn: c.syn,
            cmp: c.cmp,
            total: c.total,
        }
    }
}

/// Runs `diten solve`.
pub fn run(args: &SolveArgs) -> anyhow::Result<()> {
    let blob = match &args.policy {
        None if args.trust.pubkey.is_some() => {
            bail!("--pubkey: checks the signature of a --policy file, and none was given")
        }
        None => None,
        Some(policy) => {
            let path = std::path::Path::new(policy);
            if !path.is_file() {
                bail!(
                    "--policy: `{policy}` is not a file (give an exported policy, .onnx or \
                     a .bin blob; the baselines need the simulator's history)"
                );
            }
            let trust = args.trust.load()?;
            Some(super::infer::read_blob(path, trust.as_ref()).context("--policy")?)
        }
    };
    let origin = Origin::of(&args.instance);
    let text = read_text(&args.instance, "instance")?;
    let line = solve_text_with(&text, blob.as_deref(), args.solver)
        .with_context(|| format!("instance {origin}"))?;
    super::print_line(&line)
}

/// The association the controller's decision loop picks with the policy `blob`
/// of either kind (`policy-v1`, SPEC §3.3; `policy-v2`, §3.2a): the policy's
/// logits, best server per user, the repair of C2/C3, consolidation and
/// improvement.
fn decide(
    blob: &[u8],
    params: &diten_controller::Params,
    slot: &Slot,
) -> anyhow::Result<Vec<usize>> {
    use diten_controller::policy::{general::is_general_blob, GeneralPolicy, Policy};
    let bad = |e| anyhow::anyhow!("--policy: {e}");
    if is_general_blob(blob) {
        decide_with(GeneralPolicy::parse(blob).map_err(bad)?, params, slot)
    } else {
        decide_with(Policy::parse(blob).map_err(bad)?, params, slot)
    }
}

/// [`decide`] with a parsed policy.
fn decide_with<P: diten_controller::policy::Engine>(
    policy: P,
    params: &diten_controller::Params,
    slot: &Slot,
) -> anyhow::Result<Vec<usize>> {
    let mut workspace = vec![0.0f32; diten_controller::controller::workspace_len(&policy)];
    let mut controller = diten_controller::Controller::new(policy, *params, &mut workspace)
        .map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let decision = controller.decide(slot)?;
    Ok(decision.association.to_vec())
}

/// Parses, validates and solves one instance; returns the solution as one line of JSON
/// (SPEC §3.1). With `policy` (a firmware blob) and no `association` in the instance,
/// the controller decides, as `diten solve --policy` does. The Python module calls it.
pub fn solve_text(text: &str, policy: Option<&[u8]>) -> anyhow::Result<String> {
    solve_text_with(text, policy, GammaSolver::Exact)
}

/// [`solve_text`] with γ solved by `solver` (the association, given or decided,
/// is the same either way; every figure is evaluated exactly).
pub fn solve_text_with(
    text: &str,
    policy: Option<&[u8]>,
    solver: GammaSolver,
) -> anyhow::Result<String> {
    let (params, slot, given) = read_instance(text)?;
    let association = match (given, policy) {
        (Some(_), Some(_)) => bail!(
            "association: given, and --policy too (give one: the association to solve γ \
             for, or a policy to decide it)"
        ),
        (Some(a), None) => a,
        (None, Some(blob)) => decide(blob, &params, &slot)?,
        (None, None) => bail!(
            "association: missing (give one server index per user, or --policy FILE to \
             let an exported policy decide)"
        ),
    };
    let mut gamma = vec![0.0; slot.users().len()];
    match solver {
        GammaSolver::Exact => solve_gamma(&params, &slot, &association, &mut gamma)?,
        GammaSolver::F32 => solve_gamma_f32(&params, &slot, &association, &mut gamma)?,
    };
    let eval = evaluate(&params, &slot, &association, &gamma)?;
    let solution = Solution {
        association: &association,
        gamma: &gamma,
        objective: eval.objective,
        reward: eval.reward,
        feasible: eval.feasible(),
        utility: &eval.utility,
        servers: eval.servers.iter().map(Costs::from).collect(),
    };
    check_finite(&solution)?;
    Ok(serde_json::to_string(&solution)?)
}

/// The parameters, slot and (if given) association of the instance `text`
/// (SPEC §3.1), parsed and checked as `diten solve` checks them; `diten infer
/// --instance` reads its slot here too.
pub(crate) fn read_instance(text: &str) -> anyhow::Result<(Params, Slot, Option<Vec<usize>>)> {
    check_no_positional_structs(text)?;
    let instance: Instance = parse_json(text)?;
    let slot: Slot = Slot::new(&instance.servers, &instance.users)?;
    diten_controller::model::check_params(&instance.params, &slot)?;
    Ok((instance.params, slot, instance.association))
}

/// serde's derived structs also accept a JSON array of the field values in order
/// (`"servers": [[10, 20, 125, 1450, 55]]`). The contract has objects with named
/// fields only, so an array where an object belongs is rejected. Text that is not
/// JSON passes here and gets its error, with line and column, from [`parse_json`].
fn check_no_positional_structs(text: &str) -> anyhow::Result<()> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(());
    };
    let mut objects = vec![(String::new(), &value)];
    if let Some(params) = value.get("params") {
        objects.push(("params".to_owned(), params));
    }
    for list in ["servers", "users"] {
        if let Some(items) = value.get(list).and_then(serde_json::Value::as_array) {
            for (i, item) in items.iter().enumerate() {
                objects.push((format!("{list}[{i}]"), item));
            }
        }
    }
    match objects.into_iter().find(|(_, v)| v.is_array()) {
        None => Ok(()),
        Some((path, _)) => {
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            };
            bail!("{path}invalid type: array, expected an object with named fields")
        }
    }
}

/// JSON has no NaN or infinity (serde_json would print `null`): valid but extreme
/// inputs (sizes near f64::MAX) can overflow the model, and that is an error, not
/// a silently broken output.
fn check_finite(s: &Solution<'_>) -> anyhow::Result<()> {
    let mut numbers: Vec<(String, f64)> = vec![
        ("objective".into(), s.objective),
        ("reward".into(), s.reward),
    ];
    for (i, &g) in s.gamma.iter().enumerate() {
        numbers.push((format!("gamma[{i}]"), g));
    }
    for (i, &u) in s.utility.iter().enumerate() {
        numbers.push((format!("utility[{i}]"), u));
    }
    for (i, c) in s.servers.iter().enumerate() {
        for (name, v) in [
            ("mig", c.mig),
            ("syn", c.syn),
            ("cmp", c.cmp),
            ("total", c.total),
        ] {
            numbers.push((format!("servers[{i}].{name}"), v));
        }
    }
    match numbers.into_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some((name, v)) => {
            bail!("the model overflowed: {name} is {v} (are some sizes or distances too large?)")
        }
    }
}

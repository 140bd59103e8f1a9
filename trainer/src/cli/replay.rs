//! `diten replay`: a recorded trace (`diten trace`) through the controller's
//! decision loop on the host, one line per slot on stdout, the same lines the
//! firmware of `firmware-example/` prints for the same trace and policy.
//!
//! Both run [`diten_controller::trace::Replay`] (the previous association is the
//! controller's own decision of the slot before) and print
//! [`diten_controller::trace::SlotLine`].

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use diten_controller::controller::workspace_len;
use diten_controller::policy::general::is_general_blob;
use diten_controller::policy::{Engine, GeneralPolicy, Policy};
use diten_controller::trace::{Replay, SlotLine, Trace};
use diten_controller::{Controller, MAX_SERVERS, MAX_USERS};

/// Arguments of `diten replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The policy: an ONNX model (`.onnx`, converted in memory) or a firmware blob
    /// (`.bin`).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The trace, as `diten trace` writes it.
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// The controller's improvement budget, in server γ solves per slot (0: off);
    /// the firmware prints the one it runs with.
    #[arg(long, value_name = "SOLVES", default_value_t = diten_controller::controller::DEFAULT_IMPROVEMENT_BUDGET)]
    pub improve_budget: usize,
    /// The controller's γ solver (the improvement's server solves and the final
    /// γ): exact (f64, the reference) or f32, as the firmware runs it.
    #[arg(long, value_enum, default_value_t = super::solve::GammaSolver::Exact)]
    pub solver: super::solve::GammaSolver,
    /// Signature checks of --policy.
    #[command(flatten)]
    pub trust: super::sign::TrustArgs,
}

/// Runs `diten replay`.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let trust = args.trust.load()?;
    let blob = super::infer::read_blob(&args.policy, trust.as_ref()).context("--policy")?;
    let bad_policy = |e| anyhow!("--policy {}: {e}", args.policy.display());
    let path = args.trace.display();
    let bytes = std::fs::read(&args.trace).with_context(|| format!("reading trace {path}"))?;
    let trace = Trace::parse(&bytes).map_err(|e| anyhow!("trace {path}: {e}"))?;
    // Either kind of blob (SPEC §3.3 `policy-v1`, §3.2a `policy-v2`), through
    // the same controller.
    if is_general_blob(&blob) {
        replay(
            GeneralPolicy::parse(&blob).map_err(bad_policy)?,
            trace,
            args,
        )
    } else {
        replay(Policy::parse(&blob).map_err(bad_policy)?, trace, args)
    }
}

/// Replays `trace` through a controller running `policy`.
fn replay<P: Engine>(policy: P, trace: Trace<'_>, args: &ReplayArgs) -> anyhow::Result<()> {
    let path = args.trace.display();
    let mut workspace = vec![0.0f32; workspace_len(&policy)];
    let mut controller: Controller<'_, '_, MAX_USERS, MAX_SERVERS, P> =
        Controller::new(policy, *trace.params(), &mut workspace)
            .map_err(|e| anyhow!("--policy {}: {e}", args.policy.display()))?;
    controller.set_improvement_budget(args.improve_budget);
    controller.set_gamma_solver(args.solver.into());
    let mut replay: Replay<'_, MAX_USERS, MAX_SERVERS> =
        Replay::new(trace).map_err(|e| anyhow!("trace {path}: {e}"))?;
    let mut objective = 0.0;
    loop {
        let t = replay.slot_index();
        let at = |e| anyhow!("trace {path}, slot {t}: {e}");
        let Some(status) = replay.status().map_err(at)? else {
            break;
        };
        let decision = controller.decide(&status).map_err(at)?;
        let line = SlotLine {
            slot: t,
            association: &decision.association,
            gamma: &decision.gamma,
            objective: decision.evaluation.objective,
        };
        super::print_line(&line.to_string())?;
        objective += decision.evaluation.objective;
        replay.commit(&decision.association).map_err(at)?;
    }
    let slots = replay.slot_index();
    eprintln!(
        "replay: {slots} slots, mean objective {:.6}",
        objective / slots.max(1) as f64
    );
    Ok(())
}

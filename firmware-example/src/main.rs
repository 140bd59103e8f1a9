//! The diten controller on a Cortex-M4F: a recorded gateway trace replayed slot by
//! slot through [`diten_controller::Controller`] with a shipped policy, on QEMU's
//! `mps2-an386` board with semihosting output.
//!
//! Both inputs are in flash (`include_bytes!`, read in place: neither format needs
//! alignment): the policy blob `onnx-models/u20-s21/policy.bin` and the trace
//! `trace.bin` (written by `diten trace`, see the README). So are the blob's
//! detached signature `policy.bin.sig` and the public key it must verify with
//! (the committed TEST key `keys/test/policy-signing.pub`): at boot, before
//! anything else, the firmware checks the signature
//! ([`diten_controller::signature`]) and refuses to run when it fails. The replay is
//! [`diten_controller::trace::Replay`], the one the host's `diten replay` runs, and
//! each slot prints the same [`SlotLine`]. Nothing is allocated: the controller's
//! `f32` workspace and every status and decision live on the stack.
//!
//! At the end it prints the stack's high-water mark (cortex-m-rt paints the
//! whole stack at reset, feature `paint-stack`; the first word still painted,
//! from the bottom, bounds what was used) and the instructions each decision took,
//! with a breakdown. Then, after the stack was measured, it replays the trace once
//! more with the controller's consolidation switched off (the policy alone) and
//! prints what those decisions cost and score.
//! The latter come from SysTick on the core clock (25 MHz on this board) under
//! `qemu-system-arm -icount shift=0`, where every instruction advances virtual
//! time by exactly 1 ns: one SysTick tick is 40 instructions. A calibration loop
//! of a known instruction count checks that factor on every run.
//!
//! The exit status (semihosting `SYS_EXIT`, QEMU's exit code) is 0 when every slot
//! was decided and 1 on any error.

#![no_std]
#![no_main]

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use diten_controller::obs::observe;
use diten_controller::policy::Policy;
use diten_controller::signature::{self, PublicKey, SignedHeader};
use diten_controller::trace::{Replay, SlotLine, Trace};
use diten_controller::{controller, evaluate, solve_gamma, Controller, Error, Slot};
use panic_semihosting as _;

/// Users the firmware is built for (the controller's compile-time capacity).
const USERS: usize = 20;
/// Servers the firmware is built for.
const SERVERS: usize = 21;
/// The controller's improvement budget, in server γ solves per slot (step 5 of
/// the controller): the default, as the host's `diten replay` runs it.
const IMPROVE_BUDGET: usize = controller::DEFAULT_IMPROVEMENT_BUDGET;
/// The controller's `f32` workspace: enough for any policy of this shape.
const WORKSPACE: usize = controller::max_workspace_len(USERS, SERVERS);

/// The shipped policy for 20 users and 21 servers (SPEC §3.3 blob).
static POLICY: &[u8] = include_bytes!("../../onnx-models/u20-s21/policy.bin");
/// The shipped policy's detached signature (`diten sign`).
static POLICY_SIG: &[u8] = include_bytes!("../../onnx-models/u20-s21/policy.bin.sig");
/// The key this gateway trusts to sign its policies, as `diten keygen` writes it:
/// here the committed TEST key, which must never sign a production policy.
static PUBLIC_KEY: &[u8] = include_bytes!("../../keys/test/policy-signing.pub");
/// The lowest `policy_version` this gateway accepts (a real one keeps the
/// version it last ran in its own storage, to refuse rollbacks).
const MIN_POLICY_VERSION: u32 = 1;
/// The recorded trace (see the README for the `diten trace` command).
static TRACE: &[u8] = include_bytes!("../trace.bin");

/// SysTick is 24 bits wide.
const SYST_MASK: u32 = 0x00FF_FFFF;
/// Instructions per SysTick tick: 1 ns of virtual time per instruction
/// (`-icount shift=0`) at the board's 25 MHz core clock.
const INSTRUCTIONS_PER_TICK: u64 = 40;
/// Iterations of the calibration loop: cortex-m 0.7.10's (Cargo.lock)
/// `asm::delay(n)` runs n + 1 iterations of `subs; bne`, 2·(n + 1) instructions.
const CALIBRATION: u32 = 4_000_000;

/// Why the run stopped.
enum Failure {
    /// Invalid policy or trace, before any slot.
    Setup(&'static str, Error),
    /// An error in a slot.
    Slot(usize, Error),
}

/// Instruction counts of the decisions.
struct Counts {
    slots: usize,
    min: u64,
    max: u64,
    sum: u64,
    /// Of the decisions: observation and policy network.
    policy: u64,
    /// Of the decisions: the γ solver.
    gamma: u64,
    /// Of the decisions: the evaluation of the decision (objective, reward).
    evaluation: u64,
    /// Server γ solves the improvement spent, summed.
    improve_solves: usize,
    objective: f64,
    /// Stack used by the decisions (bytes), measured before the second replay.
    stack_peak: u32,
    /// Stack available (bytes).
    stack_size: u32,
    /// The second replay, consolidation off: instructions and objective summed.
    unconsolidated: u64,
    unconsolidated_objective: f64,
}

#[entry]
fn main() -> ! {
    let status = match cortex_m::Peripherals::take() {
        None => {
            hprintln!("error: the core peripherals were already taken");
            debug::EXIT_FAILURE
        }
        Some(peripherals) => {
            let mut syst = peripherals.SYST;
            syst.set_clock_source(SystClkSource::Core);
            syst.set_reload(SYST_MASK);
            syst.clear_current();
            syst.enable_counter();
            report(run())
        }
    };
    debug::exit(status);
    // Only reached when no debugger answers the semihosting exit.
    loop {
        cortex_m::asm::wfi();
    }
}

/// SysTick ticks from `start` to `end` (it counts down and wraps at 24 bits).
fn ticks(start: u32, end: u32) -> u64 {
    u64::from(start.wrapping_sub(end) & SYST_MASK)
}

/// Checks the policy's signature (the once-at-boot work of
/// [`Policy::parse_signed`], before its parse) and prints what it took.
fn verify_policy() -> Result<SignedHeader, Failure> {
    let key = PublicKey::parse(PUBLIC_KEY).map_err(|e| Failure::Setup("public key", e.into()))?;
    let start = SYST::get_current();
    let header = signature::verify(POLICY, POLICY_SIG, &key, MIN_POLICY_VERSION);
    let instructions = ticks(start, SYST::get_current()) * INSTRUCTIONS_PER_TICK;
    let header = header.map_err(|e| Failure::Setup("policy signature", e.into()))?;
    hprintln!(
        "signature: policy_version {} of {} bytes verified in {} instructions \
         (SHA-256 of the blob + Ed25519)",
        header.policy_version,
        header.file_len,
        instructions
    );
    Ok(header)
}

/// Decides every slot of the trace, printing one line per slot.
fn run() -> Result<Counts, Failure> {
    verify_policy()?;
    let policy = Policy::parse(POLICY).map_err(|e| Failure::Setup("policy", e))?;
    let trace = Trace::parse(TRACE).map_err(|e| Failure::Setup("trace", e))?;
    hprintln!(
        "diten firmware: policy for {} users and {} servers, trace of {} slots, \
         improvement budget {} solves per slot",
        policy.users(),
        policy.servers(),
        trace.slots(),
        IMPROVE_BUDGET
    );
    let params = *trace.params();
    let mut workspace = [0.0f32; WORKSPACE];
    // Fails early on a policy of another shape or bad parameters.
    Controller::<'_, '_, USERS, SERVERS>::new(policy.clone(), params, &mut workspace)
        .map_err(|e| Failure::Setup("controller", e))?;
    let mut replay: Replay<'_, USERS, SERVERS> =
        Replay::new(trace).map_err(|e| Failure::Setup("trace", e))?;
    let mut counts = Counts {
        slots: 0,
        min: u64::MAX,
        max: 0,
        sum: 0,
        policy: 0,
        gamma: 0,
        evaluation: 0,
        improve_solves: 0,
        objective: 0.0,
        stack_peak: 0,
        stack_size: 0,
        unconsolidated: 0,
        unconsolidated_objective: 0.0,
    };
    loop {
        let t = replay.slot_index();
        let Some(status) = replay.status().map_err(|e| Failure::Slot(t, e))? else {
            break;
        };
        let at = |e| Failure::Slot(t, e);
        // Where the instructions go: the observation and the network alone, on
        // the same workspace (a subset of what `decide` does, so the stack peak
        // stays the decision's).
        let start = SYST::get_current();
        observe_and_infer(&policy, &status, &mut workspace).map_err(at)?;
        counts.policy += ticks(start, SYST::get_current()) * INSTRUCTIONS_PER_TICK;

        let mut controller: Controller<'_, '_, USERS, SERVERS> =
            Controller::new(policy.clone(), params, &mut workspace).map_err(at)?;
        controller.set_improvement_budget(IMPROVE_BUDGET);
        let start = SYST::get_current();
        let decision = controller.decide(&status);
        let end = SYST::get_current();
        let decision = decision.map_err(at)?;
        let n = ticks(start, end) * INSTRUCTIONS_PER_TICK;

        let mut gamma = [0.0f64; USERS];
        let gamma = gamma.get_mut(..status.users().len()).unwrap_or(&mut []);
        let start = SYST::get_current();
        solve_gamma(&params, &status, &decision.association, gamma).map_err(at)?;
        counts.gamma += ticks(start, SYST::get_current()) * INSTRUCTIONS_PER_TICK;

        let start = SYST::get_current();
        evaluate(&params, &status, &decision.association, &decision.gamma).map_err(at)?;
        counts.evaluation += ticks(start, SYST::get_current()) * INSTRUCTIONS_PER_TICK;

        counts.slots += 1;
        counts.min = counts.min.min(n);
        counts.max = counts.max.max(n);
        counts.sum += n;
        counts.objective += decision.evaluation.objective;
        counts.improve_solves += decision.improve_solves;
        let line = SlotLine {
            slot: t,
            association: &decision.association,
            gamma: &decision.gamma,
            objective: decision.evaluation.objective,
        };
        hprintln!("{}", line);
        replay.commit(&decision.association).map_err(at)?;
    }
    // The stack was painted at reset; nothing has run below the current stack
    // pointer since the decisions returned deeper frames than this one.
    counts.stack_size = cortex_m_stack::stack_size();
    counts.stack_peak = counts
        .stack_size
        .saturating_sub(cortex_m_stack::stack_painted());
    let (instructions, objective) = replay_unconsolidated(&policy, &mut workspace)?;
    counts.unconsolidated = instructions;
    counts.unconsolidated_objective = objective;
    Ok(counts)
}

/// Replays the whole trace again with the consolidation off (the policy alone, its
/// own decisions carried forward); returns the summed instructions and objective.
/// Not inlined, so that its frame does not enlarge the measured decisions' one.
#[inline(never)]
fn replay_unconsolidated(
    policy: &Policy<'_>,
    workspace: &mut [f32],
) -> Result<(u64, f64), Failure> {
    let trace = Trace::parse(TRACE).map_err(|e| Failure::Setup("trace", e))?;
    let params = *trace.params();
    let mut replay: Replay<'_, USERS, SERVERS> =
        Replay::new(trace).map_err(|e| Failure::Setup("trace", e))?;
    let (mut instructions, mut objective) = (0, 0.0);
    loop {
        let t = replay.slot_index();
        let Some(status) = replay.status().map_err(|e| Failure::Slot(t, e))? else {
            break;
        };
        let at = |e| Failure::Slot(t, e);
        let mut controller: Controller<'_, '_, USERS, SERVERS> =
            Controller::new(policy.clone(), params, workspace).map_err(at)?;
        // The policy alone: neither the consolidation nor the improvement.
        controller.set_consolidation(false);
        controller.set_improvement_budget(0);
        let start = SYST::get_current();
        let decision = controller.decide(&status);
        instructions += ticks(start, SYST::get_current()) * INSTRUCTIONS_PER_TICK;
        let decision = decision.map_err(at)?;
        objective += decision.evaluation.objective;
        replay.commit(&decision.association).map_err(at)?;
    }
    Ok((instructions, objective))
}

/// The observation of `status` and the policy's logits, in `workspace` laid out
/// as the controller lays it out (observation, scratch, logits).
fn observe_and_infer(
    policy: &Policy<'_>,
    status: &Slot<USERS, SERVERS>,
    workspace: &mut [f32],
) -> Result<(), Error> {
    let short = Error::WorkspaceLength {
        expected: controller::workspace_len(policy),
        got: workspace.len(),
    };
    let (obs, rest) = workspace
        .split_at_mut_checked(policy.obs_dim())
        .ok_or(short)?;
    let (scratch, rest) = rest
        .split_at_mut_checked(policy.scratch_len())
        .ok_or(short)?;
    let logits = rest.get_mut(..policy.logits_len()).ok_or(short)?;
    observe(status, obs)?;
    policy.logits(obs, scratch, logits)
}

/// Prints the summary or the error; the exit status.
fn report(result: Result<Counts, Failure>) -> debug::ExitStatus {
    match result {
        Err(Failure::Setup(what, e)) => {
            hprintln!("error: {}: {}", what, e);
            debug::EXIT_FAILURE
        }
        Err(Failure::Slot(t, e)) => {
            hprintln!("error: slot {}: {}", t, e);
            debug::EXIT_FAILURE
        }
        Ok(counts) => {
            let slots = counts.slots.max(1) as u64;
            hprintln!(
                "slots: {}, mean objective {:.6}",
                counts.slots,
                counts.objective / slots as f64
            );
            hprintln!(
                "stack peak: {} bytes of {} (RAM after the statics)",
                counts.stack_peak,
                counts.stack_size
            );
            hprintln!(
                "instructions per slot: min {} mean {} max {} (SysTick x {}, qemu -icount shift=0)",
                counts.min,
                counts.sum / slots,
                counts.max,
                INSTRUCTIONS_PER_TICK
            );
            hprintln!(
                "  of which, mean: observation + policy network {}, gamma solver {}, evaluation {}, \
                 the rest (the association's repair, consolidation and improvement) {}",
                counts.policy / slots,
                counts.gamma / slots,
                counts.evaluation / slots,
                (counts.sum / slots)
                    .saturating_sub((counts.policy + counts.gamma + counts.evaluation) / slots)
            );
            hprintln!(
                "improvement: mean {} server solves per slot (budget {})",
                counts.improve_solves as u64 / slots,
                IMPROVE_BUDGET
            );
            hprintln!(
                "replayed again without the consolidation (the policy alone): mean {} \
                 instructions per slot, mean objective {:.6}",
                counts.unconsolidated / slots,
                counts.unconsolidated_objective / slots as f64
            );
            let start = SYST::get_current();
            cortex_m::asm::delay(CALIBRATION);
            let end = SYST::get_current();
            hprintln!(
                "icount check: a loop of {} instructions counted as {}",
                2 * (u64::from(CALIBRATION) + 1),
                ticks(start, end) * INSTRUCTIONS_PER_TICK
            );
            debug::EXIT_SUCCESS
        }
    }
}

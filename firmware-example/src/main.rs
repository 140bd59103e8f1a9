//! The diten controller on a Cortex-M4F: a recorded gateway trace replayed slot by
//! slot through [`diten_controller::Controller`] with a shipped policy, on QEMU's
//! `mps2-an386` board with semihosting output.
//!
//! Both inputs are in flash (`include_bytes!`, read in place: neither format needs
//! alignment): the size-agnostic policy blob `onnx-models/general/policy.bin`
//! (`policy-v2`, SPEC §3.2a: one 4.2 kB network for any slot up to 64 users and
//! 32 servers) and the trace
//! `trace.bin` (written by `diten trace`, see the README). So are the blob's
//! detached signature `policy.bin.sig` and the public key it must verify with
//! (the committed TEST key `keys/test/policy-signing.pub`): at boot, before
//! anything else, the firmware checks the signature
//! ([`diten_controller::signature`]) and refuses to run when it fails. The replay is
//! [`diten_controller::trace::Replay`], the one the host's `diten replay` runs, and
//! each slot prints the same [`SlotLine`]. Nothing is allocated: the controller's
//! `f32` workspace and every status and decision live on the stack.
//!
//! It replays the trace three times: at improvement budget 0 (policy, repair,
//! consolidation, γ), at the default budget, printing each slot's line, and at
//! the default budget with a deadline of [`DEADLINE_INSTRUCTIONS`] read from
//! SysTick (`Controller::decide_by`: the improvement stops there with its best
//! association so far). Each replay ends with one `figures:` line of JSON: the budget, the
//! instructions per decision (mean, max), the stack's high-water mark so far
//! (cortex-m-rt paints the whole stack at reset, feature `paint-stack`; the first
//! word still painted, from the bottom, bounds what was used) and the mean
//! objective, which `diten replay --improve-budget B` prints for the same replay.
//! Instruction counts come from SysTick on the core clock (25 MHz on this board) under
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
use diten_controller::policy::GeneralPolicy;
use diten_controller::signature::{self, PublicKey, SignedHeader};
use diten_controller::trace::{Fixed9, Replay, SlotLine, Trace};
use diten_controller::{
    controller, evaluate, solve_gamma_f32, Controller, Error, GammaSolver, Params, Slot,
};
use panic_semihosting as _;

/// Users the firmware is built for (the controller's compile-time capacity).
const USERS: usize = 20;
/// Servers the firmware is built for.
const SERVERS: usize = 21;
/// The controller's improvement budget, in server γ solves per slot (step 5 of
/// the controller): the default, as the host's `diten replay` runs it.
const IMPROVE_BUDGET: usize = controller::DEFAULT_IMPROVEMENT_BUDGET;
/// The γ solver of the improvement and of the final γ: single precision, the
/// Cortex-M4F's FPU (`diten replay --solver f32` runs the same on the host).
const GAMMA_SOLVER: GammaSolver = GammaSolver::F32;
/// The third replay's deadline for the policy, repair, consolidation and
/// improvement, in instructions (`Controller::decide_by` with SysTick as the
/// clock): issue 18's 20 M; the final γ solve, the shift and the evaluation
/// (about 0.5 M) and the solve under way when it comes run after it, so a slot
/// that reaches it takes a little more, and the mean stays below (the firmware
/// README has the figures, at 19 M too).
const DEADLINE_INSTRUCTIONS: u64 = 20_000_000;
/// The widest `policy-v2` network the workspace is sized for (the shipped one's
/// width; a wider blob stops at setup with the workspace error).
const HIDDEN: usize = 16;
/// The controller's `f32` workspace: enough for a `policy-v2` network of up to
/// [`HIDDEN`] units on slots of up to this shape.
const WORKSPACE: usize = controller::max_general_workspace_len(USERS, SERVERS, HIDDEN);

/// The shipped size-agnostic policy (SPEC §3.2a, blob format 4).
static POLICY: &[u8] = include_bytes!("../../onnx-models/general/policy.bin");
/// The shipped policy's detached signature (`diten sign`).
static POLICY_SIG: &[u8] = include_bytes!("../../onnx-models/general/policy.bin.sig");
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

/// Instruction counts of one replay's decisions.
struct Counts {
    /// The improvement budget of the replay.
    budget: usize,
    /// The deadline of the replay, in instructions (`None`: none).
    deadline: Option<u64>,
    /// Decisions the deadline cut short.
    timed_out: usize,
    slots: usize,
    min: u64,
    max: u64,
    sum: u64,
    /// Of the decisions: the policy network and its decoding.
    policy: u64,
    /// Of the decisions: the γ solver.
    gamma: u64,
    /// Of the decisions: the evaluation of the decision (objective, reward).
    evaluation: u64,
    /// Server γ solves the improvement spent, summed.
    improve_solves: usize,
    /// Of those, scores found in the improvement's memo, summed.
    memo_hits: usize,
    objective: f64,
    /// Stack used so far (bytes), measured after the replay.
    stack_peak: u32,
    /// Stack available (bytes).
    stack_size: u32,
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

/// Replays the trace at budget 0, at the default budget (one line per slot)
/// and under the deadline, and prints each replay's figures.
fn run() -> Result<(), Failure> {
    verify_policy()?;
    let policy = GeneralPolicy::parse(POLICY).map_err(|e| Failure::Setup("policy", e))?;
    let trace = Trace::parse(TRACE).map_err(|e| Failure::Setup("trace", e))?;
    hprintln!(
        "diten firmware: size-agnostic policy (H = {}), trace of {} slots of {} users and {} \
         servers, improvement budget {} solves per slot, gamma solver {}",
        policy.model().hidden(),
        trace.slots(),
        trace.users(),
        trace.servers(),
        IMPROVE_BUDGET,
        match GAMMA_SOLVER {
            GammaSolver::Exact => "exact",
            GammaSolver::F32 => "f32",
        }
    );
    let params = *trace.params();
    let mut workspace = [0.0f32; WORKSPACE];
    // Fails early on a policy too wide for the workspace or bad parameters.
    Controller::<'_, '_, USERS, SERVERS, GeneralPolicy<'_>>::new(policy, params, &mut workspace)
        .map_err(|e| Failure::Setup("controller", e))?;
    for (budget, deadline) in [
        (0, None),
        (IMPROVE_BUDGET, None),
        (IMPROVE_BUDGET, Some(DEADLINE_INSTRUCTIONS)),
    ] {
        let counts = replay_at(&policy, params, budget, deadline, &mut workspace)?;
        print_counts(&counts);
    }
    Ok(())
}

/// Replays the whole trace at improvement budget `budget` (the controller's own
/// decisions carried forward), printing each slot's line at the default budget.
/// Not inlined, so that its frame is the same for both replays.
#[inline(never)]
fn replay_at(
    policy: &GeneralPolicy<'_>,
    params: Params,
    budget: usize,
    deadline: Option<u64>,
    workspace: &mut [f32],
) -> Result<Counts, Failure> {
    let trace = Trace::parse(TRACE).map_err(|e| Failure::Setup("trace", e))?;
    let mut replay: Replay<'_, USERS, SERVERS> =
        Replay::new(trace).map_err(|e| Failure::Setup("trace", e))?;
    let mut counts = Counts {
        budget,
        deadline,
        timed_out: 0,
        slots: 0,
        min: u64::MAX,
        max: 0,
        sum: 0,
        policy: 0,
        gamma: 0,
        evaluation: 0,
        improve_solves: 0,
        memo_hits: 0,
        objective: 0.0,
        stack_peak: 0,
        stack_size: 0,
    };
    loop {
        let t = replay.slot_index();
        let Some(status) = replay.status().map_err(|e| Failure::Slot(t, e))? else {
            break;
        };
        let at = |e| Failure::Slot(t, e);
        // Where the instructions go: the network and its decoding alone, on the
        // same workspace (a subset of what `decide` does, so the stack peak stays
        // the decision's).
        let start = SYST::get_current();
        infer(policy, &params, &status, workspace).map_err(at)?;
        counts.policy += ticks(start, SYST::get_current()) * INSTRUCTIONS_PER_TICK;

        let mut controller: Controller<'_, '_, USERS, SERVERS, GeneralPolicy<'_>> =
            Controller::new(*policy, params, workspace).map_err(at)?;
        controller.set_improvement_budget(budget);
        controller.set_gamma_solver(GAMMA_SOLVER);
        let start = SYST::get_current();
        let decision = match deadline {
            None => controller.decide(&status),
            Some(limit) => controller.decide_by(&status, &mut || {
                ticks(start, SYST::get_current()) * INSTRUCTIONS_PER_TICK > limit
            }),
        };
        let end = SYST::get_current();
        let decision = decision.map_err(at)?;
        let n = ticks(start, end) * INSTRUCTIONS_PER_TICK;

        let mut gamma = [0.0f64; USERS];
        let gamma = gamma.get_mut(..status.users().len()).unwrap_or(&mut []);
        let start = SYST::get_current();
        solve_gamma_f32(&params, &status, &decision.association, gamma).map_err(at)?;
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
        counts.memo_hits += decision.improve_memo_hits;
        counts.timed_out += usize::from(decision.timed_out);
        if budget == IMPROVE_BUDGET && deadline.is_none() {
            let line = SlotLine {
                slot: t,
                association: &decision.association,
                gamma: &decision.gamma,
                objective: decision.evaluation.objective,
            };
            hprintln!("{}", line);
        }
        replay.commit(&decision.association).map_err(at)?;
    }
    // The stack was painted at reset; nothing has run below the current stack
    // pointer since the decisions returned deeper frames than this one.
    counts.stack_size = cortex_m_stack::stack_size();
    counts.stack_peak = counts
        .stack_size
        .saturating_sub(cortex_m_stack::stack_painted());
    Ok(counts)
}

/// The policy's logits for `status` (network and sequential decoding), in
/// `workspace` laid out as the controller lays it out (scratch, logits).
fn infer(
    policy: &GeneralPolicy<'_>,
    params: &Params,
    status: &Slot<USERS, SERVERS>,
    workspace: &mut [f32],
) -> Result<(), Error> {
    let (n, m) = (status.users().len(), status.servers().len());
    let need = policy.scratch_len(n, m);
    let short = Error::WorkspaceLength {
        expected: need + n * m,
        got: workspace.len(),
    };
    let (scratch, rest) = workspace.split_at_mut_checked(need).ok_or(short)?;
    let logits = rest.get_mut(..n * m).ok_or(short)?;
    policy.logits(params, status, scratch, logits)
}

/// Prints one replay's figures: the `figures:` line, then the breakdown.
fn print_counts(counts: &Counts) {
    let slots = counts.slots.max(1) as u64;
    let mean = counts.sum / slots;
    let objective = counts.objective / slots as f64;
    match counts.deadline {
        None => hprintln!(
            "figures: {{\"budget\": {}, \"instructions_mean\": {}, \"instructions_max\": {}, \
             \"stack_bytes\": {}, \"objective_mean\": {}}}",
            counts.budget,
            mean,
            counts.max,
            counts.stack_peak,
            Fixed9(objective)
        ),
        Some(deadline) => hprintln!(
            "figures: {{\"budget\": {}, \"deadline_instructions\": {}, \"timed_out\": {}, \
             \"instructions_mean\": {}, \"instructions_max\": {}, \"stack_bytes\": {}, \
             \"objective_mean\": {}}}",
            counts.budget,
            deadline,
            counts.timed_out,
            mean,
            counts.max,
            counts.stack_peak,
            Fixed9(objective)
        ),
    }
    hprintln!(
        "  budget {}: {} slots, instructions per slot min {} mean {} max {} (SysTick x {}, \
         qemu -icount shift=0); stack peak so far {} bytes of {} (RAM after the statics)",
        counts.budget,
        counts.slots,
        counts.min,
        mean,
        counts.max,
        INSTRUCTIONS_PER_TICK,
        counts.stack_peak,
        counts.stack_size
    );
    hprintln!(
        "  of which, mean: policy network and decoding {}, gamma solver {}, evaluation {}, \
         the rest (the association's repair, consolidation and improvement) {}; \
         improvement: mean {} server solves per slot, {} of them found in its memo",
        counts.policy / slots,
        counts.gamma / slots,
        counts.evaluation / slots,
        mean.saturating_sub((counts.policy + counts.gamma + counts.evaluation) / slots),
        counts.improve_solves as u64 / slots,
        counts.memo_hits as u64 / slots
    );
}

/// Prints the error, or the calibration check; the exit status.
fn report(result: Result<(), Failure>) -> debug::ExitStatus {
    match result {
        Err(Failure::Setup(what, e)) => {
            hprintln!("error: {}: {}", what, e);
            debug::EXIT_FAILURE
        }
        Err(Failure::Slot(t, e)) => {
            hprintln!("error: slot {}: {}", t, e);
            debug::EXIT_FAILURE
        }
        Ok(()) => {
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

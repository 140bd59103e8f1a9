//! The per-slot decision loop of the gateway: observation → policy → association
//! repair → consolidation → improvement → γ → shift → evaluation, without
//! allocating, panicking or unbounded work.
//!
//! [`Controller::decide`] takes the gateway's status for one slot and returns a
//! [`Decision`]:
//!
//! 1. the observation of [`obs::observe`](crate::obs::observe) is written into the
//!    workspace;
//! 2. the policy ([`Engine::logits`]) gives one logit per (user, server);
//! 3. each user takes its best server: the largest logit, ties to the lowest index,
//!    a NaN logit ranking as −∞;
//! 4. the association is **repaired** ([`repair`]) so that C2 (C_cmp,s ≤ q_s,
//!    checked at γ = 0, the least computation) and C3 (C_syn,s ≤ p_s, which does
//!    not depend on γ) hold on every server, then **consolidated**
//!    ([`consolidate`]) onto fewer servers where that lowers the cost term
//!    ([`Controller::set_consolidation`]);
//! 5. the association is **improved** ([`improve`]) by a local search that scores
//!    every change with the exact γ, within a budget of server γ solves
//!    ([`Controller::set_improvement_budget`]; 0 switches it off);
//! 6. [`solve_gamma`] gives the globally optimal γ for that association;
//! 7. the association is **shifted** ([`shift`]): at that γ, single users move
//!    where the cost term falls, the touched servers' γ are solved again, and
//!    the moves stay only if e rose ([`Controller::set_shift`]; under the
//!    paper's Norm only, and skipped after an improvement that climbed to a
//!    local optimum, where it finds no move);
//!    [`evaluate`] then gives the objective, reward, costs and violations.
//!
//! The consolidation, the improvement and the shift run after the repair's
//! [`RepairOutcome::Clean`] or [`RepairOutcome::Repaired`], each when its own
//! switch is on (the shift only with the consolidation's on too). When the repair finds no feasible association (none exists, or
//! the search hit its node budget) the decision keeps the policy's own
//! association with its optimal γ and reports the violations: the gateway must
//! act every slot, so that is a [`RepairOutcome`], not an error. [`Error`] is only
//! for invalid input.
//!
//! # Guarantee
//!
//! If some association satisfies C2 at γ = 0 and C3 on every server
//! (as [`evaluate`] computes them), the decision's association does too
//! ([`RepairOutcome::Clean`] or [`RepairOutcome::Repaired`], and γ from
//! [`solve_gamma`] keeps C2, so [`Decision::feasible`] holds), unless the search
//! hits [`MAX_REPAIR_NODES`] ([`RepairOutcome::BoundReached`]). With
//! [`RepairOutcome::Infeasible`] (only ever returned with a proof: step 0 or a
//! finished search) and [`RepairOutcome::BoundReached`] the decision is the
//! policy's own association (`moved = 0`, no consolidation or improvement) with
//! its optimal γ and its violations.
//! The argument assumes every per-user load is a number: a NaN load (∞ times a
//! zero distance, only with sizes or unit costs near the limits of f64) counts as
//! fitting in [`evaluate`], and the search may then miss an association that fits
//! only thanks to it. When [`Decision::settled`], no single user can move to a
//! server it ranks higher without breaking C2 or C3, unless the consolidation or
//! the improvement then moved users. The repair does not maximise
//! the summed logits over all feasible associations; it keeps to the policy's
//! choice through the greedy's cheapest moves, the search's rank order and the
//! climb.
//!
//! # Work bound
//!
//! With n users, m servers, d = `obs_dim(n, m)` = n·(4 + 3m) + 4m, dense layer
//! widths h_0 = d, h_1, …, h_L = n·m, N = [`MAX_REPAIR_NODES`] and
//! P = [`MAX_CLIMB_PASSES`], and ℓ one load evaluation (two Manhattan distances and
//! a handful of products), one slot costs at most:
//!
//! * observation: d writes and n·m comparisons;
//! * policy: Σ_i h_{i−1}·h_i multiply-adds (+ d·n·m with a skip layer), d
//!   normalisations, Σ_{i<L} h_i `tanh`;
//! * best servers: n·m comparisons;
//! * repair: check n·ℓ + m; proof of step 0 n·m·ℓ; greedy ≤ (n + 1)·(n·m·ℓ + 4n·ℓ + m);
//!   search ordering n·m·ℓ + n² comparisons, then ≤ N nodes of (m comparisons + ℓ +
//!   at most one exact check of n·ℓ + m), with at most 2N + n + 1 loop steps;
//!   climb ≤ P·(n·m·ℓ + 4n²·ℓ) (a move recomputes two servers' sums, and again
//!   if it is undone); consolidation m norms, then ≤ m rounds of (an
//!   insertion sort of ≤ m servers, m copies of the association and the sums,
//!   over the tries together ≤ n users sorted and placed, each m·ℓ + n·ℓ,
//!   plus ≤ n + m norms, and ≤ n + 1 norms for the winner);
//! * improvement: at most B = the budget server solves in all (each the γ
//!   solver's bound for at most n users, plus n utilities and loads); besides
//!   them, each of the two climbs makes at most [`MAX_IMPROVEMENTS`] changes, and
//!   each step scans n·m move gains, estimates ≤ n²/2 swaps and m² merges (≤ 4
//!   loads and 4 norms each, kept in a sorted list of [`PAIR_CANDIDATES`]) and
//!   enumerates ≤ m²/2·2^[`MAX_SPLIT_USERS`] re-splits (none once the budget is
//!   spent); when the budget cannot fill a climb's first table,
//!   n·m estimates (a load and a Norm each) and an insertion sort of each user's
//!   ≤ m targets, so O(B·solve + MAX_IMPROVEMENTS·(n² + m²·2⁶)·ℓ + n·m²);
//! * γ: the bound of [`solver`](crate::solver) (per server, a fixed number of
//!   samples, each a fixed number of Newton steps per user);
//! * shift: n + m loads and norms, then at most n moves, each a scan of at most
//!   n·m loads and f32 norms and two re-sums of n loads; after a move, the γ of
//!   at most 2n touched servers (the solver's bound) and at most 2n loads and
//!   2n utilities;
//! * evaluation: n utilities and m norms.
//!
//! In total O(Σ_i h_{i−1}·h_i + n²·m + N·(n + m) + P·n·(n + m) + m·(n + m)²) plus
//! the γ solver's bound (twice, with the shift's). For the default shape (n = 20, m = 21, hidden 128-128) the policy's
//! 2.5·10⁵ multiply-adds dominate the repair, and the improvement's server
//! solves dominate everything (measured per slot: `firmware-example/README.md`).
//!
//! ```
//! use diten_controller::obs::obs_dim;
//! use diten_controller::policy::{encode, encoded_len, F32Le, LayerRef, ModelRef, Policy};
//! use diten_controller::{Controller, CostNorm, Params, RepairOutcome, Server, Slot, User};
//!
//! // One user, two servers; a single linear layer with zero weights and biases
//! // [0, 1]: the policy always picks server 1.
//! const DIM: usize = obs_dim(1, 2);
//! let zeros = [0u8; 4 * DIM];
//! let ones: [u8; 4 * DIM] = core::array::from_fn(|i| 1.0f32.to_le_bytes()[i % 4]);
//! let weight = [0u8; 4 * 2 * DIM];
//! let bias: [u8; 8] = core::array::from_fn(|i| [0.0f32, 1.0][i / 4].to_le_bytes()[i % 4]);
//! let layer = LayerRef {
//!     inputs: DIM as u32,
//!     outputs: 2,
//!     weight: F32Le::new(&weight),
//!     bias: F32Le::new(&bias),
//! };
//! let model = ModelRef {
//!     users: 1,
//!     servers: 2,
//!     norm_mean: F32Le::new(&zeros),
//!     norm_inv_std: F32Le::new(&ones),
//!     layers: &[layer],
//!     skip: None,
//!     prior: None,
//!     cost_norm: CostNorm::Paper,
//! };
//! let mut blob = [0u8; 1024];
//! let len = encode(&model, &mut blob)?;
//! let policy = Policy::parse(&blob[..len])?;
//!
//! let mut workspace = [0.0f32; 64];
//! assert!(workspace.len() >= Controller::<4, 4>::workspace_len(&policy));
//! let mut controller: Controller<'_, '_, 4, 4> =
//!     Controller::new(policy, Params::default(), &mut workspace)?;
//!
//! let server = Server { x: 0.0, y: 0.0, p: 125.0, q: 1450.0, eps: 55.0, available: true };
//! let user = User {
//!     x: 3.0, y: 4.0, emd: 0.2, twin_bits: 4500.0,
//!     data_bits: 784_000.0, prev_data_bits: 392_000.0, prev_server: Some(0),
//! };
//! let status: Slot<4, 4> = Slot::new(&[server, server], &[user])?;
//! let decision = controller.decide(&status)?;
//! assert_eq!(decision.association, [1]);
//! assert_eq!(decision.repair, RepairOutcome::Clean);
//! assert!(decision.feasible);
//! # Ok::<(), diten_controller::Error>(())
//! ```

pub mod consolidate;
pub mod improve;
pub mod repair;
pub mod shift;

use crate::error::Error;
use crate::model::{check_params, evaluate, Evaluation};
use crate::obs::obs_dim;
use crate::params::{CostNorm, Params};
use crate::policy::{max_scratch_len, Engine, Policy};
use crate::slot::Slot;
use crate::solver::{solve_gamma, solve_gamma_f32, AnyServerSolver, GammaSolver, SolveStats};

pub use improve::{
    Deadline, NoDeadline, DEFAULT_IMPROVEMENT_BUDGET, FIRST_CLIMB_TABLES, MAX_IMPROVEMENTS,
    MAX_SPLIT_USERS, PAIR_CANDIDATES,
};
pub use repair::{MAX_CLIMB_PASSES, MAX_REPAIR_NODES};

/// Where the improvement's winning climb started (see [`improve`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchStart {
    /// The policy's association after the repair and the consolidation (also
    /// reported when the improvement did not run).
    #[default]
    Policy,
    /// The previous slot's association.
    Previous,
}

/// What the repair did to the policy's association.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The policy's association satisfied C2 and C3; the repair moved nobody (the
    /// consolidation may have: [`Decision::emptied`]).
    Clean,
    /// Users were moved; the association now satisfies C2 and C3.
    Repaired,
    /// No association satisfies C2 and C3 (proven); the policy's association is kept.
    Infeasible,
    /// The search hit [`MAX_REPAIR_NODES`] without finding a feasible association;
    /// the policy's association is kept.
    BoundReached,
}

/// The decision for one slot.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<const U: usize, const S: usize> {
    /// Server of each user, after the repair.
    pub association: heapless::Vec<usize, U>,
    /// The policy's best server of each user, before the repair.
    pub argmax: heapless::Vec<usize, U>,
    /// Data reuse ratio γ of each user, globally optimal for `association`.
    pub gamma: heapless::Vec<f64, U>,
    /// The model's evaluation of (`association`, `gamma`): objective, reward,
    /// per-server costs and constraint violations.
    pub evaluation: Evaluation<U, S>,
    /// What the repair did.
    pub repair: RepairOutcome,
    /// Users whose server differs from their `argmax` server (moved by the
    /// repair, the consolidation, the improvement or the shift).
    pub moved: usize,
    /// Servers the consolidation emptied (0 when it is switched off, or after
    /// [`RepairOutcome::Infeasible`] and [`RepairOutcome::BoundReached`]).
    pub emptied: usize,
    /// Changes (moves and swaps) the improvement applied (0 when it is switched
    /// off or found nothing).
    pub improved: usize,
    /// Users the shift moved at the solved γ ([`shift`]; 0 when it or the
    /// consolidation is switched off, under the linear Norm, after an
    /// improvement that climbed to a local optimum, or when it found no move
    /// or undid its moves).
    pub shifted: usize,
    /// Server γ solves the improvement spent (at most its budget), counting the
    /// scores it found in its memo.
    pub improve_solves: usize,
    /// Of `improve_solves`, the scores found in the improvement's memo of
    /// (server, user set) scores: repeats that cost no γ solve.
    pub improve_memo_hits: usize,
    /// Where the improvement's winning climb started.
    pub improve_start: SearchStart,
    /// Whether the deadline of [`Controller::decide_by`] stopped the improvement
    /// (the decision is then the best association it had found).
    pub timed_out: bool,
    /// Nodes the repair's search tried (0 when the greedy step sufficed).
    pub search_nodes: usize,
    /// Whether no user can move alone to a server it ranks higher (by its logits)
    /// without breaking C2 or C3 of a feasible association: false only when the
    /// repair's climb stopped at [`MAX_CLIMB_PASSES`] with users still moving. It
    /// describes the association before the consolidation, which may then move
    /// users to servers they rank lower (`emptied > 0`).
    pub settled: bool,
    /// What the γ solver did.
    pub solve: SolveStats,
    /// Whether every constraint holds (`evaluation.feasible()`).
    pub feasible: bool,
}

/// Workspace values [`Controller`] needs for `policy`: `obs_dim + scratch_len + U·S`
/// with the policy's dimensions (observation, the engine's scratch, logits).
/// For a size-agnostic policy, enough for its largest slot.
pub fn workspace_len<P: Engine>(policy: &P) -> usize {
    policy.work_len(policy.users(), policy.servers()) + policy.logits_len()
}

/// Workspace values enough for every policy of `users` users and `servers`
/// servers, whatever its hidden widths: for sizing a `static` buffer at compile
/// time. `obs_dim + max_scratch_len(obs_dim) + users·servers`.
pub const fn max_workspace_len(users: usize, servers: usize) -> usize {
    let dim = obs_dim(users, servers);
    dim + max_scratch_len(dim) + users * servers
}

/// Workspace values enough for every `policy-v2` network ([`GeneralPolicy`]) of
/// at most `hidden` units deciding slots of at most `users` × `servers`: for
/// sizing a `static` buffer at compile time. The engine's scratch
/// ([`GeneralPolicy::scratch_len`]) and the logits.
///
/// [`GeneralPolicy`]: crate::policy::GeneralPolicy
/// [`GeneralPolicy::scratch_len`]: crate::policy::GeneralPolicy::scratch_len
pub const fn max_general_workspace_len(users: usize, servers: usize, hidden: usize) -> usize {
    crate::policy::general::general_scratch_len(users, servers, hidden) + users * servers
}

/// The gateway's per-slot controller: a parsed policy, the model parameters and a
/// caller-provided workspace (on a firmware, a `static` buffer of
/// [`max_workspace_len`] or [`workspace_len`] values). `U` and `S` are the
/// capacities of the [`Slot`]s it decides for. `P` is the policy's engine: the
/// blob engine [`Policy`] (borrowing the blob for `'p`), or with the `onnx` feature
/// an ONNX file run by tract (`OnnxPolicy`); the
/// decision code is the same.
#[derive(Debug)]
pub struct Controller<'p, 'w, const U: usize, const S: usize, P: Engine = Policy<'p>> {
    policy: P,
    params: Params,
    consolidate: bool,
    shift: bool,
    improve_budget: usize,
    gamma_solver: GammaSolver,
    workspace: &'w mut [f32],
    /// Users and servers of the last slot decided (where its logits lie).
    last: (usize, usize),
    _blob: core::marker::PhantomData<&'p [u8]>,
}

impl<'p, 'w, const U: usize, const S: usize, P: Engine> Controller<'p, 'w, U, S, P> {
    /// Values of workspace the controller needs for `policy` (see [`workspace_len`]):
    /// for a size-agnostic policy, enough for the largest slot this controller
    /// takes (at most `U` × `S`), not for the policy's whole range.
    pub fn workspace_len(policy: &P) -> usize {
        if policy.size_agnostic() {
            let (n, m) = (policy.users().min(U), policy.servers().min(S));
            policy.work_len(n, m) + n * m
        } else {
            workspace_len(policy)
        }
    }

    /// Checks and assembles a controller: the policy's users and servers must fit
    /// `U` and `S` ([`Error::PolicyCapacity`]), `workspace` must hold at least
    /// [`workspace_len`] values ([`Error::WorkspaceLength`]; extra values are
    /// unused), and `params` must be valid ([`Params::validate`]; the utility
    /// exponent of each user's EMD is checked per slot).
    /// The policy must have been trained for the objective `params` set
    /// ([`Engine::cost_norm`] = [`Params::cost_norm`], else
    /// [`Error::PolicyObjective`]); [`new_any_objective`](Self::new_any_objective)
    /// skips that check.
    pub fn new(policy: P, params: Params, workspace: &'w mut [f32]) -> Result<Self, Error> {
        if policy.cost_norm() != params.cost_norm {
            return Err(Error::PolicyObjective {
                policy: policy.cost_norm(),
                params: params.cost_norm,
            });
        }
        Self::new_any_objective(policy, params, workspace)
    }

    /// [`new`](Self::new) without the objective check: runs a policy trained for
    /// one objective under another (an experiment, never a gateway's default).
    pub fn new_any_objective(
        policy: P,
        params: Params,
        workspace: &'w mut [f32],
    ) -> Result<Self, Error> {
        // A size-agnostic policy serves whatever part of its range fits U × S.
        if policy.users() > U && !policy.size_agnostic() {
            return Err(Error::PolicyCapacity {
                field: "users",
                count: policy.users(),
                capacity: U,
            });
        }
        if policy.servers() > S && !policy.size_agnostic() {
            return Err(Error::PolicyCapacity {
                field: "servers",
                count: policy.servers(),
                capacity: S,
            });
        }
        let expected = Self::workspace_len(&policy);
        if workspace.len() < expected {
            return Err(Error::WorkspaceLength {
                expected,
                got: workspace.len(),
            });
        }
        params.validate()?;
        let last = (policy.users(), policy.servers());
        Ok(Controller {
            policy,
            params,
            consolidate: true,
            shift: true,
            improve_budget: DEFAULT_IMPROVEMENT_BUDGET,
            gamma_solver: GammaSolver::Exact,
            workspace,
            last,
            _blob: core::marker::PhantomData,
        })
    }

    /// Sets the γ solver of the improvement's server solves (step 5) and of the
    /// final γ (step 6): [`GammaSolver::Exact`] (the default, the reference) or
    /// [`GammaSolver::F32`] for a target without a double-precision FPU (no f64
    /// arithmetic in the solver; e within 1e-5 of exact, measured). The
    /// evaluation stays exact either way.
    pub fn set_gamma_solver(&mut self, solver: GammaSolver) {
        self.gamma_solver = solver;
    }

    /// The γ solver (see [`set_gamma_solver`](Self::set_gamma_solver)).
    pub fn gamma_solver(&self) -> GammaSolver {
        self.gamma_solver
    }

    /// Switches the consolidation (step 4 of the [module docs](self),
    /// [`consolidate`]) on or off; a new controller has it on. It switches the
    /// shift (step 7) with it: with it off and the improvement's budget 0
    /// ([`set_improvement_budget`](Self::set_improvement_budget)) the association
    /// is the policy's own wherever it fits (only the repair moves users): the
    /// policy alone, as the evaluation's ablation rows measure it.
    pub fn set_consolidation(&mut self, on: bool) {
        self.consolidate = on;
    }

    /// Switches the shift (step 7 of the [module docs](self), [`shift`]) on or
    /// off; a new controller has it on. It runs only while the consolidation is
    /// on too, so [`set_consolidation`](Self::set_consolidation)`(false)` still
    /// gives the policy alone, and only under [`CostNorm::Paper`] (the
    /// [`shift`] docs say why).
    pub fn set_shift(&mut self, on: bool) {
        self.shift = on;
    }

    /// Sets the improvement's budget of server γ solves per slot (step 5 of the
    /// [module docs](self)); 0 switches it off. A new controller has
    /// [`DEFAULT_IMPROVEMENT_BUDGET`]. It runs whether the consolidation is on
    /// or not.
    pub fn set_improvement_budget(&mut self, solves: usize) {
        self.improve_budget = solves;
    }

    /// The improvement's budget of server γ solves per slot.
    pub fn improvement_budget(&self) -> usize {
        self.improve_budget
    }

    /// Whether the consolidation is on.
    pub fn consolidation(&self) -> bool {
        self.consolidate
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The model parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The logits of the last [`decide`](Self::decide) that got that far
    /// (user-major, U·S; before the first, whatever the workspace held).
    pub fn logits(&self) -> &[f32] {
        let (n, m) = self.last;
        let start = self.policy.work_len(n, m);
        self.workspace.get(start..start + n * m).unwrap_or(&[])
    }

    /// Decides one slot (see the [module docs](self)).
    ///
    /// Errors, only for invalid input: the status must have exactly the policy's
    /// users and servers ([`Error::PolicyDims`]), each user's EMD must give a valid
    /// utility exponent with the parameters ([`Error::UtilityExponent`]), and every
    /// observation value must be finite in `f32` ([`Error::ObservationValue`]:
    /// sizes or distances beyond 3.4·10³⁸ in the observation's units). A slot
    /// where C2 or C3 cannot be met is not an error: see [`RepairOutcome`].
    ///
    /// # Worst-case work
    ///
    /// Every loop is bounded by the slot's dimensions and named constants, whatever
    /// the input (the [module docs](self#work-bound) give the full count). With n
    /// users and m servers, one call does at most:
    ///
    /// * one forward pass of the policy (its multiply-adds are fixed by the blob);
    /// * at most n·m loads at γ = 0, each computed the first time a repair step
    ///   asks for it and kept (on the stack: U·S·25 bytes);
    /// * [`MAX_REPAIR_NODES`] = 4096 placements in the repair's search (reported
    ///   in [`Decision::search_nodes`]; at the budget, [`RepairOutcome::BoundReached`]),
    ///   at most n greedy moves and [`MAX_CLIMB_PASSES`] = 4 climb passes of n
    ///   users × m servers each, then at most m consolidation rounds, each placing
    ///   at most n users (m load checks each) and evaluating at most 2(n + m) norms;
    /// * the improvement's budget of server γ solves ([`Decision::improve_solves`];
    ///   [`Controller::set_improvement_budget`], default
    ///   [`DEFAULT_IMPROVEMENT_BUDGET`] = 6000), and two climbs of at most
    ///   [`MAX_IMPROVEMENTS`] = 64 changes, each step O(n² + m²·2⁶) arithmetic
    ///   besides its solves;
    /// * per server with two or more free users (in step 6, and in each of the
    ///   improvement's server solves), [`MAX_SAMPLES`](crate::solver::MAX_SAMPLES)
    ///   = 96 branch-and-bound samples of the γ solver (reported in
    ///   [`SolveStats::max_samples`] and [`SolveStats::samples`]), each at most
    ///   ([`MAX_MU_STEPS`](crate::solver::MAX_MU_STEPS) +
    ///   [`MAX_ULP_STEPS`](crate::solver::MAX_ULP_STEPS) + 1)·k inverses of ρ′ for its
    ///   k users, each at most [`MAX_NEWTON`](crate::solver::MAX_NEWTON) = 64 Halley
    ///   or Newton steps; a single free user at most 3·64 Newton steps; then at most
    ///   [`MAX_POLISH`](crate::solver::MAX_POLISH) = 16 C2 polish passes per server;
    /// * the shift's at most n moves, each a scan of n·m loads and f32 norms,
    ///   then γ again on the servers they touched;
    /// * one evaluation (n utilities, m norms).
    ///
    /// So the repair tries at most 4096·(m + n) load checks in its search and the
    /// solver takes at most 96·165·64·n ≈ 10⁶·n such steps (the k of all servers
    /// sum to n; the property tests see at most a few dozen samples). In practice,
    /// for the firmware's 20 users and 21 servers, the γ solver's few hundred
    /// `exp` and `log` per slot cost more than the policy's 2.5·10⁵ multiply-adds
    /// on a core without a double-precision FPU (`firmware-example/README.md`);
    /// the search, when it runs, adds up to ≈ 1.7·10⁵ load checks at its budget;
    /// and the improvement's solves cost more than all of that together (RESULTS.md
    /// has a solve's cost on the firmware's Cortex-M4F).
    /// The tests check the counted parts of this bound on crowded slots
    /// (`work_per_slot_stays_within_the_documented_bound`).
    pub fn decide(&mut self, status: &Slot<U, S>) -> Result<Decision<U, S>, Error> {
        self.decide_by(status, &mut NoDeadline)
    }

    /// [`decide`](Self::decide) with a deadline besides the improvement's budget:
    /// `deadline` is asked before each of the improvement's server solves, and
    /// once it has expired the improvement stops and the decision is the best
    /// association found so far (never worse than the consolidated one; γ and
    /// the evaluation are then computed as always, so give them their share of
    /// the slot). [`Decision::timed_out`] says whether it came. On a
    /// microcontroller the deadline reads a cycle counter:
    ///
    /// ```ignore
    /// let start = read_cycles();
    /// let decision = controller.decide_by(&status, &mut || read_cycles() - start > budget_cycles)?;
    /// ```
    pub fn decide_by(
        &mut self,
        status: &Slot<U, S>,
        deadline: &mut dyn Deadline,
    ) -> Result<Decision<U, S>, Error> {
        let (n_users, n_servers) = (status.users().len(), status.servers().len());
        let agnostic = self.policy.size_agnostic();
        for (field, expected, got) in [
            ("users", self.policy.users(), n_users),
            ("servers", self.policy.servers(), n_servers),
        ] {
            if got != expected && !(agnostic && got <= expected) {
                return Err(Error::PolicyDims {
                    field,
                    expected,
                    got,
                });
            }
        }
        check_params(&self.params, status)?;

        let work_len = self.policy.work_len(n_users, n_servers);
        let short = Error::WorkspaceLength {
            expected: work_len + n_users * n_servers,
            got: self.workspace.len(),
        };
        let (work, rest) = self.workspace.split_at_mut_checked(work_len).ok_or(short)?;
        let logits = rest.get_mut(..n_users * n_servers).ok_or(short)?;
        self.last = (n_users, n_servers);
        self.policy
            .slot_logits(&self.params, status, work, logits)?;
        let logits: &[f32] = logits;

        let capacity = Error::TooManyUsers {
            count: n_users,
            capacity: U,
        };
        let Repaired {
            argmax,
            mut association,
            outcome,
            emptied,
        } = repair_step(&self.params, status, logits, self.consolidate).ok_or(capacity)?;
        let improvement = if self.improve_budget > 0
            && matches!(
                outcome.repair,
                RepairOutcome::Clean | RepairOutcome::Repaired
            ) {
            improve::run::<U, S>(
                &self.params,
                status,
                self.improve_budget,
                deadline,
                AnyServerSolver::new(self.gamma_solver, &self.params, status)?,
                &mut association,
            )
        } else {
            improve::Improvement::default()
        };

        let mut gamma: heapless::Vec<f64, U> = heapless::Vec::new();
        gamma.resize(n_users, 0.0).map_err(|_| capacity)?;
        let solve = match self.gamma_solver {
            GammaSolver::Exact => solve_gamma(&self.params, status, &association, &mut gamma)?,
            GammaSolver::F32 => solve_gamma_f32(&self.params, status, &association, &mut gamma)?,
        };
        let clean = matches!(
            outcome.repair,
            RepairOutcome::Clean | RepairOutcome::Repaired
        );
        // After a climb to a local optimum the shift would find no move (its
        // module docs): it is skipped. It works with the paper's saturating
        // Norm only (its module docs say why).
        let shifted = if self.consolidate
            && self.shift
            && clean
            && !improvement.converged
            && self.params.cost_norm == CostNorm::Paper
        {
            shift::run::<U, S>(
                &self.params,
                status,
                self.gamma_solver,
                &mut association,
                &mut gamma,
            )
        } else {
            0
        };
        let evaluation = evaluate(&self.params, status, &association, &gamma)?;
        let moved = association
            .iter()
            .zip(&argmax)
            .filter(|(a, b)| a != b)
            .count();
        let feasible = evaluation.feasible();
        Ok(Decision {
            association,
            argmax,
            gamma,
            evaluation,
            repair: outcome.repair,
            moved,
            emptied,
            improved: improvement.changes,
            shifted,
            improve_solves: improvement.solves,
            improve_memo_hits: improvement.memo_hits,
            improve_start: improvement.start,
            timed_out: improvement.timed_out,
            search_nodes: outcome.nodes,
            settled: outcome.settled,
            solve,
            feasible,
        })
    }
}

/// Steps 2 and 3 of [`Controller::decide`]: the argmax, its repair and the
/// consolidation.
struct Repaired<const U: usize> {
    argmax: heapless::Vec<usize, U>,
    association: heapless::Vec<usize, U>,
    outcome: repair::Outcome,
    emptied: usize,
}

/// Steps 2 and 3 in a frame of their own: the repair's load table (U·S·25 bytes)
/// is popped before the improvement's tables are pushed, so the stack peak is the
/// larger of the two, not their sum (the firmware's 64 KiB of RAM depend on it).
/// `None` when the slot has more users than `U`.
#[inline(never)]
fn repair_step<const U: usize, const S: usize>(
    params: &Params,
    status: &Slot<U, S>,
    logits: &[f32],
    consolidate: bool,
) -> Option<Repaired<U>> {
    let repair = repair::Repair::new(params, status, logits);
    let mut argmax: heapless::Vec<usize, U> = heapless::Vec::new();
    for u in 0..status.users().len() {
        argmax.push(repair.best(u)).ok()?;
    }
    let mut association = argmax.clone();
    let outcome = repair.run(&argmax, &mut association);
    let emptied = match outcome.repair {
        RepairOutcome::Clean | RepairOutcome::Repaired if consolidate => {
            repair.consolidate(&mut association)
        }
        _ => 0,
    };
    Some(Repaired {
        argmax,
        association,
        outcome,
        emptied,
    })
}

#[cfg(test)]
mod tests;

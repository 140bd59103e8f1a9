//! Step 5 of the [controller](super): a local search with the exact γ, within a
//! budget of server solves. It runs after the repair's `Clean` or `Repaired`
//! (and the consolidation, when that is on) when the budget set by
//! [`Controller::set_improvement_budget`](super::Controller::set_improvement_budget)
//! is not 0; default [`DEFAULT_IMPROVEMENT_BUDGET`]. γ decouples by server (the
//! [`solver`](crate::solver) docs), so e is a sum of server shares
//! ([`Weights::share`]), each the share's utility and cost term with that
//! server's γ solved exactly; a change of
//! the association that touches two servers is scored by re-solving those two,
//! one *server solve* each, and the budget bounds the solves of a slot. From a
//! feasible start the search climbs, always taking the change that raises e most,
//! in the first of these neighbourhoods that has one:
//!
//! 1. **moves:** one user to another server that is occupied or was its previous
//!    one (a table of each user's leave and join gains, re-scored for the two
//!    servers a change touches);
//! 2. **swaps and merges** (two users exchange servers; every user of one server
//!    to another, empty or not): the [`PAIR_CANDIDATES`] with the largest
//!    estimate, the fall of the cost term with every γ kept and C2 and C3 at
//!    γ = 0, are scored exactly;
//! 3. **re-splits:** the users of two occupied servers, at most
//!    [`MAX_SPLIT_USERS`] together, divided between them in every other way.
//!
//! A change counts when it raises e by more than 10⁻¹² and keeps C2 and C3
//! (checked with [`evaluate`](crate::evaluate)'s sums at the solved γ). The climb ends at a local
//! optimum, after [`MAX_IMPROVEMENTS`] changes, or when its budget is spent and
//! the table holds no improving move that is still exact (its two servers
//! untouched since it was scored: such moves need no solve and are taken). When
//! the budget left cannot fill a climb's first table, its joins are scored best
//! estimate first (the user's leave gain and utility less the rise of the
//! target's c·Norm with every γ kept), so a small budget scores the likeliest
//! moves; otherwise the table is filled server by server, and the search is the
//! same whatever the order. It
//! runs from the policy's association (after steps 1–4) with half the budget, then
//! from the previous slot's association (when every user has a previous server
//! and it differs; skipped when it breaks C2 or C3) with the rest, and the
//! better local optimum wins. A half below [`FIRST_CLIMB_TABLES`] of the first
//! climb's tables would buy it few moves, and the previous slot's start rarely
//! wins: the first climb then gets the whole budget and the second what it
//! leaves ([`Decision::improve_start`](super::Decision::improve_start); ties to the policy's).
//! Step 6 solves γ server by server with the same solver and the same inputs, so
//! the decision's e is the winning climb's up to the order of summation: it is
//! never below the consolidated association's (minus 10⁻¹²), and the association
//! stays feasible. The search has the oracle's neighbourhoods (the trainer's
//! upper yardstick, which climbs from six starts with a memo of every solve):
//! how close that brings the shipped decisions to it, and what a server solve
//! costs on a desktop core and on the firmware's Cortex-M4F, is in `RESULTS.md`
//! and `firmware-example/README.md`. The budget is the knob that sizes the
//! decision to the gateway's slot.
//!
//! The code keeps these rules as written; its comments say how.

use super::SearchStart;
use crate::model::{norm, total_bits, utility, Load, UserCost, Weights};
use crate::params::Params;
use crate::slot::Slot;
use crate::solver::{AnyServerSolver, SolveStats};

/// A rise of e smaller than this is not an improvement: it guards the search
/// against cycling on rounding (e is O(1); its sums round by less than 1e-14).
const TOLERANCE: f64 = 1e-12;

/// Most changes the improvement applies in one climb.
pub const MAX_IMPROVEMENTS: usize = 64;

/// A climb's share of the budget, in its first tables (one solve per server, per
/// user's leave and per target: at most m + n·m), below which the first climb
/// takes the whole budget. Four keeps the default budget's halves wherever
/// 4·(m + n·m) ≤ 3000, U ≤ 30 users on S ≤ 21 servers for example, so its
/// decisions are the same as with halves there; at budget 200 the first climb
/// alone brings the shipped policy 0.0023 closer to the oracle than two halves
/// (`RESULTS.md`, "Small budgets").
pub const FIRST_CLIMB_TABLES: usize = 4;

// The default budget keeps its halves up to U = 30, S = 21: a first table there
// costs at most m + n·m = 21 + 30·21 solves.
const _: () = assert!(FIRST_CLIMB_TABLES * (21 + 30 * 21) <= DEFAULT_IMPROVEMENT_BUDGET / 2);

/// The improvement's default budget of server solves per slot
/// ([`Controller::set_improvement_budget`](super::Controller::set_improvement_budget)).
pub const DEFAULT_IMPROVEMENT_BUDGET: usize = 6000;

/// Swaps and merges scored exactly per step when no move improves: those with
/// the largest estimate (the fall of the cost term with every γ kept).
pub const PAIR_CANDIDATES: usize = 16;

/// Most users of two servers together for a re-split (2^n − 1 splits, two
/// server solves each).
pub const MAX_SPLIT_USERS: usize = 6;

/// A change of two servers' users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// User to server.
    Move(usize, usize),
    /// Two users on different servers exchange servers.
    Swap(usize, usize),
    /// Every user of the first server to the second.
    Merge(usize, usize),
    /// The users of two servers re-divided: the first gets the users in the mask
    /// (bit u for user u), the second the rest.
    Split(usize, usize, u64),
}

/// The users of one server, in user order.
type Set<const U: usize> = heapless::Vec<usize, U>;

/// Entries of the memo of server scores (direct-mapped; about 3 KiB of stack).
pub const MEMO_ENTRIES: usize = 128;

/// One remembered score: server `s` with the users of bit mask `users`.
#[derive(Clone, Copy, Debug)]
struct Memo {
    /// `u64::MAX` marks an empty entry (no slot has 64 users on one server and
    /// that mask with `server` at its default).
    users: u64,
    server: usize,
    score: Option<f64>,
}

impl Memo {
    const EMPTY: Memo = Memo {
        users: u64::MAX,
        server: usize::MAX,
        score: None,
    };
}

/// A deadline for the improvement, from a caller's clock (the cycle counter or
/// SysTick on a microcontroller, `Instant` on a host): asked before each server
/// solve, and once it says expired the improvement stops and the decision is the
/// best association found so far (an anytime search).
/// [`Controller::decide_by`](super::Controller::decide_by) takes one; any
/// `FnMut() -> bool` is one.
pub trait Deadline {
    /// Whether the time is up.
    fn expired(&mut self) -> bool;
}

impl<F: FnMut() -> bool> Deadline for F {
    fn expired(&mut self) -> bool {
        self()
    }
}

/// The deadline that never comes ([`Controller::decide`](super::Controller::decide)).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDeadline;

impl Deadline for NoDeadline {
    fn expired(&mut self) -> bool {
        false
    }
}

/// What the improvement did in one slot.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Improvement {
    /// Changes of the winning climb.
    pub changes: usize,
    /// Where the winning climb started.
    pub start: SearchStart,
    /// Server solves spent (a score found in the memo counts as one).
    pub solves: usize,
    /// Of those, scores found in the memo (no γ solved).
    pub memo_hits: usize,
    /// Whether the deadline stopped it.
    pub timed_out: bool,
    /// Whether the winning climb ended at a local optimum: no move, swap,
    /// merge or re-split left that raises e, with budget to spare.
    pub converged: bool,
}

/// A change with the changes of the shares of the two servers it touches
/// (`gain_s` of the first, `gain_t` of the second).
#[derive(Clone, Copy, Debug)]
struct Step {
    change: Change,
    gain_s: f64,
    gain_t: f64,
}

impl Step {
    /// The change of e.
    fn gain(&self) -> f64 {
        self.gain_s + self.gain_t
    }
}

/// A finished climb: its changes, e as the sum of the servers' shares, and
/// whether it ended at a local optimum (not at its budget, deadline or
/// [`MAX_IMPROVEMENTS`]).
#[derive(Clone, Copy, Debug)]
struct Climb {
    changes: usize,
    value: f64,
    converged: bool,
}

/// Runs the improvement on `assoc` with `budget` server solves. Not inlined: its
/// tables live on the stack only while it runs, not in the frame of `decide`.
#[inline(never)]
pub(super) fn run<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    budget: usize,
    deadline: &mut dyn Deadline,
    solver: AnyServerSolver<U>,
    assoc: &mut [usize],
) -> Improvement {
    let mut search = Improve::new(params, slot, budget, deadline, solver);
    let (changes, start, converged) = search.run(assoc);
    Improvement {
        changes,
        start,
        solves: search.solves,
        memo_hits: search.memo_hits,
        timed_out: search.timed_out,
        converged,
    }
}

/// The local search of one slot.
pub(super) struct Improve<'a, const U: usize, const S: usize> {
    params: &'a Params,
    slot: &'a Slot<U, S>,
    solver: AnyServerSolver<U>,
    rate: f64,
    /// β1/n and β2/m: e = Σ_s (w·Σ_{k on s} ρ_k − c·Norm(C_s)).
    weights: Weights,
    budget: usize,
    /// The caller's deadline, asked before each server solve.
    deadline: &'a mut dyn Deadline,
    /// Whether the deadline has come (no solve after it).
    timed_out: bool,
    /// Server solves done so far.
    pub(super) solves: usize,
    /// Scores of (server, user set) computed in this slot, so that a set scored
    /// again costs no γ solve; a hit still counts against the budget, so the
    /// search and its decision are the same with or without it.
    memo: [Memo; MEMO_ENTRIES],
    /// Whether the memo is looked in (tests switch it off to compare).
    pub(super) memo_on: bool,
    pub(super) memo_hits: usize,
    /// γ of the server being scored (scratch of the solver).
    gamma: [f64; U],
    /// Each user's D̄ = D_t + γ·D_{t−1} at its current server's solved γ.
    bits: [f64; U],
    /// Each server's share of e for the current association.
    value: [f64; S],
    /// `leave[u]`: the change of e if user u left its server (its server's share
    /// without u, minus its share now).
    leave: [f64; U],
    /// `join[u][t]`: the change of t's share if user u joined t; −∞ where t is
    /// u's server or not a target (targets: occupied servers and u's previous one).
    join: [[f64; S]; U],
}

impl<'a, const U: usize, const S: usize> Improve<'a, U, S> {
    /// The search on `slot` with at most `budget` server solves.
    pub(super) fn new(
        params: &'a Params,
        slot: &'a Slot<U, S>,
        budget: usize,
        deadline: &'a mut dyn Deadline,
        solver: AnyServerSolver<U>,
    ) -> Self {
        Improve {
            params,
            slot,
            solver,
            rate: params.rate_bps(),
            weights: Weights::new(params, slot),
            budget,
            deadline,
            timed_out: false,
            memo: [Memo::EMPTY; MEMO_ENTRIES],
            memo_on: true,
            memo_hits: 0,
            solves: 0,
            gamma: [0.0; U],
            bits: [0.0; U],
            value: [0.0; S],
            leave: [f64::NEG_INFINITY; U],
            join: [[f64::NEG_INFINITY; S]; U],
        }
    }

    /// Server `s`'s share of e ([`Weights::share`]) with `users` on it and their γ
    /// solved, utilities and loads summed in user order; `None` when C2 or C3
    /// fails on it (at the optimal γ, hence at γ = 0) or the budget is spent.
    fn score(&mut self, s: usize, users: &[usize]) -> Option<f64> {
        self.score_with(s, users, true)
    }

    /// [`score`](Self::score), looking in the memo first when `memo` is set;
    /// without it the γ of `users` is left in `self.gamma`.
    fn score_with(&mut self, s: usize, users: &[usize], memo: bool) -> Option<f64> {
        if users.is_empty() {
            return Some(0.0);
        }
        if !self.slot.available(s) {
            return None; // it hosts nobody (SPEC §2.2a)
        }
        if self.solves >= self.budget {
            return None;
        }
        if self.timed_out || self.deadline.expired() {
            // From here on the search can score nothing: it ends as when its
            // budget is spent, with the best association so far.
            self.timed_out = true;
            self.budget = self.solves;
            return None;
        }
        self.solves += 1;
        let key = users
            .iter()
            .try_fold(0u64, |mask, &k| (k < 63).then(|| mask | 1 << k));
        let entry = key.map(|mask| {
            let hash = (mask ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (mask, (hash >> 57) as usize % MEMO_ENTRIES)
        });
        if let (true, Some((mask, i))) = (memo && self.memo_on, entry) {
            if let Some(m) = self
                .memo
                .get(i)
                .filter(|m| m.users == mask && m.server == s)
            {
                self.memo_hits += 1;
                return m.score;
            }
        }
        let score = self.solve_share(s, users);
        if let Some((mask, i)) = entry {
            if let Some(m) = self.memo.get_mut(i) {
                *m = Memo {
                    users: mask,
                    server: s,
                    score,
                };
            }
        }
        score
    }

    /// Solves γ of `users` on server `s` into `self.gamma` and returns the
    /// server's share of e (`None` when C2 or C3 fails).
    fn solve_share(&mut self, s: usize, users: &[usize]) -> Option<f64> {
        let (params, slot) = (self.params, self.slot);
        // The decision reports step 6's solver statistics, not these.
        let mut stats = SolveStats::default();
        if !self
            .solver
            .solve(params, slot, s, users, &mut self.gamma, &mut stats)
        {
            return None;
        }
        let srv = slot.servers().get(s)?;
        let (mut rho, mut load) = (0.0, Load::default());
        for &k in users {
            let (u, &g) = (slot.users().get(k)?, self.gamma.get(k)?);
            let bits = total_bits(u, g);
            rho += utility(params, u.emd, bits);
            load = load + UserCost::new(params, slot, u, s, self.rate).load(u, bits);
        }
        // A NaN sum is no improvement.
        if !load.fits_as_number(srv) {
            return None;
        }
        Some(self.weights.share(params, rho, &load))
    }

    /// Server `s`'s current share of e (NaN for an index out of range: never).
    fn value_of(&self, s: usize) -> f64 {
        self.value.get(s).copied().unwrap_or(f64::NAN)
    }

    fn leave_of(&self, u: usize) -> f64 {
        self.leave.get(u).copied().unwrap_or(f64::NEG_INFINITY)
    }

    fn join_of(&self, u: usize, t: usize) -> f64 {
        self.join
            .get(u)
            .and_then(|row| row.get(t))
            .copied()
            .unwrap_or(f64::NEG_INFINITY)
    }

    fn add_value(&mut self, s: usize, gain: f64) {
        if let Some(v) = self.value.get_mut(s) {
            *v += gain;
        }
    }

    /// The users of server `s` in `assoc`, `with` one more and `without` one less.
    fn set(assoc: &[usize], s: usize, with: Option<usize>, without: Option<usize>) -> Set<U> {
        let mut set = Set::new();
        for (u, &a) in assoc.iter().enumerate() {
            if (a == s && Some(u) != without) || Some(u) == with {
                // Never full: at most n ≤ U users.
                let _ = set.push(u);
            }
        }
        set
    }

    /// Whether server `t` is a target for user `u` (not its own; occupied, or u's
    /// previous server, where it migrates nothing).
    fn target(&self, assoc: &[usize], u: usize, t: usize) -> bool {
        assoc.get(u).is_some_and(|&s| s != t)
            && (assoc.contains(&t)
                || self
                    .slot
                    .users()
                    .get(u)
                    .is_some_and(|user| user.prev_server == Some(t)))
    }

    /// Records the D̄ of server `x`'s users at their solved γ (one solve).
    fn settle(&mut self, assoc: &[usize], x: usize) {
        let set = Self::set(assoc, x, None, None);
        // Solved, not looked up: the γ it leaves in `self.gamma` are read below.
        if self.score_with(x, &set, false).is_none() {
            return; // the budget is spent; the D̄ only rank the swaps and merges
        }
        for &k in &set {
            if let (Some(b), Some(u), Some(&g)) = (
                self.bits.get_mut(k),
                self.slot.users().get(k),
                self.gamma.get(k),
            ) {
                *b = total_bits(u, g);
            }
        }
    }

    /// Re-scores what depends on server `x` after it changed: `leave` of its users
    /// and every user's `join` for x.
    fn refresh(&mut self, assoc: &[usize], x: usize) {
        self.settle(assoc, x);
        for u in 0..assoc.len() {
            let gain = if assoc.get(u) == Some(&x) {
                let set = Self::set(assoc, x, None, Some(u));
                let score = self.score(x, &set);
                let value = self.value_of(x);
                if let Some(l) = self.leave.get_mut(u) {
                    *l = score.map_or(f64::NEG_INFINITY, |v| v - value);
                }
                f64::NEG_INFINITY
            } else if self.target(assoc, u, x) {
                let set = Self::set(assoc, x, Some(u), None);
                self.score(x, &set)
                    .map_or(f64::NEG_INFINITY, |v| v - self.value_of(x))
            } else {
                f64::NEG_INFINITY
            };
            if let Some(j) = self.join.get_mut(u).and_then(|row| row.get_mut(x)) {
                *j = gain;
            }
        }
    }

    /// The first table of a climb from `assoc`, filled best estimate first
    /// ([`fill_by_estimate`](Self::fill_by_estimate), `ordered`) or by
    /// [`refresh`](Self::refresh) of each server in index order: each server's
    /// share, then `leave` and `join` as they stand.
    #[cfg(test)]
    pub(super) fn first_table(
        &mut self,
        assoc: &[usize],
        ordered: bool,
    ) -> ([f64; U], [[f64; S]; U]) {
        for s in 0..self.slot.servers().len() {
            let set = Self::set(assoc, s, None, None);
            let v = self.score(s, &set).unwrap_or(f64::NAN);
            if let Some(value) = self.value.get_mut(s) {
                *value = v;
            }
        }
        if ordered {
            self.fill_by_estimate(assoc);
        } else {
            for x in 0..self.slot.servers().len() {
                self.refresh(assoc, x);
            }
        }
        (self.leave, self.join)
    }

    /// The first table of the climb: what [`refresh`](Self::refresh) of every
    /// server computes (each server's D̄, every user's `leave`, every target's
    /// `join`), with the joins scored best estimate first. The estimate of user
    /// u joining t is its leave gain plus its utility at its current D̄ less the
    /// rise of c·Norm(C_t) with every γ kept. The table is the same in any
    /// order; the order matters only when the budget runs out before the table
    /// is full, and then the joins left unscored are the least promising. When
    /// the budget left can fill the table, it is filled server by server without
    /// the estimates (a deadline, unknown in solves, then cuts that order).
    /// `table` is [`table_size`](Self::table_size) of `assoc`.
    fn fill(&mut self, assoc: &[usize], table: usize) {
        let m = self.slot.servers().len();
        if self.budget.saturating_sub(self.solves) >= table {
            // The budget fills the table: server by server, no estimates.
            for x in 0..m {
                self.refresh(assoc, x);
            }
        } else {
            self.fill_by_estimate(assoc);
        }
    }

    /// The most server solves the first table of a climb from `assoc` needs: one
    /// per server, per user's leave and per target.
    fn table_size(&self, assoc: &[usize]) -> usize {
        let (n, m) = (assoc.len(), self.slot.servers().len());
        let mut needed = m + n;
        for u in 0..n {
            needed += (0..m).filter(|&t| self.target(assoc, u, t)).count();
        }
        needed
    }

    /// [`fill`](Self::fill)'s table with the joins scored best estimate first.
    fn fill_by_estimate(&mut self, assoc: &[usize]) {
        let (n, m) = (assoc.len(), self.slot.servers().len());
        for x in 0..m {
            self.settle(assoc, x);
        }
        for (u, &s) in assoc.iter().enumerate() {
            let set = Self::set(assoc, s, None, Some(u));
            let score = self.score(s, &set);
            let value = self.value_of(s);
            if let Some(l) = self.leave.get_mut(u) {
                *l = score.map_or(f64::NEG_INFINITY, |v| v - value);
            }
        }
        // Each server's C_s at the settled γ, and its Norm.
        let mut sums = [0.0f64; S];
        for (u, &s) in assoc.iter().enumerate() {
            if let Some(sum) = sums.get_mut(s) {
                *sum += self.load(u, s).total;
            }
        }
        // Each user's targets, best estimate first (insertion sort; ties to the
        // lower index); the estimates wait in `join` until scored.
        let mut order = [[0u8; S]; U];
        let mut len = [0usize; U];
        for u in 0..n {
            let rho = self
                .slot
                .users()
                .get(u)
                .zip(self.bits.get(u))
                .map_or(0.0, |(user, &bits)| utility(self.params, user.emd, bits));
            let leave = self.leave_of(u);
            for t in 0..m {
                let estimate = if self.target(assoc, u, t) {
                    let c_t = sums.get(t).copied().unwrap_or(f64::NAN);
                    let rise =
                        norm(self.params, c_t + self.load(u, t).total) - norm(self.params, c_t);
                    let e = leave + self.weights.utility * rho - self.weights.cost * rise;
                    if e.is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        e
                    }
                } else {
                    f64::NAN // not a target
                };
                if let Some(j) = self.join.get_mut(u).and_then(|row| row.get_mut(t)) {
                    *j = estimate;
                }
                if estimate.is_nan() {
                    continue;
                }
                let (Some(row), Some(k)) = (order.get_mut(u), len.get_mut(u)) else {
                    continue;
                };
                let Some(list) = row.get_mut(..*k + 1) else {
                    continue;
                };
                let mut at = *k;
                while at > 0 {
                    let prev = list.get(at - 1).copied().unwrap_or(0);
                    let prev_estimate = self.join_of(u, usize::from(prev));
                    if prev_estimate >= estimate {
                        break;
                    }
                    if let Some(v) = list.get_mut(at) {
                        *v = prev;
                    }
                    at -= 1;
                }
                if let (Some(v), Ok(t)) = (list.get_mut(at), u8::try_from(t)) {
                    *v = t;
                }
                *k += 1;
            }
        }
        // Score the best remaining estimate of any user, while the budget lasts.
        let mut next = [0usize; U];
        loop {
            let mut pick: Option<(f64, usize, usize)> = None;
            for u in 0..n {
                let (Some(&i), Some(&k), Some(row)) = (next.get(u), len.get(u), order.get(u))
                else {
                    continue;
                };
                if i >= k {
                    continue;
                }
                let t = usize::from(row.get(i).copied().unwrap_or(0));
                let e = self.join_of(u, t);
                if pick.is_none_or(|(b, ..)| e > b) {
                    pick = Some((e, u, t));
                }
            }
            let Some((_, u, t)) = pick else {
                break;
            };
            if let Some(i) = next.get_mut(u) {
                *i += 1;
            }
            let set = Self::set(assoc, t, Some(u), None);
            let gain = self
                .score(t, &set)
                .map_or(f64::NEG_INFINITY, |v| v - self.value_of(t));
            if let Some(j) = self.join.get_mut(u).and_then(|row| row.get_mut(t)) {
                *j = gain;
            }
        }
        // What was not scored (no budget left) or is no target: no move.
        for (u, row) in self.join.iter_mut().enumerate().take(n) {
            let scored = next.get(u).copied().unwrap_or(0);
            let list = order
                .get(u)
                .map_or(&[][..], |r| r.get(..scored).unwrap_or(&[]));
            for (t, j) in row.iter_mut().enumerate().take(m) {
                if !list.iter().any(|&v| usize::from(v) == t) {
                    *j = f64::NEG_INFINITY;
                }
            }
        }
    }

    /// Climbs from the feasible `assoc` (the policy's), then from the previous
    /// slot's association (when every user has a previous server and it differs;
    /// skipped when it breaks C2 or C3). Each climb gets an equal share of what is
    /// left of the budget, unless the first one's share is below
    /// [`FIRST_CLIMB_TABLES`] of its first tables: it then gets all of it. `assoc` becomes the better local optimum (ties: the
    /// policy's). Returns the changes of the climb that won, its start and
    /// whether it ended at a local optimum.
    pub(super) fn run(&mut self, assoc: &mut [usize]) -> (usize, SearchStart, bool) {
        let n = assoc.len();
        let total = self.budget;
        // The best climb so far and its start.
        let mut best: Option<(Climb, SearchStart)> = None;
        let mut best_assoc = [0usize; U];
        let starts = [SearchStart::Policy, SearchStart::Previous];
        for (i, &start) in starts.iter().enumerate() {
            let mut trial = [0usize; U];
            let Some(trial) = trial.get_mut(..n) else {
                debug_assert!(false, "an association of more than U users");
                break; // never: n ≤ U
            };
            if !self.start(start, assoc, trial) {
                continue;
            }
            let left = total.saturating_sub(self.solves);
            let table = self.table_size(trial);
            let mut share = left / (starts.len() - i);
            if share < FIRST_CLIMB_TABLES * table {
                share = left;
            }
            self.budget = self.solves + share;
            let climbed = self.climb(trial, table);
            self.budget = total;
            let Some(climb) = climbed else {
                continue;
            };
            if best.is_none_or(|(b, _)| climb.value > b.value + TOLERANCE) {
                best = Some((climb, start));
                if let Some(dst) = best_assoc.get_mut(..n) {
                    dst.copy_from_slice(trial);
                }
            }
        }
        match (best, best_assoc.get(..n)) {
            (Some((climb, start)), Some(found)) => {
                assoc.copy_from_slice(found);
                (climb.changes, start, climb.converged)
            }
            _ => (0, SearchStart::Policy, false),
        }
    }

    /// Writes start `start` into `trial`; false when it is unavailable (no
    /// previous, available server for some user) or repeats the policy's `assoc`.
    fn start(&self, start: SearchStart, assoc: &[usize], trial: &mut [usize]) -> bool {
        let users = self.slot.users();
        let servers = self.slot.servers();
        match start {
            SearchStart::Policy => {
                trial.copy_from_slice(assoc);
                return true;
            }
            SearchStart::Previous => {
                for (t, user) in trial.iter_mut().zip(users) {
                    match user.prev_server {
                        Some(p) if servers.get(p).is_some_and(|srv| srv.available) => *t = p,
                        _ => return false,
                    }
                }
            }
        }
        trial != assoc
    }

    /// Best-improvement local search from `assoc`: moves (one user to a target
    /// server) scored exactly; when none improves e, the [`PAIR_CANDIDATES`] swaps
    /// and merges with the best estimates scored exactly; when none of those
    /// does, every re-split of two servers holding at most [`MAX_SPLIT_USERS`]
    /// users together. Stops at a local optimum, after [`MAX_IMPROVEMENTS`]
    /// changes, or when the budget is spent and no move left in the table is
    /// both exact and improving. Returns the number of changes applied
    /// to `assoc` (each raised e by more than [`TOLERANCE`] and kept C2 and C3)
    /// and e as the sum of the servers' shares; `None` when `assoc` breaks C2 or
    /// C3 or the budget cannot score it (`assoc` is then unchanged).
    /// `table` is [`table_size`](Self::table_size) of `assoc`.
    fn climb(&mut self, assoc: &mut [usize], table: usize) -> Option<Climb> {
        let n_servers = self.slot.servers().len();
        for s in 0..n_servers {
            let set = Self::set(assoc, s, None, None);
            let v = self.score(s, &set)?;
            *self.value.get_mut(s)? = v;
        }
        self.fill(assoc, table);
        let (mut changes, mut converged) = (0, false);
        while changes < MAX_IMPROVEMENTS {
            // Once the budget is spent, the table's moves that no change has
            // touched since they were scored are still exact: they are taken
            // for free; pairs and splits would need new solves.
            let spent = self.solves >= self.budget;
            let Some(step) = self.best_move(assoc).or_else(|| {
                if spent {
                    None
                } else {
                    self.best_pair(assoc).or_else(|| self.best_split(assoc))
                }
            }) else {
                // No step found: a local optimum unless a score went unsolved
                // for want of budget (or time, which spends it).
                converged = self.solves < self.budget;
                break;
            };
            let (s, t) = Self::apply(assoc, step.change);
            self.add_value(s, step.gain_s);
            self.add_value(t, step.gain_t);
            changes += 1;
            self.refresh(assoc, s);
            self.refresh(assoc, t);
        }
        Some(Climb {
            changes,
            value: self.value.iter().take(n_servers).sum(),
            converged,
        })
    }

    /// Applies `change` to `assoc`; returns the two servers it touched.
    fn apply(assoc: &mut [usize], change: Change) -> (usize, usize) {
        match change {
            Change::Move(u, t) => {
                let s = assoc.get(u).copied().unwrap_or(t);
                if let Some(a) = assoc.get_mut(u) {
                    *a = t;
                }
                (s, t)
            }
            Change::Swap(u, v) => {
                let st = (
                    assoc.get(u).copied().unwrap_or(0),
                    assoc.get(v).copied().unwrap_or(0),
                );
                assoc.swap(u, v);
                st
            }
            Change::Merge(s, t) => {
                for a in assoc.iter_mut().filter(|a| **a == s) {
                    *a = t;
                }
                (s, t)
            }
            Change::Split(s, t, x) => {
                for (u, a) in assoc.iter_mut().enumerate() {
                    if *a == s || *a == t {
                        *a = if x >> u & 1 == 1 { s } else { t };
                    }
                }
                (s, t)
            }
        }
    }

    /// Of every re-split of two occupied servers s < t holding at most
    /// [`MAX_SPLIT_USERS`] users together (s gets a subset, t the rest; each
    /// subset but the current one), the one whose exact gain is largest and above
    /// [`TOLERANCE`], with the changes of the two servers' shares.
    fn best_split(&mut self, assoc: &[usize]) -> Option<Step> {
        let n_servers = self.slot.servers().len();
        let mut best: Option<Step> = None;
        for s in (0..n_servers).filter(|&s| assoc.contains(&s)) {
            for t in (s + 1..n_servers).filter(|&t| assoc.contains(&t)) {
                let mut both: heapless::Vec<usize, MAX_SPLIT_USERS> = heapless::Vec::new();
                let mut current = 0usize;
                let mut fits = true;
                for (u, &a) in assoc.iter().enumerate() {
                    if a == s || a == t {
                        if u >= 64 || both.push(u).is_err() {
                            fits = false;
                            break;
                        }
                        if a == s {
                            current |= 1 << (both.len() - 1);
                        }
                    }
                }
                if !fits {
                    continue;
                }
                let k = both.len();
                for x in 0..(1usize << k) {
                    if x == current {
                        continue;
                    }
                    let (mut set_s, mut set_t) = (Set::<U>::new(), Set::<U>::new());
                    let mut mask = 0u64;
                    for (i, &u) in both.iter().enumerate() {
                        // Never full: k ≤ MAX_SPLIT_USERS users.
                        if x >> i & 1 == 1 {
                            let _ = set_s.push(u);
                            mask |= 1 << u;
                        } else {
                            let _ = set_t.push(u);
                        }
                    }
                    let (Some(vs), Some(vt)) = (self.score(s, &set_s), self.score(t, &set_t))
                    else {
                        continue;
                    };
                    let step = Step {
                        change: Change::Split(s, t, mask),
                        gain_s: vs - self.value_of(s),
                        gain_t: vt - self.value_of(t),
                    };
                    if step.gain() > TOLERANCE && best.is_none_or(|b| step.gain() > b.gain()) {
                        best = Some(step);
                    }
                }
            }
        }
        best
    }

    /// The move with the largest exact gain above [`TOLERANCE`] (ties: lowest
    /// user, then server), with the changes of the two servers' shares.
    fn best_move(&self, assoc: &[usize]) -> Option<Step> {
        let mut best: Option<(f64, usize, usize)> = None;
        for (u, row) in self.join.iter().enumerate().take(assoc.len()) {
            let leave = self.leave_of(u);
            for (t, &join) in row.iter().enumerate().take(self.slot.servers().len()) {
                let gain = leave + join;
                if gain > TOLERANCE && best.is_none_or(|(b, ..)| gain > b) {
                    best = Some((gain, u, t));
                }
            }
        }
        best.map(|(_, u, t)| Step {
            change: Change::Move(u, t),
            gain_s: self.leave_of(u),
            gain_t: self.join_of(u, t),
        })
    }

    /// What user `u` puts on server `s`: C_s's part at the current γ, and the C2
    /// and C3 parts at γ = 0 (the least computation).
    fn load(&self, u: usize, s: usize) -> Load {
        let (Some(user), Some(&bits)) = (self.slot.users().get(u), self.bits.get(u)) else {
            debug_assert!(false, "user {u} out of range");
            return Load::default(); // never: u < n
        };
        let uc = UserCost::new(self.params, self.slot, user, s, self.rate);
        Load {
            total: uc.load(user, bits).total,
            ..uc.load(user, total_bits(user, 0.0))
        }
    }

    /// Whether `sum` can keep C2 and C3 on server `s` (at γ = 0; a NaN sum
    /// cannot, nor can an unavailable server).
    fn may_fit(&self, s: usize, sum: Load) -> bool {
        self.slot
            .servers()
            .get(s)
            .is_some_and(|srv| srv.available && sum.fits_as_number(srv))
    }

    /// Of the [`PAIR_CANDIDATES`] swaps and merges with the largest estimate (the
    /// fall of c·Σ Norm(C_s) with every γ kept, among those that keep C2 and C3
    /// at γ = 0), the one whose exact gain is largest and above [`TOLERANCE`],
    /// with the changes of the two servers' shares.
    fn best_pair(&mut self, assoc: &[usize]) -> Option<Step> {
        let n_servers = self.slot.servers().len();
        let mut sums = [Load::default(); S];
        for (u, &s) in assoc.iter().enumerate() {
            if let Some(sum) = sums.get_mut(s) {
                *sum = *sum + self.load(u, s);
            }
        }
        let mut norms = [0.0f64; S];
        for (v, sum) in norms.iter_mut().zip(&sums) {
            *v = norm(self.params, sum.total);
        }
        let sum_of = |s: usize| sums.get(s).copied().unwrap_or_default();
        let norm_of = |s: usize| norms.get(s).copied().unwrap_or(f64::NAN);
        let mut top: heapless::Vec<(f64, Change), PAIR_CANDIDATES> = heapless::Vec::new();
        let mut keep = |estimate: f64, change: Change| {
            // Sorted by decreasing estimate; ties keep the earlier change first. A
            // NaN estimate is never kept.
            if estimate.is_nan() {
                return;
            }
            let at = top
                .iter()
                .position(|&(e, _)| estimate > e)
                .unwrap_or(top.len());
            if at < PAIR_CANDIDATES {
                if top.is_full() {
                    top.pop();
                }
                let _ = top.insert(at, (estimate, change));
            }
        };
        for (u, &s) in assoc.iter().enumerate() {
            for (v, &t) in assoc.iter().enumerate().skip(u + 1) {
                if s == t {
                    continue;
                }
                let new_s = sum_of(s) - self.load(u, s) + self.load(v, s);
                let new_t = sum_of(t) - self.load(v, t) + self.load(u, t);
                if self.may_fit(s, new_s) && self.may_fit(t, new_t) {
                    let fall = norm_of(s) + norm_of(t)
                        - norm(self.params, new_s.total)
                        - norm(self.params, new_t.total);
                    keep(fall, Change::Swap(u, v));
                }
            }
        }
        for s in (0..n_servers).filter(|&s| assoc.contains(&s)) {
            for t in (0..n_servers).filter(|&t| t != s) {
                let mut new_t = sum_of(t);
                for (u, _) in assoc.iter().enumerate().filter(|&(_, &a)| a == s) {
                    new_t = new_t + self.load(u, t);
                }
                if self.may_fit(t, new_t) {
                    let fall = norm_of(s) + norm_of(t) - norm(self.params, new_t.total);
                    keep(fall, Change::Merge(s, t));
                }
            }
        }
        let mut best: Option<Step> = None;
        for &(_, change) in &top {
            let (s, t, set_s, set_t) = match change {
                Change::Swap(u, v) => {
                    let (Some(&s), Some(&t)) = (assoc.get(u), assoc.get(v)) else {
                        continue;
                    };
                    let set_s = Self::set(assoc, s, Some(v), Some(u));
                    let set_t = Self::set(assoc, t, Some(u), Some(v));
                    (s, t, set_s, set_t)
                }
                Change::Merge(s, t) => {
                    let mut set_t = Set::new();
                    for (u, _) in assoc.iter().enumerate().filter(|&(_, &a)| a == s || a == t) {
                        let _ = set_t.push(u); // never full: n ≤ U
                    }
                    (s, t, Set::new(), set_t)
                }
                Change::Move(..) | Change::Split(..) => {
                    debug_assert!(false, "only swaps and merges are candidates here");
                    continue; // never kept above
                }
            };
            let (Some(vs), Some(vt)) = (self.score(s, &set_s), self.score(t, &set_t)) else {
                continue;
            };
            let step = Step {
                change,
                gain_s: vs - self.value_of(s),
                gain_t: vt - self.value_of(t),
            };
            if step.gain() > TOLERANCE && best.is_none_or(|b| step.gain() > b.gain()) {
                best = Some(step);
            }
        }
        best
    }
}

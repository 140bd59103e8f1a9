//! Step 4 of the [controller](super), the association repair: check, greedy,
//! exact search and climb, so that C2 (C_cmp,s ≤ q_s, checked at γ = 0, the least
//! computation) and C3 (C_syn,s ≤ p_s, which does not depend on γ) hold on every
//! server.
//!
//! A user u on server s adds the loads a_cmp(u, s) = n_cmp·ε_s·(E_s + E_u,s)·D_u,t
//! and a_syn(u, s) = n_syn·D_u,t/rate·l(u, s) to the server's C_cmp,s and C_syn,s at
//! γ = 0, taken from the model ([`UserCost`](crate::model::UserCost)), never
//! re-derived, once per slot for every (u, s) ([`Load::at_zero`]). A server
//! *fits* when both its sums stay within q_s and p_s ([`Load::fits`]), summed
//! exactly as [`evaluate`](crate::evaluate) sums them (in user order, `>` meaning violated), so the
//! repair and the evaluation agree to the last bit. Each user ranks the servers by
//! decreasing logit (ties: lower index first; NaN as −∞). With n users:
//!
//! 0. **Check.** If the policy's association fits everywhere: [`RepairOutcome::Clean`].
//!    If some user fits on no server even alone, no association can be feasible
//!    (adding non-negative loads never lowers a floating-point sum):
//!    [`RepairOutcome::Infeasible`].
//! 1. **Greedy.** While a server is over capacity, among all users on over-capacity
//!    servers and all servers where the user still fits, make the move that loses
//!    the least logit (logit of the current server minus logit of the target; ties:
//!    lowest user index, then lowest server index). The target still fits after
//!    the move (checked on the exact sums; a move that fails that check stops the
//!    greedy) and the source only loses load, so each move takes one user off the
//!    over-capacity servers for good: after at most n moves the greedy has either
//!    succeeded or found no move.
//! 2. **Search**, only when the greedy is stuck: an exact depth-first branch search
//!    from scratch. Users are placed in order of decreasing mean relative load
//!    Σ_s (a_cmp(u, s)/q_s + a_syn(u, s)/p_s) (ties: lower index first), each
//!    trying its servers in its rank order. A placement that pushes a server's
//!    partial sum over its capacity by more than a relative 8·n·ε cuts the branch
//!    (the slack exceeds the rounding difference between any two orders of
//!    summation, so no association feasible by [`evaluate`](crate::evaluate)'s sums is ever cut); a
//!    complete association is accepted only after the exact check. The association
//!    found is thus the first feasible one in the lexicographic order of the users'
//!    ranks, heaviest user first. Each placement tried is one node, at most
//!    [`MAX_REPAIR_NODES`]. A search that finishes without an association proves
//!    that none is feasible ([`RepairOutcome::Infeasible`]); one that hits the
//!    budget gives [`RepairOutcome::BoundReached`].
//! 3. **Climb.** After step 1 or 2 found a feasible association, each user in turn
//!    (by index) moves to the highest-ranked server it prefers to its current one
//!    where it fits; passes repeat until one moves nobody, at most
//!    [`MAX_CLIMB_PASSES`] times ([`Decision::settled`](super::Decision::settled) says which). Every move
//!    keeps the association feasible.
//!
//! The code keeps these steps as written; its comments say how.

use core::cell::Cell;

use super::RepairOutcome;
use crate::model::{Load, ZeroFactors};
use crate::params::Params;
use crate::slot::Slot;

/// Most placements the exact search (step 2) tries in one slot.
pub const MAX_REPAIR_NODES: usize = 4096;

/// Most passes of the climb (step 3) back towards the users' preferred servers.
pub const MAX_CLIMB_PASSES: usize = 4;

/// What the repair did.
pub(super) struct Outcome {
    /// The outcome.
    pub repair: RepairOutcome,
    /// Nodes the search tried.
    pub nodes: usize,
    /// False when the climb stopped at [`MAX_CLIMB_PASSES`] with users still moving.
    pub settled: bool,
}

/// A move of the greedy (step 1).
#[derive(Clone, Copy)]
struct Move {
    /// The logit the user loses.
    loss: f64,
    user: usize,
    /// The server it moves to.
    to: usize,
}

/// How the exact search ended.
enum Search {
    Found,
    Exhausted,
    Budget,
}

/// A zero load, for the table's initialisation.
const ZERO_LOAD: Load = Load {
    cmp: 0.0,
    syn: 0.0,
    total: 0.0,
};

/// The repair of one slot: the status, the parameters and the policy's logits.
pub(super) struct Repair<'a, const U: usize, const S: usize> {
    pub(super) params: &'a Params,
    pub(super) slot: &'a Slot<U, S>,
    /// User-major logits, `n_users · n_servers` of them.
    logits: &'a [f32],
    n_users: usize,
    pub(super) n_servers: usize,
    /// 1 + 8·n·ε: the search prunes a partial sum only above capacity × this.
    slack: f64,
    /// `loads[u][s]`: what user u puts on server s at γ = 0, computed the first
    /// time a step asks for it (`known[u][s]`) from the per-user and per-server
    /// `factors`, and kept (every step asks for these many times over; U·S·25
    /// bytes of stack). A slot whose argmax fits reads only the columns of the
    /// occupied servers, which the consolidation moves users to: on a target
    /// without an f64 FPU each load is a dozen library calls.
    loads: [[Cell<Load>; S]; U],
    known: [[Cell<bool>; S]; U],
    factors: ZeroFactors<U, S>,
}

impl<'a, const U: usize, const S: usize> Repair<'a, U, S> {
    pub(super) fn new(params: &'a Params, slot: &'a Slot<U, S>, logits: &'a [f32]) -> Self {
        let n_users = slot.users().len();
        Repair {
            params,
            slot,
            logits,
            n_users,
            n_servers: slot.servers().len(),
            slack: 1.0 + 8.0 * n_users as f64 * f64::EPSILON,
            loads: [const { [const { Cell::new(ZERO_LOAD) }; S] }; U],
            known: [const { [const { Cell::new(false) }; S] }; U],
            factors: ZeroFactors::new(params, slot),
        }
    }

    // -----------------------------------------------------------------------------
    // Ranks
    // -----------------------------------------------------------------------------

    /// The logit of user `u` on server `s`, NaN (or missing) as −∞.
    pub(super) fn key(&self, u: usize, s: usize) -> f32 {
        match self.logits.get(u * self.n_servers + s) {
            Some(&v) if !v.is_nan() => v,
            _ => f32::NEG_INFINITY,
        }
    }

    /// Whether user `u` ranks server `a` before server `b` (larger logit first,
    /// ties to the lower index).
    pub(super) fn before(&self, u: usize, a: usize, b: usize) -> bool {
        let (ka, kb) = (self.key(u, a), self.key(u, b));
        ka > kb || (ka == kb && a < b)
    }

    /// The available server user `u` ranks right after `after` (`None`: its
    /// first server). Unavailable servers are never ranked (SPEC §2.2a).
    fn next(&self, u: usize, after: Option<usize>) -> Option<usize> {
        let mut best = None;
        for s in (0..self.n_servers).filter(|&s| self.slot.available(s)) {
            let later = after.is_none_or(|a| self.before(u, a, s));
            if later && best.is_none_or(|b| self.before(u, s, b)) {
                best = Some(s);
            }
        }
        best
    }

    /// The available server user `u` ranks first: the largest logit, ties to the
    /// lowest index (a slot always has one available server, [`Slot::new`]).
    pub(super) fn best(&self, u: usize) -> usize {
        self.next(u, None).unwrap_or(0)
    }

    /// The logit user `u` loses moving from `s` to `t` (never NaN: equal keys,
    /// infinite ones included, lose 0).
    fn loss(&self, u: usize, s: usize, t: usize) -> f64 {
        let (a, b) = (f64::from(self.key(u, s)), f64::from(self.key(u, t)));
        if a == b {
            0.0
        } else {
            a - b
        }
    }

    // -----------------------------------------------------------------------------
    // Loads and capacities
    // -----------------------------------------------------------------------------

    /// The loads user `u` puts on server `s` at γ = 0 ([`Load::at_zero`] to the
    /// last bit, computed on the first call for the pair).
    pub(super) fn load(&self, u: usize, s: usize) -> Load {
        let (Some(known), Some(load)) = (
            self.known.get(u).and_then(|row| row.get(s)),
            self.loads.get(u).and_then(|row| row.get(s)),
        ) else {
            return Load::default();
        };
        if !known.get() {
            load.set(self.factors.load(self.params, self.slot, u, s));
            known.set(true);
        }
        load.get()
    }

    /// Whether `sum` on server `s` breaks C2 or C3 ([`Load::fits`]); on an
    /// unavailable server every load is over (it hosts nobody, SPEC §2.2a), so
    /// every step that keeps the capacities keeps availability too.
    pub(super) fn over(&self, s: usize, sum: Load) -> bool {
        self.slot
            .servers()
            .get(s)
            .is_some_and(|srv| !srv.available || !sum.fits(srv))
    }

    /// Whether a partial sum on `s` exceeds the capacity by more than any rounding
    /// difference between orders of summation: then every association that puts
    /// these users on `s` is over capacity as [`crate::evaluate`] sums it.
    fn over_with_slack(&self, s: usize, sum: Load) -> bool {
        self.slot
            .servers()
            .get(s)
            .is_some_and(|srv| !srv.available || !sum.fits_with_slack(srv, self.slack))
    }

    /// The sums of server `s` under `assoc`, in user order (as [`crate::evaluate`]).
    pub(super) fn server_sum(&self, assoc: &[usize], s: usize) -> Load {
        assoc
            .iter()
            .enumerate()
            .filter(|&(_, &a)| a == s)
            .map(|(u, _)| self.load(u, s))
            .sum()
    }

    /// The sums of every server under `assoc`, in user order.
    pub(super) fn sums(&self, assoc: &[usize]) -> [Load; S] {
        let mut sums = [Load::default(); S];
        for (u, &s) in assoc.iter().enumerate() {
            if let Some(sum) = sums.get_mut(s) {
                *sum = *sum + self.load(u, s);
            }
        }
        sums
    }

    /// Whether some available server of `sums` breaks C2 or C3 (an unavailable
    /// one is always empty: no step places a user there).
    fn any_over(&self, sums: &[Load; S]) -> bool {
        sums.iter()
            .take(self.n_servers)
            .enumerate()
            .any(|(s, &sum)| self.slot.available(s) && self.over(s, sum))
    }

    /// Moves user `u` to server `t` if the exact sums of `t` then fit, updating
    /// `sums`; returns whether it moved.
    pub(super) fn try_move(
        &self,
        assoc: &mut [usize],
        sums: &mut [Load; S],
        u: usize,
        t: usize,
    ) -> bool {
        let Some(&s) = assoc.get(u) else {
            return false;
        };
        self.place(assoc, sums, u, s, t);
        // The estimate that chose `t` added u's load last; the exact sum adds it in
        // user order and can differ in the last bit. Undo if it does.
        if sums.get(t).is_some_and(|&sum| self.over(t, sum)) {
            self.place(assoc, sums, u, t, s);
            return false;
        }
        true
    }

    /// Moves user `u` from `from` to `to` and recomputes the exact sums of both.
    fn place(&self, assoc: &mut [usize], sums: &mut [Load; S], u: usize, from: usize, to: usize) {
        if let Some(a) = assoc.get_mut(u) {
            *a = to;
        }
        for v in [from, to] {
            let sum = self.server_sum(assoc, v);
            if let Some(slot) = sums.get_mut(v) {
                *slot = sum;
            }
        }
    }

    // -----------------------------------------------------------------------------
    // The steps
    // -----------------------------------------------------------------------------

    /// Repairs `assoc` (which holds `argmax`, the users' first servers) and returns
    /// what happened. `assoc` is feasible after `Clean` and `Repaired`, and equal
    /// to `argmax` after `Infeasible` and `BoundReached`.
    pub(super) fn run(&self, argmax: &[usize], assoc: &mut [usize]) -> Outcome {
        let mut sums = self.sums(assoc);
        if !self.any_over(&sums) {
            return Outcome {
                repair: RepairOutcome::Clean,
                nodes: 0,
                settled: true,
            };
        }
        // Step 0: a user that fits nowhere alone makes every association infeasible
        // (a floating-point sum of non-negative terms is at least each term).
        let lonely =
            (0..self.n_users).any(|u| (0..self.n_servers).all(|s| self.over(s, self.load(u, s))));
        let mut nodes = 0;
        let outcome = if lonely {
            RepairOutcome::Infeasible
        } else if self.greedy(assoc, &mut sums) {
            RepairOutcome::Repaired
        } else {
            match self.search(assoc, &mut nodes) {
                Search::Found => RepairOutcome::Repaired,
                Search::Exhausted => RepairOutcome::Infeasible,
                Search::Budget => RepairOutcome::BoundReached,
            }
        };
        let mut settled = true;
        if outcome == RepairOutcome::Repaired {
            let mut sums = self.sums(assoc);
            settled = self.climb(assoc, &mut sums);
        } else {
            for (a, &b) in assoc.iter_mut().zip(argmax) {
                *a = b;
            }
        }
        Outcome {
            repair: outcome,
            nodes,
            settled,
        }
    }

    /// Step 1: cheapest moves off over-capacity servers; true when every server
    /// fits. Each move takes a user off the over-capacity servers for good (its
    /// target fits exactly, its source only loses load), so n + 1 rounds suffice.
    fn greedy(&self, assoc: &mut [usize], sums: &mut [Load; S]) -> bool {
        for _ in 0..=self.n_users {
            if !self.any_over(sums) {
                return true;
            }
            let mut best: Option<Move> = None;
            for (u, &s) in assoc.iter().enumerate() {
                if !sums.get(s).is_some_and(|&sum| self.over(s, sum)) {
                    continue;
                }
                for (t, &sum) in sums.iter().enumerate().take(self.n_servers) {
                    if t == s {
                        continue;
                    }
                    // The cheap test first: most moves lose more than the best so far.
                    let loss = self.loss(u, s, t);
                    if best.is_some_and(|b| loss >= b.loss) || self.over(t, sum + self.load(u, t)) {
                        continue;
                    }
                    best = Some(Move {
                        loss,
                        user: u,
                        to: t,
                    });
                }
            }
            let Some(Move { user, to, .. }) = best else {
                return false;
            };
            if !self.try_move(assoc, sums, user, to) {
                return false;
            }
        }
        !self.any_over(sums)
    }

    /// The users in search order: decreasing mean relative load, ties to the lower
    /// index (insertion sort, n² comparisons).
    fn order(&self) -> heapless::Vec<usize, U> {
        let mut weights = [0.0f64; U];
        for (u, w) in weights.iter_mut().enumerate().take(self.n_users) {
            *w = self
                .slot
                .servers()
                .iter()
                .enumerate()
                .map(|(s, srv)| self.load(u, s).relative(srv))
                .sum::<f64>();
        }
        let weight = |u: usize| weights.get(u).copied().unwrap_or(0.0);
        let mut order: heapless::Vec<usize, U> = heapless::Vec::new();
        for u in 0..self.n_users {
            // Before the first user that weighs strictly less (`total_cmp` order;
            // a NaN weight, only from NaN loads, sorts at one end).
            let at = order
                .iter()
                .position(|&v| weight(u).total_cmp(&weight(v)).is_gt())
                .unwrap_or(order.len());
            // Capacity U ≥ n_users (the slot holds n_users), so this never fails.
            if order.insert(at, u).is_err() {
                break;
            }
        }
        order
    }

    /// Step 2: exact depth-first search with capacity pruning, at most
    /// [`MAX_REPAIR_NODES`] placements. On `Found`, `assoc` is feasible.
    // The search indexes its stacks by depth < n ≤ U and its sums by a server
    // s < m ≤ S (both asserted): a `.get()` with a fallback result here would only
    // turn a bug into a plausible wrong outcome. No untrusted bytes reach it.
    #[allow(clippy::indexing_slicing)]
    fn search(&self, assoc: &mut [usize], nodes: &mut usize) -> Search {
        let n = self.n_users;
        let order = self.order();
        debug_assert!(n <= U && order.len() == n && assoc.len() == n);
        if n == 0 {
            return Search::Exhausted; // never called: an empty slot is `Clean`
        }
        // choice[d]: server of the user at depth d (None: not placed yet);
        // saved[d]: that server's partial sum before the placement.
        let mut choice: [Option<usize>; U] = [None; U];
        let mut saved = [Load::default(); U];
        let mut sums = [Load::default(); S];
        let mut depth = 0;
        loop {
            let u = order[depth];
            let Some(s) = self.next(u, choice[depth]) else {
                // Every server of this user tried: back to the previous user and
                // undo its placement (its next server is tried in the next step).
                choice[depth] = None;
                let Some(up) = depth.checked_sub(1) else {
                    return Search::Exhausted;
                };
                depth = up;
                if let Some(s) = choice[depth] {
                    sums[s] = saved[depth];
                }
                continue;
            };
            if *nodes >= MAX_REPAIR_NODES {
                return Search::Budget;
            }
            *nodes += 1;
            choice[depth] = Some(s);
            debug_assert!(s < self.n_servers);
            let placed = sums[s] + self.load(u, s);
            if self.over_with_slack(s, placed) {
                continue;
            }
            saved[depth] = sums[s];
            if depth + 1 < n {
                sums[s] = placed;
                depth += 1;
                continue;
            }
            // A complete association: accept it only if the exact sums fit.
            for (&v, c) in order.iter().zip(&choice) {
                if let Some(server) = *c {
                    assoc[v] = server;
                }
            }
            if !self.any_over(&self.sums(assoc)) {
                return Search::Found;
            }
        }
    }

    /// Step 3: users move back up their ranks while they fit, at most
    /// [`MAX_CLIMB_PASSES`] passes; `assoc` stays feasible. True when a pass moved
    /// nobody.
    fn climb(&self, assoc: &mut [usize], sums: &mut [Load; S]) -> bool {
        for _ in 0..MAX_CLIMB_PASSES {
            let mut moved = false;
            for u in 0..self.n_users {
                let Some(&s) = assoc.get(u) else {
                    break;
                };
                let mut best = None;
                for (t, &sum) in sums.iter().enumerate().take(self.n_servers) {
                    if self.before(u, t, s)
                        && best.is_none_or(|b| self.before(u, t, b))
                        && !self.over(t, sum + self.load(u, t))
                    {
                        best = Some(t);
                    }
                }
                if let Some(t) = best {
                    moved |= self.try_move(assoc, sums, u, t);
                }
            }
            if !moved {
                return true;
            }
        }
        false
    }
}

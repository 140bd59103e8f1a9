//! The association repair of the [controller](super): check, greedy, exact search,
//! climb, and the consolidation after it. The algorithm and its guarantee are documented in the module docs of
//! [`crate::controller`]; the comments here only say how the code keeps them.

use super::{RepairOutcome, MAX_CLIMB_PASSES, MAX_REPAIR_NODES};
use crate::model::Load;
use crate::params::Params;
use crate::slot::Slot;

/// Margin of the consolidation's pruning: far above the rounding of a sum of at
/// most S norms in [0, 1] (below 1e-13), far below any fall worth a server.
const PRUNE_MARGIN: f64 = 1e-9;

/// What the repair did.
pub(super) struct Outcome {
    /// The outcome.
    pub repair: RepairOutcome,
    /// Nodes the search tried.
    pub nodes: usize,
    /// False when the climb stopped at [`MAX_CLIMB_PASSES`] with users still moving.
    pub settled: bool,
}

/// How the exact search ended.
enum Search {
    Found,
    Exhausted,
    Budget,
}

/// The repair of one slot: the status, the parameters and the policy's logits.
pub(super) struct Repair<'a, const U: usize, const S: usize> {
    params: &'a Params,
    slot: &'a Slot<U, S>,
    /// User-major logits, `n_users · n_servers` of them.
    logits: &'a [f32],
    n_users: usize,
    n_servers: usize,
    /// 1 + 8·n·ε: the search prunes a partial sum only above capacity × this.
    slack: f64,
    /// `loads[u][s]`: what user u puts on server s at γ = 0, computed once per slot
    /// (every step asks for these many times over; U·S·24 bytes of stack).
    loads: [[Load; S]; U],
}

impl<'a, const U: usize, const S: usize> Repair<'a, U, S> {
    pub(super) fn new(params: &'a Params, slot: &'a Slot<U, S>, logits: &'a [f32]) -> Self {
        let n_users = slot.users().len();
        let rate = params.rate_bps();
        let mut loads = [[Load::default(); S]; U];
        for (user, row) in slot.users().iter().zip(loads.iter_mut()) {
            for (s, load) in row.iter_mut().enumerate().take(slot.servers().len()) {
                *load = Load::at_zero(params, slot, user, s, rate);
            }
        }
        Repair {
            params,
            slot,
            logits,
            n_users,
            n_servers: slot.servers().len(),
            slack: 1.0 + 8.0 * n_users as f64 * f64::EPSILON,
            loads,
        }
    }

    // -----------------------------------------------------------------------------
    // Ranks
    // -----------------------------------------------------------------------------

    /// The logit of user `u` on server `s`, NaN (or missing) as −∞.
    fn key(&self, u: usize, s: usize) -> f32 {
        match self.logits.get(u * self.n_servers + s) {
            Some(&v) if !v.is_nan() => v,
            _ => f32::NEG_INFINITY,
        }
    }

    /// Whether user `u` ranks server `a` before server `b` (larger logit first,
    /// ties to the lower index).
    fn before(&self, u: usize, a: usize, b: usize) -> bool {
        let (ka, kb) = (self.key(u, a), self.key(u, b));
        ka > kb || (ka == kb && a < b)
    }

    /// The server user `u` ranks right after `after` (`None`: its first server).
    fn next(&self, u: usize, after: Option<usize>) -> Option<usize> {
        let mut best = None;
        for s in 0..self.n_servers {
            let later = after.is_none_or(|a| self.before(u, a, s));
            if later && best.is_none_or(|b| self.before(u, s, b)) {
                best = Some(s);
            }
        }
        best
    }

    /// The server user `u` ranks first: the largest logit, ties to the lowest index.
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

    /// The loads user `u` puts on server `s` at γ = 0 ([`Load::at_zero`], computed
    /// once in [`Repair::new`]).
    fn load(&self, u: usize, s: usize) -> Load {
        self.loads
            .get(u)
            .and_then(|row| row.get(s))
            .copied()
            .unwrap_or_default()
    }

    /// Whether `sum` on server `s` breaks C2 or C3 ([`Load::fits`]).
    fn over(&self, s: usize, sum: Load) -> bool {
        self.slot.servers().get(s).is_some_and(|srv| !sum.fits(srv))
    }

    /// Whether a partial sum on `s` exceeds the capacity by more than any rounding
    /// difference between orders of summation: then every association that puts
    /// these users on `s` is over capacity as [`crate::evaluate`] sums it.
    fn over_with_slack(&self, s: usize, sum: Load) -> bool {
        self.slot
            .servers()
            .get(s)
            .is_some_and(|srv| !sum.fits_with_slack(srv, self.slack))
    }

    /// The sums of server `s` under `assoc`, in user order (as [`crate::evaluate`]).
    fn server_sum(&self, assoc: &[usize], s: usize) -> Load {
        assoc
            .iter()
            .enumerate()
            .filter(|&(_, &a)| a == s)
            .map(|(u, _)| self.load(u, s))
            .sum()
    }

    /// The sums of every server under `assoc`, in user order.
    fn sums(&self, assoc: &[usize]) -> [Load; S] {
        let mut sums = [Load::default(); S];
        for (u, &s) in assoc.iter().enumerate() {
            if let Some(sum) = sums.get_mut(s) {
                *sum = *sum + self.load(u, s);
            }
        }
        sums
    }

    /// Whether some server of `sums` breaks C2 or C3.
    fn any_over(&self, sums: &[Load; S]) -> bool {
        sums.iter()
            .take(self.n_servers)
            .enumerate()
            .any(|(s, &sum)| self.over(s, sum))
    }

    /// Moves user `u` to server `t` if the exact sums of `t` then fit, updating
    /// `sums`; returns whether it moved.
    fn try_move(&self, assoc: &mut [usize], sums: &mut [Load; S], u: usize, t: usize) -> bool {
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
            let mut best: Option<(f64, usize, usize)> = None;
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
                    if best.is_some_and(|(b, _, _)| loss >= b)
                        || self.over(t, sum + self.load(u, t))
                    {
                        continue;
                    }
                    best = Some((loss, u, t));
                }
            }
            let Some((_, u, t)) = best else {
                return false;
            };
            if !self.try_move(assoc, sums, u, t) {
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
    fn search(&self, assoc: &mut [usize], nodes: &mut usize) -> Search {
        let n = self.n_users;
        let order = self.order();
        // choice[d]: server of the user at depth d (None: not placed yet);
        // saved[d]: that server's partial sum before the placement.
        let mut choice: heapless::Vec<Option<usize>, U> = heapless::Vec::new();
        let mut saved: heapless::Vec<Load, U> = heapless::Vec::new();
        if choice.resize(n, None).is_err() || saved.resize(n, Load::default()).is_err() {
            return Search::Budget; // never: the slot holds n ≤ U users
        }
        let mut sums = [Load::default(); S];
        let mut depth = 0;
        loop {
            let Some(&u) = order.get(depth) else {
                return Search::Exhausted; // never: depth < n
            };
            let current = choice.get(depth).copied().flatten();
            let Some(s) = self.next(u, current) else {
                // Every server of this user tried: back to the previous user and
                // undo its placement (its next server is tried in the next step).
                if let Some(c) = choice.get_mut(depth) {
                    *c = None;
                }
                let Some(up) = depth.checked_sub(1) else {
                    return Search::Exhausted;
                };
                depth = up;
                if let (Some(Some(s)), Some(&prev)) = (choice.get(depth), saved.get(depth)) {
                    if let Some(sum) = sums.get_mut(*s) {
                        *sum = prev;
                    }
                }
                continue;
            };
            if *nodes >= MAX_REPAIR_NODES {
                return Search::Budget;
            }
            *nodes += 1;
            if let Some(c) = choice.get_mut(depth) {
                *c = Some(s);
            }
            let Some(sum) = sums.get_mut(s) else {
                continue; // never: s < n_servers ≤ S
            };
            let placed = *sum + self.load(u, s);
            if self.over_with_slack(s, placed) {
                continue;
            }
            if let Some(prev) = saved.get_mut(depth) {
                *prev = *sum;
            }
            if depth + 1 < n {
                *sum = placed;
                depth += 1;
                continue;
            }
            // A complete association: accept it only if the exact sums fit.
            for (&v, c) in order.iter().zip(&choice) {
                if let (Some(a), Some(server)) = (assoc.get_mut(v), c) {
                    *a = *server;
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

    /// Step 4: while some occupied server can be emptied into the other occupied
    /// servers so that the cost term Σ_s Norm(C_s) at γ = 0 falls, empties the one
    /// whose emptying lowers it most (ties: the lowest index); returns how many
    /// servers it emptied. `assoc` must fit everywhere; it still does after. Each
    /// round empties one server or ends the step, so there are at most m rounds.
    pub(super) fn consolidate(&self, assoc: &mut [usize]) -> usize {
        self.consolidate_with(assoc, true)
    }

    /// [`Repair::consolidate`], with the pruning of tries that cannot win on or off
    /// (off only in the test that checks the pruning changes nothing).
    pub(super) fn consolidate_with(&self, assoc: &mut [usize], prune: bool) -> usize {
        let n = assoc.len();
        let mut sums = self.sums(assoc);
        let mut emptied = 0;
        for _ in 0..self.n_servers {
            let mut count = [0usize; S];
            for &s in assoc.iter() {
                if let Some(c) = count.get_mut(s) {
                    *c += 1;
                }
            }
            // Each server's Norm once per round (every try reuses them). A try
            // lowers the cost term by at most its own server's Norm, since the
            // other servers only gain load; so the candidates go by decreasing
            // Norm, and one whose Norm is below the best fall so far by more than
            // any rounding of these sums (PRUNE_MARGIN) cannot win and is skipped.
            let mut norms = [0.0f64; S];
            for (v, sum) in norms.iter_mut().zip(sums.iter()).take(self.n_servers) {
                *v = crate::model::norm(self.params, sum.total);
            }
            let norm_of = |s: usize| norms.get(s).copied().unwrap_or(f64::NAN);
            let mut order: heapless::Vec<usize, S> = heapless::Vec::new();
            for (s, &k) in count.iter().enumerate().take(self.n_servers) {
                if k == 0 || k == n {
                    continue;
                }
                // Before the first of smaller Norm (`total_cmp` order; a NaN Norm,
                // only from NaN loads, sorts at one end and is never skipped).
                let at = order
                    .iter()
                    .position(|&v| norm_of(s).total_cmp(&norm_of(v)).is_gt())
                    .unwrap_or(order.len());
                if order.insert(at, s).is_err() {
                    return emptied; // never: at most m ≤ S servers
                }
            }
            // The best emptying of this round: (drop, server, association, sums);
            // ties go to the lower server index, as in a scan by index.
            let mut best: Option<(f64, usize, [usize; U], [Load; S])> = None;
            for &s in &order {
                if prune
                    && best
                        .as_ref()
                        .is_some_and(|b| norm_of(s) + PRUNE_MARGIN < b.0)
                {
                    continue;
                }
                let mut trial = [0usize; U];
                let Some(slice) = trial.get_mut(..n) else {
                    return emptied; // never: assoc holds n ≤ U users
                };
                slice.copy_from_slice(assoc);
                let mut trial_sums = sums;
                if let Some(drop) = self.try_empty(s, &count, &norms, slice, &mut trial_sums) {
                    if best
                        .as_ref()
                        .is_none_or(|b| drop > b.0 || (drop == b.0 && s < b.1))
                    {
                        best = Some((drop, s, trial, trial_sums));
                    }
                }
            }
            let Some((_, _, trial, trial_sums)) = best else {
                break;
            };
            if let Some(slice) = trial.get(..n) {
                assoc.copy_from_slice(slice);
            }
            sums = trial_sums;
            emptied += 1;
        }
        emptied
    }

    /// Moves every user of server `s` in `assoc` to the occupied server (by
    /// `count`) it ranks highest among those where it still fits, heaviest user
    /// first, updating `sums`. Returns how much the cost term Σ Norm(C_s) at γ = 0
    /// of the servers involved falls, when every user found a place and it falls
    /// (`assoc` and `sums` are then the emptied association's), else `None`
    /// (they are then to be discarded).
    fn try_empty(
        &self,
        s: usize,
        count: &[usize; S],
        norms: &[f64; S],
        assoc: &mut [usize],
        sums: &mut [Load; S],
    ) -> Option<f64> {
        let srv = self.slot.servers().get(s)?;
        // The users of s, heaviest first by relative load on s (insertion sort,
        // ties to the lower index): the large ones are placed while room is left.
        let weight = |u: usize| self.load(u, s).relative(srv);
        let mut users: heapless::Vec<usize, U> = heapless::Vec::new();
        for (u, _) in assoc.iter().enumerate().filter(|&(_, &a)| a == s) {
            let at = users
                .iter()
                .position(|&v| weight(u).total_cmp(&weight(v)).is_gt())
                .unwrap_or(users.len());
            users.insert(at, u).ok()?; // never fails: assoc holds n ≤ U users
        }
        let mut touched = [false; S];
        for &u in &users {
            let mut best = None;
            for (t, &sum) in sums.iter().enumerate().take(self.n_servers) {
                if t != s
                    && count.get(t).is_some_and(|&c| c > 0)
                    && best.is_none_or(|b| self.before(u, t, b))
                    && !self.over(t, sum + self.load(u, t))
                {
                    best = Some(t);
                }
            }
            let t = best?;
            if !self.try_move(assoc, sums, u, t) {
                return None;
            }
            *touched.get_mut(t)? = true;
        }
        *touched.get_mut(s)? = true;
        // Σ Norm over the servers involved, before (`norms`, of the sums this
        // try started from) and after (s is empty after; a NaN sum compares
        // false and keeps the association).
        let norm = |sum: &Load| crate::model::norm(self.params, sum.total);
        let (mut was, mut is) = (0.0, 0.0);
        for ((&flag, &old), new) in touched.iter().zip(norms.iter()).zip(sums.iter()) {
            if flag {
                was += old;
                is += norm(new);
            }
        }
        (is < was).then_some(was - is)
    }
}

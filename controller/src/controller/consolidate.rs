//! Step 4 of the [controller](super), after the [repair](super::repair): the
//! consolidation, on after the repair's `Clean` or `Repaired` unless switched off
//! with [`Controller::set_consolidation`](super::Controller::set_consolidation).
//!
//! Norm is concave with Norm(0) = 0, so the same loads cost less on fewer servers,
//! and e rewards packing users onto few servers; a per-user policy, each user
//! choosing on its own, leaves servers with a user or two that the others could
//! absorb. So, in rounds: for each occupied server (that does not hold every
//! user), try to empty it: move its users, heaviest first (relative load
//! a_cmp/q + a_syn/p on it, [`Load::relative`]; ties: lower index), each to the
//! occupied server it ranks highest among those where it still fits (the current
//! exact sum plus its load; if the exact sum in user order then breaks the
//! capacity, the try is abandoned); the try counts when every user found a place
//! and the cost term Σ Norm(C_s) at γ = 0 (C_s with migration, on the servers
//! involved) falls strictly. Of the tries that count, keep the one with the
//! largest fall (ties: lower server index) and start the next round. A round
//! where none counts ends the step; each other round empties one server, so there
//! are at most m rounds ([`Decision::emptied`](super::Decision::emptied) counts
//! the emptied servers). Every move keeps the association feasible.
//!
//! A try lowers the cost term by at most its own server's Norm, since the other
//! servers only gain load; so the candidates go by decreasing Norm, and one whose
//! Norm is below the best fall so far by more than any rounding of these sums
//! ([`PRUNE_MARGIN`]) cannot win and is not tried.
//!
//! The step is a heuristic: the cost term at γ = 0 stands in for e, which it does
//! not re-solve (what it gains on the shipped policies: `RESULTS.md`).

use super::repair::Repair;
use crate::model::Load;

/// Margin of the pruning: far above the rounding of a sum of at most S norms in
/// [0, 1] (below 1e-13), far below any fall worth a server.
pub const PRUNE_MARGIN: f64 = 1e-9;

/// A try that emptied a server, and what it left.
struct Emptying<const U: usize, const S: usize> {
    /// How much the cost term Σ Norm(C_s) at γ = 0 fell.
    fall: f64,
    /// The server emptied.
    server: usize,
    /// The association after it (its first n entries).
    assoc: [usize; U],
    /// The servers' sums after it.
    sums: [Load; S],
}

impl<const U: usize, const S: usize> Repair<'_, U, S> {
    /// Step 4: while some occupied server can be emptied into the other occupied
    /// servers so that the cost term Σ_s Norm(C_s) at γ = 0 falls, empties the one
    /// whose emptying lowers it most (ties: the lowest index); returns how many
    /// servers it emptied. `assoc` must fit everywhere; it still does after. Each
    /// round empties one server or ends the step, so there are at most m rounds.
    pub(super) fn consolidate(&self, assoc: &mut [usize]) -> usize {
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
            // Each server's Norm once per round (every try reuses them); the
            // candidates by decreasing Norm, for the pruning of the module docs.
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
                    debug_assert!(false, "more than S servers to order");
                    return emptied; // never: at most m ≤ S servers
                }
            }
            // The best emptying of this round; ties go to the lower server index,
            // as in a scan by index.
            let mut best: Option<Emptying<U, S>> = None;
            for &s in &order {
                if best
                    .as_ref()
                    .is_some_and(|b| norm_of(s) + PRUNE_MARGIN < b.fall)
                {
                    continue;
                }
                let mut trial = [0usize; U];
                let Some(slice) = trial.get_mut(..n) else {
                    debug_assert!(false, "an association of more than U users");
                    return emptied; // never: assoc holds n ≤ U users
                };
                slice.copy_from_slice(assoc);
                let mut trial_sums = sums;
                if let Some(fall) = self.try_empty(s, &count, &norms, slice, &mut trial_sums) {
                    if best
                        .as_ref()
                        .is_none_or(|b| fall > b.fall || (fall == b.fall && s < b.server))
                    {
                        best = Some(Emptying {
                            fall,
                            server: s,
                            assoc: trial,
                            sums: trial_sums,
                        });
                    }
                }
            }
            let Some(best) = best else {
                break;
            };
            if let Some(slice) = best.assoc.get(..n) {
                assoc.copy_from_slice(slice);
            }
            sums = best.sums;
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
    pub(super) fn try_empty(
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

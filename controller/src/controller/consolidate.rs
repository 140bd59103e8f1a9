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
//! involved) falls by more than [`TIE_MARGIN`]. Of the tries that count, keep
//! the one with the lowest server index among those whose fall is within
//! [`TIE_MARGIN`] of the largest (the largest fall, ties to the lower index)
//! and start the next round. A round
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

/// Falls of the cost term closer than this are equal, and a fall must exceed it
/// to count. Mirror-image tries (two servers that would each take the other's
/// users, at the same distance) fall by the same amount up to rounding, and the
/// last bits of `tanh` and of the loads' `exp`/`ln` differ between math
/// libraries (the feature `host-math` against the firmware's `libm`): with a
/// strict comparison such a tie went to whichever try rounded up, and the host
/// and the firmware emptied different servers. Above the rounding of these sums
/// (below 1e-13), below [`PRUNE_MARGIN`].
pub const TIE_MARGIN: f64 = 1e-12;

/// A try that emptied a server, and what it left.
#[derive(Clone, Copy)]
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
        let mut emptied = 0;
        let done = self.rounds(assoc, &mut emptied);
        debug_assert!(done.is_some(), "an index out of range in the consolidation");
        emptied
    }

    /// The rounds of [`Repair::consolidate`], counting the emptied servers in
    /// `emptied`; `None` only on an index out of range (never: `assoc` holds
    /// n ≤ U users of the m ≤ S servers).
    fn rounds(&self, assoc: &mut [usize], emptied: &mut usize) -> Option<()> {
        let (n, m) = (assoc.len(), self.n_servers);
        let mut sums = self.sums(assoc);
        let mut count = [0usize; S];
        for &s in assoc.iter() {
            *count.get_mut(s)? += 1;
        }
        // Each server's Norm, which every try reuses; a round changes only
        // those of the servers its winner emptied or filled.
        let mut norms = [0.0f64; S];
        for (v, sum) in norms.iter_mut().zip(sums.iter()).take(m) {
            *v = crate::model::norm(self.params, sum.total);
        }
        for _ in 0..m {
            let norm_of = |s: usize| norms.get(s).copied().unwrap_or(f64::NAN);
            // The occupied servers by index (the tries' targets), and the
            // candidates by decreasing Norm, for the pruning of the module docs
            // (`total_cmp` order; a NaN Norm, only from NaN loads, sorts at one
            // end and is never skipped).
            let mut occupied: heapless::Vec<usize, S> = heapless::Vec::new();
            let mut order: heapless::Vec<usize, S> = heapless::Vec::new();
            for (s, &k) in count.iter().enumerate().take(m) {
                if k == 0 {
                    continue;
                }
                occupied.push(s).ok()?; // never fails: m ≤ S servers
                if k == n {
                    continue;
                }
                let at = order
                    .iter()
                    .position(|&v| norm_of(s).total_cmp(&norm_of(v)).is_gt())
                    .unwrap_or(order.len());
                order.insert(at, s).ok()?;
            }
            // The largest fall of this round (exact ties: the lower index) with
            // its try, and every try's fall for the ties within the margin.
            let mut best: Option<Emptying<U, S>> = None;
            let mut falls = [f64::NEG_INFINITY; S];
            let mut trial = Emptying {
                fall: 0.0,
                server: 0,
                assoc: [0usize; U],
                sums,
            };
            for &s in &order {
                if best
                    .as_ref()
                    .is_some_and(|b| norm_of(s) + PRUNE_MARGIN < b.fall)
                {
                    continue;
                }
                if let Some(fall) = self.attempt(s, &occupied, &norms, (assoc, &sums), &mut trial) {
                    *falls.get_mut(s)? = fall;
                    if best
                        .as_ref()
                        .is_none_or(|b| fall > b.fall || (fall == b.fall && s < b.server))
                    {
                        best = Some(trial);
                    }
                }
            }
            let Some(mut best) = best else {
                break;
            };
            // A lower server whose fall is within the margin of the largest wins
            // the tie; its try is made again (a pruned server's fall is far below).
            let tied = falls
                .iter()
                .take(best.server)
                .position(|&f| f >= best.fall - TIE_MARGIN);
            if let Some(s) = tied {
                self.attempt(s, &occupied, &norms, (assoc, &sums), &mut best)?;
            }
            // The servers the winner touched: itself and those its users joined.
            *count.get_mut(best.server)? = 0;
            *norms.get_mut(best.server)? = crate::model::norm(self.params, 0.0);
            for (a, &to) in assoc.iter_mut().zip(best.assoc.iter()) {
                if *a != to {
                    *a = to;
                    *count.get_mut(to)? += 1;
                    *norms.get_mut(to)? = crate::model::norm(self.params, best.sums.get(to)?.total);
                }
            }
            sums = best.sums;
            *emptied += 1;
        }
        Some(())
    }

    /// [`try_empty`](Self::try_empty) of `s` on copies of `assoc` and `sums`
    /// kept in `into`: its fall when it counts (`into` is then that emptying).
    fn attempt(
        &self,
        s: usize,
        occupied: &[usize],
        norms: &[f64; S],
        (assoc, sums): (&[usize], &[Load; S]),
        into: &mut Emptying<U, S>,
    ) -> Option<f64> {
        let slice = into.assoc.get_mut(..assoc.len())?;
        slice.copy_from_slice(assoc);
        into.sums = *sums;
        into.server = s;
        into.fall = self.try_empty(s, occupied, norms, slice, &mut into.sums)?;
        Some(into.fall)
    }

    /// Moves every user of server `s` in `assoc` to the server of `occupied` (in
    /// index order) it ranks highest among those where it still fits, heaviest
    /// user first, updating `sums`. Returns how much the cost term Σ Norm(C_s) at
    /// γ = 0 of the servers involved falls, when every user found a place and it
    /// falls (`assoc` and `sums` are then the emptied association's), else
    /// `None` (they are then to be discarded).
    fn try_empty(
        &self,
        s: usize,
        occupied: &[usize],
        norms: &[f64; S],
        assoc: &mut [usize],
        sums: &mut [Load; S],
    ) -> Option<f64> {
        let srv = self.slot.servers().get(s)?;
        // The users of s, heaviest first by relative load on s (insertion sort,
        // ties to the lower index): the large ones are placed while room is left.
        let mut users: heapless::Vec<(f64, usize), U> = heapless::Vec::new();
        for (u, _) in assoc.iter().enumerate().filter(|&(_, &a)| a == s) {
            let w = self.load(u, s).relative(srv);
            let at = users
                .iter()
                .position(|&(v, _)| w.total_cmp(&v).is_gt())
                .unwrap_or(users.len());
            users.insert(at, (w, u)).ok()?; // never fails: assoc holds n ≤ U users
        }
        let mut touched = [false; S];
        for &(_, u) in &users {
            // In index order, a later server ranks before the best so far only
            // with a larger key (`Repair::before`).
            let mut best: Option<(usize, f32)> = None;
            for &t in occupied {
                if t == s {
                    continue;
                }
                let k = self.key(u, t);
                if best.is_none_or(|(_, b)| k > b) {
                    let fits = !self.over(t, *sums.get(t)? + self.load(u, t));
                    if fits {
                        best = Some((t, k));
                    }
                }
            }
            let (t, _) = best?;
            // The exact sum in user order. With no later user on t it is the
            // estimate, which adds u last; else it can differ in the last bit.
            // s's own sum is not read again until the end, where s is empty.
            let later = assoc.get(u + 1..)?.contains(&t);
            *assoc.get_mut(u)? = t;
            let sum = if later {
                self.server_sum(assoc, t)
            } else {
                *sums.get(t)? + self.load(u, t)
            };
            if self.over(t, sum) {
                return None;
            }
            *sums.get_mut(t)? = sum;
            *touched.get_mut(t)? = true;
        }
        *touched.get_mut(s)? = true;
        *sums.get_mut(s)? = Load::default();
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
        (was - is > TIE_MARGIN).then_some(was - is)
    }
}

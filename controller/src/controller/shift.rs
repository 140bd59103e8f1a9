//! Step 7 of the [controller](super), after step 6's γ: the shift, on with the
//! consolidation ([`Controller::set_consolidation`](super::Controller::set_consolidation))
//! and [`Controller::set_shift`](super::Controller::set_shift), after the
//! repair's `Clean` or `Repaired`, under the paper's Norm (below).
//!
//! At the solved γ every user's load on every server is known, and moving one
//! user leaves every utility as it is (ρ_u depends on γ_u, not on the server).
//! So, at that γ, moving user u from server s to server t changes e by
//! c·(Norm(C_s) − Norm(C_s − load_u,s) − (Norm(C_t + load_u,t) − Norm(C_t))), the
//! Norm s sheds less the Norm t gains; Norm saturates, so the move pays when
//! u's load (its migration above all) lands on a server whose Norm is near 1
//! already. The shift takes, while one exists, the move with the largest such
//! gain above [`SHIFT_MARGIN`] (ties: lower user, then lower server) among the
//! targets the improvement also considers (an available server, not u's own,
//! occupied or u's previous server) where C2 and C3 still hold at the solved γ
//! (the target's sum plus u's load); at most n moves. The touched servers'
//! γ are then solved again by the same solver. γ could only rise from there:
//! the old γ still fits every server, and the solver's γ is each server's
//! optimum. The shift checks it anyway: unless the touched servers' shares of e
//! (each at its solved γ, its sum in user order keeping C2 and C3) rose above
//! what they were, every move is undone with its γ.
//!
//! After the improvement has climbed to a local optimum the shift finds no move:
//! such a move's exact gain, with the two servers' γ solved again, is at least
//! its gain at the old γ; the controller then skips it. It pays where the
//! improvement did not run to the end: at budget 0 (what it gains on the
//! shipped policy: `RESULTS.md`), a small budget, or a deadline.
//!
//! Under [`CostNorm::Linear`](crate::CostNorm::Linear) a move's gain at fixed γ
//! is only the user's own load there against here, which the policy already
//! weighs, and over whole episodes it gained nothing (the slots are coupled
//! through the migrations, which a per-slot gain does not see; `RESULTS.md`):
//! the controller runs it under the paper's saturating Norm only. There its
//! gain comes from moving users onto servers whose Norm is near 1: more energy
//! for the same cost term, which that Norm does not see (`RESULTS.md`).

use crate::model::{norm, norm_f32, total_bits, utility, Load, Weights, ZeroFactors};
use crate::params::Params;
use crate::slot::Slot;
use crate::solver::{AnyServerSolver, GammaSolver, SolveStats};

/// Least fall of Σ Norm(C_s) at the solved γ for which the shift moves a user:
/// far above the rounding of these sums, and a move worth a server solve (at
/// c = β2/m ≈ 0.03 it is 3·10⁻⁶ of e; the γ solver's own tolerance is 10⁻⁶, the
/// f32 solver's 10⁻⁵, which the check at the end of the step covers).
pub const SHIFT_MARGIN: f32 = 1e-4;

/// The shift's view of one slot at its solved γ. The search ranks the moves
/// by their Norms in f32 (`tanhf` on the FPU of a target without a
/// double-precision one); the loads, the capacity checks and the final check
/// are f64.
struct Shift<'a, const U: usize, const S: usize> {
    params: &'a Params,
    slot: &'a Slot<U, S>,
    /// The per-server and per-user factors of the loads.
    factors: ZeroFactors<U, S>,
    /// Each user's load on its current server at its γ.
    own: [Load; U],
    /// Each server's sum of `own`, in user order.
    sums: [Load; S],
    /// Each server's Norm(C_s), in f32.
    norms: [f32; S],
    /// How many users each server holds.
    count: [usize; S],
}

impl<const U: usize, const S: usize> Shift<'_, U, S> {
    /// What user `u` puts on server `s` at γ_u = `g`.
    fn load(&self, u: usize, s: usize, g: f64) -> Load {
        self.factors.load_at(self.params, self.slot, u, s, g)
    }

    /// Norm(`cost`) in f32.
    fn norm(&self, cost: f64) -> f32 {
        norm_f32(self.params, cost as f32)
    }

    /// Re-sums server `s` from `own` in user order and takes its Norm again.
    fn resum(&mut self, assoc: &[usize], s: usize) -> Option<()> {
        let mut sum = Load::default();
        for (u, _) in assoc.iter().enumerate().filter(|&(_, &a)| a == s) {
            sum = sum + *self.own.get(u)?;
        }
        *self.sums.get_mut(s)? = sum;
        *self.norms.get_mut(s)? = self.norm(sum.total);
        Some(())
    }

    /// The best move at the solved γ: (gain, user, target, u's load there).
    fn best(&self, assoc: &[usize], gamma: &[f64]) -> Option<(f32, usize, usize, Load)> {
        let users = self.slot.users();
        let servers = self.slot.servers();
        let mut best: Option<(f32, usize, usize, Load)> = None;
        for (u, (&s, &g)) in assoc.iter().zip(gamma).enumerate() {
            let (Some(sum), Some(own)) = (self.sums.get(s), self.own.get(u)) else {
                continue;
            };
            let shed = self.norms.get(s)? - self.norm(sum.total - own.total);
            // The target's Norm only rises: a user whose server sheds no more
            // than the best gain so far cannot beat it.
            if shed.is_nan() || shed <= best.map_or(SHIFT_MARGIN, |b| b.0) {
                continue;
            }
            let prev = users.get(u)?.prev_server;
            for (t, srv) in servers.iter().enumerate() {
                let occupied = self.count.get(t).is_some_and(|&k| k > 0);
                if t == s || !srv.available || !(occupied || prev == Some(t)) {
                    continue;
                }
                let load = self.load(u, t, g);
                let with = *self.sums.get(t)? + load;
                if !with.fits_as_number(srv) {
                    continue;
                }
                let gain = shed - (self.norm(with.total) - self.norms.get(t)?);
                if gain > best.map_or(SHIFT_MARGIN, |b| b.0) {
                    best = Some((gain, u, t, load));
                }
            }
        }
        best
    }

    /// How much e changed on the `touched` servers from `saved` (association,
    /// γ) to `assoc` at `gamma`; `None` when a touched server breaks C2 or C3
    /// (its sum in user order). Users only move between touched servers, so
    /// the touched servers hold the same users before and after, and a user
    /// whose γ did not change adds nothing to the utilities' change.
    fn change(
        &self,
        saved: (&[usize], &[f64]),
        assoc: &[usize],
        gamma: &[f64],
        touched: &[bool; S],
    ) -> Option<f64> {
        let on = |s: usize| touched.get(s).copied().unwrap_or(false);
        let mut rho = 0.0;
        for (u, (&a, (&g, &g0))) in assoc.iter().zip(gamma.iter().zip(saved.1)).enumerate() {
            if on(a) && g != g0 {
                let user = self.slot.users().get(u)?;
                rho += utility(self.params, user.emd, total_bits(user, g))
                    - utility(self.params, user.emd, total_bits(user, g0));
            }
        }
        let mut norms = 0.0;
        for (x, srv) in self
            .slot
            .servers()
            .iter()
            .enumerate()
            .filter(|&(x, _)| on(x))
        {
            let (mut now, mut was) = (Load::default(), Load::default());
            for (u, _) in assoc.iter().enumerate().filter(|&(_, &a)| a == x) {
                now = now + self.load(u, x, *gamma.get(u)?);
            }
            for (u, _) in saved.0.iter().enumerate().filter(|&(_, &a)| a == x) {
                was = was + self.load(u, x, *saved.1.get(u)?);
            }
            if !now.fits_as_number(srv) {
                return None;
            }
            norms += norm(self.params, now.total) - norm(self.params, was.total);
        }
        let weights = Weights::new(self.params, self.slot);
        Some(weights.utility * rho - weights.cost * norms)
    }
}

/// Step 7 on the feasible `assoc` with its solved `gamma` (see the module docs);
/// returns how many users it moved (0 when it found no move or undid them).
/// `kind` is step 6's γ solver, which solves the touched servers' γ again.
pub(super) fn run<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    kind: GammaSolver,
    assoc: &mut [usize],
    gamma: &mut [f64],
) -> usize {
    let mut saved = ([0usize; U], [0.0f64; U]);
    let n = assoc.len();
    let done = (|| {
        saved.0.get_mut(..n)?.copy_from_slice(assoc);
        saved.1.get_mut(..n)?.copy_from_slice(gamma.get(..n)?);
        shift(
            params,
            slot,
            kind,
            assoc,
            gamma,
            (saved.0.get(..n)?, saved.1.get(..n)?),
        )
    })();
    match done {
        Some(moves) => moves,
        None => {
            // Never (indices are in range): keep step 6's decision.
            debug_assert!(false, "an index out of range in the shift");
            if let (Some(a), Some(g)) = (saved.0.get(..n), saved.1.get(..n)) {
                assoc.copy_from_slice(a);
                if let Some(dst) = gamma.get_mut(..n) {
                    dst.copy_from_slice(g);
                }
            }
            0
        }
    }
}

/// [`run`]'s work; `saved` is step 6's association and γ, restored when the
/// touched servers' shares fall. `None` only on an index out of range.
fn shift<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    kind: GammaSolver,
    assoc: &mut [usize],
    gamma: &mut [f64],
    saved: (&[usize], &[f64]),
) -> Option<usize> {
    let m = slot.servers().len();
    let mut st = Shift {
        params,
        slot,
        factors: ZeroFactors::new(params, slot),
        own: [Load::default(); U],
        sums: [Load::default(); S],
        norms: [0.0; S],
        count: [0; S],
    };
    for (u, (&s, &g)) in assoc.iter().zip(gamma.iter()).enumerate() {
        *st.own.get_mut(u)? = st.load(u, s, g);
        *st.count.get_mut(s)? += 1;
    }
    for s in 0..m {
        if st.count.get(s).is_some_and(|&k| k > 0) {
            st.resum(assoc, s)?;
        }
    }
    let mut touched = [false; S];
    let mut moves = 0;
    while moves < assoc.len() {
        let Some((_, u, t, load)) = st.best(assoc, gamma) else {
            break;
        };
        let s = *assoc.get(u)?;
        *assoc.get_mut(u)? = t;
        *st.own.get_mut(u)? = load;
        *st.count.get_mut(s)? -= 1;
        *st.count.get_mut(t)? += 1;
        st.resum(assoc, s)?;
        st.resum(assoc, t)?;
        *touched.get_mut(s)? = true;
        *touched.get_mut(t)? = true;
        moves += 1;
    }
    if moves == 0 {
        return Some(0);
    }
    // Solve the touched servers' γ again and compare. The solver accepted
    // these parameters in step 6, so it builds here too.
    let mut stats = SolveStats::default();
    let mut solver = AnyServerSolver::new(kind, params, slot).ok();
    let mut solved = solver.is_some();
    for x in (0..m).filter(|&x| touched.get(x).copied().unwrap_or(false)) {
        let mut users: heapless::Vec<usize, U> = heapless::Vec::new();
        for (u, _) in assoc.iter().enumerate().filter(|&(_, &a)| a == x) {
            users.push(u).ok()?;
        }
        for &u in &users {
            *gamma.get_mut(u)? = 0.0;
        }
        solved &= users.is_empty()
            || solver
                .as_mut()
                .is_some_and(|sv| sv.solve(params, slot, x, &users, gamma, &mut stats));
    }
    if solved
        && st
            .change(saved, assoc, gamma, &touched)
            .is_some_and(|d| d > 0.0)
    {
        return Some(moves);
    }
    assoc.copy_from_slice(saved.0);
    gamma.get_mut(..assoc.len())?.copy_from_slice(saved.1);
    Some(0)
}

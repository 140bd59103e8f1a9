//! The γ solver in single precision, for targets without a double-precision FPU
//! (a Cortex-M4F computes f64 in software, many times slower than f32).
//!
//! The search is the exact solver's own (`var`, `single`, `multi`, generic over
//! `Real`) run in f32 with f32 `exp`/`ln` and f32 tolerances. The slot's f64
//! inputs are converted to f32 on entry (the per-user cost coefficients below are
//! then computed in f32, as [`crate::model::UserCost`] computes them in f64), and
//! the γ it chooses are widened to f64 on exit: no f64 arithmetic in between.
//!
//! # C2 without f64
//!
//! The exact solver re-checks C2 with [`crate::evaluate`]'s own f64 sum. Here the
//! check is done in double-f32 (`df`: each f64 input split exactly into two f32
//! by integer operations, sums and products with about 44 bits) against the
//! budget q·(1 − m), m = (n + 8)·2⁻⁴⁰ for the server's n users: far above the
//! double-f32 rounding and f64's own, so γ that passes keeps C2 as `evaluate`
//! checks it (for inputs within f32's normal range). The search solves against
//! the room that budget leaves at γ = 0, rounded once to f32 (accurate relative
//! to the room, not to q: in plain f32 the room, often a small difference of two
//! large numbers, and a margin of f32 ulps of q cost up to 1e-5 on e where C2
//! binds and utility is steep); last-bit overshoots are then repaired by relative
//! shrink steps (at most [`MAX_POLISH`], then γ = 0). A server
//! whose load at γ = 0 already exceeds the budget gets γ = 0 (C2 then holds
//! exactly as it held at γ = 0), counted as infeasible when the load exceeds q.
//!
//! # What it guarantees
//!
//! The same work bound as the exact solver (the same constants bound the same
//! loops, plus the double-f32 C2 check: n + 1 loads per polish step) and C2 as
//! above. Optimality is measured, not proved: e evaluated exactly (f64
//! [`crate::evaluate`]) at its γ is within 1e-5 of e at the exact solver's γ on
//! every instance of the property test `f32_solver_is_within_1e5_of_the_exact_solver`
//! (solver tests: the brute-force test's generator, with crowded servers,
//! binding and infeasible C2 and both [`crate::CostNorm`]s). Stopping tests that are absolute on γ in f64 are
//! relative in f32 (`Real::root_converged`): utility can be steep at small γ.

use crate::error::Error;
use crate::params::Params;
use crate::slot::{Slot, User};

use super::df::Df;
use super::var::{Alpha, Server, UserTerms};
use super::{Members, SolveStats, MAX_POLISH};

/// [`solve_gamma`](super::solve_gamma) in single precision: the same contract
/// (γ per user, 0 without previous data or on a server where C2 fails at γ = 0;
/// C2 kept exactly as [`crate::evaluate`] checks it whenever it holds at γ = 0),
/// computed without f64 arithmetic after the inputs are converted and checked
/// (module docs: e within 1e-5 of the exact solver's, measured).
///
/// # Errors
///
/// Those of [`solve_gamma`](super::solve_gamma); [`Error::UtilityExponent`] also
/// when v(φ) computed in f32 is not in (0, 1].
pub fn solve_gamma_f32<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    association: &[usize],
    gamma: &mut [f64],
) -> Result<SolveStats, Error> {
    let mut solver = ServerSolverF32::<U>::new(params, slot)?;
    slot.check_association(association)?;
    if gamma.len() != slot.users().len() {
        return Err(Error::AssociationLength {
            expected: slot.users().len(),
            got: gamma.len(),
        });
    }
    gamma.iter_mut().for_each(|g| *g = 0.0);
    let mut stats = SolveStats::default();
    let members = Members::<U, S>::new(association);
    for s in 0..slot.servers().len() {
        let users = members.of(s);
        if !users.is_empty() && !solver.solve(slot, s, users, gamma, &mut stats) {
            stats.infeasible_servers += 1;
        }
    }
    Ok(stats)
}

/// The slot constants of the cost model in f32.
#[derive(Clone, Copy, Debug)]
struct Consts {
    n_mig: f32,
    n_syn: f32,
    /// n_cmp and E_s + E_{u,s}.
    n_cmp: f32,
    epochs: f32,
    /// Uplink rate W·log2(1 + P·ξ/N0).
    rate: f32,
    /// α4, α5, α6 of v(φ).
    a4: f32,
    a5: f32,
    a6: f32,
}

/// The γ problem of one server at a time in single precision: what
/// [`solve_gamma_f32`] solves server by server, for a search (like the
/// controller's improvement) that scores a change of the association by
/// re-solving only the servers it touches.
#[derive(Clone, Debug)]
pub struct ServerSolverF32<const U: usize> {
    consts: Consts,
    /// n_cmp and E_s + E_{u,s} in double-f32, for the C2 check.
    n_cmp: Df,
    epochs: Df,
    alpha: Alpha<f32>,
    prob: Server<U, f32>,
}

impl<const U: usize> ServerSolverF32<U> {
    /// The solver for the servers of `slot`: checks `params` and every user's
    /// utility exponent (in f32), converts the constants to f32.
    ///
    /// # Errors
    ///
    /// [`Params::validate`]'s, or [`Error::UtilityExponent`] when v(φ) of a user,
    /// computed in f32, is not in (0, 1].
    pub fn new<const S: usize>(params: &Params, slot: &Slot<U, S>) -> Result<Self, Error> {
        params.validate()?;
        let [a1, a2, a3, a4, a5, a6] = params.alpha.map(|a| a as f32);
        let epochs = params.epochs_train as f32 + params.epochs_finetune as f32;
        // N0 = 10^((dBm − 30)/10) W, rate = W·log2(1 + P·ξ/N0) (`Params::rate_bps`).
        let noise_w = crate::math::powf(10.0, (params.noise_dbm as f32 - 30.0) / 10.0);
        let snr = params.p_tx_w as f32 * params.gain as f32 / noise_w;
        let rate = params.bandwidth_hz as f32 * crate::math::log2f(1.0 + snr);
        let consts = Consts {
            n_mig: params.n_mig as f32,
            n_syn: params.n_syn as f32,
            n_cmp: params.n_cmp as f32,
            epochs,
            rate,
            a4,
            a5,
            a6,
        };
        for (user, u) in slot.users().iter().enumerate() {
            let v = consts.exponent(u.emd as f32);
            if !(v > 0.0 && v <= 1.0) {
                return Err(Error::UtilityExponent { user });
            }
        }
        // Weights w = β1/n, c = β2/m (`model::Weights`).
        let w = params.beta1 as f32 / slot.users().len() as f32;
        let c = params.beta2 as f32 / slot.servers().len() as f32;
        let f0 = params.f0 as f32;
        let ln_c_4f0 = crate::math::lnf(c) - crate::math::lnf(4.0 * f0);
        Ok(ServerSolverF32 {
            consts,
            n_cmp: Df::from_f64(params.n_cmp),
            epochs: Df::from_f64(params.epochs_train).add(Df::from_f64(params.epochs_finetune)),
            alpha: Alpha {
                a1,
                a2,
                a3,
                bits_per_sample: params.bits_per_sample as f32,
            },
            prob: Server::new(w, c, f0, ln_c_4f0, 0.0, params.cost_norm),
        })
    }

    /// Solves γ for `users` (in user order, valid indices) on server `s` of the
    /// `slot` this solver was built for and writes their entries of `gamma`
    /// (widened from f32), as [`solve_gamma_f32`] does for each server. Returns
    /// false, with their γ = 0, when C2 fails at γ = 0 (f32 load above q);
    /// gives γ = 0 without reporting failure when the f32 check cannot prove C2
    /// with the margin at γ = 0 (module docs).
    pub fn solve<const S: usize>(
        &mut self,
        slot: &Slot<U, S>,
        s: usize,
        users: &[usize],
        gamma: &mut [f64],
        stats: &mut SolveStats,
    ) -> bool {
        for &k in users {
            if let Some(g) = gamma.get_mut(k) {
                *g = 0.0;
            }
        }
        let Some(srv) = slot.servers().get(s) else {
            debug_assert!(false, "server {s} out of range");
            return false;
        };
        // C2 in double-f32 (module docs): the server's computation energy per
        // bit n_cmp·ε·(E_s + E_us), each user's D_t and D_{t−1}, and the budget.
        let per_bit = self.n_cmp.mul(Df::from_f64(srv.eps)).mul(self.epochs);
        let q = Df::from_f64(srv.q);
        let mut all = heapless::Vec::<UserTerms<f32>, U>::new();
        let mut row = [(Df::default(), Df::default()); U];
        for (&k, r) in users.iter().zip(row.iter_mut()) {
            let Some(u) = slot.users().get(k) else {
                debug_assert!(false, "user {k} out of range");
                continue;
            };
            *r = (Df::from_f64(u.data_bits), Df::from_f64(u.prev_data_bits));
            // Capacity U: a server never has more users than the slot.
            let _ = all.push(self.consts.terms(slot, u, k, s));
        }
        let row = C2Guard {
            per_bit,
            users: row.get(..all.len()).unwrap_or(&[]),
        };
        let margin = (all.len() as f32 + 8.0) * MARGIN_PER_USER;
        let budget = q.mul(Df {
            hi: 1.0,
            lo: -margin,
        });
        let at_zero = row.load(&[0.0; U]);
        if !at_zero.le(budget) {
            return at_zero.le(q);
        }
        let prob = &mut self.prob;
        // The search's C2 budget is the room left at γ = 0, rounded once to f32:
        // accurate relative to the room, not to q.
        prob.reset(budget.sub(at_zero).to_f32());
        for terms in &all {
            prob.add_user(
                &self.alpha,
                &UserTerms {
                    cmp0: 0.0, // already taken from the room
                    ..*terms
                },
            );
        }
        prob.solve(stats);
        // γ of the server's users in user order (the variables are in user order,
        // users without previous data among them at 0).
        let mut g = [0.0f32; U];
        let mut vars = prob.vars.iter().peekable();
        for (&k, gk) in users.iter().zip(g.iter_mut()) {
            if let Some(v) = vars.next_if(|v| v.user == k) {
                *gk = v.gamma;
            }
        }
        row.polish(&mut g, budget);
        for (&k, &gk) in users.iter().zip(g.iter()) {
            if let Some(out) = gamma.get_mut(k) {
                *out = f64::from(gk);
            }
        }
        true
    }
}

/// The margin per user (and per rounding) of the C2 check, 2^-40: well above the
/// double-f32 rounding (a few 2^-48 per operation) and f64's (2^-53).
const MARGIN_PER_USER: f32 = 1.0 / (1u64 << 40) as f32;

/// One server's C_cmp,s in double-f32 as a function of the f32 γ of its users.
struct C2Guard<'a> {
    per_bit: Df,
    /// D_t and D_{t−1} of the server's users, in user order.
    users: &'a [(Df, Df)],
}

impl C2Guard<'_> {
    /// Σ per_bit·(D_t + γ·D_{t−1}) in user order.
    fn load(&self, gamma: &[f32]) -> Df {
        let mut sum = Df::default();
        for (&(d, p), &g) in self.users.iter().zip(gamma) {
            sum = sum.add(self.per_bit.mul(d.add(Df::from_f32(g).mul(p))));
        }
        sum
    }

    /// Shrinks `g` until its load is within `budget`: by the relative amount that
    /// removes the excess, then twice, four times, … that (at most
    /// [`MAX_POLISH`] steps), then to 0 (within budget: checked before solving).
    fn polish<const U: usize>(&self, g: &mut [f32; U], budget: Df) {
        let start = *g;
        let excess = self.load(&start).sub(budget).to_f32();
        let mut part = 0.0f32;
        for (&(_, p), &gk) in self.users.iter().zip(start.iter()) {
            part += gk * p.hi;
        }
        let rel = excess / (self.per_bit.hi * part);
        let mut factor = 1.0f32;
        for _ in 0..MAX_POLISH {
            if self.load(g).le(budget) {
                return;
            }
            let shrink = rel * factor + f32::EPSILON;
            if shrink.is_nan() || shrink >= 1.0 {
                break;
            }
            for (gk, &g0) in g.iter_mut().zip(start.iter()) {
                *gk = g0 * (1.0 - shrink);
            }
            factor *= 2.0;
        }
        if !self.load(g).le(budget) {
            *g = [0.0; U];
        }
    }
}

impl Consts {
    /// v(φ) = α4·exp(−((α5 + φ)/α6)²) (`model::exponent`).
    fn exponent(&self, emd: f32) -> f32 {
        let z = (self.a5 + emd) / self.a6;
        self.a4 * crate::math::expf(-z * z)
    }

    /// User `k`'s terms on server `s` in f32, as `model::UserCost` and
    /// `UserCost::load` compute them in f64.
    fn terms<const U: usize, const S: usize>(
        &self,
        slot: &Slot<U, S>,
        u: &User,
        k: usize,
        s: usize,
    ) -> UserTerms<f32> {
        let manhattan = |ax: f64, ay: f64, bx: f64, by: f64| {
            libm::fabsf(ax as f32 - bx as f32) + libm::fabsf(ay as f32 - by as f32)
        };
        let (mut mig_per_bit, mut cmp_per_bit, mut sync_dist) = (0.0, 0.0, 0.0);
        if let Some(srv) = slot.servers().get(s) {
            if let Some(prev) = u.prev_server.and_then(|p| slot.servers().get(p)) {
                mig_per_bit = self.n_mig * manhattan(srv.x, srv.y, prev.x, prev.y);
            }
            cmp_per_bit = self.n_cmp * srv.eps as f32 * self.epochs;
            sync_dist = manhattan(u.x, u.y, srv.x, srv.y);
        }
        let d = u.data_bits as f32;
        let syn = self.n_syn * d / self.rate * sync_dist;
        let mig = mig_per_bit * (d + u.twin_bits as f32);
        let cmp = cmp_per_bit * d;
        UserTerms {
            user: k,
            total0: mig + syn + cmp,
            cmp0: cmp,
            d,
            p: u.prev_data_bits as f32,
            mig_per_bit,
            cmp_per_bit,
            v: self.exponent(u.emd as f32),
        }
    }
}

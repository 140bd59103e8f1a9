//! Energy costs (13)–(15) and the normalisation of eq. (22).

use super::load::Load;
use crate::params::{CostNorm, Params};
use crate::slot::{manhattan, Server, Slot, User};

/// Costs of one server in one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerCost {
    /// Migration cost C_mig,s, eq. (13).
    pub mig: f64,
    /// Synchronisation cost C_syn,s, eq. (14).
    pub syn: f64,
    /// Computation cost C_cmp,s, eq. (15).
    pub cmp: f64,
    /// Total C_s, eq. (21).
    pub total: f64,
}

impl ServerCost {
    /// The three costs and their total C_s = C_mig + C_syn + C_cmp (eq. (21)).
    #[inline]
    pub fn new(mig: f64, syn: f64, cmp: f64) -> ServerCost {
        ServerCost {
            mig,
            syn,
            cmp,
            total: mig + syn + cmp,
        }
    }

    /// The parts C2, C3 and e look at.
    #[inline]
    pub fn load(&self) -> Load {
        Load {
            cmp: self.cmp,
            syn: self.syn,
            total: self.total,
        }
    }
}

/// A server's normalised cost in e (eq. (22)), by [`Params::cost_norm`]:
/// `Paper`: Norm(x) = 2/(1 + e^{−x/(2 f0)}) − 1, computed as the identical
/// tanh(x/(4 f0)) for accuracy near zero; `Linear`: its tangent at 0, x/(4 f0)
/// (SPEC §2.1b).
#[inline]
pub fn norm(params: &Params, cost: f64) -> f64 {
    let y = cost / (4.0 * params.f0);
    match params.cost_norm {
        CostNorm::Paper => crate::math::tanh(y),
        CostNorm::Linear => y,
    }
}

/// [`norm`] in single precision, for the size-agnostic policy's decoder
/// (`policy::general`), which runs in f32 on a target without a double-precision
/// FPU: the same formula with `libm`'s `tanhf`.
#[inline]
pub fn norm_f32(params: &Params, cost: f32) -> f32 {
    let y = cost / (4.0 * params.f0) as f32;
    match params.cost_norm {
        CostNorm::Paper => crate::math::tanhf(y),
        CostNorm::Linear => y,
    }
}

/// The cost coefficients of one user placed on one server. Costs are affine in the
/// user's total data D̄ = D_t + γ·D_{t−1}; the solver and [`crate::evaluate`] both
/// build costs from this, so the model exists once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UserCost {
    /// n_mig · l(s, s_prev): migration energy per bit moved (0 if not migrating).
    pub mig_per_bit: f64,
    /// n_cmp · ε_s · (E_s + E_{u,s}): computation energy per bit trained.
    pub cmp_per_bit: f64,
    /// Synchronisation cost n_syn · D_t / rate · l(u, s) (does not depend on γ).
    pub syn: f64,
}

impl UserCost {
    /// Coefficients of `user` on server `server` of `slot` (`rate` = [`Params::rate_bps`]).
    /// An out-of-range server index gives zero coefficients; callers validate first.
    pub fn new<const U: usize, const S: usize>(
        params: &Params,
        slot: &Slot<U, S>,
        user: &User,
        server: usize,
        rate: f64,
    ) -> Self {
        let Some(srv) = slot.servers().get(server) else {
            return UserCost {
                mig_per_bit: 0.0,
                cmp_per_bit: 0.0,
                syn: 0.0,
            };
        };
        UserCost::with_factors(
            params,
            slot,
            user,
            srv,
            UserCost::cmp_per_bit(params, srv),
            UserCost::syn_per_metre(params, user, rate),
        )
    }

    /// n_cmp · ε_s · (E_s + E_{u,s}) of server `srv`: the same for every user, so
    /// a table over all users computes it once per server.
    #[inline]
    pub fn cmp_per_bit(params: &Params, srv: &Server) -> f64 {
        params.n_cmp * srv.eps * params.epochs()
    }

    /// n_syn · D_t / rate of `user`: its synchronisation cost per metre.
    #[inline]
    pub fn syn_per_metre(params: &Params, user: &User, rate: f64) -> f64 {
        params.n_syn * user.data_bits / rate
    }

    /// [`new`](Self::new) for a server `srv` of `slot` with the per-server and
    /// per-user factors given ([`cmp_per_bit`](Self::cmp_per_bit),
    /// [`syn_per_metre`](Self::syn_per_metre)): the same numbers to the last bit.
    #[inline]
    pub fn with_factors<const U: usize, const S: usize>(
        params: &Params,
        slot: &Slot<U, S>,
        user: &User,
        srv: &Server,
        cmp_per_bit: f64,
        syn_per_metre: f64,
    ) -> Self {
        let mig_dist = match user.prev_server.and_then(|p| slot.servers().get(p)) {
            Some(prev) => manhattan(srv.x, srv.y, prev.x, prev.y),
            None => 0.0,
        };
        let sync_dist = manhattan(user.x, user.y, srv.x, srv.y);
        UserCost {
            mig_per_bit: params.n_mig * mig_dist,
            cmp_per_bit,
            syn: syn_per_metre * sync_dist,
        }
    }

    /// Migration cost n_mig · l · (D̄ + D_twin).
    #[inline]
    pub fn mig_cost(&self, user: &User, total_bits: f64) -> f64 {
        self.mig_per_bit * (total_bits + user.twin_bits)
    }

    /// Computation cost n_cmp · ε · (E_s + E_{u,s}) · D̄.
    #[inline]
    pub fn cmp_cost(&self, total_bits: f64) -> f64 {
        self.cmp_per_bit * total_bits
    }

    /// The user's three costs on the server with D̄ = `total_bits`
    /// ([`total_bits`](super::total_bits)), and their total.
    #[inline]
    pub fn costs(&self, user: &User, total_bits: f64) -> ServerCost {
        ServerCost::new(
            self.mig_cost(user, total_bits),
            self.syn,
            self.cmp_cost(total_bits),
        )
    }

    /// The user's [`Load`] on the server with D̄ = `total_bits`.
    #[inline]
    pub fn load(&self, user: &User, total_bits: f64) -> Load {
        self.costs(user, total_bits).load()
    }
}

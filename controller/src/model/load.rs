//! What users put on a server: the user's total data D̄, the loads C2, C3 and C_s
//! are checked and priced on, and the server's share of e (eq. (22)). Every part of
//! diten that sums loads or scores a server (`evaluate`, the γ solver, the
//! controller's repair, consolidation and improvement, the trainer's rule-based
//! decision makers) sums them with `+` ([`Load`]'s `Add`) in user order, starting from 0,
//! which is how [`crate::evaluate`] sums: so their constraint checks and theirs
//! agree to the last bit.

use super::cost::{norm, UserCost};
use crate::params::Params;
use crate::slot::{Server, Slot, User};

/// The factors of [`Load::at_zero`] that depend on one server or one user alone,
/// computed once per slot, so that each (user, server) load is a few products
/// ([`load`](Self::load); on a target without an f64 FPU each factor is a library
/// call): the same numbers as [`Load::at_zero`] to the last bit.
#[derive(Clone, Copy, Debug)]
pub struct ZeroFactors<const U: usize, const S: usize> {
    cmp_per_bit: [f64; S],
    syn_per_metre: [f64; U],
    bits: [f64; U],
}

impl<const U: usize, const S: usize> ZeroFactors<U, S> {
    /// The factors of `slot` under `params`.
    pub fn new(params: &Params, slot: &Slot<U, S>) -> Self {
        let rate = params.rate_bps();
        let mut f = ZeroFactors {
            cmp_per_bit: [0.0; S],
            syn_per_metre: [0.0; U],
            bits: [0.0; U],
        };
        for (c, srv) in f.cmp_per_bit.iter_mut().zip(slot.servers()) {
            *c = UserCost::cmp_per_bit(params, srv);
        }
        for ((m, b), user) in f
            .syn_per_metre
            .iter_mut()
            .zip(f.bits.iter_mut())
            .zip(slot.users())
        {
            *m = UserCost::syn_per_metre(params, user, rate);
            *b = total_bits(user, 0.0);
        }
        f
    }

    /// What user `u` alone puts on server `s` at γ = 0 ([`Load::at_zero`]); zero
    /// for an index out of range.
    #[inline]
    pub fn load(&self, params: &Params, slot: &Slot<U, S>, u: usize, s: usize) -> Load {
        let bits = self.bits.get(u).copied().unwrap_or(0.0);
        self.load_of(params, slot, u, s, |_| bits)
    }

    /// What user `u` puts on server `s` at data reuse ratio `gamma`: the factors
    /// do not depend on γ, so this is [`UserCost::new`]'s load to the last bit;
    /// zero for an index out of range.
    #[inline]
    pub fn load_at(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        u: usize,
        s: usize,
        gamma: f64,
    ) -> Load {
        self.load_of(params, slot, u, s, |user| total_bits(user, gamma))
    }

    /// User `u`'s load on server `s` from the factors, for the user's total data
    /// `bits(user)`; zero for an index out of range.
    #[inline]
    fn load_of(
        &self,
        params: &Params,
        slot: &Slot<U, S>,
        u: usize,
        s: usize,
        bits: impl Fn(&User) -> f64,
    ) -> Load {
        let (Some(user), Some(srv)) = (slot.users().get(u), slot.servers().get(s)) else {
            return Load::default();
        };
        let c = self.cmp_per_bit.get(s).copied().unwrap_or(0.0);
        let m = self.syn_per_metre.get(u).copied().unwrap_or(0.0);
        UserCost::with_factors(params, slot, user, srv, c, m).load(user, bits(user))
    }
}

/// The user's total data D̄ = D_t + γ·D_{t−1} (bits) at data reuse ratio `gamma`.
#[inline]
pub fn total_bits(user: &User, gamma: f64) -> f64 {
    user.data_bits + gamma * user.prev_data_bits
}

/// What users put on one server: the sums C2 and C3 bound and the total C_s that
/// e prices. A user's own load, or a sum of them (in user order).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Computation cost C_cmp,s (bound q_s, C2).
    pub cmp: f64,
    /// Synchronisation cost C_syn,s (bound p_s, C3).
    pub syn: f64,
    /// Total cost C_s (migration, synchronisation and computation).
    pub total: f64,
}

impl Load {
    /// What `user` alone puts on server `server` of `slot` at γ = 0, the least
    /// computation (`rate` = [`Params::rate_bps`]).
    pub fn at_zero<const U: usize, const S: usize>(
        params: &Params,
        slot: &Slot<U, S>,
        user: &User,
        server: usize,
        rate: f64,
    ) -> Load {
        UserCost::new(params, slot, user, server, rate).load(user, total_bits(user, 0.0))
    }

    /// Whether the load breaks C2 on `server` (C_cmp,s > q_s; a NaN sum does not).
    #[inline]
    pub fn breaks_c2(&self, server: &Server) -> bool {
        self.cmp > server.q
    }

    /// Whether the load breaks C3 on `server` (C_syn,s > p_s; a NaN sum does not).
    #[inline]
    pub fn breaks_c3(&self, server: &Server) -> bool {
        self.syn > server.p
    }

    /// How many of C2 and C3 the load breaks on `server` (0, 1 or 2), as
    /// [`crate::evaluate`] counts them.
    #[inline]
    pub fn violations(&self, server: &Server) -> usize {
        usize::from(self.breaks_c2(server)) + usize::from(self.breaks_c3(server))
    }

    /// Whether the load keeps C2 and C3 on `server`, as [`crate::evaluate`]
    /// decides (so a NaN sum fits).
    #[inline]
    pub fn fits(&self, server: &Server) -> bool {
        !self.breaks_c2(server) && !self.breaks_c3(server)
    }

    /// Whether the load fits and neither of its C2 and C3 sums is NaN: where a
    /// NaN load must not count as an improvement.
    #[inline]
    pub fn fits_as_number(&self, server: &Server) -> bool {
        self.fits(server) && !self.cmp.is_nan() && !self.syn.is_nan()
    }

    /// Whether the load stays within the capacities scaled by `slack` (≥ 1):
    /// false means it breaks them by more than the rounding that `slack` allows.
    #[inline]
    pub fn fits_with_slack(&self, server: &Server, slack: f64) -> bool {
        !(self.cmp > server.q * slack || self.syn > server.p * slack)
    }

    /// Relative excess over the capacities, Σ max(0, load/capacity − 1): how far
    /// the load is from keeping C2 and C3 (0 when it keeps both).
    #[inline]
    pub fn excess(&self, server: &Server) -> f64 {
        (self.cmp / server.q - 1.0).max(0.0) + (self.syn / server.p - 1.0).max(0.0)
    }

    /// The relative load on `server`, cmp/q_s + syn/p_s: how much of its two
    /// capacities the load takes (the repair's weight of a user).
    #[inline]
    pub fn relative(&self, server: &Server) -> f64 {
        self.cmp / server.q + self.syn / server.p
    }
}

impl core::ops::Add for Load {
    type Output = Load;

    /// This load with `other` added after it (the order [`crate::evaluate`] adds in).
    #[inline]
    fn add(self, other: Load) -> Load {
        Load {
            cmp: self.cmp + other.cmp,
            syn: self.syn + other.syn,
            total: self.total + other.total,
        }
    }
}

impl core::ops::Sub for Load {
    type Output = Load;

    /// This load with `other` taken out (an estimate: not bit-identical to the
    /// sum without `other`).
    #[inline]
    fn sub(self, other: Load) -> Load {
        Load {
            cmp: self.cmp - other.cmp,
            syn: self.syn - other.syn,
            total: self.total - other.total,
        }
    }
}

impl core::iter::Sum for Load {
    /// The loads summed in iteration order from 0 with `+`: in user order, as
    /// [`crate::evaluate`] sums.
    fn sum<I: Iterator<Item = Load>>(iter: I) -> Load {
        iter.fold(Load::default(), |sum, load| sum + load)
    }
}

/// The weights of e's two sums (eq. (22)) in a slot of n users and m servers:
/// e = w·Σ_u ρ_u − c·Σ_s Norm(C_s) with w = β1/n and c = β2/m.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    /// w = β1/n, the weight of each user's utility.
    pub utility: f64,
    /// c = β2/m, the weight of each server's normalised cost.
    pub cost: f64,
}

impl Weights {
    /// The weights of `slot`'s e.
    pub fn new<const U: usize, const S: usize>(params: &Params, slot: &Slot<U, S>) -> Weights {
        Weights {
            utility: params.beta1 / slot.users().len() as f64,
            cost: params.beta2 / slot.servers().len() as f64,
        }
    }

    /// e from its two sums: w·`utility_sum` − c·`norm_sum`, with `norm_sum` the
    /// servers' Σ [`norm`](super::norm)(C_s).
    #[inline]
    pub fn objective(&self, utility_sum: f64, norm_sum: f64) -> f64 {
        self.utility * utility_sum - self.cost * norm_sum
    }

    /// One server's share of e: w·Σ ρ of its users (`utility_sum`) − c·Norm(C_s)
    /// with C_s = `load.total`. e is the sum of the servers' shares up to the
    /// order of summation, and γ decouples by server (SPEC §2.1), so a change
    /// of the association is scored on the servers it touches.
    #[inline]
    pub fn share(&self, params: &Params, utility_sum: f64, load: &Load) -> f64 {
        self.objective(utility_sum, norm(params, load.total))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;
    use crate::test_rng::Rng;

    /// The hoisted factors give `at_zero`'s numbers to the last bit.
    #[test]
    fn the_factors_give_at_zero_bit_for_bit() {
        let mut rng = Rng::new(29);
        let params = Params::default();
        let rate = params.rate_bps();
        for case in 0..50 {
            let (n, m) = (1 + case % 12, 1 + case % 7);
            let servers: Vec<Server> = (0..m)
                .map(|_| Server {
                    x: 150.0 * rng.unit(),
                    y: 150.0 * rng.unit(),
                    p: 20.0 + 110.0 * rng.unit(),
                    q: 600.0 + 900.0 * rng.unit(),
                    eps: 20.0 + 60.0 * rng.unit(),
                    available: true,
                })
                .collect();
            let users: Vec<User> = (0..n)
                .map(|_| User {
                    x: 150.0 * rng.unit(),
                    y: 150.0 * rng.unit(),
                    emd: 0.2,
                    twin_bits: 4500.0 * rng.unit(),
                    data_bits: 1e6 * rng.unit(),
                    prev_data_bits: 1e6 * rng.unit(),
                    prev_server: (rng.unit() > 0.2).then(|| ((m as f64) * rng.unit()) as usize),
                })
                .collect();
            let slot: Slot<12, 7> = Slot::new(&servers, &users).unwrap();
            let factors = ZeroFactors::new(&params, &slot);
            for (u, user) in slot.users().iter().enumerate() {
                for s in 0..m {
                    let got = factors.load(&params, &slot, u, s);
                    let want = Load::at_zero(&params, &slot, user, s, rate);
                    assert_eq!(
                        [got.cmp, got.syn, got.total].map(f64::to_bits),
                        [want.cmp, want.syn, want.total].map(f64::to_bits),
                        "case {case} u {u} s {s}"
                    );
                }
            }
        }
    }
}

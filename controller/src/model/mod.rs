//! The system model of SPEC §2: utility (11)–(12), costs (13)–(15), objective (22),
//! reward (24)–(25). This is the one implementation every other part of diten uses.

mod cost;
mod load;
mod utility;

pub use cost::{norm, norm_f32, ServerCost, UserCost};
pub use load::{total_bits, Load, Weights, ZeroFactors};
pub use utility::{exponent, utility};

use crate::error::Error;
use crate::params::Params;
use crate::slot::Slot;

/// Constraint violations of one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    /// Servers whose computation cost exceeds q_s (C2).
    pub c2: usize,
    /// Servers whose synchronisation cost exceeds p_s (C3).
    pub c3: usize,
    /// Users whose γ lies outside [0, 1] or is not finite (C5).
    pub c5: usize,
}

impl Violations {
    /// Number of violated constraints, the count the reward's penalty multiplies.
    pub fn total(&self) -> usize {
        self.c2 + self.c3 + self.c5
    }
}

/// Everything the model says about one slot's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation<const U: usize, const S: usize> {
    /// Utility ρ_u per user.
    pub utility: heapless::Vec<f64, U>,
    /// Costs per server (empty servers have zero costs).
    pub servers: heapless::Vec<ServerCost, S>,
    /// Objective e of eq. (22).
    pub objective: f64,
    /// Reward r of eq. (25) with the clamped barrier and the penalty (SPEC §2).
    pub reward: f64,
    /// Constraint violations (C1 and C4 hold by construction of an association).
    pub violations: Violations,
}

impl<const U: usize, const S: usize> Evaluation<U, S> {
    /// True when C1–C5 all hold.
    pub fn feasible(&self) -> bool {
        self.violations.total() == 0
    }

    /// Mean utility over users.
    pub fn mean_utility(&self) -> f64 {
        let n = self.utility.len().max(1) as f64;
        self.utility.iter().sum::<f64>() / n
    }
}

/// Checks that `params` are valid ([`Params::validate`]) and that with them every
/// user's EMD in `slot` gives a utility exponent in (0, 1] (see
/// [`Error::UtilityExponent`]): what the γ solver and the controller ask before
/// they use the model on a slot.
pub fn check_params<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
) -> Result<(), Error> {
    params.validate()?;
    for (user, u) in slot.users().iter().enumerate() {
        let v = exponent(params, u.emd);
        if !(v > 0.0 && v <= 1.0) {
            return Err(Error::UtilityExponent { user });
        }
    }
    Ok(())
}

/// Barrier term subtracted per constraint in eq. (25): −B(min(x, −δ)) = (1/f)·ln(max(−x, δ)).
#[inline]
pub fn neg_barrier(params: &Params, slack: f64) -> f64 {
    crate::math::ln(slack.max(params.barrier_min_slack)) / params.barrier_f
}

/// Evaluates a complete decision (association and γ) on a slot.
///
/// Inputs are checked: the association must be valid and `gamma` must have one
/// entry per user; a γ outside [0, 1] is counted as a C5 violation and clamped for
/// the costs (so that the numbers stay meaningful).
pub fn evaluate<const U: usize, const S: usize>(
    params: &Params,
    slot: &Slot<U, S>,
    association: &[usize],
    gamma: &[f64],
) -> Result<Evaluation<U, S>, Error> {
    slot.check_association(association)?;
    if gamma.len() != slot.users().len() {
        return Err(Error::AssociationLength {
            expected: slot.users().len(),
            got: gamma.len(),
        });
    }
    let rate = params.rate_bps();
    let mut servers: heapless::Vec<ServerCost, S> = heapless::Vec::new();
    for _ in slot.servers() {
        servers
            .push(ServerCost::default())
            .map_err(|_| Error::TooManyServers {
                count: slot.servers().len(),
                capacity: S,
            })?;
    }
    let mut utilities: heapless::Vec<f64, U> = heapless::Vec::new();
    let mut violations = Violations::default();
    let mut utility_sum = 0.0;
    for ((u, &s), &g) in slot.users().iter().zip(association).zip(gamma) {
        let g = if g.is_finite() && (0.0..=1.0).contains(&g) {
            g
        } else {
            violations.c5 += 1;
            if g.is_finite() {
                g.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let bits = total_bits(u, g);
        let rho = utility(params, u.emd, bits);
        utility_sum += rho;
        utilities.push(rho).map_err(|_| Error::TooManyUsers {
            count: slot.users().len(),
            capacity: U,
        })?;
        let cost = UserCost::new(params, slot, u, s, rate).costs(u, bits);
        if let Some(sc) = servers.get_mut(s) {
            sc.mig += cost.mig;
            sc.syn += cost.syn;
            sc.cmp += cost.cmp;
        }
    }
    let mut cost_term = 0.0;
    let mut barrier = 0.0;
    for (sc, srv) in servers.iter_mut().zip(slot.servers()) {
        *sc = ServerCost::new(sc.mig, sc.syn, sc.cmp);
        cost_term += norm(params, sc.total);
        let load = sc.load();
        violations.c2 += usize::from(load.breaks_c2(srv));
        violations.c3 += usize::from(load.breaks_c3(srv));
        barrier += neg_barrier(params, srv.q - sc.cmp) + neg_barrier(params, srv.p - sc.syn);
    }
    let objective = Weights::new(params, slot).objective(utility_sum, cost_term);
    let reward = objective + barrier - params.infeasible_penalty * violations.total() as f64;
    Ok(Evaluation {
        utility: utilities,
        servers,
        objective,
        reward,
        violations,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::ToString;

    use super::*;
    use crate::slot::tests::{server, user};
    use crate::slot::User;

    #[test]
    fn utility_exponent_outside_zero_one() {
        // v(φ) = α4·exp(−((α5 + φ)/α6)²) ≤ α4: α4 = 1.5 makes v(0.0231) = 1.5 > 1.
        let params = Params {
            alpha: [0.8862, 6.8382, 0.0006, 1.5, -0.0231, 0.8366],
            ..Params::default()
        };
        let u = User {
            emd: 0.0231,
            ..user()
        };
        let slot = Slot::<2, 2>::new(&[server()], &[user(), u]).unwrap();
        let e = check_params(&params, &slot).unwrap_err();
        assert_eq!(e, Error::UtilityExponent { user: 0 });
        assert!(e.to_string().starts_with("users[0].emd: "));
        assert_eq!(check_params(&Params::default(), &slot), Ok(()));
    }
}

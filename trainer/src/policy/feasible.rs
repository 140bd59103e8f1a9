//! What the rule-based decision makers share: tables of the loads users put on
//! servers at γ = 0 (the controller's [`Load`], for C2 and C3), and the part of a
//! slot one server's users make, computed by the controller on a sub-slot.
//!
//! # Exactness
//!
//! Loads of a user set are summed with the controller's [`Load`] sum, in
//! increasing user index, so a constraint check here and the one of `evaluate`
//! agree to the last bit. C2 is checked at γ = 0: the γ solver keeps C2 whenever
//! it holds at γ = 0, and C3 does not depend on γ, so the number of constraints a
//! server breaks after `solve_gamma` is exactly [`Load::violations`] of its load
//! at γ = 0.

pub(crate) use diten_controller::model::Load;
use diten_controller::{evaluate, solve_gamma, Params, Server, Slot, User, MAX_SERVERS, MAX_USERS};

use crate::sim::Status;

/// Per-server loads of a whole association, without allocating (capacity
/// [`MAX_SERVERS`], the simulator's).
#[derive(Clone, Debug)]
pub(crate) struct Loads {
    loads: [Load; MAX_SERVERS],
}

impl Loads {
    /// All servers empty.
    pub fn empty() -> Loads {
        Loads {
            loads: [Load::default(); MAX_SERVERS],
        }
    }

    /// The loads of `association` on `slot`, summed in user order. O(U + S).
    /// Out-of-range servers are ignored (the simulator rejects such a decision).
    pub fn of(params: &Params, slot: &Status, association: &[usize]) -> Loads {
        let rate = params.rate_bps();
        let mut loads = Loads::empty();
        for (user, &s) in slot.users().iter().zip(association) {
            if s < slot.servers().len() {
                loads.add(s, Load::at_zero(params, slot, user, s, rate));
            }
        }
        loads
    }

    /// The load of server `s` (empty when out of range).
    pub fn get(&self, s: usize) -> Load {
        self.loads.get(s).copied().unwrap_or_default()
    }

    /// Adds `load` to server `s` (ignored when out of range).
    pub fn add(&mut self, s: usize, load: Load) {
        if let Some(l) = self.loads.get_mut(s) {
            *l = *l + load;
        }
    }

    /// The first server (lowest index) whose load breaks C2 or C3.
    pub fn first_broken(&self, servers: &[Server]) -> Option<usize> {
        servers
            .iter()
            .zip(&self.loads)
            .position(|(srv, l)| !l.fits(srv))
    }
}

/// The users of a bit set (bit u = user u), in increasing index.
pub(crate) fn members(mask: u64) -> impl Iterator<Item = usize> {
    let mut m = mask;
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let u = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(u)
        }
    })
}

/// The bit of user `u` in a user set (users < 64 = [`diten_controller::MAX_USERS`]).
pub(crate) fn bit(u: usize) -> u64 {
    1u64 << u
}

/// Loads of every user on every server of one slot (U × S, computed once).
#[derive(Clone, Debug, Default)]
pub(crate) struct LoadTable {
    servers: usize,
    loads: Vec<Load>,
}

impl LoadTable {
    /// The table of `slot`.
    pub fn new(params: &Params, slot: &Status) -> LoadTable {
        let mut table = LoadTable::default();
        table.fill(params, slot);
        table
    }

    /// Refills the table for `slot`, keeping its allocation.
    pub fn fill(&mut self, params: &Params, slot: &Status) {
        let rate = params.rate_bps();
        self.servers = slot.servers().len();
        self.loads.clear();
        for user in slot.users() {
            for s in 0..self.servers {
                self.loads.push(Load::at_zero(params, slot, user, s, rate));
            }
        }
    }

    /// Load of user `u` alone on server `s`.
    pub fn get(&self, u: usize, s: usize) -> Load {
        self.loads
            .get(u * self.servers + s)
            .copied()
            .unwrap_or_default()
    }

    /// Load of the user set `mask` on server `s`, summed in user order like
    /// `evaluate` (so it is exact, see the module docs).
    pub fn sum(&self, s: usize, mask: u64) -> Load {
        members(mask).map(|u| self.get(u, s)).sum()
    }
}

/// What one server's users make of a slot with the optimal γ: the constraints the
/// server breaks and its term of the objective e, (β1/U)·Σ ρ_u − (β2/S)·Norm(C_s).
/// An empty server makes nothing (Norm(0) = 0), so the slot's e and violations are
/// the sums of the parts of its servers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Part {
    /// Constraints broken (C2, C3) on the server.
    pub violations: usize,
    /// The server's term of e.
    pub objective: f64,
}

impl Part {
    /// The sum of two parts.
    pub fn plus(self, other: Part) -> Part {
        Part {
            violations: self.violations + other.violations,
            objective: self.objective + other.objective,
        }
    }
}

/// Computes [`Part`]s with the controller: the server's users alone in a sub-slot,
/// γ from [`solve_gamma`], scored by [`evaluate`].
///
/// The sub-slot holds server s and the previous servers of its users (the only
/// servers their costs depend on), and β1, β2 are scaled by n/U and S'/S for n
/// users and S' servers, so every utility keeps its weight β1/U and every server
/// its weight β2/S of the full slot. The sub-slot's γ problem is then exactly the
/// server's problem in the full slot (the γ problem splits by server, SPEC §2.1),
/// its objective is the server's term of e (up to rounding in the last bits: the
/// unit tests compare with the full slot), and its violations are the server's.
#[derive(Clone, Debug, Default)]
pub(crate) struct Valuer {
    users: Vec<User>,
    servers: Vec<Server>,
    association: Vec<usize>,
    gamma: Vec<f64>,
    /// Sub-slot evaluations done so far (the oracle's work measure).
    pub evaluations: usize,
}

/// Sub-slot capacities for the common small case (fewer bytes to clear and copy).
const SMALL_USERS: usize = 8;
/// See [`SMALL_USERS`].
const SMALL_SERVERS: usize = 9;

impl Valuer {
    /// The part of server `s` holding the user set `mask` of `slot`.
    pub fn part(
        &mut self,
        params: &Params,
        slot: &Status,
        s: usize,
        mask: u64,
    ) -> anyhow::Result<Part> {
        if mask == 0 {
            return Ok(Part::default());
        }
        self.evaluations += 1;
        let all = slot.servers();
        let server = *all
            .get(s)
            .ok_or_else(|| anyhow::anyhow!("server {s} out of range"))?;
        if !server.available {
            anyhow::bail!("server {s} is down: it hosts nobody");
        }
        self.users.clear();
        self.servers.clear();
        self.servers.push(server);
        // Sub-slot index of each full-slot server that appears (s is 0).
        let mut index = [usize::MAX; MAX_SERVERS];
        index[s] = 0;
        for u in members(mask) {
            let mut user = *slot
                .users()
                .get(u)
                .ok_or_else(|| anyhow::anyhow!("user {u} out of range"))?;
            if let Some(p) = user.prev_server {
                let i = index
                    .get_mut(p)
                    .ok_or_else(|| anyhow::anyhow!("previous server {p} out of range"))?;
                if *i == usize::MAX {
                    *i = self.servers.len();
                    self.servers.push(all[p]);
                }
                user.prev_server = Some(*i);
            }
            self.users.push(user);
        }
        let mut sub_params = *params;
        sub_params.beta1 = params.beta1 * self.users.len() as f64 / slot.users().len() as f64;
        sub_params.beta2 = params.beta2 * self.servers.len() as f64 / all.len() as f64;
        self.association.clear();
        self.association.resize(self.users.len(), 0);
        self.gamma.clear();
        self.gamma.resize(self.users.len(), 0.0);
        if self.users.len() <= SMALL_USERS && self.servers.len() <= SMALL_SERVERS {
            self.solve::<SMALL_USERS, SMALL_SERVERS>(&sub_params)
        } else {
            self.solve::<MAX_USERS, MAX_SERVERS>(&sub_params)
        }
    }

    /// Solves and scores the sub-slot held in the buffers.
    fn solve<const U: usize, const S: usize>(&mut self, params: &Params) -> anyhow::Result<Part> {
        let sub: Slot<U, S> =
            Slot::new(&self.servers, &self.users).map_err(|e| anyhow::anyhow!("sub-slot: {e}"))?;
        solve_gamma(params, &sub, &self.association, &mut self.gamma)
            .map_err(|e| anyhow::anyhow!("γ solver on a sub-slot: {e}"))?;
        let eval = evaluate(params, &sub, &self.association, &self.gamma)
            .map_err(|e| anyhow::anyhow!("evaluate on a sub-slot: {e}"))?;
        Ok(Part {
            violations: eval.violations.total(),
            objective: eval.objective,
        })
    }
}

/// User sets per server of an association (bit u of entry s: user u is on s).
pub(crate) fn masks(association: &[usize], servers: usize) -> Vec<u64> {
    let mut m = vec![0u64; servers];
    for (u, &s) in association.iter().enumerate() {
        if let Some(x) = m.get_mut(s) {
            *x |= bit(u);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Emd, Scenario};
    use crate::sim::Env;

    /// The parts of an association add up to what `solve_gamma` + `evaluate` say of
    /// the whole slot, and the load-based violation count is `evaluate`'s.
    #[test]
    fn parts_add_up_to_the_slot() {
        let sc = Scenario {
            users: 12,
            servers: 5,
            slots: 3,
            emd: Emd::All(0.4),
            ..Scenario::default()
        };
        let mut env = Env::new(&sc, 5).unwrap();
        // Two slots in, so users have previous servers and moving them migrates.
        for k in 0..2 {
            let assoc = (0..12).map(|u| (u + k) % 5).collect();
            env.step(&crate::sim::Decision::optimal(assoc)).unwrap();
        }
        let (params, slot) = (&sc.params, env.status());
        assert!(slot.users().iter().all(|u| u.prev_server.is_some()));
        let table = LoadTable::new(params, slot);
        let mut valuer = Valuer::default();
        for k in 0..20u64 {
            let assoc: Vec<usize> = (0..12)
                .map(|u| ((u as u64 * 7 + k * 3) % 5) as usize)
                .collect();
            let mut gamma = vec![0.0; 12];
            solve_gamma(params, slot, &assoc, &mut gamma).unwrap();
            let eval = evaluate(params, slot, &assoc, &gamma).unwrap();
            let mut total = Part::default();
            let mut viol = 0;
            for (s, &m) in masks(&assoc, 5).iter().enumerate() {
                total = total.plus(valuer.part(params, slot, s, m).unwrap());
                viol += table.sum(s, m).violations(&slot.servers()[s]);
            }
            assert_eq!(total.violations, eval.violations.total());
            assert_eq!(viol, eval.violations.total());
            assert!((total.objective - eval.objective).abs() < 1e-12);
        }
    }

    #[test]
    fn members_lists_set_bits_in_order() {
        assert_eq!(members(0b1010_0101).collect::<Vec<_>>(), [0, 2, 5, 7]);
        assert_eq!(members(1 << 63).collect::<Vec<_>>(), [63]);
        assert_eq!(members(0).count(), 0);
    }
}

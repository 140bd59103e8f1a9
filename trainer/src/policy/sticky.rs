//! Sticky: keep every user on last slot's server unless a constraint breaks there.
//!
//! # Rule
//!
//! Start from the previous association ([`Env::prev_association`]). If every server
//! keeps C2 at γ = 0 (the γ solver keeps C2 whenever it holds at γ = 0) and C3, and
//! none of them is down (SPEC §2.2a), that is the decision: O(U + S) work and no
//! allocation beyond the returned `Vec`.
//!
//! Otherwise the broken servers (a server that is down and hosts anyone counts as
//! broken; it is repaired when empty) are repaired in server index order, one user move
//! at a time, and only users of a broken server move. A move takes a user u off the
//! broken server s to a server t ≠ s that keeps C2 (γ = 0) and C3 with u added, so
//! a repair never breaks another server and each user moves at most once. Among
//! the possible moves, in this order of preference:
//!
//! 1. a move that alone repairs s (so one move is used whenever one suffices);
//!    otherwise the move that leaves s with the smallest relative excess over its
//!    capacities (Σ max(0, load/capacity − 1)), heading for the fewest moves;
//! 2. then the highest objective e of the slot after the move, with γ solved by the
//!    controller: "best" is measured with the quantity every decision maker is
//!    compared on, so the repair pays for migration and synchronisation distance and
//!    for the data utility lost or gained, not only for distance. Only the parts of
//!    s and t change, so only they are re-solved (see `feasible::Valuer`);
//! 3. then the lower user index, then the lower server index.
//!
//! If no server can take any user of s, s stays broken (the slot is infeasible).
//! The greedy count of moves is the fewest whenever one move per broken server
//! suffices; it is not a minimum in general.

use anyhow::Context;

use super::feasible::{bit, masks, members, LoadTable, Loads, Part, Valuer};
use super::DecisionMaker;
use crate::sim::{Decision, Env, Status};
use diten_controller::Params;

/// The sticky decision maker (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Sticky;

impl Sticky {
    /// The decision maker (it has no state).
    pub fn new() -> Self {
        Sticky
    }
}

impl DecisionMaker for Sticky {
    fn name(&self) -> &str {
        "sticky"
    }

    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
        Ok(Decision::optimal(associate(env)?))
    }
}

/// The sticky association for the current slot of `env`.
pub(crate) fn associate(env: &Env) -> anyhow::Result<Vec<usize>> {
    let slot = env.status();
    let params = &env.scenario().params;
    let prev = env.prev_association();
    let on_down = prev.iter().any(|&s| !slot.available(s));
    match Loads::of(params, slot, prev).first_broken(slot.servers()) {
        None if !on_down => Ok(prev.to_vec()),
        _ => repair(params, slot, prev).context("sticky: repairing the association"),
    }
}

/// A candidate move of the repair, ranked as in the module docs.
#[derive(Clone, Copy, Debug)]
struct Move {
    user: usize,
    to: usize,
    repairs: bool,
    excess: f64,
    gain: f64,
}

impl Move {
    /// Whether `self` ranks strictly before `other`.
    fn before(&self, other: &Move) -> bool {
        if self.repairs != other.repairs {
            return self.repairs;
        }
        if self.excess != other.excess {
            return self.excess < other.excess;
        }
        self.gain > other.gain
    }
}

/// The repair of the module docs, from the previous association `prev`.
fn repair(params: &Params, slot: &Status, prev: &[usize]) -> anyhow::Result<Vec<usize>> {
    let servers = slot.servers();
    let table = LoadTable::new(params, slot);
    let mut association = prev.to_vec();
    let mut sets = masks(&association, servers.len());
    let mut valuer = Valuer::default();
    let mut parts: Vec<Option<Part>> = vec![None; servers.len()];
    // A down server is broken while it hosts anyone; its part of e is left out
    // of the moves' gains (every user leaves it anyway).
    let broken = |s: usize, mask: u64| {
        let srv = &servers[s];
        if srv.available {
            table.sum(s, mask).violations(srv) > 0
        } else {
            mask != 0
        }
    };
    for (s, srv) in servers.iter().enumerate() {
        while broken(s, sets[s]) {
            let mut best: Option<Move> = None;
            for u in members(sets[s]) {
                let rest = sets[s] & !bit(u);
                let rest_load = table.sum(s, rest);
                let mut rest_part: Option<Part> = None;
                for (t, tsrv) in servers.iter().enumerate() {
                    let with_u = sets[t] | bit(u);
                    if t == s || !tsrv.available || table.sum(t, with_u).violations(tsrv) > 0 {
                        continue;
                    }
                    let rest_part = match rest_part {
                        Some(p) => p,
                        None if !srv.available => *rest_part.insert(Part::default()),
                        None => *rest_part.insert(valuer.part(params, slot, s, rest)?),
                    };
                    let t_part = match parts[t] {
                        Some(p) => p,
                        None => *parts[t].insert(valuer.part(params, slot, t, sets[t])?),
                    };
                    let t_new = valuer.part(params, slot, t, with_u)?;
                    let (repairs, excess) = if srv.available {
                        (rest_load.violations(srv) == 0, rest_load.excess(srv))
                    } else {
                        (rest == 0, f64::from(rest.count_ones()))
                    };
                    let candidate = Move {
                        user: u,
                        to: t,
                        repairs,
                        excess,
                        gain: rest_part.objective + t_new.objective - t_part.objective,
                    };
                    if best.is_none_or(|b| candidate.before(&b)) {
                        best = Some(candidate);
                    }
                }
            }
            let Some(m) = best else {
                break; // no server can take any user of s: s stays broken
            };
            association[m.user] = m.to;
            sets[s] &= !bit(m.user);
            sets[m.to] |= bit(m.user);
            parts[s] = None;
            parts[m.to] = None;
        }
    }
    Ok(association)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use diten_controller::{evaluate, solve_gamma};

    use crate::policy::test_scenario as scenario;

    /// Constraints broken at γ = 0, counted by `evaluate` (independent of `Loads`).
    fn broken(params: &Params, slot: &Status, assoc: &[usize]) -> usize {
        evaluate(params, slot, assoc, &vec![0.0; assoc.len()])
            .unwrap()
            .violations
            .total()
    }

    /// e of an association with the optimal γ (the full slot, no sub-slots).
    fn objective(params: &Params, slot: &Status, assoc: &[usize]) -> f64 {
        let mut gamma = vec![0.0; assoc.len()];
        solve_gamma(params, slot, assoc, &mut gamma).unwrap();
        evaluate(params, slot, assoc, &gamma).unwrap().objective
    }

    #[test]
    fn keeps_the_previous_server_unless_a_constraint_breaks() {
        let mut repaired = 0;
        let mut single = 0;
        for seed in 0..3 {
            let sc = scenario(20, 11, 60, seed);
            let params = sc.params;
            let mut env = Env::new(&sc, seed).unwrap();
            let mut dm = Sticky::new();
            while !env.done() {
                let d = dm.decide(&env).unwrap();
                let (slot, prev) = (env.status(), env.prev_association());
                assert_eq!(d.association.len(), prev.len());
                assert!(d.association.iter().all(|&s| s < 11));
                if broken(&params, slot, prev) == 0 {
                    assert_eq!(d.association, prev, "slot {}: nothing broke", env.t());
                } else {
                    repaired += 1;
                    assert_eq!(broken(&params, slot, &d.association), 0);
                    // Only users of servers that broke move.
                    let eval = evaluate(&params, slot, prev, &vec![0.0; prev.len()]).unwrap();
                    let moved: Vec<usize> = (0..prev.len())
                        .filter(|&u| d.association[u] != prev[u])
                        .collect();
                    assert!(!moved.is_empty());
                    for &u in &moved {
                        let (cost, srv) = (eval.servers[prev[u]], slot.servers()[prev[u]]);
                        assert!(
                            cost.cmp > srv.q || cost.syn > srv.p,
                            "user {u} moved off a sound server"
                        );
                    }
                    // Brute force over single moves: if one repairs the slot, sticky
                    // moves one user, and no single repairing move has a higher e.
                    let mut best_single = f64::NEG_INFINITY;
                    for u in 0..prev.len() {
                        for t in 0..11 {
                            let mut a = prev.to_vec();
                            a[u] = t;
                            if broken(&params, slot, &a) == 0 {
                                best_single = best_single.max(objective(&params, slot, &a));
                            }
                        }
                    }
                    if best_single > f64::NEG_INFINITY {
                        single += 1;
                        assert_eq!(moved.len(), 1, "one move suffices");
                        let e = objective(&params, slot, &d.association);
                        assert!(
                            e >= best_single - 1e-9,
                            "{e} < best single move {best_single}"
                        );
                    }
                }
                let out = env.step(&d).unwrap();
                assert_eq!(out.evaluation.violations.total(), 0);
            }
        }
        assert!(
            repaired > 5 && single > 5,
            "repairs exercised: {repaired}, {single}"
        );
    }

    #[test]
    fn a_user_that_fits_nowhere_leaves_its_server_broken() {
        // One server: nothing can move, the previous association stays.
        let sc = Scenario {
            samples: [2000, 2000],
            ..scenario(8, 1, 3, 1)
        };
        let mut env = Env::new(&sc, 1).unwrap();
        while !env.done() {
            let d = Sticky::new().decide(&env).unwrap();
            assert_eq!(d.association, vec![0; 8]);
            assert!(env.step(&d).unwrap().evaluation.violations.total() > 0);
        }
    }
}

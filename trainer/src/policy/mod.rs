//! Decision makers: given the simulator's view of a slot, choose the association
//! (and, for Baseline 3 only, γ). Every number they weigh comes from
//! `diten-controller`.
//!
//! | name | what it is |
//! |---|---|
//! | `nearest` | Baseline 2: nearest server that keeps C2 and C3, optimal γ |
//! | `nearest-random` | Baseline 3: Baseline 2's association, uniformly random γ scaled to keep C2 |
//! | `sticky` | keep last slot's server unless a constraint breaks, then the best feasible move |
//! | `oracle` | local search over the slot with full knowledge and the exact γ solver |
//! | `random` | a uniformly random server per user, optimal γ (a floor, not in the default set) |
//! | `lookahead` | clairvoyant two-slot planner around the oracle (a yardstick of foresight, not in the default set) |
//!
//! These are the [`Builtin`] decision makers. Trained policies are files: a
//! training checkpoint ([`trained`]) or an exported firmware blob run through the
//! gateway's controller ([`ControllerPolicy`]); [`PolicySpec`] is what `--policy`
//! names.

use crate::sim::{Decision, Env};

/// A decision maker for the simulator.
pub trait DecisionMaker: Send {
    /// The name used on the command line and in tables.
    fn name(&self) -> &str;
    /// Called at the start of each episode with the episode's seed (decision makers
    /// with randomness re-seed from it, so results are reproducible).
    fn reset(&mut self, _seed: u64) {}
    /// Decides the current slot of `env`.
    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision>;
}

#[cfg(feature = "torch")]
pub mod checkpoint;
pub mod controller;
mod feasible;
pub mod lookahead;
mod nearest;
pub mod norm;
mod oracle;
mod search;
pub mod spec;
mod sticky;
pub mod trained;

pub use controller::ControllerPolicy;
pub use lookahead::Lookahead;
pub use nearest::{Nearest, NearestRandom};
pub use oracle::{Oracle, OracleConfig, Score, Scored};
pub use search::{SearchConfig, SearchOracle};
pub use spec::{Builtin, LoadedPolicy, PolicyError, PolicySpec};
pub use sticky::Sticky;

/// A test scenario: `users` × `servers`, `slots` per episode, φ = 0.2, seed `seed`.
#[cfg(test)]
pub(crate) fn test_scenario(
    users: usize,
    servers: usize,
    slots: usize,
    seed: u64,
) -> crate::scenario::Scenario {
    crate::scenario::Scenario {
        users,
        servers,
        slots,
        seed,
        emd: crate::scenario::Emd::All(0.2),
        ..crate::scenario::Scenario::default()
    }
}

/// Every association of `users` users on `servers` servers (the brute force of
/// the search tests).
#[cfg(test)]
pub(crate) fn all_associations(users: usize, servers: usize) -> Vec<Vec<usize>> {
    (0..servers.pow(users as u32))
        .map(|mut k| {
            (0..users)
                .map(|_| {
                    let s = k % servers;
                    k /= servers;
                    s
                })
                .collect()
        })
        .collect()
}

/// (broken constraints, e, r) of an association on the full slot, γ optimal.
#[cfg(test)]
pub(crate) fn score_of(
    params: &diten_controller::Params,
    slot: &crate::sim::Status,
    assoc: &[usize],
) -> (usize, f64, f64) {
    let mut gamma = vec![0.0; assoc.len()];
    diten_controller::solve_gamma(params, slot, assoc, &mut gamma).unwrap();
    let eval = diten_controller::evaluate(params, slot, assoc, &gamma).unwrap();
    (eval.violations.total(), eval.objective, eval.reward)
}

/// Checks a decision maker from `make` against brute force on the 640 tiny slots
/// of its own episodes (3–5 users on 3–4 servers, 20 seeds × 8 slots each): its
/// association's e (γ optimal) is the best feasible e whenever some association
/// is feasible, else its r is the best r.
#[cfg(test)]
pub(crate) fn assert_brute_force_optimum(make: impl Fn() -> Box<dyn DecisionMaker>) {
    let mut checked = 0;
    for (users, servers) in [(3, 3), (4, 3), (3, 4), (5, 4)] {
        for seed in 0..20 {
            let sc = test_scenario(users, servers, 8, seed);
            let mut env = Env::new(&sc, seed).unwrap();
            let mut dm = make();
            while !env.done() {
                let (params, slot) = (&sc.params, env.status());
                let scores: Vec<_> = all_associations(users, servers)
                    .iter()
                    .map(|a| score_of(params, slot, a))
                    .collect();
                let best_e = scores
                    .iter()
                    .filter(|s| s.0 == 0)
                    .map(|s| s.1)
                    .fold(f64::NEG_INFINITY, f64::max);
                let best_r = scores.iter().map(|s| s.2).fold(f64::NEG_INFINITY, f64::max);
                let d = dm.decide(&env).unwrap();
                let (v, e, r) = score_of(params, slot, &d.association);
                let at = format!(
                    "{} {users}×{servers}, seed {seed}, slot {}",
                    dm.name(),
                    env.t()
                );
                if best_e > f64::NEG_INFINITY {
                    assert_eq!(v, 0, "{at}");
                    assert!(
                        (e - best_e).abs() < 1e-9,
                        "{at}: e {e}, brute force {best_e}"
                    );
                } else {
                    assert!(
                        (r - best_r).abs() < 1e-9,
                        "{at}: r {r}, brute force {best_r}"
                    );
                }
                checked += 1;
                env.step(&d).unwrap();
            }
        }
    }
    assert_eq!(checked, 4 * 20 * 8);
}

/// Checks that a decision maker from `make` is feasible on every slot of two
/// episodes with room (20 users, 15 servers, 10 slots), never below nearest's or
/// sticky's e on the same slot, and above both somewhere (a search must find
/// what its starts miss).
#[cfg(test)]
pub(crate) fn assert_never_below_nearest_or_sticky(make: impl Fn() -> Box<dyn DecisionMaker>) {
    for seed in 0..2 {
        let sc = test_scenario(20, 15, 10, seed);
        let mut env = Env::new(&sc, seed).unwrap();
        let (mut dm, mut nearest, mut sticky) = (make(), Nearest::new(), Sticky::new());
        let mut strictly_better = 0;
        while !env.done() {
            let d = dm.decide(&env).unwrap();
            assert_eq!(d.association.len(), 20);
            assert!(d.association.iter().all(|&s| s < 15));
            let e = |d: &Decision| {
                let out = env.clone().step(d).unwrap();
                assert_eq!(out.evaluation.violations.total(), 0);
                out.evaluation.objective
            };
            let eo = e(&d);
            let en = e(&nearest.decide(&env).unwrap());
            let es = e(&sticky.decide(&env).unwrap());
            let name = dm.name();
            assert!(
                eo >= en && eo >= es,
                "{name} {eo}, nearest {en}, sticky {es}"
            );
            if eo > en.max(es) + 1e-6 {
                strictly_better += 1;
            }
            env.step(&d).unwrap();
        }
        assert!(
            strictly_better > 0,
            "the search must find what the starts miss"
        );
    }
}

/// A uniformly random available server for every user, with the optimal γ.
#[derive(Debug)]
pub struct Random {
    rng: rand_chacha::ChaCha8Rng,
}

impl Random {
    /// Seeded at each episode by [`DecisionMaker::reset`].
    pub fn new() -> Self {
        use rand_core::SeedableRng;
        Random {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(0),
        }
    }
}

impl Default for Random {
    fn default() -> Self {
        Random::new()
    }
}

impl DecisionMaker for Random {
    fn name(&self) -> &str {
        "random"
    }

    fn reset(&mut self, seed: u64) {
        use rand_core::SeedableRng;
        self.rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x005E_ED0F_7A4D);
    }

    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
        use rand_core::RngCore;
        let up: Vec<usize> = (0..env.status().servers().len())
            .filter(|&s| env.status().available(s))
            .collect();
        let users = env.status().users().len();
        // Modulo bias is below 1e-17 for S <= 64: irrelevant for a yardstick.
        let association = (0..users)
            .map(|_| up[(self.rng.next_u64() % up.len() as u64) as usize])
            .collect();
        Ok(Decision::optimal(association))
    }
}

#[cfg(test)]
mod churn_tests {
    use super::*;

    /// SPEC §2.2a: every built-in decision maker decides slots with users that
    /// returned and servers that are down, never naming a down server.
    #[test]
    fn every_built_in_decides_under_churn() {
        let sc = crate::scenario::Scenario {
            churn: Some(crate::scenario::Churn {
                leave_p: 0.1,
                join_p: 0.3,
                fail_p: 0.08,
                down: [2, 6],
            }),
            ..test_scenario(10, 5, 60, 3)
        };
        for builtin in Builtin::ALL {
            let name = builtin.name();
            let mut dm = builtin.decision_maker();
            dm.reset(3);
            let mut env = Env::new(&sc, 3).unwrap();
            let (mut down_seen, mut infeasible) = (0, 0);
            while !env.done() {
                let st = env.status().clone();
                let d = dm.decide(&env).unwrap();
                assert_eq!(d.association.len(), st.users().len(), "{name}");
                for &s in &d.association {
                    assert!(st.servers()[s].available, "{name} chose down server {s}");
                }
                down_seen += st.servers().iter().filter(|s| !s.available).count();
                let o = env
                    .step(&d)
                    .unwrap_or_else(|e| panic!("{name} at slot {}: {e}", st.users().len()));
                infeasible += usize::from(!o.evaluation.feasible());
            }
            assert!(down_seen > 0, "the scenario takes servers down");
            if builtin != Builtin::Random {
                assert_eq!(infeasible, 0, "{name}: infeasible slots");
            }
        }
    }
}

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

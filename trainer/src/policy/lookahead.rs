//! Lookahead: a clairvoyant two-slot planner, the yardstick that measures what
//! foresight is worth against the myopic [`Oracle`] (`diten foresight`).
//!
//! # Why
//!
//! The oracle maximises each slot's e on its own. Migration couples the slots: the
//! association chosen now is the next slot's previous association, so it sets the
//! next slot's migration costs, and the paper's MDP sums (discounted) e over the
//! episode. A decision that is worse now may be cheaper to leave later, and the
//! oracle never seeks one. The lookahead does, with more knowledge than any
//! gateway has: it clones the simulator and steps the clone, so it sees the next
//! slot's positions and images. It is a yardstick, never a deployable policy.
//!
//! # Rule
//!
//! At slot t, candidate associations κ_t, distinct, in this order:
//!
//! 1. the oracle's decision (the myopic one);
//! 2. [`Sticky`](super::Sticky)'s association (the previous one kept wherever it
//!    keeps C2 and C3);
//! 3. the oracle's decision for slot t+1 on the branch of 1, placed now: the
//!    association of where the users are going;
//! 4. the best [`LookaheadConfig::runners_up`] other associations the oracle's
//!    search scored at t (its starts and local optima, by the oracle's key,
//!    [`Oracle::search`]).
//!
//! Each candidate is scored on a clone of the simulator: step it with κ_t (optimal
//! γ), let the oracle decide slot t+1 on the clone (its previous association is
//! κ_t), step that too. The candidate's two-slot value is e_t + e_{t+1}; pairs
//! feasible in both slots come first, infeasible ones are ranked by r_t + r_{t+1}
//! (the oracle's key, [`Score`], over two slots). The best wins, the earliest on
//! ties, so the myopic decision unless another is strictly better. The sum is
//! undiscounted: with the paper's discount near 1 (0.98) the weight of e_{t+1}
//! would change it by 2 %. In the last slot there is no next one and the
//! lookahead decides as the oracle.
//!
//! The horizon recedes: the next slot is planned again from scratch, and the
//! κ_{t+1} that scored κ_t is not committed.
//!
//! # Cost
//!
//! One oracle search at t, then one oracle decision per candidate: at most
//! 4 + `runners_up` oracle calls per slot (about 7 with the defaults).
//!
//! # What it guarantees
//!
//! * Its choice's two-slot value (as scored: the oracle deciding t+1) is at least
//!   the myopic decision's, which is a candidate.
//! * Nothing over the episode: the real next slot is planned again and the two
//!   episodes' previous associations differ from the first deviation on, so its
//!   mean e may fall below the myopic oracle's. It is neither the two-slot
//!   optimum (the candidates are a handful of the S^U associations) nor an optimal
//!   policy of the MDP.

use anyhow::Context;

use super::oracle::{best, Score};
use super::{sticky, DecisionMaker, Oracle};
use crate::sim::{Decision, Env, SlotEvaluation};

/// How many candidates the lookahead weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookaheadConfig {
    /// Associations of the oracle's search, beyond its decision, tried as
    /// candidates (the best by the oracle's key that are not candidates already).
    pub runners_up: usize,
}

impl Default for LookaheadConfig {
    fn default() -> Self {
        LookaheadConfig { runners_up: 3 }
    }
}

/// Where a candidate comes from (module docs, "Rule").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The oracle's decision for this slot.
    Myopic,
    /// Sticky's association.
    Sticky,
    /// The oracle's decision for the next slot, on the myopic branch.
    Anticipated,
    /// Another association the oracle's search scored.
    RunnerUp,
}

/// A candidate association for the current slot and its two-slot value.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Server of each user at slot t.
    pub association: Vec<usize>,
    /// Where it comes from.
    pub origin: Origin,
    /// The oracle's association at slot t+1 after it.
    pub next: Vec<usize>,
    /// e at t and at t+1.
    pub objective: [f64; 2],
    /// r at t and at t+1.
    pub reward: [f64; 2],
    /// Whether both slots keep every constraint.
    pub feasible: bool,
}

impl Candidate {
    /// The two-slot key: feasible pairs first, then Σ e (feasible) or Σ r.
    pub fn score(&self) -> Score {
        let [a, b] = if self.feasible {
            self.objective
        } else {
            self.reward
        };
        Score {
            feasible: self.feasible,
            value: a + b,
        }
    }
}

/// The candidates of one slot, scored, and the one chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Candidates in the order of the module docs; the first is the myopic one.
    pub candidates: Vec<Candidate>,
    /// Index of the chosen candidate.
    pub chosen: usize,
}

/// The lookahead decision maker (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Lookahead {
    config: LookaheadConfig,
    oracle: Oracle,
}

impl Lookahead {
    /// The lookahead with the default configuration and the default oracle.
    pub fn new() -> Self {
        Lookahead::default()
    }

    /// The lookahead with `config` and `oracle` (its search and its decisions).
    pub fn with(config: LookaheadConfig, oracle: Oracle) -> Self {
        Lookahead { config, oracle }
    }

    /// The plan of the current slot of `env`; `None` in the episode's last slot,
    /// which has no next one.
    pub fn plan(&mut self, env: &Env) -> anyhow::Result<Option<Plan>> {
        if env.t() + 1 >= env.scenario().slots {
            return Ok(None);
        }
        let mut scored = self.oracle.search(env)?;
        let myopic = best(&scored).context("lookahead: the oracle has no candidate")?;
        let myopic = scored.swap_remove(myopic).association;
        let mut candidates = vec![self.two_slots(env, myopic, Origin::Myopic)?];
        let anticipated = candidates[0].next.clone();
        let slot = env.status();
        // With churn the next slot may hold other users or lose a server: its
        // association is then no candidate for this one.
        let fits_now =
            |a: &[usize]| a.len() == slot.users().len() && a.iter().all(|&s| slot.available(s));
        for (association, origin) in [
            (sticky::associate(env)?, Origin::Sticky),
            (anticipated, Origin::Anticipated),
        ] {
            if fits_now(&association) && !candidates.iter().any(|c| c.association == association) {
                candidates.push(self.two_slots(env, association, origin)?);
            }
        }
        // Best first by the oracle's key, the earlier on ties (a stable sort).
        scored.sort_by(|a, b| {
            (b.score.feasible.cmp(&a.score.feasible))
                .then_with(|| b.score.value.total_cmp(&a.score.value))
        });
        let mut added = 0;
        for s in scored {
            if added == self.config.runners_up {
                break;
            }
            if !candidates.iter().any(|c| c.association == s.association) {
                candidates.push(self.two_slots(env, s.association, Origin::RunnerUp)?);
                added += 1;
            }
        }
        let mut chosen = 0;
        for (k, c) in candidates.iter().enumerate() {
            if c.score().beats(&candidates[chosen].score()) {
                chosen = k;
            }
        }
        Ok(Some(Plan { candidates, chosen }))
    }

    /// Scores `association` at slot t on a clone of `env`, the oracle deciding t+1.
    fn two_slots(
        &mut self,
        env: &Env,
        association: Vec<usize>,
        origin: Origin,
    ) -> anyhow::Result<Candidate> {
        let mut branch = env.clone();
        let decision = Decision::optimal(association);
        let now = branch
            .step(&decision)
            .context("lookahead: stepping a candidate")?
            .evaluation;
        let next = self.oracle.decide(&branch)?;
        let then = branch
            .step(&next)
            .context("lookahead: stepping the next slot")?
            .evaluation;
        let pair = |f: fn(&SlotEvaluation) -> f64| [f(&now), f(&then)];
        Ok(Candidate {
            association: decision.association,
            origin,
            next: next.association,
            objective: pair(|e| e.objective),
            reward: pair(|e| e.reward),
            feasible: now.feasible() && then.feasible(),
        })
    }
}

impl DecisionMaker for Lookahead {
    fn name(&self) -> &str {
        "lookahead"
    }

    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
        match self.plan(env)? {
            Some(mut plan) => Ok(Decision::optimal(
                plan.candidates.swap_remove(plan.chosen).association,
            )),
            None => self.oracle.decide(env),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_scenario as scenario;
    use crate::policy::{all_associations, score_of};
    use crate::sim::Status;
    use diten_controller::Params;

    /// (feasible, e, r) of an association on the full slot, γ optimal.
    fn value(params: &Params, slot: &Status, assoc: &[usize]) -> (bool, f64, f64) {
        let (broken, e, r) = score_of(params, slot, assoc);
        (broken == 0, e, r)
    }

    /// The best feasible e of the next slot after `now` at the current slot of
    /// `env`, by brute force over every association (−∞ when none is feasible).
    fn best_next(env: &Env, now: &[usize], every: &[Vec<usize>]) -> f64 {
        let mut branch = env.clone();
        branch.step(&Decision::optimal(now.to_vec())).unwrap();
        let params = &env.scenario().params;
        every
            .iter()
            .map(|a| value(params, branch.status(), a))
            .filter(|v| v.0)
            .map(|v| v.1)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// On slots small enough for brute force over every pair (κ_t, κ_{t+1}), each
    /// candidate's two slots are what brute force says (e_t of κ_t, and the best
    /// e_{t+1} after it: the oracle is exact there), the choice is the best
    /// candidate, never below the myopic one nor above the best pair.
    #[test]
    fn two_slot_values_match_brute_force() {
        // 4 users on 3 servers: 81 associations, 6 561 pairs per slot. (On 3 users
        // and 2 servers the myopic decision was the best pair in every slot.)
        let (users, servers) = (4, 3);
        let every = all_associations(users, servers);
        let (mut slots, mut deviations, mut at_the_pair_optimum) = (0, 0, 0);
        for seed in 0..12 {
            let sc = scenario(users, servers, 6, seed);
            let mut env = Env::new(&sc, seed).unwrap();
            let mut lookahead = Lookahead::new();
            while !env.done() {
                let Some(plan) = lookahead.plan(&env).unwrap() else {
                    assert_eq!(env.t() + 1, sc.slots);
                    break;
                };
                let at = format!("seed {seed}, slot {}", env.t());
                let params = &sc.params;
                for c in &plan.candidates {
                    let (feasible, e, _) = value(params, env.status(), &c.association);
                    let next = best_next(&env, &c.association, &every);
                    assert_eq!(
                        c.feasible,
                        feasible && next > f64::NEG_INFINITY,
                        "{at}: {c:?}"
                    );
                    if c.feasible {
                        assert!((c.objective[0] - e).abs() < 1e-12, "{at}: {c:?}, e_t {e}");
                        assert!(
                            (c.objective[1] - next).abs() < 1e-9,
                            "{at}: {c:?}, best e_t+1 {next}"
                        );
                    }
                }
                assert_eq!(plan.candidates[0].origin, Origin::Myopic, "{at}");
                let chosen = &plan.candidates[plan.chosen];
                for c in &plan.candidates {
                    assert!(!c.score().beats(&chosen.score()), "{at}: {plan:?}");
                }
                assert!(chosen.feasible, "{at}: every slot here has a feasible pair");
                let chosen = chosen.objective[0] + chosen.objective[1];
                let pair_optimum = every
                    .iter()
                    .filter_map(|a| {
                        let (feasible, e, _) = value(params, env.status(), a);
                        feasible.then(|| e + best_next(&env, a, &every))
                    })
                    .fold(f64::NEG_INFINITY, f64::max);
                assert!(
                    chosen <= pair_optimum + 1e-9,
                    "{at}: {chosen} > {pair_optimum}"
                );
                at_the_pair_optimum += usize::from(chosen >= pair_optimum - 1e-9);
                deviations += usize::from(plan.chosen != 0);
                slots += 1;
                let d = lookahead.decide(&env).unwrap();
                assert_eq!(
                    d.association, plan.candidates[plan.chosen].association,
                    "{at}: decide follows the plan"
                );
                env.step(&d).unwrap();
            }
        }
        assert_eq!(slots, 12 * 5);
        // The test must exercise foresight: some slots where the lookahead leaves
        // the myopic decision, and a choice at the best pair in most slots.
        assert!(deviations > 0, "never deviated from the myopic decision");
        assert!(
            at_the_pair_optimum * 4 >= slots * 3,
            "{at_the_pair_optimum} of {slots} slots at the pair optimum"
        );
    }

    /// At the default size the choice's two-slot value is at least the myopic
    /// decision's, and the myopic candidate is the oracle's decision.
    #[test]
    fn never_below_the_myopic_decision() {
        let sc = scenario(20, 9, 3, 7);
        let mut env = Env::new(&sc, 7).unwrap();
        let mut lookahead = Lookahead::with(LookaheadConfig { runners_up: 2 }, Oracle::new());
        let mut oracle = Oracle::new();
        while let Some(plan) = lookahead.plan(&env).unwrap() {
            let myopic = &plan.candidates[0];
            assert_eq!(myopic.association, oracle.decide(&env).unwrap().association);
            assert!(plan.candidates.len() >= 2, "{plan:?}");
            assert!(!plan.candidates[0]
                .score()
                .beats(&plan.candidates[plan.chosen].score()));
            let d = lookahead.decide(&env).unwrap();
            env.step(&d).unwrap();
        }
        assert_eq!(env.t(), sc.slots - 1);
    }
}

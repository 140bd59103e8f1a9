//! Oracle: the best association a local search finds for each slot, knowing the
//! whole slot (this slot's data, positions and capacities) and solving γ exactly.
//! It is the upper yardstick of the comparison: slow by design, never deployed.
//!
//! # Search
//!
//! Starts, climbed in this order: [`Sticky`](super::Sticky)'s association, the
//! previous association as it is (when the oracle drives the episode, its own last
//! decision: a warm start), [`Nearest`](super::Nearest)'s, then
//! [`OracleConfig::restarts`] uniformly random associations drawn from a ChaCha8
//! stream seeded with the episode seed and the slot index (a run is reproducible
//! and needs no [`DecisionMaker::reset`]). Duplicate starts are climbed once.
//!
//! From each start, best-improvement hill climbing over four neighbourhoods, tried
//! in this order, the first one with an improving change winning (its best change is
//! applied and the scan starts again from the first):
//!
//! 1. moves: one user to any other server;
//! 2. swaps: two users on different servers exchange servers;
//! 3. merges: every user of one server to another server;
//! 4. re-splits: the users of two occupied servers, together at most
//!    [`OracleConfig::max_split_users`], divided between the two in every possible way
//!    (this contains 1–3 for those servers and every compound of them).
//!
//! Merges and re-splits are there because the objective rewards consolidation
//! (Norm is concave, so costs weigh less on fewer servers). During development,
//! with moves and swaps alone the search missed the brute-force optimum in 47 of
//! the 640 tiny slots of the unit test (3–5 users, 3–4 servers), every miss "the
//! same group on another server" or "two servers' users divided otherwise"; with
//! merges, 4; with re-splits too, none (the test requires all 640).
//!
//! The search key is (constraints broken, then e): fewer broken constraints always
//! win, and among equals a higher e by more than [`TOLERANCE`]. Both are sums over
//! servers, so a change is scored by re-solving only the two servers it touches (a
//! sub-slot, see `feasible::Valuer`), and each (server, user set) is solved once
//! per slot (memoised). Changes that would break more constraints are discarded
//! before any solving (the count at γ = 0 is exact).
//!
//! Finally every start and every local optimum is scored on the full slot with
//! `solve_gamma` + `evaluate`, and the best by the real key wins: feasible before
//! infeasible, feasible ones by e, infeasible ones by the reward r (which charges
//! each broken constraint); ties go to the earlier candidate. [`Oracle::search`]
//! hands out every one of them scored, for callers that weigh the runners-up too
//! (the [lookahead](super::lookahead)).
//!
//! # Cost
//!
//! A sub-slot solve costs about 5–7 µs (release build; nearly all of it the γ
//! solver), and [`OracleConfig::max_evaluations`] bounds their number per slot.
//! With the default 3000, 20 users on 9, 15 or 21 servers took 18–21 ms per slot
//! (release build, one core of a 2-core machine shared with other builds; 750
//! slots of each of the three server counts, the oracle driving the episode: 47 s
//! in all, the Sticky reference included). The budget is spent on every such slot:
//! the climbs from Sticky's and the previous association usually finish, Nearest's
//! often, and the random restarts get what is left (on small instances, all they
//! need).
//!
//! # What it guarantees
//!
//! * Its decision is at least as good by the real key as Nearest's and Sticky's
//!   on the same slot (they are candidates, scored the same way): when they are
//!   feasible the oracle is feasible with e ≥ theirs, exactly as `Env::step`
//!   computes e.
//! * Unless the budget runs out, the chosen association is a local optimum of the
//!   search key: no move, swap, merge or re-split improves it by more than
//!   [`TOLERANCE`] (up to the last-bit difference between the sub-slot sums and the
//!   full slot's). When the budget runs out, the climb in progress stops where it
//!   is and later starts are only scored; the first guarantee still holds.
//! * It is a lower bound on the true per-slot optimum (the space has S^U
//!   associations), not the optimum itself; the unit tests compare it with brute
//!   force on tiny instances.
//! * It optimises each slot on its own: a decision that is worse now but cheaper to
//!   leave later is not sought.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use anyhow::Context;
use diten_controller::{evaluate, solve_gamma, Params};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use super::feasible::{bit, masks, members, LoadTable, Part, Valuer};
use super::{nearest, sticky, DecisionMaker};
use crate::sim::{Decision, Env, SlotEvaluation, Status};

/// A change of e smaller than this does not count as an improvement (it guards the
/// climb against cycling on rounding; e is O(1)).
pub const TOLERANCE: f64 = 1e-12;

/// What a server that is down counts as broken while it hosts anyone (more than
/// every constraint of a slot together: no climb accepts it).
const DOWN_BROKEN: usize = 1 << 20;

/// How hard the oracle searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OracleConfig {
    /// Uniformly random starts per slot, beyond Sticky's, the previous and Nearest's
    /// associations.
    pub restarts: usize,
    /// Most sub-slot γ solves (the solve and evaluation of one server's user set)
    /// per slot; it bounds the time per slot.
    pub max_evaluations: usize,
    /// Most users of two servers together for a re-split (2^n splits each).
    pub max_split_users: usize,
}

impl Default for OracleConfig {
    /// Sized so that 20 users on 9–21 servers take about 20 ms per slot on one core
    /// (release build): `diten compare` over 3 seeds × 750 slots × 3 server counts
    /// then spends about 2.5 minutes in the oracle (module docs, "Cost").
    fn default() -> Self {
        OracleConfig {
            restarts: 3,
            max_evaluations: 3000,
            max_split_users: 6,
        }
    }
}

/// The oracle decision maker (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    config: OracleConfig,
    table: LoadTable,
    valuer: Valuer,
    memo: Vec<MaskMap>,
}

impl Oracle {
    /// The oracle with the default configuration (3 random restarts, at most 3000
    /// sub-slot solves per slot, re-splits of up to 6 users).
    pub fn new() -> Self {
        Oracle::with_config(OracleConfig::default())
    }

    /// The oracle with `config`.
    pub fn with_config(config: OracleConfig) -> Self {
        Oracle {
            config,
            ..Oracle::default()
        }
    }

    /// Sub-slot solves done for the last decision (its work).
    pub fn last_evaluations(&self) -> usize {
        self.valuer.evaluations
    }

    /// The whole search of the current slot of `env` (module docs): every distinct
    /// start, then every distinct local optimum the climbs reached, each scored on
    /// the full slot. The best of it (by [`Score::beats`], the earlier on ties) is
    /// the oracle's decision; the rest are the runners-up a caller with other aims
    /// (a lookahead) may weigh.
    pub fn search(&mut self, env: &Env) -> anyhow::Result<Vec<Scored>> {
        let slot = env.status();
        let params = &env.scenario().params;
        let (n_users, n_servers) = (slot.users().len(), slot.servers().len());
        let mut starts = vec![sticky::associate(env)?];
        // The previous association is a start while it names no server that is
        // down (SPEC §2.2a); random starts draw among the available servers.
        let prev = env.prev_association();
        if prev.iter().all(|&s| slot.available(s)) {
            starts.push(prev.to_vec());
        }
        starts.push(nearest::associate(env));
        let up: Vec<usize> = (0..n_servers).filter(|&s| slot.available(s)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(env.seed() ^ mix(env.t() as u64)));
        for _ in 0..self.config.restarts {
            starts.push(
                (0..n_users)
                    .map(|_| up[below(&mut rng, up.len())])
                    .collect(),
            );
        }
        let mut candidates: Vec<Vec<usize>> = Vec::with_capacity(2 * starts.len());
        for s in starts {
            if !candidates.contains(&s) {
                candidates.push(s);
            }
        }

        self.table.fill(params, slot);
        self.memo.resize_with(n_servers, MaskMap::default);
        self.memo.iter_mut().for_each(HashMap::clear);
        self.valuer.evaluations = 0;
        let mut search = Search {
            params,
            slot,
            table: &self.table,
            valuer: &mut self.valuer,
            memo: &mut self.memo,
            config: self.config,
        };
        let n_starts = candidates.len();
        for k in 0..n_starts {
            let optimum = search
                .climb(candidates[k].clone())
                .context("oracle: local search")?;
            if !candidates.contains(&optimum) {
                candidates.push(optimum);
            }
        }

        let mut gamma = vec![0.0; n_users];
        candidates
            .into_iter()
            .map(|association| {
                solve_gamma(params, slot, &association, &mut gamma)
                    .map_err(|e| anyhow::anyhow!("oracle: γ solver: {e}"))?;
                let eval = evaluate(params, slot, &association, &gamma)
                    .map_err(|e| anyhow::anyhow!("oracle: evaluate: {e}"))?;
                Ok(Scored {
                    association,
                    score: Score::of(&eval),
                })
            })
            .collect()
    }
}

/// An association the search scored on the full slot.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// Server of each user.
    pub association: Vec<usize>,
    /// Its score with the optimal γ.
    pub score: Score,
}

/// Index of the best of `scored` by [`Score::beats`], the earlier on ties (the
/// oracle's decision); `None` when it is empty.
pub(crate) fn best(scored: &[Scored]) -> Option<usize> {
    let mut best: Option<(Score, usize)> = None;
    for (k, c) in scored.iter().enumerate() {
        if best.as_ref().is_none_or(|(b, _)| c.score.beats(b)) {
            best = Some((c.score, k));
        }
    }
    best.map(|(_, k)| k)
}

impl DecisionMaker for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }

    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
        let mut scored = self.search(env)?;
        let k = best(&scored).context("oracle: no candidate")?;
        Ok(Decision::optimal(scored.swap_remove(k).association))
    }
}

/// The real key of a full-slot candidate: feasible first, then e (feasible) or r
/// (which charges each broken constraint).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Whether no constraint is broken.
    pub feasible: bool,
    /// e when feasible, else r.
    pub value: f64,
}

impl Score {
    /// The score of a slot's evaluation.
    pub fn of(eval: &SlotEvaluation) -> Score {
        let feasible = eval.feasible();
        Score {
            feasible,
            value: if feasible {
                eval.objective
            } else {
                eval.reward
            },
        }
    }

    /// Whether `self` is strictly better than `other`.
    pub fn beats(&self, other: &Score) -> bool {
        if self.feasible != other.feasible {
            return self.feasible;
        }
        self.value > other.value
    }
}

/// One slot's local search state shared by the climbs.
struct Search<'a> {
    params: &'a Params,
    slot: &'a Status,
    table: &'a LoadTable,
    valuer: &'a mut Valuer,
    memo: &'a mut [MaskMap],
    config: OracleConfig,
}

/// A change of the association.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// User to server.
    Move(usize, usize),
    /// Two users exchange servers.
    Swap(usize, usize),
    /// Every user of the first server to the second.
    Merge(usize, usize),
    /// The users of two servers re-divided: the first gets the set, the second the rest.
    Split(usize, usize, u64),
}

/// What a change gains: constraints repaired, then e.
#[derive(Clone, Copy, Debug)]
struct Gain {
    repaired: isize,
    objective: f64,
}

impl Gain {
    fn improves(&self) -> bool {
        self.repaired > 0 || (self.repaired == 0 && self.objective > TOLERANCE)
    }

    fn beats(&self, other: &Gain) -> bool {
        self.repaired > other.repaired
            || (self.repaired == other.repaired && self.objective > other.objective)
    }
}

/// Keeps in `best` the improving change with the highest gain (the first on ties).
fn consider(best: &mut Option<(Gain, Change)>, gain: Option<Gain>, change: Change) {
    if let Some(g) = gain {
        if g.improves() && best.as_ref().is_none_or(|(b, _)| g.beats(b)) {
            *best = Some((g, change));
        }
    }
}

impl Search<'_> {
    /// The part of server `s` holding `mask`; `None` once the budget is spent.
    fn part(&mut self, s: usize, mask: u64) -> anyhow::Result<Option<Part>> {
        if mask == 0 {
            return Ok(Some(Part::default()));
        }
        if let Some(p) = self.memo.get(s).and_then(|m| m.get(&mask)) {
            return Ok(Some(*p));
        }
        if self.spent() {
            return Ok(None);
        }
        let p = self.valuer.part(self.params, self.slot, s, mask)?;
        if let Some(m) = self.memo.get_mut(s) {
            m.insert(mask, p);
        }
        Ok(Some(p))
    }

    /// Whether the budget of sub-slot solves is spent.
    fn spent(&self) -> bool {
        self.valuer.evaluations >= self.config.max_evaluations
    }

    /// Constraints broken by `mask` on server `s` (exact, no solving). A server
    /// that is down and hosts anyone counts as [`DOWN_BROKEN`] broken constraints,
    /// so no change ever places a user there.
    fn broken(&self, s: usize, mask: u64) -> usize {
        match self.slot.servers().get(s) {
            Some(srv) if !srv.available => {
                if mask == 0 {
                    0
                } else {
                    DOWN_BROKEN
                }
            }
            Some(srv) => self.table.sum(s, mask).violations(srv),
            None => 0,
        }
    }

    /// The gain of replacing the sets of servers `s` and `t` (parts `old`) with
    /// `new_s` and `new_t`; `None` when it would break more constraints or the budget
    /// is spent.
    fn gain(
        &mut self,
        (s, new_s): (usize, u64),
        (t, new_t): (usize, u64),
        old: Part,
    ) -> anyhow::Result<Option<Gain>> {
        let repaired =
            old.violations as isize - (self.broken(s, new_s) + self.broken(t, new_t)) as isize;
        if repaired < 0 {
            return Ok(None);
        }
        let (Some(ps), Some(pt)) = (self.part(s, new_s)?, self.part(t, new_t)?) else {
            return Ok(None);
        };
        Ok(Some(Gain {
            repaired,
            objective: ps.plus(pt).objective - old.objective,
        }))
    }

    /// The best improving change of the first neighbourhood that has one (module
    /// docs), or `None` at a local optimum.
    fn best_change(
        &mut self,
        association: &[usize],
        sets: &[u64],
        parts: &[Part],
    ) -> anyhow::Result<Option<Change>> {
        let n_servers = sets.len();
        let mut best: Option<(Gain, Change)> = None;
        for (u, &s) in association.iter().enumerate() {
            for t in (0..n_servers).filter(|&t| t != s) {
                let old = parts[s].plus(parts[t]);
                let g = self.gain((s, sets[s] & !bit(u)), (t, sets[t] | bit(u)), old)?;
                consider(&mut best, g, Change::Move(u, t));
            }
        }
        if best.is_none() {
            for (u, &s) in association.iter().enumerate() {
                for (v, &t) in association.iter().enumerate().skip(u + 1) {
                    if s != t {
                        let old = parts[s].plus(parts[t]);
                        let new_s = (sets[s] & !bit(u)) | bit(v);
                        let new_t = (sets[t] & !bit(v)) | bit(u);
                        let g = self.gain((s, new_s), (t, new_t), old)?;
                        consider(&mut best, g, Change::Swap(u, v));
                    }
                }
            }
        }
        if best.is_none() {
            for s in (0..n_servers).filter(|&s| sets[s] != 0) {
                for t in (0..n_servers).filter(|&t| t != s) {
                    let old = parts[s].plus(parts[t]);
                    let g = self.gain((s, 0), (t, sets[t] | sets[s]), old)?;
                    consider(&mut best, g, Change::Merge(s, t));
                }
            }
        }
        if best.is_none() {
            for s in (0..n_servers).filter(|&s| sets[s] != 0) {
                for t in (s + 1..n_servers).filter(|&t| sets[t] != 0) {
                    let both = sets[s] | sets[t];
                    if both.count_ones() as usize > self.config.max_split_users {
                        continue;
                    }
                    let old = parts[s].plus(parts[t]);
                    // Every subset x of `both` (s gets x, t the rest), from
                    // `both` − 1 down to 0 by the standard submask walk.
                    let mut x = both;
                    while x != 0 {
                        x = (x - 1) & both;
                        if x != sets[s] {
                            let g = self.gain((s, x), (t, both & !x), old)?;
                            consider(&mut best, g, Change::Split(s, t, x));
                        }
                    }
                }
            }
        }
        Ok(best.map(|(_, c)| c))
    }

    /// Best-improvement hill climbing from `association` (module docs).
    fn climb(&mut self, mut association: Vec<usize>) -> anyhow::Result<Vec<usize>> {
        let n_servers = self.slot.servers().len();
        let mut sets = masks(&association, n_servers);
        let mut parts = Vec::with_capacity(n_servers);
        for (s, &m) in sets.iter().enumerate() {
            match self.part(s, m)? {
                Some(p) => parts.push(p),
                None => return Ok(association),
            }
        }
        while let Some(change) = self.best_change(&association, &sets, &parts)? {
            let touched = match change {
                Change::Move(u, t) => {
                    let s = association[u];
                    sets[s] &= !bit(u);
                    sets[t] |= bit(u);
                    association[u] = t;
                    [s, t]
                }
                Change::Swap(u, v) => {
                    let (s, t) = (association[u], association[v]);
                    sets[s] = (sets[s] & !bit(u)) | bit(v);
                    sets[t] = (sets[t] & !bit(v)) | bit(u);
                    association.swap(u, v);
                    [s, t]
                }
                Change::Merge(s, t) => {
                    for u in members(sets[s]) {
                        association[u] = t;
                    }
                    sets[t] |= sets[s];
                    sets[s] = 0;
                    [s, t]
                }
                Change::Split(s, t, x) => {
                    let both = sets[s] | sets[t];
                    for u in members(both) {
                        association[u] = if x & bit(u) != 0 { s } else { t };
                    }
                    sets[s] = x;
                    sets[t] = both & !x;
                    [s, t]
                }
            };
            for s in touched {
                // Scored (memoised) when the change was chosen.
                let p = self
                    .part(s, sets[s])?
                    .context("a chosen change is memoised")?;
                parts[s] = p;
            }
            if self.spent() {
                break;
            }
        }
        Ok(association)
    }
}

/// Hashes user sets (u64 masks) with one multiply: much cheaper than SipHash, and
/// the keys are not adversarial.
#[derive(Clone, Copy, Debug, Default)]
struct MaskHasher(u64);

impl Hasher for MaskHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let z = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = z ^ (z >> 29);
    }
}

/// Memo of one server's parts by user set.
type MaskMap = HashMap<u64, Part, BuildHasherDefault<MaskHasher>>;

/// splitmix64 finaliser: spreads (seed, t) into a stream seed.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform integer in [0, n) without modulo bias (rejection).
pub(super) fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let n = n.max(1) as u64;
    let zone = u64::MAX - (u64::MAX % n) - 1;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return (x % n) as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Nearest, Sticky};

    use crate::policy::score_of as score;
    use crate::policy::test_scenario as scenario;

    #[test]
    fn finds_the_brute_force_optimum_on_tiny_slots() {
        crate::policy::assert_brute_force_optimum(|| Box::new(Oracle::new()));
    }

    #[test]
    fn never_below_nearest_or_sticky_and_feasible_with_room() {
        crate::policy::assert_never_below_nearest_or_sticky(|| Box::new(Oracle::new()));
    }

    #[test]
    fn ends_in_a_local_optimum() {
        let (users, servers) = (8, 5);
        let sc = scenario(users, servers, 4, 3);
        let mut env = Env::new(&sc, 3).unwrap();
        let mut oracle = Oracle::with_config(OracleConfig {
            max_evaluations: usize::MAX,
            ..OracleConfig::default()
        });
        while !env.done() {
            let (params, slot) = (&sc.params, env.status());
            let d = oracle.decide(&env).unwrap();
            let a = &d.association;
            let (v, e, _) = score(params, slot, a);
            // Moves, swaps and merges, scored on the full slot.
            let mut neighbours = Vec::new();
            for u in 0..users {
                for t in 0..servers {
                    let mut n = a.clone();
                    n[u] = t;
                    neighbours.push(n);
                }
                for w in u + 1..users {
                    let mut n = a.clone();
                    n.swap(u, w);
                    neighbours.push(n);
                }
            }
            for s in 0..servers {
                for t in 0..servers {
                    neighbours.push(a.iter().map(|&x| if x == s { t } else { x }).collect());
                }
            }
            for n in neighbours {
                let (nv, ne, _) = score(params, slot, &n);
                assert!(
                    nv > v || (nv == v && ne <= e + 1e-9),
                    "{n:?} improves on {a:?}"
                );
            }
            env.step(&d).unwrap();
        }
    }

    #[test]
    fn deterministic_and_within_budget() {
        let sc = scenario(20, 9, 3, 5);
        let env = Env::new(&sc, 5).unwrap();
        let config = OracleConfig {
            max_evaluations: 300,
            ..OracleConfig::default()
        };
        let mut a = Oracle::with_config(config);
        let da = a.decide(&env).unwrap();
        assert!(a.last_evaluations() <= 300);
        assert_eq!(da, Oracle::with_config(config).decide(&env).unwrap());
        // Even a tiny budget keeps the guarantee against the starts.
        let small = Oracle::with_config(OracleConfig {
            max_evaluations: 5,
            ..config
        })
        .decide(&env)
        .unwrap();
        let e = |d: &Decision| env.clone().step(d).unwrap().evaluation.objective;
        assert!(e(&small) >= e(&Nearest::new().decide(&env).unwrap()));
        assert!(e(&small) >= e(&Sticky::new().decide(&env).unwrap()));
    }
}

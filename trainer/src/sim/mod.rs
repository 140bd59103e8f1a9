//! The edge-network simulator of SPEC §2.2: episodes from a seed, random-waypoint
//! mobility, per-slot image counts and the previous-slot bookkeeping. Every cost,
//! utility, objective and γ comes from `diten-controller`; this module only keeps
//! the state and draws the randomness.
//!
//! # Determinism
//!
//! An episode is a pure function of the scenario and its seed: one ChaCha8 stream,
//! seeded with the seed, is consumed in a fixed order — servers (x, y, p, q, ε in
//! that order, server by server), then users (x, y, D_twin, first waypoint x, y and
//! speed, user by user), then the images of the slot before the first (the data
//! users arrive with, reusable in slot 1) and the images of slot 1, then for each
//! later slot: the movement of each user (a new waypoint and speed on arrival) and
//! the images of each user.
//! Floats are drawn as 53-bit fractions and integers without modulo bias, so the
//! stream does not depend on any crate's sampling code.
//!
//! # Slot order and the first slot
//!
//! Users start at their drawn positions in slot 1; before every later slot they
//! move. At slot 1 there is no previous association: the controller sees
//! `prev_server = None` (no migration is charged), and decision makers see the
//! nearest server as the previous association (SPEC §2.2).

mod vec_env;

use anyhow::{bail, Context};
use diten_controller::{
    evaluate, manhattan, solve_gamma, Evaluation, Server, Slot, SolveStats, User, MAX_SERVERS,
    MAX_USERS,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::scenario::{Mobility, Scenario};

pub use vec_env::{episode_seed, VecEnv};

/// The slot status type the simulator hands to decision makers (controller capacity).
pub type Status = Slot<MAX_USERS, MAX_SERVERS>;
/// A slot's evaluation at the simulator's capacity.
pub type SlotEvaluation = Evaluation<MAX_USERS, MAX_SERVERS>;

/// How γ is chosen for a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Gamma {
    /// The controller's globally optimal γ solver.
    Optimal,
    /// Given ratios, one per user (Baseline 3).
    Given(Vec<f64>),
}

/// What a decision maker decides for one slot.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Server of each user.
    pub association: Vec<usize>,
    /// How γ is chosen.
    pub gamma: Gamma,
}

impl Decision {
    /// An association with the optimal γ.
    pub fn optimal(association: Vec<usize>) -> Self {
        Decision {
            association,
            gamma: Gamma::Optimal,
        }
    }
}

/// The result of one slot.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The slot's evaluation (objective, reward, costs, violations).
    pub evaluation: SlotEvaluation,
    /// γ used, one per user.
    pub gamma: Vec<f64>,
    /// Users whose server differs from the previous slot's (0 in slot 1).
    pub migrations: usize,
    /// What the γ solver did (default when γ was given).
    pub solve: SolveStats,
    /// The slot index that was evaluated (0-based).
    pub t: usize,
    /// Whether this was the episode's last slot.
    pub done: bool,
}

/// A uniform 53-bit fraction in [0, 1).
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [lo, hi].
fn uniform(rng: &mut ChaCha8Rng, [lo, hi]: [f64; 2]) -> f64 {
    lo + (hi - lo) * unit(rng)
}

/// Uniform integer in [lo, hi] without bias (Lemire's rejection on 64 bits).
fn uniform_int(rng: &mut ChaCha8Rng, [lo, hi]: [u32; 2]) -> u32 {
    let span = u64::from(hi - lo) + 1;
    let zone = u64::MAX - (u64::MAX % span) - 1;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return lo + (x % span) as u32;
        }
    }
}

/// A user's mobility state.
#[derive(Clone, Copy, Debug)]
struct Walker {
    x: f64,
    y: f64,
    wx: f64,
    wy: f64,
    speed: f64,
}

/// The episode's users, present or not (the scenario's `users` is the
/// population's size; without churn every member is present in every slot).
#[derive(Clone, Debug)]
struct Population {
    walkers: Vec<Walker>,
    twin_bits: Vec<f64>,
    data_bits: Vec<f64>,
    prev_data_bits: Vec<f64>,
    /// Each member's previous server as decision makers see it (the nearest
    /// server in the first slot and after a return).
    prev_server: Vec<usize>,
    /// Which members are present this slot.
    present: Vec<bool>,
    /// Present members that returned this slot (no previous server).
    joined: Vec<bool>,
}

/// One environment: an episode of a scenario, stepped slot by slot.
#[derive(Clone, Debug)]
pub struct Env {
    scenario: Scenario,
    seed: u64,
    rng: ChaCha8Rng,
    servers: Vec<Server>,
    /// Slot index from which each server is up again (0: up).
    down_until: Vec<usize>,
    pop: Population,
    /// The status's users as population indices.
    ids: Vec<usize>,
    /// The previous association of the status's users (see `Population::prev_server`).
    prev_association: Vec<usize>,
    t: usize,
    status: Status,
    gamma: Vec<f64>,
    users_buf: Vec<User>,
}

impl Env {
    /// Starts the episode of `scenario` with `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> anyhow::Result<Env> {
        scenario.validate().context("invalid scenario")?;
        let sc = scenario;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let area = [0.0, sc.area_m];
        let mut servers = Vec::with_capacity(sc.servers);
        for _ in 0..sc.servers {
            let x = uniform(&mut rng, area);
            let y = uniform(&mut rng, area);
            let p = uniform(&mut rng, sc.p);
            let q = uniform(&mut rng, sc.q);
            let eps = uniform(&mut rng, sc.eps);
            servers.push(Server {
                x,
                y,
                p,
                q,
                eps,
                available: true,
            });
        }
        let mut walkers = Vec::with_capacity(sc.users);
        let mut twin_bits = Vec::with_capacity(sc.users);
        for _ in 0..sc.users {
            let x = uniform(&mut rng, area);
            let y = uniform(&mut rng, area);
            twin_bits.push(uniform(&mut rng, sc.twin_bits));
            let (wx, wy, speed) = match sc.mobility {
                Mobility::RandomWaypoint { speed } => (
                    uniform(&mut rng, area),
                    uniform(&mut rng, area),
                    uniform(&mut rng, speed),
                ),
                Mobility::Static => (x, y, 0.0),
            };
            walkers.push(Walker {
                x,
                y,
                wx,
                wy,
                speed,
            });
        }
        let bps = sc.params.bits_per_sample;
        let prev_data_bits: Vec<f64> = (0..sc.users)
            .map(|_| f64::from(uniform_int(&mut rng, sc.samples)) * bps)
            .collect();
        let data_bits: Vec<f64> = (0..sc.users)
            .map(|_| f64::from(uniform_int(&mut rng, sc.samples)) * bps)
            .collect();
        let prev_server: Vec<usize> = walkers
            .iter()
            .map(|w| nearest(&servers, w.x, w.y))
            .collect();
        let pop = Population {
            walkers,
            twin_bits,
            data_bits,
            prev_data_bits,
            prev_server,
            present: vec![true; sc.users],
            joined: vec![false; sc.users],
        };
        let mut users_buf = Vec::with_capacity(sc.users);
        let (mut ids, mut prev_association) = (Vec::new(), Vec::new());
        let status = build_status(
            sc,
            &servers,
            &pop,
            true,
            &mut users_buf,
            &mut ids,
            &mut prev_association,
        )?;
        Ok(Env {
            scenario: sc.clone(),
            seed,
            rng,
            down_until: vec![0; servers.len()],
            servers,
            pop,
            ids,
            prev_association,
            t: 0,
            status,
            gamma: vec![0.0; sc.users],
            users_buf,
        })
    }

    /// Restarts at slot 0 with a new episode drawn from `seed`.
    pub fn reset(&mut self, seed: u64) -> anyhow::Result<()> {
        *self = Env::new(&self.scenario, seed)?;
        Ok(())
    }

    /// Moves users, draws the slot's images (and with churn who is present and
    /// which servers are up) and rebuilds the status.
    fn next_slot(&mut self) -> anyhow::Result<()> {
        let sc = &self.scenario;
        let rng = &mut self.rng;
        let pop = &mut self.pop;
        if let Mobility::RandomWaypoint { speed } = sc.mobility {
            for w in pop.walkers.iter_mut() {
                step_walker(w, rng, sc.area_m, speed);
            }
        }
        std::mem::swap(&mut pop.data_bits, &mut pop.prev_data_bits);
        let bps = sc.params.bits_per_sample;
        for d in pop.data_bits.iter_mut() {
            *d = f64::from(uniform_int(rng, sc.samples)) * bps;
        }
        if let Some(churn) = &sc.churn {
            let was = pop.present.clone();
            for (present, joined) in pop.present.iter_mut().zip(pop.joined.iter_mut()) {
                let draw = unit(rng);
                *joined = false;
                if *present {
                    *present = draw >= churn.leave_p;
                } else if draw < churn.join_p {
                    (*present, *joined) = (true, true);
                }
            }
            if !pop.present.iter().any(|&p| p) {
                // The last to leave stays: a slot has at least one user.
                if let Some(u) = was.iter().rposition(|&p| p) {
                    pop.present[u] = true;
                }
            }
            // Returning users see their nearest server as their previous one,
            // as everyone does in the first slot.
            // Servers up in the last slot may go down; then those whose time is
            // over come back (so a down period lasts exactly its drawn length).
            let t = self.t;
            for s in 0..self.servers.len() {
                if !self.servers[s].available {
                    continue;
                }
                if unit(rng) < churn.fail_p {
                    let slots = uniform_int(rng, churn.down) as usize;
                    let up = self.servers.iter().filter(|v| v.available).count();
                    if up > 1 {
                        self.servers[s].available = false;
                        self.down_until[s] = t + slots;
                    }
                }
            }
            for (srv, &until) in self.servers.iter_mut().zip(&self.down_until) {
                srv.available = until <= t;
            }
            for (u, w) in pop.walkers.iter().enumerate() {
                if pop.joined[u] {
                    pop.prev_server[u] = nearest_available(&self.servers, w.x, w.y);
                }
            }
        }
        self.status = build_status(
            sc,
            &self.servers,
            &self.pop,
            false,
            &mut self.users_buf,
            &mut self.ids,
            &mut self.prev_association,
        )?;
        Ok(())
    }

    /// Applies a decision to the current slot, then advances to the next slot (or
    /// stays on the last one when the episode is over: `done`).
    pub fn step(&mut self, decision: &Decision) -> anyhow::Result<Outcome> {
        if self.t >= self.scenario.slots {
            bail!("episode over: reset the environment");
        }
        let params = &self.scenario.params;
        let assoc = &decision.association;
        let n = self.status.users().len();
        self.gamma.resize(n, 0.0);
        let solve = match &decision.gamma {
            Gamma::Optimal => solve_gamma(params, &self.status, assoc, &mut self.gamma)
                .map_err(|e| anyhow::anyhow!("decision rejected: {e}"))?,
            Gamma::Given(g) => {
                if g.len() != n {
                    bail!(
                        "decision rejected: gamma has {} values for {n} users",
                        g.len()
                    );
                }
                self.gamma.copy_from_slice(g);
                SolveStats::default()
            }
        };
        let evaluation = evaluate(params, &self.status, assoc, &self.gamma)
            .map_err(|e| anyhow::anyhow!("decision rejected: {e}"))?;
        // A migration is a move away from a previous server (none in slot 1 or
        // for a user that returned).
        let migrations = self
            .status
            .users()
            .iter()
            .zip(assoc)
            .filter(|(u, &a)| u.prev_server.is_some_and(|p| p != a))
            .count();
        let t = self.t;
        self.t += 1;
        let done = self.t >= self.scenario.slots;
        let outcome = Outcome {
            evaluation,
            gamma: self.gamma.clone(),
            migrations,
            solve,
            t,
            done,
        };
        if !done {
            for (&id, &a) in self.ids.iter().zip(assoc) {
                self.pop.prev_server[id] = a;
            }
            self.next_slot()?;
        }
        Ok(outcome)
    }

    /// The current slot's status (what the gateway knows when it decides).
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The previous association of the status's users (the nearest server in
    /// slot 0 and for a user that returned; it may name a server that is down now).
    pub fn prev_association(&self) -> &[usize] {
        &self.prev_association
    }

    /// The population index of each of the status's users (`0..users` in order
    /// without churn).
    pub fn user_ids(&self) -> &[usize] {
        &self.ids
    }

    /// The current slot index (0-based).
    pub fn t(&self) -> usize {
        self.t
    }

    /// Whether every slot of the episode has been stepped.
    pub fn done(&self) -> bool {
        self.t >= self.scenario.slots
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The seed of the current episode.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Index of the available server nearest (Manhattan) to (x, y); ties go to the
/// lower index (a slot always has one available server).
pub fn nearest_available(servers: &[Server], x: f64, y: f64) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (s, srv) in servers.iter().enumerate().filter(|(_, s)| s.available) {
        let d = manhattan(x, y, srv.x, srv.y);
        if d < best.0 {
            best = (d, s);
        }
    }
    best.1
}

/// Index of the server nearest (Manhattan) to (x, y); ties go to the lower index.
pub fn nearest(servers: &[Server], x: f64, y: f64) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (s, srv) in servers.iter().enumerate() {
        let d = manhattan(x, y, srv.x, srv.y);
        if d < best.0 {
            best = (d, s);
        }
    }
    best.1
}

/// One slot of random-waypoint motion: `speed` metres toward the waypoint; on
/// arrival a new waypoint and speed are drawn (the rest of the slot is not used).
fn step_walker(w: &mut Walker, rng: &mut ChaCha8Rng, area: f64, speed: [f64; 2]) {
    let (dx, dy) = (w.wx - w.x, w.wy - w.y);
    let dist = dx.hypot(dy);
    if dist <= w.speed {
        w.x = w.wx;
        w.y = w.wy;
        w.wx = uniform(rng, [0.0, area]);
        w.wy = uniform(rng, [0.0, area]);
        w.speed = uniform(rng, speed);
    } else {
        w.x = (w.x + dx / dist * w.speed).clamp(0.0, area);
        w.y = (w.y + dy / dist * w.speed).clamp(0.0, area);
    }
}

/// The controller's view of a slot: the present users in population order
/// (`ids`), no previous server in the first slot (`first`) or after a return,
/// and the previous association decision makers see (`prev_association`).
fn build_status(
    sc: &Scenario,
    servers: &[Server],
    pop: &Population,
    first: bool,
    users: &mut Vec<User>,
    ids: &mut Vec<usize>,
    prev_association: &mut Vec<usize>,
) -> anyhow::Result<Status> {
    users.clear();
    ids.clear();
    prev_association.clear();
    for (u, w) in pop.walkers.iter().enumerate() {
        if !pop.present[u] {
            continue;
        }
        ids.push(u);
        prev_association.push(pop.prev_server[u]);
        users.push(User {
            x: w.x,
            y: w.y,
            emd: sc.emd.of(u),
            twin_bits: pop.twin_bits[u],
            data_bits: pop.data_bits[u],
            prev_data_bits: pop.prev_data_bits[u],
            prev_server: (!first && !pop.joined[u]).then_some(pop.prev_server[u]),
        });
    }
    Slot::new(servers, users).map_err(|e| anyhow::anyhow!("simulator built an invalid slot: {e}"))
}

#[cfg(test)]
mod tests;

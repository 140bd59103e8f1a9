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

mod feasible;
mod nearest;
mod oracle;
mod sticky;

pub use nearest::{Nearest, NearestRandom};
pub use oracle::{Oracle, OracleConfig};
pub use sticky::Sticky;

/// Names of the decision makers that need no learning, in table order.
pub const NAMES: &[&str] = &["nearest", "nearest-random", "sticky", "oracle"];

/// The decision maker called `name` (see [`NAMES`]).
pub fn by_name(name: &str) -> anyhow::Result<Box<dyn DecisionMaker>> {
    Ok(match name {
        "nearest" => Box::new(Nearest::new()),
        "nearest-random" => Box::new(NearestRandom::new()),
        "sticky" => Box::new(Sticky::new()),
        "oracle" => Box::new(Oracle::new()),
        other => anyhow::bail!(
            "unknown policy `{other}` (known: {}; trained policies are files)",
            NAMES.join(", ")
        ),
    })
}

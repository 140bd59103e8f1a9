//! A batch of environments stepped in lockstep (for the trainer).

use super::{Decision, Env, Outcome};
use crate::scenario::Scenario;

/// splitmix64: derives well-spread episode seeds from (base seed, env, episode).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of episode `episode` of environment `env` in a batch seeded `base`.
pub fn episode_seed(base: u64, env: usize, episode: u64) -> u64 {
    mix(mix(base ^ mix(env as u64)) ^ episode)
}

/// `n` environments of one scenario. When one finishes its episode it starts the
/// next one (seed from [`episode_seed`]), so every step returns one outcome per
/// environment.
#[derive(Clone, Debug)]
pub struct VecEnv {
    envs: Vec<Env>,
    episodes: Vec<u64>,
    base: u64,
}

impl VecEnv {
    /// `n` environments; environment i starts episode 0 with `episode_seed(seed, i, 0)`.
    pub fn new(scenario: &Scenario, n: usize, seed: u64) -> anyhow::Result<VecEnv> {
        let envs = (0..n)
            .map(|i| Env::new(scenario, episode_seed(seed, i, 0)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(VecEnv {
            envs,
            episodes: vec![0; n],
            base: seed,
        })
    }

    /// The environments (to read each one's status before deciding).
    pub fn envs(&self) -> &[Env] {
        &self.envs
    }

    /// Number of environments.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Steps every environment with its decision; finished episodes restart.
    pub fn step(&mut self, decisions: &[Decision]) -> anyhow::Result<Vec<Outcome>> {
        anyhow::ensure!(
            decisions.len() == self.envs.len(),
            "{} decisions for {} environments",
            decisions.len(),
            self.envs.len()
        );
        let mut out = Vec::with_capacity(self.envs.len());
        for (i, (env, d)) in self.envs.iter_mut().zip(decisions).enumerate() {
            let o = env.step(d)?;
            if o.done {
                self.episodes[i] += 1;
                env.reset(episode_seed(self.base, i, self.episodes[i]))?;
            }
            out.push(o);
        }
        Ok(out)
    }
}

//! The gateway's controller as a decision maker: an exported policy (firmware blob,
//! SPEC §3.3) run through [`diten_controller::Controller`] on the simulator's slot
//! status, exactly as a gateway or the firmware runs it — observation, the blob
//! engine, best server per user, the repair of C2/C3, the consolidation (which
//! [`ControllerPolicy::set_consolidation`] can switch off), the improvement
//! ([`ControllerPolicy::set_improvement_budget`]) and the controller's own γ.
//!
//! The simulator evaluates the controller's γ as given ([`Gamma::Given`]), so an
//! episode measures the shipped decision loop and nothing else. Unlike the
//! baselines, whose γ the simulator solves after `decide`, the time measured for
//! this decision maker includes the γ solve: it is the controller's whole slot.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, bail, Context};
use diten_controller::controller::workspace_len;
use diten_controller::policy::general::is_general_blob;
use diten_controller::policy::{Engine, GeneralPolicy, Policy};
use diten_controller::{Controller, CostNorm, Error, Params, MAX_SERVERS, MAX_USERS};

use super::DecisionMaker;
use crate::signing::Trust;
use crate::sim::{Decision, Env, Gamma};

/// The two kinds of blob: `policy-v1` (one size) and `policy-v2` (any size).
#[derive(Clone, Debug)]
enum Blob<'a> {
    Flat(Box<Policy<'a>>),
    General(GeneralPolicy<'a>),
}

/// A blob policy run by the controller, borrowing its weights from the blob's
/// bytes (the controller's `Policy<'a>` does): whoever makes one owns the bytes
/// for at least as long ([`read_blob`] shares a file's).
#[derive(Debug)]
pub struct ControllerPolicy<'a> {
    name: String,
    policy: Blob<'a>,
    workspace: Vec<f32>,
    consolidate: bool,
    improve_budget: usize,
}

/// The bytes of the blob file `path`, read once per process and shared: a sweep
/// makes a fresh decision maker per episode, and every one of them, and the
/// signature check before them ([`check_signed_blob`]), must see the same bytes.
/// Keyed by the path as given; a process reads a few blobs at most.
pub fn read_blob(path: &Path) -> anyhow::Result<Arc<[u8]>> {
    static BLOBS: OnceLock<Mutex<HashMap<PathBuf, Arc<[u8]>>>> = OnceLock::new();
    let blobs = BLOBS.get_or_init(|| Mutex::new(HashMap::new()));
    // The map holds plain data; a panic elsewhere cannot leave it half-updated.
    let mut blobs = blobs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(blob) = blobs.get(path) {
        return Ok(Arc::clone(blob));
    }
    let bytes: Arc<[u8]> = std::fs::read(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into();
    blobs.insert(path.to_owned(), Arc::clone(&bytes));
    Ok(bytes)
}

/// Checks the signature of the blob file `path` with `trust`, on the bytes
/// [`read_blob`] gives every later reader of `path` in this process. Called before
/// any decision maker loads the file, it makes every later load of `path` run
/// exactly the bytes that were verified.
pub fn check_signed_blob(path: &Path, trust: &Trust) -> anyhow::Result<()> {
    trust.check(path, &read_blob(path)?)?;
    Ok(())
}

impl<'a> ControllerPolicy<'a> {
    /// A decision maker for the firmware blob `blob` (as `diten convert` writes
    /// it); `name` is the label in tables. The blob is checked here.
    pub fn from_blob(blob: &'a [u8], name: String) -> anyhow::Result<ControllerPolicy<'a>> {
        if is_general_blob(blob) {
            let policy = GeneralPolicy::parse(blob).map_err(|e| anyhow!("{e}"))?;
            return Ok(ControllerPolicy {
                name,
                workspace: vec![0.0; workspace_len(&policy)],
                policy: Blob::General(policy),
                consolidate: true,
                improve_budget: diten_controller::controller::DEFAULT_IMPROVEMENT_BUDGET,
            });
        }
        let policy = Policy::parse(blob).map_err(|e| anyhow!("{e}"))?;
        if policy.users() > MAX_USERS || policy.servers() > MAX_SERVERS {
            bail!(
                "the policy decides for {} users and {} servers; the controller takes at most \
                 {MAX_USERS} and {MAX_SERVERS}",
                policy.users(),
                policy.servers()
            );
        }
        let workspace = vec![0.0; workspace_len(&policy)];
        Ok(ControllerPolicy {
            name,
            policy: Blob::Flat(Box::new(policy)),
            workspace,
            consolidate: true,
            improve_budget: diten_controller::controller::DEFAULT_IMPROVEMENT_BUDGET,
        })
    }
    /// Switches the controller's consolidation on (the default, as a gateway runs
    /// it) or off; off with the improvement's budget 0 is the policy alone.
    pub fn set_consolidation(&mut self, on: bool) {
        self.consolidate = on;
    }

    /// Sets the controller's improvement budget in server γ solves per slot (0:
    /// off; a new decision maker has the controller's default).
    pub fn set_improvement_budget(&mut self, solves: usize) {
        self.improve_budget = solves;
    }

    /// Users the policy decides for (at most, for a size-agnostic policy).
    pub fn users(&self) -> usize {
        match &self.policy {
            Blob::Flat(p) => p.users(),
            Blob::General(p) => Engine::users(p),
        }
    }

    /// Servers the policy chooses among (at most, for a size-agnostic policy).
    pub fn servers(&self) -> usize {
        match &self.policy {
            Blob::Flat(p) => p.servers(),
            Blob::General(p) => Engine::servers(p),
        }
    }

    /// Whether the policy serves any slot up to its size (`policy-v2`).
    pub fn size_agnostic(&self) -> bool {
        matches!(self.policy, Blob::General(_))
    }
}

/// Logits made outside a network, handed to the controller as its policy's
/// (user-major, the slot's U·S): a reinforcement-learning rollout's decoded
/// logits, or the search oracle's ranking of a start. The controller runs the
/// rest of its decision (repair, consolidation, improvement, γ) from them.
pub(crate) struct FixedLogits<'a> {
    pub(crate) logits: &'a [f32],
    pub(crate) cost_norm: CostNorm,
}

impl Engine for FixedLogits<'_> {
    fn users(&self) -> usize {
        diten_controller::policy::general::MAX_GENERAL_USERS
    }
    fn servers(&self) -> usize {
        diten_controller::policy::general::MAX_GENERAL_SERVERS
    }
    fn cost_norm(&self) -> CostNorm {
        self.cost_norm
    }
    fn scratch_len(&self) -> usize {
        0
    }
    fn logits(&self, _: &[f32], _: &mut [f32], _: &mut [f32]) -> Result<(), Error> {
        Err(Error::PolicyRun)
    }
    fn size_agnostic(&self) -> bool {
        true
    }
    fn work_len(&self, _: usize, _: usize) -> usize {
        0
    }
    fn slot_logits<const U: usize, const S: usize>(
        &self,
        _: &Params,
        slot: &diten_controller::Slot<U, S>,
        _: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Error> {
        let len = slot.users().len() * slot.servers().len();
        let (src, dst) = (self.logits.get(..len), out.get_mut(..len));
        match (src, dst) {
            (Some(s), Some(d)) => {
                d.copy_from_slice(s);
                Ok(())
            }
            _ => Err(Error::PolicyRun),
        }
    }
}

/// Runs `policy` through a fresh controller on the slot of `env`.
fn run_controller<P: Engine>(
    policy: P,
    dm: &mut ControllerPolicy<'_>,
    env: &Env,
) -> anyhow::Result<Decision> {
    // Assembling the controller checks the parameters and the workspace: a few
    // comparisons, negligible beside the forward pass.
    let mut controller: Controller<'_, '_, MAX_USERS, MAX_SERVERS, P> =
        Controller::new(policy, env.scenario().params, &mut dm.workspace)
            .map_err(|e| anyhow!("policy `{}`: {e}", dm.name))?;
    controller.set_consolidation(dm.consolidate);
    controller.set_improvement_budget(dm.improve_budget);
    let decision = controller
        .decide(env.status())
        .map_err(|e| anyhow!("policy `{}`: {e}", dm.name))?;
    Ok(Decision {
        association: decision.association.to_vec(),
        gamma: Gamma::Given(decision.gamma.to_vec()),
    })
}

impl DecisionMaker for ControllerPolicy<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
        let status = env.status();
        let (u, s) = (status.users().len(), status.servers().len());
        let fits = if self.size_agnostic() {
            u <= self.users() && s <= self.servers()
        } else {
            (u, s) == (self.users(), self.servers())
        };
        if !fits {
            bail!(
                "policy `{}` decides for {} users and {} servers, the scenario has {u} and {s}",
                self.name,
                self.users(),
                self.servers()
            );
        }
        match self.policy.clone() {
            Blob::Flat(p) => run_controller(*p, self, env),
            Blob::General(p) => run_controller(p, self, env),
        }
    }
}

#[cfg(test)]
mod tests {
    use diten_controller::obs::obs_dim;

    use super::*;
    use crate::policy::norm::RunningNorm;
    use crate::policy::trained::{actor_blob, Dense, Mlp};
    use crate::policy::{test_scenario, Nearest};
    use crate::scenario::Scenario;

    /// The blob of a one-layer actor for one user and one server.
    fn blob() -> Vec<u8> {
        let dim = obs_dim(1, 1);
        let actor = Mlp::new(vec![Dense {
            inputs: dim,
            outputs: 1,
            weight: vec![0.5; dim],
            bias: vec![0.0],
        }])
        .unwrap();
        actor_blob(1, 1, &RunningNorm::new(dim), &actor, Default::default()).unwrap()
    }

    /// The objective of every slot of an episode of `dm`.
    fn episode(sc: &Scenario, dm: &mut dyn DecisionMaker, seed: u64) -> anyhow::Result<Vec<f64>> {
        let mut env = Env::new(sc, seed)?;
        dm.reset(seed);
        let mut objectives = Vec::new();
        while !env.done() {
            let d = dm.decide(&env)?;
            objectives.push(env.step(&d)?.evaluation.objective);
        }
        Ok(objectives)
    }

    #[test]
    fn decides_a_whole_episode_with_feasible_optimal_gamma() {
        let scenario = test_scenario(1, 1, 6, 3);
        let blob = blob();
        let mut dm = ControllerPolicy::from_blob(&blob, "tiny".into()).unwrap();
        let m = episode(&scenario, &mut dm, 3).unwrap();
        // One user, one server: the association is forced; γ is the solver's, so the
        // controller matches the simulator's own optimum slot by slot.
        let n = episode(&scenario, &mut Nearest::new(), 3).unwrap();
        assert_eq!(m.len(), 6);
        for (m, n) in m.iter().zip(&n) {
            assert!((m - n).abs() < 1e-9, "{m} {n}");
        }
    }

    #[test]
    fn a_scenario_of_another_shape_is_an_error_naming_both() {
        let scenario = test_scenario(2, 1, 3, 1);
        let blob = blob();
        let mut dm = ControllerPolicy::from_blob(&blob, "tiny".into()).unwrap();
        let err = format!("{:#}", episode(&scenario, &mut dm, 1).unwrap_err());
        assert!(
            err.contains("1 users and 1 servers, the scenario has 2 and 1"),
            "{err}"
        );
    }
}

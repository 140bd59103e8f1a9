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
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context};
use diten_controller::controller::workspace_len;
use diten_controller::policy::general::is_general_blob;
use diten_controller::policy::{Engine, GeneralPolicy, Policy};
use diten_controller::{Controller, MAX_SERVERS, MAX_USERS};

use super::DecisionMaker;
use crate::signing::Trust;
use crate::sim::{Decision, Env, Gamma};

/// The two kinds of blob: `policy-v1` (one size) and `policy-v2` (any size).
#[derive(Clone, Debug)]
enum Blob {
    Flat(Box<Policy<'static>>),
    General(GeneralPolicy<'static>),
}

/// A blob policy run by the controller.
#[derive(Debug)]
pub struct ControllerPolicy {
    name: String,
    policy: Blob,
    workspace: Vec<f32>,
    consolidate: bool,
    improve_budget: usize,
}

/// The bytes of the blob file `path`, read once per process and kept for its
/// lifetime: the controller borrows its policy's weights from the blob
/// (`Policy<'a>`), and a sweep makes a fresh decision maker per episode, so the
/// blob must outlive them all. Keyed by the path as given; a process reads a few
/// blobs at most.
fn interned_blob(path: &Path) -> anyhow::Result<&'static [u8]> {
    static BLOBS: OnceLock<Mutex<HashMap<PathBuf, &'static [u8]>>> = OnceLock::new();
    let blobs = BLOBS.get_or_init(|| Mutex::new(HashMap::new()));
    // The map holds plain data; a panic elsewhere cannot leave it half-updated.
    let mut blobs = blobs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(blob) = blobs.get(path) {
        return Ok(blob);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let blob: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    blobs.insert(path.to_owned(), blob);
    Ok(blob)
}

/// Checks the signature of the blob file `path` with `trust`, on the bytes
/// [`ControllerPolicy::load`] runs: the process's one read of the file, kept for
/// its lifetime. Called before any decision maker loads the file, it makes every
/// later load of `path` run exactly the bytes that were verified.
pub fn check_signed_blob(path: &Path, trust: &Trust) -> anyhow::Result<()> {
    trust.check(path, interned_blob(path)?)?;
    Ok(())
}

impl ControllerPolicy {
    /// Loads the firmware blob `path` (as `diten convert` writes it); `name` is the
    /// label in tables. The blob is checked here, so a bad file fails before any
    /// episode runs, with the file named.
    pub fn load(path: &Path, name: String) -> anyhow::Result<ControllerPolicy> {
        let blob = interned_blob(path)?;
        ControllerPolicy::from_blob(blob, name).with_context(|| format!("{}", path.display()))
    }

    /// A decision maker for a blob that lives for the whole process.
    pub fn from_blob(blob: &'static [u8], name: String) -> anyhow::Result<ControllerPolicy> {
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

/// Runs `policy` through a fresh controller on the slot of `env`.
fn run_controller<P: Engine>(
    policy: P,
    dm: &mut ControllerPolicy,
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

impl DecisionMaker for ControllerPolicy {
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

// The test blob is made by the ONNX exporter and converter (feature `onnx`).
#[cfg(all(test, feature = "onnx"))]
mod tests {
    use super::*;
    use crate::onnx::export::tests::tiny;
    use crate::onnx::{model_proto, onnx_to_blob};
    use prost::Message;

    fn blob() -> &'static [u8] {
        let bytes = model_proto(&tiny(true), &[]).unwrap().encode_to_vec();
        Box::leak(onnx_to_blob(&bytes).unwrap().into_boxed_slice())
    }

    #[test]
    fn decides_a_whole_episode_with_feasible_optimal_gamma() {
        let scenario = crate::policy::test_scenario(1, 1, 6, 3);
        let mut dm = ControllerPolicy::from_blob(blob(), "tiny".into()).unwrap();
        let m = crate::eval::run_episode(&scenario, &mut dm, 3, &|| {}).unwrap();
        // One user, one server: the association is forced; γ is the solver's, so the
        // controller matches the simulator's own optimum slot by slot.
        let mut nearest = crate::policy::Nearest::new();
        let n = crate::eval::run_episode(&scenario, &mut nearest, 3, &|| {}).unwrap();
        assert_eq!(m.slots, 6);
        assert!((m.objective - n.objective).abs() < 1e-9, "{m:?} {n:?}");
    }

    #[test]
    fn a_scenario_of_another_shape_is_an_error_naming_both() {
        let scenario = crate::policy::test_scenario(2, 1, 3, 1);
        let mut dm = ControllerPolicy::from_blob(blob(), "tiny".into()).unwrap();
        let err = format!(
            "{:#}",
            crate::eval::run_episode(&scenario, &mut dm, 1, &|| {}).unwrap_err()
        );
        assert!(
            err.contains("1 users and 1 servers, the scenario has 2 and 1"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_blob_file_is_named() {
        let dir = std::env::temp_dir().join(format!("diten-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.bin");
        std::fs::write(&path, b"not a blob").unwrap();
        let err = format!(
            "{:#}",
            ControllerPolicy::load(&path, "x".into()).unwrap_err()
        );
        assert!(err.contains("bad.bin"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

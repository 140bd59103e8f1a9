//! `diten._diten`: the native half of the `diten` Python package (PyO3).
//!
//! Thin bindings over `diten-trainer` and `diten-controller`; this crate computes
//! none of the model's numbers. The simulator is `diten_trainer::sim`, the
//! observation `diten_controller::obs::observe`, `solve` and `Controller.decide`
//! run `diten_trainer::cli::solve::solve_text` (the code of `diten solve`), and
//! `sweep` runs the sweep of `diten evaluate` / `diten compare`.
//!
//! Every error becomes a Python `ValueError` carrying the one-line message the
//! `diten` command would print; nothing here panics on bad input (a panic would
//! still surface as pyo3's `PanicException`, not as a crash).
//!
//! The Gymnasium classes and the stubs are Python (`python/diten/`).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use diten_controller::obs::{obs_dim, observe};
use diten_controller::policy::Policy;
use diten_trainer::cli::{evaluate, one_line, solve, ScenarioArgs, SweepArgs};
use diten_trainer::eval::{self, report, RunOptions};
use diten_trainer::scenario::Scenario;
use diten_trainer::sim::{self, Decision, Outcome, Status};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// An anyhow error as the `ValueError` with the `diten` command's one-line message.
fn value_error(e: anyhow::Error) -> PyErr {
    PyValueError::new_err(one_line(&format!("{e:#}")))
}

/// The scenario of a TOML file (or SPEC §2's defaults) with the keywords applied,
/// as `diten trace --scenario FILE --servers S ...` resolves it.
fn load_scenario(
    scenario: Option<PathBuf>,
    servers: Option<usize>,
    users: Option<usize>,
    slots: Option<usize>,
    seed: Option<u64>,
    emd: Option<f64>,
) -> anyhow::Result<Scenario> {
    let args = ScenarioArgs {
        scenario,
        servers,
        users,
        emd,
        slots,
        seed,
    };
    args.load()
}

/// Server indices from Python (int64) as an association; a negative index is an
/// error with the user named.
fn association(action: &[i64]) -> anyhow::Result<Vec<usize>> {
    action
        .iter()
        .enumerate()
        .map(|(u, &s)| {
            usize::try_from(s)
                .map_err(|_| anyhow::anyhow!("action[{u}]: server index {s} is negative"))
        })
        .collect()
}

/// Writes the controller's observation of `status` into `out` (exactly its length).
fn write_obs(status: &Status, out: &mut [f32]) -> anyhow::Result<()> {
    observe(status, out).map_err(|e| anyhow::anyhow!("observation: {e}"))?;
    Ok(())
}

/// Energy of a slot, Σ_s C_s, and its three parts (SPEC §2.1b): total, mig, syn, cmp.
fn energy(outcome: &Outcome) -> [f64; 4] {
    outcome
        .evaluation
        .servers
        .iter()
        .fold([0.0; 4], |[t, m, s, c], cost| {
            [t + cost.total, m + cost.mig, s + cost.syn, c + cost.cmp]
        })
}

/// The slot's instance as SPEC §3.1's JSON object (no association), the input of
/// `diten solve`.
fn instance_json(status: &Status, params: &diten_controller::Params) -> anyhow::Result<String> {
    let servers: Vec<serde_json::Value> = status
        .servers()
        .iter()
        .map(|s| serde_json::json!({"x": s.x, "y": s.y, "p": s.p, "q": s.q, "eps": s.eps}))
        .collect();
    let users: Vec<serde_json::Value> = status
        .users()
        .iter()
        .map(|u| {
            serde_json::json!({
                "x": u.x, "y": u.y, "emd": u.emd, "twin_bits": u.twin_bits,
                "data_bits": u.data_bits, "prev_data_bits": u.prev_data_bits,
                "prev_server": u.prev_server,
            })
        })
        .collect();
    let value = serde_json::json!({"params": params, "servers": servers, "users": users});
    Ok(serde_json::to_string(&value)?)
}

/// One environment of the simulator (the native half of `diten.Env`).
#[pyclass(module = "diten._diten")]
struct Sim {
    env: sim::Env,
    obs: Vec<f32>,
}

#[pymethods]
impl Sim {
    #[new]
    #[pyo3(signature = (scenario=None, servers=None, users=None, slots=None, seed=None, emd=None))]
    fn new(
        scenario: Option<PathBuf>,
        servers: Option<usize>,
        users: Option<usize>,
        slots: Option<usize>,
        seed: Option<u64>,
        emd: Option<f64>,
    ) -> PyResult<Sim> {
        let sc = load_scenario(scenario, servers, users, slots, seed, emd).map_err(value_error)?;
        let env = sim::Env::new(&sc, sc.seed).map_err(value_error)?;
        Ok(Sim {
            obs: vec![0.0; obs_dim(sc.users, sc.servers)],
            env,
        })
    }

    /// Starts a new episode drawn from `seed`.
    fn reset(&mut self, seed: u64) -> PyResult<()> {
        self.env.reset(seed).map_err(value_error)
    }

    /// The controller's observation of the current slot (float32, `obs_dim` values).
    fn observe<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        write_obs(self.env.status(), &mut self.obs).map_err(value_error)?;
        Ok(PyArray1::from_slice(py, &self.obs))
    }

    /// Applies `action` (one server per user) with the optimal γ; returns
    /// `(reward r, objective e, done, info)`.
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        action: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<(f64, f64, bool, Bound<'py, PyDict>)> {
        let assoc = association(action.as_slice()?).map_err(value_error)?;
        let outcome = self
            .env
            .step(&Decision::optimal(assoc))
            .map_err(value_error)?;
        let ev = &outcome.evaluation;
        let [total, mig, syn, cmp] = energy(&outcome);
        let info = PyDict::new(py);
        info.set_item("t", outcome.t)?;
        info.set_item("e", ev.objective)?;
        info.set_item("r", ev.reward)?;
        info.set_item("utility", ev.mean_utility())?;
        info.set_item("energy", total)?;
        info.set_item("energy_mig", mig)?;
        info.set_item("energy_syn", syn)?;
        info.set_item("energy_cmp", cmp)?;
        info.set_item("violations", ev.violations.total())?;
        info.set_item("violations_c2", ev.violations.c2)?;
        info.set_item("violations_c3", ev.violations.c3)?;
        info.set_item("violations_c5", ev.violations.c5)?;
        info.set_item("feasible", ev.feasible())?;
        info.set_item("migrations", outcome.migrations)?;
        info.set_item("gamma", outcome.gamma.clone().into_pyarray(py))?;
        Ok((ev.reward, ev.objective, outcome.done, info))
    }

    /// The current slot as SPEC §3.1's instance JSON (no association).
    fn instance(&self) -> PyResult<String> {
        instance_json(self.env.status(), &self.env.scenario().params).map_err(value_error)
    }

    /// The resolved scenario as TOML.
    fn scenario_toml(&self) -> String {
        self.env.scenario().to_toml()
    }

    /// The previous association (nearest server of each user at slot 0).
    fn prev_association(&self) -> Vec<usize> {
        self.env.prev_association().to_vec()
    }

    #[getter]
    fn users(&self) -> usize {
        self.env.scenario().users
    }

    #[getter]
    fn servers(&self) -> usize {
        self.env.scenario().servers
    }

    #[getter]
    fn slots(&self) -> usize {
        self.env.scenario().slots
    }

    #[getter]
    fn t(&self) -> usize {
        self.env.t()
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.env.seed()
    }

    #[getter]
    fn obs_dim(&self) -> usize {
        self.obs.len()
    }
}

/// What `VecSim::step` hands back, filled without the GIL.
struct Batch {
    obs: Vec<f32>,
    reward: Vec<f64>,
    objective: Vec<f64>,
    energy: Vec<f64>,
    done: Vec<bool>,
}

/// `n` environments stepped in lockstep in Rust (the native half of `diten.VecEnv`).
#[pyclass(module = "diten._diten")]
struct VecSim {
    envs: sim::VecEnv,
    users: usize,
    dim: usize,
}

impl VecSim {
    fn observe_all(&self, out: &mut [f32]) -> anyhow::Result<()> {
        for (env, block) in self.envs.envs().iter().zip(out.chunks_exact_mut(self.dim)) {
            write_obs(env.status(), block)?;
        }
        Ok(())
    }

    fn step_all(&mut self, actions: &[i64]) -> anyhow::Result<Batch> {
        let decisions = actions
            .chunks_exact(self.users)
            .enumerate()
            .map(|(i, a)| {
                association(a)
                    .map(Decision::optimal)
                    .with_context(|| format!("environment {i}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let outcomes = self.envs.step(&decisions)?;
        let mut obs = vec![0.0; self.envs.len() * self.dim];
        self.observe_all(&mut obs)?;
        Ok(Batch {
            obs,
            reward: outcomes.iter().map(|o| o.evaluation.reward).collect(),
            objective: outcomes.iter().map(|o| o.evaluation.objective).collect(),
            energy: outcomes.iter().map(|o| energy(o)[0]).collect(),
            done: outcomes.iter().map(|o| o.done).collect(),
        })
    }
}

/// Observations, rewards r, objectives e, energies and episode ends of a batch step.
type BatchArrays<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<bool>>,
);

#[pymethods]
impl VecSim {
    #[new]
    #[pyo3(signature = (n, scenario=None, servers=None, users=None, slots=None, seed=None, emd=None))]
    fn new(
        n: usize,
        scenario: Option<PathBuf>,
        servers: Option<usize>,
        users: Option<usize>,
        slots: Option<usize>,
        seed: Option<u64>,
        emd: Option<f64>,
    ) -> PyResult<VecSim> {
        if n == 0 {
            return Err(PyValueError::new_err("n: give at least one environment"));
        }
        let sc = load_scenario(scenario, servers, users, slots, seed, emd).map_err(value_error)?;
        let envs = sim::VecEnv::new(&sc, n, sc.seed).map_err(value_error)?;
        Ok(VecSim {
            envs,
            users: sc.users,
            dim: obs_dim(sc.users, sc.servers),
        })
    }

    /// Observations of every environment, float32 `[n, obs_dim]`.
    fn observe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let mut obs = vec![0.0; self.envs.len() * self.dim];
        self.observe_all(&mut obs).map_err(value_error)?;
        to_2d(py, obs, self.dim)
    }

    /// Steps every environment with its row of `actions` (int64 `[n, users]`), the
    /// GIL released; finished episodes restart.
    fn step<'py>(
        mut slf: PyRefMut<'py, Self>,
        py: Python<'py>,
        actions: PyReadonlyArray2<'py, i64>,
    ) -> PyResult<BatchArrays<'py>> {
        let shape = actions.shape();
        if shape != [slf.envs.len(), slf.users] {
            return Err(PyValueError::new_err(format!(
                "actions: shape {shape:?}, expected [{}, {}] (environments, users)",
                slf.envs.len(),
                slf.users
            )));
        }
        let actions = actions.as_slice()?.to_vec();
        let this = &mut *slf;
        let batch = py
            .allow_threads(|| this.step_all(&actions))
            .map_err(value_error)?;
        let dim = this.dim;
        Ok((
            to_2d(py, batch.obs, dim)?,
            batch.reward.into_pyarray(py),
            batch.objective.into_pyarray(py),
            batch.energy.into_pyarray(py),
            batch.done.into_pyarray(py),
        ))
    }

    /// Previous association of every environment, int64 `[n, users]`.
    fn prev_association<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let flat: Vec<i64> = self
            .envs
            .envs()
            .iter()
            .flat_map(|e| e.prev_association().iter().map(|&s| s as i64))
            .collect();
        to_2d(py, flat, self.users)
    }

    fn __len__(&self) -> usize {
        self.envs.len()
    }

    #[getter]
    fn obs_dim(&self) -> usize {
        self.dim
    }

    #[getter]
    fn users(&self) -> usize {
        self.users
    }

    #[getter]
    fn servers(&self) -> usize {
        self.envs.envs().first().map_or(0, |e| e.scenario().servers)
    }
}

/// A flat vector as a `[len / cols, cols]` numpy array.
fn to_2d<T: numpy::Element>(
    py: Python<'_>,
    flat: Vec<T>,
    cols: usize,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    let rows = flat.len() / cols.max(1);
    flat.into_pyarray(py).reshape([rows, cols])
}

/// `diten solve` on one instance (SPEC §3.1 JSON text in, JSON text out).
#[pyfunction]
fn solve_json(py: Python<'_>, instance: String) -> PyResult<String> {
    py.allow_threads(|| solve::solve_text(&instance, None))
        .map_err(value_error)
}

/// The gateway's controller with an exported policy (the native half of
/// `diten.Controller`).
#[pyclass(module = "diten._diten")]
struct Controller {
    blob: Vec<u8>,
    users: usize,
    servers: usize,
}

#[pymethods]
impl Controller {
    #[new]
    fn new(path: PathBuf) -> PyResult<Controller> {
        let blob = diten_trainer::cli::infer::read_blob(&path, None)
            .context("policy")
            .map_err(value_error)?;
        let (users, servers) = {
            let policy = Policy::parse(&blob)
                .map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))
                .map_err(value_error)?;
            (policy.users(), policy.servers())
        };
        Ok(Controller {
            blob,
            users,
            servers,
        })
    }

    /// `diten solve --policy FILE` on one instance JSON text (no association).
    fn decide_json(&self, py: Python<'_>, instance: String) -> PyResult<String> {
        py.allow_threads(|| solve::solve_text(&instance, Some(&self.blob)))
            .map_err(value_error)
    }

    #[getter]
    fn users(&self) -> usize {
        self.users
    }

    #[getter]
    fn servers(&self) -> usize {
        self.servers
    }
}

/// The sweep of `diten evaluate` / `diten compare`; returns `summary.json`'s text.
#[pyfunction]
#[pyo3(signature = (command, policies, scenario=None, servers=vec![], emd=vec![], users=None, slots=None, seeds=None, jobs=None))]
#[allow(clippy::too_many_arguments)]
fn sweep_json(
    py: Python<'_>,
    command: String,
    policies: Vec<String>,
    scenario: Option<PathBuf>,
    servers: Vec<usize>,
    emd: Vec<f64>,
    users: Option<usize>,
    slots: Option<usize>,
    seeds: Option<String>,
    jobs: Option<usize>,
) -> PyResult<String> {
    let run = || -> anyhow::Result<String> {
        let seeds = seeds
            .map(|s| evaluate::parse_seeds(&s).map_err(|e| anyhow::anyhow!("seeds: {e}")))
            .transpose()?;
        let jobs = jobs.and_then(NonZeroUsize::new);
        let args = SweepArgs {
            scenario,
            servers,
            emd,
            slots,
            users,
            seeds,
            out: None,
            json: true,
            jobs,
            trust: diten_trainer::cli::sign::TrustArgs {
                pubkey: None,
                min_policy_version: 0,
            },
        };
        let sweep = evaluate::build_sweep(&args, &policies)?;
        let threads = jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            NonZeroUsize::get,
        );
        let stop = AtomicBool::new(false);
        let result = eval::run(
            &sweep,
            &RunOptions {
                threads,
                stop: &stop,
                on_slot: &|| {},
            },
        )?;
        let rows = eval::summarise(&sweep, &result);
        let summary = report::summary_json(&command, &sweep, &result, &rows);
        Ok(serde_json::to_string(&summary)?)
    };
    py.allow_threads(run).map_err(value_error)
}

/// The native module.
#[pymodule]
fn _diten(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Sim>()?;
    m.add_class::<VecSim>()?;
    m.add_class::<Controller>()?;
    m.add_function(wrap_pyfunction!(solve_json, m)?)?;
    m.add_function(wrap_pyfunction!(sweep_json, m)?)?;
    m.add("OBS_LAYOUT", diten_controller::obs::OBS_LAYOUT)?;
    Ok(())
}

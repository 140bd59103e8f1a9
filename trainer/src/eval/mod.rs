//! Evaluation: run decision makers through whole simulator episodes and measure
//! them (SPEC §2.3's comparison, the paper's Fig. 5–9).
//!
//! A [`Sweep`] is the cross product policies × server counts × EMD values × seeds
//! over a base [`Scenario`]; each element is one [`Job`], one full episode of T
//! slots through [`Env`]. [`run`] runs the jobs on a small thread pool, each with a
//! fresh decision maker, and returns the finished episodes in job order, so the
//! results do not depend on the number of threads. [`summarise`] aggregates the
//! episodes over seeds; [`report`] and [`plot`] write them out.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use diten_trainer::eval::{self, RunOptions, Sweep};
//! use diten_trainer::policy::PolicySpec;
//! use diten_trainer::scenario::{Emd, Scenario};
//!
//! let base = Scenario { users: 4, slots: 5, ..Scenario::default() };
//! let sweep = Sweep {
//!     base,
//!     policies: vec![PolicySpec::parse("nearest")?],
//!     servers: vec![3],
//!     emds: vec![Emd::All(0.2)],
//!     seeds: vec![1, 2],
//! };
//! let stop = AtomicBool::new(false);
//! let result = eval::run(&sweep, &RunOptions { threads: 2, stop: &stop, on_slot: &|| {} })?;
//! let rows = eval::summarise(&sweep, &result);
//! assert_eq!((result.episodes.len(), rows.len(), rows[0].seeds.len()), (2, 1, 2));
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod card;
pub mod compare;
pub mod metrics;
pub mod plot;
pub mod progress;
pub mod report;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;

use crate::policy::{Builtin, DecisionMaker, LoadedPolicy, PolicySpec};
use crate::scenario::{Emd, InvalidScenario, Scenario};
use crate::sim::Env;

pub use metrics::{EpisodeAccumulator, EpisodeMetrics, Metric, SlotMetrics, Stats};

/// What to evaluate: every policy on every (servers, emd) variant of `base`, one
/// episode per seed.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The scenario everything else is varied on (users, slots, model constants …).
    pub base: Scenario,
    /// Decision makers, in table order.
    pub policies: Vec<PolicySpec>,
    /// Numbers of edge servers S.
    pub servers: Vec<usize>,
    /// EMD settings φ.
    pub emds: Vec<Emd>,
    /// Episode seeds.
    pub seeds: Vec<u64>,
}

/// One episode of a sweep: indices into [`Sweep::policies`] and [`Sweep::emds`],
/// the server count and the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// Index into [`Sweep::policies`].
    pub policy: usize,
    /// Number of edge servers.
    pub servers: usize,
    /// Index into [`Sweep::emds`].
    pub emd: usize,
    /// Episode seed.
    pub seed: u64,
}

impl Sweep {
    /// The base scenario with `servers` servers and EMD `emd`.
    pub fn scenario(&self, servers: usize, emd: &Emd) -> Scenario {
        Scenario {
            servers,
            emd: emd.clone(),
            ..self.base.clone()
        }
    }

    /// Checks every (servers, emd) variant; the error names the scenario key.
    pub fn validate(&self) -> Result<(), InvalidScenario> {
        for &s in &self.servers {
            for emd in &self.emds {
                self.scenario(s, emd).validate()?;
            }
        }
        Ok(())
    }

    /// The policies' labels, in table order.
    pub fn labels(&self) -> Vec<String> {
        self.policies.iter().map(PolicySpec::label).collect()
    }

    /// Every episode, in result order: policy, then servers, then emd, then seed.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        for policy in 0..self.policies.len() {
            for &servers in &self.servers {
                for emd in 0..self.emds.len() {
                    for &seed in &self.seeds {
                        jobs.push(Job {
                            policy,
                            servers,
                            emd,
                            seed,
                        });
                    }
                }
            }
        }
        jobs
    }

    /// The order in which [`run`] starts the jobs, as indices into [`Sweep::jobs`]:
    /// seed by seed, and within a seed every server count, emd and policy. So an
    /// interrupted run has compared every policy on the same first seeds, and slow
    /// and fast policies alternate (a steadier rate for the progress bar's ETA).
    pub fn schedule(&self) -> Vec<usize> {
        let (np, ns, ne, nd) = (
            self.policies.len(),
            self.servers.len(),
            self.emds.len(),
            self.seeds.len(),
        );
        let mut order = Vec::with_capacity(np * ns * ne * nd);
        for seed in 0..nd {
            for servers in 0..ns {
                for emd in 0..ne {
                    for policy in 0..np {
                        order.push(((policy * ns + servers) * ne + emd) * nd + seed);
                    }
                }
            }
        }
        order
    }

    /// Slots in the whole sweep (the progress bar's length).
    pub fn total_slots(&self) -> u64 {
        self.jobs().len() as u64 * self.base.slots as u64
    }

    /// A one-line description of `job` for messages.
    pub fn describe(&self, job: &Job) -> String {
        format!(
            "policy {}, servers {}, emd {}, seed {}",
            self.policies[job.policy].label(),
            job.servers,
            emd_label(&self.emds[job.emd]),
            job.seed
        )
    }
}

/// φ as a label: the number (`0.2`), or `per-user` for a list.
pub fn emd_label(emd: &Emd) -> String {
    match emd {
        Emd::All(v) => format!("{v}"),
        Emd::PerUser(_) => "per-user".to_owned(),
    }
}

/// How to run a sweep.
pub struct RunOptions<'a> {
    /// Episodes run at the same time (at least 1).
    pub threads: usize,
    /// Set (by Ctrl-C) to start no further episode; those running finish.
    pub stop: &'a AtomicBool,
    /// Called after every slot of every episode, from the worker threads.
    pub on_slot: &'a (dyn Fn() + Sync),
}

/// A finished episode.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// Which one.
    pub job: Job,
    /// What it measured.
    pub metrics: EpisodeMetrics,
}

/// The episodes of a sweep that finished.
#[derive(Clone, Debug)]
pub struct SweepResult {
    /// Finished episodes in [`Sweep::jobs`] order.
    pub episodes: Vec<Episode>,
    /// Episodes the sweep has.
    pub planned: usize,
    /// Whether the run was stopped before every episode ran.
    pub interrupted: bool,
}

impl SweepResult {
    /// Whether every planned episode finished.
    pub fn complete(&self) -> bool {
        self.episodes.len() == self.planned
    }
}

/// Runs one full episode of `scenario` with `seed`, `dm` deciding every slot;
/// `on_slot` is called after each slot.
pub fn run_episode(
    scenario: &Scenario,
    dm: &mut dyn DecisionMaker,
    seed: u64,
    on_slot: &dyn Fn(),
) -> anyhow::Result<EpisodeMetrics> {
    let mut env = Env::new(scenario, seed)?;
    dm.reset(seed);
    let mut acc = EpisodeAccumulator::default();
    while !env.done() {
        let t = env.t();
        let start = Instant::now();
        let decision = dm
            .decide(&env)
            .with_context(|| format!("slot {t}: deciding"))?;
        let took = start.elapsed();
        let outcome = env.step(&decision).with_context(|| format!("slot {t}"))?;
        acc.add(&SlotMetrics::of(&outcome, took));
        on_slot();
    }
    Ok(acc.finish())
}

/// Runs every job of `sweep` (see [`RunOptions`]). Fails with the first failing
/// episode in job order, after the episodes in progress have finished; stopping
/// early (`stop`) is not a failure.
pub fn run(sweep: &Sweep, options: &RunOptions<'_>) -> anyhow::Result<SweepResult> {
    run_with(sweep, &PolicySpec::load, options)
}

/// [`run`] with every policy of the sweep loaded by `load` (for each of its
/// server counts) instead of [`PolicySpec::load`].
pub fn run_with(
    sweep: &Sweep,
    load: &dyn Fn(&PolicySpec, usize) -> anyhow::Result<LoadedPolicy>,
    options: &RunOptions<'_>,
) -> anyhow::Result<SweepResult> {
    let jobs = sweep.jobs();
    // Every policy loaded once, and every scenario checked, up front, so that a
    // bad name or value fails before hours of episodes; each episode's decision
    // maker borrows its policy from here.
    let loaded = sweep
        .policies
        .iter()
        .map(|p| {
            sweep
                .servers
                .iter()
                .map(|&servers| Ok((servers, load(p, servers)?)))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    sweep.validate()?;
    let results: Mutex<Vec<Option<anyhow::Result<EpisodeMetrics>>>> =
        Mutex::new(jobs.iter().map(|_| None).collect());
    let schedule = sweep.schedule();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || loop {
        if options.stop.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst) {
            break;
        }
        let Some(&i) = schedule.get(next.fetch_add(1, Ordering::SeqCst)) else {
            break;
        };
        let job = &jobs[i];
        let scenario = sweep.scenario(job.servers, &sweep.emds[job.emd]);
        let result = loaded[job.policy]
            .iter()
            .find(|(servers, _)| *servers == job.servers)
            .map(|(_, p)| p)
            .context("every job's server count is the sweep's")
            .and_then(LoadedPolicy::decision_maker)
            .and_then(|mut dm| run_episode(&scenario, dm.as_mut(), job.seed, options.on_slot))
            .with_context(|| sweep.describe(job));
        if result.is_err() {
            failed.store(true, Ordering::SeqCst);
        }
        // A worker that panicked poisons nothing we cannot use: the slots are plain data.
        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
    };
    let threads = options.threads.clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        worker();
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut episodes = Vec::with_capacity(jobs.len());
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Some(Ok(metrics)) => episodes.push(Episode { job: *job, metrics }),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(SweepResult {
        interrupted: episodes.len() < jobs.len(),
        episodes,
        planned: jobs.len(),
    })
}

/// The aggregate of one (policy, servers, emd) over its finished seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// The policy's label.
    pub policy: String,
    /// Number of edge servers.
    pub servers: usize,
    /// The EMD setting.
    pub emd: Emd,
    /// Seeds that finished, in sweep order.
    pub seeds: Vec<u64>,
    /// Statistics over seeds of each metric, in [`Metric::ALL`] order.
    pub stats: Vec<(Metric, Stats)>,
}

impl SummaryRow {
    /// The statistics of `metric`.
    pub fn get(&self, metric: Metric) -> Stats {
        self.stats
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, s)| *s)
            .expect("every row has every metric")
    }
}

impl SummaryRow {
    /// The row of decision maker `policy` at the same (servers, emd) as this one.
    pub fn peer<'a>(&self, rows: &'a [SummaryRow], policy: &str) -> Option<&'a SummaryRow> {
        rows.iter().find(|r| {
            r.policy == policy
                && r.servers == self.servers
                && emd_label(&r.emd) == emd_label(&self.emd)
        })
    }

    /// Energy per slot (Σ_s C_s, eq. (21)) relative to sticky's at the same
    /// (servers, emd), when sticky is among `rows` and used any (SPEC §2.1b: keeping
    /// every twin where it is is the energy floor a gateway operator knows).
    pub fn energy_vs_sticky(&self, rows: &[SummaryRow]) -> Option<f64> {
        let sticky = self
            .peer(rows, Builtin::Sticky.name())?
            .get(Metric::CostTotal)
            .mean;
        (sticky > 0.0).then(|| self.get(Metric::CostTotal).mean / sticky)
    }
}

/// `7.70×`, or `–` without a reference.
pub fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
}

/// Aggregates the episodes of each (policy, servers, emd) over seeds, in sweep
/// order; combinations with no finished episode are left out.
pub fn summarise(sweep: &Sweep, result: &SweepResult) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for (p, spec) in sweep.policies.iter().enumerate() {
        for &servers in &sweep.servers {
            for (e, emd) in sweep.emds.iter().enumerate() {
                let group: Vec<&Episode> = result
                    .episodes
                    .iter()
                    .filter(|ep| ep.job.policy == p && ep.job.servers == servers && ep.job.emd == e)
                    .collect();
                if group.is_empty() {
                    continue;
                }
                let stats = Metric::ALL
                    .iter()
                    .map(|&m| {
                        let values: Vec<f64> = group.iter().map(|ep| ep.metrics.get(m)).collect();
                        (m, Stats::of(&values).expect("the group is not empty"))
                    })
                    .collect();
                rows.push(SummaryRow {
                    policy: spec.label(),
                    servers,
                    emd: emd.clone(),
                    seeds: group.iter().map(|ep| ep.job.seed).collect(),
                    stats,
                });
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Decision;

    /// A decision maker of the test's own: every user on server 0, except user 0 on
    /// the last server in odd slots (so migrations happen every slot after the first).
    struct Toggle;

    impl DecisionMaker for Toggle {
        fn name(&self) -> &str {
            "toggle"
        }
        fn decide(&mut self, env: &Env) -> anyhow::Result<Decision> {
            let s = env.scenario();
            let mut a = vec![0; s.users];
            if env.t() % 2 == 1 {
                a[0] = s.servers - 1;
            }
            Ok(Decision::optimal(a))
        }
    }

    fn small() -> Scenario {
        Scenario {
            users: 3,
            servers: 2,
            slots: 7,
            ..Scenario::default()
        }
    }

    #[test]
    fn an_episode_runs_every_slot_and_counts_migrations() {
        let calls = AtomicUsize::new(0);
        let m = run_episode(&small(), &mut Toggle, 5, &|| {
            calls.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!((m.slots, calls.load(Ordering::SeqCst)), (7, 7));
        // Slot 0 charges none; slots 1..=6 each move user 0: 6 migrations / 7 slots.
        assert!((m.migrations - 6.0 / 7.0).abs() < 1e-15);
        assert!(m.violating_slots <= m.slots && m.violations >= m.violating_slots);
        assert!(m.cost_mig > 0.0 && m.cost_total >= m.cost_mig + m.cost_cmp);
    }

    #[test]
    fn episodes_are_reproducible() {
        let a = run_episode(&small(), &mut Toggle, 9, &|| {}).unwrap();
        let b = run_episode(&small(), &mut Toggle, 9, &|| {}).unwrap();
        let c = run_episode(&small(), &mut Toggle, 10, &|| {}).unwrap();
        let strip = |m: EpisodeMetrics| EpisodeMetrics {
            decide_us: 0.0,
            ..m
        };
        assert_eq!(strip(a), strip(b));
        assert_ne!(strip(a), strip(c));
    }

    fn sweep(policies: &[&str]) -> Sweep {
        Sweep {
            base: Scenario {
                users: 4,
                slots: 6,
                ..Scenario::default()
            },
            policies: policies
                .iter()
                .map(|p| PolicySpec::parse(p).unwrap())
                .collect(),
            servers: vec![3, 2],
            emds: vec![Emd::All(0.0), Emd::All(0.4)],
            seeds: vec![3, 1],
        }
    }

    fn run_with(sweep: &Sweep, threads: usize) -> SweepResult {
        let stop = AtomicBool::new(false);
        run(
            sweep,
            &RunOptions {
                threads,
                stop: &stop,
                on_slot: &|| {},
            },
        )
        .unwrap()
    }

    fn without_timing(r: &SweepResult) -> Vec<(Job, EpisodeMetrics)> {
        r.episodes
            .iter()
            .map(|e| {
                (
                    e.job,
                    EpisodeMetrics {
                        decide_us: 0.0,
                        ..e.metrics
                    },
                )
            })
            .collect()
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let s = sweep(&["nearest", "sticky"]);
        let one = run_with(&s, 1);
        let three = run_with(&s, 3);
        assert!(one.complete() && !one.interrupted);
        assert_eq!(one.planned, 2 * 2 * 2 * 2);
        assert_eq!(without_timing(&one), without_timing(&three));
        // Job order: policy, servers, emd, seed as given (not sorted).
        let order: Vec<_> = one
            .episodes
            .iter()
            .map(|e| (e.job.policy, e.job.servers, e.job.emd, e.job.seed))
            .collect();
        assert_eq!(
            &order[..4],
            &[(0, 3, 0, 3), (0, 3, 0, 1), (0, 3, 1, 3), (0, 3, 1, 1)]
        );
    }

    #[test]
    fn the_schedule_is_a_seed_major_permutation() {
        let s = sweep(&["nearest", "sticky"]);
        let jobs = s.jobs();
        let order = s.schedule();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..jobs.len()).collect::<Vec<_>>());
        let first: Vec<_> = order[..4]
            .iter()
            .map(|&i| (jobs[i].seed, jobs[i].servers, jobs[i].emd, jobs[i].policy))
            .collect();
        assert_eq!(
            first,
            [(3, 3, 0, 0), (3, 3, 0, 1), (3, 3, 1, 0), (3, 3, 1, 1)]
        );
        assert!(order[..8].iter().all(|&i| jobs[i].seed == 3));
    }

    #[test]
    fn summary_aggregates_over_seeds() {
        let s = sweep(&["nearest"]);
        let r = run_with(&s, 2);
        let rows = summarise(&s, &r);
        assert_eq!(rows.len(), 4);
        for row in &rows {
            let group: Vec<&Episode> = r
                .episodes
                .iter()
                .filter(|e| {
                    e.job.servers == row.servers
                        && emd_label(&s.emds[e.job.emd]) == emd_label(&row.emd)
                })
                .collect();
            assert_eq!(row.seeds, vec![3, 1]);
            let (a, b) = (group[0].metrics.objective, group[1].metrics.objective);
            let st = row.get(Metric::Objective);
            // Two values: mean (a+b)/2, sample std |a−b|/√2.
            assert!((st.mean - (a + b) / 2.0).abs() < 1e-15);
            assert!((st.std - (a - b).abs() / 2f64.sqrt()).abs() < 1e-15);
            assert_eq!((st.min, st.max), (a.min(b), a.max(b)));
        }
    }

    #[test]
    fn a_stop_request_keeps_finished_episodes_only() {
        let s = sweep(&["nearest"]);
        let stop = AtomicBool::new(false);
        let slots = AtomicUsize::new(0);
        // Stop during the third episode: it finishes, nothing after it starts.
        let on_slot = || {
            if slots.fetch_add(1, Ordering::SeqCst) == 2 * 6 {
                stop.store(true, Ordering::SeqCst);
            }
        };
        let r = run(
            &s,
            &RunOptions {
                threads: 1,
                stop: &stop,
                on_slot: &on_slot,
            },
        )
        .unwrap();
        assert!(r.interrupted && !r.complete());
        assert_eq!((r.episodes.len(), r.planned), (3, 8));
        // Seed 3 (the first given) ran first: servers 3 with both emds, then servers 2.
        let done: Vec<_> = r
            .episodes
            .iter()
            .map(|e| (e.job.servers, e.job.emd, e.job.seed))
            .collect();
        assert_eq!(done, [(3, 0, 3), (3, 1, 3), (2, 0, 3)]);
        let rows = summarise(&s, &r);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.seeds == [3]));
    }

    #[test]
    fn a_bad_sweep_fails_before_running() {
        let mut s = sweep(&["nearest"]);
        s.servers = vec![3, 0];
        let stop = AtomicBool::new(false);
        let err = run(
            &s,
            &RunOptions {
                threads: 1,
                stop: &stop,
                on_slot: &|| panic!("ran a slot"),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("servers:"), "{err}");
    }
}

//! `diten evaluate`, and the sweep both it and `diten compare` run: resolve the
//! scenario and the flags into an [`eval::Sweep`], run it with a progress bar and
//! Ctrl-C handling, write every output file under `--out` and print the summary.
//!
//! Outputs (SPEC §3.4: nothing is written outside the folder): `scenario.toml`
//! (the resolved base scenario), `episodes.csv`, `summary.csv`, `summary.json`
//! and one PNG per plotted metric and EMD value ([`eval::plot`]). Every file is
//! written atomically.
//!
//! Ctrl-C stops starting episodes; those in progress finish, everything finished is
//! written (`summary.json` has `"complete": false`), a note goes to stderr and the
//! exit code is 130. A second Ctrl-C quits at once.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{bail, Context};

use super::{EvaluateArgs, SweepArgs};
use crate::eval::progress::Progress;
use crate::eval::{self, plot, report, RunOptions, Sweep};
use crate::policy::{Builtin, LoadedPolicy, PolicySpec};
use crate::scenario::{Emd, InvalidScenario, Scenario};
use crate::util::fs::write_atomic;

/// Exit code after Ctrl-C (128 + SIGINT, the shell convention).
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

/// Runs `diten evaluate`.
pub fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    run_sweep("evaluate", &args.sweep, std::slice::from_ref(&args.policy))
}

/// Episode seeds as given to `--seeds`, in order, without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

/// The most seeds one `--seeds` may list (a typo like `1..=10000000` would
/// otherwise plan ten million episodes).
const MAX_SEEDS: u64 = 100_000;

/// Parses `--seeds`: a bare count `N` (the `N` seeds `1..=N`), or comma-separated
/// items, each a seed or an inclusive range `A..=B` (`7..=7` is the one seed 7). A
/// seed may appear once.
pub fn parse_seeds(text: &str) -> Result<Seeds, String> {
    if let Ok(count) = text.trim().parse::<u64>() {
        if count == 0 {
            return Err(
                "`0` seeds: give a count >= 1, a list like `1,2,3` or a range like `1..=5`"
                    .to_owned(),
            );
        }
        if count > MAX_SEEDS {
            return Err(format!("`{count}` is more than {MAX_SEEDS} seeds"));
        }
        return Ok(Seeds((1..=count).collect()));
    }
    let number = |s: &str, item: &str| {
        s.trim().parse::<u64>().map_err(|_| {
            format!("`{item}` is not a seed (a whole number >= 0) or a range like `1..=5`")
        })
    };
    let mut seeds = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(
                "empty item (write a list like `1,2,3` or a range like `1..=5`)".to_owned(),
            );
        }
        match item.split_once("..") {
            None => seeds.push(number(item, item)?),
            Some((lo, hi)) => {
                let Some(hi) = hi.strip_prefix('=') else {
                    return Err(format!(
                        "`{item}`: ranges are inclusive, write `{}..={}`",
                        lo.trim(),
                        hi.trim()
                    ));
                };
                let (lo, hi) = (number(lo, item)?, number(hi, item)?);
                if lo > hi {
                    return Err(format!("`{item}` is an empty range ({lo} > {hi})"));
                }
                if hi - lo >= MAX_SEEDS {
                    return Err(format!("`{item}` has more than {MAX_SEEDS} seeds"));
                }
                seeds.extend(lo..=hi);
            }
        }
        if seeds.len() as u64 > MAX_SEEDS {
            return Err(format!("more than {MAX_SEEDS} seeds"));
        }
    }
    let mut seen = HashSet::new();
    if let Some(dup) = seeds.iter().find(|s| !seen.insert(**s)) {
        return Err(format!("seed {dup} is listed twice"));
    }
    Ok(Seeds(seeds))
}

/// Fails when `items` holds a value twice; `flag` names the flag in the message.
pub(crate) fn check_unique<T: PartialEq + std::fmt::Display>(
    flag: &str,
    items: &[T],
) -> anyhow::Result<()> {
    for (i, a) in items.iter().enumerate() {
        if items[..i].contains(a) {
            bail!("{flag}: `{a}` is listed twice");
        }
    }
    Ok(())
}

/// The sweep the flags describe: the scenario file (or the SPEC defaults) with the
/// flags applied; every (servers, emd) variant validated.
pub fn build_sweep(args: &SweepArgs, policies: &[String]) -> anyhow::Result<Sweep> {
    let policies: Vec<PolicySpec> = if policies.is_empty() {
        Builtin::BASELINES.map(PolicySpec::Builtin).to_vec()
    } else {
        policies
            .iter()
            .map(|p| PolicySpec::parse(p.trim()).context("--policy"))
            .collect::<anyhow::Result<_>>()?
    };
    let labels: Vec<String> = policies.iter().map(PolicySpec::label).collect();
    check_unique("--policy", &labels)?;
    check_unique("--servers", &args.servers)?;
    check_unique("--emd", &args.emd)?;

    let mut base = Scenario::load(args.scenario.as_deref())?;
    if let Some(users) = args.users {
        base.users = users;
    }
    if let Some(slots) = args.slots {
        base.slots = slots;
    }
    let servers = if args.servers.is_empty() {
        vec![base.servers]
    } else {
        args.servers.clone()
    };
    let emds = emd_list(&args.emd, &base.emd);
    let seeds = args
        .seeds
        .as_ref()
        .map_or_else(|| vec![base.seed], |s| s.0.clone());
    // The base scenario holds the first of each list (it is what scenario.toml shows).
    base.servers = servers[0];
    base.emd = emds[0].clone();
    base.seed = seeds[0];
    let sweep = Sweep {
        base,
        policies,
        servers,
        emds,
        seeds,
    };
    sweep.validate().map_err(|e| attribute(e, args))?;
    // Signatures first: the first read of each policy file is the checked one.
    if let Some(trust) = args.trust.load()? {
        for p in &sweep.policies {
            for &servers in &sweep.servers {
                p.check_signature(servers, &trust).context("--policy")?;
            }
        }
    }
    for p in &sweep.policies {
        for &servers in &sweep.servers {
            p.load(servers).context("--policy")?;
        }
    }
    Ok(sweep)
}

/// Names the flag behind a bad scenario value when a flag set it, else the file.
fn attribute(e: InvalidScenario, args: &SweepArgs) -> anyhow::Error {
    let from_flag = match e.key.as_str() {
        "servers" => !args.servers.is_empty(),
        "emd" => !args.emd.is_empty(),
        "users" => args.users.is_some(),
        "slots" => args.slots.is_some(),
        _ => false,
    };
    match &args.scenario {
        _ if from_flag => anyhow::anyhow!("--{}: {}", e.key, e.problem),
        Some(path) => anyhow::anyhow!("scenario {}: {e}", path.display()),
        None => anyhow::anyhow!("{e}"),
    }
}

/// `scenario.toml`: the resolved base scenario, with the sweep in a comment.
pub(crate) fn scenario_toml(command: &str, sweep: &Sweep) -> String {
    let emds: Vec<String> = sweep.emds.iter().map(eval::emd_label).collect();
    let policies: Vec<String> = sweep.policies.iter().map(PolicySpec::label).collect();
    format!(
        "# Base scenario of `diten {command}` (diten {version}).\n\
         # The run swept policies [{policies}], servers {servers:?}, emd [{emds}] and\n\
         # seeds {seeds:?} over it; `servers`, `emd` and `seed` below are the first of each.\n\n{toml}",
        version = env!("CARGO_PKG_VERSION"),
        policies = policies.join(", "),
        servers = sweep.servers,
        emds = emds.join(", "),
        seeds = sweep.seeds,
        toml = sweep.base.to_toml(),
    )
}

/// The output folder: `out` (created if missing), or a fresh
/// `runs/<command>-<UTC timestamp>` announced on stderr.
pub(crate) fn output_dir(command: &str, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out: creating {}", dir.display()))?;
        return Ok(dir.to_owned());
    }
    let runs = Path::new("runs");
    std::fs::create_dir_all(runs).context("creating runs/")?;
    let stamp = utc_stamp(SystemTime::now());
    for n in 1u32.. {
        let name = match n {
            1 => format!("{command}-{stamp}"),
            n => format!("{command}-{stamp}-{n}"),
        };
        let dir = runs.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                eprintln!("writing results to {}", dir.display());
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!("some runs/ folder name is free")
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Set by the first Ctrl-C.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process) and clears the stop flag.
pub(crate) fn interrupt_flag() -> &'static AtomicBool {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let installed = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                std::process::exit(INTERRUPTED_EXIT_CODE);
            }
            eprintln!(
                "\ninterrupted: finishing the work in progress, then saving what has \
                 finished (Ctrl-C again quits at once)"
            );
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will quit without writing results: {e}");
        }
    });
    STOP.store(false, Ordering::SeqCst);
    &STOP
}

/// Runs every episode of `sweep` on `jobs` threads (default: the number of CPUs)
/// with a progress bar on stderr (plain lines when it is not a terminal,
/// [`Progress`]); the first Ctrl-C stops starting episodes (see the
/// [module docs](self)), so the result may be incomplete.
pub(crate) fn run_with_progress(
    command: &str,
    sweep: &Sweep,
    jobs: Option<NonZeroUsize>,
) -> anyhow::Result<eval::SweepResult> {
    run_loading_with_progress(command, sweep, jobs, &PolicySpec::load)
}

/// [`run_with_progress`] with the policies loaded by `load` ([`eval::run_with`]).
pub(crate) fn run_loading_with_progress(
    command: &str,
    sweep: &Sweep,
    jobs: Option<NonZeroUsize>,
    load: &dyn Fn(&PolicySpec, usize) -> anyhow::Result<LoadedPolicy>,
) -> anyhow::Result<eval::SweepResult> {
    let threads = jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        NonZeroUsize::get,
    );
    let stop = interrupt_flag();
    let progress = Progress::new(command, sweep.total_slots());
    let planned = sweep.jobs().len();
    progress.log(&format!(
        "{command}: {planned} episodes ({} policies x {} server counts x {} emd x {} seeds) of {} slots \
         with {} users on {} threads; Ctrl-C stops after the episodes in progress",
        sweep.policies.len(),
        sweep.servers.len(),
        sweep.emds.len(),
        sweep.seeds.len(),
        sweep.base.slots,
        sweep.base.users,
        threads.min(planned),
    ));
    let on_slot = || progress.slot_done();
    let result = eval::run_with(
        sweep,
        load,
        &RunOptions {
            threads,
            stop,
            on_slot: &on_slot,
        },
    );
    // Only a sweep that ran every slot gets the line that reads as its end; an
    // error or an interrupt gets one that says where it stopped.
    match &result {
        Ok(finished) if finished.complete() => progress.finish(),
        _ => progress.stop(),
    }
    result
}

/// Runs a sweep for `command` (`evaluate` or `compare`) with the given `--policy`
/// values (empty: every built-in decision maker).
pub(super) fn run_sweep(
    command: &str,
    args: &SweepArgs,
    policies: &[String],
) -> anyhow::Result<()> {
    let sweep = build_sweep(args, policies)?;
    let out = output_dir(command, args.out.as_deref())?;
    write_atomic(
        &out.join("scenario.toml"),
        scenario_toml(command, &sweep).as_bytes(),
    )?;
    let result = run_with_progress(command, &sweep, args.jobs)?;

    let rows = eval::summarise(&sweep, &result);
    let summary = report::summary_json(command, &sweep, &result, &rows);
    report::write_tables(&out, &sweep, &result, &summary, &rows)?;
    plot::write_plots(&out, &sweep.labels(), &sweep.emds, &rows)?;
    if args.json {
        super::print_line(
            &serde_json::to_string_pretty(&summary).context("serialising the summary")?,
        )?;
    } else {
        super::print_line(report::table(&rows).trim_end())?;
    }
    if !result.complete() {
        eprintln!(
            "interrupted: {} of {} episodes finished; partial results in {} (summary.json has \"complete\": false)",
            result.episodes.len(),
            result.planned,
            out.display()
        );
        std::process::exit(INTERRUPTED_EXIT_CODE);
    }
    eprintln!("results in {}", out.display());
    Ok(())
}

/// The `--emd` values as every user's φ, or the scenario's own setting when none are given.
pub(crate) fn emd_list(values: &[f64], default: &Emd) -> Vec<Emd> {
    if values.is_empty() {
        vec![default.clone()]
    } else {
        values.iter().map(|&v| Emd::All(v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn seeds(text: &str, expected: &[u64]) {
        assert_eq!(parse_seeds(text), Ok(Seeds(expected.to_vec())), "{text}");
    }

    #[track_caller]
    fn bad_seeds(text: &str, needle: &str) {
        let err = parse_seeds(text).unwrap_err();
        assert!(
            err.contains(needle),
            "`{text}`: `{err}` should mention `{needle}`"
        );
    }

    #[test]
    fn seeds_parse() {
        seeds("3", &[1, 2, 3]);
        seeds(" 1 ", &[1]);
        seeds("7..=7", &[7]);
        seeds("1,2,3", &[1, 2, 3]);
        seeds("3,1", &[3, 1]);
        seeds("1..=5", &[1, 2, 3, 4, 5]);
        seeds("0..=0", &[0]);
        seeds("1, 4..=6", &[1, 4, 5, 6]);
        seeds("18446744073709551615..=18446744073709551615", &[u64::MAX]);
    }

    #[test]
    fn bad_seeds_are_explained() {
        bad_seeds("", "empty item");
        bad_seeds("1,,2", "empty item");
        bad_seeds("1..5", "write `1..=5`");
        bad_seeds("5..=1", "empty range");
        bad_seeds("-1", "`-1` is not a seed");
        bad_seeds("a..=3", "`a..=3` is not a seed");
        bad_seeds("1.5", "not a seed");
        bad_seeds("1,2,1", "seed 1 is listed twice");
        bad_seeds("1..=3,3", "seed 3 is listed twice");
        bad_seeds("0..=100000", "more than 100000 seeds");
        bad_seeds("0", "`0` seeds");
        bad_seeds("100001", "more than 100000 seeds");
    }

    #[test]
    fn timestamps_are_utc() {
        let at = |s: u64| utc_stamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "19700101-000000");
        // 2000-02-29 00:00:00 UTC, a leap day of a century leap year.
        assert_eq!(at(951_782_400), "20000229-000000");
        // The "1.7 billion seconds" moment: 2023-11-14 22:13:20 UTC.
        assert_eq!(at(1_700_000_000), "20231114-221320");
        // The last second of 1999.
        assert_eq!(at(946_684_799), "19991231-235959");
    }

    fn args() -> SweepArgs {
        SweepArgs {
            scenario: None,
            servers: vec![],
            emd: vec![],
            slots: None,
            users: None,
            seeds: None,
            out: None,
            json: false,
            jobs: None,
            trust: Default::default(),
        }
    }

    #[test]
    fn flags_override_the_defaults() {
        let s = build_sweep(&args(), &[]).unwrap();
        assert_eq!(s.policies.len(), Builtin::BASELINES.len());
        assert_eq!(
            (s.servers.clone(), s.seeds.clone(), s.base.slots),
            (vec![15], vec![1], 750)
        );
        let a = SweepArgs {
            servers: vec![9, 3],
            emd: vec![0.2, 0.4],
            slots: Some(20),
            users: Some(4),
            seeds: Some(Seeds(vec![5, 6])),
            ..args()
        };
        let s = build_sweep(&a, &["sticky".into()]).unwrap();
        assert_eq!(
            s.base,
            Scenario {
                users: 4,
                slots: 20,
                servers: 9,
                emd: Emd::All(0.2),
                seed: 5,
                ..Scenario::default()
            }
        );
        assert_eq!(s.emds, [Emd::All(0.2), Emd::All(0.4)]);
        // The resolved scenario reads back.
        let text = scenario_toml("compare", &s);
        assert_eq!(Scenario::from_toml(&text, "scenario.toml").unwrap(), s.base);
    }

    #[track_caller]
    fn rejects(a: SweepArgs, policies: &[&str], expected: &str) {
        let policies: Vec<String> = policies.iter().map(|p| (*p).to_owned()).collect();
        let err = format!("{:#}", build_sweep(&a, &policies).unwrap_err());
        assert_eq!(err, expected);
    }

    #[test]
    fn bad_flags_name_the_flag() {
        rejects(
            SweepArgs {
                servers: vec![0],
                ..args()
            },
            &[],
            "--servers: must be in 1..=64 (got 0)",
        );
        rejects(
            SweepArgs {
                servers: vec![3, 3],
                ..args()
            },
            &[],
            "--servers: `3` is listed twice",
        );
        rejects(
            SweepArgs {
                emd: vec![2.5],
                ..args()
            },
            &[],
            "--emd: must be in [0, 2] (got 2.5)",
        );
        rejects(
            SweepArgs {
                slots: Some(0),
                ..args()
            },
            &[],
            "--slots: must be at least 1",
        );
        rejects(
            args(),
            &["nearest", "nearest"],
            "--policy: `nearest` is listed twice",
        );
        rejects(
            args(),
            &["nope"],
            "--policy: unknown policy `nope` (known: nearest, nearest-random, sticky, oracle, \
             oracle-fast, random, lookahead; a trained policy is given as a file path)",
        );
        let err = format!(
            "{:#}",
            build_sweep(&args(), &["ppo.onnx".into()]).unwrap_err()
        );
        assert!(
            err.starts_with("--policy: ppo.onnx: ONNX policies are not supported yet"),
            "{err}"
        );
    }
}

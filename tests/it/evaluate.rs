//! `diten evaluate` and `diten compare` end to end: the files they write, what
//! they print, determinism, errors and Ctrl-C. Violation counts are checked
//! against an episode replayed here through the simulator and the decision maker
//! directly, not through the evaluation module.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use diten_trainer::policy;
use diten_trainer::scenario::{Emd, Scenario};
use diten_trainer::sim::Env;
use serde_json::Value;

use crate::diten;

/// The PNG files every run writes per EMD value.
const PLOTS: [&str; 7] = [
    "objective",
    "utility",
    "cost_total",
    "cost_mig",
    "cost_syn",
    "cost_cmp",
    "reward",
];

fn scratch(name: &str) -> PathBuf {
    crate::scratch_dir("evaluate", name)
}

/// Runs `diten` with `args`.
fn run(args: &[&str]) -> Output {
    diten().args(args).output().expect("running diten")
}

/// Asserts a zero exit; returns stdout.
#[track_caller]
fn success(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "diten failed ({}): {stderr}",
        out.status
    );
    assert!(!stderr.contains("error"), "stderr: {stderr}");
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// Asserts a failure with exactly one line `error: ...` on stderr mentioning `needle`.
#[track_caller]
fn failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure, stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(
        stderr.contains(needle),
        "`{stderr}` should mention `{needle}`"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The rows of a CSV file written by diten (no quoted fields in these tests).
fn csv(path: &Path) -> Vec<Vec<String>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// The value of `column` in `row` of a CSV with `header`.
fn field<'a>(header: &[String], row: &'a [String], column: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    &row[i]
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("reading the output folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

const SHORT: [&str; 12] = [
    "--servers",
    "3,4",
    "--users",
    "4",
    "--slots",
    "20",
    "--seeds",
    "1,2",
    "--policy",
    "nearest,sticky",
    "--emd",
    "0.2",
];

#[test]
fn a_short_comparison_writes_every_file() {
    let dir = scratch("short");
    let mut args = vec!["compare"];
    args.extend(SHORT);
    args.extend(["--out", dir.to_str().expect("UTF-8 path")]);
    let stdout = success(&run(&args));

    let mut expected: BTreeSet<String> = [
        "scenario.toml",
        "episodes.csv",
        "summary.csv",
        "summary.json",
    ]
    .map(str::to_owned)
    .into();
    expected.extend(PLOTS.iter().map(|m| format!("{m}_phi0.2.png")));
    // Exactly these: no temporary files left behind.
    assert_eq!(files_in(&dir), expected);
    for m in PLOTS {
        let png = std::fs::read(dir.join(format!("{m}_phi0.2.png"))).expect("reading a plot");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{m}");
        assert!(
            png.len() > 5_000,
            "{m}: a drawn plot is not tiny ({} bytes)",
            png.len()
        );
    }

    // One episode per (policy, servers, emd, seed), in that order.
    let rows = csv(&dir.join("episodes.csv"));
    let header = &rows[0];
    assert_eq!(&header[..5], ["policy", "servers", "emd", "seed", "slots"]);
    let keys: Vec<String> = rows[1..].iter().map(|r| r[..5].join(",")).collect();
    assert_eq!(
        keys,
        [
            "nearest,3,0.2,1,20",
            "nearest,3,0.2,2,20",
            "nearest,4,0.2,1,20",
            "nearest,4,0.2,2,20",
            "sticky,3,0.2,1,20",
            "sticky,3,0.2,2,20",
            "sticky,4,0.2,1,20",
            "sticky,4,0.2,2,20",
        ]
    );
    for row in &rows[1..] {
        assert_eq!(row.len(), header.len());
        for value in &row[5..] {
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("`{value}` is a number"));
            assert!(v.is_finite());
        }
    }

    // The summary: one row per (policy, servers, emd), mean of the two seeds.
    let summary = csv(&dir.join("summary.csv"));
    assert_eq!(summary.len(), 1 + 4);
    assert_eq!(&summary[0][..4], ["policy", "servers", "emd", "seeds"]);
    let (sh, eh) = (&summary[0], header);
    for (i, srow) in summary[1..].iter().enumerate() {
        assert_eq!(field(sh, srow, "seeds"), "2");
        let a: f64 = field(eh, &rows[1 + 2 * i], "objective").parse().unwrap();
        let b: f64 = field(eh, &rows[2 + 2 * i], "objective").parse().unwrap();
        let mean: f64 = field(sh, srow, "objective_mean").parse().unwrap();
        let std: f64 = field(sh, srow, "objective_std").parse().unwrap();
        assert!((mean - (a + b) / 2.0).abs() < 1e-12, "{mean} vs {a}, {b}");
        assert!(
            (std - (a - b).abs() / 2f64.sqrt()).abs() < 1e-12,
            "{std} vs {a}, {b}"
        );
    }

    // The resolved scenario reads back with the flags applied.
    let text = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
    let scenario = Scenario::from_toml(&text, "scenario.toml").expect("scenario.toml parses");
    assert_eq!(
        (
            scenario.users,
            scenario.servers,
            scenario.slots,
            scenario.seed
        ),
        (4, 3, 20, 1)
    );
    assert_eq!(scenario.emd, Emd::All(0.2));

    // The table: a header, a rule and one line per summary row, all equally wide.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2 + 4, "{stdout}");
    assert!(lines[0].starts_with("policy"), "{stdout}");
    assert!(
        lines[2].starts_with("nearest ") && lines[5].starts_with("sticky "),
        "{stdout}"
    );
    let width = lines[1].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == width), "{stdout}");
}

#[test]
fn json_prints_the_summary() {
    let dir = scratch("json");
    let mut args = vec!["compare", "--json"];
    args.extend(SHORT);
    args.extend(["--out", dir.to_str().unwrap()]);
    let stdout = success(&run(&args));
    let printed: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
            .expect("summary.json is JSON");
    assert_eq!(printed, file);
    assert_eq!(printed["complete"], true);
    assert_eq!(
        (
            printed["episodes_finished"].as_u64(),
            printed["episodes_planned"].as_u64()
        ),
        (Some(8), Some(8))
    );
    let rows = printed["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    for row in rows {
        assert_eq!(row["seeds"], serde_json::json!([1, 2]));
        for metric in [
            "objective",
            "reward",
            "utility",
            "cost_total",
            "violating_slots",
            "decide_us",
        ] {
            for stat in ["mean", "std", "min", "max"] {
                assert!(row[metric][stat].is_f64(), "{metric}.{stat} in {row}");
            }
        }
        let o = &row["objective"];
        assert!(o["min"].as_f64() <= o["mean"].as_f64() && o["mean"].as_f64() <= o["max"].as_f64());
    }
}

/// `episodes.csv` without the one column that measures wall time.
fn episodes_without_timing(dir: &Path) -> Vec<Vec<String>> {
    let rows = csv(&dir.join("episodes.csv"));
    let t = rows[0]
        .iter()
        .position(|h| h == "decide_us")
        .expect("a decide_us column");
    rows.into_iter()
        .map(|mut r| {
            r.remove(t);
            r
        })
        .collect()
}

#[test]
fn runs_are_deterministic_whatever_the_threads() {
    let (a, b) = (scratch("det-a"), scratch("det-b"));
    for (dir, jobs) in [(&a, "1"), (&b, "3")] {
        let mut args = vec!["compare", "--jobs", jobs];
        args.extend(SHORT);
        args.extend(["--out", dir.to_str().unwrap()]);
        success(&run(&args));
    }
    assert_eq!(episodes_without_timing(&a), episodes_without_timing(&b));
}

#[test]
fn bad_flags_give_one_line_errors() {
    let dir = scratch("bad");
    let out = dir.to_str().unwrap();
    let base = ["--users", "4", "--slots", "5", "--out", out];
    let check = |extra: &[&str], needle: &str| {
        let mut args = vec!["compare"];
        args.extend(base);
        args.extend(extra);
        failure(&run(&args), needle);
    };
    check(&["--servers", "0"], "--servers: must be in 1..=64 (got 0)");
    check(&["--servers", "3,x"], "--servers");
    check(&["--policy", "nope"], "unknown policy `nope`");
    check(
        &["--policy", "models/ppo.onnx"],
        "ONNX policies are not supported yet",
    );
    check(
        &["--scenario", "/nonexistent/scenario.toml"],
        "/nonexistent/scenario.toml",
    );
    check(&["--seeds", "5..=1"], "empty range");
    check(&["--seeds", "1..3"], "write `1..=3`");
    check(&["--emd", "3"], "--emd: must be in [0, 2]");
    check(&["--jobs", "0"], "--jobs");
    failure(&run(&["evaluate", "--users", "4"]), "--policy");
    // Nothing was run, so nothing was written.
    assert!(!dir.exists());
}

#[test]
fn an_unreadable_scenario_file_is_an_error() {
    let dir = scratch("bad-scenario");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    std::fs::write(&file, "users = 4\nservrs = 3\n").unwrap();
    let out = run(&[
        "evaluate",
        "--policy",
        "nearest",
        "--scenario",
        file.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    failure(&out, "servrs");
    // A folder is not a scenario file either.
    let out = run(&[
        "evaluate",
        "--policy",
        "nearest",
        "--scenario",
        dir.to_str().unwrap(),
    ]);
    failure(&out, dir.to_str().unwrap());
}

#[test]
fn the_scenario_file_is_the_base_and_flags_override_it() {
    let dir = scratch("scenario");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        "users = 3\nservers = 2\nslots = 5\nseed = 7\nemd = 0.4\n[mobility]\nmodel = \"static\"\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let stdout = success(&run(&[
        "evaluate",
        "--policy",
        "sticky",
        "--scenario",
        file.to_str().unwrap(),
        "--slots",
        "7",
        "--out",
        out_dir.to_str().unwrap(),
    ]));
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let rows = csv(&out_dir.join("episodes.csv"));
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[1][..5], ["sticky", "2", "0.4", "7", "7"]);
    let text = std::fs::read_to_string(out_dir.join("scenario.toml")).unwrap();
    let s = Scenario::from_toml(&text, "scenario.toml").unwrap();
    assert_eq!((s.users, s.servers, s.slots, s.seed), (3, 2, 7, 7));
    assert_eq!(s.mobility, diten_trainer::scenario::Mobility::Static);
    assert!(out_dir.join("objective_phi0.4.png").is_file());
}

#[test]
fn without_out_a_fresh_runs_folder_is_used() {
    let cwd = scratch("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = diten()
        .args([
            "evaluate",
            "--policy",
            "nearest",
            "--users",
            "3",
            "--servers",
            "2",
            "--slots",
            "3",
        ])
        .current_dir(&cwd)
        .output()
        .expect("running diten");
    success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let runs: Vec<String> = files_in(&cwd.join("runs")).into_iter().collect();
    assert_eq!(
        files_in(&cwd),
        BTreeSet::from(["runs".to_owned()]),
        "nothing outside runs/"
    );
    assert_eq!(runs.len(), 1);
    assert!(runs[0].starts_with("evaluate-"), "{runs:?}");
    assert!(stderr.contains(&format!("runs/{}", runs[0])), "{stderr}");
    assert!(cwd
        .join("runs")
        .join(&runs[0])
        .join("summary.json")
        .is_file());
}

/// Replays one episode with the simulator and the decision maker directly:
/// (slots with a violation, violations, mean objective).
fn replay(scenario: &Scenario, name: &str, seed: u64) -> (usize, usize, f64) {
    let mut env = Env::new(scenario, seed).expect("valid scenario");
    let mut dm = policy::Builtin::parse(name)
        .expect("a built-in policy")
        .decision_maker();
    dm.reset(seed);
    let (mut slots, mut total, mut objective, mut n) = (0, 0, 0.0, 0);
    while !env.done() {
        let decision = dm.decide(&env).expect("decides");
        let outcome = env.step(&decision).expect("steps");
        let v = outcome.evaluation.violations.total();
        slots += usize::from(v > 0);
        total += v;
        objective += outcome.evaluation.objective;
        n += 1;
    }
    (slots, total, objective / n as f64)
}

#[test]
fn every_violation_is_counted() {
    // A roomy scenario (4 users, 3–4 servers) and a crowded one (12 users on 2
    // servers, where C2 cannot always hold).
    for (name, users, servers) in [("roomy", "4", "3,4"), ("crowded", "12", "2")] {
        let dir = scratch(&format!("violations-{name}"));
        success(&run(&[
            "compare",
            "--users",
            users,
            "--servers",
            servers,
            "--slots",
            "15",
            "--seeds",
            "1..=2",
            "--policy",
            "nearest,sticky",
            "--out",
            dir.to_str().unwrap(),
        ]));
        let rows = csv(&dir.join("episodes.csv"));
        let header = &rows[0];
        let mut counted = 0;
        for row in &rows[1..] {
            let policy = field(header, row, "policy");
            let scenario = Scenario {
                users: users.parse().unwrap(),
                servers: field(header, row, "servers").parse().unwrap(),
                slots: 15,
                emd: Emd::All(0.0),
                ..Scenario::default()
            };
            let seed: u64 = field(header, row, "seed").parse().unwrap();
            let (slots, total, objective) = replay(&scenario, policy, seed);
            assert_eq!(
                field(header, row, "violating_slots"),
                slots.to_string(),
                "{row:?}"
            );
            assert_eq!(
                field(header, row, "violations"),
                total.to_string(),
                "{row:?}"
            );
            let got: f64 = field(header, row, "objective").parse().unwrap();
            assert!(
                (got - objective).abs() < 1e-12,
                "{row:?}: objective {got} vs {objective}"
            );
            counted += total;
        }
        if name == "crowded" {
            assert!(counted > 0, "12 users on 2 servers break C2 somewhere");
        }
    }
}

/// Ctrl-C: the episodes in progress finish, the partial results are written and
/// marked, the exit code is 130.
#[cfg(unix)]
#[test]
fn ctrl_c_writes_partial_results() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    let dir = scratch("ctrl-c");
    let mut child = diten()
        .args([
            "evaluate",
            "--policy",
            "nearest",
            "--users",
            "4",
            "--servers",
            "3",
            "--slots",
            "40",
        ])
        .args([
            "--seeds",
            "1..=50000",
            "--jobs",
            "1",
            "--out",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning diten");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut first = String::new();
    // The first line comes once the Ctrl-C handler is installed.
    stderr.read_line(&mut first).expect("reading stderr");
    assert!(first.starts_with("evaluate: 50000 episodes"), "{first}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("reading stderr");
    let out = child.wait_with_output().expect("waiting for diten");
    assert_eq!(out.status.code(), Some(130), "stderr: {first}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    // The last progress line says where the sweep stopped, not that it ended.
    assert!(rest.contains("evaluate: stopped at "), "{rest}");
    assert!(!rest.contains(" %) in "), "{rest}");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["complete"], false);
    let finished = summary["episodes_finished"].as_u64().expect("a count") as usize;
    assert_eq!(summary["episodes_planned"], 50000);
    assert!(
        (1..50000).contains(&finished),
        "{finished} episodes finished"
    );
    let rows = csv(&dir.join("episodes.csv"));
    assert_eq!(rows.len(), 1 + finished);
    // The finished ones are the first seeds, whole.
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(field(&rows[0], row, "seed"), (i + 1).to_string());
        assert_eq!(field(&rows[0], row, "slots"), "40");
    }
    assert_eq!(
        summary["rows"][0]["seeds"].as_array().map(Vec::len),
        Some(finished)
    );
    assert!(dir.join("objective_phi0.png").is_file());
}

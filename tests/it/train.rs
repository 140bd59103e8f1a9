//! `diten train` end to end on a tiny scenario: learning beats a random association,
//! the same seed gives the same curve, resume continues a run, the baselines train,
//! and bad input is a one-line error. The yardstick (`random`) and the comparison
//! run through `diten compare`, which reads the checkpoint with its own loader.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::{diten, ok};

/// 4 users, 3 servers, 50-slot episodes: seconds per run even in a debug build.
const TINY: [&str; 8] = [
    "--users",
    "4",
    "--servers",
    "3",
    "--slots",
    "50",
    "--emd",
    "0.2",
];

fn scratch(name: &str) -> PathBuf {
    crate::scratch_dir("train", name)
}

fn train(dir: &Path, extra: &[&str]) -> Output {
    diten()
        .arg("train")
        .args(TINY)
        .args(["--envs", "4", "--rollout", "32", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("running diten train")
}

/// metrics.csv without the timing columns (wall_s, slots_per_s), which vary.
fn curve(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| header[i] != "wall_s" && header[i] != "slots_per_s")
        .collect();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| f[i]).collect::<Vec<_>>().join(",")
        })
        .collect()
}

/// Mean objective per decision maker from `diten compare --json` on the tiny scenario.
fn compare(policies: &str, out: &Path) -> Vec<(String, f64)> {
    let stdout = ok(diten()
        .arg("compare")
        .args(TINY)
        .args([
            "--seeds",
            "101..=104",
            "--json",
            "--policy",
            policies,
            "--out",
        ])
        .arg(out)
        .output()
        .expect("running diten compare"));
    let json: Value = serde_json::from_str(&stdout).expect("summary JSON");
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["policy"].as_str().expect("policy").to_owned(),
                r["objective"]["mean"].as_f64().expect("objective mean"),
            )
        })
        .collect()
}

#[test]
fn ppo_learns_to_beat_a_random_association() {
    let dir = scratch("learns");
    // 150 iterations: with the value bootstrapped at the time limit (SPEC §2.3)
    // 60 were enough for neither seed 7 nor 8 (0.04 and 0.02 above random), 150
    // are for both (0.18, 0.20).
    ok(train(&dir, &["--seed", "7", "--iterations", "150"]));
    for file in ["config.toml", "metrics.csv", "curve.png", "checkpoint.ot"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert_eq!(curve(&dir).len(), 150);
    let ckpt = dir.join("checkpoint.ot");
    let rows = compare(
        &format!("random,{}", ckpt.display()),
        &scratch("learns-compare"),
    );
    let (random, ppo) = (rows[0].1, rows[1].1);
    // Sticky reaches about 0.2 above random here; the bar is a quarter of that gap.
    assert!(ppo > random + 0.05, "PPO {ppo} vs random {random}");
}

#[test]
fn imitation_of_the_oracle_packs_like_it() {
    let dir = scratch("imitate");
    ok(train(
        &dir,
        &[
            "--seed",
            "7",
            "--imitate",
            "10",
            "--iterations",
            "10",
            "--reward",
            "objective",
        ],
    ));
    // The agreement column: the share of users on the oracle's server, rising.
    let text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|&h| h == "agreement")
        .expect("agreement column");
    let agreement: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    assert_eq!(agreement.len(), 10);
    let (first, last) = (agreement[0], agreement[9]);
    assert!(last > first && last > 0.7, "agreement {agreement:?}");

    // The exported policy, run as the gateway runs it (blob → controller), against
    // the oracle it imitates and the best simple baseline.
    let blob = dir.join("policy.bin");
    ok(diten()
        .arg("convert")
        .arg(dir.join("policy.onnx"))
        .arg("--out")
        .arg(&blob)
        .output()
        .unwrap());
    let rows = compare(
        &format!("nearest,oracle,{}", blob.display()),
        &scratch("imitate-compare"),
    );
    let (nearest, oracle, imitated) = (rows[0].1, rows[1].1, rows[2].1);
    // The oracle is about 0.06 ahead of nearest here; imitation must close half of it.
    assert!(
        imitated > nearest + 0.5 * (oracle - nearest),
        "imitation {imitated} vs nearest {nearest}, oracle {oracle}"
    );
}

#[test]
fn same_seed_same_curve_and_resume_continues() {
    let (a, b) = (scratch("seed-a"), scratch("seed-b"));
    ok(train(&a, &["--seed", "3", "--iterations", "6"]));
    ok(train(&b, &["--seed", "3", "--iterations", "6"]));
    assert_eq!(curve(&a), curve(&b), "same seed, different curves");
    let c = scratch("seed-c");
    ok(train(&c, &["--seed", "4", "--iterations", "6"]));
    assert_ne!(curve(&a), curve(&c), "the seed changes nothing");

    // Resume: 6 more iterations on top of run a.
    let out = diten()
        .args(["train", "--iterations", "12", "--resume"])
        .arg(&a)
        .output()
        .expect("running diten train --resume");
    ok(out);
    let resumed = curve(&a);
    assert_eq!(resumed.len(), 12);
    assert_eq!(
        resumed[..6],
        curve(&b)[..],
        "resume rewrote the first iterations"
    );
    let slots: Vec<u64> = resumed
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(slots, (1..=12).map(|i| i * 4 * 32).collect::<Vec<u64>>());
}

#[test]
fn the_learning_baselines_train_and_evaluate() {
    for algo in ["a2c", "ddpg"] {
        let dir = scratch(algo);
        ok(train(&dir, &["--algo", algo, "--iterations", "3"]));
        let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(text.contains(&format!("algo = \"{algo}\"")), "{text}");
        let rows = compare(
            &dir.display().to_string(),
            &scratch(&format!("{algo}-compare")),
        );
        assert!(rows[0].1.is_finite());
    }
}

#[test]
fn bad_input_is_one_line_naming_the_problem() {
    let check = crate::one_line_error;
    let missing = scratch("missing");
    check(
        diten()
            .args(["train", "--resume"])
            .arg(&missing)
            .output()
            .unwrap(),
        "config.toml",
    );
    check(
        train(&scratch("zero"), &["--iterations", "0"]),
        "iterations",
    );
    check(train(&scratch("dev"), &["--device", "tpu"]), "--device");
    check(
        train(
            &scratch("ddpg-imitate"),
            &["--algo", "ddpg", "--imitate", "2"],
        ),
        "imitate.iterations",
    );
    // A corrupt checkpoint is named in the error, for resume and for evaluation.
    let dir = scratch("corrupt");
    ok(train(&dir, &["--iterations", "1"]));
    std::fs::write(dir.join("checkpoint.ot"), b"not a checkpoint").unwrap();
    check(
        diten()
            .args(["train", "--resume"])
            .arg(&dir)
            .output()
            .unwrap(),
        "checkpoint.ot",
    );
    check(
        diten()
            .args([
                "evaluate",
                "--users",
                "4",
                "--servers",
                "3",
                "--slots",
                "5",
                "--policy",
            ])
            .arg(dir.join("checkpoint.ot"))
            .output()
            .unwrap(),
        "checkpoint.ot",
    );
}

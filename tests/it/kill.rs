//! A training run killed with SIGKILL at any moment loses nothing: every file in
//! its folder stays valid (the checkpoint loads, `metrics.csv` has no torn line,
//! `config.toml` and `curve.png` are whole) and `diten train --resume` finishes it.
//!
//! The run is the tiny 4-user, 3-server scenario of `train.rs` with a checkpoint
//! after every iteration (set in its `config.toml`), so kills often land while a
//! file is being written. Kills come right after a new checkpoint appears, while a
//! temporary checkpoint file exists (mid-write, when the poll catches it), at
//! pseudo-random short delays, and before a fresh run's first checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use diten_trainer::policy::checkpoint::Loaded;
use diten_trainer::train::{TrainConfig, METRICS_COLUMNS};

use crate::diten;

/// Slots per iteration: `--envs 4 --rollout 32`.
const SLOTS_PER_ITERATION: u64 = 4 * 32;
/// Iterations of the killed run.
const ITERATIONS: usize = 16;

fn tiny_train(dir: &Path, iterations: usize) -> Child {
    diten()
        .args(["train", "--users", "4", "--servers", "3", "--slots", "50"])
        .args([
            "--emd",
            "0.2",
            "--seed",
            "11",
            "--envs",
            "4",
            "--rollout",
            "32",
        ])
        .arg("--iterations")
        .arg(iterations.to_string())
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning diten train")
}

fn resume(dir: &Path) -> Child {
    diten()
        .args(["train", "--iterations", &ITERATIONS.to_string(), "--resume"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning diten train --resume")
}

/// Waits for `child` and fails with its stderr unless it succeeded.
#[track_caller]
fn finish(child: Child) {
    let out = child.wait_with_output().expect("waiting for diten");
    assert!(
        out.status.success(),
        "diten failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGKILLs `child` (if it still runs) and reaps it; true when it was still running.
fn kill(mut child: Child) -> bool {
    let running = matches!(child.try_wait(), Ok(None));
    // `Child::kill` sends SIGKILL on Unix; it fails only when the child is gone.
    let _ = child.kill();
    let _ = child.wait();
    running
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Names of the temporary checkpoint files in `dir` (`.tmp-<pid>-<n>-checkpoint.ot`).
fn tmp_checkpoints(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".tmp-") && name.ends_with("checkpoint.ot"))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls (without sleeping: a checkpoint write takes about a millisecond) until
/// `done` holds, the child exits or `limit` passes.
fn poll_until(child: &mut Child, limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::yield_now();
    }
    false
}

/// Checks every file of the run folder; returns the checkpoint's iteration (0
/// without one).
#[track_caller]
fn check_folder(dir: &Path) -> usize {
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config.toml");
    TrainConfig::from_toml(&text, &config.display().to_string()).expect("config.toml is valid");

    let ckpt = dir.join("checkpoint.ot");
    let iteration = if ckpt.exists() {
        let loaded = Loaded::read(&ckpt).expect("the checkpoint loads");
        let counters = loaded.counters().expect("the checkpoint's counters");
        assert_eq!(
            counters.slots,
            counters.iteration as u64 * SLOTS_PER_ITERATION
        );
        loaded.actor().expect("the checkpoint's actor");
        counters.iteration
    } else {
        0
    };

    let metrics = dir.join("metrics.csv");
    if iteration > 0 {
        let text = std::fs::read_to_string(&metrics).expect("metrics.csv");
        assert!(text.ends_with('\n'), "metrics.csv ends in a torn line");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(METRICS_COLUMNS.join(",").as_str()));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        // Metrics are written before the checkpoint: never fewer rows.
        assert!(
            rows.len() >= iteration,
            "{} rows, checkpoint at {iteration}",
            rows.len()
        );
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), METRICS_COLUMNS.len(), "row {}: {row:?}", i + 1);
            assert_eq!(row[0].parse::<usize>().ok(), Some(i + 1), "row {}", i + 1);
            assert_eq!(
                row[1].parse::<u64>().ok(),
                Some((i as u64 + 1) * SLOTS_PER_ITERATION)
            );
        }
    }
    let png = dir.join("curve.png");
    if png.exists() {
        let bytes = std::fs::read(&png).expect("curve.png");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "curve.png: no PNG signature"
        );
        assert!(
            bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82]),
            "curve.png: no IEND chunk"
        );
    }
    // Anything else is a temporary file of a killed writer (removed on resume).
    for entry in std::fs::read_dir(dir).expect("the run folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let known = [
            "config.toml",
            "checkpoint.ot",
            "metrics.csv",
            "curve.png",
            "policy.onnx",
        ];
        assert!(
            known.contains(&name.as_str()) || name.starts_with(".tmp-"),
            "unexpected file {name}"
        );
    }
    iteration
}

/// Deterministic delays (xorshift) so a failure can be replayed.
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

fn scratch(name: &str) -> PathBuf {
    crate::scratch_dir("kill", name)
}

#[test]
fn a_killed_run_resumes_with_no_file_lost() {
    let dir = scratch("run");
    // One iteration for the run folder, then a checkpoint after every iteration.
    finish(tiny_train(&dir, 1));
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config.toml");
    assert!(text.contains("checkpoint_every = 10"), "{text}");
    std::fs::write(
        &config,
        text.replace("checkpoint_every = 10", "checkpoint_every = 1"),
    )
    .expect("editing config.toml");
    assert_eq!(check_folder(&dir), 1);

    let mut delays = Delays(0x9E37_79B9_7F4A_7C15);
    let mut last = 1;
    let mut mid_write = 0;
    for round in 0..5 {
        let mut child = resume(&dir);
        let before = modified(&dir.join("checkpoint.ot"));
        match round % 3 {
            // Right after a new checkpoint is renamed into place (the curve is next).
            0 => {
                poll_until(&mut child, Duration::from_secs(20), || {
                    modified(&dir.join("checkpoint.ot")) != before
                });
            }
            // While a temporary checkpoint exists: mid-write.
            // (One left by an earlier kill does not count: the run removes it.)
            1 => {
                let stale = tmp_checkpoints(&dir);
                if poll_until(&mut child, Duration::from_secs(20), || {
                    tmp_checkpoints(&dir).iter().any(|n| !stale.contains(n))
                }) {
                    mid_write += 1;
                }
            }
            // At a random moment, from start-up to several iterations in.
            _ => std::thread::sleep(Duration::from_millis(delays.next_ms(20, 1500))),
        }
        kill(child);
        let now = check_folder(&dir);
        assert!(
            now >= last,
            "round {round}: checkpoint went back from {last} to {now}"
        );
        last = now;
        if now == ITERATIONS {
            break;
        }
    }
    eprintln!("kill: {mid_write} kills while a checkpoint was being written");

    // The last resume finishes the run: every iteration exactly once, in order.
    finish(resume(&dir));
    assert_eq!(check_folder(&dir), ITERATIONS);
    let text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    assert_eq!(text.lines().count(), ITERATIONS + 1);
    assert!(
        dir.join("policy.onnx").is_file(),
        "no policy.onnx after the last iteration"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .expect("the run folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_run_killed_before_its_first_checkpoint_starts_over() {
    let dir = scratch("early");
    let mut child = tiny_train(&dir, 3);
    // config.toml is the first file a run writes; kill as soon as it is there.
    let seen = poll_until(&mut child, Duration::from_secs(30), || {
        dir.join("config.toml").exists()
    });
    assert!(seen, "the run never wrote config.toml");
    if kill(child) && !dir.join("checkpoint.ot").exists() {
        check_folder(&dir);
    }
    let out = diten()
        .args(["train", "--resume"])
        .arg(&dir)
        .output()
        .expect("running diten train --resume");
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(check_folder(&dir), 3);
}

/// `diten train --resume dir` fails with one line naming `needle` (a file and a field).
#[track_caller]
fn resume_fails(dir: &Path, needles: &[&str]) {
    let out = diten()
        .args(["train", "--resume"])
        .arg(dir)
        .output()
        .expect("running diten train --resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "resume of a damaged folder succeeded"
    );
    let last = stderr.trim_end().lines().next_back().unwrap_or_default();
    for needle in needles {
        assert!(last.contains(needle), "`{last}` should name `{needle}`");
    }
}

#[test]
fn a_damaged_run_folder_is_a_clear_error() {
    let base = scratch("damaged");
    finish(tiny_train(&base, 1));
    let copy = |name: &str| {
        let dir = scratch(name);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        for file in ["config.toml", "checkpoint.ot", "metrics.csv"] {
            std::fs::copy(base.join(file), dir.join(file)).expect("copying the run");
        }
        dir
    };

    // A checkpoint cut short (what a non-atomic write killed midway would leave).
    let dir = copy("torn-checkpoint");
    let bytes = std::fs::read(dir.join("checkpoint.ot")).expect("checkpoint");
    std::fs::write(dir.join("checkpoint.ot"), &bytes[..bytes.len() / 2]).expect("cutting");
    resume_fails(&dir, &["checkpoint.ot", "not a readable diten checkpoint"]);

    // A config with an invalid value, and one with a value of the wrong type.
    let dir = copy("bad-config");
    let text = std::fs::read_to_string(dir.join("config.toml")).expect("config");
    std::fs::write(
        dir.join("config.toml"),
        text.replace("checkpoint_every = 10", "checkpoint_every = 0"),
    )
    .expect("editing");
    resume_fails(&dir, &["config.toml", "checkpoint_every"]);
    std::fs::write(
        dir.join("config.toml"),
        text.replace("checkpoint_every = 10", "checkpoint_every = \"often\""),
    )
    .expect("editing");
    resume_fails(&dir, &["config.toml", "checkpoint_every"]);
    std::fs::remove_file(dir.join("config.toml")).expect("removing");
    resume_fails(&dir, &["config.toml"]);

    // A torn last line in metrics.csv.
    let dir = copy("torn-metrics");
    let mut text = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics");
    text.push_str("2,256,5.1");
    std::fs::write(dir.join("metrics.csv"), text).expect("editing");
    resume_fails(&dir, &["metrics.csv", "line 3"]);
}

//! End-to-end tests: one test binary, one module per topic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

mod evaluate;
mod firmware;
mod foresight;
mod frontier;
#[cfg(feature = "torch")]
mod general;
#[cfg(feature = "torch")]
mod kill;
#[cfg(feature = "torch")]
mod models;
#[cfg(feature = "torch")]
mod onnx;
mod onnx_general;
mod sign;
mod solve;
#[cfg(feature = "torch")]
mod train;

/// A `diten` command ready to run, built from the current sources.
///
/// Cargo gives integration tests only their own package's binaries
/// (`CARGO_BIN_EXE_*`), and `diten` lives in `diten-trainer`. So the first call
/// runs `cargo build -p diten-trainer --bin diten` into the target directory and
/// profile this test binary was built in (`target/<profile>/deps/it-*`). It runs
/// every time (not only when the binary is missing): it is a no-op when the binary
/// is fresh, and a stale one would test old code.
pub fn diten() -> Command {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    Command::new(BIN.get_or_init(build_diten))
}

fn build_diten() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lies in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(name) => name,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "diten-trainer", "--bin", "diten"])
        .arg("--profile")
        .arg(profile)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build for the diten binary");
    assert!(status.success(), "cargo build of the diten binary failed");
    let bin = profile_dir.join(format!("diten{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// The stdout of a `diten` run that must succeed (its stderr in the failure message).
#[track_caller]
pub fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "diten failed ({}): {stderr}",
        out.status
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// `out` failed with exactly one line on stderr that mentions `needle`.
#[track_caller]
pub fn one_line_error(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(needle),
        "`{stderr}` should mention `{needle}`"
    );
}

/// A fresh, not yet existing folder `name` for one test's outputs, under the
/// topic's folder in the target directory (an old one is removed; its parent exists).
pub fn scratch_dir(topic: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(topic)
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("removing an old scratch folder");
    }
    std::fs::create_dir_all(dir.parent().expect("has a parent"))
        .expect("creating the scratch root");
    dir
}

/// Runs `cmd` with `stdin` as its standard input and waits for it.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning diten");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // diten may stop reading early (it never does today); ignore a closed pipe.
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    child.wait_with_output().expect("waiting for diten")
}

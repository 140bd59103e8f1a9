//! The firmware of `firmware-example/` under QEMU against the host: the committed
//! trace it embeds is what `diten trace` records with the arguments below, and the
//! firmware's slot lines match `diten replay` on the same trace and policy (same
//! associations, γ and objectives within 1e-5).
//!
//! Needs `qemu-system-arm` and the `thumbv7em-none-eabihf` target; without them
//! the test fails and says to run `make firmware`, which installs both.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::diten;

/// The arguments `firmware-example/trace.bin` was recorded with, from the
/// repository's root: a churn trace (SPEC §2.2a; seed 2 has users leaving and
/// returning and server 10 down for the last 8 slots).
const TRACE_ARGS: [&str; 8] = [
    "--scenario",
    "examples/churn.toml",
    "--servers",
    "21",
    "--slots",
    "20",
    "--seed",
    "2",
];
/// The firmware's target.
const THUMB: &str = "thumbv7em-none-eabihf";
/// Seconds the firmware's build and run may take (about 30 s here, the build
/// included when it is fresh: a few minutes).
const FIRMWARE_TIMEOUT_S: u64 = 900;
/// The agreement asked of γ and the objective.
const TOL: f64 = 1e-5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the repository")
        .to_path_buf()
}

/// Fails with the fix when the firmware's tools are missing.
fn require_tools() {
    let qemu = Command::new("qemu-system-arm").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-arm is missing: run `make firmware` (it installs qemu-system-arm and \
         the {THUMB} target, then builds and runs the firmware)"
    );
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", THUMB])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    assert!(
        libdir.is_some_and(|d| d.is_dir()),
        "the Rust target {THUMB} is missing: run `make firmware` (it installs it with rustup \
         and qemu-system-arm, then builds and runs the firmware)"
    );
}

/// One `slot N: ...` line.
#[derive(Debug)]
struct SlotLine {
    slot: usize,
    association: Vec<usize>,
    gamma: Vec<f64>,
    objective: f64,
}

/// The `slot N: association [..] gamma [..] objective X` lines of `text`, in order.
fn slot_lines(text: &str) -> Vec<SlotLine> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("slot ")?;
            let (slot, rest) = rest.split_once(": association [")?;
            let slot = slot.parse().ok()?;
            let (association, rest) = rest.split_once("] gamma [")?;
            let (gamma, objective) = rest.split_once("] objective ")?;
            let number = |s: &str| s.parse::<f64>().expect("a number in a slot line");
            Some(SlotLine {
                slot,
                association: association
                    .split_whitespace()
                    .map(|s| s.parse().expect("a server index"))
                    .collect(),
                gamma: gamma.split_whitespace().map(number).collect(),
                objective: number(objective),
            })
        })
        .collect()
}

#[test]
fn firmware_matches_the_host_replay() {
    require_tools();
    let root = root();
    let dir = crate::scratch_dir("firmware", "replay");
    std::fs::create_dir_all(&dir).expect("creating a scratch folder");

    // The committed trace is what `diten trace` records today.
    let trace = dir.join("trace.bin");
    let out = diten()
        .current_dir(&root)
        .arg("trace")
        .args(TRACE_ARGS)
        .arg("--out")
        .arg(&trace)
        .output()
        .expect("running diten trace");
    assert!(
        out.status.success(),
        "diten trace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = root.join("firmware-example/trace.bin");
    let committed_bytes = std::fs::read(&committed).expect("reading firmware-example/trace.bin");
    assert!(
        std::fs::read(&trace).expect("reading the new trace") == committed_bytes,
        "firmware-example/trace.bin is not what `diten trace {}` records: regenerate it \
         with `diten trace {} --out firmware-example/trace.bin`",
        TRACE_ARGS.join(" "),
        TRACE_ARGS.join(" ")
    );

    // The firmware, built in its own folder with its own config and lock file.
    // Under `timeout`, which stops cargo and QEMU together (its own process
    // group): a firmware whose stack outgrows its RAM runs into the statics and
    // hangs rather than faulting, and must fail this test, not stall the suite.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new("timeout")
        .args(["--kill-after=10", &FIRMWARE_TIMEOUT_S.to_string()])
        .arg(cargo)
        .args(["run", "--release", "--quiet"])
        .current_dir(root.join("firmware-example"))
        // The firmware's folder has its own target; a variable set for the host
        // build must not redirect it.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("running cargo run in firmware-example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(124),
        "the firmware ran past {FIRMWARE_TIMEOUT_S} s (a hang: is its stack peak over the \
         64 KiB of RAM? firmware-example/README.md):\n{stdout}\n{stderr}"
    );
    assert!(
        out.status.success(),
        "the firmware failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The host, with the improvement budget the firmware reports.
    let budget: usize = stdout
        .lines()
        .find_map(|l| l.split("improvement budget ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no improvement budget in the firmware's header:\n{stdout}"));
    // And the γ solver it reports (f32 on the M4F).
    let solver = stdout
        .lines()
        .find_map(|l| l.split("gamma solver ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no gamma solver in the firmware's header:\n{stdout}"))
        .to_owned();
    let policy = root.join("onnx-models/general/policy.bin");
    let host_replay = |budget: usize| {
        let out = diten()
            .arg("replay")
            .arg("--policy")
            .arg(&policy)
            .arg("--trace")
            .arg(&trace)
            .arg("--improve-budget")
            .arg(budget.to_string())
            .arg("--solver")
            .arg(&solver)
            .output()
            .expect("running diten replay");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "diten replay failed: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let (host_stdout, host_stderr) = host_replay(budget);
    let host = slot_lines(&host_stdout);

    let firmware = slot_lines(&stdout);
    // The shipped blob's signature was checked at boot, before the first slot.
    let blob_len = std::fs::metadata(&policy).expect("the general blob").len();
    // The version the signature file carries: header bytes 6..10, little endian
    // (SPEC's signature format; `tests/it/sign.rs` checks them with Python).
    let sig = std::fs::read(policy.with_extension("bin.sig")).expect("the blob's signature");
    let version = u32::from_le_bytes(sig[6..10].try_into().expect("a 114-byte signature"));
    assert!(
        stdout.contains(&format!(
            "signature: policy_version {version} of {blob_len} bytes verified in "
        )),
        "{stdout}"
    );
    // One `figures:` line per replay: budget 0, the default budget, and the
    // default budget under a deadline (which only QEMU's deterministic clock can
    // reproduce). The first two's mean objectives are the ones the host's replay
    // at that budget prints.
    let figures = figures_lines(&stdout);
    assert_eq!(
        figures.iter().map(|f| f.budget).collect::<Vec<_>>(),
        vec![0, budget, budget],
        "{stdout}"
    );
    assert!(
        stdout.contains("\"deadline_instructions\": "),
        "no deadline replay:\n{stdout}"
    );
    let (_, host_stderr_0) = host_replay(0);
    for (f, stderr) in figures.iter().zip([&host_stderr_0, &host_stderr]) {
        let host_mean: f64 = stderr
            .split("mean objective ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no mean objective in diten replay's stderr: {stderr}"));
        assert!(
            (f.objective_mean - host_mean).abs() <= 1e-6,
            "budget {}: firmware mean objective {} vs host {host_mean}",
            f.budget,
            f.objective_mean
        );
        assert!(f.instructions_mean > 0 && f.instructions_mean <= f.instructions_max);
        assert!(f.stack_bytes > 0 && f.stack_bytes <= 64 * 1024, "{stdout}");
    }

    assert_eq!(host.len(), 20, "host replay:\n{host:?}");
    assert_eq!(firmware.len(), host.len(), "firmware output:\n{stdout}");
    for (h, f) in host.iter().zip(&firmware) {
        assert_eq!(h.slot, f.slot);
        assert_eq!(h.association, f.association, "slot {}", h.slot);
        assert_eq!(h.gamma.len(), f.gamma.len(), "slot {}", h.slot);
        for (u, (a, b)) in h.gamma.iter().zip(&f.gamma).enumerate() {
            assert!(
                (a - b).abs() <= TOL,
                "slot {} gamma[{u}]: {a} vs {b}",
                h.slot
            );
        }
        assert!(
            (h.objective - f.objective).abs() <= TOL,
            "slot {} objective: {} vs {}",
            h.slot,
            h.objective,
            f.objective
        );
    }
}

/// One replay's `figures:` line (JSON).
#[derive(Debug)]
struct Figures {
    budget: usize,
    instructions_mean: u64,
    instructions_max: u64,
    stack_bytes: u64,
    objective_mean: f64,
}

/// The `figures: {…}` lines of the firmware's output, in order.
fn figures_lines(text: &str) -> Vec<Figures> {
    text.lines()
        .filter_map(|l| l.strip_prefix("figures: "))
        .map(|json| {
            let v: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("figures `{json}`: {e}"));
            let int = |k: &str| {
                v[k].as_u64()
                    .unwrap_or_else(|| panic!("figures `{json}`: no integer `{k}`"))
            };
            Figures {
                budget: int("budget") as usize,
                instructions_mean: int("instructions_mean"),
                instructions_max: int("instructions_max"),
                stack_bytes: int("stack_bytes"),
                objective_mean: v["objective_mean"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("figures `{json}`: no `objective_mean`")),
            }
        })
        .collect()
}

#[test]
fn figures_lines_parse() {
    let f = figures_lines(
        "slot 0: association [1] gamma [0.0] objective 0.1\nfigures: {\"budget\": 0, \
         \"instructions_mean\": 15, \"instructions_max\": 18, \"stack_bytes\": 46044, \
         \"objective_mean\": 0.111089080}\n",
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].budget, 0);
    assert_eq!(f[0].instructions_max, 18);
    assert_eq!(f[0].objective_mean, 0.111089080);
}

#[test]
fn slot_lines_parse() {
    let lines = slot_lines(
        "diten firmware: ...\nslot 0: association [3 1] gamma [0.000000000 1.000000000] \
         objective -0.125000000\nstack peak: 1 bytes\n",
    );
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].slot, 0);
    assert_eq!(lines[0].association, [3, 1]);
    assert_eq!(lines[0].gamma, [0.0, 1.0]);
    assert_eq!(lines[0].objective, -0.125);
}

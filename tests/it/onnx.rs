//! ONNX export, conversion and inference end to end: a tiny trained run (with and
//! without the skip layer) is exported and converted through `diten`, then three
//! independent evaluations of the same observations must agree within 1e-5:
//! tract-onnx running the exported graph, the controller's engine running the
//! blob, and the checkpoint's actor in plain Rust (`policy::trained::Mlp` after the
//! checkpoint's `RunningNorm`, in f64 where the others fold it into f32).
//! Broken models and observations are one-line errors.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use diten_controller::controller::workspace_len;
use diten_controller::obs::{obs_dim, OBS_LAYOUT};
use diten_controller::policy::{Engine, OnnxPolicy, Policy};
use diten_controller::{Controller, Params, Server, Slot, User};
use diten_trainer::policy::checkpoint::{load_norm, Loaded};
use prost::Message;
use serde_json::Value;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::{diten, ok};

const USERS: usize = 4;
const SERVERS: usize = 3;
const DIM: usize = obs_dim(USERS, SERVERS);
const LOGITS: usize = USERS * SERVERS;
/// Observations per comparison.
const BATCH: usize = 20;
/// The agreement SPEC §3.2 asks of every engine.
const TOL: f32 = 1e-5;

fn scratch(name: &str) -> PathBuf {
    let dir = crate::scratch_dir("onnx", name);
    std::fs::create_dir_all(&dir).expect("creating a scratch folder");
    dir
}

/// `out` failed with one line on stderr that mentions every needle.
#[track_caller]
fn fails(out: Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`{stderr}` should mention `{needle}`"
        );
    }
}

/// A trained run with its exports.
struct Run {
    dir: PathBuf,
    /// Written by `diten export`.
    onnx: PathBuf,
    /// Written by `diten convert` from `onnx`.
    blob: PathBuf,
}

/// The run without (`skip = false`) or with the stay prior, trained, exported and
/// converted once per test binary.
fn trained(skip: bool) -> &'static Run {
    static PLAIN: OnceLock<Run> = OnceLock::new();
    static SKIP: OnceLock<Run> = OnceLock::new();
    let cell = if skip { &SKIP } else { &PLAIN };
    cell.get_or_init(|| {
        let dir = scratch(if skip { "run-skip" } else { "run-plain" });
        let mut train = diten();
        train
            .arg("train")
            .args(["--users", "4", "--servers", "3", "--slots", "20"])
            .args(["--emd", "0.2", "--envs", "2", "--rollout", "16"])
            .args(["--iterations", "2", "--seed", "5", "--out"])
            .arg(&dir);
        if skip {
            train.args(["--stay-prior", "1.25"]);
        }
        ok(train.output().expect("running diten train"));
        let onnx = dir.join("exported.onnx");
        ok(diten()
            .args(["export", "--checkpoint"])
            .arg(&dir)
            .arg("--out")
            .arg(&onnx)
            .output()
            .expect("running diten export"));
        let blob = dir.join("out").join("policy.bin");
        ok(diten()
            .arg("convert")
            .arg(&onnx)
            .arg("--out")
            .arg(&blob)
            .output()
            .expect("running diten convert"));
        Run { dir, onnx, blob }
    })
}

/// xorshift64*: fixed-seed numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// `BATCH` observations, row after row: values in the ranges the observation's
/// scales give (most within [0, 2]), a few far outside to reach the clip.
fn observations() -> Vec<f32> {
    let mut rng = Rng(0x5eed_d17e);
    (0..BATCH * DIM)
        .map(|i| {
            if i % 37 == 0 {
                rng.uniform(-50.0, 50.0)
            } else {
                rng.uniform(0.0, 2.0)
            }
        })
        .collect()
}

/// The exported graph run by tract-onnx, all observations in one batch.
fn tract_logits(onnx: &Path, obs: &[f32]) -> Vec<f32> {
    let plan = tract_onnx::onnx()
        .model_for_path(onnx)
        .expect("tract reads the model")
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .expect("tract plans the model");
    let input = Tensor::from_shape(&[obs.len() / DIM, DIM], obs).expect("input tensor");
    let out = plan.run(tvec!(input.into_tvalue())).expect("tract runs");
    assert_eq!(out[0].shape(), [obs.len() / DIM, LOGITS]);
    let logits = out[0].to_plain_array_view::<f32>().expect("f32 logits");
    logits.iter().copied().collect()
}

/// The blob run by the controller's engine, observation by observation.
fn engine_logits(blob: &[u8], obs: &[f32]) -> Vec<f32> {
    let policy = Policy::parse(blob).expect("the blob parses");
    assert_eq!((policy.obs_dim(), policy.logits_len()), (DIM, LOGITS));
    let mut scratch = vec![0.0; policy.scratch_len()];
    let mut all = Vec::new();
    for row in obs.chunks_exact(DIM) {
        let mut logits = [0.0; LOGITS];
        policy
            .logits(row, &mut scratch, &mut logits)
            .expect("the engine runs");
        all.extend(logits);
    }
    all
}

/// The checkpoint's normaliser and actor in plain Rust.
fn checkpoint_logits(dir: &Path, obs: &[f32]) -> Vec<f32> {
    let loaded = Loaded::read(dir).expect("the checkpoint loads");
    let meta = loaded.meta().expect("meta");
    assert_eq!((meta.users, meta.servers), (USERS, SERVERS));
    let norm = load_norm("obs_norm", DIM, &|n| loaded.get(n)).expect("obs_norm");
    let actor = loaded.actor().expect("actor");
    let mut all = Vec::new();
    let mut out = Vec::new();
    for row in obs.chunks_exact(DIM) {
        let mut x = row.to_vec();
        norm.apply(&mut x);
        actor.forward(&x, &mut out);
        all.extend_from_slice(&out);
    }
    all
}

#[track_caller]
fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let (i, diff) = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold((0, 0.0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    assert!(
        diff <= TOL,
        "{what}: logits[{i}] differ by {diff} ({} vs {})",
        a[i],
        b[i]
    );
}

#[test]
fn tract_the_engine_and_the_checkpoint_agree() {
    let obs = observations();
    for skip in [false, true] {
        let run = trained(skip);
        let with_tract = tract_logits(&run.onnx, &obs);
        let blob = std::fs::read(&run.blob).expect("reading the blob");
        assert_eq!(
            Policy::parse(&blob).unwrap().model().prior.is_some(),
            skip,
            "stay prior"
        );
        let with_engine = engine_logits(&blob, &obs);
        let with_mlp = checkpoint_logits(&run.dir, &obs);
        assert!(with_mlp.iter().any(|v| v.abs() > 1e-3), "logits all ~0");
        let label = if skip { "skip" } else { "plain" };
        assert_close(
            &format!("{label}: tract vs engine"),
            &with_tract,
            &with_engine,
        );
        assert_close(
            &format!("{label}: tract vs checkpoint"),
            &with_tract,
            &with_mlp,
        );
        assert_close(
            &format!("{label}: engine vs checkpoint"),
            &with_engine,
            &with_mlp,
        );
    }
}

fn decode(path: &Path) -> pb::ModelProto {
    let bytes = std::fs::read(path).expect("reading the model");
    pb::ModelProto::decode(&bytes[..]).expect("the model decodes")
}

fn metadata(model: &pb::ModelProto, key: &str) -> String {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("metadata {key} missing"))
        .value
        .clone()
}

fn ops(model: &pb::ModelProto) -> Vec<&str> {
    let graph = model.graph.as_ref().expect("a graph");
    graph.node.iter().map(|n| n.op_type.as_str()).collect()
}

#[test]
fn train_exports_the_policy_and_the_metadata_names_the_run() {
    let run = trained(false);
    // `diten train` exported the same model as `diten export` did afterwards.
    let from_train = std::fs::read(run.dir.join("policy.onnx")).expect("train wrote policy.onnx");
    assert_eq!(from_train, std::fs::read(&run.onnx).unwrap());

    let model = decode(&run.onnx);
    assert_eq!(model.ir_version, 8);
    for (key, value) in [
        ("diten.format", "policy-v1"),
        ("diten.obs_layout", OBS_LAYOUT),
        ("diten.users", "4"),
        ("diten.servers", "3"),
        ("diten.algo", "ppo"),
        ("diten.seed", "5"),
        ("diten.evaluation", "none"),
    ] {
        assert_eq!(metadata(&model, key), value, "{key}");
    }
    let scenario = metadata(&model, "diten.scenario");
    assert!(
        scenario.contains("users = 4") && scenario.contains("servers = 3"),
        "{scenario}"
    );
    assert_eq!(
        ops(&model),
        ["Sub", "Mul", "Clip", "Gemm", "Tanh", "Gemm", "Tanh", "Gemm"]
    );
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, "obs");
    assert_eq!(graph.output[0].name, "logits");
    assert_eq!(
        ops(&decode(&trained(true).onnx))[8..],
        ["Gather", "Mul", "Add"],
        "the stay prior"
    );

    // An evaluation summary goes into the metadata as compact JSON.
    let dir = scratch("evaluation");
    let summary = dir.join("summary.json");
    std::fs::write(&summary, "{ \"objective\": 0.5,\n \"seeds\": [1, 2] }").unwrap();
    let out = dir.join("with-evaluation.onnx");
    ok(diten()
        .args(["export", "--checkpoint"])
        .arg(run.dir.join("checkpoint.ot"))
        .arg("--out")
        .arg(&out)
        .arg("--evaluation")
        .arg(&summary)
        .output()
        .unwrap());
    assert_eq!(
        metadata(&decode(&out), "diten.evaluation"),
        r#"{"objective":0.5,"seeds":[1,2]}"#
    );
}

fn infer(model: &Path, obs: &Path) -> Output {
    diten()
        .args(["infer", "--model"])
        .arg(model)
        .arg("--obs")
        .arg(obs)
        .output()
        .expect("running diten infer")
}

fn logits_of(stdout: &str) -> Vec<f32> {
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let json: Value = serde_json::from_str(stdout).expect("JSON on stdout");
    json["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

#[test]
fn infer_gives_the_same_logits_for_onnx_and_blob() {
    let obs = observations();
    let row = &obs[DIM..2 * DIM];
    for skip in [false, true] {
        let run = trained(skip);
        let dir = scratch(if skip { "infer-skip" } else { "infer-plain" });
        let file = dir.join("obs.json");
        std::fs::write(&file, serde_json::json!({ "obs": row }).to_string()).unwrap();
        let from_onnx = logits_of(&ok(infer(&run.onnx, &file)));
        let from_blob = logits_of(&ok(infer(&run.blob, &file)));
        assert_eq!(from_onnx.len(), LOGITS);
        assert_close("infer: onnx vs blob", &from_onnx, &from_blob);
        let blob = std::fs::read(&run.blob).unwrap();
        assert_close("infer vs engine", &from_blob, &engine_logits(&blob, row));
        assert_close("infer vs tract", &from_onnx, &tract_logits(&run.onnx, row));
    }
}

#[test]
fn broken_models_and_observations_are_one_line_errors() {
    let run = trained(false);
    let dir = scratch("broken");
    let obs = dir.join("obs.json");
    let zeros = vec![0.0f32; DIM];
    std::fs::write(&obs, serde_json::json!({ "obs": zeros }).to_string()).unwrap();
    let onnx = std::fs::read(&run.onnx).unwrap();

    // Cut in half, and random bytes.
    let half = dir.join("half.onnx");
    std::fs::write(&half, &onnx[..onnx.len() / 2]).unwrap();
    fails(infer(&half, &obs), &["half.onnx"]);
    let mut rng = Rng(42);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let random = dir.join("random.onnx");
    std::fs::write(&random, noise).unwrap();
    fails(infer(&random, &obs), &["random.onnx"]);
    let out = dir.join("never.bin");
    fails(
        diten()
            .arg("convert")
            .arg(&half)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap(),
        &["half.onnx"],
    );
    assert!(!out.exists(), "a failed convert wrote {}", out.display());

    // An operator the converter does not know.
    let mut model = decode(&run.onnx);
    let graph = model.graph.as_mut().unwrap();
    let tanh = graph.node.iter().position(|n| n.op_type == "Tanh").unwrap();
    graph.node[tanh].op_type = "Relu".to_owned();
    let relu = dir.join("relu.onnx");
    std::fs::write(&relu, model.encode_to_vec()).unwrap();
    let needle = format!("node {tanh} (`Relu`): operator not supported");
    fails(
        diten()
            .arg("convert")
            .arg(&relu)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap(),
        &["relu.onnx", &needle],
    );
    fails(infer(&relu, &obs), &["relu.onnx", &needle]);

    // A blob with one byte flipped in its payload.
    let mut blob = std::fs::read(&run.blob).unwrap();
    let at = blob.len() / 2;
    blob[at] ^= 0x10;
    let flipped = dir.join("flipped.bin");
    std::fs::write(&flipped, blob).unwrap();
    fails(infer(&flipped, &obs), &["flipped.bin", "blob"]);

    // Observations of the wrong length or beyond f32, a missing model.
    let short = dir.join("short.json");
    std::fs::write(&short, r#"{"obs": [0,0,0,0,0,0,0,0,0,0,0,0]}"#).unwrap();
    fails(
        infer(&run.blob, &short),
        &[
            "short.json",
            &format!("obs: 12 values, the model takes {DIM}"),
        ],
    );
    let mut huge = vec![0.0f64; DIM];
    huge[3] = 1e39;
    let big = dir.join("big.json");
    std::fs::write(&big, serde_json::json!({ "obs": huge }).to_string()).unwrap();
    fails(infer(&run.onnx, &big), &["big.json", "obs[3]"]);
    fails(infer(&dir.join("missing.onnx"), &obs), &["missing.onnx"]);
    fails(
        diten()
            .args(["export", "--checkpoint"])
            .arg(&obs)
            .arg("--out")
            .arg(dir.join("x.onnx"))
            .output()
            .unwrap(),
        &["obs.json"],
    );
}

#[test]
fn solve_decides_with_an_exported_policy() {
    let run = trained(false);
    let servers: Vec<Value> = [(10.0, 20.0), (60.0, 60.0), (110.0, 15.0)]
        .iter()
        .map(|&(x, y)| serde_json::json!({"x": x, "y": y, "p": 125.0, "q": 1450.0, "eps": 55.0}))
        .collect();
    let users: Vec<Value> = [
        (5.0, 5.0, Some(0)),
        (70.0, 50.0, Some(1)),
        (100.0, 30.0, None),
        (30.0, 90.0, Some(1)),
    ]
    .iter()
    .map(|&(x, y, prev)| {
        serde_json::json!({"x": x, "y": y, "emd": 0.2, "twin_bits": 4500.0,
                "data_bits": 784000.0, "prev_data_bits": 392000.0, "prev_server": prev})
    })
    .collect();
    let instance = serde_json::json!({"servers": servers, "users": users}).to_string();
    let solve = |model: &Path, instance: &str| {
        crate::run_with_stdin(
            diten()
                .args(["solve", "--instance", "-", "--policy"])
                .arg(model),
            instance,
        )
    };
    let by_onnx: Value = serde_json::from_str(&ok(solve(&run.onnx, &instance))).unwrap();
    let by_blob: Value = serde_json::from_str(&ok(solve(&run.blob, &instance))).unwrap();
    assert_eq!(
        by_onnx, by_blob,
        "the ONNX file and its blob decide differently"
    );
    let association = by_onnx["association"].as_array().expect("association");
    assert_eq!(association.len(), 4);
    assert!(association
        .iter()
        .all(|s| s.as_u64().is_some_and(|s| s < 3)));
    assert_eq!(by_onnx["feasible"], Value::Bool(true));
    // The decided association, given back explicitly, solves to the same slot.
    let mut given: Value = serde_json::from_str(&instance).unwrap();
    given["association"] = by_onnx["association"].clone();
    let out = crate::run_with_stdin(
        diten().args(["solve", "--instance", "-"]),
        &given.to_string(),
    );
    let again: Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(again, by_onnx);
}

/// Slots of `USERS` users and `SERVERS` servers with the SPEC's value ranges, from
/// a fixed xorshift stream.
fn slots(count: usize) -> Vec<(Vec<Server>, Vec<User>)> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut unit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let servers: Vec<Server> = (0..SERVERS)
                .map(|_| Server {
                    x: 120.0 * unit(),
                    y: 120.0 * unit(),
                    p: 120.0 + 30.0 * unit(),
                    q: 1400.0 + 100.0 * unit(),
                    eps: 54.0 + 2.0 * unit(),
                    available: true,
                })
                .collect();
            let users: Vec<User> = (0..USERS)
                .map(|_| User {
                    x: 120.0 * unit(),
                    y: 120.0 * unit(),
                    emd: 0.2,
                    twin_bits: 4400.0 + 200.0 * unit(),
                    data_bits: 784.0 * (200.0 + 1800.0 * unit()).floor(),
                    prev_data_bits: 784.0 * (200.0 + 1800.0 * unit()).floor(),
                    prev_server: Some(((unit() * SERVERS as f64) as usize).min(SERVERS - 1)),
                })
                .collect();
            (servers, users)
        })
        .collect()
}

#[test]
fn the_onnx_engine_drives_the_same_decisions_as_the_blob() {
    let obs = observations();
    for skip in [false, true] {
        let run = trained(skip);
        let onnx = OnnxPolicy::load(&run.onnx).expect("the ONNX policy loads");
        assert_eq!((onnx.users(), onnx.servers()), (USERS, SERVERS));
        // Its logits against the checkpoint's plain-Rust actor.
        let mut with_onnx = Vec::new();
        for row in obs.chunks_exact(DIM) {
            let mut logits = [0.0f32; LOGITS];
            onnx.logits(row, &mut [], &mut logits).expect("tract runs");
            with_onnx.extend(logits);
        }
        assert_close(
            "onnx engine vs checkpoint",
            &with_onnx,
            &checkpoint_logits(&run.dir, &obs),
        );

        // The same decision loop, driven by either engine.
        let blob = std::fs::read(&run.blob).expect("reading the blob");
        let policy = Policy::parse(&blob).expect("the blob parses");
        let mut ws_blob = vec![0.0f32; workspace_len(&policy)];
        let mut ws_onnx = vec![0.0f32; workspace_len(&onnx)];
        let mut by_blob: Controller<'_, '_, USERS, SERVERS> =
            Controller::new(policy, Params::default(), &mut ws_blob).expect("controller");
        let mut by_onnx: Controller<'_, '_, USERS, SERVERS, OnnxPolicy> =
            Controller::new(onnx, Params::default(), &mut ws_onnx).expect("controller");
        for (i, (servers, users)) in slots(25).iter().enumerate() {
            let slot = Slot::new(servers, users).expect("a valid slot");
            let a = by_blob.decide(&slot).expect("blob decision");
            let b = by_onnx.decide(&slot).expect("onnx decision");
            assert_eq!(a.association, b.association, "slot {i}");
            assert!(
                (a.evaluation.objective - b.evaluation.objective).abs() < 1e-9,
                "slot {i}: objective {} vs {}",
                a.evaluation.objective,
                b.evaluation.objective
            );
            assert_close(
                &format!("slot {i} logits"),
                by_blob.logits(),
                by_onnx.logits(),
            );
        }
    }
}

#[test]
fn the_onnx_engine_names_what_is_wrong() {
    let dir = scratch("onnx-engine-errors");
    let missing = dir.join("missing.onnx");
    let err = OnnxPolicy::load(&missing).expect_err("no file").to_string();
    assert!(
        err.starts_with(&format!("{}: cannot read", missing.display())),
        "{err}"
    );

    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07not a protobuf at all\xff\xff").expect("writing");
    let err = OnnxPolicy::load(&garbage).expect_err("garbage").to_string();
    assert!(err.starts_with(&garbage.display().to_string()), "{err}");

    let mut model = decode(&trained(false).onnx);
    model.metadata_props.retain(|p| p.key != "diten.obs_layout");
    let err = OnnxPolicy::load_bytes(&model.encode_to_vec(), Path::new("m.onnx"))
        .expect_err("no layout")
        .to_string();
    assert_eq!(
        err,
        "m.onnx: metadata diten.obs_layout: missing (not a policy exported by diten)"
    );

    let mut model = decode(&trained(false).onnx);
    for p in &mut model.metadata_props {
        if p.key == "diten.servers" {
            p.value = "5".into();
        }
    }
    let err = OnnxPolicy::load_bytes(&model.encode_to_vec(), Path::new("m.onnx"))
        .expect_err("wrong servers")
        .to_string();
    assert!(err.starts_with("m.onnx: "), "{err}");
}

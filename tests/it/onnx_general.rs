//! The size-agnostic policy as ONNX (SPEC §3.2a): the shipped `policy.onnx` run by
//! tract (the controller's `OnnxGeneralPolicy`) against the shipped blob run by
//! the controller's own engine on random slots of many shapes, the decision
//! loop with either engine, and the errors of a wrong graph or slot. The
//! onnxruntime side is python/tests/test_onnx_general.py.

use std::path::{Path, PathBuf};

use diten_controller::policy::general::GeneralPolicy;
use diten_controller::policy::{Engine, OnnxGeneralPolicy};
use diten_controller::{Controller, CostNorm, Params, Server, Slot, User};
use prost::Message;
use tract_onnx::pb;

use crate::{diten, ok, one_line_error};

type Big = Slot<64, 32>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// splitmix64: the slots need no more than a reproducible stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The servers and users of a slot of `n` users and `m` servers in the ranges
/// of SPEC §2, some users joined, some servers down.
fn parts(rng: &mut Rng, n: usize, m: usize) -> (Vec<Server>, Vec<User>) {
    let servers: Vec<Server> = (0..m)
        .map(|_| Server {
            x: rng.range(0.0, 120.0),
            y: rng.range(0.0, 120.0),
            p: rng.range(120.0, 150.0),
            q: rng.range(1400.0, 1500.0),
            eps: rng.range(54.0, 56.0),
            available: m == 1 || rng.unit() > 0.15,
        })
        .collect();
    let emd = [0.0, 0.2, 0.4, 0.6][rng.below(4)];
    let users: Vec<User> = (0..n)
        .map(|_| User {
            x: rng.range(0.0, 120.0),
            y: rng.range(0.0, 120.0),
            emd,
            twin_bits: rng.range(4000.0, 5000.0),
            data_bits: rng.range(1.5e5, 1.6e6),
            prev_data_bits: rng.range(1.5e5, 1.6e6),
            prev_server: (rng.unit() > 0.2).then(|| rng.below(m)),
        })
        .collect();
    (servers, users)
}

/// [`parts`] as a slot.
fn slot(rng: &mut Rng, n: usize, m: usize) -> Big {
    let (servers, users) = parts(rng, n, m);
    Slot::new(&servers, &users).expect("a valid slot")
}

/// Every shape the tests run: the corners and a spread in between.
fn shapes(rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut shapes = vec![
        (1, 1),
        (1, 32),
        (64, 1),
        (64, 32),
        (10, 9),
        (20, 21),
        (30, 15),
    ];
    shapes.extend((0..25).map(|_| (1 + rng.below(64), 1 + rng.below(32))));
    shapes
}

#[test]
fn tract_gives_the_engines_base_logits_and_the_same_decisions() {
    for (dir, cost_norm) in [
        ("general", CostNorm::Paper),
        ("general-linear", CostNorm::Linear),
    ] {
        let folder = root().join("onnx-models").join(dir);
        let blob = read(&folder.join("policy.bin"));
        let engine = GeneralPolicy::parse(&blob).unwrap();
        let onnx = OnnxGeneralPolicy::load(&folder.join("policy.onnx"))
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(onnx.decoder(), engine.model().decoder_weights());
        assert_eq!(Engine::cost_norm(&onnx), cost_norm);
        let params = Params {
            cost_norm,
            ..Params::default()
        };
        let mut rng = Rng(17);
        let (mut worst, mut decisions, mut compared) = (0.0f32, 0, 0);
        for (n, m) in shapes(&mut rng) {
            let slot = slot(&mut rng, n, m);
            let mut scratch = vec![0.0; engine.scratch_len(n, m)];
            let mut want = vec![0.0; n * m];
            engine
                .base_logits(&params, &slot, &mut scratch, &mut want)
                .unwrap();
            let mut got = vec![0.0; n * m];
            onnx.base_logits(&params, &slot, &mut got).unwrap();
            // Within 1e-5 of the slot's scale, its largest |logit| (at least
            // 1): the two sum the same terms in other orders, and a logit near 0
            // can be the difference of terms of the slot's size, so its
            // rounding is of that size, not its own (f32 has about 1e-5 of
            // absolute resolution, a few ulps, at the RL-tuned logits' ±80).
            let scale = want.iter().fold(1.0f32, |a, w| a.max(w.abs()));
            for (g, w) in got.iter().zip(&want) {
                let err = (g - w).abs() / scale;
                worst = worst.max(err);
                assert!(
                    err <= 1e-5,
                    "{dir} {n}x{m}: tract {g}, engine {w} (scale {scale})"
                );
            }
            // Decoded: the same masks, the same values within the same bound
            // relative to the slot's scale or the value, the larger (the −1e4
            // penalty of a server the user does not fit rounds at 1e-3 in f32).
            let (mut dec_engine, mut dec_onnx) = (vec![0.0; n * m], vec![0.0; n * m]);
            engine
                .slot_logits(&params, &slot, &mut scratch, &mut dec_engine)
                .unwrap();
            onnx.slot_logits(&params, &slot, &mut [], &mut dec_onnx)
                .unwrap();
            for (g, w) in dec_onnx.iter().zip(&dec_engine) {
                assert!(
                    g == w || (g - w).abs() <= 1e-5 * w.abs().max(scale),
                    "{dir} {n}x{m}: decoded {g} vs {w}"
                );
            }
            // The decision loop: the same association, unless the decoder met a
            // near tie (two servers within the engines' difference).
            let near_tie = dec_engine.chunks(m).any(|row| {
                let mut r: Vec<f32> = row.iter().copied().filter(|v| v.is_finite()).collect();
                r.sort_by(|a, b| b.total_cmp(a));
                r.len() > 1 && r[0] - r[1] < 1e-4
            });
            let mut ws = vec![0.0; Controller::<64, 32, GeneralPolicy>::workspace_len(&engine)];
            let by_blob = Controller::<64, 32, _>::new(engine, params, &mut ws)
                .unwrap()
                .decide(&slot)
                .unwrap()
                .association
                .to_vec();
            let mut ws = vec![0.0; Controller::<64, 32, OnnxGeneralPolicy>::workspace_len(&onnx)];
            let by_onnx = Controller::<64, 32, _>::new(onnx.clone(), params, &mut ws)
                .unwrap()
                .decide(&slot)
                .unwrap()
                .association
                .to_vec();
            if !near_tie {
                compared += 1;
                assert_eq!(by_onnx, by_blob, "{dir} {n}x{m}");
            }
            decisions += usize::from(by_onnx == by_blob);
        }
        eprintln!(
            "{dir}: max |tract - engine| / max(1, max |logit| of the slot) = {worst:e} over {} shapes; {decisions} equal \
             decisions, {compared} without a near tie",
            shapes(&mut Rng(17)).len()
        );
        assert!(
            compared >= 20,
            "{dir}: too many near ties ({compared} compared)"
        );
    }
}

/// The shipped general ONNX model, edited by `edit`, as bytes.
fn edited(edit: impl FnOnce(&mut pb::ModelProto)) -> Vec<u8> {
    let bytes = read(&root().join("onnx-models/general/policy.onnx"));
    let mut model = pb::ModelProto::decode(&bytes[..]).unwrap();
    edit(&mut model);
    model.encode_to_vec()
}

#[track_caller]
fn refused(bytes: &[u8], needle: &str) {
    let err = OnnxGeneralPolicy::load_bytes(bytes, Path::new("edited.onnx"))
        .expect_err("should be refused")
        .to_string();
    assert!(err.contains(needle), "`{err}` should mention `{needle}`");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn a_wrong_graph_or_metadata_is_named() {
    let set_dim = |input: usize, dims: Vec<i64>| {
        move |m: &mut pb::ModelProto| {
            let g = m.graph.as_mut().unwrap();
            let Some(pb::type_proto::Value::TensorType(t)) =
                g.input[input].r#type.as_mut().unwrap().value.as_mut()
            else {
                panic!("a tensor input");
            };
            let shape = t.shape.as_mut().unwrap();
            let keep: Vec<_> = shape.dim[..shape.dim.len() - 1].to_vec();
            shape.dim = keep;
            for d in dims {
                shape.dim.push(pb::tensor_shape_proto::Dimension {
                    denotation: String::new(),
                    value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                });
            }
        }
    };
    // The pairs' width: tract's MatMul check or ours, either way named.
    refused(&edited(set_dim(2, vec![7])), "pairs");
    // The users' rank.
    refused(&edited(set_dim(0, vec![1, 5])), "users");
    refused(
        &edited(|m| m.graph.as_mut().unwrap().input.swap(0, 1)),
        "graph input 0 is `servers`, expected `users`",
    );
    let set = |key: &'static str, value: &'static str| {
        move |m: &mut pb::ModelProto| {
            for p in &mut m.metadata_props {
                if p.key == key {
                    p.value = value.to_owned();
                }
            }
        }
    };
    refused(
        &edited(set("diten.format", "policy-v1")),
        "metadata diten.format: `policy-v1`, this engine reads `policy-v2`",
    );
    refused(
        &edited(set("diten.obs_layout", "diten-obs-v1")),
        "metadata diten.obs_layout: `diten-obs-v1`",
    );
    refused(
        &edited(set("diten.decoder", "1,2")),
        "metadata diten.decoder: `1,2` is not 5 comma-separated f32",
    );
    refused(
        &edited(|m| m.metadata_props.retain(|p| p.key != "diten.decoder")),
        "metadata diten.decoder: missing",
    );
}

/// A slot of `n` users and `m` servers as SPEC §3.1's JSON.
fn instance(rng: &mut Rng, n: usize, m: usize) -> String {
    let (servers, users) = parts(rng, n, m);
    let servers: Vec<String> = servers
        .iter()
        .map(|s| {
            format!(
                r#"{{"x": {}, "y": {}, "p": {}, "q": {}, "eps": {}, "available": {}}}"#,
                s.x, s.y, s.p, s.q, s.eps, s.available
            )
        })
        .collect();
    let users: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                r#"{{"x": {}, "y": {}, "emd": {}, "twin_bits": {}, "data_bits": {}, "prev_data_bits": {}, "prev_server": {}}}"#,
                u.x,
                u.y,
                u.emd,
                u.twin_bits,
                u.data_bits,
                u.prev_data_bits,
                u.prev_server.map_or("null".to_owned(), |p| p.to_string())
            )
        })
        .collect();
    format!(
        r#"{{"servers": [{}], "users": [{}]}}"#,
        servers.join(", "),
        users.join(", ")
    )
}

#[test]
fn infer_instance_prints_the_inputs_and_the_engines_logits() {
    let dir = crate::scratch_dir("onnx_general", "infer");
    std::fs::create_dir_all(&dir).unwrap();
    let model = root().join("onnx-models/general/policy.onnx");
    let blob = read(&root().join("onnx-models/general/policy.bin"));
    let engine = GeneralPolicy::parse(&blob).unwrap();
    let mut rng = Rng(5);
    let (n, m) = (7, 5);
    let text = instance(&mut rng, n, m);
    let path = dir.join("slot.json");
    std::fs::write(&path, &text).unwrap();
    let out: serde_json::Value = serde_json::from_str(&ok(diten()
        .args(["infer", "--model"])
        .arg(&model)
        .arg("--instance")
        .arg(&path)
        .output()
        .unwrap()))
    .unwrap();
    let shape = |v: &serde_json::Value| {
        let mut dims = Vec::new();
        let mut v = v;
        while let Some(a) = v.as_array() {
            dims.push(a.len());
            v = &a[0];
        }
        dims
    };
    assert_eq!(shape(&out["inputs"]["users"]), [n, 5]);
    assert_eq!(shape(&out["inputs"]["servers"]), [m, 1]);
    assert_eq!(shape(&out["inputs"]["pairs"]), [n, m, 6]);
    assert_eq!(shape(&out["logits"]), [n, m]);
    assert_eq!(shape(&out["decoded"]), [n, m]);
    // The printed logits are the engine's base logits, f32 for f32.
    let slot = slot(&mut Rng(5), n, m);
    let mut scratch = vec![0.0; engine.scratch_len(n, m)];
    let mut base = vec![0.0; n * m];
    engine
        .base_logits(&Params::default(), &slot, &mut scratch, &mut base)
        .unwrap();
    let printed: Vec<f32> = out["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    assert_eq!(printed, base);

    // A policy-v1 model, too many servers, --obs and --instance together.
    let flat = root().join("onnx-models/u20-s15/policy.bin");
    one_line_error(
        diten()
            .args(["infer", "--model"])
            .arg(&flat)
            .arg("--instance")
            .arg(&path)
            .output()
            .unwrap(),
        "is a policy-v1 model (fixed users and servers); give it --obs",
    );
    let wide = dir.join("wide.json");
    std::fs::write(&wide, instance(&mut rng, 2, 33)).unwrap();
    one_line_error(
        diten()
            .args(["infer", "--model"])
            .arg(&model)
            .arg("--instance")
            .arg(&wide)
            .output()
            .unwrap(),
        "33",
    );
    let both = diten()
        .args(["infer", "--model"])
        .arg(&model)
        .arg("--instance")
        .arg(&path)
        .arg("--obs")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!both.status.success());
}

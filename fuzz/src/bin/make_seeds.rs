//! Writes the committed seed corpora under `fuzz/corpus/<target>/`:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin make-seeds` (from the
//! repository root; deterministic, so rerunning changes nothing).

use std::fs;
use std::path::Path;

use diten_fuzz::{decide_blob, RawPolicy, StatusWriter};
use diten_trainer::onnx::{model_proto, Network};
use diten_trainer::policy::trained::{Dense, Mlp};
use diten_trainer::train::norm::RunningNorm;
use prost::Message;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus folder");
    fs::write(dir.join(name), bytes).expect("seed file");
}

fn dense(l: &diten_fuzz::RawLayer) -> Dense {
    Dense {
        inputs: l.inputs,
        outputs: l.outputs,
        weight: l.weight.clone(),
        bias: l.bias.clone(),
    }
}

/// The exporter's ONNX model of `raw` (norm mean and variance from its folded form).
fn onnx(raw: &RawPolicy) -> Vec<u8> {
    let mut actor = Mlp::new(raw.layers.iter().map(dense).collect()).expect("layers fit");
    if let Some(skip) = &raw.skip {
        actor = actor.with_skip(dense(skip)).expect("skip fits");
    }
    let norm = RunningNorm {
        mean: raw.mean.iter().map(|&m| f64::from(m)).collect(),
        var: raw
            .inv_std
            .iter()
            .map(|&s| 1.0 / (f64::from(s) * f64::from(s)))
            .collect(),
        count: 100.0,
    };
    let net = Network::new(raw.users, raw.servers, norm, actor).expect("network");
    let meta = [("diten.seed".to_owned(), "7".to_owned())];
    model_proto(&net, &meta).expect("model").encode_to_vec()
}

fn main() {
    // blob: real blobs of a few shapes, one followed by observation bytes.
    let small = RawPolicy::random(1, 1, 1, 3, true, 1);
    write("blob", "u1-s1-skip", &small.blob());
    write(
        "blob",
        "u3-s2",
        &RawPolicy::random(3, 2, 1, 8, false, 2).blob(),
    );
    write(
        "blob",
        "u2-s3-deep",
        &RawPolicy::random(2, 3, 2, 5, true, 3).blob(),
    );
    let mut with_obs = small.blob();
    for i in 0..11 {
        with_obs.extend_from_slice(&(0.25 * i as f32 - 1.0).to_le_bytes());
    }
    write("blob", "u1-s1-obs", &with_obs);
    write("blob", "u4-s3-decide", &decide_blob(4, 3));

    // convert: ONNX models written by the exporter.
    write("convert", "u1-s1-skip.onnx", &onnx(&small));
    write(
        "convert",
        "u2-s2.onnx",
        &onnx(&RawPolicy::random(2, 2, 1, 4, false, 4)),
    );
    write(
        "convert",
        "u2-s3-deep.onnx",
        &onnx(&RawPolicy::random(2, 3, 2, 5, true, 5)),
    );

    // decide: statuses (see the crate docs for the format).
    let mut w = StatusWriter::new(1, 1, 0);
    // SPEC §3.1's slot: server (10, 20), p 125, q 1450, eps 55; user (3, 4).
    w.scaled(10.0 / 120.0)
        .scaled(20.0 / 120.0)
        .scaled(5.0 / 30.0)
        .scaled(0.5)
        .scaled(0.5);
    w.scaled(3.0 / 120.0)
        .scaled(4.0 / 120.0)
        .scaled(0.2 / 0.6)
        .scaled(0.5);
    w.raw(784_000.0).raw(392_000.0).byte(0);
    write("decide", "spec-slot", &w.0);

    let spread = |i: usize, n: usize| (i as f64 + 0.5) / n as f64;
    for (name, servers, users, flags, load) in [
        ("u4-s3", 3u8, 4u8, 0u8, 0.3),
        ("u6-s4-heavy", 4, 6, 0, 1.0),
        ("u8-s8", 8, 8, 0, 0.5),
        ("u5-s2-params", 2, 5, 1, 0.6),
    ] {
        let mut w = StatusWriter::new(servers, users, flags);
        for s in 0..usize::from(servers) {
            let f = spread(s, usize::from(servers));
            w.scaled(f)
                .scaled(1.0 - f)
                .scaled(f)
                .scaled(1.0 - f)
                .scaled(0.5);
        }
        for u in 0..usize::from(users) {
            let f = spread(u, usize::from(users));
            w.scaled(1.0 - f).scaled(f * f).scaled(f).scaled(0.5);
            w.scaled(load * f).scaled(load * (1.0 - f));
            // First user: no previous server; the others: one each, in turn.
            w.byte(if u == 0 {
                0xFF
            } else {
                (u % usize::from(servers)) as u8
            });
        }
        if flags & 1 != 0 {
            // Two overrides: beta1 (index 6) at 0.9, n_cmp (index 11) at 0.75 of 2e-7.
            w.byte(2).byte(6).scaled(0.9).byte(11).scaled(0.75);
        }
        write("decide", name, &w.0);
    }
}

//! `tract/u20_s21`: tract-onnx running a policy exported by diten (inference only,
//! one observation) for 20 users and 21 servers, hidden 128-128 — the same shape as
//! `decide/u20_s21` in diten-controller, which runs the whole per-slot decision.
//! Compare the two medians from one `make bench` run.
//!
//! `tract/general_u20_s21`: tract-onnx running the shipped size-agnostic policy
//! (`onnx-models/general/policy.onnx`, through `OnnxGeneralPolicy::base_logits`:
//! its inputs built by `general_inputs`, the graph run, no decoding) on a slot of
//! 20 users and 21 servers — beside `policy/general_u20_s21` and
//! `decide/general_u20_s21_budget0` in diten-controller.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use diten_controller::obs::obs_dim;
use diten_trainer::onnx::export::{model_proto, Network};
use diten_trainer::policy::norm::RunningNorm;
use diten_trainer::policy::trained::{Dense, Mlp};
use prost::Message;
use tract_onnx::prelude::*;

const USERS: usize = 20;
const SERVERS: usize = 21;
const HIDDEN: usize = 128;

/// xorshift64*, uniform in [lo, hi).
struct Rng(u64);
impl Rng {
    fn range(&mut self, lo: f64, hi: f64) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        (lo + (hi - lo) * u) as f32
    }
}

fn network() -> Network {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let dim = obs_dim(USERS, SERVERS);
    let widths = [dim, HIDDEN, HIDDEN, USERS * SERVERS];
    let layers = widths
        .windows(2)
        .map(|w| {
            let scale = 1.0 / (w[0] as f64).sqrt();
            Dense {
                inputs: w[0],
                outputs: w[1],
                weight: (0..w[0] * w[1]).map(|_| rng.range(-scale, scale)).collect(),
                bias: (0..w[1]).map(|_| rng.range(-0.1, 0.1)).collect(),
            }
        })
        .collect();
    let actor = Mlp::new(layers).expect("consistent layers");
    Network::new(USERS, SERVERS, RunningNorm::new(dim), actor).expect("consistent network")
}

fn bench(c: &mut Criterion) {
    let proto = model_proto(&network(), &[]).expect("an ONNX model");
    let bytes = proto.encode_to_vec();
    let dim = obs_dim(USERS, SERVERS);
    let model = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .and_then(|m| m.with_input_fact(0, f32::fact([1, dim]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract loads the exported model");
    let mut rng = Rng(42);
    let obs: Vec<f32> = (0..dim).map(|_| rng.range(0.0, 1.5)).collect();
    let input: Tensor = tract_ndarray::Array2::from_shape_vec((1, dim), obs)
        .expect("shape")
        .into();
    c.bench_function("tract/u20_s21", |b| {
        b.iter(|| {
            let out = model
                .run(tvec!(black_box(input.clone()).into()))
                .expect("tract runs");
            black_box(out);
        })
    });
}

fn bench_general(c: &mut Criterion) {
    use diten_controller::policy::OnnxGeneralPolicy;
    use diten_trainer::scenario::Scenario;
    use diten_trainer::sim::Env;

    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../onnx-models/general/policy.onnx");
    let policy = OnnxGeneralPolicy::load(&path).expect("the shipped general ONNX loads");
    let sc = Scenario {
        users: USERS,
        servers: SERVERS,
        ..Scenario::default()
    };
    let env = Env::new(&sc, 7).expect("a slot");
    let mut out = vec![0.0f32; USERS * SERVERS];
    c.bench_function("tract/general_u20_s21", |b| {
        b.iter(|| {
            policy
                .base_logits(&sc.params, black_box(env.status()), &mut out)
                .expect("tract runs");
            black_box(&out);
        })
    });
}

criterion_group!(benches, bench, bench_general);
criterion_main!(benches);

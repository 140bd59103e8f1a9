//! `decide/u20_s21`: the whole per-slot decision (observation, a 1424-128-128-420
//! policy with random weights, association repair, γ solver, evaluation) on slots of
//! 20 users and 21 servers built as in `gamma/u20_s21` (default draws, users spread
//! over nearby servers, about one in five migrating), with the controller's default
//! improvement budget; `decide/u20_s21_unimproved`, the same with the improvement
//! off; `decide/u20_s21_unconsolidated`, with the consolidation off too (the
//! policy alone); and `policy/u20_s21`, the policy's forward pass alone.
//! `policy/general_u20_s21` and `decide/general_u20_s21{,_budget0}{,_f32}` are
//! the same for the shipped size-agnostic policy (`onnx-models/general/policy.bin`,
//! trained weights): its forward pass and sequential decoding (`_network`: the
//! network's scores alone, before the decoding), and the whole
//! decision at the default budget and at budget 0, with the exact and the f32 γ
//! solver.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use diten_controller::controller::DEFAULT_IMPROVEMENT_BUDGET;
use diten_controller::obs::obs_dim;
use diten_controller::policy::{
    encode, encoded_len, F32Le, GeneralPolicy, LayerRef, ModelRef, Policy,
};
use diten_controller::{Controller, GammaSolver, Params, RepairOutcome, Slot};

const USERS: usize = 20;
const SERVERS: usize = 21;
const HIDDEN: usize = 128;

mod common;

use common::Rng;

/// The slot of `gamma/u20_s21`'s instance `seed` (its association is not needed:
/// the policy decides).
fn status(seed: u64) -> Slot<USERS, SERVERS> {
    common::instance(seed).0
}

fn le(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

/// A policy obs_dim → 128 → 128 → U·S with uniform random weights (scale
/// 1/√inputs), biases in ±0.1, identity normalisation, no skip layer.
fn policy_blob(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let dim = obs_dim(USERS, SERVERS);
    let widths = [dim, HIDDEN, HIDDEN, USERS * SERVERS];
    let layers: Vec<(Vec<u8>, Vec<u8>)> = widths
        .windows(2)
        .map(|w| {
            let scale = 1.0 / (w[0] as f64).sqrt();
            let weight = le((0..w[0] * w[1]).map(|_| rng.range(-scale, scale) as f32));
            let bias = le((0..w[1]).map(|_| rng.range(-0.1, 0.1) as f32));
            (weight, bias)
        })
        .collect();
    let refs: Vec<LayerRef<'_>> = widths
        .windows(2)
        .zip(&layers)
        .map(|(w, (weight, bias))| LayerRef {
            inputs: w[0] as u32,
            outputs: w[1] as u32,
            weight: F32Le::new(weight),
            bias: F32Le::new(bias),
        })
        .collect();
    let mean = le((0..dim).map(|_| 0.0));
    let inv_std = le((0..dim).map(|_| 1.0));
    let model = ModelRef {
        users: USERS,
        servers: SERVERS,
        norm_mean: F32Le::new(&mean),
        norm_inv_std: F32Le::new(&inv_std),
        layers: &refs,
        skip: None,
        prior: None,
        cost_norm: diten_controller::CostNorm::Paper,
    };
    let mut blob = vec![0u8; encoded_len(&model).expect("valid model")];
    encode(&model, &mut blob).expect("encodes");
    blob
}

fn bench(c: &mut Criterion) {
    let blob = policy_blob(7);
    let policy = Policy::parse(&blob).expect("parses");
    let mut workspace = vec![0.0f32; Controller::<USERS, SERVERS>::workspace_len(&policy)];
    let mut controller: Controller<'_, '_, USERS, SERVERS> =
        Controller::new(policy, Params::default(), &mut workspace).expect("controller");
    let statuses: Vec<Slot<USERS, SERVERS>> = (0..64).map(status).collect();

    // What the repair does on these slots (printed once, for the README).
    let mut outcomes = [0usize; 4];
    let (mut moved, mut nodes, mut emptied, mut solves) = (0, 0, 0, 0);
    for s in &statuses {
        let d = controller.decide(s).expect("decides");
        let i = match d.repair {
            RepairOutcome::Clean => 0,
            RepairOutcome::Repaired => 1,
            RepairOutcome::Infeasible => 2,
            _ => 3,
        };
        outcomes[i] += 1;
        moved += d.moved;
        nodes += d.search_nodes;
        emptied += d.emptied;
        solves += d.improve_solves;
    }
    eprintln!(
        "decide/u20_s21 over {} slots: clean {}, repaired {}, infeasible {}, bound {}; \
         {moved} users moved, {nodes} search nodes, {emptied} servers emptied, {solves} \
         improvement solves in all",
        statuses.len(),
        outcomes[0],
        outcomes[1],
        outcomes[2],
        outcomes[3]
    );

    // The policy's forward pass alone (observation to logits), for the share of
    // the decision it takes.
    let policy = controller.policy().clone();
    let mut scratch = vec![0.0f32; policy.scratch_len()];
    let mut logits = vec![0.0f32; policy.logits_len()];
    let mut obs = vec![0.0f32; policy.obs_dim()];
    diten_controller::obs::observe(&statuses[0], &mut obs).expect("observes");
    c.bench_function("policy/u20_s21", |b| {
        b.iter(|| {
            policy
                .logits(black_box(&obs), &mut scratch, &mut logits)
                .expect("runs");
            black_box(&logits);
        })
    });

    let mut group = c.benchmark_group("decide");
    for (name, consolidate, budget) in [
        ("u20_s21", true, DEFAULT_IMPROVEMENT_BUDGET),
        ("u20_s21_unimproved", true, 0),
        ("u20_s21_unconsolidated", false, 0),
    ] {
        controller.set_consolidation(consolidate);
        controller.set_improvement_budget(budget);
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let s = &statuses[i % statuses.len()];
                i += 1;
                controller.decide(black_box(s)).expect("decides")
            })
        });
    }
    group.finish();

    // The shipped size-agnostic policy on the same slots.
    let blob: &[u8] = include_bytes!("../../onnx-models/general/policy.bin");
    let general = GeneralPolicy::parse(blob).expect("the shipped general policy parses");
    let params = Params::default();
    let mut scratch = vec![0.0f32; general.scratch_len(USERS, SERVERS)];
    let mut logits = vec![0.0f32; USERS * SERVERS];
    c.bench_function("policy/general_u20_s21", |b| {
        b.iter(|| {
            general
                .logits(&params, black_box(&statuses[0]), &mut scratch, &mut logits)
                .expect("runs");
            black_box(&logits);
        })
    });
    c.bench_function("policy/general_u20_s21_network", |b| {
        b.iter(|| {
            general
                .base_logits(&params, black_box(&statuses[0]), &mut scratch, &mut logits)
                .expect("runs");
            black_box(&logits);
        })
    });
    let mut workspace =
        vec![0.0f32; Controller::<USERS, SERVERS, GeneralPolicy<'_>>::workspace_len(&general)];
    let mut controller: Controller<'_, '_, USERS, SERVERS, GeneralPolicy<'_>> =
        Controller::new(general, params, &mut workspace).expect("controller");
    // Budget 0, then the default budget, each with the exact and the f32 γ
    // solver (the firmware's).
    for (name, budget, solver) in [
        ("decide/general_u20_s21_budget0", 0, GammaSolver::Exact),
        ("decide/general_u20_s21_budget0_f32", 0, GammaSolver::F32),
        (
            "decide/general_u20_s21",
            DEFAULT_IMPROVEMENT_BUDGET,
            GammaSolver::Exact,
        ),
        (
            "decide/general_u20_s21_f32",
            DEFAULT_IMPROVEMENT_BUDGET,
            GammaSolver::F32,
        ),
    ] {
        controller.set_improvement_budget(budget);
        controller.set_gamma_solver(solver);
        c.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let s = &statuses[i % statuses.len()];
                i += 1;
                controller.decide(black_box(s)).expect("decides")
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! `decide/u20_s21`: the whole per-slot decision (observation, a 1424-128-128-420
//! policy with random weights, association repair, γ solver, evaluation) on slots of
//! 20 users and 21 servers built as in `gamma/u20_s21` (default draws, users spread
//! over nearby servers, about one in five migrating).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use diten_controller::obs::obs_dim;
use diten_controller::policy::{encode, encoded_len, F32Le, LayerRef, ModelRef, Policy};
use diten_controller::{Controller, Params, RepairOutcome, Server, Slot, User};

const USERS: usize = 20;
const SERVERS: usize = 21;
const HIDDEN: usize = 128;

/// xorshift64*: a tiny deterministic generator so the benchmark needs no rand crate.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// The slot of `gamma/u20_s21`'s instance `seed` (its association is not needed:
/// the policy decides).
fn status(seed: u64) -> Slot<USERS, SERVERS> {
    let mut rng = Rng::new(seed);
    let servers: Vec<Server> = (0..SERVERS)
        .map(|_| Server {
            x: rng.range(0.0, 120.0),
            y: rng.range(0.0, 120.0),
            p: rng.range(120.0, 150.0),
            q: rng.range(1400.0, 1500.0),
            eps: rng.range(54.0, 56.0),
        })
        .collect();
    let mut load = [0usize; SERVERS];
    let mut users = Vec::new();
    for _ in 0..USERS {
        let (x, y) = (rng.range(0.0, 120.0), rng.range(0.0, 120.0));
        // Last slot: the nearest server with room (at most 4 users each).
        let mut order: Vec<usize> = (0..SERVERS).collect();
        order.sort_by(|&i, &j| {
            let di = (servers[i].x - x).abs() + (servers[i].y - y).abs();
            let dj = (servers[j].x - x).abs() + (servers[j].y - y).abs();
            di.total_cmp(&dj)
        });
        let s = order.iter().copied().find(|&s| load[s] < 4).unwrap_or(0);
        load[s] += 1;
        let prev = if rng.next() < 0.2 { order[1] } else { s };
        users.push(User {
            x,
            y,
            emd: 0.2,
            twin_bits: rng.range(4.4e3, 4.6e3),
            data_bits: (200.0 + rng.range(0.0, 1800.0)).round() * 784.0,
            prev_data_bits: (200.0 + rng.range(0.0, 1800.0)).round() * 784.0,
            prev_server: Some(prev),
        });
    }
    Slot::new(&servers, &users).expect("valid instance")
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
    let (mut moved, mut nodes) = (0, 0);
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
    }
    eprintln!(
        "decide/u20_s21 over {} slots: clean {}, repaired {}, infeasible {}, bound {}; \
         {moved} users moved, {nodes} search nodes in all",
        statuses.len(),
        outcomes[0],
        outcomes[1],
        outcomes[2],
        outcomes[3]
    );

    let mut group = c.benchmark_group("decide");
    group.bench_function("u20_s21", |b| {
        let mut i = 0;
        b.iter(|| {
            let s = &statuses[i % statuses.len()];
            i += 1;
            controller.decide(black_box(s)).expect("decides")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

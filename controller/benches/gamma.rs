//! `gamma/u20_s21`: the γ solver on one slot of 20 users and 21 servers with a
//! realistic load (1–4 users per occupied server, about one user in five migrating).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use diten_controller::{solve_gamma, Params, Server, Slot, User};

/// xorshift64*: a tiny deterministic generator so the benchmark needs no rand crate.
struct Rng(u64);
impl Rng {
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

type Instance = (Slot<20, 21>, [usize; 20]);

fn instance(seed: u64) -> Instance {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let servers: Vec<Server> = (0..21)
        .map(|_| Server {
            x: rng.range(0.0, 120.0),
            y: rng.range(0.0, 120.0),
            p: rng.range(120.0, 150.0),
            q: rng.range(1400.0, 1500.0),
            eps: rng.range(54.0, 56.0),
        })
        .collect();
    let mut load = [0usize; 21];
    let mut association = [0usize; 20];
    let mut users = Vec::new();
    for a in association.iter_mut() {
        let (x, y) = (rng.range(0.0, 120.0), rng.range(0.0, 120.0));
        // Nearest server with room (at most 4 users each).
        let mut order: Vec<usize> = (0..21).collect();
        order.sort_by(|&i, &j| {
            let di = (servers[i].x - x).abs() + (servers[i].y - y).abs();
            let dj = (servers[j].x - x).abs() + (servers[j].y - y).abs();
            di.total_cmp(&dj)
        });
        let s = order.iter().copied().find(|&s| load[s] < 4).unwrap_or(0);
        load[s] += 1;
        *a = s;
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
    (
        Slot::new(&servers, &users).expect("valid instance"),
        association,
    )
}

fn bench(c: &mut Criterion) {
    let params = Params::default();
    let instances: Vec<Instance> = (0..64).map(instance).collect();
    let mut group = c.benchmark_group("gamma");
    group.bench_function("u20_s21", |b| {
        let mut i = 0;
        let mut gamma = [0.0; 20];
        b.iter(|| {
            let (slot, assoc) = &instances[i % instances.len()];
            i += 1;
            solve_gamma(&params, black_box(slot), black_box(assoc), &mut gamma).expect("solves")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

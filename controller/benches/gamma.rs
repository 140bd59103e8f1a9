//! `gamma/u20_s21`: the γ solver on one slot of 20 users and 21 servers with a
//! realistic load (1–4 users per occupied server, about one user in five migrating);
//! `gamma/u20_s21_linear`: the same slots priced with `cost_norm = "linear"` at
//! f0 = 3000 (SPEC §2.1b), where the sub-problem is concave; `gamma/u20_s21_f32`:
//! the `u20_s21` slots solved by the single-precision path (`solve_gamma_f32`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use diten_controller::{solve_gamma, solve_gamma_f32, CostNorm, Params};

mod common;

use common::{instance, Instance};

fn bench(c: &mut Criterion) {
    let linear = Params {
        cost_norm: CostNorm::Linear,
        f0: 3000.0,
        ..Params::default()
    };
    let instances: Vec<Instance> = (0..64).map(instance).collect();
    let mut group = c.benchmark_group("gamma");
    for (name, params) in [("u20_s21", Params::default()), ("u20_s21_linear", linear)] {
        group.bench_function(name, |b| {
            let mut i = 0;
            let mut gamma = [0.0; 20];
            b.iter(|| {
                let (slot, assoc) = &instances[i % instances.len()];
                i += 1;
                solve_gamma(&params, black_box(slot), black_box(assoc), &mut gamma).expect("solves")
            })
        });
    }
    group.bench_function("u20_s21_f32", |b| {
        let params = Params::default();
        let mut i = 0;
        let mut gamma = [0.0; 20];
        b.iter(|| {
            let (slot, assoc) = &instances[i % instances.len()];
            i += 1;
            solve_gamma_f32(&params, black_box(slot), black_box(assoc), &mut gamma).expect("solves")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

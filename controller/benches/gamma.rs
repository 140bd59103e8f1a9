//! `gamma/u20_s21`: the γ solver on one slot of 20 users and 21 servers with a
//! realistic load (1–4 users per occupied server, about one user in five migrating).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use diten_controller::{solve_gamma, Params};

mod common;

use common::{instance, Instance};

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

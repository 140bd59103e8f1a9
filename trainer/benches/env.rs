//! `env/step_u20_s15`: one slot of the simulator (20 users, 15 servers, SPEC
//! defaults) with the sticky decision maker and the γ solver: decide, solve γ,
//! evaluate, move users and draw the next slot. Episodes restart when they end.
//!
//! `env/stay_observe_u20_s15`: the same slot with the "stay" decision (every user
//! on last slot's server) and the controller's observation of the next slot: the
//! Rust side of the Python `diten.VecEnv` speed check
//! (`python/examples/bench_vecenv.py` steps the same decision from Python).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diten_controller::obs::{obs_dim, observe};
use diten_trainer::policy::{DecisionMaker, Sticky};
use diten_trainer::scenario::{Emd, Scenario};
use diten_trainer::sim::{Decision, Env};

fn bench(c: &mut Criterion) {
    let scenario = Scenario {
        users: 20,
        servers: 15,
        emd: Emd::All(0.2),
        ..Scenario::default()
    };
    let mut env = Env::new(&scenario, 1).expect("valid scenario");
    let mut sticky = Sticky::new();
    let mut seed = 1;
    let mut group = c.benchmark_group("env");
    group.throughput(Throughput::Elements(1));
    group.bench_function("step_u20_s15", |b| {
        b.iter(|| {
            if env.done() {
                seed += 1;
                env.reset(seed).expect("reset");
                sticky.reset(seed);
            }
            let d = sticky.decide(&env).expect("decides");
            env.step(&d).expect("steps")
        })
    });
    let mut env = Env::new(&scenario, 1).expect("valid scenario");
    let mut obs = vec![0.0f32; obs_dim(20, 15)];
    let mut seed = 1;
    group.bench_function("stay_observe_u20_s15", |b| {
        b.iter(|| {
            if env.done() {
                seed += 1;
                env.reset(seed).expect("reset");
            }
            let d = Decision::optimal(env.prev_association().to_vec());
            let outcome = env.step(&d).expect("steps");
            observe(env.status(), &mut obs).expect("observes");
            outcome
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

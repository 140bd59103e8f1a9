//! Simulator tests: determinism, the draws' ranges, mobility, the first-slot rule and
//! the previous-slot bookkeeping. Expectations come from SPEC §2/§2.2, not from the
//! simulator.

use super::*;
use crate::scenario::{Emd, Scenario};

fn scenario(users: usize, servers: usize, slots: usize) -> Scenario {
    Scenario {
        users,
        servers,
        slots,
        emd: Emd::All(0.2),
        ..Scenario::default()
    }
}

/// Everyone to the nearest server: a decision that needs no policy module.
fn nearest_decision(env: &Env) -> Decision {
    let st = env.status();
    Decision::optimal(
        st.users()
            .iter()
            .map(|u| nearest(st.servers(), u.x, u.y))
            .collect(),
    )
}

fn run(sc: &Scenario, seed: u64) -> Vec<(Status, Vec<f64>, f64)> {
    let mut env = Env::new(sc, seed).unwrap();
    let mut out = Vec::new();
    while !env.done() {
        let st = env.status().clone();
        let o = env.step(&nearest_decision(&env)).unwrap();
        out.push((st, o.gamma, o.evaluation.objective));
    }
    out
}

#[test]
fn same_seed_same_episode_bit_for_bit() {
    let sc = scenario(20, 15, 60);
    let (a, b) = (run(&sc, 7), run(&sc, 7));
    assert_eq!(a.len(), 60);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x.1), bits(&y.1));
        assert_eq!(x.2.to_bits(), y.2.to_bits());
    }
    let c = run(&sc, 8);
    assert_ne!(a[0].0, c[0].0, "another seed draws another network");
}

#[test]
fn reset_replays_the_episode() {
    let sc = scenario(5, 4, 10);
    let mut env = Env::new(&sc, 3).unwrap();
    let first = env.status().clone();
    for _ in 0..4 {
        env.step(&nearest_decision(&env)).unwrap();
    }
    env.reset(3).unwrap();
    assert_eq!(env.t(), 0);
    assert_eq!(env.status(), &first);
}

#[test]
fn draws_stay_in_their_spec_ranges() {
    let sc = scenario(20, 21, 40);
    for seed in 0..5 {
        let mut env = Env::new(&sc, seed).unwrap();
        let twins: Vec<f64> = env.status().users().iter().map(|u| u.twin_bits).collect();
        while !env.done() {
            let st = env.status();
            assert_eq!(st.servers().len(), 21);
            for s in st.servers() {
                assert!((0.0..=120.0).contains(&s.x) && (0.0..=120.0).contains(&s.y));
                assert!((120.0..=150.0).contains(&s.p), "p = {}", s.p);
                assert!((1.4e3..=1.5e3).contains(&s.q), "q = {}", s.q);
                assert!((54.0..=56.0).contains(&s.eps), "eps = {}", s.eps);
            }
            for (u, twin) in st.users().iter().zip(&twins) {
                assert!((0.0..=120.0).contains(&u.x) && (0.0..=120.0).contains(&u.y));
                assert_eq!(u.twin_bits, *twin, "D_twin is drawn once per episode");
                assert!((4.4e3..=4.6e3).contains(&u.twin_bits));
                for bits in [u.data_bits, u.prev_data_bits] {
                    let images = bits / 784.0;
                    assert_eq!(images.fract(), 0.0, "whole images of 784 bits");
                    assert!((200.0..=2000.0).contains(&images), "{images} images");
                }
                assert_eq!(u.emd, 0.2);
            }
            env.step(&nearest_decision(&env)).unwrap();
        }
    }
}

#[test]
fn image_counts_cover_their_range_uniformly() {
    // 20 users × 500 slots = 10 000 draws of 200..=2000: mean ≈ 1100 (σ/√n ≈ 5.2).
    let sc = scenario(20, 3, 500);
    let mut env = Env::new(&sc, 11).unwrap();
    let (mut sum, mut n, mut lo, mut hi) = (0.0, 0.0, f64::MAX, 0.0f64);
    while !env.done() {
        for u in env.status().users() {
            let k = u.data_bits / 784.0;
            sum += k;
            n += 1.0;
            lo = lo.min(k);
            hi = hi.max(k);
        }
        env.step(&nearest_decision(&env)).unwrap();
    }
    let mean = sum / n;
    assert!((mean - 1100.0).abs() < 25.0, "mean {mean}");
    assert!(lo < 210.0 && hi > 1990.0, "range [{lo}, {hi}]");
}

#[test]
fn users_walk_at_most_their_speed_and_static_users_stay() {
    let sc = scenario(20, 5, 200);
    let mut env = Env::new(&sc, 5).unwrap();
    let mut moved = 0.0;
    while !env.done() {
        let before: Vec<(f64, f64)> = env.status().users().iter().map(|u| (u.x, u.y)).collect();
        let o = env.step(&nearest_decision(&env)).unwrap();
        if o.done {
            break;
        }
        for (u, (x, y)) in env.status().users().iter().zip(before) {
            let d = (u.x - x).hypot(u.y - y);
            assert!(d <= 3.0 + 1e-9, "moved {d} m in one slot");
            moved += d;
        }
    }
    // Speeds are U[1, 3]: on average users cover well over 1 m per slot.
    assert!(
        moved / (20.0 * 199.0) > 1.0,
        "mean step {}",
        moved / (20.0 * 199.0)
    );

    let still = Scenario {
        mobility: Mobility::Static,
        ..scenario(6, 3, 20)
    };
    let mut env = Env::new(&still, 5).unwrap();
    let start: Vec<(f64, f64)> = env.status().users().iter().map(|u| (u.x, u.y)).collect();
    while !env.done() {
        let now: Vec<(f64, f64)> = env.status().users().iter().map(|u| (u.x, u.y)).collect();
        assert_eq!(now, start);
        env.step(&nearest_decision(&env)).unwrap();
    }
}

#[test]
fn first_slot_has_no_previous_server_and_charges_no_migration() {
    let sc = scenario(8, 6, 5);
    let mut env = Env::new(&sc, 2).unwrap();
    let st = env.status().clone();
    for (u, &prev) in st.users().iter().zip(env.prev_association()) {
        assert_eq!(u.prev_server, None);
        assert_eq!(
            prev,
            nearest(st.servers(), u.x, u.y),
            "slot 1's previous = nearest"
        );
    }
    // Everyone somewhere else than the nearest server: still no migration cost.
    let far: Vec<usize> = env
        .prev_association()
        .iter()
        .map(|&s| (s + 1) % 6)
        .collect();
    let o = env.step(&Decision::optimal(far.clone())).unwrap();
    assert_eq!(o.migrations, 0);
    assert!(o.evaluation.servers.iter().all(|c| c.mig == 0.0));
    // Slot 2 remembers slot 1's association and data.
    let next = env.status();
    for (k, u) in next.users().iter().enumerate() {
        assert_eq!(u.prev_server, Some(far[k]));
        assert_eq!(u.prev_data_bits, st.users()[k].data_bits);
    }
    assert_eq!(env.prev_association(), &far[..]);
    // Staying put costs no migration; moving does, and is counted.
    let mut stay = far.clone();
    stay[0] = (far[0] + 1) % 6;
    let o = env.step(&Decision::optimal(stay)).unwrap();
    assert_eq!(o.migrations, 1);
    assert!(o.evaluation.servers.iter().map(|c| c.mig).sum::<f64>() > 0.0);
}

#[test]
fn an_episode_has_exactly_t_slots() {
    let sc = scenario(3, 2, 4);
    let mut env = Env::new(&sc, 1).unwrap();
    for t in 0..4 {
        assert!(!env.done());
        let o = env.step(&nearest_decision(&env)).unwrap();
        assert_eq!((o.t, o.done), (t, t == 3));
    }
    assert!(env.done());
    let err = env.step(&nearest_decision(&env)).unwrap_err().to_string();
    assert!(err.contains("episode over"), "{err}");
}

#[test]
fn bad_decisions_are_errors_not_panics() {
    let sc = scenario(3, 2, 4);
    let mut env = Env::new(&sc, 1).unwrap();
    for d in [
        Decision::optimal(vec![0, 1]),
        Decision::optimal(vec![0, 1, 2]),
        Decision {
            association: vec![0, 0, 0],
            gamma: Gamma::Given(vec![0.5]),
        },
    ] {
        assert!(env.step(&d).is_err(), "{d:?}");
    }
    assert_eq!(env.t(), 0, "a rejected decision does not advance the slot");
}

#[test]
fn given_gamma_is_used_as_is() {
    let sc = scenario(3, 2, 4);
    let mut env = Env::new(&sc, 1).unwrap();
    let d = Decision {
        association: vec![0, 1, 0],
        gamma: Gamma::Given(vec![0.25, 0.0, 1.0]),
    };
    let o = env.step(&d).unwrap();
    assert_eq!(o.gamma, vec![0.25, 0.0, 1.0]);
}

#[test]
fn vec_env_steps_in_lockstep_and_restarts_finished_episodes() {
    let sc = scenario(4, 3, 3);
    let mut v = VecEnv::new(&sc, 3, 9).unwrap();
    let seeds: Vec<u64> = v.envs().iter().map(Env::seed).collect();
    assert!(seeds[0] != seeds[1] && seeds[1] != seeds[2], "{seeds:?}");
    for step in 0..7 {
        let ds: Vec<Decision> = v.envs().iter().map(nearest_decision).collect();
        let out = v.step(&ds).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out
            .iter()
            .all(|o| o.t == step % 3 && o.done == (step % 3 == 2)));
    }
    assert!(v.envs().iter().all(|e| e.t() == 1));
    assert_ne!(
        v.envs()[0].seed(),
        seeds[0],
        "a new episode after the first"
    );
    // The same batch seed replays the same episodes.
    let w = VecEnv::new(&sc, 3, 9).unwrap();
    assert_eq!(
        w.envs()[2].status(),
        VecEnv::new(&sc, 3, 9).unwrap().envs()[2].status()
    );
    assert!(v.step(&[]).is_err());
}

#[test]
fn uniform_int_is_unbiased_at_the_edges() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut counts = [0u32; 3];
    for _ in 0..30_000 {
        counts[(uniform_int(&mut rng, [5, 7]) - 5) as usize] += 1;
    }
    for c in counts {
        assert!((9_500..10_500).contains(&c), "{counts:?}");
    }
    assert_eq!(uniform_int(&mut rng, [4, 4]), 4);
    let f = unit(&mut rng);
    assert!((0.0..1.0).contains(&f));
}

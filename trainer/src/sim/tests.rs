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

/// Everyone to the nearest available server.
fn nearest_up_decision(env: &Env) -> Decision {
    let st = env.status();
    Decision::optimal(
        st.users()
            .iter()
            .map(|u| nearest_available(st.servers(), u.x, u.y))
            .collect(),
    )
}

fn churny(users: usize, servers: usize, slots: usize) -> Scenario {
    Scenario {
        churn: Some(crate::scenario::Churn {
            leave_p: 0.1,
            join_p: 0.2,
            fail_p: 0.05,
            down: [2, 5],
        }),
        ..scenario(users, servers, slots)
    }
}

/// SPEC §2.2a: who is present, who returned, which servers are down, and what a
/// returning user or one whose server went down sees, slot after slot.
#[test]
fn churn_follows_the_spec() {
    let (users, servers, slots) = (12, 4, 3000);
    let mut env = Env::new(&churny(users, servers, slots), 9).unwrap();
    // Slot 1: everyone present, every server up.
    assert_eq!(env.user_ids(), (0..users).collect::<Vec<_>>());
    assert!(env.status().servers().iter().all(|s| s.available));
    let mut last: Vec<Option<usize>> = vec![None; users]; // server in the last slot
    let mut present_slots = 0usize;
    let mut down_runs = vec![0usize; servers];
    let (mut returns, mut forced) = (0, 0);
    for t in 0..slots {
        let st = env.status().clone();
        let ids = env.user_ids().to_vec();
        assert_eq!(ids.len(), st.users().len());
        assert!(!ids.is_empty(), "at least one user is present");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "population order");
        assert!(st.servers().iter().any(|s| s.available), "one server up");
        for (k, (&id, u)) in ids.iter().zip(st.users()).enumerate() {
            let prev = env.prev_association()[k];
            match (t, last[id]) {
                (0, _) | (_, None) => {
                    // First slot or a return: no previous server; decision makers
                    // see the nearest available one.
                    assert_eq!(u.prev_server, None, "slot {t} user {id}");
                    assert_eq!(prev, nearest_available(st.servers(), u.x, u.y));
                    returns += usize::from(t > 0);
                }
                (_, Some(s)) => {
                    assert_eq!(u.prev_server, Some(s), "slot {t} user {id}");
                    assert_eq!(prev, s);
                    forced += usize::from(!st.servers()[s].available);
                }
            }
        }
        // Down periods last [2, 5] slots (the one cut by the episode's end aside).
        for (s, srv) in st.servers().iter().enumerate() {
            if srv.available {
                if down_runs[s] > 0 {
                    assert!(
                        (2..=5).contains(&down_runs[s]),
                        "down {} slots",
                        down_runs[s]
                    );
                }
                down_runs[s] = 0;
            } else {
                down_runs[s] += 1;
            }
        }
        present_slots += ids.len();
        let decision = nearest_up_decision(&env);
        let o = env.step(&decision).unwrap();
        let moved = st
            .users()
            .iter()
            .zip(&decision.association)
            .filter(|(u, &a)| u.prev_server.is_some_and(|p| p != a))
            .count();
        assert_eq!(o.migrations, moved);
        last = vec![None; users];
        for (&id, &a) in ids.iter().zip(&decision.association) {
            last[id] = Some(a);
        }
    }
    // Presence settles at join/(join + leave) = 2/3.
    let share = present_slots as f64 / (users * slots) as f64;
    assert!((0.6..0.73).contains(&share), "present {share}");
    assert!(
        returns > 100 && forced > 10,
        "{returns} returns, {forced} forced moves"
    );
    // An unavailable server in a decision is rejected, not simulated.
    let mut env = Env::new(&churny(users, servers, slots), 9).unwrap();
    while env.status().servers().iter().all(|s| s.available) {
        env.step(&nearest_up_decision(&env)).unwrap();
    }
    let down = env
        .status()
        .servers()
        .iter()
        .position(|s| !s.available)
        .unwrap();
    let bad = Decision::optimal(vec![down; env.status().users().len()]);
    let err = env.step(&bad).unwrap_err().to_string();
    assert!(err.contains("unavailable"), "{err}");
}

/// Churn episodes are pure functions of the seed too, and without `[churn]`
/// every user is present in every slot.
#[test]
fn churn_is_deterministic_and_off_by_default() {
    let sc = churny(10, 5, 200);
    let trace = |seed| {
        let mut env = Env::new(&sc, seed).unwrap();
        let mut out = Vec::new();
        while !env.done() {
            out.push((env.status().clone(), env.user_ids().to_vec()));
            env.step(&nearest_up_decision(&env)).unwrap();
        }
        out
    };
    assert_eq!(trace(4), trace(4));
    assert_ne!(trace(4), trace(5));
    let mut env = Env::new(&scenario(10, 5, 100), 4).unwrap();
    while !env.done() {
        assert_eq!(env.user_ids(), (0..10).collect::<Vec<_>>());
        assert!(env.status().servers().iter().all(|s| s.available));
        env.step(&nearest_decision(&env)).unwrap();
    }
}

"""Slots per second of ``diten.VecEnv`` from Python, one core, 20 users, 15
servers, φ = 0.2, with the "stay" decision (every user on last slot's server: the
decision of ``cargo bench -p diten-trainer --no-default-features --bench env --
stay_observe``, the Rust side of the comparison). Each step includes the
observation of every environment and the numpy round trip.

    taskset -c 0 python python/examples/bench_vecenv.py --envs 8 --seconds 20
"""

import argparse
import time

import diten


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    venv = diten.VecEnv(a.envs, servers=15, users=20, emd=0.2, seed=1)
    venv.reset()
    for _ in range(50):  # warm-up
        venv.step(venv.prev_association())
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < a.seconds:
        for _ in range(100):
            venv.step(venv.prev_association())
        steps += 100
    took = time.perf_counter() - start
    slots = steps * a.envs
    print(f"diten.VecEnv({a.envs}): {slots} slots in {took:.1f} s: {slots / took:.0f} slots/s "
          f"({1e6 * took / slots:.1f} µs per slot)")

    env = diten.Env(servers=15, users=20, emd=0.2, seed=1)
    env.reset()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < a.seconds / 2:
        _, _, _, truncated, _ = env.step(env.prev_association())
        n += 1
        if truncated:
            env.reset()
    took = time.perf_counter() - start
    print(f"diten.Env (one, gymnasium step): {n / took:.0f} slots/s ({1e6 * took / n:.1f} µs per slot)")


if __name__ == "__main__":
    main()

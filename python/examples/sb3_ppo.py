"""An independent check of diten's PPO: Stable-Baselines3's PPO on ``diten.Env``.

Trains SB3's PPO (multi-discrete actions, one categorical per user) on the
paper's setting (U = 20, S = 15, φ = 0.2), with SPEC §2.3's hyperparameters
where SB3 has them, exports its actor to ONNX in the policy-v1 layout (SPEC §3.2:
the exporter's exact graph, so ``diten convert`` and the controller accept it) and
evaluates it through the gateway's controller with ``diten compare``.

    python python/examples/sb3_ppo.py --seed 1 --iterations 100 --out runs/sb3/seed1

Needs ``stable-baselines3``, ``onnx`` and the ``diten`` wheel in one environment
(the README's set-up puts them into the torch virtual environment), and a
``diten`` binary with ONNX support for the evaluation (``cargo build --release -p
diten-trainer --no-default-features --features onnx``; ``make demo``'s has none).

The budget is counted as ours is: iterations × environments × rollout slots (our
paper-faithful run: 1500 × 8 × 64 = 768 000 slots).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import diten

USERS, SERVERS, EMD = 20, 15, 0.2


def make_env(seed: int):
    def thunk():
        # Training episodes as the trainer seeds them would need its episode_seed;
        # here each environment starts at its own seed and goes on seed + 1, ...
        return diten.Env(servers=SERVERS, users=USERS, emd=EMD, seed=seed, reward="r")

    return thunk


def export_onnx(model: PPO, norm: VecNormalize, path: Path, meta: dict) -> None:
    """SB3's actor as the exporter's graph (trainer/src/onnx/mod.rs): Sub, Mul,
    Clip (VecNormalize's obs normalisation, folded), then Gemm/Tanh layers
    (mlp_extractor.policy_net) and the action_net Gemm writing ``logits``."""
    policy = model.policy
    dim = diten.Env(servers=SERVERS, users=USERS, emd=EMD).obs_dim
    mean = norm.obs_rms.mean.astype(np.float32)
    inv_std = (1.0 / np.sqrt(norm.obs_rms.var + norm.epsilon)).astype(np.float32)
    clip = float(norm.clip_obs)
    inits = [
        numpy_helper.from_array(mean, "obs_norm.mean"),
        numpy_helper.from_array(inv_std, "obs_norm.inv_std"),
        numpy_helper.from_array(np.array(-clip, dtype=np.float32), "obs_norm.min"),
        numpy_helper.from_array(np.array(clip, dtype=np.float32), "obs_norm.max"),
    ]
    nodes = [
        helper.make_node("Sub", ["obs", "obs_norm.mean"], ["obs_norm.centered"], name="obs_norm.sub"),
        helper.make_node("Mul", ["obs_norm.centered", "obs_norm.inv_std"], ["obs_norm.scaled"], name="obs_norm.mul"),
        helper.make_node("Clip", ["obs_norm.scaled", "obs_norm.min", "obs_norm.max"], ["obs_norm.out"], name="obs_norm.clip"),
    ]
    linears = [m for m in policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    linears.append(policy.action_net)
    x = "obs_norm.out"
    for i, lin in enumerate(linears):
        name = f"actor.l{i}"
        last = i == len(linears) - 1
        inits.append(numpy_helper.from_array(lin.weight.detach().cpu().numpy().astype(np.float32), f"{name}.weight"))
        inits.append(numpy_helper.from_array(lin.bias.detach().cpu().numpy().astype(np.float32), f"{name}.bias"))
        out = "logits" if last else f"{name}.out"
        nodes.append(
            helper.make_node("Gemm", [x, f"{name}.weight", f"{name}.bias"], [out], name=name, transB=1, alpha=1.0, beta=1.0)
        )
        if not last:
            nodes.append(helper.make_node("Tanh", [out], [f"{name}.tanh"], name=f"{name}.tanh"))
            x = f"{name}.tanh"
    graph = helper.make_graph(
        nodes,
        "sb3-ppo-actor",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", USERS * SERVERS])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="diten sb3_ppo.py")
    proto.ir_version = 8
    props = {
        "diten.format": "policy-v1",
        "diten.obs_layout": diten.OBS_LAYOUT,
        "diten.users": str(USERS),
        "diten.servers": str(SERVERS),
        "diten.algo": "sb3-ppo",
        "diten.seed": str(meta["seed"]),
        "diten.scenario": f"users = {USERS}\nservers = {SERVERS}\nemd = {EMD}\n",
        "diten.evaluation": "none",
    }
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=1500, help="PPO iterations (rollouts)")
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--rollout", type=int, default=64, help="slots per environment per iteration")
    ap.add_argument("--eval-seeds", default="3", help="`diten compare --seeds` (default: 3 = seeds 1..=3)")
    ap.add_argument("--eval-slots", type=int, default=750)
    ap.add_argument("--diten", default="target/release/diten", help="the diten binary")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)

    # Training episodes use seeds far from the evaluation seeds (1..=N).
    base = 10_000 + 1000 * args.seed
    venv = DummyVecEnv([make_env(base + 100 * i) for i in range(args.envs)])
    venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=0.98)
    model = PPO(
        "MlpPolicy",
        venv,
        learning_rate=2.5e-4,  # χ_a (SB3 has one learning rate for actor and critic)
        n_steps=args.rollout,
        batch_size=128,
        n_epochs=4,
        gamma=0.98,  # SPEC's GAE σ
        gae_lambda=0.9,
        clip_range=0.2,
        ent_coef=0.01,
        max_grad_norm=0.5,
        policy_kwargs=dict(net_arch=dict(pi=[128, 128], vf=[128, 128]), activation_fn=torch.nn.Tanh, ortho_init=True),
        # SB3 seeds torch with it and resets environment i with seed + i first:
        # `base` keeps every training episode away from the evaluation seeds.
        seed=base,
        device="cpu",
        verbose=0,
    )
    slots = args.iterations * args.envs * args.rollout
    started = time.time()
    # A snapshot at half the budget (policy-half.onnx), so a run stopped in its
    # second half still leaves a policy to evaluate.
    half = (args.iterations // 2) * args.envs * args.rollout
    if half:
        model.learn(total_timesteps=half)
        export_onnx(model, venv, args.out / "policy-half.onnx", {"seed": args.seed})
        print(f"half budget ({half} slots) after {time.time() - started:.0f} s", flush=True)
    model.learn(total_timesteps=slots - half, reset_num_timesteps=not half)
    train_s = time.time() - started
    onnx_path = args.out / "policy.onnx"
    export_onnx(model, venv, onnx_path, {"seed": args.seed})
    blob = args.out / "policy.bin"
    subprocess.run([args.diten, "convert", str(onnx_path), "--out", str(blob)], check=True)

    # The same network through the controller with and without its consolidation
    # and improvement, against the baselines on the evaluation episodes.
    cmd = [
        args.diten, "compare",
        "--policy", f"{blob},unconsolidated:{blob},nearest,sticky,oracle",
        "--servers", str(SERVERS), "--emd", str(EMD), "--users", str(USERS),
        "--slots", str(args.eval_slots), "--seeds", args.eval_seeds,
        "--out", str(args.out / "compare"), "--json",
    ]
    summary = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    record = {
        "seed": args.seed,
        "iterations": args.iterations,
        "envs": args.envs,
        "rollout": args.rollout,
        "slots_trained": slots,
        "train_seconds": round(train_s, 1),
        "rows": {r["policy"]: {k: r[k] for k in ("objective", "cost_total", "utility", "migrations", "violating_slots") if k in r} for r in summary["rows"]},
    }
    (args.out / "result.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""diten.Controller against `diten replay` on a recorded trace (`diten trace`):
the same decisions, slot by slot, and the sweep functions against the command."""

import json

import pytest

import diten
from conftest import run

SLOTS = 8


def test_controller_decides_as_diten_replay(diten_bin, root, tmp_path):
    policy = root / "onnx-models" / "u20-s15" / "policy.bin"
    trace = tmp_path / "trace.bin"
    run(diten_bin, "trace", "--servers", 15, "--users", 20, "--emd", 0.2, "--slots", SLOTS,
        "--seed", 3, "--out", trace)
    lines = run(diten_bin, "replay", "--policy", policy, "--trace", trace).stdout.splitlines()
    assert len(lines) == SLOTS

    controller = diten.Controller(policy)
    assert (controller.users, controller.servers) == (20, 15)
    env = diten.Env(servers=15, users=20, emd=0.2, slots=SLOTS, seed=3)
    env.reset()
    for t, line in enumerate(lines):
        decision = controller.decide(env.instance())
        assoc = " ".join(map(str, decision["association"]))
        gamma = " ".join(f"{g:.9f}" for g in decision["gamma"])
        assert line == f"slot {t}: association [{assoc}] gamma [{gamma}] objective {decision['objective']:.9f}"
        env.step(decision["association"])




def test_controller_wrong_size_is_a_value_error(root):
    controller = diten.Controller(root / "onnx-models" / "u20-s15" / "policy.bin")
    env = diten.Env(servers=9, users=20)
    with pytest.raises(ValueError):
        controller.decide(env.instance())


def test_evaluate_and_compare_match_the_command(diten_bin, tmp_path):
    ours = diten.evaluate("nearest", servers=9, emd=0.2, seeds=2, slots=15, jobs=2)
    theirs = json.loads(run(diten_bin, "evaluate", "--policy", "nearest", "--servers", 9, "--emd", 0.2,
                            "--seeds", 2, "--slots", 15, "--json", "--out", tmp_path).stdout)
    assert ours["rows"][0]["objective"] == theirs["rows"][0]["objective"]
    assert ours["seeds"] == [1, 2] and ours["command"] == "evaluate"
    frame = diten.compare(["nearest", "sticky"], servers=[9, 11], seeds=[1], slots=10, as_frame=True)
    assert sorted(frame["policy"].unique()) == ["nearest", "sticky"]
    assert len(frame) == 4 and "objective_mean" in frame.columns
    with pytest.raises(ValueError, match="unknown policy"):
        diten.evaluate("nope")

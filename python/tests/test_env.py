"""diten.Env against `diten solve` on the same slots, determinism, check_env,
truncation and the dict observation."""

import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import diten
from conftest import run


def test_check_env_box_and_dict():
    check_env(diten.Env(slots=30), skip_render_check=True)
    check_env(diten.Env(slots=30, observation="dict", reward="e"), skip_render_check=True)


def test_spaces_follow_the_controller_layout():
    env = diten.Env(servers=9, users=7)
    assert env.action_space.nvec.tolist() == [9] * 7
    assert env.observation_space.shape == (7 * (4 + 3 * 9) + 4 * 9,)
    assert diten.OBS_LAYOUT == "diten-obs-v1"


def test_same_slots_as_diten_solve(diten_bin):
    """Every number of a step equals what the `diten` binary prints for the slot's
    instance (built from the environment's state) with the same association."""
    env = diten.Env(servers=15, users=20, emd=0.2, seed=4, slots=6)
    env.reset()
    rng = np.random.default_rng(0)
    for t in range(6):
        instance = env.instance()
        # slot 0 has no previous server; later slots carry last slot's action
        assert all((u["prev_server"] is None) == (t == 0) for u in instance["users"])
        action = rng.integers(0, 15, size=20) if t % 2 else env.prev_association()
        instance["association"] = [int(s) for s in action]
        out = json.loads(run(diten_bin, "solve", "--instance", "-", stdin=json.dumps(instance)).stdout)
        _, reward, terminated, truncated, info = env.step(action)
        assert reward == out["reward"] == info["r"]
        assert info["e"] == out["objective"]
        assert info["feasible"] == out["feasible"]
        assert info["utility"] == pytest.approx(np.mean(out["utility"]), rel=1e-12)
        for part in ("total", "mig", "syn", "cmp"):
            key = "energy" if part == "total" else f"energy_{part}"
            assert info[key] == pytest.approx(sum(s[part] for s in out["servers"]), rel=1e-12)
        # γ to 1e-12 (the simulator's solve may start from last slot's γ; e is exact)
        assert info["gamma"] == pytest.approx(out["gamma"], abs=1e-12)
        assert (terminated, truncated) == (False, t == 5)
        # diten.solve is the same code as the binary: the same output, bit for bit
        assert diten.solve(instance) == out


def test_reward_e_is_the_objective():
    a, b = diten.Env(seed=2, reward="r"), diten.Env(seed=2, reward="e")
    a.reset(), b.reset()
    act = a.action_space.sample()
    _, r, _, _, info_a = a.step(act)
    _, e, _, _, info_b = b.step(act)
    assert (r, e) == (info_a["r"], info_b["e"])


def test_deterministic_by_seed():
    def episode(seed):
        env = diten.Env(slots=12, seed=seed)
        obs, _ = env.reset()
        out = [obs]
        rng = np.random.default_rng(1)
        for _ in range(12):
            obs, r, *_ = env.step(rng.integers(0, 15, 20))
            out += [obs, np.array([r])]
        return np.concatenate(out)

    assert np.array_equal(episode(5), episode(5))
    assert not np.array_equal(episode(5), episode(6))
    env = diten.Env(slots=12)
    first, _ = env.reset(seed=9)
    again, _ = env.reset(seed=9)
    assert np.array_equal(first, again)


def test_truncation_not_termination_and_stepping_past_the_end():
    env = diten.Env(slots=3)
    env.reset()
    ends = [env.step(env.action_space.sample())[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    with pytest.raises(ValueError, match="episode over"):
        env.step(env.action_space.sample())


def test_dict_observation_regroups_the_box():
    box, dct = diten.Env(servers=5, users=3, seed=3), diten.Env(servers=5, users=3, seed=3, observation="dict")
    flat, _ = box.reset()
    d, _ = dct.reset()
    assert d["users"].shape == (3, 4) and d["servers"].shape == (5, 4) and d["pairs"].shape == (3, 5, 3)
    block = 4 + 15
    assert np.array_equal(d["users"][1], flat[block : block + 4])
    assert np.array_equal(d["pairs"][2, :, 0], flat[2 * block + 4 : 2 * block + 9])  # distances
    assert np.array_equal(d["servers"].ravel(), flat[3 * block :])


def test_scenario_file_and_keyword_override(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("users = 4\nservers = 6\nslots = 9\nemd = 0.4\n")
    env = diten.Env(scenario=path, servers=7)
    assert (env.users, env.servers, env.slots) == (4, 7, 9)
    assert env.instance()["users"][0]["emd"] == 0.4


def test_vec_env_matches_shapes_and_restarts():
    venv = diten.VecEnv(3, servers=9, users=5, slots=4, seed=2)
    obs = venv.reset()
    assert obs.shape == (3, 5 * 31 + 36) and obs.dtype == np.float32
    for t in range(4):
        obs, reward, terminated, truncated, info = venv.step(venv.prev_association())
        assert reward.shape == (3,) and not terminated.any()
        assert truncated.tolist() == [t == 3] * 3
        assert np.array_equal(reward, info["r"])
    # a new episode began: every user's previous server is the nearest again (slot 0)
    obs2, *_ = venv.step(np.zeros((3, 5), dtype=np.int64))
    assert obs2.shape == obs.shape


def test_errors_are_value_errors_with_the_one_line_message(diten_bin):
    env = diten.Env(servers=4, users=3)
    env.reset()
    with pytest.raises(ValueError, match="server index -1 is negative"):
        env.step([0, -1, 0])
    with pytest.raises(ValueError, match="decision rejected"):
        env.step([0, 4, 0])
    with pytest.raises(ValueError):
        diten.Env(servers=0)
    with pytest.raises(ValueError, match="reward"):
        diten.Env(reward="x")
    with pytest.raises(ValueError, match="scenario|reading|No such file"):
        diten.Env(scenario="/nonexistent/scenario.toml")
    with pytest.raises(ValueError):
        diten.VecEnv(2, servers=4, users=3).step(np.zeros((3, 3)))
    # the same message as the command's `error: ...` line (the command adds the origin)
    bad = {"servers": [{"x": 0, "y": 0, "p": 125, "q": 1450, "eps": 55}],
           "users": [{"x": 0, "y": 0, "emd": 0.2, "twin_bits": -1, "data_bits": 1,
                      "prev_data_bits": 1, "prev_server": None}], "association": [0]}
    with pytest.raises(ValueError) as err:
        diten.solve(bad)
    p = run(diten_bin, "solve", "--instance", "-", stdin=json.dumps(bad), check=False)
    assert p.returncode != 0
    line = p.stderr.strip().splitlines()[-1]
    assert line.endswith(str(err.value)), (line, str(err.value))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="at least one server"):
        diten.solve({"servers": [], "users": []})
    with pytest.raises(ValueError, match="policy"):
        diten.Controller("/nonexistent/policy.bin")

"""python/examples/sweep_ray.py on a local two-CPU Ray cluster: a tiny grid, each
cell equal to the same cell run here without Ray."""

import importlib.util
from pathlib import Path

import pytest

import diten

ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray)")


def test_tiny_grid_on_a_local_ray_cluster():
    path = Path(__file__).resolve().parents[1] / "examples" / "sweep_ray.py"
    spec = importlib.util.spec_from_file_location("sweep_ray", path)
    sweep_ray = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep_ray)
    try:
        frame = sweep_ray.sweep(["nearest", "sticky"], [9, 11], [0.2], [1, 2], users=6, slots=10,
                                num_cpus=2)
    finally:
        ray.shutdown()
    assert len(frame) == 2 * 2 * 2
    row = frame[(frame.policy == "sticky") & (frame.servers == 11) & (frame.seed == 2)].iloc[0]
    here = diten.compare(["sticky"], servers=11, emd=0.2, seeds=[2], users=6, slots=10)
    assert row["objective_mean"] == here["rows"][0]["objective"]["mean"]

"""The shipped size-agnostic policies as ONNX (SPEC §3.2a) in onnxruntime, an
engine independent of diten's: for slots of several shapes, onnxruntime on the
inputs `diten infer --instance` prints gives the base logits it prints (the
controller's own engine) within 1e-5 of max(1, |logit|), and the models pass the ONNX checker."""

import json
import random

import numpy as np
import pytest

from conftest import run

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

MODELS = ["general", "general-linear"]
SHAPES = [(1, 1), (10, 9), (20, 21), (30, 15), (64, 32), (3, 32), (64, 1)]


def instance(users, servers, seed):
    """A slot of SPEC §3.1 in the ranges of SPEC §2, some users joined, some
    servers down."""
    rng = random.Random(seed)
    srv = [{"x": rng.uniform(0, 120), "y": rng.uniform(0, 120), "p": rng.uniform(120, 150),
            "q": rng.uniform(1400, 1500), "eps": rng.uniform(54, 56),
            "available": servers == 1 or rng.random() > 0.15} for _ in range(servers)]
    emd = rng.choice([0.0, 0.2, 0.4, 0.6])
    usr = [{"x": rng.uniform(0, 120), "y": rng.uniform(0, 120), "emd": emd,
            "twin_bits": rng.uniform(4000, 5000), "data_bits": rng.uniform(1.5e5, 1.6e6),
            "prev_data_bits": rng.uniform(1.5e5, 1.6e6),
            "prev_server": rng.randrange(servers) if rng.random() > 0.2 else None}
           for _ in range(users)]
    return json.dumps({"servers": srv, "users": usr})


@pytest.mark.parametrize("name", MODELS)
def test_the_model_passes_the_checker(root, name):
    model = onnx.load(str(root / "onnx-models" / name / "policy.onnx"))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["diten.format"] == "policy-v2"
    assert meta["diten.obs_layout"] == "diten-obs-v2"
    assert len(meta["diten.decoder"].split(",")) == 5
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input]
    assert [i.name for i in model.graph.input] == ["users", "servers", "pairs"]
    assert dims == [["U", 5], ["S", 1], ["U", "S", 6]]


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_gives_the_controllers_base_logits(root, diten_bin, name):
    path = root / "onnx-models" / name / "policy.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for seed, (users, servers) in enumerate(SHAPES):
        out = json.loads(run(diten_bin, "infer", "--model", path, "--instance", "-",
                             stdin=instance(users, servers, seed)).stdout)
        feeds = {k: np.array(v, dtype=np.float32) for k, v in out["inputs"].items()}
        assert feeds["pairs"].shape == (users, servers, 6)
        (got,) = session.run(["logits"], feeds)
        want = np.array(out["logits"], dtype=np.float32)
        assert got.shape == want.shape == (users, servers)
        # Within 1e-5 of the slot's scale, its largest |logit| (at least 1):
        # a logit near 0 can be the difference of terms of the slot's size, so
        # its rounding is of that size (a few f32 ulps at logits of ±80).
        scale = max(1.0, float(np.abs(want).max()))
        diff = float((np.abs(got - want) / scale).max())
        assert diff <= 1e-5, f"{name} {users}x{servers}: {diff}"
        worst = max(worst, diff)
    print(f"{name}: max |onnxruntime - controller| / max(1, max |logit| of the slot) = {worst:.3g}")


def test_onnxruntime_names_a_wrong_input_shape(root):
    path = root / "onnx-models" / "general" / "policy.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"users": np.zeros((2, 5), np.float32), "servers": np.zeros((3, 1), np.float32),
             "pairs": np.zeros((2, 3, 7), np.float32)}
    with pytest.raises(Exception, match="pairs"):
        session.run(["logits"], feeds)

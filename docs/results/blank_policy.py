"""A shipped policy with its network blanked: the last layer's weights and biases
set to 0 and the stay prior's weights to 1, so every user's logit is its
normalised "previous server" indicator, largest on its previous server. Through
the controller, every user starts where it was (as `sticky` does) and the
controller's repair, consolidation and improvement do the rest: the control
experiment of RESULTS.md ("what the learned policy adds").

    python3 -m venv /tmp/onnxenv && /tmp/onnxenv/bin/pip install onnx
    /tmp/onnxenv/bin/python docs/results/blank_policy.py onnx-models/u20-s15/policy.onnx runs/blank/u20-s15.onnx
    diten convert --out runs/blank/u20-s15.bin runs/blank/u20-s15.onnx
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main(src, dst):
    model = onnx.load(src)
    blanked = set()
    for init in model.graph.initializer:
        if init.name in ("actor.l2.weight", "actor.l2.bias", "actor.prior.weight"):
            value = numpy_helper.to_array(init)
            new = np.ones_like(value) if init.name == "actor.prior.weight" else np.zeros_like(value)
            init.CopyFrom(numpy_helper.from_array(new, init.name))
            blanked.add(init.name)
    if len(blanked) != 3:
        sys.exit(f"{src}: expected actor.l2.weight, actor.l2.bias and actor.prior.weight, found {sorted(blanked)}")
    onnx.save(model, dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: blank_policy.py IN.onnx OUT.onnx")
    main(sys.argv[1], sys.argv[2])

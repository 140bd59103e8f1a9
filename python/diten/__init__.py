"""diten from Python: the edge-network simulator as a Gymnasium environment, the
gateway's controller, and ``diten solve`` / ``evaluate`` / ``compare``.

Everything runs the project's Rust code (``diten-trainer`` and
``diten-controller``) through the native module ``diten._diten``; nothing of the
system model is re-implemented in Python. Errors are ``ValueError`` with the
one-line message the ``diten`` command prints.

>>> import diten
>>> env = diten.Env(servers=15, users=20, emd=0.2, seed=1)
>>> obs, info = env.reset()
>>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
>>> sorted(info)[:3]
['e', 'energy', 'energy_cmp']
"""

from ._diten import OBS_LAYOUT
from .api import Controller, compare, evaluate, solve
from .env import Env, VecEnv

__all__ = [
    "OBS_LAYOUT",
    "Controller",
    "Env",
    "VecEnv",
    "compare",
    "evaluate",
    "solve",
]

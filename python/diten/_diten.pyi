"""Type stubs of the native module ``diten._diten`` (Rust, PyO3). Use the Python
layer (:mod:`diten`); these classes are its engine."""

from os import PathLike
from typing import Optional, Union

import numpy as np
import numpy.typing as npt

OBS_LAYOUT: str
"""The observation layout id the box observation follows (``diten-obs-v1``)."""

class Sim:
    """One simulator environment (``diten_trainer::sim::Env``)."""

    def __init__(
        self,
        scenario: Union[str, PathLike, None] = None,
        servers: Optional[int] = None,
        users: Optional[int] = None,
        slots: Optional[int] = None,
        seed: Optional[int] = None,
        emd: Optional[float] = None,
    ) -> None: ...
    def reset(self, seed: int) -> None:
        """Starts the episode drawn from ``seed``."""
    def observe(self) -> npt.NDArray[np.float32]:
        """The controller's observation of the current slot, ``[obs_dim]``."""
    def step(self, action: npt.NDArray[np.int64]) -> tuple[float, float, bool, dict]:
        """One slot with the optimal γ: ``(r, e, done, info)``."""
    def instance(self) -> str:
        """The current slot as SPEC §3.1's instance JSON text (no association)."""
    def scenario_toml(self) -> str: ...
    def prev_association(self) -> list[int]: ...
    @property
    def users(self) -> int: ...
    @property
    def servers(self) -> int: ...
    @property
    def slots(self) -> int: ...
    @property
    def t(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def obs_dim(self) -> int: ...

class VecSim:
    """``n`` simulator environments stepped in lockstep without the GIL."""

    def __init__(
        self,
        n: int,
        scenario: Union[str, PathLike, None] = None,
        servers: Optional[int] = None,
        users: Optional[int] = None,
        slots: Optional[int] = None,
        seed: Optional[int] = None,
        emd: Optional[float] = None,
    ) -> None: ...
    def observe(self) -> npt.NDArray[np.float32]:
        """Observations ``[n, obs_dim]``."""
    def step(
        self, actions: npt.NDArray[np.int64]
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.bool_],
    ]:
        """``(obs [n, obs_dim], r [n], e [n], energy [n], done [n])``."""
    def prev_association(self) -> npt.NDArray[np.int64]: ...
    def __len__(self) -> int: ...
    @property
    def obs_dim(self) -> int: ...
    @property
    def users(self) -> int: ...
    @property
    def servers(self) -> int: ...

class Controller:
    """The gateway's controller with a policy file (``.onnx`` or ``.bin``)."""

    def __init__(self, path: Union[str, PathLike]) -> None: ...
    def decide_json(self, instance: str) -> str:
        """``diten solve --policy FILE`` on an instance JSON text."""
    @property
    def users(self) -> int: ...
    @property
    def servers(self) -> int: ...

def solve_json(instance: str) -> str:
    """``diten solve`` on an instance JSON text; the output JSON text."""

def sweep_json(
    command: str,
    policies: list[str],
    scenario: Optional[str] = None,
    servers: list[int] = ...,
    emd: list[float] = ...,
    users: Optional[int] = None,
    slots: Optional[int] = None,
    seeds: Optional[str] = None,
    jobs: Optional[int] = None,
) -> str:
    """The sweep of ``diten evaluate``/``compare``; ``summary.json``'s text."""

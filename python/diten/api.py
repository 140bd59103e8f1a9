"""``diten solve``, the gateway's controller, ``diten evaluate`` and ``diten
compare`` from Python."""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Optional, Sequence, Union

from . import _diten

PathLike = Union[str, os.PathLike]


def solve(instance: dict) -> dict:
    """``diten solve`` on one slot: SPEC §3.1's instance (``params``, ``servers``,
    ``users``, ``association``) in, its output (``association``, ``gamma``,
    ``objective``, ``reward``, ``feasible``, ``utility``, ``servers``) out. The same
    code as the command (strict parsing, the controller's validation, the global γ
    solver); bad input raises ``ValueError`` with the command's one-line message."""
    return json.loads(_diten.solve_json(json.dumps(instance)))


class Controller:
    """The gateway's controller with an exported policy (``.onnx``, converted in
    memory, or a firmware blob ``.bin``), as ``diten solve --policy FILE`` runs it:
    observation, network, best server per user, repair of C2/C3, consolidation,
    improvement, then the global γ solver.

    >>> c = diten.Controller("onnx-models/u20-s15/policy.bin")  # doctest: +SKIP
    >>> c.decide(env.instance())["association"]                 # doctest: +SKIP
    """

    def __init__(self, policy_path: PathLike):
        self.path = os.fspath(policy_path)
        self._native = _diten.Controller(self.path)

    @property
    def users(self) -> int:
        """Users the policy decides for."""
        return self._native.users

    @property
    def servers(self) -> int:
        """Servers the policy chooses among."""
        return self._native.servers

    def decide(self, slot: dict) -> dict:
        """Decides one slot: ``slot`` is SPEC §3.1's instance without
        ``association`` (``prev_server`` of each user is last slot's decision, null
        in the first slot); returns the §3.1 output for the controller's
        association."""
        return json.loads(self._native.decide_json(json.dumps(slot)))


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _seeds(seeds) -> Optional[str]:
    if seeds is None:
        return None
    if isinstance(seeds, str):
        return seeds
    if isinstance(seeds, int):
        return str(seeds)
    return ",".join(str(int(s)) for s in seeds)


def _sweep(command, policies, scenario, servers, emd, users, slots, seeds, jobs, as_frame):
    text = _diten.sweep_json(
        command,
        [str(p) for p in policies],
        scenario=None if scenario is None else os.fspath(scenario),
        servers=[int(s) for s in _as_list(servers)],
        emd=[float(e) for e in _as_list(emd)],
        users=users,
        slots=slots,
        seeds=_seeds(seeds),
        jobs=jobs,
    )
    summary = json.loads(text)
    return to_frame(summary) if as_frame else summary


def to_frame(summary: dict):
    """The rows of a summary as a pandas DataFrame: one row per (policy, servers,
    emd), a column per statistic (``objective_mean``, ``objective_std``, ``cost_total_mean``, ...). Needs pandas."""
    import pandas as pd

    rows = []
    for row in summary["rows"]:
        flat: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, dict):
                for stat, v in value.items():
                    flat[f"{key}_{stat}"] = v
            elif isinstance(value, list) and key == "seeds":
                flat[key] = ",".join(str(s) for s in value)
            else:
                flat[key] = value
        rows.append(flat)
    return pd.DataFrame(rows)


def evaluate(
    policy: Union[str, PathLike],
    *,
    servers: Union[int, Sequence[int], None] = None,
    emd: Union[float, Sequence[float], None] = None,
    seeds: Union[int, str, Sequence[int], None] = None,
    users: Optional[int] = None,
    slots: Optional[int] = None,
    scenario: Optional[PathLike] = None,
    jobs: Optional[int] = None,
    as_frame: bool = False,
):
    """``diten evaluate --policy POLICY --json``: one decision maker (a baseline
    name, ``.onnx``, ``.bin`` or checkpoint) over servers × emd × seeds; returns
    ``summary.json``'s content as a dict, or its rows as a pandas DataFrame with
    ``as_frame=True``. ``seeds`` is a count N (seeds 1..=N), a list or the
    command's text (``"1,4..=6"``). Writes no files."""
    return _sweep("evaluate", [policy], scenario, servers, emd, users, slots, seeds, jobs, as_frame)


def compare(
    policies: Union[str, Sequence[str], None] = None,
    *,
    servers: Union[int, Sequence[int], None] = None,
    emd: Union[float, Sequence[float], None] = None,
    seeds: Union[int, str, Sequence[int], None] = None,
    users: Optional[int] = None,
    slots: Optional[int] = None,
    scenario: Optional[PathLike] = None,
    jobs: Optional[int] = None,
    as_frame: bool = False,
):
    """``diten compare --json``: several decision makers (default: nearest,
    nearest-random, sticky, oracle) on the same episodes; returns the summary as
    :func:`evaluate` does."""
    return _sweep(
        "compare", _as_list(policies), scenario, servers, emd, users, slots, seeds, jobs, as_frame
    )

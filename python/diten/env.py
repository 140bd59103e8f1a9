"""The simulator as a Gymnasium environment (:class:`Env`) and a batch of them
stepped in Rust without the GIL (:class:`VecEnv`)."""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from . import _diten

#: Without a scenario file, the keywords left out take these values (the paper's
#: main setting). With a file, a keyword left out takes the file's value.
DEFAULTS = {"servers": 15, "users": 20, "slots": 750, "seed": 1, "emd": 0.2}

#: Features per user, per server and per (user, server) pair of the dict observation.
USER_FEATURES = ("data_mbit", "prev_data_mbit", "emd", "twin_10kbit")
SERVER_FEATURES = ("q_1e3", "p_1e2", "eps_1e2", "prev_share")
PAIR_FEATURES = ("distance_100m", "migration_100m", "is_prev_server")


def _resolve(scenario, **keywords) -> dict:
    """Keyword arguments for the native classes: the given keywords, and without a
    scenario file the :data:`DEFAULTS` for the others."""
    out: dict[str, Any] = {}
    if scenario is not None:
        out["scenario"] = os.fspath(scenario)
    for key, value in keywords.items():
        if value is None and scenario is None:
            value = DEFAULTS[key]
        if value is not None:
            out[key] = float(value) if key == "emd" else int(value)
    return out


def _check_reward(reward: str) -> str:
    if reward not in ("r", "e"):
        raise ValueError(f"reward: `{reward}` is neither `r` (eq. 25) nor `e` (eq. 22)")
    return reward


def split_observation(obs: np.ndarray, users: int, servers: int) -> dict:
    """The controller's flat observation (layout ``diten-obs-v1``) as a dict of
    per-user ``[U, 4]``, per-server ``[S, 4]`` and per-pair ``[U, S, 3]`` arrays
    (the same numbers, regrouped; feature names in :data:`USER_FEATURES`,
    :data:`SERVER_FEATURES`, :data:`PAIR_FEATURES`). Works on one observation or a
    batch ``[n, obs_dim]``."""
    obs = np.asarray(obs, dtype=np.float32)
    lead = obs.shape[:-1]
    block = 4 + 3 * servers
    per_user = obs[..., : users * block].reshape(*lead, users, block)
    pairs = per_user[..., 4:].reshape(*lead, users, 3, servers)
    return {
        "users": np.ascontiguousarray(per_user[..., :4]),
        "servers": np.ascontiguousarray(
            obs[..., users * block :].reshape(*lead, servers, 4)
        ),
        "pairs": np.ascontiguousarray(np.moveaxis(pairs, -2, -1)),
    }


class Env(gym.Env):
    """One episode of diten's edge network, slot by slot (SPEC §2.2).

    Each step is one slot: the action is the server of every user
    (``MultiDiscrete([S] * U)``); γ is solved to the global optimum by the
    controller's solver, the slot is evaluated by the controller's model, then
    users move and the next slot's images are drawn. An episode is a pure
    function of the scenario and its seed: ``reset(seed=s)`` gives the episode
    ``diten evaluate --seeds s`` runs.

    Args:
        servers, users, slots, seed, emd: S, U, T, the first episode's seed and φ
            of every user. Without ``scenario``: 15, 20, 750, 1 and 0.2. With
            ``scenario``, a keyword overrides the file's value and one left out
            (``None``) keeps it.
        scenario: path of a scenario TOML file (``diten_trainer::scenario``).
        reward: ``"r"``, the learning reward of eq. (25) (barrier and penalty), or
            ``"e"``, the slot's objective of eq. (22).
        observation: ``"box"``: the controller's observation, float32
            ``[obs_dim]`` with ``obs_dim = U·(4+3S) + 4S`` (layout
            ``diten-obs-v1``, what exported policy-v1 models take, so a policy
            trained on it deploys through :class:`diten.Controller` and the
            firmware); ``"dict"``: the same numbers regrouped as ``users
            [U, 4]``, ``servers [S, 4]`` and ``pairs [U, S, 3]``. The policy-v2
            feature set of SPEC §3.2a does not exist in the codebase yet; the dict
            form holds the raw per-user, per-server and per-pair features that
            exist today, so it will change when policy-v2 lands.

    ``step`` returns ``terminated = False`` always and ``truncated = True`` at the
    episode's last slot: the end of an episode is a time limit, not a terminal
    state. ``info`` carries the slot's ``e``, ``r``, mean ``utility``, ``energy``
    (Σ_s C_s, SPEC §2.1b) and its parts ``energy_mig``, ``energy_syn``,
    ``energy_cmp``, ``violations`` (and per constraint ``violations_c2``,
    ``_c3``, ``_c5``), ``feasible``, ``migrations``, ``gamma`` and ``t``.
    Stepping past the end raises ``ValueError``; call ``reset``.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        servers: Optional[int] = None,
        users: Optional[int] = None,
        slots: Optional[int] = None,
        seed: Optional[int] = None,
        emd: Optional[float] = None,
        scenario: Union[str, os.PathLike, None] = None,
        reward: str = "r",
        observation: str = "box",
    ):
        super().__init__()
        self.reward_kind = _check_reward(reward)
        if observation not in ("box", "dict"):
            raise ValueError(f"observation: `{observation}` is neither `box` nor `dict`")
        self.observation_kind = observation
        self._sim = _diten.Sim(
            **_resolve(scenario, servers=servers, users=users, slots=slots, seed=seed, emd=emd)
        )
        self.first_seed = self._sim.seed
        self._episodes = 0
        self.users = self._sim.users
        self.servers = self._sim.servers
        self.slots = self._sim.slots
        self.obs_dim = self._sim.obs_dim
        self.action_space = spaces.MultiDiscrete([self.servers] * self.users)
        if observation == "box":
            # every feature is a size, distance, capacity, share or flag: >= 0
            self.observation_space = spaces.Box(
                0.0, np.inf, shape=(self.obs_dim,), dtype=np.float32
            )
        else:
            u, s = self.users, self.servers
            box = lambda *shape: spaces.Box(0.0, np.inf, shape=shape, dtype=np.float32)  # noqa: E731
            self.observation_space = spaces.Dict(
                {"users": box(u, 4), "servers": box(s, 4), "pairs": box(u, s, 3)}
            )

    def _obs(self):
        obs = self._sim.observe()
        if self.observation_kind == "dict":
            return split_observation(obs, self.users, self.servers)
        return obs

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        """Starts an episode: the one drawn from ``seed`` when given; otherwise the
        constructor's seed on the first reset and the next seeds (seed + 1, + 2,
        ...) after it. Returns ``(observation, info)`` with ``info["seed"]``."""
        super().reset(seed=seed)
        if seed is None:
            seed = self.first_seed + self._episodes
        self._episodes += 1
        self._sim.reset(int(seed))
        return self._obs(), {"seed": int(seed), "t": 0}

    def step(self, action):
        """One slot with ``action`` (the server of each user). Returns
        ``(observation, reward, terminated, truncated, info)``."""
        a = np.asarray(action, dtype=np.int64).reshape(self.users)
        r, e, done, info = self._sim.step(np.ascontiguousarray(a))
        reward = r if self.reward_kind == "r" else e
        return self._obs(), float(reward), False, bool(done), info

    @property
    def t(self) -> int:
        """The current slot index (0-based)."""
        return self._sim.t

    @property
    def seed_of_episode(self) -> int:
        """The seed of the current episode."""
        return self._sim.seed

    def instance(self) -> dict:
        """The current slot as SPEC §3.1's instance (what ``diten solve`` reads),
        without an association: the input of :func:`diten.solve` and
        :meth:`diten.Controller.decide`."""
        return json.loads(self._sim.instance())

    def prev_association(self) -> np.ndarray:
        """Last slot's server of each user (the nearest server at slot 0)."""
        return np.asarray(self._sim.prev_association(), dtype=np.int64)

    def scenario_toml(self) -> str:
        """The resolved scenario as TOML (for ``diten evaluate --scenario``)."""
        return self._sim.scenario_toml()


class VecEnv:
    """``n`` environments of one scenario stepped in lockstep in Rust, the GIL
    released while they step (SB3-style auto-reset, numpy arrays in and out).

    Environment ``i`` runs episodes seeded as the trainer's ``VecEnv`` seeds them
    (``episode_seed(seed, i, k)``); when an episode ends, the returned observation
    is already the next episode's first (the final observation of the ended episode
    is not returned). Keywords as :class:`Env`.

    ``step(actions)`` takes int ``[n, U]`` and returns ``(obs [n, obs_dim] float32,
    reward [n], terminated [n] (all False), truncated [n], info)`` with ``info``
    a dict of arrays: ``e``, ``r``, ``energy``.
    """

    def __init__(
        self,
        n: int,
        servers: Optional[int] = None,
        users: Optional[int] = None,
        slots: Optional[int] = None,
        seed: Optional[int] = None,
        emd: Optional[float] = None,
        scenario: Union[str, os.PathLike, None] = None,
        reward: str = "r",
    ):
        self.reward_kind = _check_reward(reward)
        self._kwargs = _resolve(scenario, servers=servers, users=users, slots=slots, seed=seed, emd=emd)
        self.n = int(n)
        self._sim = _diten.VecSim(self.n, **self._kwargs)
        self.users = self._sim.users
        self.servers = self._sim.servers
        self.obs_dim = self._sim.obs_dim
        self.single_action_space = spaces.MultiDiscrete([self.servers] * self.users)
        self.single_observation_space = spaces.Box(
            0.0, np.inf, shape=(self.obs_dim,), dtype=np.float32
        )

    def __len__(self) -> int:
        return self.n

    def reset(self, seed: Optional[int] = None) -> np.ndarray:
        """Restarts every environment (with base ``seed`` when given); returns the
        observations ``[n, obs_dim]``."""
        if seed is not None:
            self._kwargs["seed"] = int(seed)
            self._sim = _diten.VecSim(self.n, **self._kwargs)
        return self._sim.observe()

    def observe(self) -> np.ndarray:
        """The observations of the current slots, ``[n, obs_dim]`` float32."""
        return self._sim.observe()

    def prev_association(self) -> np.ndarray:
        """Last slot's server of each user in each environment, int64 ``[n, U]``."""
        return self._sim.prev_association()

    def step(self, actions):
        """One slot in every environment; see the class docs."""
        a = np.ascontiguousarray(np.asarray(actions, dtype=np.int64).reshape(self.n, self.users))
        obs, r, e, energy, done = self._sim.step(a)
        reward = r if self.reward_kind == "r" else e
        terminated = np.zeros(self.n, dtype=bool)
        return obs, reward, terminated, done, {"e": e, "r": r, "energy": energy}

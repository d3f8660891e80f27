"""Steps N vector envs for a learner (DQN, PQN, tabular Q-learning) and keeps the episode bookkeeping.

Gymnasium 1.x vector envs reset with the *next* step: after an episode ends, the following `step` ignores its
action and only maps the final observation to the new episode's first one. That step is no transition, so it
comes back with `valid=False`. Termination (no bootstrapping) and truncation (bootstrap from the final obs) stay
apart, and an Atari life loss counts as a terminal for the learner while the game and its score go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from envs.factory import EnvConfig, make_vec_env
from envs.snapshot import env_state, is_snapshotable, restore_env_state
from lab.errors import LabError


@dataclass
class EnvStep:
    """One step of every env, as tensors on the learner's device."""

    obs: torch.Tensor  # the observation each action was taken in
    actions: torch.Tensor
    rewards: torch.Tensor  # what the learner sees (sign-clipped on Atari)
    next_obs: torch.Tensor
    terminal: torch.Tensor  # no bootstrapping: the episode (or, on Atari, a life) ended
    truncated: torch.Tensor  # time limit: bootstrap from next_obs
    valid: torch.Tensor  # False on Gymnasium's autoreset steps, which are no transition


class EnvRunner:
    def __init__(self, env_cfg: EnvConfig, seed: int, device: torch.device) -> None:
        self.envs = make_vec_env(env_cfg.id, env_cfg.num_envs, **env_cfg.kwargs)
        action_space = self.envs.single_action_space
        if not hasattr(action_space, "n"):
            raise LabError(f"env '{env_cfg.id}' has {type(action_space).__name__} actions; "
                           "value-based agents need Discrete ones")
        self.n_actions = int(action_space.n)
        self.num_envs, self.device, self.seed = env_cfg.num_envs, device, seed
        obs, _ = self.envs.reset(seed=seed)
        self.obs = self._to_device(obs)
        self.autoreset = np.zeros(self.num_envs, dtype=bool)  # envs whose next step is Gymnasium's reset step
        self.episode_return = np.zeros(self.num_envs)  # raw game score on Atari
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self.env_steps = 0
        self.in_flight: torch.Tensor | None = None  # actions sent whose step is not received yet

    @property
    def steps_in_background(self) -> bool:
        """ale-py's vector env plays its games in C++ threads between `send` and `recv`, so a learner can update
        meanwhile; other vector envs step when the result is asked for."""
        return hasattr(self.envs, "send") and hasattr(self.envs, "recv")

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def step(self, actions: torch.Tensor) -> tuple[EnvStep, dict[str, float]]:
        self.send(actions)
        return self.receive()

    def send(self, actions: torch.Tensor) -> None:
        """Start a step of every env with these actions (taken in `self.obs`); `receive` ends it."""
        if self.in_flight is not None:
            raise RuntimeError("a step is already in flight: receive it before sending the next")
        if self.steps_in_background:
            self.envs.send(actions.cpu().numpy())
        self.in_flight = actions  # only once sent: draining waits for a step only if one was started

    def receive(self) -> tuple[EnvStep, dict[str, float]]:
        """The step that `send` started, as tensors on the learner's device, with finished episodes' metrics."""
        actions, self.in_flight = self.in_flight, None
        if actions is None:
            raise RuntimeError("no step in flight: send actions first")
        if self.steps_in_background:
            next_obs, rewards, terminated, truncated, info = self.envs.recv()
        else:
            next_obs, rewards, terminated, truncated, info = self.envs.step(actions.cpu().numpy())
        valid = ~self.autoreset
        step = EnvStep(obs=self.obs, actions=actions, rewards=self._to_device(rewards.astype(np.float32)),
                       next_obs=self._to_device(next_obs),
                       terminal=self._to_device(terminated | info.get("life_lost", False)),
                       truncated=self._to_device(truncated), valid=self._to_device(valid))
        self.obs = step.next_obs
        self.episode_return += info.get("raw_reward", rewards) * valid
        self.episode_length += valid
        done = (terminated | truncated) & valid
        metrics: dict[str, float] = {}
        if done.any():
            metrics["episode_return"] = float(self.episode_return[done].mean())
            metrics["episode_length"] = float(self.episode_length[done].mean())
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
        self.autoreset = terminated | truncated
        self.env_steps += self.num_envs
        return step, metrics

    def state_dict(self) -> dict[str, Any]:
        """The state after the last received step; a step in flight is not part of it (envs that step in the
        background are native engines, which start fresh episodes on restore anyway)."""
        return {"obs": self.obs, "autoreset": self.autoreset, "episode_return": self.episode_return,
                "episode_length": self.episode_length, "env_steps": self.env_steps,
                "envs": env_state(self.envs) if is_snapshotable(self.envs) else None}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore; returns False when the envs could not continue mid-episode (native engines such as ALE and
        Box2D) and fresh episodes were started instead."""
        self.drain()
        self.env_steps = state["env_steps"]
        self.episode_return = state["episode_return"].copy()
        self.episode_length = state["episode_length"].copy()
        if state["envs"] is not None and is_snapshotable(self.envs):
            restore_env_state(self.envs, state["envs"])
            self.obs = state["obs"].to(self.device)
            self.autoreset = state["autoreset"].copy()
            return True
        obs, _ = self.envs.reset(seed=self.seed + self.env_steps)
        self.obs = self._to_device(obs)
        self.autoreset[:] = False
        self.episode_return[:] = 0.0
        self.episode_length[:] = 0
        return False

    def drain(self) -> None:
        """Wait for a step in flight and drop it."""
        if self.in_flight is not None:
            self.in_flight = None
            if self.steps_in_background:
                self.envs.recv()

    def close(self) -> None:
        self.drain()
        self.envs.close()

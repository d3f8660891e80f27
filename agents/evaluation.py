"""The evaluation protocol shared by every agent and by the benchmarks' peers: greedy policy, a separate set
of eval envs with fixed seeds, N full episodes played side by side with one batched forward per step.
Atari games are evaluated in ale-py's vector env with the training preprocessing but without its training-only
signals: full games, raw scores."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from envs.atari import ATARI_DEFAULTS, fire_action, is_atari, make_atari_vec_env
from envs.factory import make_env

EVAL_SEED_OFFSET = 1_000_000  # eval episodes never share seeds with training envs
RELAUNCH_STEPS = 2  # Atari: steps of FIRE after a lost life


class EpisodeEvaluator:
    """Holds N eval envs (created once, re-seeded per evaluation) and plays one episode on each."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs or {})
        self.envs: list[gym.Env] = []
        self.vector_env: gym.vector.VectorEnv | None = None
        self.fire: int | None = None  # Atari: FIRE's action index where a lost life needs it to go on

    def __call__(self, act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> dict[str, float]:
        if is_atari(self.env_id):
            return self._play_vector(act, episodes, seed)
        while len(self.envs) < episodes:
            self.envs.append(make_env(self.env_id, **self.env_kwargs))
        envs = self.envs[:episodes]
        obs = np.stack([env.reset(seed=seed + EVAL_SEED_OFFSET + i)[0] for i, env in enumerate(envs)])
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        active = np.ones(episodes, dtype=bool)
        while active.any():
            playing = np.flatnonzero(active)
            actions = act(obs[playing])
            for i, action in zip(playing, actions):
                obs[i], reward, terminated, truncated, _ = envs[i].step(action)
                returns[i] += reward
                lengths[i] += 1
                active[i] = not (terminated or truncated)
        return summarize(returns, lengths)

    def _play_vector(self, act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> dict[str, float]:
        if self.vector_env is None or self.vector_env.num_envs != episodes:
            if self.vector_env is not None:
                self.vector_env.close()
            kwargs = {**self.env_kwargs, "episodic_life": False, "clip_rewards": False}
            self.vector_env = make_atari_vec_env(self.env_id, episodes, **kwargs)
            options = {**ATARI_DEFAULTS, **self.env_kwargs}
            self.fire = fire_action(self.env_id, options["full_action_space"]) if options["use_fire_reset"] else None
        obs, info = self.vector_env.reset(seed=seed + EVAL_SEED_OFFSET)
        lives = info["lives"]
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        active = np.ones(episodes, dtype=bool)
        relaunch = np.zeros(episodes, dtype=np.int64)  # steps of FIRE still to press
        while active.any():  # finished games keep stepping (one batched call for all); their steps are not counted
            actions = np.asarray(act(obs))
            if self.fire is not None:
                # FIRE after a lost life, as at a game's start (use_fire_reset): in Breakout the ball waits for
                # it, and a greedy policy that never learnt to relaunch would stall until the frame cap. Two
                # steps, so that sticky actions cannot swallow it.
                actions = np.where(relaunch > 0, self.fire, actions)
            obs, rewards, terminated, truncated, info = self.vector_env.step(actions)
            lost = (info["lives"] < lives) & ~(terminated | truncated)
            relaunch = np.where(lost, RELAUNCH_STEPS, np.maximum(relaunch - 1, 0))
            lives = info["lives"]
            returns += rewards * active
            lengths += active
            active &= ~(terminated | truncated)
        return summarize(returns, lengths)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []
        if self.vector_env is not None:
            self.vector_env.close()
            self.vector_env = None


def summarize(returns: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    return {"mean_return": float(returns.mean()), "std_return": float(returns.std()),
            "episodes": len(returns), "mean_length": float(lengths.mean())}

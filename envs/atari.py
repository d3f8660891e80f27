"""Atari through ale-py's native vector env: N games stepped by C++ threads, preprocessed there.

The standard preprocessing (Mnih et al. 2015; Machado et al. 2018) runs inside ale-py: 84×84 grey frames,
frame-skip 4 with a max over the last two frames, a stack of the last 4, up to 30 no-op starts, FIRE on reset in
games that need it, no sticky actions unless asked for. A reset obs is zero-padded: [0, 0, 0, f₀].

The two training-only signals — life loss as a terminal and clipped rewards — are *not* left to ale-py, whose
episodic-life mode restarts the whole game at every lost life. `AtariTrainingSignals` computes them beside the
real game, so episodes (and the returns the lab reports) are always full games with raw scores, while the learner
sees `info["life_lost"]` and sign-clipped rewards.
"""
from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np

from lab.errors import LabError, did_you_mean

ATARI_DEFAULTS: dict[str, Any] = {
    "frameskip": 4,
    "maxpool": True,
    "stack_num": 4,
    "img_height": 84,
    "img_width": 84,
    "grayscale": True,
    "noop_max": 30,
    "use_fire_reset": True,
    "repeat_action_probability": 0.0,  # sticky actions: 0.25 for the Machado et al. protocol
    "full_action_space": False,
    "max_num_frames_per_episode": 108_000,  # 30 minutes of play
}
TRAINING_SIGNALS = ("episodic_life", "clip_rewards")


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def register_atari() -> None:
    """Make the ALE/… ids known to Gymnasium (ale-py registers them when asked)."""
    import ale_py

    gym.register_envs(ale_py)


def atari_game(env_id: str) -> str:
    """'ALE/Pong-v5' → 'pong', the ROM name ale-py's vector env takes."""
    register_atari()
    return gym.spec(env_id).kwargs["game"]


def make_atari_vec_env(env_id: str, num_envs: int, episodic_life: bool = True, clip_rewards: bool = True,
                       num_threads: int = 0, **kwargs: Any) -> gym.vector.VectorEnv:
    """`num_envs` games with the standard preprocessing; `kwargs` override ATARI_DEFAULTS (any keyword of
    `ale_py.AtariVectorEnv`). `episodic_life` and `clip_rewards` are the training-only signals: leave them
    off for evaluation."""
    from ale_py import AtariVectorEnv

    check_atari_options(kwargs)
    options = {**ATARI_DEFAULTS, **kwargs}
    envs = AtariVectorEnv(atari_game(env_id), num_envs, num_threads=num_threads, episodic_life=False,
                          life_loss_info=False, reward_clipping=False, **options)
    if episodic_life or clip_rewards:
        envs = AtariTrainingSignals(envs, episodic_life, clip_rewards)
    return envs


def check_atari_options(kwargs: dict[str, Any]) -> None:
    """Unknown keys in `env.kwargs` become a one-line error naming the key, not a TypeError from ale-py."""
    from ale_py import AtariVectorEnv

    # ale-py's own training signals are replaced by the lab's (see the module docstring); the learners step every
    # game each call with next-step autoreset, so ale-py's asynchronous batches and other reset modes are out.
    reserved = {"game", "num_envs", "episodic_life", "life_loss_info", "reward_clipping", "batch_size",
                "autoreset_mode"}
    accepted = [name for name in inspect.signature(AtariVectorEnv).parameters if name not in reserved]
    for key in kwargs:
        if key not in accepted:
            raise LabError(f"env.kwargs.{key} is not an Atari option{did_you_mean(key, accepted)}; accepted: "
                           f"{', '.join(sorted(accepted))} (and episodic_life, clip_rewards for training)")


class AtariTrainingSignals(gym.vector.VectorWrapper):
    """Adds the learner's view of a step without changing the game: `info["life_lost"]` (a life ended but the
    game goes on: a terminal for bootstrapping only) and sign-clipped rewards, with the raw score kept in
    `info["raw_reward"]`."""

    def __init__(self, env: gym.vector.VectorEnv, episodic_life: bool, clip_rewards: bool) -> None:
        super().__init__(env)
        self.episodic_life, self.clip_rewards = episodic_life, clip_rewards
        self.lives = np.zeros(env.num_envs, dtype=np.int64)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.lives = info["lives"].astype(np.int64)
        return obs, info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        """Start a step; ale-py's threads play it while the caller does other work."""
        self.env.send(actions)

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Wait for the step `send` started."""
        obs, rewards, terminated, truncated, info = self.env.recv()
        lives = info["lives"].astype(np.int64)
        # A decrease of lives that did not end the game (an autoreset step only ever raises them).
        info["life_lost"] = (lives < self.lives) & ~terminated if self.episodic_life else np.zeros_like(terminated)
        self.lives = lives
        info["raw_reward"] = rewards
        if self.clip_rewards:
            rewards = np.sign(rewards).astype(np.float32)
        return obs, rewards, terminated, truncated, info

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

import functools
import inspect
import numbers
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


@functools.cache  # loading the ROM prints ale-py's banner: once a process is enough
def fire_action(env_id: str, full_action_space: bool = False) -> int | None:
    """The index of FIRE in the game's action set, or None for a game without it."""
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(atari_game(env_id)))
    actions = list(ale.getLegalActionSet() if full_action_space else ale.getMinimalActionSet())
    return actions.index(ale_py.Action.FIRE) if ale_py.Action.FIRE in actions else None


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


# What each option's value may be: ale-py itself hangs on some (stack_num 0) and raises tracebacks on others.
def _int_at_least(low: int) -> Any:
    return lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low, f"an integer ≥ {low}"


_IS_BOOL = (lambda v: isinstance(v, bool | np.bool_), "true or false")
OPTION_VALUES: dict[str, tuple[Any, str]] = {
    "frameskip": _int_at_least(1), "stack_num": _int_at_least(1), "img_height": _int_at_least(1),
    "img_width": _int_at_least(1), "noop_max": _int_at_least(0), "max_num_frames_per_episode": _int_at_least(1),
    "maxpool": _IS_BOOL, "use_fire_reset": _IS_BOOL, "full_action_space": _IS_BOOL,
    "repeat_action_probability": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 1,
                                  "a probability in [0, 1]"),
    # The learners' torsos read stacks of grey frames (C×H×W); colour frames would add a fourth axis.
    "grayscale": (lambda v: v is True, "true: the lab's Atari learners read stacks of grey frames"),
}


def check_atari_options(kwargs: dict[str, Any]) -> None:
    """Unknown keys and values out of range in `env.kwargs` become a one-line error naming the key, not a
    TypeError, a traceback or a hang inside ale-py."""
    from ale_py import AtariVectorEnv

    # ale-py's own training signals are replaced by the lab's (see the module docstring); the learners step every
    # game each call with next-step autoreset, so ale-py's asynchronous batches and other reset modes are out.
    reserved = {"game", "num_envs", "episodic_life", "life_loss_info", "reward_clipping", "batch_size",
                "autoreset_mode"}
    accepted = [name for name in inspect.signature(AtariVectorEnv).parameters if name not in reserved]
    for key, value in kwargs.items():
        if key not in accepted:
            raise LabError(f"env.kwargs.{key} is not an Atari option{did_you_mean(key, accepted)}; accepted: "
                           f"{', '.join(sorted(accepted))} (and episodic_life, clip_rewards for training)")
        valid, expected = OPTION_VALUES.get(key, (lambda v: True, ""))
        if not valid(value):
            raise LabError(f"env.kwargs.{key} = {value!r}: must be {expected}")


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

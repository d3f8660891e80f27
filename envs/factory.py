"""Env factories: vectorized training envs and single evaluation envs from a Gymnasium id."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
from pydantic import Field, field_validator

from envs.atari import is_atari, make_atari_vec_env, register_atari
from lab.config import Section
from lab.errors import LabError, did_you_mean


def check_env_id(env_id: str) -> None:
    if is_atari(env_id):
        register_atari()
    if env_id not in gym.registry:
        raise LabError(f"unknown environment '{env_id}'{did_you_mean(env_id, gym.registry)}")


def make_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    check_env_id(env_id)
    return gym.make(env_id, render_mode=render_mode, **kwargs)


def make_vec_env(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """N copies (Gymnasium 1.x next-step autoreset). Atari games run in ale-py's threaded native vector env
    (`kwargs` are `envs.atari.make_atari_vec_env`'s); anything else in one process, since cheap
    classic-control and toy-text envs gain nothing from subprocesses (`kwargs` are gym.make's)."""
    check_env_id(env_id)
    if is_atari(env_id):
        return make_atari_vec_env(env_id, num_envs, **kwargs)
    return gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)])


class EnvConfig(Section):
    """The `env:` section of agent configs."""

    id: str = "CartPole-v1"
    num_envs: int = Field(1, gt=0)
    kwargs: dict[str, Any] = Field({}, description="gym.make keyword arguments, e.g. {max_episode_steps: 200}")

    @field_validator("id")
    @classmethod
    def _known(cls, env_id: str) -> str:
        try:
            check_env_id(env_id)
        except LabError as err:
            raise ValueError(str(err)) from None
        return env_id

"""Env factories: vectorized training envs and single evaluation envs from a Gymnasium id."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
from pydantic import Field, field_validator

from lab.config import Section
from lab.errors import LabError, did_you_mean


def check_env_id(env_id: str) -> None:
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    if env_id not in gym.registry:
        raise LabError(f"unknown environment '{env_id}'{did_you_mean(env_id, gym.registry)}")


def make_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    check_env_id(env_id)
    return gym.make(env_id, render_mode=render_mode, **kwargs)


def make_vec_env(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """N copies in one process (Gymnasium 1.x next-step autoreset): cheap classic-control and toy-text envs
    gain nothing from subprocesses on a small machine. `kwargs` are gym.make's (incl. max_episode_steps)."""
    check_env_id(env_id)
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

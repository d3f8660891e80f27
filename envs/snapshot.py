"""Snapshots of Python-level env state, so a resumed DQN run continues mid-episode bit for bit.

Works for envs whose state is plain attributes (numbers, numpy arrays, numpy Generators): classic control,
toy text and the lab's own games. Envs backed by native engines (Box2D, ALE) are not snapshotable; a resumed
run then starts fresh episodes.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

SNAPSHOTABLE_MODULES = ("gymnasium.envs.classic_control", "gymnasium.envs.toy_text", "envs.games")
_PLAIN = (bool, int, float, str, type(None))


def is_snapshotable(vec_env: gym.vector.VectorEnv) -> bool:
    if not isinstance(vec_env, gym.vector.SyncVectorEnv):
        return False
    return all(type(env.unwrapped).__module__.startswith(SNAPSHOTABLE_MODULES) for env in vec_env.envs)


def _capture(value: Any) -> tuple[bool, Any]:
    if isinstance(value, _PLAIN):
        return True, value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":  # numeric state; maps (bytes) are static
        return True, value.copy()
    if isinstance(value, np.generic):
        return True, value.item()
    if isinstance(value, np.random.Generator):
        return True, {"__bit_generator__": value.bit_generator.state}
    if isinstance(value, (list, tuple)):
        items = [_capture(v) for v in value]
        if all(ok for ok, _ in items):
            return True, {"__sequence__": [v for _, v in items], "tuple": isinstance(value, tuple)}
    return False, None


def _restore(current: Any, saved: Any) -> Any:
    if isinstance(saved, dict) and "__bit_generator__" in saved:
        current.bit_generator.state = saved["__bit_generator__"]
        return current
    if isinstance(saved, dict) and "__sequence__" in saved:
        items = [_restore(None, v) for v in saved["__sequence__"]]
        return tuple(items) if saved["tuple"] else items
    if isinstance(saved, np.ndarray):
        return saved.copy()
    return saved


def _object_state(obj: Any) -> dict[str, Any]:
    state = {}
    for name, value in vars(obj).items():
        ok, captured = _capture(value)
        if ok:
            state[name] = captured
    return state


def env_state(vec_env: gym.vector.SyncVectorEnv) -> dict[str, Any]:
    """Plain-attribute state of a SyncVectorEnv and of every wrapper layer of each sub-env."""
    layers = []
    for env in vec_env.envs:
        chain = []
        while True:
            chain.append(_object_state(env))
            if not hasattr(env, "env"):
                break
            env = env.env
        layers.append(chain)
    return {"vector": _object_state(vec_env), "envs": layers}


def restore_env_state(vec_env: gym.vector.SyncVectorEnv, state: dict[str, Any]) -> None:
    def apply(obj: Any, saved: dict[str, Any]) -> None:
        for name, value in saved.items():
            setattr(obj, name, _restore(getattr(obj, name, None), value))

    apply(vec_env, state["vector"])
    for env, chain in zip(vec_env.envs, state["envs"]):
        for saved in chain:
            apply(env, saved)
            env = getattr(env, "env", env)

"""How a person drives an env from the keyboard, and what its actions are called.

An env's own ``get_keys_to_action()`` (the lab's games, Atari) is used where it has one. Gymnasium's classic
control and toy text envs get the defaults below; any other env with discrete actions gets the digit keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import pygame

from lab.errors import LabError

DIGIT_KEYS = [pygame.K_1, pygame.K_2, pygame.K_3, pygame.K_4, pygame.K_5, pygame.K_6, pygame.K_7, pygame.K_8,
              pygame.K_9, pygame.K_0]

# What the actions of envs without get_action_meanings() do, by env family: the env class's name without "Env",
# so variants (FrozenLake8x8-v1, LunarLander-v3) share an entry.
ACTION_NAMES = {
    "CartPole": ["push left", "push right"],
    "MountainCar": ["push left", "no push", "push right"],
    "Acrobot": ["torque -1", "torque 0", "torque +1"],
    "LunarLander": ["nothing", "left engine", "main engine", "right engine"],
    "FrozenLake": ["left", "down", "right", "up"],
    "CliffWalking": ["up", "right", "down", "left"],
    "Taxi": ["south", "north", "east", "west", "pick up", "drop off"],
    "Blackjack": ["stick", "hit"],
    "Catch": ["stay", "left", "right"],
    "Snake": ["keep heading", "up", "right", "down", "left"],
}

# Keys for Gymnasium's classic control and toy text envs, by family: ({key: action}, idle action or None). Idle
# is the action taken while no mapped key is held; None makes the game wait for a key (CartPole has no "do
# nothing" action; grid worlds are turn-based). These win over an env's own mapping: MountainCar's uses pygame 1
# key codes, which pygame 2 never sends.
DEFAULT_KEYS: dict[str, tuple[dict[int, int], int | None]] = {
    "CartPole": ({pygame.K_LEFT: 0, pygame.K_RIGHT: 1}, None),
    "MountainCar": ({pygame.K_LEFT: 0, pygame.K_RIGHT: 2}, 1),
    "Acrobot": ({pygame.K_LEFT: 0, pygame.K_RIGHT: 2}, 1),
    "LunarLander": ({pygame.K_LEFT: 1, pygame.K_UP: 2, pygame.K_RIGHT: 3}, 0),
    "FrozenLake": ({pygame.K_LEFT: 0, pygame.K_DOWN: 1, pygame.K_RIGHT: 2, pygame.K_UP: 3}, None),
    "CliffWalking": ({pygame.K_UP: 0, pygame.K_RIGHT: 1, pygame.K_DOWN: 2, pygame.K_LEFT: 3}, None),
    "Taxi": ({pygame.K_DOWN: 0, pygame.K_UP: 1, pygame.K_RIGHT: 2, pygame.K_LEFT: 3, pygame.K_z: 4, pygame.K_x: 5},
             None),
    "Blackjack": ({pygame.K_DOWN: 0, pygame.K_UP: 1}, None),
}


@dataclass(frozen=True)
class Controls:
    """Key combinations (sorted pygame key codes) to actions, as Gymnasium's ``play`` reads them."""

    mapping: dict[tuple[int, ...], int]
    idle: int | None  # action while no known combination is held; None: no step until one is

    @property
    def keys(self) -> frozenset[int]:
        return frozenset(key for combo in self.mapping for key in combo)

    def action(self, held: set[int]) -> int | None:
        combo = tuple(sorted(held & self.keys))
        return self.mapping.get(combo, self.idle)


def _family(env: gym.Env) -> str:
    return type(env.unwrapped).__name__.removesuffix("Env")


def action_names(env: gym.Env) -> list[str]:
    n = int(env.action_space.n)
    if hasattr(env.unwrapped, "get_action_meanings"):
        return [name.lower() for name in env.unwrapped.get_action_meanings()]
    names = ACTION_NAMES.get(_family(env), [])
    return names if len(names) == n else [f"action {i}" for i in range(n)]


def controls_for(env: gym.Env) -> Controls:
    """The keyboard mapping of an env with discrete actions (see the module docstring for where it comes from)."""
    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise LabError(f"'{env_id}' has {type(env.action_space).__name__} actions; "
                       "keyboard play needs Discrete ones")
    if _family(env) in DEFAULT_KEYS:
        keys, idle = DEFAULT_KEYS[_family(env)]
        return Controls({(key,): action for key, action in keys.items()}, idle)
    if hasattr(env.unwrapped, "get_keys_to_action"):
        mapping = {}
        for combo, action in env.unwrapped.get_keys_to_action().items():
            # Atari names keys by character ('a', ' '); pygame's codes for those keys are the same ordinals.
            mapping[tuple(sorted(ord(k) if isinstance(k, str) else int(k) for k in combo))] = int(action)
        idle = mapping.pop((), None)
        meanings = env.unwrapped.get_action_meanings() if hasattr(env.unwrapped, "get_action_meanings") else []
        if idle is None and "NOOP" in meanings:  # Atari maps no key to NOOP implicitly
            idle = meanings.index("NOOP")
        return Controls(mapping, idle)
    n = min(int(env.action_space.n), len(DIGIT_KEYS))
    return Controls({(DIGIT_KEYS[action],): action for action in range(n)}, None)


def key_label(key: int) -> str:
    return pygame.key.name(key) or f"key {key}"


def describe(controls: Controls, names: list[str]) -> list[str]:
    """One 'keys: action' line per action a person can pick, single keys before combinations."""
    combos: dict[int, list[str]] = {}
    for combo, action in sorted(controls.mapping.items(), key=lambda item: (len(item[0]), item[1])):
        combos.setdefault(action, []).append("+".join(key_label(k) for k in combo))
    lines = [f"{' / '.join(labels)}: {names[action]}" for action, labels in sorted(combos.items())]
    if controls.idle is not None:
        lines.append(f"no key: {names[controls.idle]}")
    return lines

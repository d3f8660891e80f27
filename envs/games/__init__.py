"""The lab's own games, written with pygame and registered with Gymnasium under the ``lab/`` namespace.

Each game comes as a vector-state variant (small float32 vector, for an MLP) and a pixel variant
(uint8 H x W x 3 image, for a CNN): ``gymnasium.make("lab/Snake-v0")``, ``"lab/SnakePixels-v0"``,
``"lab/Catch-v0"``, ``"lab/CatchPixels-v0"``. The episode step limit is a truncation.
"""
from __future__ import annotations

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on import otherwise

import gymnasium

# id -> (entry point, keyword arguments, step limit)
GAMES = {
    "lab/Snake-v0": ("envs.games.snake:SnakeEnv", {"obs_type": "state"}, 1000),
    "lab/SnakePixels-v0": ("envs.games.snake:SnakeEnv", {"obs_type": "pixels"}, 1000),
    "lab/Catch-v0": ("envs.games.catch:CatchEnv", {"obs_type": "state"}, 1000),
    "lab/CatchPixels-v0": ("envs.games.catch:CatchEnv", {"obs_type": "pixels"}, 1000),
}

for env_id, (entry_point, kwargs, max_episode_steps) in GAMES.items():
    if env_id not in gymnasium.registry:  # a re-import must not register twice
        gymnasium.register(id=env_id, entry_point=entry_point, kwargs=kwargs, max_episode_steps=max_episode_steps)

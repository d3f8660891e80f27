"""Catch: slide a paddle along the bottom of the field to catch falling fruit and dodge bombs.

Rules: the field is 10 columns by 12 rows. Every 3 to 6 steps (drawn at random) an object appears in
a random column of the top row: a fruit, or with probability 0.25 a bomb. Objects fall one row per
step. The paddle is 2 cells wide, sits on the bottom row and moves at most one cell per step, so
objects that appear far apart in quick succession cannot all be caught. An object reaching the
bottom row is caught if the paddle covers its column. The player has 3 lives; missing a fruit or
catching a bomb costs one, and losing the last terminates the episode. The step limit
(``max_episode_steps`` at registration) truncates it.

Reward: +1 for catching a fruit, -1 for missing a fruit, -1 for catching a bomb, 0 for letting a bomb
fall past.

Actions, ``Discrete(3)``: 0 stay (no-op), 1 left, 2 right.

Observations, by ``obs_type``:

- ``"state"``: float32 vector of 18 values in [-1, 1]: the paddle's position (0 at the left wall, 1 at
  the right), the lives left as a fraction of 3, then 4 slots for the objects in the air, lowest
  first, each: present (1, or 0 for an empty slot filled with zeros), column offset from the
  paddle's centre divided by 9, rows left to fall divided by 11, kind (+1 fruit, -1 bomb).
- ``"pixels"``: uint8 image of shape ``(13 * pixel_scale, 10 * pixel_scale, 3)``, one
  ``pixel_scale``-sized square per cell: a top strip with one pink cell per life, then the field with
  fruit green, bombs red, the paddle white, empty black.
"""
from __future__ import annotations

import math

import numpy as np
import pygame
from gymnasium import spaces

from envs.games.screen import PygameGame

WIDTH = 10
HEIGHT = 12
PADDLE_ROW = HEIGHT - 1
PADDLE_WIDTH = 2
LIVES = 3
MIN_SPAWN_GAP, MAX_SPAWN_GAP = 3, 6
BOMB_PROBABILITY = 0.25
MAX_OBJECTS = math.ceil(PADDLE_ROW / MIN_SPAWN_GAP)  # the most objects that can be in the air at once

STAY, LEFT, RIGHT = 0, 1, 2

BACKGROUND_COLOR = (0, 0, 0)
LIFE_COLOR = (240, 120, 170)
FRUIT_COLOR = (60, 200, 80)
BOMB_COLOR = (220, 40, 40)
PADDLE_COLOR = (235, 235, 235)
CELL_PIXELS = 32  # size of a cell in render(); the observation uses pixel_scale instead


def _cell_centre(row: int, column: int) -> tuple[int, int]:
    """The on-screen (x, y) centre of a cell; row 0 is the lives strip, the field starts at row 1."""
    return column * CELL_PIXELS + CELL_PIXELS // 2, row * CELL_PIXELS + CELL_PIXELS // 2


class CatchEnv(PygameGame):
    """Catch on a 10 x 12 field; the module docstring gives the rules."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, obs_type: str = "state", pixel_scale: int = 5) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        if obs_type not in ("state", "pixels"):
            raise ValueError(f"obs_type must be 'state' or 'pixels', got {obs_type!r}")
        self.render_mode = render_mode
        self.obs_type = obs_type
        self.pixel_scale = pixel_scale

        self.action_space = spaces.Discrete(3)
        if obs_type == "state":
            self.observation_space = spaces.Box(-1.0, 1.0, shape=(2 + 4 * MAX_OBJECTS,), dtype=np.float32)
        else:
            shape = ((HEIGHT + 1) * pixel_scale, WIDTH * pixel_scale, 3)  # + 1 row for the lives strip
            self.observation_space = spaces.Box(0, 255, shape=shape, dtype=np.uint8)

        # Game state, in JSON values only (lists, since JSON turns tuples into lists): these public
        # attributes and self.np_random are a snapshot that resumes the game exactly.
        self.paddle = 0  # column of the paddle's left cell
        self.objects: list[list] = []  # [row, column, is_bomb] per object in the air, oldest (lowest) first
        self.spawn_countdown = 0  # steps until the next object appears
        self.lives = LIVES
        self.score = 0  # fruit caught

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.paddle = (WIDTH - PADDLE_WIDTH) // 2
        self.objects = []
        self.lives = LIVES
        self.score = 0
        self._spawn()
        if self.render_mode == "human":
            self.render()
        return self._observation(), {"score": self.score, "lives": self.lives}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = int(action)
        if action == LEFT:
            self.paddle = max(self.paddle - 1, 0)
        elif action == RIGHT:
            self.paddle = min(self.paddle + 1, WIDTH - PADDLE_WIDTH)

        reward = 0.0
        still_falling = []
        for row, column, is_bomb in self.objects:
            if row + 1 < PADDLE_ROW:
                still_falling.append([row + 1, column, is_bomb])
                continue
            caught = self.paddle <= column < self.paddle + PADDLE_WIDTH
            if caught and not is_bomb:
                reward += 1.0
                self.score += 1
            elif caught or not is_bomb:  # a bomb caught or a fruit missed
                reward -= 1.0
                self.lives -= 1
        self.objects = still_falling

        self.spawn_countdown -= 1
        if self.spawn_countdown == 0:
            self._spawn()

        terminated = self.lives == 0
        if self.render_mode == "human":
            self.render()
        return self._observation(), reward, terminated, False, {"score": self.score, "lives": self.lives}

    def _spawn(self) -> None:
        column = int(self.np_random.integers(WIDTH))
        is_bomb = bool(self.np_random.random() < BOMB_PROBABILITY)
        self.objects.append([0, column, is_bomb])
        self.spawn_countdown = int(self.np_random.integers(MIN_SPAWN_GAP, MAX_SPAWN_GAP + 1))

    def _observation(self) -> np.ndarray:
        if self.obs_type == "pixels":
            return self._field_image()
        features = [self.paddle / (WIDTH - PADDLE_WIDTH), self.lives / LIVES]
        paddle_centre = self.paddle + (PADDLE_WIDTH - 1) / 2
        for row, column, is_bomb in self.objects:
            column_offset = (column - paddle_centre) / (WIDTH - 1)
            rows_to_fall = (PADDLE_ROW - row) / PADDLE_ROW
            features += [1.0, column_offset, rows_to_fall, -1.0 if is_bomb else 1.0]
        features += [0.0] * 4 * (MAX_OBJECTS - len(self.objects))
        return np.array(features, dtype=np.float32)

    def _field_image(self) -> np.ndarray:
        image = np.zeros((HEIGHT + 1, WIDTH, 3), dtype=np.uint8)
        image[0, : self.lives] = LIFE_COLOR
        for row, column, is_bomb in self.objects:
            image[1 + row, column] = BOMB_COLOR if is_bomb else FRUIT_COLOR
        image[1 + PADDLE_ROW, self.paddle : self.paddle + PADDLE_WIDTH] = PADDLE_COLOR
        return image.repeat(self.pixel_scale, axis=0).repeat(self.pixel_scale, axis=1)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        size = (WIDTH * CELL_PIXELS, (HEIGHT + 1) * CELL_PIXELS)
        canvas = self.canvas(size)
        canvas.fill(BACKGROUND_COLOR)

        for life in range(self.lives):
            pygame.draw.circle(canvas, LIFE_COLOR, _cell_centre(0, life), CELL_PIXELS // 4)
        for row, column, is_bomb in self.objects:
            color = BOMB_COLOR if is_bomb else FRUIT_COLOR
            pygame.draw.circle(canvas, color, _cell_centre(1 + row, column), CELL_PIXELS // 2 - 3)
        paddle_top = (1 + PADDLE_ROW) * CELL_PIXELS + CELL_PIXELS // 2
        paddle = pygame.Rect(self.paddle * CELL_PIXELS, paddle_top, PADDLE_WIDTH * CELL_PIXELS, CELL_PIXELS // 2)
        pygame.draw.rect(canvas, PADDLE_COLOR, paddle)

        return self.present(canvas, f"Catch - score {self.score}")

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        return {
            (): STAY,
            (pygame.K_LEFT,): LEFT,
            (pygame.K_RIGHT,): RIGHT,
            (pygame.K_a,): LEFT,
            (pygame.K_d,): RIGHT,
        }


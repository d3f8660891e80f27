"""Snake: steer a growing snake to apples on a square grid without hitting a wall or itself.

Rules: the snake starts with 3 cells in the middle of the board, heading right, and moves one cell
per step. An action turns it to an absolute direction; turning back onto its own neck is ignored, so
the snake keeps its heading. Eating the apple grows the snake by one cell and puts a new apple on a
random free cell. Moving into a wall or the body ends the game; moving into the cell the tail is
leaving is allowed.

Reward: +1 for each apple, -1 for a crash (the episode terminates), 0 otherwise. Filling the whole
board also terminates the episode. The step limit (``max_episode_steps`` at registration) truncates it.

Actions, ``Discrete(5)``: 0 keep heading (no-op), 1 up, 2 right, 3 down, 4 left.

Observations, by ``obs_type``:

- ``"state"``: float32 vector of 11 values in [-1, 1]: danger up, right, down and left (a wall or
  the body in the next cell; the tail moves on, so it is no danger); the heading one-hot (up, right,
  down, left); the apple's offset from the head in rows and columns divided by ``grid_size - 1``; the
  snake's length as a fraction of the board.
- ``"pixels"``: uint8 image of shape ``(grid_size * pixel_scale, grid_size * pixel_scale, 3)``, one
  ``pixel_scale``-sized square per cell: the head yellow, the body green, the apple red, empty black.
"""
from __future__ import annotations

import numpy as np
import pygame
from gymnasium import spaces

from envs.games.screen import PygameGame

NOOP = 0
DIRECTIONS = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (row, column) steps: up, right, down, left
START_LENGTH = 3

EMPTY_COLOR = (0, 0, 0)
BODY_COLOR = (40, 180, 70)
HEAD_COLOR = (240, 220, 60)
APPLE_COLOR = (220, 40, 40)
CELL_PIXELS = 32  # size of a cell in render(); the observation uses pixel_scale instead


def _cell_rect(cell: list[int], inset: int) -> pygame.Rect:
    """The on-screen square of a board cell, shrunk by inset pixels on each side."""
    row, column = cell
    size = CELL_PIXELS - 2 * inset
    return pygame.Rect(column * CELL_PIXELS + inset, row * CELL_PIXELS + inset, size, size)


class SnakeEnv(PygameGame):
    """Snake on a grid_size x grid_size board; the module docstring gives the rules."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        render_mode: str | None = None,
        obs_type: str = "state",
        grid_size: int = 10,
        pixel_scale: int = 6,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        if obs_type not in ("state", "pixels"):
            raise ValueError(f"obs_type must be 'state' or 'pixels', got {obs_type!r}")
        if grid_size < 2 * START_LENGTH:
            raise ValueError(f"grid_size must be at least {2 * START_LENGTH}, got {grid_size}")
        self.render_mode = render_mode
        self.obs_type = obs_type
        self.grid_size = grid_size
        self.pixel_scale = pixel_scale

        self.action_space = spaces.Discrete(5)
        if obs_type == "state":
            self.observation_space = spaces.Box(-1.0, 1.0, shape=(11,), dtype=np.float32)
        else:
            side = grid_size * pixel_scale
            self.observation_space = spaces.Box(0, 255, shape=(side, side, 3), dtype=np.uint8)

        # Game state, in JSON values only (lists, since JSON turns tuples into lists): these public
        # attributes and self.np_random are a snapshot that resumes the game exactly.
        self.snake: list[list[int]] = []  # [row, column] cells, head first
        self.heading = 1  # index into DIRECTIONS: right
        self.apple = [0, 0]
        self.score = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        middle = self.grid_size // 2
        self.snake = [[middle, middle - offset] for offset in range(START_LENGTH)]
        self.heading = 1  # right
        self.score = 0
        self.apple = self._random_free_cell()
        if self.render_mode == "human":
            self.render()
        return self._observation(), {"score": self.score}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = int(action)
        turning_back = action - 1 == (self.heading + 2) % 4
        if action != NOOP and not turning_back:
            self.heading = action - 1

        row_step, column_step = DIRECTIONS[self.heading]
        head_row, head_column = self.snake[0]
        new_head = [head_row + row_step, head_column + column_step]
        eats = new_head == self.apple

        if self._blocked(new_head, tail_moves=not eats):
            reward, terminated = -1.0, True
        elif eats:
            self.snake.insert(0, new_head)
            self.score += 1
            reward = 1.0
            terminated = len(self.snake) == self.grid_size**2  # the board is full: nothing left to eat
            if not terminated:
                self.apple = self._random_free_cell()
        else:
            self.snake.insert(0, new_head)
            self.snake.pop()
            reward, terminated = 0.0, False

        if self.render_mode == "human":
            self.render()
        return self._observation(), reward, terminated, False, {"score": self.score}

    def _blocked(self, cell: list[int], tail_moves: bool = True) -> bool:
        row, column = cell
        if not (0 <= row < self.grid_size and 0 <= column < self.grid_size):
            return True
        body = self.snake[:-1] if tail_moves else self.snake
        return cell in body

    def _random_free_cell(self) -> list[int]:
        occupied = {tuple(cell) for cell in self.snake}
        free = [
            [row, column]
            for row in range(self.grid_size)
            for column in range(self.grid_size)
            if (row, column) not in occupied
        ]
        return free[int(self.np_random.integers(len(free)))]

    def _observation(self) -> np.ndarray:
        if self.obs_type == "pixels":
            return self._board_image()
        head_row, head_column = self.snake[0]
        # The tail always moves on the next step (the apple is never under it), so it is no danger.
        danger = [float(self._blocked([head_row + dr, head_column + dc])) for dr, dc in DIRECTIONS]
        heading = [float(index == self.heading) for index in range(len(DIRECTIONS))]
        span = self.grid_size - 1
        apple_offset = [(self.apple[0] - head_row) / span, (self.apple[1] - head_column) / span]
        length = [len(self.snake) / self.grid_size**2]
        return np.array(danger + heading + apple_offset + length, dtype=np.float32)

    def _board_image(self) -> np.ndarray:
        board = np.zeros((self.grid_size, self.grid_size, 3), dtype=np.uint8)
        board[self.apple[0], self.apple[1]] = APPLE_COLOR
        for row, column in self.snake[1:]:
            board[row, column] = BODY_COLOR
        board[self.snake[0][0], self.snake[0][1]] = HEAD_COLOR
        return board.repeat(self.pixel_scale, axis=0).repeat(self.pixel_scale, axis=1)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        side = self.grid_size * CELL_PIXELS
        canvas = self.canvas((side, side))
        canvas.fill(EMPTY_COLOR)

        pygame.draw.ellipse(canvas, APPLE_COLOR, _cell_rect(self.apple, inset=4))
        for cell in self.snake[1:]:
            pygame.draw.rect(canvas, BODY_COLOR, _cell_rect(cell, inset=1))
        pygame.draw.rect(canvas, HEAD_COLOR, _cell_rect(self.snake[0], inset=1))

        return self.present(canvas, f"Snake - score {self.score}")

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        return {
            (): NOOP,
            (pygame.K_UP,): 1,
            (pygame.K_RIGHT,): 2,
            (pygame.K_DOWN,): 3,
            (pygame.K_LEFT,): 4,
            (pygame.K_w,): 1,
            (pygame.K_d,): 2,
            (pygame.K_s,): 3,
            (pygame.K_a,): 4,
        }


"""The drawing surface and window every lab game shares, kept out of the game state.

A game draws on `self.canvas(size)` and returns `self.present(canvas, caption)`: an RGB array in `rgb_array`
mode, or the frame shown in a window at the game's `render_fps` in `human` mode. Pygame objects are never part of
the state that snapshots and copies carry.
"""
from __future__ import annotations

import numpy as np
import pygame
from gymnasium import Env


class PygameGame(Env):
    _canvas: pygame.Surface | None = None
    _window: pygame.Surface | None = None
    _clock: pygame.time.Clock | None = None

    def canvas(self, size: tuple[int, int]) -> pygame.Surface:
        if self._canvas is None or self._canvas.get_size() != size:
            self._canvas = pygame.Surface(size)
        return self._canvas

    def present(self, canvas: pygame.Surface, caption: str) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return np.transpose(pygame.surfarray.array3d(canvas), axes=(1, 0, 2))  # pygame is (x, y)
        if self._window is None:
            pygame.display.init()
            self._window = pygame.display.set_mode(canvas.get_size())
            self._clock = pygame.time.Clock()
        pygame.display.set_caption(caption)
        pygame.event.pump()  # keeps the window responsive
        self._window.blit(canvas, (0, 0))
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])
        return None

    def close(self) -> None:
        if self._window is not None:
            pygame.display.quit()
        self._canvas = self._window = self._clock = None

    def __getstate__(self) -> dict:
        # Snapshots carry the game, not the screen: pygame objects can be neither copied nor pickled.
        state = self.__dict__.copy()
        state.update(_canvas=None, _window=None, _clock=None)
        return state

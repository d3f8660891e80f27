"""The interactive window: a resizable pygame display, its event loop, the step clock and screenshots."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pygame

from envs.play.overlay import Overlay, fit
from lab.errors import LabError

MIN_FRAME_RATE = 30  # the window redraws and reads keys at least this often, even when the game steps slowly
MAX_STEPS_PER_FRAME = 8  # a slow machine drops steps rather than freezing the window to catch up


class Script:
    """Key taps posted as pygame events at given frames, for demos and tests: "5:s 6:right 9:q".

    A tap is a key-down before its frame and the key-up before the next, so the keys go through pygame's own
    event queue exactly as typed ones do."""

    def __init__(self, text: str) -> None:  # key names need pygame's display initialised
        self.taps: dict[int, list[int]] = {}
        for item in text.split():
            frame, _, names = item.partition(":")
            try:
                keys = [pygame.key.key_code(name) for name in names.split(",")]
                self.taps.setdefault(int(frame), []).extend(keys)
            except ValueError:
                raise LabError(f"script item '{item}' is not FRAME:KEY[,KEY] (e.g. 5:space)") from None

    def post(self, frame: int) -> None:
        for key in self.taps.get(frame - 1, []):
            pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key))
        for key in self.taps.get(frame, []):
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))


def next_free(directory: Path, stem: str) -> Path:
    """directory/stem-001.png, or the first number not taken: screenshots never overwrite."""
    index = 1
    while (path := directory / f"{stem}-{index:03d}.png").exists():
        index += 1
    return path


NO_DISPLAY = "no display to open a window on (is DISPLAY set?); record instead: lab play RUN_DIR --record out.mp4"


def open_window(size: tuple[int, int], caption: str) -> None:
    # On Linux, no X11 or Wayland display and no driver asked for: say so before SDL prints its own probing errors.
    if sys.platform.startswith("linux") and not any(os.environ.get(name) for name in
                                                    ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")):
        raise LabError(NO_DISPLAY)
    pygame.display.init()
    # With no display SDL falls back to drawing off screen: refuse unless that driver was asked for.
    if pygame.display.get_driver() in ("offscreen", "dummy") and "SDL_VIDEODRIVER" not in os.environ:
        pygame.display.quit()
        raise LabError(NO_DISPLAY)
    try:
        pygame.display.set_mode(size, pygame.RESIZABLE)
    except pygame.error as err:
        pygame.display.quit()
        raise LabError(f"cannot open a window: {err}") from None
    pygame.display.set_caption(caption)


def run_window(overlay: Overlay, caption: str, screenshot_stem: str, screenshot_dir: Path,
               script: str | None = None) -> None:
    """Play until the player finishes or quits; s saves the window to screenshot_dir/STEM-001.png, …"""
    player = overlay.player
    open_window(overlay.size, caption)
    clock = pygame.time.Clock()
    due, frame = 0.0, 0
    try:
        taps = Script(script) if script else None
        while not player.finished:
            if taps is not None:
                taps.post(frame)
            for event in pygame.event.get():
                player.handle(event)
            if player.paused:
                due = 0.0  # resuming must not burst through the steps a pause skipped
                player.advance()  # only a requested single step happens
            else:
                for _ in range(int(due)):
                    player.advance()
                due -= int(due)
            if player.finished:
                break
            window = pygame.display.get_surface()  # a new size after the user resizes the window
            fit(overlay.draw(clock.get_fps()), window)
            pygame.display.flip()
            if player.screenshot_requested:
                player.screenshot_requested = False
                screenshot_dir.mkdir(parents=True, exist_ok=True)
                path = next_free(screenshot_dir, screenshot_stem)
                pygame.image.save(window, str(path))
                print(f"screenshot: {path}")
            rate = max(player.steps_per_second, MIN_FRAME_RATE)
            elapsed = clock.tick(rate) / 1000
            due += min(elapsed * player.steps_per_second, MAX_STEPS_PER_FRAME)
            frame += 1
    finally:
        pygame.display.quit()

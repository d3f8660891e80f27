"""Headless recording: a player's view (the game beside the overlay) as frames, a video file, or an array for W&B.

Frames are the view after each reset and after each step, so an episode of T steps gives T + 1 frames.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from envs.factory import make_env
from envs.play.overlay import Overlay, surface_to_array
from envs.play.player import Player, QAgent

VIDEO_SUFFIXES = (".mp4", ".gif")


def record_frames(overlay: Overlay, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """H×W×3 uint8 views until the player's episodes are done (or `max_frames`)."""
    player = overlay.player
    yield surface_to_array(overlay.draw())
    count = 1
    while (max_frames is None or count < max_frames) and player.advance():
        yield surface_to_array(overlay.draw())
        count += 1


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Stream frames to an .mp4 (H.264 through ffmpeg) or a looping .gif; returns how many were written."""
    import imageio.v2 as imageio

    if path.suffix.lower() == ".gif":
        writer = imageio.get_writer(path, mode="I", duration=1000 / fps, loop=0)  # duration per frame, in ms
    else:
        writer = imageio.get_writer(path, fps=fps, macro_block_size=16)
    count = 0
    with writer:
        for frame in frames:
            writer.append_data(frame)
            count += 1
    return count


@contextmanager
def drawing_off_screen() -> Iterator[None]:
    """SDL's dummy video driver for as long as it lasts. Rendering to arrays needs no display, and SDL probing
    for one prints errors where there is none (e.g. "XDG_RUNTIME_DIR is invalid") or fails outright (a driver
    set for a display that is not there, or set empty). The environment is restored afterwards, so a window
    opened later still finds the display the user chose."""
    before = os.environ.get("SDL_VIDEODRIVER")
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    try:
        yield
    finally:
        if before is None:
            del os.environ["SDL_VIDEODRIVER"]
        else:
            os.environ["SDL_VIDEODRIVER"] = before


def record_episode(task: Any, max_frames: int = 500) -> np.ndarray:
    """One greedy episode of a trained Q-task (`task.model`, `task.config.env`) with the overlay: T×H×W×3 uint8.

    It plays the first episode of the evaluation protocol (same seed), on an env of its own, so training and
    evaluation state are untouched; for `Tracker.log_video` from the task's `log_media`."""
    from agents.evaluation import EVAL_SEED_OFFSET

    env_cfg = task.config.env
    with drawing_off_screen():
        env = make_env(env_cfg.id, render_mode="rgb_array", **env_cfg.kwargs)
        was_training = task.model.training
        task.model.eval()
        try:
            player = Player(env, QAgent(task.model, task.device), episodes=1,
                            seed=task.config.seed + EVAL_SEED_OFFSET)
            run = Path(task.run_dir).name if task.run_dir is not None else ""
            overlay = Overlay(player, env_cfg.id, f"{run}   evaluation episode".strip())
            return np.stack(list(record_frames(overlay, max_frames)))
        finally:
            task.model.train(was_training)
            env.close()

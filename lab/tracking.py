"""Run tracking: a local `metrics.jsonl` always, and Weights & Biases (offline by default) through `wandb`."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lab.errors import LabError

METRICS_FILE = "metrics.jsonl"


class Tracker:
    """Logs scalars, images, videos and tables. Only rank 0 creates one; other ranks get `enabled=False`."""

    def __init__(self, run_dir: Path, config: dict[str, Any], mode: str, project: str, run_id: str,
                 name: str | None = None, entity: str | None = None, tags: list[str] | None = None,
                 enabled: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.wandb_run = None
        # time/elapsed is training time: a resumed run goes on from its log's last record (after truncation),
        # so the time between stopping and resuming is not counted and time axes stay monotonic.
        trained = max((r.get("time/elapsed", 0.0) for r in read_metrics(run_dir)), default=0.0) if enabled else 0.0
        self.started = time.monotonic() - trained
        if not enabled:
            return
        self._metrics = open(run_dir / METRICS_FILE, "a", encoding="utf-8")
        mode = os.environ.get("WANDB_MODE", mode) if mode != "disabled" else "disabled"
        if mode != "disabled":
            import wandb

            # wandb takes the lab's `agents` package for OpenAI's Agents SDK and advertises its LLM tracer (Weave)
            # at every start; the lab has no use for it. WANDB_DISABLE_WEAVE=false in the environment still wins.
            os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
            self.wandb_run = wandb.init(project=project, entity=entity, name=name or run_dir.name, id=run_id,
                                        dir=str(run_dir), config=config, tags=tags, mode=mode, resume="allow",
                                        settings=wandb.Settings(silent=True, console="off"))

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        # Seconds of training so far: benchmarks plot score against time, not only against steps.
        record = {"step": step, "time/elapsed": round(time.monotonic() - self.started, 3), **metrics}
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for key, value in values.items():
                self.wandb_run.summary[key] = value

    def log_image(self, key: str, path: Path, step: int) -> None:
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({key: wandb.Image(str(path))}, step=step)

    def log_video(self, key: str, frames: np.ndarray, step: int, fps: int = 30) -> None:
        """frames: T×H×W×C uint8, encoded to an mp4 in RUN_DIR/media (wandb itself would need moviepy)."""
        if self.wandb_run is not None:
            import imageio.v2 as imageio
            import wandb

            path = self.run_dir / "media" / f"{key.replace('/', '-')}-{step}.mp4"
            path.parent.mkdir(exist_ok=True)
            imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=16)
            self.wandb_run.log({key: wandb.Video(str(path), format="mp4")}, step=step)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({key: wandb.Table(columns=columns, data=rows)}, step=step)

    @property
    def sync_hint(self) -> str | None:
        """How to upload an offline run later."""
        if self.wandb_run is None or self.wandb_run.settings.mode != "offline":
            return None
        return f"wandb sync {Path(self.wandb_run.dir).parent}"

    def finish(self, exit_code: int = 0) -> None:
        if not self.enabled:
            return
        self._metrics.close()
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's logged records. A torn last line (the process killed mid-write) is left out."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise LabError(f"{path}: line {number} is not JSON; fix or delete that line") from None
    return records


def truncate_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop records logged after the checkpoint we continue from, so the log matches an unbroken run
    (and a torn last line goes, so the next record starts on a line of its own)."""
    from lab.checkpoint import atomic_write_text

    if (run_dir / METRICS_FILE).is_file():
        kept = [r for r in read_metrics(run_dir) if r["step"] <= step]
        atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))

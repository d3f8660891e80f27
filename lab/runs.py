"""Run directories: creating a new one safely, opening an existing one, and loading its trained task."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from lab import checkpoint as ckpt
from lab.checkpoint import atomic_write_json
from lab.config import RunConfig, read_yaml, save_config, validate_config
from lab.devices import resolve_device
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.registry import TASKS
from lab.tracking import METRICS_FILE, read_metrics
from lab.task import Task

RUNS_ROOT = Path("runs")
# The meaning of a saved config.yaml. Runs made before a change of meaning carry an older number (none: 1), and
# their task's `upgrade_config` reads them as they were made, so an old run evaluates and resumes as it trained.
RUN_FORMAT = 2
CONFIG_FILE, RUN_FILE, RESULT_FILE = "config.yaml", "run.json", "result.json"
LOCK_FILE = ".training.lock"  # locked by the process training the run; holds its pid


@contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Held while this process trains the run, so that a second `lab train --resume` of it is refused instead of
    both writing checkpoints and logs. The OS drops the lock when the process ends, however it ends."""
    import fcntl
    import socket

    try:
        descriptor = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:  # a read-only run dir, or another user's run: training could not write there either
        raise LabError(f"cannot train in '{run_dir}' ({error.strerror or error}); resume a copy of it that you "
                       "can write to") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 256).decode(errors="replace").strip() or "?"
            raise LabError(f"'{run_dir}' is being trained by another process ({holder}); wait for it to end, "
                           "or stop it (Ctrl-C writes a checkpoint) and resume then") from None
        except OSError as error:  # a file system without locks (NFS without lockd, some FUSE mounts)
            print(f"note: cannot lock '{run_dir}' ({error.strerror or error}); nothing stops a second process "
                  "from training it at the same time", file=sys.stderr)
        else:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        os.close(descriptor)


def is_training(run_dir: Path) -> bool:
    """Whether a process holds the run's training lock now."""
    import fcntl

    try:
        descriptor = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:  # never trained since locks existed, or not ours to read
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:  # no locks on this file system: nobody can be seen training
        return False
    finally:
        os.close(descriptor)


def default_run_dir(config: RunConfig, config_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return RUNS_ROOT / f"{Path(config_name).stem}-{stamp}"


def create_run_dir(run_dir: Path, config: RunConfig, config_source: str) -> dict[str, Any]:
    """Make a fresh run dir; refuse one that already holds files so nothing saved is overwritten."""
    if run_dir.exists() and not run_dir.is_dir():
        raise LabError(f"run dir '{run_dir}' is a file, not a directory; choose another --run-dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise LabError(f"run dir '{run_dir}' is not empty; resume it with `lab train --resume {run_dir}` "
                       "or choose another --run-dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a parent folder should be, no permission, a read-only disk
        raise LabError(f"cannot make run dir '{run_dir}' ({err.strerror or err}); choose another --run-dir") from None
    info = {"run_id": new_run_id(run_dir), "task": config.task,
            "config_source": config_source, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "format": RUN_FORMAT}
    save_config(config, run_dir / CONFIG_FILE)
    atomic_write_json(run_dir / RUN_FILE, info)
    return info


def discard_new_run_dir(run_dir: Path, existed: bool) -> None:
    """Undo `create_run_dir` when the run could not start (bad input found while building it): the dir was
    absent or empty before, so everything in it now is this command's. A dir the user made is kept, empty."""
    for entry in run_dir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if not existed:
        run_dir.rmdir()


def open_run(run_dir: Path, overrides: list[str] | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """The saved config (with allowed overrides) and run info of an existing run dir."""
    if run_dir.exists() and not run_dir.is_dir():
        raise LabError(f"'{run_dir}' is a file, not a run dir; pass a directory made by `lab train`")
    if not run_dir.is_dir():
        raise LabError(f"run dir '{run_dir}' does not exist")
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / RUN_FILE).is_file():
        raise LabError(f"'{run_dir}' is not a run dir (no {CONFIG_FILE} / {RUN_FILE}); "
                       "pass a directory made by `lab train`")
    info = _read_run_info(run_dir)
    data = read_yaml(run_dir / CONFIG_FILE, written_by_lab=True)
    if isinstance(data.get("task"), str) and data["task"] in TASKS:
        data = TASKS.get(data["task"]).upgrade_config(data, info.get("format", 1))
    if overrides:
        from lab.config import apply_overrides

        for item in overrides:
            section = item.split("=", 1)[0].split(".", 1)[0]
            if section not in ("trainer", "tracking"):
                raise LabError(f"override '{item}': a resumed run keeps its config; only trainer.* and tracking.* "
                               "keys can change")
        data = apply_overrides(data, overrides)
    config = validate_config(data, source=str(run_dir / CONFIG_FILE))
    return config, info


def _read_run_info(run_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LabError(f"{run_dir / RUN_FILE} cannot be read ({error}); the run dir is damaged") from None
    if not isinstance(info, dict) or not isinstance(info.get("format", 1), int):
        raise LabError(f"{run_dir / RUN_FILE} is not a run's record (a JSON object with its id, task and format)")
    return info


def save_resumed_config(run_dir: Path, config: RunConfig, info: dict[str, Any]) -> None:
    """A resume with overrides rewrites config.yaml; what it writes has today's meaning (upgraded when opened),
    so run.json's format moves on with it and no upgrade applies twice."""
    save_config(config, run_dir / CONFIG_FILE)
    atomic_write_json(run_dir / RUN_FILE, {**info, "format": RUN_FORMAT})


def load_trained_task(run_dir: Path, which: str = "best", device: str | None = None) -> tuple[Task, RunConfig, Path]:
    """Rebuild a run's task and load a checkpoint's model weights, ready for evaluation or play."""
    config, _ = open_run(run_dir)
    if device is not None:
        config.device = device
    path = ckpt.find_checkpoint(run_dir, which)
    weights = ckpt.read_model_weights(path)
    torch.manual_seed(config.seed)
    task = TASKS.get(config.task)(config, resolve_device(config.device), run_dir, DistInfo())
    ckpt.load_model_weights(task.model, weights, path)
    task.model.eval()
    return task, config, path


def new_run_id(run_dir: Path) -> str:
    """The W&B run id: the dir's name and a time stamp, so two runs of one name never share a W&B run."""
    return f"{run_dir.name}-{int(time.time() * 1000) % 10**6:06d}"


def restart_run(run_dir: Path, info: dict[str, Any]) -> Path | None:
    """Before a run that saved no checkpoint trains again from step 0: its log so far moves aside (and is
    returned), and it gets a new W&B run id (W&B drops steps lower than a run's last, so the old run would
    swallow the new curve until it passed the old one's end)."""
    info["run_id"] = new_run_id(run_dir)
    atomic_write_json(run_dir / RUN_FILE, info)
    log = run_dir / METRICS_FILE
    if not log.is_file() or log.stat().st_size == 0:
        return None
    kept = run_dir / "metrics-before-restart.jsonl"
    os.replace(log, kept)
    return kept


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """What the trainer wrote to result.json when training last ended (step, evaluations, early stop), if it did."""
    path = run_dir / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def describe_run(run_dir: Path, now: float | None = None) -> dict[str, Any]:
    """One row of `lab runs`: what the run is, how far it got, its best evaluation and how it ended ("training"
    while a process holds its lock; "unfinished" when one stopped or was killed before the end)."""
    info = _read_run_info(run_dir)
    config_file = run_dir / CONFIG_FILE
    trainer = (read_yaml(config_file, written_by_lab=True).get("trainer") or {}) if config_file.is_file() else {}
    root = ckpt.checkpoint_dir(run_dir)
    latest, best = ckpt.read_pointer(root, "latest"), ckpt.read_pointer(root, "best")
    result = read_result(run_dir)
    metrics = run_dir / METRICS_FILE
    saved_step = latest["step"] if latest else None
    logged = read_metrics(run_dir)
    step = max([saved_step or 0] + [r["step"] for r in logged[-1:]]) if latest or logged else None
    max_steps = trainer.get("max_steps")
    if is_training(run_dir):
        status = "training"
    elif result is not None and result.get("step") == saved_step:  # not a result left by a run resumed since
        status = "early stop" if result.get("early_stop") else "finished"
    elif saved_step is not None and max_steps and saved_step >= max_steps:  # a run older than result.json
        status = "finished"
    else:
        status = "unfinished" if step is not None else "not started"
    return {"run": str(run_dir), "task": info.get("task"), "config": info.get("config_source"),
            "created": info.get("created"), "step": step, "max_steps": max_steps,
            "best_metric": best and best.get("metric"), "best": best and best.get("value"),
            "best_step": best and best.get("step"), "status": status,
            "early_stop": result.get("early_stop") if status == "early stop" else None,
            "last_log_s": round((now or time.time()) - metrics.stat().st_mtime) if metrics.is_file() else None}


def list_runs(root: Path = RUNS_ROOT) -> list[dict[str, Any]]:
    """Every run dir directly under `root` (or `root` itself if it is one), oldest first. A run whose files
    cannot be read is listed as unreadable rather than stopping the listing."""
    if not root.is_dir():
        if root == RUNS_ROOT:
            return []  # no run made here yet
        raise LabError(f"'{root}' is not a directory; give the folder your runs are in (default: {RUNS_ROOT}/)")
    def is_run(path: Path) -> bool:
        try:
            return (path / RUN_FILE).is_file()
        except OSError:  # a folder this user may not enter
            return False

    try:
        dirs = [root] if is_run(root) else [p for p in root.iterdir() if is_run(p)]
    except OSError as error:
        raise LabError(f"cannot list '{root}' ({error.strerror or error})") from None
    rows = []
    for run_dir in dirs:
        try:
            rows.append(describe_run(run_dir))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, LabError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            rows.append({"run": str(run_dir), "task": None, "config": None, "created": None, "step": None,
                         "max_steps": None, "best_metric": None, "best": None, "best_step": None,
                         "status": f"unreadable: {reason}", "early_stop": None, "last_log_s": None})
    return sorted(rows, key=lambda row: (row["created"] or "", row["run"]))

"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, each written atomically.

A checkpoint is a directory `checkpoints/step_000001000/` holding `model.safetensors` (the trained network),
`training.safetensors` (optimizer moments, replay buffers, RNG tensors, …) and `state.json` (the rest, with
references into the tensor file). A weights-only checkpoint, `checkpoints/best_step_000001000/`, is the best
checkpoint of a task whose training state is large: it has no `training.safetensors`, so it can be evaluated,
watched and transferred, not resumed. It is assembled in a hidden temp directory and renamed into place, then the
small pointer files `latest.json` / `best.json` are replaced atomically, so a kill -9 at any moment leaves the
previous complete checkpoint loadable.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lab.errors import LabError, did_you_mean

FORMAT_VERSION = 1
MODEL_FILE, TRAINING_FILE, STATE_FILE = "model.safetensors", "training.safetensors", "state.json"


# --- atomic files ----------------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- nested state <-> (tensors, JSON tree) ----------------------------------------------------------------------


def flatten_state(state: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Move every tensor/array of a nested state into `tensors` and return a JSON-able tree that refers to them."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().to("cpu").contiguous()
        return {"__tensor__": prefix}
    if isinstance(state, np.ndarray):
        stored = state.astype(np.int64) if state.dtype.kind == "u" and state.dtype != np.uint8 else state
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(stored))
        return {"__ndarray__": prefix, "dtype": str(state.dtype)}
    if isinstance(state, np.generic):
        return state.item()
    if isinstance(state, dict):
        int_keys = bool(state) and all(isinstance(k, int) for k in state)
        if not int_keys and not all(isinstance(k, str) for k in state):
            raise TypeError(f"state keys at '{prefix}' must be all str or all int")
        tree = {str(k): flatten_state(v, tensors, f"{prefix}/{k}" if prefix else str(k)) for k, v in state.items()}
        return {"__intkeys__": tree} if int_keys else tree
    if isinstance(state, (list, tuple)):
        return [flatten_state(v, tensors, f"{prefix}/{i}") for i, v in enumerate(state)]
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"cannot checkpoint {type(state).__name__} at '{prefix}': use tensors, arrays or JSON values")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__ndarray__" in tree:
            return tensors[tree["__ndarray__"]].numpy().astype(np.dtype(tree["dtype"]), copy=False)
        if "__intkeys__" in tree:
            return {int(k): unflatten_state(v, tensors) for k, v in tree["__intkeys__"].items()}
        return {k: unflatten_state(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


# --- checkpoint directories -----------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    state: dict[str, Any]  # trainer, optimizer, task, rng, meta — tensors restored in place


def write_checkpoint(path: Path, model_state: dict[str, torch.Tensor], state: dict[str, Any],
                     weights_only: bool = False) -> None:
    """Write a checkpoint directory atomically (temp dir + rename). `weights_only`: `state` must hold JSON values
    alone (no tensors) and no training file is written, so the checkpoint cannot be resumed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    tree = flatten_state(state, tensors)
    if weights_only and tensors:
        raise ValueError(f"a weights-only checkpoint keeps no training tensors, but got {sorted(tensors)[:3]}")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}, str(tmp / MODEL_FILE))
    files = [MODEL_FILE, STATE_FILE]
    if not weights_only:
        save_file(tensors, str(tmp / TRAINING_FILE))
        files.append(TRAINING_FILE)
    header = {"format": FORMAT_VERSION, "weights_only": weights_only}
    (tmp / STATE_FILE).write_text(json.dumps({**header, **tree}) + "\n", encoding="utf-8")
    for name in files:
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    if path.exists():  # same step saved twice (e.g. a stop right after a periodic save): swap the old one out
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old)
    else:
        os.rename(tmp, path)
    _fsync_dir(path.parent)


def read_checkpoint(path: Path) -> Checkpoint:
    """Everything needed to resume: the model's weights and the whole training state."""
    tree = _read_state_tree(path)
    if tree.pop("weights_only"):
        raise LabError(f"checkpoint '{path}' holds the model's weights alone (a best checkpoint written without "
                       "the training state), so it cannot be resumed; resume from 'latest'")
    tensors = _read_tensors(path, TRAINING_FILE)
    return Checkpoint(path=path, model=_read_tensors(path, MODEL_FILE), state=unflatten_state(tree, tensors))


def read_model_weights(path: Path) -> dict[str, torch.Tensor]:
    """The trained network's weights alone, for evaluation, play or transfer: the training state is left on
    disk (a DQN's replay memory makes it gigabytes)."""
    _read_state_tree(path)  # a checkpoint of this format, or a clear error
    return _read_tensors(path, MODEL_FILE)


def _read_tensors(path: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path / name))
    except (OSError, ValueError, SafetensorError) as err:
        raise LabError(f"checkpoint '{path}' is damaged or incomplete: {err}") from None


def _read_state_tree(path: Path) -> dict[str, Any]:
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise LabError(f"'{path}' is not a checkpoint (no {STATE_FILE})")
    try:
        tree = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LabError(f"checkpoint '{path}' is damaged or incomplete: {err}") from None
    if tree.pop("format", None) != FORMAT_VERSION:
        raise LabError(f"checkpoint '{path}' has an unknown format; it was written by another version of the lab")
    tree.setdefault("weights_only", False)  # checkpoints written before weights-only ones existed were all full
    return tree


def read_checkpoint_step(path: Path) -> int:
    """The trainer step a checkpoint was written at, read from its state.json alone."""
    step = _read_state_tree(path).get("trainer", {}).get("step")
    if not isinstance(step, int):
        raise LabError(f"checkpoint '{path}' is damaged or incomplete: its state.json holds no trainer step")
    return step


def is_resumable(path: Path) -> bool:
    """A complete checkpoint with its training state (not a weights-only one)."""
    return (path / STATE_FILE).is_file() and (path / TRAINING_FILE).is_file()


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def has_checkpoint(run_dir: Path | None) -> bool:
    """Whether the run has saved any checkpoint: a run being resumed or evaluated, not a fresh one."""
    return run_dir is not None and any(not state.parent.name.startswith(".")  # not a write cut off by a kill
                                       for state in checkpoint_dir(run_dir).glob(f"*/{STATE_FILE}"))


def read_pointer(root: Path, which: str) -> dict[str, Any] | None:
    """What `latest.json` or `best.json` in a checkpoints directory holds ("name", "step", …), or None before
    the first checkpoint of its kind."""
    pointer = root / f"{which}.json"
    if not pointer.is_file():
        return None
    try:
        record = json.loads(pointer.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # written atomically, so only damage from outside the lab gets here
        raise LabError(f"'{pointer}' is damaged ({err}); delete it and the lab falls back to the newest complete "
                       "checkpoint") from None
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise LabError(f"'{pointer}' is damaged (no checkpoint name in it); delete it and the lab falls back to "
                       "the newest complete checkpoint")
    return record


def step_name(step: int, weights_only: bool = False) -> str:
    """Full and weights-only checkpoints of one step have different names, so neither ever replaces the other."""
    return f"best_step_{step:09d}" if weights_only else f"step_{step:09d}"


def find_checkpoint(run_dir: Path, which: str = "latest") -> Path:
    """'latest' (the newest resumable one), 'best' or a checkpoint directory name inside RUN_DIR/checkpoints."""
    root = checkpoint_dir(run_dir)
    if which in ("latest", "best"):
        record = read_pointer(root, which)
        if record is not None and (root / record["name"] / STATE_FILE).is_file():
            return root / record["name"]
        complete = sorted(p for p in root.glob("step_*") if is_resumable(p))
        if complete and which == "latest":
            return complete[-1]
        if which == "best" and complete:
            return find_checkpoint(run_dir, "latest")
        if which == "latest" and any(root.glob("best_step_*")):
            raise LabError(f"'{run_dir}' has no resumable checkpoint yet: its best one holds the model's weights "
                           "alone (lab eval and lab play can use it); start a new run to train further")
        raise LabError(f"'{run_dir}' has no checkpoint yet; train it with: lab train --resume {run_dir}")
    target = root / which
    if not (target / STATE_FILE).is_file():
        names = [p.name for p in root.glob("*step_*")] + ["latest", "best"]
        raise LabError(f"no checkpoint '{which}' in '{root}'{did_you_mean(which, names)}")
    return target


def load_model_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load weights, turning any key or shape mismatch into one clear error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise LabError(f"checkpoint '{source}' does not fit this model ({detail}); was it trained with another config?")
    for key, tensor in weights.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise LabError(f"checkpoint '{source}' does not fit this model: '{key}' has shape "
                           f"{list(tensor.shape)} there but {list(own[key].shape)} here; was it trained with another config?")
    model.load_state_dict(weights)

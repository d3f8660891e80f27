"""Seeding and the RNG state that checkpoints carry, so a resumed run continues bit for bit."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from lab.errors import LabError


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": _numpy_legacy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    legacy = state["numpy"]
    np.random.set_state((legacy["kind"], np.asarray(legacy["keys"], dtype=np.uint32), legacy["pos"],
                         legacy["has_gauss"], legacy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_legacy_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": keys, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def restore_generator(generator: torch.Generator, state: torch.Tensor, name: str) -> None:
    """`generator.set_state`, with a clear error where the checkpoint's state comes from another device type
    (a CUDA generator's state does not fit a CPU one, and back)."""
    if state.numel() != generator.get_state().numel():
        raise LabError(f"the checkpoint's {name} random state was saved on another kind of device than "
                       f"{generator.device.type}: resume with the device (and agent.replay_device) it was trained with")
    generator.set_state(state)

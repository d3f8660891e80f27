"""Device choice: `auto` takes cuda, then mps, then cpu."""
from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch

from lab.errors import LabError


def resolve_device(name: str = "auto") -> torch.device:
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        if cuda:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise LabError("device=cuda but no CUDA GPU is visible to torch; use device=auto or device=cpu")
    if name == "mps" and not mps:
        raise LabError("device=mps but the Apple MPS backend is not available; use device=auto or device=cpu")
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast where it pays off (CUDA); a no-op elsewhere so CPU runs stay bitwise reproducible."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()

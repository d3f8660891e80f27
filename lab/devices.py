"""Device choice (`auto` takes cuda, then mps, then cpu), bf16 autocast, and CUDA-graph replay of a step."""
from __future__ import annotations

import os
from collections.abc import Callable
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


def capture_step(step: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
                 carry: dict[str, torch.Tensor], stream: torch.cuda.Stream) -> Callable[[], None]:
    """Capture one call of `step` on CUDA tensors as a CUDA graph; the returned function replays it.

    `step` maps a dict of tensors to a dict of new tensors with the same names and shapes, and never waits
    for the GPU (no `.item()`, no data-dependent Python branch). A replay computes the outputs from `carry`'s
    current values and writes them over `carry`'s tensors in place, so they are the next replay's inputs:
    one launch a step instead of one per kernel, which is what bounds small steps on a fast GPU.

    Run `step` eagerly at least once first on the same side `stream`, so that lazy set-up (cuBLAS
    workspaces, kernel choice) happens outside the capture. Autocast's cache of cast weights is off inside
    the graph, since a cast cached during capture would live in the graph's private memory.
    """
    graph = torch.cuda.CUDAGraph()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),
                                                   enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False):
        graph.capture_begin(capture_error_mode="thread_local")  # other threads may use CUDA meanwhile
        try:
            outputs = step(carry)
            if outputs.keys() != carry.keys():
                raise ValueError(f"a captured step must return what it takes: {sorted(carry)} -> {sorted(outputs)}")
            for name, tensor in outputs.items():
                carry[name].copy_(tensor)
        finally:
            graph.capture_end()
    torch.cuda.current_stream().wait_stream(stream)
    return graph.replay

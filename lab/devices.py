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


class GraphCaptureWarning(RuntimeWarning):
    """A step could not be captured as a CUDA graph, so it runs eagerly instead."""


# Per CUDA device, for the whole process: the side stream graphs are captured on (cuBLAS keeps a workspace per
# stream, so a fresh stream per capture would pile them up), one memory pool that every capture shares (a
# destroyed graph's private pool stays reserved until the allocator is emptied), and the newest graph, kept
# alive so that the shared pool is never released between captures. Graphs are replayed one search at a time,
# never interleaved, which is what makes sharing the pool safe.
_CAPTURE_RESOURCES: dict[int, dict] = {}


def _capture_resources(device: torch.device) -> dict:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _CAPTURE_RESOURCES:
        with torch.cuda.device(index):
            _CAPTURE_RESOURCES[index] = {"stream": torch.cuda.Stream(), "pool": torch.cuda.graph_pool_handle(),
                                         "newest": None}
    return _CAPTURE_RESOURCES[index]


def capture_stream(device: torch.device) -> torch.cuda.Stream:
    """The side stream on which graphs for `device` are captured; warm-up steps must run on it too."""
    return _capture_resources(device)["stream"]


def capture_step(step: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
                 carry: dict[str, torch.Tensor]) -> Callable[[], None]:
    """Capture one call of `step` on CUDA tensors as a CUDA graph; the returned function replays it.

    `step` maps a dict of tensors to a dict of new tensors with the same names, shapes and dtypes, and never
    waits for the GPU (no `.item()`, no data-dependent Python branch). A replay computes the outputs from
    `carry`'s current values and writes them over `carry`'s tensors in place, so they are the next replay's
    inputs: one launch a step instead of one per kernel, which is what bounds small steps on a fast GPU.

    Run `step` eagerly at least once first on `capture_stream(device)`, so that lazy set-up (cuBLAS
    workspaces, kernel choice) happens outside the capture. Autocast's cache of cast weights is off inside
    the graph, since a cast cached during capture would live in the graph's private memory.
    """
    resources = _capture_resources(next(iter(carry.values())).device)
    stream, graph = resources["stream"], torch.cuda.CUDAGraph()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(stream), torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),
                                                       enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False):
            # thread_local: other threads (pinned-memory loaders, W&B) may use CUDA during the capture
            graph.capture_begin(pool=resources["pool"], capture_error_mode="thread_local")
            try:
                outputs = step(carry)
                _check_same_layout(carry, outputs)
                for name, tensor in outputs.items():
                    carry[name].copy_(tensor)
            finally:
                graph.capture_end()
    except Exception:
        if resources["newest"] is None:  # the shared pool may have been released with this graph: start afresh
            resources["pool"] = torch.cuda.graph_pool_handle()
        raise
    torch.cuda.current_stream().wait_stream(stream)
    resources["newest"] = graph
    return graph.replay


def _check_same_layout(carry: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
    """A replay copies each output over its input: a different name, shape or dtype would be broadcast or cast
    silently, and an output sharing memory with another input would be overwritten before it is read."""
    if outputs.keys() != carry.keys():
        raise ValueError(f"a captured step must return what it takes: {sorted(carry)} -> {sorted(outputs)}")
    for name, tensor in outputs.items():
        if tensor.shape != carry[name].shape or tensor.dtype != carry[name].dtype:
            raise ValueError(f"a captured step changed {name!r} from {tuple(carry[name].shape)} {carry[name].dtype} "
                             f"to {tuple(tensor.shape)} {tensor.dtype}")
        if any(other is not carry[name] and tensor.untyped_storage().data_ptr() == other.untyped_storage().data_ptr()
               for other in carry.values()):
            raise ValueError(f"a captured step's {name!r} shares memory with another of its inputs")

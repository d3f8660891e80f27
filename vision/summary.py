"""A per-layer table of a model: output shape, neurons, connections and parameters, with totals.

The table comes from one forward pass of a zero input (batch of one, eval mode) with a hook on every leaf
module, so it lists layers in the order they run. Counts are per sample:

- neurons: the units a layer creates, i.e. the size of its output volume. The input counts as the first row.
  Layers that work element by element on units that already exist (activations, batch norm, dropout, flatten)
  create none and show 0, so the column adds up to the number of distinct units in the network.
- connections: for each output unit, the number of inputs it reads; biases are not counted.
  conv: k_h·k_w·in_channels/groups per output unit; fully connected: the fan-in; pooling: the window k_h·k_w
  (adaptive pooling: the exact window of each output); maxout: its pieces. A transposed conv counts from the
  input side: every input unit feeds k_h·k_w·out_channels/groups outputs. Element-wise layers: 0.
- params: weights and biases of the layer (shared modules are counted once, on their first call).

LeNet-5 on 1×32×32 gives C1 4,704 neurons and 117,600 connections, and 61,706 parameters in total.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lab.errors import LabError
from vision.layers import Maxout


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _adaptive_window_sum(in_size: int, out_size: int) -> int:
    """Total number of inputs read by the `out_size` windows adaptive pooling uses along one axis."""
    return sum(-(-(i + 1) * in_size // out_size) - (i * in_size // out_size) for i in range(out_size))


def connections(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """Input-output connections of one call, per sample (see the module docstring for the convention)."""
    out_units = output[0].numel()
    if isinstance(module, nn.ConvTranspose2d):
        k_h, k_w = module.kernel_size
        return inputs[0].numel() * k_h * k_w * module.out_channels // module.groups
    if isinstance(module, nn.Conv2d):
        k_h, k_w = module.kernel_size
        return out_units * k_h * k_w * module.in_channels // module.groups
    if isinstance(module, nn.Linear):
        return out_units * module.in_features
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        k_h, k_w = _pair(module.kernel_size)
        return out_units * k_h * k_w
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        (in_h, in_w), (out_h, out_w) = inputs.shape[-2:], output.shape[-2:]
        windows = _adaptive_window_sum(in_h, out_h) * _adaptive_window_sum(in_w, out_w)
        return output.shape[1] * windows
    if isinstance(module, Maxout):
        return out_units * module.pieces
    return 0


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape[1:])


def summarize(model: nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """{"input": [C, H, W], "layers": [{name, type, output_shape, neurons, connections, params}, …], "total": {…}}.

    The model runs once on a zero input of `input_shape` (C, H, W); its train/eval mode is restored afterwards.
    """
    input_shape = [int(s) for s in input_shape]
    input_units = int(torch.Size(input_shape).numel())
    input_row = {"name": "input", "type": "Input", "output_shape": input_shape, "neurons": input_units}
    rows: list[dict[str, Any]] = [{**input_row, "connections": 0, "params": 0}]
    counted: set[int] = set()

    def record(name: str):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not isinstance(output, torch.Tensor) or not args or not isinstance(args[0], torch.Tensor):
                return
            links = connections(module, args[0], output)
            params = 0 if id(module) in counted else sum(p.numel() for p in module.parameters(recurse=False))
            counted.add(id(module))
            rows.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "output_shape": _shape(output),
                    "neurons": output[0].numel() if links else 0,
                    "connections": links,
                    "params": params,
                }
            )

        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if not list(module.children()) and not isinstance(module, nn.Identity)
    ]
    was_training = model.training
    model.eval()  # batch norm cannot normalise a batch of one 1×1 map in training mode
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except (RuntimeError, ValueError) as error:
        message = str(error).strip().splitlines()[0]
        shape = "×".join(map(str, input_shape))
        own = getattr(model, "default_input_shape", None)
        hint = (f"; it is built for {'×'.join(map(str, own))}" if own and tuple(own) != tuple(input_shape)
                else "; give a larger --input")
        raise LabError(f"{type(model).__name__} cannot take a {shape} input: {message}{hint}") from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    total = {
        "params": sum(p.numel() for p in model.parameters()),
        "neurons": sum(row["neurons"] for row in rows),
        "connections": sum(row["connections"] for row in rows),
    }
    return {"input": input_shape, "layers": rows, "total": total}


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """(C, H, W) from "3x32x32", "3×32×32" or "3,32,32"."""
    parts = text.lower().replace("×", "x").replace(",", "x").replace("*", "x").split("x")
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise LabError(f"--input must be C×H×W with positive integers, e.g. 3x32x32; got {text!r}")
    return shape  # type: ignore[return-value]

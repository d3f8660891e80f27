"""Build a network from a plain list of layer specs, e.g. from a config's `model.layers`.

Each list item is a mapping with exactly one key, the layer kind:

    model:
      in_chans: 1
      input_size: 28          # int or [height, width]; fixes the size an `fc` after `flatten` reads
      num_classes: 10         # the builder appends the classifier fc itself; 0 = no classifier
      layers:
        - conv: {out: 32, kernel: 3, padding: 1}    # also stride (1), groups (1), bias (true); padding: same
        - batchnorm: {}                             # optional eps, momentum
        - activation: relu                          # or {name: leaky_relu, negative_slope: 0.1}
        - pool: {kind: max, kernel: 2}              # kind max|avg, stride (= kernel), padding (0)
        - conv: {out: 64, kernel: 3, padding: same}
        - activation: {name: maxout, pieces: 2}     # max over groups of 2 channels: 64 → 32 channels
        - global_pool: avg                          # avg|max: one value per channel; or `flatten: {}`
        - dropout: 0.5
        - fc: 128                                   # alias dense; or {out: 128, bias: false}
        - activation: relu

Layers up to the first `flatten`, `global_pool` or `fc` form `forward_features` (the unpooled map); the rest
form the head's pre-logits. An `fc` needs a flat input, so put `flatten` or `global_pool` before it. A list that
ends on a spatial map is pooled globally (`global_pool` argument, default avg) before the classifier.
Activations are those of vision.layers (relu, leaky_relu, prelu, elu, gelu, tanh, sigmoid, silu, maxout).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lab.errors import LabError, did_you_mean
from vision.backbones.base import Backbone
from vision.layers import classifier_fc, make_act, parse_act

Shape = tuple[int, ...]  # (C, H, W) for a map, (F,) for a flat vector


class LayerSpecError(LabError):
    pass


class _Layer:
    """Parses one spec; `fail` raises an error naming the layer index and kind."""

    def __init__(self, index: int, kind: str, value: Any) -> None:
        self.index, self.kind, self.value = index, kind, value

    def fail(self, message: str) -> LayerSpecError:
        return LayerSpecError(f"layer {self.index} ({self.kind}): {message}")

    def options(self, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
        value = {} if self.value is None else self.value
        if not isinstance(value, Mapping):
            raise self.fail(f"expected a mapping with keys {', '.join(allowed)}, got {value!r}")
        for key in value:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r}{did_you_mean(str(key), allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(f"missing key {key!r}")
        return dict(value)

    def positive_int(self, options: Mapping[str, Any], key: str, default: int | None = None, minimum: int = 1) -> int:
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{key} must be an integer >= {minimum}, got {value!r}")
        return value


def _spatial(layer: _Layer, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise layer.fail(f"needs a C×H×W map but its input is already flat ({shape[0]} features)")
    return shape  # type: ignore[return-value]


def _out_size(layer: _Layer, size: tuple[int, int], kernel: int, stride: int, padding: int) -> tuple[int, int]:
    height, width = ((s + 2 * padding - kernel) // stride + 1 for s in size)
    if height < 1 or width < 1:
        raise layer.fail(f"kernel {kernel} does not fit its {size[0]}×{size[1]} input (padding {padding})")
    return height, width


def _conv(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    channels, height, width = _spatial(layer, shape)
    options = layer.options(("out", "kernel", "stride", "padding", "groups", "bias"), required=("out", "kernel"))
    out, kernel = layer.positive_int(options, "out"), layer.positive_int(options, "kernel")
    stride, groups = layer.positive_int(options, "stride", 1), layer.positive_int(options, "groups", 1)
    padding = options.get("padding", 0)
    if padding == "same":
        if stride != 1 or kernel % 2 == 0:
            raise layer.fail("padding 'same' needs stride 1 and an odd kernel")
        padding = kernel // 2
    padding = layer.positive_int({"padding": padding}, "padding", minimum=0)
    if channels % groups or out % groups:
        raise layer.fail(f"groups={groups} must divide both its input ({channels}) and output ({out}) channels")
    bias = options.get("bias", True)
    if not isinstance(bias, bool):
        raise layer.fail(f"bias must be true or false, got {bias!r}")
    module = nn.Conv2d(channels, out, kernel, stride, padding, groups=groups, bias=bias)
    return module, (out, *_out_size(layer, (height, width), kernel, stride, padding))


def _pool(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    channels, height, width = _spatial(layer, shape)
    options = layer.options(("kind", "kernel", "stride", "padding"))
    kind = options.get("kind", "max")
    if kind not in ("max", "avg"):
        raise layer.fail(f"kind must be 'max' or 'avg', got {kind!r}")
    kernel = layer.positive_int(options, "kernel", 2)
    stride = layer.positive_int(options, "stride", kernel)
    padding = layer.positive_int(options, "padding", 0, minimum=0)
    if 2 * padding > kernel:
        raise layer.fail(f"padding {padding} must be at most half the kernel ({kernel})")
    module = (nn.MaxPool2d if kind == "max" else nn.AvgPool2d)(kernel, stride, padding)
    return module, (channels, *_out_size(layer, (height, width), kernel, stride, padding))


def _fc(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    if len(shape) != 1:
        size = "×".join(map(str, shape))
        raise layer.fail(f"needs a flat input but gets a {size} map; put `flatten: {{}}` or `global_pool: avg` first")
    if isinstance(layer.value, int):
        options = {"out": layer.value}
    else:
        options = layer.options(("out", "bias"), required=("out",))
    out = layer.positive_int(options, "out")
    bias = options.get("bias", True)
    if not isinstance(bias, bool):
        raise layer.fail(f"bias must be true or false, got {bias!r}")
    return nn.Linear(shape[0], out, bias=bias), (out,)


def _dropout(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    p = layer.value
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise layer.fail(f"expected a drop probability in [0, 1), got {p!r}")
    return nn.Dropout(float(p)), shape


def _batchnorm(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    options = layer.options(("eps", "momentum"))
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise layer.fail(f"{key} must be a positive number, got {value!r}")
    norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    return norm(shape[0], **options), shape


def _activation(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    try:
        name, options = parse_act(layer.value)
    except LabError as error:
        raise layer.fail(str(error)) from None
    channels = shape[0]
    if name == "maxout":
        pieces = options.get("pieces", 2)
        if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 2 or channels % pieces:
            raise layer.fail(f"maxout pieces must be an integer >= 2 dividing its {channels} channels, got {pieces!r}")
        channels //= pieces
    try:
        module = make_act(layer.value, channels)
    except LabError as error:
        raise layer.fail(str(error)) from None
    return module, (channels, *shape[1:])


def _flatten(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    layer.options(())
    return nn.Flatten(1), (int(torch.Size(shape).numel()),)


def _global_pool(layer: _Layer, shape: Shape) -> tuple[nn.Module, Shape]:
    channels = _spatial(layer, shape)[0]
    if layer.value not in ("avg", "max"):
        raise layer.fail(f"expected 'avg' or 'max', got {layer.value!r}")
    pool = nn.AdaptiveAvgPool2d(1) if layer.value == "avg" else nn.AdaptiveMaxPool2d(1)
    return nn.Sequential(pool, nn.Flatten(1)), (channels,)


LAYER_KINDS: dict[str, Callable[[_Layer, Shape], tuple[nn.Module, Shape]]] = {
    "conv": _conv,
    "pool": _pool,
    "fc": _fc,
    "dense": _fc,
    "dropout": _dropout,
    "batchnorm": _batchnorm,
    "activation": _activation,
    "flatten": _flatten,
    "global_pool": _global_pool,
}
FLAT_KINDS = ("flatten", "global_pool", "fc", "dense")  # where forward_features ends


def _stride(module: nn.Module) -> int:
    """How much a conv or pool layer downsamples (the larger of its two strides); 1 for every other layer."""
    if not isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        return 1
    stride = module.stride
    return max(stride) if isinstance(stride, tuple) else int(stride)


class LayerListHead(nn.Module):
    """The flat part of a layer list (`pre_logits`) followed by the classifier fc."""

    def __init__(self, pre_logits: nn.Sequential, features_dim: int, num_classes: int) -> None:
        super().__init__()
        self.pre_logits = pre_logits
        self.features_dim = features_dim
        self.fc: nn.Module = nn.Identity()
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = classifier_fc(self.features_dim, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(x)
        return x if pre_logits else self.fc(x)


class LayerListNet(Backbone):
    """A network built by `build_from_layers`; it has the same interface as every registered backbone."""

    def __init__(
        self,
        layers: Sequence[Mapping[str, Any]],
        in_chans: int = 3,
        num_classes: int = 0,
        input_size: int | Sequence[int] = 32,
        global_pool: str = "avg",
    ) -> None:
        super().__init__(in_chans, input_size)
        if isinstance(layers, str | bytes) or not isinstance(layers, Sequence) or not layers:
            raise LayerSpecError("layers must be a non-empty list of layer specs such as {conv: {out: 32, kernel: 3}}")
        if global_pool not in ("avg", "max"):
            raise LayerSpecError(f"global_pool must be 'avg' or 'max', got {global_pool!r}")
        shape: Shape = self.default_input_shape
        features: list[nn.Module] = []  # the spatial part: forward_features
        flat: list[nn.Module] = []  # from the first flatten/global_pool/fc on: the head's pre-logits
        self.feature_info = []
        stride = 1
        for index, spec in enumerate(layers):
            if not isinstance(spec, Mapping) or len(spec) != 1:
                kinds = ", ".join(LAYER_KINDS)
                raise LayerSpecError(f"layer {index}: expected one key naming the kind ({kinds}), got {spec!r}")
            ((kind, value),) = spec.items()
            if kind not in LAYER_KINDS:
                raise LayerSpecError(f"layer {index}: unknown kind {kind!r}{did_you_mean(str(kind), LAYER_KINDS)}")
            in_shape = shape
            module, shape = LAYER_KINDS[kind](_Layer(index, kind, value), shape)
            if flat or kind in FLAT_KINDS:
                flat.append(module)
                continue
            layer_stride = _stride(module)
            if layer_stride > 1 and features:  # a downsampling layer closes the previous stage
                self._add_stage(len(features) - 1, in_shape[0], stride)
            stride *= layer_stride
            features.append(module)
            self.num_features = shape[0]
        if not features:  # the list starts flat: forward_features passes the image through
            self.num_features = in_chans
        else:
            self._add_stage(len(features) - 1, self.num_features, stride)
        if len(shape) == 3:  # the list ends on a map: pool it for the classifier
            module, shape = _global_pool(_Layer(len(layers), "global_pool", global_pool), shape)
            flat.append(module)
        self.features = nn.Sequential(*features)
        self.head = LayerListHead(nn.Sequential(*flat), shape[0], num_classes)  # type: ignore[assignment]

    def _add_stage(self, index: int, channels: int, stride: int) -> None:
        self.feature_info.append({"module": f"features.{index}", "channels": channels, "stride": stride})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def build_from_layers(
    layers: Sequence[Mapping[str, Any]],
    in_chans: int = 3,
    num_classes: int = 0,
    input_size: int | Sequence[int] = 32,
    global_pool: str = "avg",
) -> LayerListNet:
    """A backbone from a list of layer specs (format in this module's docstring); bad specs raise LabError."""
    return LayerListNet(layers, in_chans, num_classes, input_size, global_pool)

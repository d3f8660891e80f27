"""Building blocks shared by the backbones: activations (Maxout included), conv-norm-act, and the classifier head.

An activation is named by a string ("relu") or a dict with options ({"name": "leaky_relu", "negative_slope": 0.2}).
Maxout is special: it takes the max over groups of `pieces` channels, so the affine layer in front of it has to be
`pieces` times wider. `ConvNormAct` and `mlp` do that widening for you; a layer list does not (see vision/builder.py).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lab.errors import LabError, did_you_mean

ActSpec = str | Mapping[str, Any]  # "relu" or {"name": "leaky_relu", "negative_slope": 0.2}


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): each output unit is the max over `pieces` consecutive input channels."""

    def __init__(self, pieces: int = 2) -> None:
        super().__init__()
        if pieces < 2:
            raise LabError(f"maxout needs pieces >= 2, got {pieces}")
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels % self.pieces:
            raise LabError(f"maxout with {self.pieces} pieces needs a channel count divisible by it, got {channels}")
        return x.unflatten(1, (channels // self.pieces, self.pieces)).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def _relu(channels: int, inplace: bool) -> nn.Module:
    return nn.ReLU(inplace=inplace)


def _leaky_relu(channels: int, inplace: bool, negative_slope: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(negative_slope, inplace=inplace)


def _prelu(channels: int, inplace: bool) -> nn.Module:
    return nn.PReLU(num_parameters=channels)  # one learned slope per channel, as in He et al. 2015


def _elu(channels: int, inplace: bool, alpha: float = 1.0) -> nn.Module:
    return nn.ELU(alpha, inplace=inplace)


def _gelu(channels: int, inplace: bool, approximate: str = "none") -> nn.Module:
    return nn.GELU(approximate=approximate)


def _tanh(channels: int, inplace: bool) -> nn.Module:
    return nn.Tanh()


def _sigmoid(channels: int, inplace: bool) -> nn.Module:
    return nn.Sigmoid()


def _silu(channels: int, inplace: bool) -> nn.Module:
    return nn.SiLU(inplace=inplace)


def _maxout(channels: int, inplace: bool, pieces: int = 2) -> nn.Module:
    return Maxout(pieces)


ACTIVATIONS = {
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "prelu": _prelu,
    "elu": _elu,
    "gelu": _gelu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "silu": _silu,
    "maxout": _maxout,
}


def parse_act(act: ActSpec) -> tuple[str, dict[str, Any]]:
    """("leaky_relu", {"negative_slope": 0.2}) from "leaky_relu" or {"name": "leaky_relu", "negative_slope": 0.2}."""
    if isinstance(act, str):
        name, options = act, {}
    elif isinstance(act, Mapping) and isinstance(act.get("name"), str):
        options = dict(act)
        name = options.pop("name")
    else:
        raise LabError(f"activation must be a name or a mapping with 'name', got {act!r}")
    if name not in ACTIVATIONS:
        raise LabError(f"unknown activation {name!r}{did_you_mean(name, ACTIVATIONS)}")
    return name, options


def make_act(act: ActSpec, channels: int, inplace: bool = True) -> nn.Module:
    """The activation module for a layer whose output has `channels` channels (after any maxout reduction)."""
    name, options = parse_act(act)
    try:
        return ACTIVATIONS[name](channels, inplace, **options)
    except TypeError:
        raise LabError(f"activation {name!r} got unknown options {sorted(options)}") from None


def act_width(act: ActSpec) -> int:
    """How many times wider the affine layer before `act` must be: `pieces` for maxout, 1 otherwise."""
    name, options = parse_act(act)
    return int(options.get("pieces", 2)) if name == "maxout" else 1


def reject_maxout(act: ActSpec, model: str) -> None:
    """Residual nets apply their activation to a sum, where no single layer can be widened for maxout."""
    if parse_act(act)[0] == "maxout":
        raise LabError(f"{model} applies activations to residual sums, so it cannot use maxout; pick e.g. act='relu'")


class ConvNormAct(nn.Sequential):
    """conv → batch norm or layer norm (optional) → activation; the conv has no bias when a norm follows.

    Layer norm here normalises each sample's whole C×H×W map (GroupNorm with one group): batch-independent, which
    is what online RL wants (PQN relies on it in place of a target network)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        batch_norm: bool = True,
        act: ActSpec | None = "relu",
        layer_norm: bool = False,
    ) -> None:
        width = act_width(act) if act is not None else 1
        padding = kernel_size // 2 if padding is None else padding
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(
            in_chans, out_chans * width, kernel_size, stride, padding, groups=groups,
            bias=not (batch_norm or layer_norm),
        )
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_chans * width)
        if layer_norm:
            layers["ln"] = nn.GroupNorm(1, out_chans * width)
        if act is not None:
            layers["act"] = make_act(act, out_chans)
        super().__init__(layers)


def mlp(in_features: int, hidden: Sequence[int], act: ActSpec, drop_rate: float,
        layer_norm: bool = False) -> nn.Sequential:
    """Hidden fully connected layers, each linear → layer norm (optional) → activation, with dropout (when
    drop_rate > 0) between them: on every hidden layer's output but the last, which the head's own dropout takes."""
    layers: list[nn.Module] = []
    for index, width in enumerate(hidden):
        if drop_rate > 0:
            # An identity where a dropout on the head's input once stood keeps the layers' positions, and so
            # the names of the weights checkpoints saved before.
            layers.append(nn.Dropout(drop_rate) if index > 0 else nn.Identity())
        layers.append(nn.Linear(in_features, width * act_width(act)))
        if layer_norm:
            layers.append(nn.LayerNorm(width * act_width(act)))
        layers.append(make_act(act, width))
        in_features = width
    return nn.Sequential(*layers)


GLOBAL_POOLS = ("avg", "max", "flatten")


def classifier_fc(features_dim: int, num_classes: int) -> nn.Module:
    """The classifier layer of a head: linear, or an identity for `num_classes=0` (the head returns features)."""
    return nn.Linear(features_dim, num_classes) if num_classes > 0 else nn.Identity()


class ClassifierHead(nn.Module):
    """Global pool (or flatten) → hidden MLP (`pre_logits`) → dropout → linear classifier.

    `drop_rate` applies to the output of every hidden layer, as AlexNet's and VGG's dropout on fc6 and fc7, and
    before the classifier of a head without hidden layers (as timm's).

    `flat_features` is the flattened size when `pool="flatten"`; it fixes the input size the backbone accepts.
    With `num_classes=0` the classifier is an identity, so the head returns the pre-logit features.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pool: str = "avg",
        flat_features: int | None = None,
        hidden: Sequence[int] = (),
        act: ActSpec = "relu",
        drop_rate: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if pool not in GLOBAL_POOLS:
            raise LabError(f"unknown global_pool {pool!r}{did_you_mean(pool, GLOBAL_POOLS)}")
        if pool == "flatten" and flat_features is None:
            raise ValueError("pool='flatten' needs flat_features")
        self.pool_type = pool
        pools = {"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1), "flatten": nn.Identity()}
        self.global_pool = pools[pool]
        self.flatten = nn.Flatten(1)
        self.flat_features = flat_features if pool == "flatten" else in_channels
        self.pre_logits = mlp(self.flat_features, hidden, act, drop_rate, layer_norm)
        self.features_dim = hidden[-1] if hidden else self.flat_features
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc: nn.Module = nn.Identity()
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = classifier_fc(self.features_dim, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.global_pool(x))
        if self.pool_type == "flatten" and x.shape[1] != self.flat_features:
            raise LabError(
                f"this backbone flattens {self.flat_features} features but got {x.shape[1]}: "
                "build it with the input_size of the images you feed it"
            )
        x = self.pre_logits(x)
        if pre_logits:
            return x
        return self.fc(self.drop(x))

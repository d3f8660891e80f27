"""The interface every backbone shares, in the spirit of timm.

    features = model.forward_features(x)        # unpooled map, N × num_features × h × w
    logits = model.forward_head(features)       # pool → hidden MLP (pre-logits) → classifier
    torso = model.forward_head(features, pre_logits=True)   # N × features_dim, what a Q-head consumes
    model.reset_classifier(0)                   # model(x) now returns the pre-logit features

`feature_info` lists one dict per stage: {"module": name, "channels": C, "stride": total downsampling}.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lab.errors import LabError
from vision.layers import ActSpec, ClassifierHead


def to_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from an int or a pair."""
    if isinstance(size, int):
        return size, size
    if len(size) == 2:
        return int(size[0]), int(size[1])
    raise LabError(f"input_size must be an int or [height, width], got {size!r}")


class Backbone(nn.Module):
    """Base class: a subclass builds its layers, sets `num_features` and `feature_info`, then calls `make_head`."""

    num_features: int
    feature_info: list[dict[str, Any]]
    head: ClassifierHead

    def __init__(self, in_chans: int, input_size: int | Sequence[int]) -> None:
        super().__init__()
        self.in_chans = in_chans
        # The input this backbone is built for: `lab summary` feeds it, a flatten head depends on it.
        self.default_input_shape = (in_chans, *to_hw(input_size))

    def make_head(
        self,
        num_classes: int,
        global_pool: str = "avg",
        hidden: Sequence[int] = (),
        act: ActSpec = "relu",
        drop_rate: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        flat = self.flat_features() if global_pool == "flatten" else None
        self.head = ClassifierHead(self.num_features, num_classes, global_pool, flat, hidden, act, drop_rate,
                                   layer_norm)

    @torch.no_grad()
    def flat_features(self) -> int:
        """Size of the flattened feature map at `default_input_shape`, from one dummy forward."""
        was_training = self.training
        self.eval()  # batch norm refuses a batch of one 1×1 map in training mode
        try:
            features = self.forward_features(torch.zeros(1, *self.default_input_shape))
        except RuntimeError as error:
            shape = "×".join(map(str, self.default_input_shape))
            message = str(error).strip().splitlines()[0]
            raise LabError(f"{type(self).__name__} cannot take a {shape} input ({message}): build it for larger "
                           "images (input_size; in image classification data.image_size)") from None
        self.train(was_training)
        return features[0].numel()

    @property
    def features_dim(self) -> int:
        return self.head.features_dim

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier for `num_classes` outputs; 0 makes the model return its pre-logit features."""
        self.head.reset(num_classes)


@torch.no_grad()
def probe_classifier(model: nn.Module, num_classes: int, name: str) -> None:
    """One dummy image through a freshly built classifier: input too small for it, or a network that does not
    output one score per class (a segmentation net), becomes a clear error before training starts."""
    shape = tuple(model.default_input_shape)
    was_training = model.training
    model.eval()
    try:
        output = model(torch.zeros(1, *shape))
    except RuntimeError as error:
        message = str(error).strip().splitlines()[0]
        raise LabError(f"{name} cannot take {'×'.join(map(str, shape))} images ({message}): raise "
                       "data.image_size") from None
    finally:
        model.train(was_training)
    if tuple(output.shape) != (1, num_classes):
        raise LabError(f"{name} outputs {'×'.join(map(str, output.shape[1:]))} per image, not one score per class: "
                       "image classification needs a backbone with a classifier head (unet is a segmentation net)")


def init_conv_net(model: nn.Module) -> None:
    """He-normal convs (fan-out, as for ReLU nets), unit batch-norm scales, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

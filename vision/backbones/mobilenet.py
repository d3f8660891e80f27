"""MobileNet v1 (Howard et al. 2017): depthwise-separable convolutions.

Each block factors a 3×3 conv into a depthwise 3×3 conv (one filter per channel, groups = channels) and a
pointwise 1×1 conv that mixes channels, each followed by bn and an activation: about 8-9× fewer multiply-adds
than a full 3×3 conv. `width_multiplier` (the paper's α) thins every layer. The "cifar" variant keeps the first
conv at stride 1 so 32×32 images end on a 2×2 map instead of 1×1.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lab.errors import LabError
from vision.backbones.base import Backbone, init_conv_net
from vision.layers import ActSpec, ConvNormAct
from vision.registry import register_backbone

# (output channels, stride) of the 13 depthwise-separable blocks, Table 1 of the paper.
MOBILENET_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, in_chans: int, out_chans: int, stride: int, act: ActSpec, batch_norm: bool) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(in_chans, in_chans, 3, stride, groups=in_chans, batch_norm=batch_norm, act=act)
        self.pointwise = ConvNormAct(in_chans, out_chans, 1, batch_norm=batch_norm, act=act)


class MobileNetV1(Backbone):
    def __init__(
        self,
        stem_stride: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        input_size: int | Sequence[int] | None = None,  # default: 224, or 32 for the CIFAR variant (stem stride 1)
        width_multiplier: float = 1.0,
        act: ActSpec = "relu",
        batch_norm: bool = True,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__(in_chans, input_size or (224 if stem_stride == 2 else 32))
        if width_multiplier <= 0:
            raise LabError(f"mobilenet width_multiplier must be positive, got {width_multiplier}")

        def width(channels: int) -> int:
            return max(8, int(channels * width_multiplier))

        channels = width(32)
        self.stem = ConvNormAct(in_chans, channels, 3, stem_stride, batch_norm=batch_norm, act=act)
        stride = stem_stride
        blocks: list[nn.Module] = []
        self.feature_info = []
        for index, (out_chans, block_stride) in enumerate(MOBILENET_BLOCKS):
            if block_stride == 2 and blocks:  # a stage ends where the next one downsamples
                self.feature_info.append({"module": f"blocks.{index - 1}", "channels": channels, "stride": stride})
            blocks.append(DepthwiseSeparable(channels, width(out_chans), block_stride, act, batch_norm))
            channels, stride = width(out_chans), stride * block_stride
        self.feature_info.append({"module": f"blocks.{len(blocks) - 1}", "channels": channels, "stride": stride})
        self.blocks = nn.Sequential(*blocks)
        self.num_features = channels
        self.make_head(num_classes, global_pool, drop_rate=drop_rate)
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


register_backbone(
    "mobilenet_v1", MobileNetV1, help="MobileNet v1 (Howard 2017): 13 depthwise-separable conv blocks", stem_stride=2
)
register_backbone(
    "mobilenet_v1_cifar", MobileNetV1, help="MobileNet v1 with a stride-1 first conv, for 32×32 images", stem_stride=1
)

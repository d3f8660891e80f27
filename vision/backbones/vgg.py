"""VGG (Simonyan & Zisserman 2015): stacks of 3×3 convs, each stack closed by 2×2 max pooling.

VGG-11 is configuration A, VGG-16 configuration D of the paper. The head pools globally by default (so 32×32
CIFAR images work); `global_pool="flatten"` with `input_size=224` gives the paper's 7×7×512 → 4096 layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vision.backbones.base import Backbone, init_conv_net
from vision.layers import ActSpec, ConvNormAct
from vision.registry import register_backbone

# Conv widths per stage; every stage ends with a 2×2 max pool.
VGG_STAGES = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}


class VGG(Backbone):
    def __init__(
        self,
        depth: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        input_size: int | Sequence[int] = 224,
        act: ActSpec = "relu",
        batch_norm: bool = False,
        drop_rate: float = 0.5,
        global_pool: str = "avg",
        head_hidden: Sequence[int] = (4096, 4096),
    ) -> None:
        super().__init__(in_chans, input_size)
        stages, self.feature_info = [], []
        channels = in_chans
        for index, widths in enumerate(VGG_STAGES[depth]):
            layers: list[nn.Module] = []
            for width in widths:
                layers.append(ConvNormAct(channels, width, 3, batch_norm=batch_norm, act=act))
                channels = width
            layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
            self.feature_info.append({"module": f"stages.{index}", "channels": channels, "stride": 2 ** (index + 1)})
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.make_head(num_classes, global_pool, hidden=head_hidden, act=act, drop_rate=drop_rate)
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


register_backbone("vgg11", VGG, "VGG-11 (Simonyan 2015, config A): 8 conv 3×3 layers, 5 stages, 2×4096 fc", depth=11)
register_backbone("vgg16", VGG, "VGG-16 (Simonyan 2015, config D): 13 conv 3×3 layers, 5 stages, 2×4096 fc", depth=16)

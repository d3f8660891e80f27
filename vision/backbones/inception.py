"""GoogLeNet (Szegedy et al. 2015): a stack of Inception modules.

An Inception module runs four branches side by side and concatenates their channels: a 1×1 conv; a 1×1
reduction then a 3×3 conv; a 1×1 reduction then a 5×5 conv; a 3×3 max pool then a 1×1 projection. The 1×1
reductions keep the 3×3 and 5×5 convs cheap. Widths follow Table 1 of the paper; batch norm (on by default)
stands in for the paper's local response normalisation, and the two auxiliary classifiers are left out.
The "cifar" stem is one 3×3 conv with no pooling, so 32×32 images reach the modules at full resolution.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lab.errors import LabError
from vision.backbones.base import Backbone, init_conv_net
from vision.layers import ActSpec, ConvNormAct
from vision.registry import register_backbone

# name: (1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool projection), from Table 1 of the paper.
INCEPTION_WIDTHS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class InceptionModule(nn.Module):
    def __init__(self, in_chans: int, widths: Sequence[int], act: ActSpec, batch_norm: bool) -> None:
        super().__init__()
        n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj = widths

        def conv(cin: int, cout: int, kernel: int) -> ConvNormAct:
            return ConvNormAct(cin, cout, kernel, batch_norm=batch_norm, act=act)

        self.branch1x1 = conv(in_chans, n1x1, 1)
        self.branch3x3 = nn.Sequential(conv(in_chans, n3x3_reduce, 1), conv(n3x3_reduce, n3x3, 3))
        self.branch5x5 = nn.Sequential(conv(in_chans, n5x5_reduce, 1), conv(n5x5_reduce, n5x5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(in_chans, pool_proj, 1))
        self.out_chans = n1x1 + n3x3 + n5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x))
        return torch.cat(branches, dim=1)


class GoogLeNet(Backbone):
    def __init__(
        self,
        stem: str = "imagenet",
        in_chans: int = 3,
        num_classes: int = 1000,
        input_size: int | Sequence[int] | None = None,  # default: 224 for the ImageNet stem, 32 for CIFAR
        act: ActSpec = "relu",
        batch_norm: bool = True,
        drop_rate: float = 0.4,
        global_pool: str = "avg",
    ) -> None:
        super().__init__(in_chans, input_size or (32 if stem == "cifar" else 224))

        def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> ConvNormAct:
            return ConvNormAct(cin, cout, kernel, stride, batch_norm=batch_norm, act=act)

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        if stem == "imagenet":
            self.stem = nn.Sequential(conv(in_chans, 64, 7, 2), pool(), conv(64, 64, 1), conv(64, 192, 3), pool())
            stride = 8
        elif stem == "cifar":
            self.stem = conv(in_chans, 192, 3)
            stride = 1
        else:
            raise LabError(f"googlenet stem must be 'imagenet' or 'cifar', got {stem!r}")

        self.feature_info = [{"module": "stem", "channels": 192, "stride": stride}]
        modules: list[nn.Module] = []
        channels = 192
        for name, widths in INCEPTION_WIDTHS.items():
            if name in ("4a", "5a"):  # max pool between the groups 3, 4 and 5
                modules.append(pool())
                stride *= 2
            module = InceptionModule(channels, widths, act, batch_norm)
            modules.append(module)
            channels = module.out_chans
            if name in ("3b", "4e", "5b"):
                name = f"inception.{len(modules) - 1}"
                self.feature_info.append({"module": name, "channels": channels, "stride": stride})
        self.inception = nn.Sequential(*modules)
        self.num_features = channels
        self.make_head(num_classes, global_pool, drop_rate=drop_rate)
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inception(self.stem(x))


register_backbone(
    "googlenet", GoogLeNet, help="GoogLeNet (Szegedy 2015): 9 Inception modules with 1×1 reductions", stem="imagenet"
)
register_backbone(
    "googlenet_cifar", GoogLeNet, help="GoogLeNet with a 3×3 stem, no early pooling, for 32×32 images", stem="cifar"
)

"""ResNet-18/34 (He et al. 2016) with basic blocks: two 3×3 conv-bn layers and an identity shortcut.

Two stems: "imagenet" (7×7/2 conv + 3×3/2 max pool, stride 4 before the first stage) and "cifar" (one 3×3 conv,
no pooling, for 32×32 images). Stages have 64/128/256/512 channels; stages 2-4 halve the resolution in their
first block, whose shortcut is a 1×1/2 conv + bn. The last bn of each residual branch starts at zero, so every
block starts as an identity (Goyal et al. 2017), which helps large-batch training.
The forward pass is plain conv → bn → relu with in-place ReLU and no Python-side work, to keep it fast.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lab.errors import LabError
from vision.backbones.base import Backbone, init_conv_net
from vision.layers import ActSpec, make_act, reject_maxout
from vision.registry import register_backbone


def norm_or_identity(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, in_chans: int, out_chans: int, stride: int, act: ActSpec, batch_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=not batch_norm)
        self.bn1 = norm_or_identity(out_chans, batch_norm)
        self.act1 = make_act(act, out_chans)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, 1, 1, bias=not batch_norm)
        self.bn2 = norm_or_identity(out_chans, batch_norm)
        self.act2 = make_act(act, out_chans)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chans != out_chans:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride, bias=not batch_norm), norm_or_identity(out_chans, batch_norm)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class ResNet(Backbone):
    def __init__(
        self,
        blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
        stem: str = "imagenet",
        in_chans: int = 3,
        num_classes: int = 1000,
        input_size: int | Sequence[int] | None = None,  # default: 224 for the ImageNet stem, 32 for CIFAR
        act: ActSpec = "relu",
        batch_norm: bool = True,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        zero_init_last_bn: bool = True,
    ) -> None:
        super().__init__(in_chans, input_size or (32 if stem == "cifar" else 224))
        reject_maxout(act, "resnet")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=not batch_norm)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
            stride = 4
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=not batch_norm)
            self.maxpool = nn.Identity()
            stride = 1
        else:
            raise LabError(f"resnet stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.bn1 = norm_or_identity(64, batch_norm)
        self.act1 = make_act(act, 64)

        self.feature_info = []
        channels = 64
        for index, (width, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage), start=1):
            first_stride = 1 if index == 1 else 2
            stride *= first_stride
            layer = nn.Sequential(
                *(
                    BasicBlock(channels if b == 0 else width, width, first_stride if b == 0 else 1, act, batch_norm)
                    for b in range(blocks)
                )
            )
            setattr(self, f"layer{index}", layer)
            self.feature_info.append({"module": f"layer{index}", "channels": width, "stride": stride})
            channels = width
        self.num_features = channels
        self.make_head(num_classes, global_pool, drop_rate=drop_rate)

        init_conv_net(self)
        if zero_init_last_bn and batch_norm:
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


R18, R34 = (2, 2, 2, 2), (3, 4, 6, 3)  # basic blocks per stage
IMAGENET_STEM, CIFAR_STEM = "ImageNet stem 7×7/2 + max pool", "CIFAR stem 3×3, no pooling"
register_backbone("resnet18", ResNet, f"ResNet-18 (He 2016), {IMAGENET_STEM}", blocks_per_stage=R18, stem="imagenet")
register_backbone("resnet34", ResNet, f"ResNet-34 (He 2016), {IMAGENET_STEM}", blocks_per_stage=R34, stem="imagenet")
register_backbone("resnet18_cifar", ResNet, f"ResNet-18 (He 2016), {CIFAR_STEM}", blocks_per_stage=R18, stem="cifar")
register_backbone("resnet34_cifar", ResNet, f"ResNet-34 (He 2016), {CIFAR_STEM}", blocks_per_stage=R34, stem="cifar")

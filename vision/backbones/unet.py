"""A small U-Net (Ronneberger et al. 2015) for segmentation: `forward` returns per-pixel logits N×classes×H×W.

The encoder repeats two 3×3 conv-bn-act layers and a 2×2 max pool, doubling the width at each level
(32/64/128/256 by default). The decoder upsamples with a 2×2 transposed conv that halves the width, concatenates
the encoder map of the same resolution (the skip connection), and applies two 3×3 conv layers again. A 1×1 conv
maps each pixel's features to class logits. Unlike the paper the convs are padded, so the output has the input's
size and no cropping is needed; sizes that do not divide by 2^(levels-1) are padded in the decoder.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lab.errors import LabError
from vision.backbones.base import Backbone, init_conv_net
from vision.layers import ActSpec, ConvNormAct
from vision.registry import register_backbone


class DoubleConv(nn.Sequential):
    def __init__(self, in_chans: int, out_chans: int, act: ActSpec, batch_norm: bool, drop_rate: float) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_chans, out_chans, 3, batch_norm=batch_norm, act=act)
        self.conv2 = ConvNormAct(out_chans, out_chans, 3, batch_norm=batch_norm, act=act)
        if drop_rate > 0:
            self.drop = nn.Dropout2d(drop_rate)


class SegmentationHead(nn.Module):
    """A 1×1 conv from per-pixel features to per-pixel class logits; an identity for num_classes=0."""

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        self.features_dim = in_chans  # per pixel
        self.classifier: nn.Module = nn.Identity()
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Conv2d(self.features_dim, num_classes, 1) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.classifier(x)


class UNet(Backbone):
    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 2,
        input_size: int | Sequence[int] = 64,
        widths: Sequence[int] = (32, 64, 128, 256),
        act: ActSpec = "relu",
        batch_norm: bool = True,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(in_chans, input_size)
        if len(widths) < 2:
            raise LabError(f"unet needs at least two widths (levels), got {list(widths)}")
        self.encoder = nn.ModuleList()
        channels = in_chans
        for width in widths:
            self.encoder.append(DoubleConv(channels, width, act, batch_norm, drop_rate))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsample.append(nn.ConvTranspose2d(channels, width, 2, 2))
            self.decoder.append(DoubleConv(2 * width, width, act, batch_norm, drop_rate))
            channels = width
        self.num_features = channels
        self.feature_info = [
            {"module": f"encoder.{level}", "channels": width, "stride": 2**level} for level, width in enumerate(widths)
        ]
        self.feature_info.append({"module": f"decoder.{len(self.decoder) - 1}", "channels": channels, "stride": 1})
        self.head = SegmentationHead(channels, num_classes)  # type: ignore[assignment]
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's full-resolution feature map, N × widths[0] × H × W."""
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for upsample, block in zip(self.upsample, self.decoder):
            skip = skips.pop()
            x = upsample(x)
            if x.shape[-2:] != skip.shape[-2:]:  # odd sizes lose a row or column in pooling; pad it back
                x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
            x = block(torch.cat((skip, x), dim=1))
        return x


register_backbone("unet", UNet, help="small U-Net (Ronneberger 2015) with a per-pixel segmentation head")

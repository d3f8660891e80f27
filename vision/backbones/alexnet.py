"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), as one tower.

Five conv layers (96@11×11/4, 256@5×5, 384@3×3, 384@3×3, 256@3×3) with overlapping 3×3/2 max pooling after the
1st, 2nd and 5th, then two 4096-unit fully connected layers with dropout 0.5. The paper's local response
normalisation is replaced by optional batch norm. By default the head pools globally, so any input of at least
63×63 works; `global_pool="flatten"` with `input_size=224` gives the paper's 6×6×256 → 4096 layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vision.backbones.base import Backbone, init_conv_net
from vision.layers import ActSpec, ConvNormAct
from vision.registry import register_backbone


class AlexNet(Backbone):
    def __init__(
        self,
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

        def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> ConvNormAct:
            return ConvNormAct(cin, cout, kernel, stride, batch_norm=batch_norm, act=act)

        self.features = nn.Sequential(
            conv(in_chans, 96, 11, stride=4),
            nn.MaxPool2d(3, 2),
            conv(96, 256, 5),
            nn.MaxPool2d(3, 2),
            conv(256, 384, 3),
            conv(384, 384, 3),
            conv(384, 256, 3),
            nn.MaxPool2d(3, 2),
        )
        self.num_features = 256
        self.feature_info = [
            {"module": "features.0", "channels": 96, "stride": 4},
            {"module": "features.2", "channels": 256, "stride": 8},
            {"module": "features.6", "channels": 256, "stride": 16},
            {"module": "features.7", "channels": 256, "stride": 32},  # pooled: what forward_features returns
        ]
        self.make_head(num_classes, global_pool, hidden=head_hidden, act=act, drop_rate=drop_rate)
        init_conv_net(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


register_backbone("alexnet", AlexNet, help="AlexNet (Krizhevsky 2012): 5 conv layers, overlapping max pool, 2×4096 fc")

"""LeNet-5 (LeCun et al. 1998), in its common modern form.

    input 1×32×32
    C1  conv 6@5×5      → 6×28×28
    S2  pool 2×2/2      → 6×14×14
    C3  conv 16@5×5     → 16×10×10
    S4  pool 2×2/2      → 16×5×5
    C5  conv 120@5×5    → 120×1×1
    F6  fc 84
    output fc 10

Two simplifications of the paper, as in most textbooks: S2/S4 are plain pooling layers (the paper's subsampling
had a trainable coefficient and bias per map) and C3 connects to all six S2 maps (the paper used a sparse table),
and the output layer is linear instead of RBF units. That gives 61,706 parameters.
C5 needs a 5×5 input map, so the net is built for 32×32 images. The paper padded 28×28 MNIST by 2 pixels;
configs/vision/mnist.yaml resizes it to 32×32 instead (`data.image_size: 32`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lab.errors import LabError
from vision.backbones.base import Backbone
from vision.layers import ActSpec, ConvNormAct
from vision.registry import register_backbone


class LeNet5(Backbone):
    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 10,
        input_size: int | Sequence[int] = 32,
        act: ActSpec = "tanh",
        pool: str = "avg",
        batch_norm: bool = False,
        drop_rate: float = 0.0,
        global_pool: str = "flatten",  # "avg"/"max" let other input sizes through
    ) -> None:
        super().__init__(in_chans, input_size)
        if pool not in ("avg", "max"):
            raise LabError(f"lenet5 pool must be 'avg' or 'max', got {pool!r}")
        subsample = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        self.c1 = ConvNormAct(in_chans, 6, 5, padding=0, batch_norm=batch_norm, act=act)
        self.s2 = subsample(2)
        self.c3 = ConvNormAct(6, 16, 5, padding=0, batch_norm=batch_norm, act=act)
        self.s4 = subsample(2)
        self.c5 = ConvNormAct(16, 120, 5, padding=0, batch_norm=batch_norm, act=act)
        self.num_features = 120
        self.feature_info = [
            {"module": "c1", "channels": 6, "stride": 1},
            {"module": "c3", "channels": 16, "stride": 2},
            {"module": "c5", "channels": 120, "stride": 4},
        ]
        # F6 is the hidden layer of the head; the output layer is its classifier.
        self.make_head(num_classes, global_pool, hidden=(84,), act=act, drop_rate=drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s2(self.c1(x))
        x = self.s4(self.c3(x))
        return self.c5(x)


register_backbone("lenet5", LeNet5, help="LeNet-5 (LeCun 1998): 2 conv + pool stages, C5 conv 120, F6 84; 1×32×32")

"""Encoders for pixel-based RL agents: the Nature-DQN CNN and the IMPALA ResNet.

Both expect float frames in [0, 1], N × C × H × W (the agent divides its uint8 frames by 255). A uint8 batch is
scaled the same way here, so either input gives the same output. The defaults match the lab's Atari frames:
4 stacked 84×84 grey frames. With `num_classes=0` (the default) `forward` returns the torso output
(`features_dim` wide) for a Q-head; with `num_classes=n_actions` it is a complete Q-network.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vision.backbones.base import Backbone
from vision.layers import ActSpec, ConvNormAct, make_act, reject_maxout
from vision.registry import register_backbone


def to_unit_float(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 frames → float in [0, 1]; float input is taken as already scaled."""
    return x.to(dtype).div_(255.0) if x.dtype == torch.uint8 else x


class NatureCNN(Backbone):
    """Mnih et al. 2015: conv 32@8×8/4, 64@4×4/2, 64@3×3/1, each + ReLU, then fc 512 + ReLU."""

    def __init__(
        self,
        in_chans: int = 4,
        num_classes: int = 0,
        input_size: int | Sequence[int] = 84,
        act: ActSpec = "relu",
        batch_norm: bool = False,
        drop_rate: float = 0.0,
        hidden: int = 512,
        global_pool: str = "flatten",  # the paper's; "avg"/"max" accept any input size
        layer_norm: bool = False,  # after every conv and the fc layer, as in PQN (Gallici et al. 2025)
    ) -> None:
        super().__init__(in_chans, input_size)
        norms = {"batch_norm": batch_norm, "layer_norm": layer_norm}
        self.conv1 = ConvNormAct(in_chans, 32, 8, 4, padding=0, act=act, **norms)
        self.conv2 = ConvNormAct(32, 64, 4, 2, padding=0, act=act, **norms)
        self.conv3 = ConvNormAct(64, 64, 3, 1, padding=0, act=act, **norms)
        self.num_features = 64
        self.feature_info = [
            {"module": "conv1", "channels": 32, "stride": 4},
            {"module": "conv2", "channels": 64, "stride": 8},
            {"module": "conv3", "channels": 64, "stride": 8},
        ]
        self.make_head(num_classes, global_pool, hidden=(hidden,), act=act, drop_rate=drop_rate,
                       layer_norm=layer_norm)  # 64×7×7 → 512

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = to_unit_float(x, self.conv1.conv.weight.dtype)
        return self.conv3(self.conv2(self.conv1(x)))


class ImpalaResidual(nn.Module):
    """x + conv(act(conv(act(x)))), pre-activation as in the IMPALA paper."""

    def __init__(self, channels: int, act: ActSpec, batch_norm: bool, layer_norm: bool = False) -> None:
        super().__init__()
        norms = {"batch_norm": batch_norm, "layer_norm": layer_norm}
        self.act1 = make_act(act, channels, inplace=False)  # x is still needed for the shortcut
        self.conv1 = ConvNormAct(channels, channels, 3, act=None, **norms)
        self.act2 = make_act(act, channels)
        self.conv2 = ConvNormAct(channels, channels, 3, act=None, **norms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class ImpalaStage(nn.Sequential):
    """conv 3×3 → max pool 3×3/2 → two residual blocks."""

    def __init__(self, in_chans: int, out_chans: int, act: ActSpec, batch_norm: bool,
                 layer_norm: bool = False) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_chans, out_chans, 3, batch_norm=batch_norm, layer_norm=layer_norm, act=None)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.res1 = ImpalaResidual(out_chans, act, batch_norm, layer_norm)
        self.res2 = ImpalaResidual(out_chans, act, batch_norm, layer_norm)


class ImpalaCNN(Backbone):
    """Espeholt et al. 2018: three stages (16/32/32 channels) of conv + max pool + 2 residual blocks, fc 256."""

    def __init__(
        self,
        in_chans: int = 4,
        num_classes: int = 0,
        input_size: int | Sequence[int] = 84,
        channels: Sequence[int] = (16, 32, 32),
        act: ActSpec = "relu",
        batch_norm: bool = False,
        drop_rate: float = 0.0,
        hidden: int = 256,
        global_pool: str = "flatten",  # the paper's; "avg"/"max" accept any input size
        layer_norm: bool = False,  # after every conv and the fc layer, for PQN
    ) -> None:
        super().__init__(in_chans, input_size)
        reject_maxout(act, "impala_cnn")
        stages, self.feature_info = [], []
        previous = in_chans
        for index, width in enumerate(channels):
            stages.append(ImpalaStage(previous, width, act, batch_norm, layer_norm))
            self.feature_info.append({"module": f"stages.{index}", "channels": width, "stride": 2 ** (index + 1)})
            previous = width
        self.stages = nn.Sequential(*stages)
        self.act = make_act(act, previous)
        self.num_features = previous
        self.make_head(num_classes, global_pool, hidden=(hidden,), act=act, drop_rate=drop_rate,
                       layer_norm=layer_norm)  # 32×11×11 → 256

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = to_unit_float(x, self.stages[0].conv.conv.weight.dtype)
        return self.act(self.stages(x))


register_backbone("nature_cnn", NatureCNN, help="Nature-DQN encoder (Mnih 2015): 3 convs + fc 512, 4×84×84 in [0,1]")
register_backbone("impala_cnn", ImpalaCNN, help="IMPALA encoder (Espeholt 2018): 3 conv+pool+2 res stages, fc 256")

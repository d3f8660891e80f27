"""Build a Q-network torso from the model config: the MLP for vector observations, or any CNN encoder
from the vision registry for pixels (uint8 H×W×C frames are scaled to [0, 1] and moved channel-first)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from agents.networks import MLP
from lab.errors import LabError, did_you_mean


class PixelTorso(nn.Module):
    def __init__(self, encoder: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.channels_last = channels_last
        self.features_dim = encoder.features_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.encoder.forward_head(self.encoder.forward_features(x), pre_logits=True)


def build_torso(model_cfg: Any, obs_shape: tuple[int, ...]) -> nn.Module:
    """`model.torso: mlp` for vector observations; any other name is an encoder of the vision registry."""
    if model_cfg.torso == "mlp":
        return MLP(obs_shape, model_cfg.hidden, model_cfg.layer_norm)
    import vision  # only runs on pixels pay for importing the vision models
    from vision.registry import BACKBONES

    if model_cfg.torso not in BACKBONES:
        raise LabError(f"unknown model.torso {model_cfg.torso!r}: 'mlp' for vector observations or a vision "
                       f"backbone{did_you_mean(model_cfg.torso, ['mlp', *BACKBONES.names()])}")

    channels_last = len(obs_shape) == 3 and obs_shape[-1] in (1, 3, 4) and obs_shape[0] > 4
    in_chans = obs_shape[-1] if channels_last else obs_shape[0]
    size = tuple(obs_shape[:2]) if channels_last else tuple(obs_shape[1:])
    options = {"layer_norm": True} if model_cfg.layer_norm else {}  # only encoders that offer it accept it
    encoder = vision.create_backbone(model_cfg.torso, in_chans=in_chans, num_classes=0, input_size=size, **options)
    return PixelTorso(encoder, channels_last)

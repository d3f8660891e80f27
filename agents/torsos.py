"""Build a Q-network torso from the model config: the MLP for vector observations, or any CNN encoder
from the vision registry for pixels (uint8 H×W×C frames are scaled to [0, 1] and moved channel-first)."""
from __future__ import annotations

from pathlib import Path
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


def check_torso_name(name: str) -> str:
    """`mlp` or a backbone of the vision registry (imported only for a pixel torso), else a LabError that offers
    the nearest names; `lab config` checks it as `lab train` does."""
    if name == "mlp":
        return name
    from vision.registry import BACKBONES

    if name not in BACKBONES:
        raise LabError(f"unknown model.torso {name!r}: 'mlp' for vector observations or a vision "
                       f"backbone{did_you_mean(name, ['mlp', *BACKBONES.names()])}")
    return name


def build_torso(model_cfg: Any, obs_shape: tuple[int, ...], load_weights: bool = True) -> nn.Module:
    """`model.torso: mlp` for vector observations; any other name is an encoder of the vision registry, started
    from another run's encoder when `model.init_from` names one (and `load_weights`: a new run, not a resumed
    or evaluated one, which loads its own checkpoint)."""
    if model_cfg.torso == "mlp":
        if model_cfg.init_from:
            raise LabError("model.init_from starts a vision encoder: it needs a pixel torso (model.torso), not mlp")
        return MLP(obs_shape, model_cfg.hidden, model_cfg.layer_norm)
    import vision  # only runs on pixels pay for importing the vision models
    from vision.registry import BACKBONES

    name = check_torso_name(model_cfg.torso)
    if model_cfg.layer_norm and "layer_norm" not in BACKBONES.get(name).options():
        raise LabError(f"model.torso={name} has no layer norm option: set model.layer_norm=false or pick a torso "
                       "that has one (nature_cnn, impala_cnn)")

    if len(obs_shape) != 3:
        shape_text = f"vectors of {obs_shape[0]}" if len(obs_shape) == 1 else "×".join(map(str, obs_shape))
        raise LabError(f"model.torso={name} reads images (C×H×W or H×W×C), but this env's observations are "
                       f"{shape_text}: use model.torso=mlp, or an env with pixel observations")
    channels_last = obs_shape[-1] in (1, 3, 4) and obs_shape[0] > 4
    in_chans = obs_shape[-1] if channels_last else obs_shape[0]
    size = tuple(obs_shape[:2]) if channels_last else tuple(obs_shape[1:])
    options = {"layer_norm": True} if model_cfg.layer_norm else {}  # only encoders that offer it accept it
    encoder = vision.create_backbone(name, in_chans=in_chans, num_classes=0, input_size=size, **options)
    _check_flat_output(encoder, name, (in_chans, *size))
    if model_cfg.init_from and load_weights:
        from vision.transfer import load_backbone

        load_backbone(encoder, Path(model_cfg.init_from))
    return PixelTorso(encoder, channels_last)


@torch.no_grad()
def _check_flat_output(encoder: nn.Module, name: str, shape: tuple[int, ...]) -> None:
    """A Q-head reads a feature vector: an encoder whose output is still a map (a segmentation net) cannot serve."""
    encoder.eval()
    try:
        features = encoder.forward_head(encoder.forward_features(torch.zeros(1, *shape)), pre_logits=True)
    except RuntimeError as error:
        message = str(error).strip().splitlines()[0]
        shape_text = "×".join(map(str, shape))
        raise LabError(f"model.torso={name} cannot take {shape_text} observations ({message})") from None
    finally:
        encoder.train()
    if features.dim() != 2:
        raise LabError(f"model.torso={name} outputs a {'×'.join(map(str, features.shape[1:]))} map, not a feature "
                       "vector for the Q-head: pick an encoder such as nature_cnn, impala_cnn or resnet18")

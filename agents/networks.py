"""Q-networks: a torso from a registry (an MLP here, CNN encoders from `vision`) and a plain or dueling head."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lab.registry import Registry

TORSOS: Registry[Callable[..., nn.Module]] = Registry("torso")


@TORSOS.register("mlp")
class MLP(nn.Module):
    """Fully connected layers with ReLU, for vector observations."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: list[int], layer_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = int(torch.Size(obs_shape).numel())
        for size in hidden:
            layers += [nn.Linear(width, size)] + ([nn.LayerNorm(size)] if layer_norm else []) + [nn.ReLU()]
            width = size
        self.net = nn.Sequential(*layers)
        self.features_dim = width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float())


class QNetwork(nn.Module):
    """Q(s, ·) for every discrete action. Dueling (Wang et al. 2016): Q = V + A − mean(A)."""

    def __init__(self, torso: nn.Module, n_actions: int, dueling: bool = False, head_hidden: int = 0) -> None:
        super().__init__()
        self.torso = torso
        self.dueling = dueling
        width = torso.features_dim

        def head(out: int) -> nn.Module:
            if head_hidden:
                return nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(), nn.Linear(head_hidden, out))
            return nn.Linear(width, out)

        self.advantage = head(n_actions)
        self.value = head(1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.torso(obs)
        advantage = self.advantage(features)
        if self.value is None:
            return advantage
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)

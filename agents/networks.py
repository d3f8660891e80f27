"""Q-networks: a torso (the MLP here, or a CNN encoder from `vision`: see `agents.torsos`) and a plain or dueling
head."""
from __future__ import annotations

import torch
from torch import nn


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
    """Q(s, ·) for every discrete action. Dueling (Wang et al. 2016): Q = V + A − mean(A).

    Dueling is a fixed linear map of one head's outputs [V, A₁ … A_n]: Q = [V, A] · C with C = [1ᵀ; I − 1/n].
    One head and one small matrix product instead of two heads, two slices, a mean and two adds: small networks
    are bound by per-operation overhead (CartPole on a CPU), so fewer operations is faster training."""

    def __init__(self, torso: nn.Module, n_actions: int, dueling: bool = False, head_hidden: int = 0) -> None:
        super().__init__()
        self.torso = torso
        self.dueling = dueling
        width, outputs = torso.features_dim, n_actions + 1 if dueling else n_actions
        if head_hidden:
            self.head: nn.Module = nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(),
                                                 nn.Linear(head_hidden, outputs))
        else:
            self.head = nn.Linear(width, outputs)
        centring = torch.cat([torch.ones(1, n_actions), torch.eye(n_actions) - 1 / n_actions])
        # A constant, not a weight: rebuilt from n_actions, so kept out of the state dict.
        self.register_buffer("dueling_map", centring if dueling else None, persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.torso(obs)
        if torch.is_autocast_enabled(features.device.type):
            # The head in fp32: bf16 keeps 8 bits of mantissa, so actions whose values differ by less than about
            # 0.4 % would tie (argmax then picks the first) and every TD error would carry that rounding.
            with torch.autocast(features.device.type, enabled=False):
                return self._q_values(features.float())
        return self._q_values(features)

    def _q_values(self, features: torch.Tensor) -> torch.Tensor:
        out = self.head(features)
        return out @ self.dueling_map if self.dueling else out

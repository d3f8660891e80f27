"""ε-greedy exploration schedules shared by every value-based agent."""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from lab.config import Section


class EpsilonConfig(Section):
    epsilon_schedule: Literal["linear", "exponential"] = "linear"
    epsilon_start: float = Field(1.0, ge=0, le=1)
    epsilon_end: float = Field(0.05, ge=0, le=1)
    exploration_fraction: float = Field(0.1, gt=0, le=1, description="linear: share of max_steps to decay ε")
    epsilon_decay_steps: int = Field(10_000, gt=0, description="exponential: env steps per e-fold of ε")


def epsilon_at(step: int, max_steps: int, cfg: EpsilonConfig) -> float:
    if cfg.epsilon_schedule == "exponential":
        return cfg.epsilon_end + (cfg.epsilon_start - cfg.epsilon_end) * math.exp(-step / cfg.epsilon_decay_steps)
    progress = min(1.0, step / (cfg.exploration_fraction * max_steps))
    return cfg.epsilon_start + progress * (cfg.epsilon_end - cfg.epsilon_start)


def epsilon_greedy(q_values: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """argmax_a Q(s, a) per row, replaced by a uniform random action with probability ε (all on Q's device)."""
    greedy = q_values.argmax(dim=1)
    if epsilon <= 0:
        return greedy
    n, n_actions = q_values.shape
    explore = torch.rand(n, generator=generator, device=q_values.device) < epsilon
    random_actions = torch.randint(n_actions, (n,), generator=generator, device=q_values.device)
    return torch.where(explore, random_actions, greedy)

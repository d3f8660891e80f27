"""The contract between the Trainer and every task (RL agents, NLP and vision models).

A task knows its data or environment, its model and its loss. The Trainer owns everything around it:
optimizer and LR schedule, gradient clipping, autocast and compile, the loop, progress, logging,
evaluation cadence, checkpoints, early stopping, signals and DDP.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from lab.config import RunConfig
from lab.distributed import DistInfo


@dataclass
class StepOutput:
    """What one `Task.train_step` call returns."""

    loss: torch.Tensor | None = None  # scalar to minimise; None when this call made no gradient update
    steps: int = 1  # how far `trainer.max_steps` advanced (env steps for agents, 1 per batch for supervised)
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)  # averaged over each log window


class Task:
    """Base class of every task. Subclasses set `Config`, build `self.model`, and register with `@TASKS.register`."""

    Config: ClassVar[type[RunConfig]]
    supports_ddp: ClassVar[bool] = False  # supervised tasks shard their batches by `self.dist`
    best_metric: ClassVar[str | None] = None  # default for trainer.best_metric, e.g. "eval/mean_return"
    best_mode: ClassVar[str] = "max"
    best_checkpoint: ClassVar[str] = "full"  # default for trainer.best_checkpoint; "weights" for large states

    def __init__(self, config: RunConfig, device: torch.device, run_dir: Path | None, dist: DistInfo) -> None:
        self.config = config
        self.device = device
        self.run_dir = run_dir
        self.dist = dist
        self.model: nn.Module  # the trained network: saved as model.safetensors, wrapped by DDP

    # --- training -------------------------------------------------------------------------------------------
    @classmethod
    def upgrade_config(cls, data: dict[str, Any], run_format: int) -> dict[str, Any]:
        """Optional: a saved config (plain data) of a run made under an older `lab.runs.RUN_FORMAT`, rewritten
        to mean today what it meant when the run trained. The file itself is left as it is."""
        return data

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups; a group may carry its own "lr" (discriminative LRs, frozen backbones)."""
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    def train_step(self) -> StepOutput:
        raise NotImplementedError

    def after_update(self, updates: int) -> None:
        """Called after each optimizer step with the number of updates so far (target networks, …)."""

    # --- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """Metrics without the "eval/" prefix. Must not touch the training RNG streams or data order."""
        raise NotImplementedError

    def evaluation_details(self) -> dict[str, str]:
        """Optional: what the last evaluation's numbers mean that is not a number (sacreBLEU's signatures, say);
        `lab eval --json` prints it and the run's result.json keeps it."""
        return {}

    # Set by the Trainer before a run's last evaluation: costly media (videos) can wait for it.
    evaluation_is_final: bool = False

    def log_media(self, tracker: Any, step: int) -> None:
        """Optional: images, videos or tables for the tracker after an evaluation."""

    # --- state (everything except model weights and the optimizer, which the Trainer saves) -----------------
    def state_dict(self) -> dict[str, Any]:
        """Nested dicts/lists of tensors, numpy arrays and JSON values; saved without pickle."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

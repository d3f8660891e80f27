"""Batch order for supervised tasks: a seeded permutation per epoch, sharded across DDP ranks.

The whole position is two integers (epoch, batch), so a resumed run sees exactly the batches an unbroken run
would have seen.
"""
from __future__ import annotations

from typing import Any

import torch

from lab.errors import LabError


class EpochBatcher:
    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        per_rank = size // world_size  # every rank takes as many samples, so DDP steps stay in lockstep
        self.batches_per_epoch = per_rank // batch_size if drop_last else -(-per_rank // batch_size)
        if self.batches_per_epoch == 0:
            raise LabError(f"the training split's {size} samples make no full batch of data.batch_size={batch_size}"
                           f"{f' on each of {world_size} ranks' if world_size > 1 else ''}: lower data.batch_size")
        self.epoch = 0
        self.batch = 0
        self._order: torch.Tensor | None = None

    def _epoch_order(self) -> torch.Tensor:
        if self._order is None:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator)
            self._order = order[self.rank::self.world_size][: self.size // self.world_size]
        return self._order

    def next(self) -> torch.Tensor:
        """Indices of the next batch (moves to a new shuffled epoch when this one is used up)."""
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch, self._order = self.epoch + 1, 0, None
        start = self.batch * self.batch_size
        self.batch += 1
        return self._epoch_order()[start:start + self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.batch, self._order = state["epoch"], state["batch"], None

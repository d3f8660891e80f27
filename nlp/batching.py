"""Token-id examples → padded batches, grouped by length so that little compute goes to padding.

The training order is a pure function of (seed, epoch): each epoch shuffles the examples with a
`torch.Generator` seeded from both, sorts them by length within large pools, cuts batches and shuffles
the batches. The sampler's whole state is therefore two ints, (epoch, position), and a resumed run
replays exactly the batches it would have seen. Under DDP every rank computes the same list and takes
every `world_size`-th batch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from nlp.tokenization import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Batch:
    """A padded batch. Masks are True at real tokens; `target_in` is `<bos> y`, `target_out` is `y <eos>`."""

    source: torch.Tensor  # (B, S) token ids
    source_mask: torch.Tensor  # (B, S) bool
    target_in: torch.Tensor  # (B, T)
    target_out: torch.Tensor  # (B, T), PAD_ID where there is no token

    def to(self, device: torch.device) -> Batch:
        return Batch(self.source.to(device), self.source_mask.to(device), self.target_in.to(device),
                     self.target_out.to(device))

    @property
    def target_tokens(self) -> int:
        return int((self.target_out != PAD_ID).sum())


def make_example(source_ids: Sequence[int], target_ids: Sequence[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """Truncate and add the markers: source `x <eos>`, target `<bos> y <eos>`."""
    return list(source_ids[: max_tokens - 1]) + [EOS_ID], [BOS_ID] + list(target_ids[: max_tokens - 2]) + [EOS_ID]


def pad(sequences: Sequence[Sequence[int]], value: int = PAD_ID) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return out


def collate(examples: Sequence[tuple[list[int], list[int]]]) -> Batch:
    """Pad (source, `<bos> y <eos>`) examples into a Batch."""
    source = pad([src for src, _ in examples])
    target = pad([tgt for _, tgt in examples])
    return Batch(source, source != PAD_ID, target[:, :-1], target[:, 1:])


def source_batch(sources: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded source ids and mask for decoding; each source must already end with <eos>."""
    source = pad(sources)
    return source, source != PAD_ID


class BucketBatchSampler:
    """Shuffled batches of similar-length examples; resumable from (epoch, position); sharded by rank."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pool_batches: int = 50) -> None:
        if len(lengths) < world_size:
            raise ValueError(f"{len(lengths)} examples cannot be shared by {world_size} ranks")
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.pool_size = batch_size * pool_batches  # sort within pools: similar lengths, yet a random mix per epoch
        self.epoch = 0
        self.position = 0  # batches of this epoch already handed out on this rank
        self._cached_epoch: int | None = None
        self._cached_batches: list[list[int]] = []

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`, in order."""
        if epoch != self._cached_epoch:
            self._cached_batches, self._cached_epoch = self._make_batches(epoch), epoch
        return self._cached_batches

    def _make_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool_size):
            pool = order[start:start + self.pool_size]
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches += [pool[i:i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        usable = len(batches) - len(batches) % self.world_size  # every rank takes the same number of steps
        return batches[self.rank:usable:self.world_size]

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.batches(self.epoch))

    def next_batch(self) -> list[int]:
        """The next batch of example indices, moving on to the next epoch when this one is used up."""
        if self.position >= len(self.batches(self.epoch)):
            self.epoch, self.position = self.epoch + 1, 0
        batch = self.batches(self.epoch)[self.position]
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Evaluation batches: longest first, no shuffling (the order never changes the result)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]

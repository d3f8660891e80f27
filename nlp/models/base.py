"""What every translation model offers, so that training, decoding and the CLI work with any of them.

Training calls `model(source, source_mask, target_in)` once per batch and gets logits for every target
position. Decoding encodes once, then advances one token at a time:

    memory = model.encode(source, source_mask)      # fixed while decoding: encoder states, cross-attention K/V
    state = model.init_state(memory)                # grows or changes per step: RNN hidden state, self-attention KV cache
    logits, state, attention = model.decode_step(previous_tokens, memory, state)

`memory` and `state` are dicts of batch-first tensors, so beam search can copy and reorder hypotheses
without knowing what is inside. A model whose `fixed_shape_state` is True returns, for
`init_state(memory, capacity=N)`, a state that keeps its shapes for N steps, so that on a GPU one decoding
step can be captured as a CUDA graph and replayed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nlp.tokenization import PAD_ID

Tensors = dict[str, torch.Tensor]


class Seq2SeqModel(nn.Module):
    """An encoder–decoder over token ids; subclasses implement the four methods below."""

    # The longest sequence a model can handle (learned positions have a table of this size).
    max_positions: int = 1024
    # Whether init_state(memory, capacity) gives a state whose shapes stay fixed while decoding.
    fixed_shape_state: bool = False

    def forward(self, source: torch.Tensor, source_mask: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for each position of `target_in` (B, T) given the source (B, S)."""
        raise NotImplementedError

    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> Tensors:
        raise NotImplementedError

    def init_state(self, memory: Tensors, capacity: int | None = None) -> Tensors:
        """The decoder state before the first step; `capacity` (steps to come) matters to a fixed-shape state."""
        raise NotImplementedError

    def decode_step(self, previous: torch.Tensor, memory: Tensors, state: Tensors, need_attention: bool = False
                    ) -> tuple[torch.Tensor, Tensors, torch.Tensor | None]:
        """Logits (B, V) for the next token after `previous` (B,), the new state, and the attention over the
        source (B, S) when asked for and the model has one."""
        raise NotImplementedError


def sequence_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy per target token, padding ignored, optionally label-smoothed (Szegedy et al., 2016)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1),
                           ignore_index=PAD_ID, label_smoothing=label_smoothing)

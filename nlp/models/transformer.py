"""Transformer encoder–decoder (Vaswani et al., 2017) in the pre-LayerNorm arrangement.

Each sub-layer computes x + Dropout(Sublayer(LayerNorm(x))) (Xiong et al., 2020), which trains stably
without a long warm-up; a final LayerNorm closes each stack. Attention runs through
`torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel where one exists.

Decoding keeps a KV cache: each step projects only the newest token and adds its keys and values to
the cache of every self-attention layer, while the cross-attention keys and values are projected from
the encoder output once per sentence (in `encode`). The cache either grows by one position a step, or
(`init_state(memory, capacity=N)`) has N slots from the start, filled one a step and masked until then:
a step whose shapes never change can be captured once as a CUDA graph and replayed.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lab.errors import LabError
from nlp.models.base import Seq2SeqModel, Tensors
from nlp.tokenization import PAD_ID


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, d_model) → (B, heads, T, d_head)."""
    return x.view(x.size(0), x.size(1), heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d_head) → (B, T, d_model)."""
    return x.transpose(1, 2).reshape(x.size(0), x.size(2), -1)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool,
           dropout: float, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(QKᵀ/√d_head)V per head; `mask` (B, 1, 1, S) is True where a key may be attended to."""
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout), None
    # The fused kernel does not return the weights; spell it out for the attention heatmap (decoding only).
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


class SelfAttention(nn.Module):
    """Multi-head self-attention; queries, keys and values come from one projection of the same positions."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None, write_slot: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """With a `cache` of earlier keys/values, `x` is the newest position only. Returns the output and
        the keys/values of every position so far (the cache for the next step). A fixed-size cache comes
        with `write_slot` (B, 1, slots, 1), True at the slot this position fills, and `mask` over the slots."""
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        if cache is not None and write_slot is None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        elif cache is not None:
            k, v = torch.where(write_slot, k, cache[0]), torch.where(write_slot, v, cache[1])
        attended, _ = attend(q, k, v, mask, causal, self.dropout if self.training else 0.0, need_weights=False)
        return self.out(merge_heads(attended)), (k, v)


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder to the encoder output, whose keys/values are projected once."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def keys_values(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.key_value(encoded).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = split_heads(self.query(x), self.heads)
        attended, weights = attend(q, keys, values, mask, False, self.dropout if self.training else 0.0, need_weights)
        return self.out(merge_heads(attended)), weights


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attention = SelfAttention(d_model, heads, dropout)
        self.feed_forward = FeedForward(d_model, ffn_dim, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.norm1(x), mask=source_mask)[0])
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attention = SelfAttention(d_model, heads, dropout)
        self.cross_attention = CrossAttention(d_model, heads, dropout)
        self.feed_forward = FeedForward(d_model, ffn_dim, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cross_keys: torch.Tensor, cross_values: torch.Tensor,
                source_mask: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None, need_weights: bool,
                visible_slots: torch.Tensor | None = None, write_slot: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """With `cache` (keys, values of the earlier positions) `x` is the newest position only; without it,
        `x` is the whole target, masked causally. Returns the output, the extended cache and the cross-attention.
        A fixed-size cache comes with the slots this position may attend to and the one it writes."""
        attended, cache = self.self_attention(self.norm1(x), mask=visible_slots, causal=cache is None, cache=cache,
                                              write_slot=write_slot)
        x = x + self.dropout(attended)
        attended, weights = self.cross_attention(self.norm2(x), cross_keys, cross_values, source_mask, need_weights)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.norm3(x)))
        return x, cache, weights


class SinusoidalPositions(nn.Module):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(…): fixed, no parameters."""

    def __init__(self, max_positions: int, d_model: int) -> None:
        super().__init__()
        position = torch.arange(max_positions).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_positions, d_model)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


class LearnedPositions(nn.Module):
    def __init__(self, max_positions: int, d_model: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_positions, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table(positions)


class Transformer(Seq2SeqModel):
    """Pre-LN Transformer encoder–decoder with sinusoidal or learned positions and tied embeddings."""

    def __init__(self, source_vocab_size: int, target_vocab_size: int, d_model: int = 512, heads: int = 8,
                 encoder_layers: int = 6, decoder_layers: int = 6, ffn_dim: int = 2048, dropout: float = 0.1,
                 positions: Literal["sinusoidal", "learned"] = "sinusoidal", max_positions: int = 256,
                 tie_embeddings: bool = True, share_source_embedding: bool = False) -> None:
        super().__init__()
        if d_model % heads:
            raise LabError(f"d_model={d_model} must be divisible by heads={heads}")
        if positions not in ("sinusoidal", "learned"):
            raise LabError(f"unknown positions {positions!r} (valid: sinusoidal, learned)")
        if share_source_embedding and source_vocab_size != target_vocab_size:
            raise LabError("share_source_embedding needs one vocabulary for both languages (tokenizer.shared: true)")
        self.d_model, self.heads, self.max_positions = d_model, heads, max_positions
        self.tie_embeddings = tie_embeddings

        # One embedding table serves both languages when they share a vocabulary; the decoder's table doubles
        # as the output projection when tied (Press & Wolf, 2017). Shared tables are stored once.
        self.target_embedding = nn.Embedding(target_vocab_size, d_model, padding_idx=PAD_ID)
        self.source_embedding = (None if share_source_embedding
                                 else nn.Embedding(source_vocab_size, d_model, padding_idx=PAD_ID))
        self.generator = None if tie_embeddings else nn.Linear(d_model, target_vocab_size, bias=False)
        position_class = SinusoidalPositions if positions == "sinusoidal" else LearnedPositions
        self.positions = position_class(max_positions, d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(d_model, heads, ffn_dim, dropout) for _ in range(encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(d_model, heads, ffn_dim, dropout) for _ in range(decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, parameter in self.named_parameters():
            if "embedding" in name:  # scaled by √d_model on the way in, so unit variance after scaling
                nn.init.normal_(parameter, std=self.d_model ** -0.5)
                with torch.no_grad():
                    parameter[PAD_ID].zero_()
            elif parameter.dim() > 1 and "positions" not in name:
                nn.init.xavier_uniform_(parameter)

    @property
    def source_table(self) -> nn.Embedding:
        return self.target_embedding if self.source_embedding is None else self.source_embedding

    def check_length(self, length: int) -> None:
        if length > self.max_positions:
            raise LabError(f"sequence of {length} tokens is longer than max_positions={self.max_positions}")

    def embed(self, table: nn.Embedding, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Scaled token embeddings plus the embeddings of their `positions` ((T,) shared or (B, T))."""
        return self.dropout(table(tokens) * math.sqrt(self.d_model) + self.positions(positions))

    def embed_from(self, table: nn.Embedding, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Embed `tokens` (B, T) at positions start … start + T − 1."""
        self.check_length(start + tokens.size(1))
        return self.embed(table, tokens, torch.arange(start, start + tokens.size(1), device=tokens.device))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return F.linear(hidden, self.target_embedding.weight)
        return self.generator(hidden)

    # --- encoder ---------------------------------------------------------------------------------------------------
    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> Tensors:
        attention_mask = source_mask[:, None, None, :]
        x = self.embed_from(self.source_table, source)
        for layer in self.encoder_layers:
            x = layer(x, attention_mask)
        encoded = self.encoder_norm(x)
        memory = {"source_mask": source_mask}
        for i, layer in enumerate(self.decoder_layers):  # cross-attention K/V: once per sentence, not per step
            memory[f"cross_keys.{i}"], memory[f"cross_values.{i}"] = layer.cross_attention.keys_values(encoded)
        return memory

    # --- decoder ---------------------------------------------------------------------------------------------------
    fixed_shape_state = True

    def init_state(self, memory: Tensors, capacity: int | None = None) -> Tensors:
        """An empty KV cache that grows by a position a step, or with `capacity` slots and the next position
        to fill (`position`, one per row) when its shape must stay fixed."""
        batch = memory["source_mask"].size(0)
        if capacity is not None:
            self.check_length(capacity)
        empty = memory["cross_keys.0"].new_zeros(batch, self.heads, capacity or 0, self.d_model // self.heads)
        state = {} if capacity is None else {"position": memory["source_mask"].new_zeros(batch, dtype=torch.long)}
        for i in range(len(self.decoder_layers)):
            state[f"self_keys.{i}"], state[f"self_values.{i}"] = empty, empty
        return state

    def decode(self, target: torch.Tensor, memory: Tensors, state: Tensors | None, need_attention: bool = False
               ) -> tuple[torch.Tensor, Tensors, torch.Tensor | None]:
        """Hidden states (B, T, d_model) of `target`'s positions. With `state` (a KV cache), `target` continues
        the cached prefix; without it, it is the whole target. Also returns the new cache and, if asked, the
        last layer's cross-attention averaged over heads (B, T, S). A fixed-size cache takes one position a call."""
        new_state, weights, visible_slots, write_slot = {}, None, None, None
        if state is not None and "position" in state:
            position = state["position"]  # (B,): the slot this token fills
            slots = torch.arange(state["self_keys.0"].size(2), device=target.device)
            visible_slots = (slots <= position.unsqueeze(1))[:, None, None, :]  # (B, 1, 1, slots)
            write_slot = (slots == position.unsqueeze(1))[:, None, :, None]  # (B, 1, slots, 1)
            x = self.embed(self.target_embedding, target, position.unsqueeze(1))
            new_state["position"] = position + 1
        else:
            x = self.embed_from(self.target_embedding, target, 0 if state is None else state["self_keys.0"].size(2))
        attention_mask = memory["source_mask"][:, None, None, :]
        last = len(self.decoder_layers) - 1
        for i, layer in enumerate(self.decoder_layers):
            cache = None if state is None else (state[f"self_keys.{i}"], state[f"self_values.{i}"])
            x, (keys, values), layer_weights = layer(x, memory[f"cross_keys.{i}"], memory[f"cross_values.{i}"],
                                                     attention_mask, cache, need_attention and i == last,
                                                     visible_slots, write_slot)
            new_state[f"self_keys.{i}"], new_state[f"self_values.{i}"] = keys, values
            if layer_weights is not None:
                weights = layer_weights.mean(dim=1)
        return self.decoder_norm(x), new_state, weights

    def decode_step(self, previous: torch.Tensor, memory: Tensors, state: Tensors, need_attention: bool = False
                    ) -> tuple[torch.Tensor, Tensors, torch.Tensor | None]:
        hidden, state, weights = self.decode(previous.unsqueeze(1), memory, state, need_attention)
        return self.logits(hidden[:, -1]), state, (weights[:, -1] if weights is not None else None)

    def forward(self, source: torch.Tensor, source_mask: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        hidden, _, _ = self.decode(target_in, self.encode(source, source_mask), state=None)
        return self.logits(hidden)

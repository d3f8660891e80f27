"""Greedy and beam-search decoding for any `Seq2SeqModel`, one token per step from an incremental state.

The source is encoded once. Each step feeds only the newest token; the model carries the rest in its
state (the RNN hidden state, or the Transformer's KV cache), so no step recomputes the prefix. Beam
search keeps `beam_size` hypotheses per sentence as extra batch rows and reorders the state rows
whenever hypotheses are extended, copied or dropped.

Call these in eval mode; they run under `torch.no_grad()`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from lab.config import Section
from nlp.models.base import Seq2SeqModel, Tensors
from nlp.tokenization import BOS_ID, EOS_ID, PAD_ID


class DecodingConfig(Section):
    beam_size: int = Field(5, ge=1, description="1 is greedy decoding")
    length_penalty: float = Field(0.6, ge=0, description="GNMT α: 0 ranks by log-probability, 1 by its per-token mean")
    max_length_ratio: float = Field(1.5, gt=0, description="output length limit: ratio × source length + max_length_extra")
    max_length_extra: int = Field(10, ge=0)


@dataclass
class Hypotheses:
    """Decoded sequences: tokens (B, T) without <bos>, ending in <eos> then <pad>; one score per sentence;
    attention (B, T, S) over the source for each output token when requested."""

    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None = None


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """lp(Y) = ((5 + |Y|) / 6)^α from Wu et al. (2016): scores are log P(Y|X) / lp(Y)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def max_output_length(model: Seq2SeqModel, source_mask: torch.Tensor, ratio: float = 1.5, extra: int = 10) -> int:
    """A generous bound on the output length for this batch, within the model's position table."""
    longest_source = int(source_mask.sum(dim=1).max())
    return max(1, min(int(longest_source * ratio) + extra, model.max_positions - 1))


def _forbid_impossible_tokens(log_probs: torch.Tensor, step: int, min_length: int) -> None:
    """<bos> and <pad> never follow a prefix; <eos> not before `min_length` tokens."""
    log_probs[:, BOS_ID] = float("-inf")
    log_probs[:, PAD_ID] = float("-inf")
    if step < min_length:
        log_probs[:, EOS_ID] = float("-inf")


@torch.no_grad()
def greedy_decode(model: Seq2SeqModel, source: torch.Tensor, source_mask: torch.Tensor, max_length: int,
                  min_length: int = 0, use_cache: bool = True, return_attention: bool = False) -> Hypotheses:
    """Pick the most likely token at every step. `use_cache=False` recomputes the whole prefix with the
    training forward pass at every step (slow; it exists to check the cached path against)."""
    if return_attention and not use_cache:
        raise ValueError("attention weights come from the cached decoding path; use use_cache=True")
    batch = source.size(0)
    memory = model.encode(source, source_mask) if use_cache else {}
    state = model.init_state(memory) if use_cache else {}
    tokens = source.new_full((batch, 1), BOS_ID)
    scores = torch.zeros(batch, device=source.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=source.device)
    attention = []
    for step in range(max_length):
        if use_cache:
            logits, state, weights = model.decode_step(tokens[:, -1], memory, state, return_attention)
            if return_attention:
                attention.append(weights)
        else:
            logits = model(source, source_mask, tokens)[:, -1]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        _forbid_impossible_tokens(log_probs, step, min_length)
        best = log_probs.argmax(dim=-1)
        scores += torch.where(finished, 0.0, log_probs.gather(1, best.unsqueeze(1)).squeeze(1))
        best = torch.where(finished, PAD_ID, best)
        tokens = torch.cat([tokens, best.unsqueeze(1)], dim=1)
        finished |= best == EOS_ID
        if finished.all():
            break
    stacked = torch.stack(attention, dim=1) if attention and attention[0] is not None else None
    return Hypotheses(tokens[:, 1:], scores, stacked)


def _select_rows(tensors: Tensors, rows: torch.Tensor) -> Tensors:
    return {name: tensor.index_select(0, rows) for name, tensor in tensors.items()}


@torch.no_grad()
def beam_search(model: Seq2SeqModel, source: torch.Tensor, source_mask: torch.Tensor, beam_size: int = 5,
                max_length: int = 100, min_length: int = 0, alpha: float = 0.6,
                return_attention: bool = False) -> Hypotheses:
    """Batched beam search ranked by GNMT's length-normalised score log P / lp.

    A finished hypothesis stays in its beam and can only be extended by <pad> at no cost, so its score is
    frozen and it competes with the open hypotheses until something better pushes it out. The search stops
    when every kept hypothesis has ended or after `max_length` tokens.
    """
    batch, beams = source.size(0), beam_size
    memory = _select_rows(model.encode(source, source_mask),
                          torch.arange(batch, device=source.device).repeat_interleave(beams))
    state = model.init_state(memory)
    rows_of_sentence = torch.arange(batch, device=source.device).unsqueeze(1) * beams  # (B, 1) first row of each

    tokens = source.new_full((batch * beams, 1), BOS_ID)
    log_prob_sums = torch.zeros(batch, beams, device=source.device)
    log_prob_sums[:, 1:] = float("-inf")  # all beams start as the same empty hypothesis: expand only one
    lengths = torch.zeros(batch * beams, dtype=torch.long, device=source.device)
    finished = torch.zeros(batch * beams, dtype=torch.bool, device=source.device)
    attention = source.new_zeros(batch * beams, 0, source.size(1), dtype=torch.float)

    for step in range(max_length):
        logits, state, weights = model.decode_step(tokens[:, -1], memory, state, return_attention)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        vocab = log_probs.size(-1)
        _forbid_impossible_tokens(log_probs, step, min_length)
        log_probs = log_probs.masked_fill(finished.unsqueeze(1), float("-inf"))
        log_probs[:, PAD_ID] = torch.where(finished, 0.0, float("-inf"))

        candidate_sums = log_prob_sums.view(-1, 1) + log_probs  # (B·K, V)
        candidate_lengths = (lengths + (~finished).long()).unsqueeze(1)
        candidate_scores = candidate_sums / length_penalty(candidate_lengths, alpha)
        _, best = candidate_scores.view(batch, beams * vocab).topk(beams, dim=-1)  # (B, K) over all K·V extensions

        rows = (rows_of_sentence + best // vocab).view(-1)  # the hypothesis each survivor extends
        new_tokens = (best % vocab).view(-1)
        log_prob_sums = candidate_sums.view(batch, -1).gather(1, best)
        lengths = candidate_lengths.squeeze(1).index_select(0, rows)
        finished = finished.index_select(0, rows) | (new_tokens == EOS_ID)
        tokens = torch.cat([tokens.index_select(0, rows), new_tokens.unsqueeze(1)], dim=1)
        state = _select_rows(state, rows)
        if return_attention and weights is not None:
            attention = torch.cat([attention.index_select(0, rows), weights.float().index_select(0, rows).unsqueeze(1)], 1)
        if finished.all():
            break

    final_scores = log_prob_sums / length_penalty(lengths.view(batch, beams), alpha)
    best_scores, best_beam = final_scores.max(dim=-1)
    best_rows = rows_of_sentence.squeeze(1) + best_beam
    best_attention = attention.index_select(0, best_rows) if return_attention and attention.size(1) else None
    return Hypotheses(tokens.index_select(0, best_rows)[:, 1:], best_scores, best_attention)


def decode(model: Seq2SeqModel, source: torch.Tensor, source_mask: torch.Tensor, config: DecodingConfig,
           return_attention: bool = False) -> Hypotheses:
    """Greedy for beam_size 1, beam search otherwise, with the config's length limit."""
    max_length = max_output_length(model, source_mask, config.max_length_ratio, config.max_length_extra)
    if config.beam_size == 1:
        return greedy_decode(model, source, source_mask, max_length, return_attention=return_attention)
    return beam_search(model, source, source_mask, config.beam_size, max_length, alpha=config.length_penalty,
                       return_attention=return_attention)

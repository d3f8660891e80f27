"""Greedy and beam-search decoding for any `Seq2SeqModel`, one token per step from an incremental state.

The source is encoded once. Each step feeds only the newest token; the model carries the rest in its
state (the RNN hidden state, or the Transformer's KV cache), so no step recomputes the prefix. Beam
search keeps `beam_size` hypotheses per sentence as extra batch rows and reorders the state rows
whenever hypotheses are extended, copied or dropped.

A beam-search step is a function from the search's tensors to their next values with no host-side
decision inside, so on CUDA it is captured once as a CUDA graph and replayed (`cuda_graph`): a small batch's
step costs one launch instead of hundreds, and the GPU rather than Python sets the pace.

Call these in eval mode; they run under `torch.no_grad()`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from pydantic import Field

from lab.config import Section
from lab.devices import GraphCaptureWarning, capture_stream, capture_step
from nlp.models.base import Seq2SeqModel, Tensors
from nlp.tokenization import BOS_ID, EOS_ID, PAD_ID


class DecodingConfig(Section):
    beam_size: int = Field(5, ge=1, description="1 is greedy decoding")
    length_penalty: float = Field(0.6, ge=0, description="GNMT α: 0 ranks by log-probability, 1 by its per-token mean")
    max_length_ratio: float = Field(1.5, gt=0, description="output length limit: ratio × source length + max_length_extra")
    max_length_extra: int = Field(10, ge=0)
    min_length: int = Field(1, ge=0, description="output tokens before <eos> may end it: 1 forbids an empty "
                                                 "translation of a non-empty sentence")
    cuda_graph: bool = Field(True, description="on CUDA, capture a beam-search step once as a CUDA graph and replay it "
                                               "(Transformer); false runs every step eagerly")


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


def _forbid_impossible_tokens(log_probs: torch.Tensor, eos_allowed: bool | torch.Tensor) -> None:
    """<bos> and <pad> never follow a prefix; <eos> only where allowed (not before the minimum length).
    `eos_allowed` may be a tensor, so that a step needs no host-side branch and can be captured."""
    log_probs[:, BOS_ID] = float("-inf")
    log_probs[:, PAD_ID] = float("-inf")
    if isinstance(eos_allowed, torch.Tensor):
        log_probs[:, EOS_ID] = torch.where(eos_allowed, log_probs[:, EOS_ID], float("-inf"))
    elif not eos_allowed:
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
        _forbid_impossible_tokens(log_probs, eos_allowed=step >= min_length)
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


GRAPH_WARMUP_STEPS = 2  # eager steps on the capture stream first: lazy CUDA set-up must happen outside the graph


def run_until_finished(step: Callable[[Tensors], Tensors], carry: Tensors, max_steps: int,
                       cuda_graph: bool = False) -> tuple[Tensors, int]:
    """Apply `step` to `carry` until all of carry["finished"] is True, at most `max_steps` times; returns the
    last carry and the number of steps taken. With `cuda_graph` the first steps run eagerly on the capture
    stream, then one step is captured as a CUDA graph and the rest are replays of it (or, should the capture
    fail, eager steps after a `GraphCaptureWarning`)."""
    taken, finished = 0, False
    eager_steps = min(max_steps, GRAPH_WARMUP_STEPS) if cuda_graph else max_steps
    stream = capture_stream(carry["finished"].device) if cuda_graph else None
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream) if stream is not None else nullcontext():
        while taken < eager_steps and not finished:
            carry, taken = step(carry), taken + 1
            finished = bool(carry["finished"].all())
    if stream is not None:
        torch.cuda.current_stream().wait_stream(stream)
    if finished or taken == max_steps:
        return carry, taken
    try:
        replay = capture_step(step, carry)
    except RuntimeError as error:  # the carry is untouched: a capture records kernels, it runs none
        warnings.warn(f"decoding continues with eager steps: CUDA graph capture failed ({error})", GraphCaptureWarning)
        replay = None
    while taken < max_steps and not finished:
        if replay is None:
            carry = step(carry)
        else:
            replay()
        taken += 1
        finished = bool(carry["finished"].all())
    return carry, taken


@torch.no_grad()
def beam_search(model: Seq2SeqModel, source: torch.Tensor, source_mask: torch.Tensor, beam_size: int = 5,
                max_length: int = 100, min_length: int = 0, alpha: float = 0.6,
                return_attention: bool = False, cuda_graph: bool = True) -> Hypotheses:
    """Batched beam search ranked by GNMT's length-normalised score log P / lp.

    A finished hypothesis stays in its beam and can only be extended by <pad> at no cost, so its score is
    frozen and it competes with the open hypotheses until something better pushes it out. The search stops
    when every kept hypothesis has ended or after `max_length` tokens.

    One step is a function from the search's tensors to their next values, with no host-side decision in
    it. On CUDA (with `cuda_graph` and a model with a fixed-shape state) it is captured once as a CUDA graph
    and replayed, which removes the per-kernel launch cost that bounds a step of a small batch.
    """
    batch, beams, device = source.size(0), beam_size, source.device
    graphed = cuda_graph and device.type == "cuda" and model.fixed_shape_state
    memory = _select_rows(model.encode(source, source_mask), torch.arange(batch, device=device).repeat_interleave(beams))
    rows_of_sentence = torch.arange(batch, device=device).unsqueeze(1) * beams  # (B, 1) first row of each
    state = model.init_state(memory, capacity=max_length if graphed else None)
    state_keys = {name: f"state.{name}" for name in state}  # the model's state travels in the carry

    log_prob_sums = torch.zeros(batch, beams, device=device)
    log_prob_sums[:, 1:] = float("-inf")  # all beams start as the same empty hypothesis: expand only one
    carry = {
        "step": torch.zeros((), dtype=torch.long, device=device),
        "last": source.new_full((batch * beams,), BOS_ID),  # each hypothesis's newest token
        "tokens": source.new_full((batch * beams, max_length), PAD_ID),  # filled one column a step
        "log_prob_sums": log_prob_sums,
        "lengths": torch.zeros(batch * beams, dtype=torch.long, device=device),
        "finished": torch.zeros(batch * beams, dtype=torch.bool, device=device),
        **{key: state[name] for name, key in state_keys.items()},
    }
    if return_attention:
        carry["attention"] = torch.zeros(batch * beams, max_length, source.size(1), device=device)
    model_attends = False  # set by the first step: models without attention return no weights

    def extend(carry: Tensors) -> Tensors:
        """Score every one-token extension of every hypothesis and keep the best `beams` per sentence."""
        nonlocal model_attends
        state = {name: carry[key] for name, key in state_keys.items()}
        logits, state, weights = model.decode_step(carry["last"], memory, state, return_attention)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        vocab = log_probs.size(-1)
        step, finished = carry["step"], carry["finished"]
        _forbid_impossible_tokens(log_probs, eos_allowed=step >= min_length)
        log_probs = log_probs.masked_fill(finished.unsqueeze(1), float("-inf"))
        log_probs[:, PAD_ID] = torch.where(finished, 0.0, float("-inf"))

        candidate_sums = carry["log_prob_sums"].view(-1, 1) + log_probs  # (B·K, V)
        candidate_lengths = (carry["lengths"] + (~finished).long()).unsqueeze(1)
        candidate_scores = candidate_sums / length_penalty(candidate_lengths, alpha)
        _, best = candidate_scores.view(batch, beams * vocab).topk(beams, dim=-1)  # (B, K) over all K·V extensions

        rows = (rows_of_sentence + best // vocab).view(-1)  # the hypothesis each survivor extends
        new_tokens = (best % vocab).view(-1)
        column = step.view(1)
        extended = {
            "step": step + 1,
            "last": new_tokens,
            "tokens": carry["tokens"].index_select(0, rows).index_copy(1, column, new_tokens.unsqueeze(1)),
            "log_prob_sums": candidate_sums.view(batch, -1).gather(1, best),
            "lengths": candidate_lengths.squeeze(1).index_select(0, rows),
            "finished": finished.index_select(0, rows) | (new_tokens == EOS_ID),
            **{key: state[name].index_select(0, rows) for name, key in state_keys.items()},
        }
        if return_attention:
            model_attends = weights is not None
            extended["attention"] = (carry["attention"] if weights is None else carry["attention"].index_select(0, rows)
                                     .index_copy(1, column, weights.float().index_select(0, rows).unsqueeze(1)))
        return extended

    carry, steps = run_until_finished(extend, carry, max_length, graphed)
    final_scores = carry["log_prob_sums"] / length_penalty(carry["lengths"].view(batch, beams), alpha)
    best_scores, best_beam = final_scores.max(dim=-1)
    best_rows = rows_of_sentence.squeeze(1) + best_beam
    best_attention = carry["attention"].index_select(0, best_rows)[:, :steps] if model_attends else None
    return Hypotheses(carry["tokens"].index_select(0, best_rows)[:, :steps], best_scores, best_attention)


def decode(model: Seq2SeqModel, source: torch.Tensor, source_mask: torch.Tensor, config: DecodingConfig,
           return_attention: bool = False) -> Hypotheses:
    """Greedy for beam_size 1, beam search otherwise, with the config's length limits. Either way a sentence's
    score is GNMT's length-normalised log-probability, log P(Y|X) / lp(Y), so scores compare across beam sizes."""
    max_length = max_output_length(model, source_mask, config.max_length_ratio, config.max_length_extra)
    min_length = min(config.min_length, max_length)
    if config.beam_size == 1:
        found = greedy_decode(model, source, source_mask, max_length, min_length, return_attention=return_attention)
        lengths = (found.tokens != PAD_ID).sum(dim=1)  # generated tokens, <eos> included
        found.scores = found.scores / length_penalty(lengths, config.length_penalty)
        return found
    return beam_search(model, source, source_mask, config.beam_size, max_length, min_length,
                       alpha=config.length_penalty, return_attention=return_attention, cuda_graph=config.cuda_graph)

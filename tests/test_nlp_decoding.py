"""Decoding with incremental state (cache = full recompute, beam 1 = greedy), attention maps, and the metrics."""
from __future__ import annotations

import pytest
import torch

from nlp.batching import source_batch
from lab.errors import LabError
from nlp.decoding import (DecodingConfig, beam_search, decode, greedy_decode, length_penalty, max_output_length,
                          run_until_finished)
from nlp.metrics import score_translations
from nlp.models import build_model, list_models
from nlp.tokenization import EOS_ID, PAD_ID

VOCAB = 40
SOURCES = [[5, 6, 7, 8, 9, EOS_ID], [10, 11, EOS_ID], [12, 13, 14, 15, 16, 17, 18, EOS_ID]]



def random_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A small untrained model whose outputs are peaked enough that decoding does not stop at once."""
    torch.manual_seed(seed)
    options = (dict(d_model=32, heads=4, encoder_layers=2, decoder_layers=2, ffn_dim=64, dropout=0.0)
               if name == "seq2seq_transformer" else dict(embedding_dim=16, hidden_size=32, num_layers=2, dropout=0.0))
    model = build_model(name, VOCAB, VOCAB, **options).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return model


@pytest.mark.parametrize("name", list_models())
def test_cached_greedy_equals_full_recompute(name: str) -> None:
    model = random_model(name)
    source, mask = source_batch(SOURCES)
    cached = greedy_decode(model, source, mask, max_length=12)
    recomputed = greedy_decode(model, source, mask, max_length=12, use_cache=False)
    assert cached.tokens.size(1) > 3
    assert torch.equal(cached.tokens, recomputed.tokens)
    torch.testing.assert_close(cached.scores, recomputed.scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_beam_of_one_is_greedy(name: str) -> None:
    model = random_model(name, seed=1)
    source, mask = source_batch(SOURCES)
    greedy = greedy_decode(model, source, mask, max_length=12)
    beam = beam_search(model, source, mask, beam_size=1, max_length=12, alpha=0.0)
    assert torch.equal(beam.tokens, greedy.tokens)
    torch.testing.assert_close(beam.scores, greedy.scores)


@pytest.mark.parametrize("name", ["seq2seq_lstm_bahdanau", "seq2seq_transformer"])
def test_beam_search_is_independent_of_the_batch(name: str) -> None:
    model = random_model(name, seed=2)
    source, mask = source_batch(SOURCES)
    batched = beam_search(model, source, mask, beam_size=4, max_length=10)
    for row, sentence in enumerate(SOURCES):
        alone_source, alone_mask = source_batch([sentence])
        alone = beam_search(model, alone_source, alone_mask, beam_size=4, max_length=10)
        width = alone.tokens.size(1)
        assert torch.equal(batched.tokens[row, :width], alone.tokens[0])
        assert (batched.tokens[row, width:] == PAD_ID).all()
        torch.testing.assert_close(batched.scores[row], alone.scores[0], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def sequence_log_prob(model: torch.nn.Module, source: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor) -> float:
    """log P(tokens | source) by teacher forcing, counting tokens up to the first <eos>."""
    target_in = torch.cat([torch.ones(1, 1, dtype=torch.long), tokens[:, :-1]], dim=1)
    log_probs = torch.log_softmax(model(source, mask, target_in).float(), dim=-1)
    picked = log_probs.gather(2, tokens.unsqueeze(2)).squeeze(2)
    ended = (tokens == EOS_ID).long().cumsum(1) - (tokens == EOS_ID).long()  # 1 after the first <eos>
    return float(picked.masked_fill((ended > 0) | (tokens == PAD_ID), 0.0).sum())


def test_beam_score_is_the_length_normalised_log_probability() -> None:
    model = random_model("seq2seq_transformer", seed=3)
    source, mask = source_batch(SOURCES[:1])
    beam = beam_search(model, source, mask, beam_size=5, max_length=10, alpha=0.6)
    tokens = beam.tokens
    length = int((tokens != PAD_ID).sum())
    expected = sequence_log_prob(model, source, mask, tokens) / float(length_penalty(torch.tensor(length), 0.6))
    assert beam.scores[0].item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", ["seq2seq_gru_bahdanau", "seq2seq_lstm_luong_dot", "seq2seq_transformer"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_maps_cover_the_real_source_tokens(name: str, beam_size: int) -> None:
    model = random_model(name)
    source, mask = source_batch(SOURCES)
    config = DecodingConfig(beam_size=beam_size)
    hypotheses = decode(model, source, mask, config, return_attention=True)
    attention = hypotheses.attention
    assert attention.shape == (*hypotheses.tokens.shape, source.size(1))
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:2]))
    assert (attention[1, :, 3:] == 0).all()  # the second source has 3 real tokens


def test_models_without_attention_return_none() -> None:
    source, mask = source_batch(SOURCES)
    assert greedy_decode(random_model("seq2seq_gru"), source, mask, 5, return_attention=True).attention is None


def test_transformer_cache_grows_by_one_position_per_step_and_cross_attention_is_fixed() -> None:
    model = random_model("seq2seq_transformer")
    source, mask = source_batch(SOURCES)
    memory = model.encode(source, mask)
    state = model.init_state(memory)
    assert memory["cross_keys.1"].shape == (3, 4, source.size(1), 8)
    previous = torch.ones(3, dtype=torch.long)
    for step in range(3):
        logits, state, _ = model.decode_step(previous, memory, state)
        previous = logits.argmax(-1)
        assert {t.size(2) for t in state.values()} == {step + 1}
        assert not any(name.startswith("cross") for name in state)


def test_fixed_size_cache_decodes_like_the_growing_cache_through_reorders() -> None:
    model = random_model("seq2seq_transformer", seed=4)
    source, mask = source_batch(SOURCES)
    memory = model.encode(source, mask)
    growing, fixed = model.init_state(memory), model.init_state(memory, capacity=6)
    assert fixed["self_keys.0"].shape == (3, 4, 6, 8) and fixed["position"].tolist() == [0, 0, 0]
    previous = torch.ones(3, dtype=torch.long)
    for step in range(5):
        logits, growing, _ = model.decode_step(previous, memory, growing)
        fixed_logits, fixed, _ = model.decode_step(previous, memory, fixed)
        torch.testing.assert_close(fixed_logits, logits, atol=1e-4, rtol=1e-4)
        assert fixed["self_keys.0"].size(2) == 6 and fixed["position"].tolist() == [step + 1] * 3
        rows = torch.tensor([2, 0, 0]) if step == 1 else torch.arange(3)  # beam search copies and drops rows
        memory = {name: tensor.index_select(0, rows) for name, tensor in memory.items()}
        growing = {name: tensor.index_select(0, rows) for name, tensor in growing.items()}
        fixed = {name: tensor.index_select(0, rows) for name, tensor in fixed.items()}
        previous = logits.index_select(0, rows).argmax(-1)
    with pytest.raises(LabError, match="max_positions"):
        model.init_state(memory, capacity=model.max_positions + 1)


def fixed_size_search(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    """beam_search with eager steps on the fixed-size cache that a CUDA graph captures."""
    init_state = model.init_state
    with monkeypatch.context() as patch:
        patch.setattr(model, "init_state", lambda memory, capacity=None: init_state(memory, capacity=kwargs["max_length"]))
        return beam_search(model, *args, cuda_graph=False, **kwargs)


def test_beam_search_on_a_fixed_size_cache_matches_the_growing_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixed-shape path is what a CUDA graph captures; on a CPU it is checked eagerly against the default."""
    model = random_model("seq2seq_transformer", seed=5)
    source, mask = source_batch(SOURCES)
    growing = beam_search(model, source, mask, beam_size=4, max_length=10, return_attention=True)
    fixed = fixed_size_search(model, monkeypatch, source, mask, beam_size=4, max_length=10, return_attention=True)
    assert growing.tokens.size(1) > 3
    assert torch.equal(fixed.tokens, growing.tokens)
    torch.testing.assert_close(fixed.scores, growing.scores, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fixed.attention, growing.attention, atol=1e-4, rtol=1e-4)


def test_a_beam_search_step_traces_whole_so_a_cuda_graph_can_capture_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile with fullgraph=True refuses a step that reads a tensor on the host (`.item()`, a branch on
    a value, an output whose shape depends on values), which is exactly what a CUDA graph cannot capture."""
    import nlp.decoding

    model = random_model("seq2seq_transformer", seed=5)
    source, mask = source_batch(SOURCES)
    expected = beam_search(model, source, mask, beam_size=4, max_length=10, min_length=2, return_attention=True)
    run_eagerly = nlp.decoding.run_until_finished
    traced_steps = []

    def run_traced(step, carry, max_steps, cuda_graph=False):  # noqa: ANN001, ANN202
        traced_steps.append(torch.compile(step, fullgraph=True, backend="eager", dynamic=False))
        return run_eagerly(traced_steps[-1], carry, max_steps, cuda_graph)

    monkeypatch.setattr(nlp.decoding, "run_until_finished", run_traced)
    traced = fixed_size_search(model, monkeypatch, source, mask, beam_size=4, max_length=10, min_length=2,
                               return_attention=True)
    assert len(traced_steps) == 1
    assert torch.equal(traced.tokens, expected.tokens)
    torch.testing.assert_close(traced.attention, expected.attention, atol=1e-4, rtol=1e-4)


def test_run_until_finished_stops_when_every_row_has_finished_or_at_the_step_limit() -> None:
    def count(carry: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        steps = carry["steps"] + 1
        return {"steps": steps, "finished": steps >= carry["needed"], "needed": carry["needed"]}

    start = {"steps": torch.zeros(2, dtype=torch.long), "finished": torch.zeros(2, dtype=torch.bool),
             "needed": torch.tensor([2, 4])}
    carry, taken = run_until_finished(count, start, max_steps=10)
    assert taken == 4 and carry["steps"].tolist() == [4, 4]
    assert run_until_finished(count, start, max_steps=3)[1] == 3


def test_a_captured_step_must_keep_the_layout_of_what_it_takes() -> None:
    from lab.devices import _check_same_layout

    carry = {"a": torch.zeros(3), "b": torch.zeros(2, dtype=torch.long)}
    _check_same_layout(carry, {"a": torch.ones(3), "b": carry["b"]})  # returning an input unchanged is fine
    for outputs, complaint in (({"a": torch.ones(3)}, "return what it takes"),
                               ({"a": torch.ones(1), "b": carry["b"]}, "changed 'a'"),
                               ({"a": torch.ones(3, dtype=torch.float64), "b": carry["b"]}, "changed 'a'")):
        with pytest.raises(ValueError, match=complaint):
            _check_same_layout(carry, outputs)
    aliased = {"a": torch.zeros(4), "b": torch.zeros(4)}
    with pytest.raises(ValueError, match="shares memory"):
        _check_same_layout(aliased, {"a": aliased["b"], "b": aliased["b"]})


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("attention", [False, True])
def test_cuda_graph_replays_give_the_eager_steps_results(bf16: bool, attention: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import nlp.decoding

    model = random_model("seq2seq_transformer", seed=6).cuda()
    source, mask = (t.cuda() for t in source_batch(SOURCES))
    captures = []
    capture_step = nlp.decoding.capture_step
    monkeypatch.setattr(nlp.decoding, "capture_step", lambda *args: captures.append(1) or capture_step(*args))
    options = dict(beam_size=4, max_length=12, min_length=8, return_attention=attention)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        graphed = beam_search(model, source, mask, **options)
        eager = fixed_size_search(model, monkeypatch, source, mask, **options)
        growing = beam_search(model, source, mask, cuda_graph=False, **options)
    assert captures == [1] and graphed.tokens.size(1) >= 8
    assert torch.equal(graphed.tokens, eager.tokens)
    torch.testing.assert_close(graphed.scores, eager.scores)
    if attention:
        torch.testing.assert_close(graphed.attention, eager.attention)
    if not bf16:  # other attention kernels (masked, full width) than the growing cache's: equal up to rounding
        assert torch.equal(graphed.tokens, growing.tokens)
        torch.testing.assert_close(graphed.scores, growing.scores, atol=1e-4, rtol=1e-4)


@CUDA
def test_a_failed_capture_warns_and_the_search_goes_on_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    import nlp.decoding
    from lab.devices import GraphCaptureWarning

    model = random_model("seq2seq_transformer", seed=7).cuda()
    source, mask = (t.cuda() for t in source_batch(SOURCES))
    expected = fixed_size_search(model, monkeypatch, source, mask, beam_size=3, max_length=10)

    def failing_capture(step, carry):  # noqa: ANN001, ANN202
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(nlp.decoding, "capture_step", failing_capture)
    with pytest.warns(GraphCaptureWarning, match="not permitted"):
        hypotheses = beam_search(model, source, mask, beam_size=3, max_length=10)
    assert torch.equal(hypotheses.tokens, expected.tokens)


def test_min_length_keeps_eos_away_and_max_length_is_bounded() -> None:
    model = random_model("seq2seq_gru_bahdanau")
    source, mask = source_batch(SOURCES)
    for hypotheses in (greedy_decode(model, source, mask, 8, min_length=8),
                       beam_search(model, source, mask, 3, 8, min_length=8)):
        assert hypotheses.tokens.shape == (3, 8) and not (hypotheses.tokens == EOS_ID).any()
    assert max_output_length(model, mask, ratio=1.5, extra=10) == 22
    transformer = random_model("seq2seq_transformer")
    transformer.max_positions = 16
    assert max_output_length(transformer, mask, ratio=1.5, extra=10) == 15


def test_metrics_with_signatures() -> None:
    references = ["The cat sat on the mat.", "It is raining today."]
    perfect = score_translations(references, references)
    assert perfect.bleu == pytest.approx(100.0) and perfect.chrf == pytest.approx(100.0)
    partial = score_translations(["The cat sat on a mat.", "It rains."], references)
    assert 0 < partial.bleu < 100 and 0 < partial.chrf < 100
    assert "tok:13a" in partial.bleu_signature and "version:" in partial.bleu_signature
    assert partial.chrf_signature.startswith("nrefs:1")
    with pytest.raises(ValueError, match="2 references"):
        score_translations(["one"], references)

"""Translation models: the shared interface, attention variants, the Transformer's details, and that they learn."""
from __future__ import annotations

import pytest
import torch

from lab.errors import LabError
from lab.registry import MODELS
from nlp.batching import collate, make_example
from nlp.models import Transformer, build_model, list_models, sequence_loss
from nlp.tokenization import BOS_ID, PAD_ID

VOCAB = 30



def small_model(name: str, **overrides) -> torch.nn.Module:
    options = (dict(d_model=32, heads=4, encoder_layers=2, decoder_layers=2, ffn_dim=64, dropout=0.0)
               if name == "seq2seq_transformer" else
               dict(embedding_dim=16, hidden_size=24, num_layers=2, dropout=0.0))
    return build_model(name, VOCAB, VOCAB, **{**options, **overrides})


def toy_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    examples = [make_example([5, 6, 7, 8], [9, 10, 11], 16), make_example([12, 13], [14, 15, 16, 17, 18], 16)]
    batch = collate(examples)
    return batch.source, batch.source_mask, batch.target_in, batch.target_out


def test_every_architecture_is_registered_as_a_lab_model() -> None:
    expected = {f"seq2seq_{cell}{attention}" for cell in ("gru", "lstm")
                for attention in ("", "_bahdanau", "_luong_dot", "_luong_general")} | {"seq2seq_transformer"}
    assert set(list_models()) == expected
    assert all(name in MODELS for name in expected)


@pytest.mark.parametrize("name", list_models())
def test_forward_gives_logits_per_target_position_and_ignores_source_padding(name: str) -> None:
    model = small_model(name).eval()
    source, mask, target_in, _ = toy_batch()
    logits = model(source, mask, target_in)
    assert logits.shape == (2, target_in.size(1), VOCAB)
    padded_source = torch.cat([source, torch.full((2, 3), PAD_ID)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model(padded_source, padded_mask, target_in), logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["seq2seq_gru_bahdanau", "seq2seq_lstm_luong_general", "seq2seq_transformer"])
def test_models_learn_to_copy_a_small_batch(name: str) -> None:
    torch.manual_seed(0)
    model = small_model(name)
    source, mask, _, _ = toy_batch()
    target_out = source  # copy the source, <eos> included
    target_in = torch.cat([torch.full((2, 1), BOS_ID), source[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = sequence_loss(model(source, mask, target_in), target_out)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first


def test_attention_variants_have_their_own_parameters() -> None:
    def parameter_names(name: str) -> set[str]:
        return {n for n, _ in small_model(name).named_parameters()}

    assert not any("attention" in n for n in parameter_names("seq2seq_gru"))
    assert {"attention.W.weight", "attention.U.weight", "attention.v.weight"} <= parameter_names("seq2seq_gru_bahdanau")
    assert "attention.W_a.weight" in parameter_names("seq2seq_gru_luong_general")
    assert "attention.W_a.weight" not in parameter_names("seq2seq_gru_luong_dot")


def test_teacher_forcing_ratio_decides_what_the_decoder_is_fed() -> None:
    torch.manual_seed(0)
    source, mask, target_in, _ = toy_batch()
    forced = small_model("seq2seq_gru_bahdanau", teacher_forcing=1.0)
    free = small_model("seq2seq_gru_bahdanau", teacher_forcing=0.0)
    free.load_state_dict(forced.state_dict())
    forced.train(), free.train()  # dropout is 0: train mode only switches teacher forcing on
    torch.testing.assert_close(forced(source, mask, target_in), forced.eval()(source, mask, target_in))
    assert not torch.allclose(free(source, mask, target_in), forced(source, mask, target_in))
    torch.testing.assert_close(free.eval()(source, mask, target_in), forced(source, mask, target_in))


def test_transformer_ties_embeddings_without_storing_them_twice() -> None:
    tied = Transformer(VOCAB, VOCAB, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32,
                       share_source_embedding=True)
    untied = Transformer(VOCAB, VOCAB, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn_dim=32,
                         tie_embeddings=False)
    tied_keys = [k for k in tied.state_dict() if "embedding" in k or "generator" in k]
    assert tied_keys == ["target_embedding.weight"]
    assert {"source_embedding.weight", "target_embedding.weight", "generator.weight"} <= set(untied.state_dict())
    source, mask, target_in, _ = toy_batch()
    tied(source, mask, target_in).sum().backward()
    assert tied.target_embedding.weight.grad is not None


def test_learned_positions_are_parameters_and_sinusoidal_are_not() -> None:
    learned = small_model("seq2seq_transformer", positions="learned", max_positions=32)
    sinusoidal = small_model("seq2seq_transformer")
    assert "positions.table.weight" in dict(learned.named_parameters())
    assert not any("positions" in k for k in sinusoidal.state_dict())
    source, mask, target_in, _ = toy_batch()
    assert learned(source, mask, target_in).shape == (2, target_in.size(1), VOCAB)


def test_transformer_is_causal() -> None:
    model = small_model("seq2seq_transformer").eval()
    source, mask, target_in, _ = toy_batch()
    changed = target_in.clone()
    changed[:, -1] = 7
    before, after = model(source, mask, target_in), model(source, mask, changed)
    torch.testing.assert_close(before[:, :-1], after[:, :-1])


def test_loss_ignores_padding_and_smoothing_raises_it_for_confident_models() -> None:
    target = torch.tensor([[3, 4, PAD_ID]])
    logits = torch.full((1, 3, 6), -10.0)
    logits[0, 0, 3] = logits[0, 1, 4] = 10.0
    other = logits.clone()
    other[0, 2] = torch.randn(6)
    assert sequence_loss(logits, target) == sequence_loss(other, target) < 1e-3
    assert sequence_loss(logits, target, label_smoothing=0.1) > 1.0
    assert sequence_loss(logits, target, label_smoothing=0.1) == sequence_loss(other, target, label_smoothing=0.1)


@pytest.mark.parametrize("name, options, message", [
    ("seq2seq_gru_bahdanau", {"hiden_size": 8}, "did you mean 'hidden_size'"),
    ("seq2seq_gru_bahdanau", {"cell": "lstm"}, "fixes cell='gru'"),
    ("seq2seq_gru_bahdanau", {"hidden_size": 7}, "must be even"),
    ("seq2seq_transformer", {"d_model": 30, "heads": 4}, "divisible"),
    ("seq2seq_transformer", {"positions": "rotary"}, "unknown positions"),
    ("seq2seq_transformr", {}, "did you mean 'seq2seq_transformer'"),
])
def test_bad_options_are_one_line_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(LabError, match=message):
        build_model(name, VOCAB, VOCAB, **options)

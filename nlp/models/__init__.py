"""Translation models by name: `build_model("seq2seq_gru_bahdanau", source_vocab, target_vocab, hidden_size=256)`.

Each name fixes the architecture (cell and attention, or the Transformer); every other constructor argument
is an option that a config's `model:` section may set. All names are also listed in `lab.registry.MODELS`.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.errors import LabError, did_you_mean
from lab.registry import MODELS, Registry
from nlp.models.base import Seq2SeqModel, sequence_loss
from nlp.models.rnn import RNNSeq2Seq
from nlp.models.transformer import Transformer

# Set by the task from the data, never by the user.
_FROM_DATA = ("source_vocab_size", "target_vocab_size")


@dataclass(frozen=True)
class TranslationModelEntry:
    name: str
    cls: type[Seq2SeqModel]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> list[str]:
        return [p for p in inspect.signature(self.cls).parameters if p not in self.fixed and p not in _FROM_DATA]

    def __call__(self, source_vocab_size: int, target_vocab_size: int, **options: Any) -> Seq2SeqModel:
        valid = self.options()
        for key in options:
            if key in self.fixed:
                raise LabError(f"model {self.name!r} fixes {key}={self.fixed[key]!r}; pick another model name to change it")
            if key not in valid:
                raise LabError(f"model {self.name!r} has no option {key!r}{did_you_mean(key, valid)}")
        return self.cls(source_vocab_size, target_vocab_size, **self.fixed, **options)


TRANSLATION_MODELS: Registry[TranslationModelEntry] = Registry("translation model")


def _register(name: str, cls: type[Seq2SeqModel], help: str, **fixed: Any) -> None:
    entry = TranslationModelEntry(name, cls, fixed)
    TRANSLATION_MODELS.register(name, help=help)(entry)
    MODELS.register(name, help=help)(entry)


_ATTENTION_HELP = {
    "": "without attention (Sutskever et al., 2014)",
    "_bahdanau": "with additive attention (Bahdanau et al., 2015)",
    "_luong_dot": "with dot-product attention and input feeding (Luong et al., 2015)",
    "_luong_general": "with bilinear 'general' attention and input feeding (Luong et al., 2015)",
}
for _cell in ("gru", "lstm"):
    for _suffix, _help in _ATTENTION_HELP.items():
        _register(f"seq2seq_{_cell}{_suffix}", RNNSeq2Seq, f"{_cell.upper()} encoder–decoder {_help}",
                  cell=_cell, attention=_suffix[1:] or "none")
_register("seq2seq_transformer", Transformer, "pre-LN Transformer encoder–decoder (Vaswani et al., 2017)")


def build_model(name: str, source_vocab_size: int, target_vocab_size: int, **options: Any) -> Seq2SeqModel:
    return TRANSLATION_MODELS.get(name)(source_vocab_size, target_vocab_size, **options)


def list_models() -> list[str]:
    return TRANSLATION_MODELS.names()


__all__ = ["Seq2SeqModel", "RNNSeq2Seq", "Transformer", "TRANSLATION_MODELS", "build_model", "list_models",
           "sequence_loss"]

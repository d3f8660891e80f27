"""Subword and character tokenizers for translation, built on Hugging Face `tokenizers`.

Every tokenizer NFC-normalises its input and marks word starts with the SentencePiece meta symbol "▁"
(Metaspace), so decoding gives back exactly the text that was encoded: spaces, accents, punctuation
and quotes included, as long as every character was seen in training. Four models are available:

    bpe        byte-pair merges (Sennrich et al., 2016)
    unigram    a unigram language model over subwords (Kudo, 2018)
    wordpiece  likelihood-driven merges as in BERT, continuation pieces marked with "##"
    char       one token per character

The special tokens have the same ids in every tokenizer: <pad>=0, <bos>=1, <eos>=2, <unk>=3.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from lab.config import Section
from lab.errors import LabError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
TOKENIZER_FILE = "tokenizer.json"

TokenizerKind = Literal["bpe", "unigram", "wordpiece", "char"]


class TokenizerConfig(Section):
    kind: TokenizerKind = Field("bpe", description="subword model: bpe, unigram, wordpiece or char")
    vocab_size: int = Field(8000, ge=8, description="target vocabulary size, special tokens included; BPE and "
                            "WordPiece always keep the whole alphabet, so a tiny target can be exceeded")
    min_frequency: int = Field(2, ge=1, description="bpe/wordpiece/char: ignore rarer pairs or characters")
    shared: bool = Field(True, description="one tokenizer for both languages (else one per side)")


def _new_tokenizer(kind: TokenizerKind, vocab_size: int, min_frequency: int) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer of the given kind and the trainer that learns its vocabulary."""
    if kind == "bpe":
        model = models.BPE(unk_token=UNK, fuse_unk=True)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                       show_progress=False)
    elif kind == "unigram":
        model = models.Unigram()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token=UNK,
                                           show_progress=False)
    elif kind == "wordpiece":
        model = models.WordPiece(unk_token=UNK)
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    elif kind == "char":
        model = models.WordLevel(unk_token=UNK)  # a word-level model over single characters
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    else:
        raise LabError(f"unknown tokenizer kind {kind!r} (valid: bpe, unigram, wordpiece, char)")

    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.NFC()
    # Metaspace turns each space into "▁" glued to the next word, so spaces survive as tokens and decoding
    # gives the text back. Isolating punctuation keeps "Hause." and "Hause" from becoming unrelated subwords.
    split = Regex(".") if kind == "char" else Regex(r"[^\w▁]")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(),
                                                       pre_tokenizers.Split(split, behavior="isolated")])
    pieces = [decoders.Metaspace()]
    if kind == "wordpiece":
        # Only strip the continuation mark: the WordPiece decoder would guess spaces that "▁" already encodes.
        pieces.insert(0, decoders.Replace(Regex("^##"), ""))
    tokenizer.decoder = decoders.Sequence(pieces)
    return tokenizer, trainer


class TextTokenizer:
    """Text ↔ token ids for one language (or both, when shared). Ids exclude <bos>/<eos>; the batcher adds them."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected_id:
                raise LabError(f"tokenizer has {token} at id {tokenizer.token_to_id(token)}, expected {expected_id}; "
                               "it was not made by nlp.tokenization")
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], kind: TokenizerKind = "bpe", vocab_size: int = 8000,
              min_frequency: int = 2) -> TextTokenizer:
        tokenizer, trainer = _new_tokenizer(kind, vocab_size, min_frequency)
        try:
            tokenizer.train_from_iterator(texts, trainer)
        except Exception as error:  # tokenizers raises a bare Exception, e.g. a Unigram vocabulary below the alphabet
            raise LabError(f"cannot train a {kind} tokenizer of {vocab_size} tokens ({error}); raise "
                           "tokenizer.vocab_size") from None
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        path = Path(path)
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as err:  # tokenizers raises plain Exceptions for unreadable files
            raise LabError(f"cannot load tokenizer '{path}': {str(err).splitlines()[0]}") from None

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def id_to_token(self, token_id: int) -> str:
        return self.tokenizer.id_to_token(token_id) or UNK

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a generated sequence: stops at <eos>, drops <pad>/<bos>, shows unknown pieces as <unk>."""
        kept: list[int] = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == EOS_ID:
                break
            if token_id not in (PAD_ID, BOS_ID):
                kept.append(token_id)
        return self.tokenizer.decode(kept, skip_special_tokens=False)


@dataclass
class TranslationTokenizers:
    """The source and target tokenizers; the same object twice when the vocabulary is shared."""

    source: TextTokenizer
    target: TextTokenizer

    @property
    def shared(self) -> bool:
        return self.source is self.target

    @classmethod
    def train(cls, pairs: list[tuple[str, str]], config: TokenizerConfig) -> TranslationTokenizers:
        """Learn the vocabulary (or vocabularies) from training pairs only."""
        def learn(texts: Iterable[str]) -> TextTokenizer:
            return TextTokenizer.train(texts, config.kind, config.vocab_size, config.min_frequency)

        if config.shared:
            both = learn(text for pair in pairs for text in pair)
            return cls(both, both)
        return cls(learn(src for src, _ in pairs), learn(tgt for _, tgt in pairs))

    def save(self, directory: str | Path) -> None:
        """`DIR/tokenizer.json` when shared, else `DIR/source/tokenizer.json` and `DIR/target/tokenizer.json`."""
        directory = Path(directory)
        if self.shared:
            self.source.save(directory / TOKENIZER_FILE)
        else:
            self.source.save(directory / "source" / TOKENIZER_FILE)
            self.target.save(directory / "target" / TOKENIZER_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> TranslationTokenizers:
        directory = Path(directory)
        if (directory / TOKENIZER_FILE).is_file():
            both = TextTokenizer.load(directory / TOKENIZER_FILE)
            return cls(both, both)
        if (directory / "source" / TOKENIZER_FILE).is_file():
            return cls(TextTokenizer.load(directory / "source" / TOKENIZER_FILE),
                       TextTokenizer.load(directory / "target" / TOKENIZER_FILE))
        raise LabError(f"no {TOKENIZER_FILE} in '{directory}'; was this run trained with the translation task?")

    @classmethod
    def exists(cls, directory: str | Path) -> bool:
        directory = Path(directory)
        return (directory / TOKENIZER_FILE).is_file() or (directory / "source" / TOKENIZER_FILE).is_file()

"""Tokenizers: lossless round trips, fixed special ids, saving and loading."""
from __future__ import annotations

import json
import unicodedata

import pytest

from lab.errors import LabError
from nlp.tokenization import (
    BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, TextTokenizer, TokenizerConfig, TranslationTokenizers,
)

SENTENCES = [
    "Grüß Gott, Herr Müller! Wie geht's?",
    "naïve café – «déjà vu»",
    "„Das ist gut“, sagte sie. Er antwortete: (nein) 3,5 % – 42?!",
    "The quick brown fox doesn't jump over the lazy dog; it sleeps.",
    "Öl, Äpfel und Übermut: 12.30 Uhr ist zu spät…",
]
KINDS = ["bpe", "unigram", "wordpiece", "char"]


@pytest.fixture(scope="module", params=KINDS)
def tokenizer(request: pytest.FixtureRequest) -> TextTokenizer:
    return TextTokenizer.train(SENTENCES * 20, kind=request.param, vocab_size=120, min_frequency=1)


def test_decode_gives_back_the_text_exactly(tokenizer: TextTokenizer) -> None:
    for sentence in SENTENCES:
        ids = tokenizer.encode(sentence)
        assert UNK_ID not in ids
        assert tokenizer.decode(ids) == sentence


def test_decomposed_accents_come_back_composed(tokenizer: TextTokenizer) -> None:
    decomposed = unicodedata.normalize("NFD", SENTENCES[0])
    assert decomposed != SENTENCES[0]
    assert tokenizer.decode(tokenizer.encode(decomposed)) == SENTENCES[0]


def test_special_tokens_have_fixed_ids(tokenizer: TextTokenizer) -> None:
    assert [tokenizer.tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    assert tokenizer.vocab_size <= 120


def test_decode_stops_at_eos_and_drops_markers(tokenizer: TextTokenizer) -> None:
    ids = tokenizer.encode("Wie geht's?")
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID, *tokenizer.encode("Herr"), PAD_ID]) == "Wie geht's?"


def test_unseen_characters_become_unk() -> None:
    tokenizer = TextTokenizer.train(SENTENCES * 5, kind="bpe", vocab_size=100, min_frequency=1)
    ids = tokenizer.encode("Gott 漢字")
    assert UNK_ID in ids
    assert tokenizer.decode(ids).startswith("Gott ")
    assert "<unk>" in tokenizer.decode(ids)


def test_bigger_vocabulary_gives_shorter_sequences() -> None:
    text = " ".join(SENTENCES)
    small = TextTokenizer.train(SENTENCES * 20, kind="bpe", vocab_size=90, min_frequency=1)
    large = TextTokenizer.train(SENTENCES * 20, kind="bpe", vocab_size=300, min_frequency=1)
    assert len(large.encode(text)) < len(small.encode(text))


@pytest.mark.parametrize("shared", [True, False])
def test_save_and_load_round_trip(tmp_path, shared: bool) -> None:
    pairs = [(SENTENCES[i], SENTENCES[-1 - i]) for i in range(len(SENTENCES))] * 10
    config = TokenizerConfig(kind="bpe", vocab_size=150, min_frequency=1, shared=shared)
    trained = TranslationTokenizers.train(pairs, config)
    trained.save(tmp_path)
    expected_files = ["tokenizer.json"] if shared else ["source/tokenizer.json", "target/tokenizer.json"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.json")) == expected_files
    loaded = TranslationTokenizers.load(tmp_path)
    assert loaded.shared == shared
    for sentence in SENTENCES:
        assert loaded.source.encode(sentence) == trained.source.encode(sentence)
        assert loaded.target.decode(loaded.target.encode(sentence)) == sentence


def test_separate_tokenizers_learn_only_their_language() -> None:
    pairs = [("Der Hund bellt laut.", "Xylophones quietly zigzag.")] * 10
    config = TokenizerConfig(kind="char", vocab_size=100, min_frequency=1, shared=False)
    tokenizers = TranslationTokenizers.train(pairs, config)
    assert UNK_ID not in tokenizers.target.encode("zigzag")
    assert UNK_ID in tokenizers.source.encode("zigzag")  # no 'z' in the German side


def test_loading_something_else_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "tokenizer.json").write_text("not json")
    with pytest.raises(LabError, match="cannot load tokenizer"):
        TranslationTokenizers.load(tmp_path)
    with pytest.raises(LabError, match="no tokenizer.json"):
        TranslationTokenizers.load(tmp_path / "missing")


def test_a_foreign_tokenizer_with_other_special_ids_is_rejected(tmp_path) -> None:
    tokenizer = TextTokenizer.train(SENTENCES, kind="bpe", vocab_size=60, min_frequency=1)
    data = json.loads(tokenizer.tokenizer.to_str())
    data["added_tokens"][0]["content"] = "[PAD]"  # id 0 is no longer <pad>
    data["model"]["vocab"]["[PAD]"] = data["model"]["vocab"].pop("<pad>")
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(LabError, match="expected 0"):
        TextTokenizer.load(tmp_path / "tokenizer.json")


def test_a_vocabulary_smaller_than_the_alphabet_is_a_clear_error() -> None:
    import string

    from nlp.tokenization import TextTokenizer

    with pytest.raises(LabError, match="cannot train a unigram tokenizer of 20 tokens .*raise tokenizer.vocab_size"):
        TextTokenizer.train([string.ascii_letters + " äöüß " + string.digits], "unigram", 20)

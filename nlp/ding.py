"""German–English example sentences from the Ding dictionary (Debian package `trans-de-en`).

Each dictionary line reads `German :: English`. Both sides list the same senses in the same order,
separated by ` | `; within a sense `;` separates synonyms, and `{}`, `[]`, `<>` and `()` hold grammar,
register and usage notes. Many senses are whole example sentences ("Ich folgte ihm mit einigem
Abstand." :: "I followed him at a distance."); those aligned sentence pairs are a small, clean
parallel corpus that ships with Debian and needs no network.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from lab.errors import LabError

DING_PATH = Path("/usr/share/trans/de-en")

# Notes in braces, brackets and angle brackets never belong to the sentence: {f}, [ugs.], <Ablösebetrag>.
_NOTES = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\]|<[^>]*>)")
# A closing remark in parentheses after the final punctuation: "… erfolgt formell. (Vertragsklausel)".
_TRAILING_REMARK = re.compile(r"(?<=[.!?“”\"'’])\s*\([^)]*\)\s*$")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?]")
_OPENING = "\"'„“‚‘«»"
_CLOSING = "\"'“”’‘«»"
# Marks of a dictionary pattern rather than a sentence: placeholders, alternatives, elisions, optional words.
_PATTERN_MARKS = re.compile(r"\b(?:etw|jd[mnrs]?|sb|sth)\.|/|…|\.\.\.|\(|\)|~")


def clean_text(text: str) -> str:
    """NFC-normalise and collapse whitespace; the same cleaning every corpus gets."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def _clean_sense(sense: str) -> str:
    """The first synonym of one sense, with its notes removed and its apostrophes made uniform."""
    first = sense.split(";")[0]  # "Satz A.; Satz B." lists two alternative sentences
    first = _NOTES.sub("", first)
    first = _TRAILING_REMARK.sub("", first)
    return clean_text(first.replace("’", "'"))  # the dictionary mixes ’ and ' in "don't"


def looks_like_sentence(text: str, min_words: int = 3, max_words: int = 40) -> bool:
    """A capitalised (or quoted) run of a few words that ends like a sentence and is not a pattern."""
    if not text or _PATTERN_MARKS.search(text):
        return False
    if not (text[0].isupper() or text[0] in _OPENING):
        return False
    if text.rstrip(_CLOSING)[-1:] not in (".", "!", "?"):
        return False
    return min_words <= len(text.split()) <= max_words


def sentence_pairs_from_lines(lines: Iterable[str], min_words: int = 3, max_words: int = 40) -> Iterator[tuple[str, str]]:
    """(German, English) example-sentence pairs from Ding lines, in file order, duplicates included."""
    for line in lines:
        if line.startswith("#") or " :: " not in line:
            continue
        german, english = line.rstrip("\n").split(" :: ", 1)
        german_senses, english_senses = german.split(" | "), english.split(" | ")
        if len(german_senses) != len(english_senses):  # misaligned entry: the senses cannot be paired
            continue
        for german_sense, english_sense in zip(german_senses, english_senses):
            if not _SENTENCE_END.search(german_sense):  # most senses are words: skip them cheaply
                continue
            de, en = _clean_sense(german_sense), _clean_sense(english_sense)
            if looks_like_sentence(de, min_words, max_words) and looks_like_sentence(en, min_words, max_words):
                yield de, en


def read_ding(path: str | Path = DING_PATH, min_words: int = 3, max_words: int = 40) -> list[tuple[str, str]]:
    """All example-sentence pairs of the Ding dictionary at `path` (not yet deduplicated)."""
    path = Path(path)
    if not path.is_file():
        raise LabError(
            f"the Ding dictionary {path} is missing; install it with: sudo apt-get install trans-de-en, "
            "or set data.path to a TSV file"
        )
    with path.open(encoding="utf-8") as lines:
        return list(sentence_pairs_from_lines(lines, min_words, max_words))

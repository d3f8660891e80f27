"""Parallel corpora: where sentence pairs come from, how they are cleaned, and the fixed train/valid/test split.

Three sources, picked by the `data:` config section:

    data.path: pairs.tsv        a TSV, CSV or JSONL file of your own (column names configurable)
    data.dataset: wmt16         a Hugging Face dataset (needs `pip install datasets` and a network)
    neither (the default)       the example sentences of the Ding German–English dictionary (trans-de-en)
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from lab.config import Section
from lab.errors import LabError
from nlp.ding import DING_PATH, clean_text, read_ding

Pair = tuple[str, str]


class FileOrDatasetConfig(Section):
    """A data section that reads either a local file (`path`) or a Hugging Face dataset (`dataset`), or else
    the task's embedded default; the subclasses say what the file holds."""

    path: Path | None = None
    format: Literal["auto", "tsv", "csv", "jsonl"] = Field("auto", description="file format; auto: by suffix")
    dataset: str | None = None
    dataset_config: str | None = Field(None, description="Hugging Face dataset config (subset) name")

    @field_validator("dataset")
    @classmethod
    def _one_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("path") is not None:
            raise ValueError("set either data.path or data.dataset, not both")
        return value


class DataConfig(FileOrDatasetConfig):
    path: Path | None = Field(None, description="TSV/CSV/JSONL file of sentence pairs (default: the Ding dictionary)")
    dataset: str | None = Field(None, description="Hugging Face dataset name, e.g. wmt16 (needs `datasets` and a network)")
    source_column: str | int = Field("de", description="column name (or index, for a file without header) of the source")
    target_column: str | int = Field("en", description="column name (or index) of the target")
    ding_path: Path = Field(DING_PATH, description="the Ding dictionary, used when neither path nor dataset is set")
    max_words: int = Field(40, ge=1, description="drop pairs with a longer side (in words)")
    max_pairs: int | None = Field(None, gt=0, description="keep at most this many training pairs")
    valid_fraction: float = Field(0.05, ge=0, lt=0.5)
    test_fraction: float = Field(0.05, ge=0, lt=0.5)
    split_seed: int = Field(0, description="seed of the train/valid/test split (fixed, independent of `seed`)")
    split_version: Literal[1, 2] = Field(2, description="2: hash each source without case and punctuation, and keep "
                                         "a Hugging Face dataset's own valid/test whole; 1: as runs made before did "
                                         "(exact-sentence hash, every split filtered)")
    batch_size: int = Field(64, gt=0, description="sentence pairs per training batch")
    max_tokens: int = Field(128, gt=2, description="truncate tokenized sentences to this many tokens")


@dataclass
class ParallelSplits:
    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]


# --- reading ------------------------------------------------------------------------------------------------------


def _column(row: dict[str, Any] | list[str], column: str | int, where: str) -> str:
    """One cell of a row; JSONL rows in the Hugging Face layout keep the languages under "translation"."""
    if isinstance(row, list):
        if not isinstance(column, int):
            raise LabError(f"{where}: column {column!r} is a name but the rows have no header")
        if column >= len(row):
            raise LabError(f"{where}: has {len(row)} columns, no column {column}")
        return row[column]
    if not isinstance(row, dict):
        raise LabError(f"{where}: expected a JSON object such as {{\"de\": …, \"en\": …}}, got {row!r:.40}")
    key = str(column)
    if key not in row and isinstance(row.get("translation"), dict):
        row = row["translation"]
    if key not in row:
        hint = " — one column only: does data.format match the file's separator?" if len(row) == 1 else ""
        raise LabError(f"{where}: no column {key!r} (columns: {', '.join(map(str, row))}){hint}; "
                       "set data.source_column and data.target_column")
    value = row[key]
    if value is None or isinstance(value, dict | list):
        raise LabError(f"{where}: column {key!r} holds {json.dumps(value):.40}, not text; fix or remove that row")
    return value if isinstance(value, str) else str(value)


def read_parallel_file(path: str | Path, source_column: str | int = "de", target_column: str | int = "en",
                       format: str = "auto") -> list[Pair]:
    """Sentence pairs from a TSV/CSV file (header row unless the columns are indices) or a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise LabError(f"data file '{path}' does not exist")
    if format == "auto":
        format = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower(), "")
        if not format:
            raise LabError(f"cannot tell the format of '{path}' from its suffix; set data.format to tsv, csv or jsonl")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # -sig: a byte-order mark (as spreadsheet programs write) is not text
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise LabError(f"{path}:{line}: not UTF-8 text ({err.reason}); convert the file, e.g. "
                       f"iconv -f latin1 -t utf-8 {path.name} > utf8.{format}") from None
    pairs: list[Pair] = []
    with io.StringIO(text, newline="") as file:
        if format == "jsonl":
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise LabError(f"{path}:{number}: not valid JSON ({err.msg})") from None
                where = f"{path}:{number}"
                pairs.append((_column(row, source_column, where), _column(row, target_column, where)))
            return pairs
        has_header = not (isinstance(source_column, int) and isinstance(target_column, int))
        reader = csv.reader(file, delimiter="\t" if format == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if format == "tsv" else csv.QUOTE_MINIMAL)
        header = next(reader, None) if has_header else None
        for number, cells in enumerate(reader, 2 if has_header else 1):
            if not any(cell.strip() for cell in cells):
                continue
            row: dict[str, Any] | list[str] = dict(zip(header, cells)) if header is not None else cells
            where = f"{path}:{number}"
            pairs.append((_column(row, source_column, where), _column(row, target_column, where)))
    return pairs


def load_hf_dataset(name: str, config_name: str | None, local_alternative: str) -> Any:
    """`datasets.load_dataset`, with a missing package or a failed load (offline, unknown name) as one LabError
    line that names the local alternative (e.g. "a TSV file")."""
    try:
        import datasets
    except ImportError:
        raise LabError(f"data.dataset={name!r} needs the `datasets` package (pip install datasets); "
                       f"or set data.path to {local_alternative}") from None
    try:
        return datasets.load_dataset(name, config_name)
    except Exception as err:  # offline, unknown name, missing config: one line instead of a long traceback
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LabError(f"cannot load Hugging Face dataset {name!r} ({reason}); the first load needs a network, "
                       f"or set data.path to {local_alternative}") from None


def load_hf_splits(name: str, config_name: str | None, source_column: str, target_column: str) -> ParallelSplits:
    """A translation dataset from the Hugging Face hub with its own train/validation/test splits."""
    loaded = load_hf_dataset(name, config_name, "a TSV file")

    def pairs_of(split: str) -> list[Pair]:
        if split not in loaded:
            return []
        return [(_column(row, source_column, f"{name}/{split}"), _column(row, target_column, f"{name}/{split}"))
                for row in loaded[split]]

    return ParallelSplits(pairs_of("train"), pairs_of("validation"), pairs_of("test"))


# --- cleaning and splitting ---------------------------------------------------------------------------------------


def clean_pairs(pairs: list[Pair], max_words: int = 40) -> list[Pair]:
    """Normalise whitespace and Unicode (NFC), drop empty or over-long pairs, and keep one pair per source sentence."""
    seen: set[str] = set()
    cleaned: list[Pair] = []
    for source, target in pairs:
        source, target = clean_text(source), clean_text(target)
        if not source or not target or max(len(source.split()), len(target.split())) > max_words:
            continue
        if source in seen:  # one reference per source, and no source in two splits
            continue
        seen.add(source)
        cleaned.append((source, target))
    return cleaned


def split_key(sentence: str) -> str:
    """What the split hashes: the sentence without case, punctuation or spacing, so that near-twins ("Das ist ein
    starkes Stück." and "Das ist ein starkes Stück!") land in the same split and no test sentence is learnt."""
    letters = "".join(c for c in unicodedata.normalize("NFC", sentence.casefold())
                      if not unicodedata.category(c).startswith("P"))
    return re.sub(r"\s+", " ", letters).strip()


def split_fraction(text: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) for a sentence: the same on every machine and Python run."""
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_pairs(pairs: list[Pair], valid_fraction: float = 0.05, test_fraction: float = 0.05,
                seed: int = 0, version: int = 2) -> ParallelSplits:
    """Assign each pair by a hash of its source sentence (`split_key`; version 1: the exact sentence), so the
    split is fixed, survives added data and keeps sentences that differ only in case or punctuation together."""
    splits = ParallelSplits([], [], [])
    for pair in pairs:
        u = split_fraction(split_key(pair[0]) if version >= 2 else pair[0], seed)
        if u < test_fraction:
            splits.test.append(pair)
        elif u < test_fraction + valid_fraction:
            splits.valid.append(pair)
        else:
            splits.train.append(pair)
    return splits


def load_splits(config: DataConfig) -> ParallelSplits:
    """The cleaned train/valid/test pairs the config describes."""
    if config.dataset is not None:
        raw = load_hf_splits(config.dataset, config.dataset_config, str(config.source_column),
                             str(config.target_column))
        # The dataset's own valid and test sets stay whole (only normalised), so scores compare with published ones;
        # max_words and deduplication thin the training pairs alone.
        if config.split_version >= 2:
            held_out = [[(clean_text(s), clean_text(t)) for s, t in part] for part in (raw.valid, raw.test)]
        else:
            held_out = [clean_pairs(part, config.max_words) for part in (raw.valid, raw.test)]
        splits = ParallelSplits(clean_pairs(raw.train, config.max_words), *held_out)
        if not splits.valid or not splits.test:  # a dataset with only a train split: carve out the rest
            splits = split_pairs(splits.train, config.valid_fraction, config.test_fraction, config.split_seed,
                                 config.split_version)
    else:
        if config.path is not None:
            raw_pairs = read_parallel_file(config.path, config.source_column, config.target_column, config.format)
        else:
            raw_pairs = ding_pairs(config.ding_path, config.source_column, config.target_column)
        splits = split_pairs(clean_pairs(raw_pairs, config.max_words), config.valid_fraction,
                             config.test_fraction, config.split_seed, config.split_version)
    if config.max_pairs is not None:
        splits.train = splits.train[: config.max_pairs]
    if not splits.train:
        raise LabError("no training pairs left after cleaning; check data.path, the columns and data.max_words")
    for name in ("valid", "test"):
        fraction = getattr(config, f"{name}_fraction")
        if not getattr(splits, name) and fraction > 0:
            raise LabError(f"the {name} split is empty ({len(splits.train)} training pairs after cleaning, "
                           f"data.{name}_fraction={fraction}): use more pairs or raise data.{name}_fraction")
    return splits


def ding_pairs(path: str | Path, source_column: str | int = "de", target_column: str | int = "en") -> list[Pair]:
    """The Ding example sentences as (source, target); the columns are "de" and "en" in either order."""
    columns = (str(source_column), str(target_column))
    if columns not in (("de", "en"), ("en", "de")):
        raise LabError(f"the Ding dictionary has columns 'de' and 'en', not {columns[0]!r} and {columns[1]!r}")
    pairs = read_ding(path)
    return pairs if columns == ("de", "en") else [(en, de) for de, en in pairs]

"""Labelled texts for classification: where they come from and the fixed train/valid/test split.

Three sources, picked by the `data:` config section:

    data.path: texts.csv        a CSV, TSV or JSONL file (`data.text_column`, `data.label_column`)
    data.dataset: ag_news       a Hugging Face dataset (needs `pip install datasets` and a network)
    neither (the default)       topic classification of the quotations in Debian's `fortunes` package

The fortunes files (`/usr/share/games/fortunes/computers`, `…/politics`, …) hold quotations separated by
lines with a single `%`; the file name is the label. The default keeps eight topical files
(`DEFAULT_CATEGORIES`) and never reads the `off/` folder (package fortunes-off). Attribution lines
("\t\t-- Mark Twain") are dropped unless `data.keep_attribution` is set: they name people, not topics, and
a name seen in training would give the label away.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from lab.errors import LabError, did_you_mean
from nlp.data import FileOrDatasetConfig, load_hf_dataset, read_parallel_file
from nlp.ding import clean_text

FORTUNES_PATH = Path("/usr/share/games/fortunes")
# Files whose quotations are mostly about their subject (unlike cookie, people or miscellaneous): 3,148
# quotations after de-duplication, from 74 (medicine) to 1,051 (computers).
DEFAULT_CATEGORIES = ["computers", "food", "law", "love", "medicine", "politics", "science", "sports"]

Example = tuple[str, str]  # (text, label)

# "\t\t-- Casey Stengel, informing outfielder Bob Cerv he'd" and its indented continuation lines.
_ATTRIBUTION = re.compile(r"^\s*--\s*\S")
# Old fortunes underline by overstriking, "_\bw_\bo_\br_\bd" or "____\b\b\b\bword": a backspace and the
# character before it cancel out, innermost pair first.
_OVERSTRIKE = re.compile(r"[^\x08\n]\x08")


class TextDataConfig(FileOrDatasetConfig):
    path: Path | None = Field(None, description="CSV/TSV/JSONL file of texts and labels (default: fortunes)")
    dataset: str | None = Field(None, description="Hugging Face dataset, e.g. ag_news (needs `datasets` and a network)")
    text_column: str | int = Field("text", description="column name (or index, for a file without header) of the text")
    label_column: str | int = Field("label", description="column name (or index) of the label")
    fortunes_path: Path = Field(FORTUNES_PATH, description="the fortunes folder (when neither path nor dataset is set)")
    categories: list[str] = Field(DEFAULT_CATEGORIES, min_length=2, description="fortunes files to read, one per label")
    keep_attribution: bool = Field(False, description="keep the '-- Author' lines of fortunes")
    valid_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    split_seed: int = Field(0, description="seed of the stratified split (fixed, independent of `seed`)")
    batch_size: int = Field(32, gt=0, description="texts per training batch")
    max_tokens: int = Field(128, ge=2, description="truncate each text to this many tokens")
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: weight each class's loss by n / (classes · count), as in scikit-learn")
    positive_label: str | None = Field(None, description="binary tasks: the class model.threshold applies to "
                                                         "(default: the second label in sorted order)")


@dataclass
class TextSplits:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    class_names: list[str]  # sorted; a label's index is its class id

    def label_ids(self, examples: list[Example]) -> torch.Tensor:
        index = {name: i for i, name in enumerate(self.class_names)}
        return torch.tensor([index[label] for _, label in examples], dtype=torch.long)


# --- sources ------------------------------------------------------------------------------------------------------


def read_labelled_file(path: str | Path, text_column: str | int = "text", label_column: str | int = "label",
                       format: str = "auto") -> list[Example]:
    """(text, label) rows of a CSV/TSV file (header row unless the columns are indices) or a JSONL file."""
    try:
        return read_parallel_file(path, text_column, label_column, format)
    except LabError as err:  # the reader is shared with translation: name this task's keys in its hint
        raise LabError(str(err).replace("data.source_column and data.target_column",
                                        "data.text_column and data.label_column")) from None


def parse_fortunes(text: str, keep_attribution: bool = False) -> list[str]:
    """The quotations of one fortunes file, whitespace collapsed, attributions dropped unless kept."""
    struck = 1
    while struck:
        text, struck = _OVERSTRIKE.subn("", text)
    quotations = []
    for block in re.split(r"^%[ \t]*$", text.replace("\x08", ""), flags=re.MULTILINE):
        kept: list[str] = []
        in_attribution = False
        for line in block.splitlines():
            if not keep_attribution and _ATTRIBUTION.match(line):
                in_attribution = True
                continue
            # An attribution goes on in indented lines; a blank or unindented line ends it (dialogues go on).
            if in_attribution and line.strip() and line[0] in " \t":
                continue
            in_attribution = False
            kept.append(line)
        quotation = clean_text("\n".join(kept))
        if quotation:
            quotations.append(quotation)
    return quotations


def fortune_categories(folder: str | Path) -> list[str]:
    """The fortunes files in `folder`: regular files besides the `.dat` indexes and `.u8` links."""
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))


def read_fortunes(folder: str | Path, categories: list[str], keep_attribution: bool = False) -> list[Example]:
    """(quotation, category) for every quotation in the named fortunes files of `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LabError(f"the fortunes quotations are not installed ('{folder}' is missing): install them with "
                       "`sudo apt-get install fortunes`, or set data.path to a CSV/TSV/JSONL file of texts and labels")
    available = fortune_categories(folder)
    examples: list[Example] = []
    for category in categories:
        if category not in available:  # also refuses "off/…": offensive fortunes are never read
            raise LabError(f"data.categories: no fortunes file {category!r} in '{folder}'"
                           f"{did_you_mean(category, available)}")
        text = (folder / category).read_text(encoding="utf-8", errors="replace")
        examples += [(quotation, category) for quotation in parse_fortunes(text, keep_attribution)]
    return examples


def load_hf_examples(name: str, config_name: str | None, text_column: str, label_column: str
                     ) -> dict[str, list[Example]]:
    """A Hugging Face dataset's splits as (text, label name); rows without a label (label -1) are left out."""
    loaded = load_hf_dataset(name, config_name, "a CSV/TSV/JSONL file")
    splits: dict[str, list[Example]] = {}
    for split in ("train", "validation", "test"):
        if split not in loaded:
            continue
        part = loaded[split]
        for column in (text_column, label_column):
            if column not in part.column_names:
                raise LabError(f"dataset {name!r}/{split} has no column {column!r} (columns: "
                               f"{', '.join(part.column_names)}); set data.text_column and data.label_column")
        names = getattr(part.features[label_column], "names", None)  # ClassLabel: ints with names
        splits[split] = [(str(row[text_column]), names[row[label_column]] if names else str(row[label_column]))
                         for row in part if row[label_column] is not None and row[label_column] != -1]
    return splits


# --- cleaning and splitting ---------------------------------------------------------------------------------------


def clean_examples(examples: list[Example]) -> list[Example]:
    """Normalise whitespace and Unicode (NFC), drop empty texts, keep the first label of each distinct text."""
    seen: set[str] = set()
    cleaned = []
    for text, label in examples:
        text, label = clean_text(text), clean_text(label)
        if not text or not label or text in seen:  # no text twice, so none lands in two splits
            continue
        seen.add(text)
        cleaned.append((text, label))
    return cleaned


def stratified_split(examples: list[Example], valid_fraction: float, test_fraction: float, seed: int
                     ) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, valid, test), each with the label proportions of the whole; fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    labels = [label for _, label in examples]
    counts = Counter(labels)
    if len(counts) < 2:
        raise LabError(f"classification needs at least two labels; the data has {len(counts)}: "
                       f"{', '.join(map(repr, counts)) or 'none'}")
    rare = [label for label, count in counts.items() if count < 3]
    if rare:
        raise LabError(f"label {rare[0]!r} has {counts[rare[0]]} example(s); each label needs at least 3 "
                       "for a stratified train/valid/test split")
    index = np.arange(len(examples))
    try:
        rest, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
        train, valid = train_test_split(rest, test_size=valid_fraction / (1 - test_fraction), random_state=seed + 1,
                                        stratify=[labels[i] for i in rest])
    except ValueError as err:  # too few examples for a share of every label in each split
        raise LabError(f"cannot split {len(examples)} examples of {len(counts)} labels into train/valid/test: "
                       f"{err}; add examples or raise data.valid_fraction / data.test_fraction") from None
    return tuple([examples[i] for i in np.sort(part)] for part in (train, valid, test))  # type: ignore[return-value]


def load_text_splits(config: TextDataConfig) -> TextSplits:
    """The cleaned, split examples the config describes, with their sorted class names."""
    if config.dataset is not None:
        parts = load_hf_examples(config.dataset, config.dataset_config, str(config.text_column),
                                 str(config.label_column))
        train, valid, test = (clean_examples(parts.get(s, [])) for s in ("train", "validation", "test"))
        if not valid or not test:  # a dataset without its own labelled valid/test splits: carve them out
            train, valid, test = stratified_split(train + valid + test, config.valid_fraction,
                                                  config.test_fraction, config.split_seed)
    else:
        if config.path is not None:
            raw = read_labelled_file(config.path, config.text_column, config.label_column, config.format)
        else:
            raw = read_fortunes(config.fortunes_path, config.categories, config.keep_attribution)
        train, valid, test = stratified_split(clean_examples(raw), config.valid_fraction, config.test_fraction,
                                              config.split_seed)
    class_names = sorted({label for _, label in train + valid + test})
    missing = sorted(set(class_names) - {label for _, label in train})
    if missing:
        raise LabError(f"label {missing[0]!r} has no training example; every label needs some")
    return TextSplits(train, valid, test, class_names)


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (classes · count_c) per class: every class weighs as much in the loss as if the data were balanced."""
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    return len(labels) / (num_classes * counts)

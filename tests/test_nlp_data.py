"""Parallel corpora: the Ding extractor, file readers, cleaning, the fixed split, and length-bucketed batches."""
from __future__ import annotations

import itertools
import json
import sys
import types
import unicodedata
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from lab.errors import LabError
from nlp.batching import BucketBatchSampler, collate, make_example, sorted_batches
from nlp.data import DataConfig, clean_pairs, load_hf_splits, load_splits, read_parallel_file, split_pairs
from nlp.ding import DING_PATH, looks_like_sentence, read_ding, sentence_pairs_from_lines
from nlp.tokenization import BOS_ID, EOS_ID, PAD_ID

DING_LINES = """\
# Version :: devel 2023-01-30
Abpfiff {m}; Schlusspfiff {m} [sport] | Der Schiedsrichter gab den Schlusspfiff. :: final whistle | The referee blew for full-time.
Abstand {m} | Abstand halten! | Ich folgte ihm mit einigem Abstand.; Ich folgte ihm in einiger Entfernung. :: distance | Keep a distance! | I followed him at a distance.
Abnahme {f} | Die Abnahme erfolgt formell durch Unterzeichnung. (Vertragsklausel) :: acceptance | Acceptance shall be formally attested by signing. (contractual clause)
Abmachung {f} | Hast du vergessen, was wir abgemacht/ausgemacht [Ös.] haben? :: deal | Are you forgetting our deal?
Absprache {f} | in Absprache mit jdm. | Er kommt morgen wieder. :: consultation | in consultation with sb.
Hund {m} [zool.] | Der Hund bellt sehr laut. {ugs.} :: dog | The dog’s barking is very loud. [coll.]
Abschließend … {adv} | Abschließend möchte ich danken. :: To conclude, … | To conclude, I would like to thank you.
""".splitlines()


def test_ding_lines_give_the_aligned_example_sentences() -> None:
    assert list(sentence_pairs_from_lines(DING_LINES)) == [
        ("Der Schiedsrichter gab den Schlusspfiff.", "The referee blew for full-time."),
        ("Ich folgte ihm mit einigem Abstand.", "I followed him at a distance."),  # first of two alternatives
        ("Die Abnahme erfolgt formell durch Unterzeichnung.", "Acceptance shall be formally attested by signing."),
        ("Der Hund bellt sehr laut.", "The dog's barking is very loud."),  # notes stripped, apostrophe unified
        ("Abschließend möchte ich danken.", "To conclude, I would like to thank you."),
    ]  # skipped: 2-word "Abstand halten!", slashed alternatives, a line whose senses do not align


@pytest.mark.parametrize("text, expected", [
    ("Ich bin sprachlos.", True),
    ("„Du hast recht“, sagte er.", True),
    ("Ist das wahr?", True),
    ("ich bin klein.", False),  # lowercase start: a phrase, not a sentence
    ("Er ist …", False),
    ("Er gibt jdm. etw.", False),  # a dictionary pattern
    ("Zu kurz.", False),
    ("Kein Satzende hier", False),
])
def test_sentence_heuristic(text: str, expected: bool) -> None:
    assert looks_like_sentence(text) is expected


@pytest.mark.skipif(not DING_PATH.is_file(), reason="Debian package trans-de-en not installed")
def test_real_ding_file_head_parses_into_clean_pairs() -> None:
    with DING_PATH.open(encoding="utf-8") as file:
        head = list(itertools.islice(file, 2000))
    pairs = list(sentence_pairs_from_lines(head))
    assert len(pairs) >= 20  # 34 in the 2023 edition
    for de, en in pairs:
        assert looks_like_sentence(de) and looks_like_sentence(en)
        assert not any(mark in de + en for mark in "{}[]<>|")


def test_missing_dictionary_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"sudo apt-get install trans-de-en, or set data\.path to a TSV file"):
        read_ding(tmp_path / "de-en")


# --- files -------------------------------------------------------------------------------------------------------


def test_read_tsv_with_header(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text('id\tde\ten\n1\tGuten "Morgen".\tGood "morning".\n\n2\tDanke!\tThanks!\n', encoding="utf-8")
    assert read_parallel_file(path) == [('Guten "Morgen".', 'Good "morning".'), ("Danke!", "Thanks!")]
    assert read_parallel_file(path, "en", "de")[1] == ("Thanks!", "Danke!")


def test_read_headerless_tsv_by_column_index(tmp_path: Path) -> None:
    path = tmp_path / "deu.txt"
    path.write_text("Go.\tGeh.\tCC-BY 2.0\nHi.\tHallo!\tCC-BY 2.0\n", encoding="utf-8")
    assert read_parallel_file(path, 1, 0, format="tsv") == [("Geh.", "Go."), ("Hallo!", "Hi.")]


def test_read_csv_with_quoted_commas(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text('src,tgt\n"Ja, bitte.","Yes, please."\n', encoding="utf-8")
    assert read_parallel_file(path, "src", "tgt") == [("Ja, bitte.", "Yes, please.")]


def test_read_jsonl_flat_and_hugging_face_layout(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"de": "Eins.", "en": "One."}, {"translation": {"de": "Zwei.", "en": "Two."}}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert read_parallel_file(path) == [("Eins.", "One."), ("Zwei.", "Two.")]


@pytest.mark.parametrize("name, content, columns, message", [
    ("pairs.tsv", "de\ten\nHallo.\tHi.\n", ("de", "fr"), "no column 'fr'"),
    ("pairs.tsv", "Hallo.\tHi.\n", (0, 5), "no column 5"),
    ("pairs.jsonl", '{"de": "Hallo."\n', ("de", "en"), "not valid JSON"),
    ("pairs.txt", "Hallo.\tHi.\n", ("de", "en"), "set data.format"),
    ("pairs.jsonl", '{"de": "Hallo.", "en": "Hi."}\n42\n', ("de", "en"), r"pairs.jsonl:2: expected a JSON object"),
    ("pairs.jsonl", '{"de": "Hallo.", "en": null}\n', ("de", "en"), r"pairs.jsonl:1: column 'en' holds null, not text"),
    ("pairs.tsv", "de;en\nHallo.;Hi.\n", ("de", "en"), "one column only: does data.format match the file's separator"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, name: str, content: str, columns: tuple, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabError, match=message):
        read_parallel_file(path, *columns)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("de,en\nHallo.,Hi.\n".encode("utf-8-sig"))
    assert read_parallel_file(path) == [("Hallo.", "Hi.")]


def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsv"
    path.write_bytes("de\ten\nHallo.\tHi.\nÜber.\tAbout.\n".encode("latin-1"))
    with pytest.raises(LabError, match=r"latin1.tsv:3: not UTF-8 text .*iconv -f latin1 -t utf-8"):
        read_parallel_file(path)


def test_splits_too_small_to_evaluate_are_refused_before_training(tmp_path: Path) -> None:
    path = tmp_path / "five.tsv"
    path.write_text("de\ten\n" + "".join(f"{s}\t{t}\n" for s, t in make_pairs(5)), encoding="utf-8")
    with pytest.raises(LabError, match=r"the valid split is empty \(\d training pairs after cleaning, "
                                       r"data.valid_fraction=0.05\): use more pairs"):
        load_splits(DataConfig(path=path))
    assert load_splits(DataConfig(path=path, valid_fraction=0.0, test_fraction=0.0)).train  # no split asked for


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="does not exist"):
        read_parallel_file(tmp_path / "nope.tsv")


def test_hugging_face_without_datasets_package_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail, installed or not
    with pytest.raises(LabError, match="needs the `datasets` package"):
        load_hf_splits("wmt16", "de-en", "de", "en")


def test_hugging_face_dataset_with_its_own_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(name: str, config: str | None) -> dict:
        assert (name, config) == ("wmt16", "de-en")
        row = {"translation": {"de": "Hallo  Welt.", "en": "Hello world."}}
        long = {"translation": {"de": "Ein sehr langer Satz.", "en": "A very long sentence."}}
        return {"train": [row, row, long], "validation": [row, row], "test": [row, long]}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    splits = load_splits(DataConfig(dataset="wmt16", dataset_config="de-en", max_words=3))
    short, long = ("Hallo Welt.", "Hello world."), ("Ein sehr langer Satz.", "A very long sentence.")
    assert splits.train == [short]  # deduplicated, long pairs dropped: training only
    assert splits.valid == [short, short] and splits.test == [short, long]  # the official sets stay whole


def test_unreachable_hugging_face_dataset_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_dataset(name: str, config: str | None) -> dict:
        raise ConnectionError("Couldn't reach 'wmt16' on the Hub (LocalEntryNotFoundError)\nlong details")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(LabError) as error:
        load_hf_splits("wmt16", None, "de", "en")
    assert "Couldn't reach 'wmt16'" in str(error.value) and "\n" not in str(error.value)


def test_config_takes_one_source_only() -> None:
    with pytest.raises(ValidationError, match="either data.path or data.dataset"):
        DataConfig(path="pairs.tsv", dataset="wmt16")


# --- cleaning and the split --------------------------------------------------------------------------------------


def test_clean_normalises_filters_and_deduplicates_sources() -> None:
    decomposed = unicodedata.normalize("NFD", "Grüß  dich! ")
    pairs = [(decomposed, " Hello\tthere! "), ("Grüß dich!", "Hi!"), ("", "Empty."), ("Ein zwei drei vier.", "x")]
    assert clean_pairs(pairs, max_words=3) == [("Grüß dich!", "Hello there!")]


def make_pairs(n: int) -> list[tuple[str, str]]:
    return [(f"Satz Nummer {i}.", f"Sentence number {i}.") for i in range(n)]


def test_split_is_fixed_disjoint_and_about_the_right_size() -> None:
    pairs = make_pairs(4000)
    splits = split_pairs(pairs, valid_fraction=0.1, test_fraction=0.05, seed=0)
    assert split_pairs(list(reversed(pairs)), 0.1, 0.05, seed=0).test == list(reversed(splits.test))
    sources = [{s for s, _ in part} for part in (splits.train, splits.valid, splits.test)]
    assert sum(map(len, sources)) == len(pairs) and not (sources[0] & sources[1] or sources[0] & sources[2])
    assert 300 < len(splits.valid) < 500 and 130 < len(splits.test) < 270
    assert split_pairs(pairs, 0.1, 0.05, seed=1).test != splits.test


def test_sentences_differing_in_case_or_punctuation_share_a_split() -> None:
    from nlp.data import split_key

    assert split_key("Das ist ein starkes Stück!") == split_key(" das ist ein  STARKES Stück.") == \
        "das ist ein starkes stück"
    twins = [(f"Satz Nummer {i}{mark}", "x") for i in range(300) for mark in (".", "!", "?")]
    splits = split_pairs(twins, 0.1, 0.1)
    homes = {}
    for name in ("train", "valid", "test"):
        for source, _ in getattr(splits, name):
            homes.setdefault(source.rstrip(".!?"), set()).add(name)
    assert all(len(home) == 1 for home in homes.values()) and splits.test


def test_adding_data_keeps_old_pairs_in_their_split() -> None:
    small = split_pairs(make_pairs(500), 0.1, 0.1)
    large = split_pairs(make_pairs(1000), 0.1, 0.1)
    assert set(small.test) <= set(large.test) and set(small.train) <= set(large.train)


def test_load_splits_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("de\ten\n" + "".join(f"{s}\t{t}\n" for s, t in make_pairs(200)), encoding="utf-8")
    splits = load_splits(DataConfig(path=path, valid_fraction=0.1, test_fraction=0.1, max_pairs=50))
    assert len(splits.train) == 50 and splits.valid and splits.test


# --- batches -----------------------------------------------------------------------------------------------------


def test_collate_pads_and_shifts_the_target() -> None:
    examples = [make_example([5, 6, 7], [8, 9], 16), make_example([5], [8, 9, 10, 11], 16)]
    batch = collate(examples)
    assert batch.source.tolist() == [[5, 6, 7, EOS_ID], [5, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.source_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.target_in.tolist() == [[BOS_ID, 8, 9, EOS_ID, PAD_ID], [BOS_ID, 8, 9, 10, 11]]
    assert batch.target_out.tolist() == [[8, 9, EOS_ID, PAD_ID, PAD_ID], [8, 9, 10, 11, EOS_ID]]
    assert batch.target_tokens == 8


def test_make_example_truncates_but_keeps_the_markers() -> None:
    source, target = make_example(list(range(10, 30)), list(range(10, 30)), 8)
    assert len(source) == 8 and source[-1] == EOS_ID
    assert len(target) == 8 and target[0] == BOS_ID and target[-1] == EOS_ID


def lengths_of(n: int) -> list[int]:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(1, 60, (n,), generator=generator).tolist()


def test_an_epoch_covers_every_example_once_in_similar_length_batches() -> None:
    lengths = lengths_of(1000)
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=0, pool_batches=20)
    batches = sampler.batches(0)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches of 16 would spread over ~50
    assert sampler.batches(1) != batches and BucketBatchSampler(lengths, 16, seed=0, pool_batches=20).batches(0) == batches


def test_resuming_from_epoch_and_position_replays_the_same_batches() -> None:
    lengths = lengths_of(100)
    original = BucketBatchSampler(lengths, batch_size=8, seed=3)
    for _ in range(17):  # past the end of the first epoch (13 batches)
        original.next_batch()
    state = original.state_dict()
    assert state == {"epoch": 1, "position": 4}
    resumed = BucketBatchSampler(lengths, batch_size=8, seed=3)
    resumed.load_state_dict(state)
    assert [resumed.next_batch() for _ in range(20)] == [original.next_batch() for _ in range(20)]


def test_ranks_get_disjoint_shards_of_equal_length() -> None:
    lengths = lengths_of(103)
    shards = [BucketBatchSampler(lengths, batch_size=4, seed=0, rank=r, world_size=3).batches(0) for r in range(3)]
    assert len({len(shard) for shard in shards}) == 1
    seen = [i for shard in shards for batch in shard for i in batch]
    assert len(seen) == len(set(seen)) > 90


def test_evaluation_batches_cover_everything_longest_first() -> None:
    lengths = [3, 9, 1, 7, 5]
    batches = list(sorted_batches(lengths, 2))
    assert batches == [[1, 3], [4, 0], [2]]

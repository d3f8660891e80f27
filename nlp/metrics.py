"""Corpus-level translation metrics from sacreBLEU, each with the signature that makes it reproducible.

A BLEU score means little without its settings (tokenizer, smoothing, casing, sacreBLEU version);
the signature string, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`, records them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF


@dataclass(frozen=True)
class TranslationScores:
    bleu: float  # 0–100
    chrf: float  # 0–100
    bleu_signature: str
    chrf_signature: str


def score_translations(hypotheses: Sequence[str], references: Sequence[str]) -> TranslationScores:
    """Corpus BLEU (13a tokenisation, exponential smoothing) and chrF against one reference per sentence."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    hypotheses, reference_streams = list(hypotheses), [list(references)]
    return TranslationScores(
        bleu=bleu.corpus_score(hypotheses, reference_streams).score,
        chrf=chrf.corpus_score(hypotheses, reference_streams).score,
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )

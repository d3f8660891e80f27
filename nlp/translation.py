"""Machine translation through the unified Trainer: any registered seq2seq model on the Ding example
sentences (the offline default), a TSV/CSV/JSONL file of pairs, or a Hugging Face dataset.

The tokenizer is trained on the training split when a run starts and saved in the run directory
(`tokenizer.json`), so evaluation, resumption and `lab translate` use exactly the same vocabulary.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from lab.config import ModelSwitches, RunConfig, Section
from lab.distributed import DistInfo, barrier
from lab.errors import LabError
from lab.registry import TASKS
from lab.task import StepOutput, Task
from lab.trainer import unwrap
from nlp.batching import BucketBatchSampler, collate, make_example, sorted_batches
from nlp.data import DataConfig, Pair, load_splits
from nlp.decoding import DecodingConfig
from nlp.metrics import TranslationScores, score_translations
from nlp.models import TRANSLATION_MODELS, Seq2SeqModel, sequence_loss
from nlp.tokenization import TokenizerConfig, TranslationTokenizers
from nlp.translator import Translator

Example = tuple[list[int], list[int]]


class TranslationModelConfig(ModelSwitches):
    name: str = Field("seq2seq_transformer", description="a translation model (lab list models: seq2seq_…)")
    options: dict[str, Any] = Field({}, description="model keyword arguments, e.g. {hidden_size: 256, dropout: 0.3}")
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class EvaluationConfig(Section):
    max_sentences: int | None = Field(None, gt=0, description="translate at most this many valid sentences at "
                                     "each evaluation (the test split is always scored whole)")
    examples: int = Field(10, ge=0, description="example translations logged as a table after each evaluation")


class TranslationConfig(RunConfig):
    task: Literal["translation"] = "translation"
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: TranslationModelConfig = TranslationModelConfig()
    decoding: DecodingConfig = DecodingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()


def build_translation_model(config: TranslationModelConfig, tokenizers: TranslationTokenizers) -> Seq2SeqModel:
    entry = TRANSLATION_MODELS.get(config.name)
    options = dict(config.options)
    if "share_source_embedding" in entry.options():  # one vocabulary → one embedding table, unless told otherwise
        options.setdefault("share_source_embedding", tokenizers.shared)
    return entry(tokenizers.source.vocab_size, tokenizers.target.vocab_size, **options)


@TASKS.register("translation", help="sequence-to-sequence translation (RNN + attention or Transformer)")
class TranslationTask(Task):
    Config = TranslationConfig
    supports_ddp = True
    best_metric = "eval/valid_bleu"

    def __init__(self, config: TranslationConfig, device: torch.device, run_dir: Path | None,
                 dist: DistInfo) -> None:
        super().__init__(config, device, run_dir, dist)
        self.splits = load_splits(config.data)
        best = config.trainer.best_metric or self.best_metric
        if best.startswith("eval/valid_") and not self.splits.valid:
            raise LabError(f"the valid split is empty (data.valid_fraction={config.data.valid_fraction}) but "
                           f"trainer.best_metric is {best}: keep a valid split, or set trainer.best_metric="
                           f"{best.replace('valid_', 'test_', 1)}")
        self.tokenizers = self._tokenizers(run_dir, dist)
        self.examples = {name: self._encode(pairs) for name, pairs in self.pairs().items()}
        self.model = build_translation_model(config.model, self.tokenizers).to(device)
        if config.data.max_tokens > self.model.max_positions:
            raise LabError(f"data.max_tokens={config.data.max_tokens} exceeds the model's max_positions="
                           f"{self.model.max_positions}; lower one or raise the other")
        train = self.examples["train"]
        self.sampler = BucketBatchSampler([max(len(s), len(t)) for s, t in train], config.data.batch_size,
                                          config.seed, dist.rank, dist.world_size)
        self.last_scores: TranslationScores | None = None
        self.last_examples: list[list[str]] = []

    @classmethod
    def upgrade_config(cls, data: dict[str, Any], run_format: int) -> dict[str, Any]:
        decoding = data.get("decoding") if isinstance(data.get("decoding"), dict) else {}
        # A config saved before the split and decoding changed lists every key of its day but not min_length.
        if run_format < 2 and "min_length" not in decoding:  # exact-sentence hash, empty translations allowed
            data = {**data, "data": {**(data.get("data") or {}), "split_version": 1},
                    "decoding": {**decoding, "min_length": 0}}
        return data

    # --- data ------------------------------------------------------------------------------------------------------
    def _tokenizers(self, run_dir: Path | None, dist: DistInfo) -> TranslationTokenizers:
        """Load the run's tokenizer, or learn one from the training split (rank 0 learns and saves, others load)."""
        if run_dir is not None and TranslationTokenizers.exists(run_dir):
            return TranslationTokenizers.load(run_dir)
        if run_dir is None:
            return TranslationTokenizers.train(self.splits.train, self.config.tokenizer)
        if dist.is_main:
            TranslationTokenizers.train(self.splits.train, self.config.tokenizer).save(run_dir)
        barrier(dist)
        return TranslationTokenizers.load(run_dir)

    def pairs(self) -> dict[str, list[Pair]]:
        """The train, valid and test pairs; valid capped at evaluation.max_sentences, test whole (its BLEU is the
        result a run reports)."""
        limit = self.config.evaluation.max_sentences
        return {"train": self.splits.train, "valid": self.splits.valid[:limit], "test": self.splits.test}

    def _encode(self, pairs: list[Pair]) -> list[Example]:
        sources = self.tokenizers.source.encode_batch([s for s, _ in pairs])
        targets = self.tokenizers.target.encode_batch([t for _, t in pairs])
        return [make_example(s, t, self.config.data.max_tokens) for s, t in zip(sources, targets)]

    # --- training --------------------------------------------------------------------------------------------------
    def train_step(self) -> StepOutput:
        batch = collate([self.examples["train"][i] for i in self.sampler.next_batch()]).to(self.device)
        logits = self.model(batch.source, batch.source_mask, batch.target_in)
        loss = sequence_loss(logits, batch.target_out, self.config.model.label_smoothing)
        return StepOutput(loss=loss, metrics={"target_tokens": float(batch.target_tokens),
                                              "epoch": float(self.sampler.epoch)})

    # --- evaluation ------------------------------------------------------------------------------------------------
    def translator(self) -> Translator:
        return Translator(unwrap(self.model), self.tokenizers, self.device, self.config.decoding,
                          self.config.data.max_tokens)

    def _loss(self, examples: list[Example]) -> float:
        """Mean cross-entropy per target token, without label smoothing (so exp(loss) is the perplexity)."""
        model = unwrap(self.model)
        total, tokens = 0.0, 0
        for indices in sorted_batches([len(s) for s, _ in examples], 2 * self.config.data.batch_size):
            batch = collate([examples[i] for i in indices]).to(self.device)
            logits = model(batch.source, batch.source_mask, batch.target_in)
            total += float(sequence_loss(logits, batch.target_out)) * batch.target_tokens
            tokens += batch.target_tokens
        return total / max(tokens, 1)

    @torch.no_grad()
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        results: dict[str, float] = {}
        translator = self.translator()
        pairs = self.pairs()
        for split in ("valid", "test"):
            if not pairs[split]:
                continue
            loss = self._loss(self.examples[split])
            hypotheses = [t.text for t in translator.translate([s for s, _ in pairs[split]])]
            scores = score_translations(hypotheses, [t for _, t in pairs[split]])
            results.update({f"{split}_loss": loss, f"{split}_perplexity": math.exp(min(loss, 50.0)),
                            f"{split}_bleu": scores.bleu, f"{split}_chrf": scores.chrf})
            if split == "valid":
                self.last_examples = [[s, r, h] for (s, r), h in zip(pairs[split], hypotheses)]
            self.last_scores = scores
        return results

    def evaluation_details(self) -> dict[str, str]:
        if self.last_scores is None:
            return {}
        return {"bleu_signature": self.last_scores.bleu_signature, "chrf_signature": self.last_scores.chrf_signature}

    def log_media(self, tracker: Any, step: int) -> None:
        tracker.summary(self.evaluation_details())
        rows = self.last_examples[: self.config.evaluation.examples]
        if rows:
            tracker.log_table("eval/translations", ["source", "reference", "translation"], rows, step)

    # --- state -----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])

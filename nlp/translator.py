"""Text in, text out: a trained model with its tokenizers and decoding settings."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nlp.batching import sorted_batches, source_batch
from nlp.decoding import DecodingConfig, decode
from nlp.ding import clean_text
from nlp.models.base import Seq2SeqModel
from nlp.tokenization import EOS_ID, UNK_ID, TranslationTokenizers


@dataclass
class Translation:
    source: str  # the cleaned input
    text: str  # the translation ("" for an empty input)
    source_tokens: list[str]  # as the model saw them, <eos> included
    target_tokens: list[str]  # as generated, <eos> included when reached
    score: float  # the decoder's (length-normalised) log-probability
    attention: torch.Tensor | None = None  # (target tokens, source tokens), rows sum to 1
    truncated: bool = False  # the input was longer than the model accepts and was cut
    unknown_tokens: int = 0  # input pieces outside the source vocabulary


class Translator:
    def __init__(self, model: Seq2SeqModel, tokenizers: TranslationTokenizers, device: torch.device,
                 decoding: DecodingConfig | None = None, max_source_tokens: int = 128) -> None:
        self.model = model
        self.tokenizers = tokenizers
        self.device = device
        self.decoding = decoding or DecodingConfig()
        self.max_source_tokens = min(max_source_tokens, model.max_positions)

    def translate(self, texts: list[str], batch_size: int = 64, return_attention: bool = False) -> list[Translation]:
        """Translate sentences in length-sorted batches; the results come back in input order."""
        cleaned = [clean_text(text) for text in texts]
        encoded = self.tokenizers.source.encode_batch(cleaned)
        sources = [ids[: self.max_source_tokens - 1] + [EOS_ID] for ids in encoded]
        results: list[Translation | None] = [None] * len(texts)
        for i, text in enumerate(cleaned):
            if not text:
                results[i] = Translation(text, "", [], [], 0.0)
        todo = [i for i, text in enumerate(cleaned) if text]
        was_training = self.model.training
        self.model.eval()
        for batch in sorted_batches([len(sources[i]) for i in todo], batch_size):
            rows = [todo[j] for j in batch]
            source, source_mask = source_batch([sources[i] for i in rows])
            hypotheses = decode(self.model, source.to(self.device), source_mask.to(self.device), self.decoding,
                                return_attention=return_attention)
            for k, i in enumerate(rows):
                results[i] = self._result(cleaned[i], encoded[i], sources[i], hypotheses.tokens[k].tolist(),
                                          float(hypotheses.scores[k]),
                                          None if hypotheses.attention is None else hypotheses.attention[k])
        self.model.train(was_training)
        return results  # type: ignore[return-value]

    def _result(self, text: str, encoded: list[int], source: list[int], output: list[int], score: float,
                attention: torch.Tensor | None) -> Translation:
        length = output.index(EOS_ID) + 1 if EOS_ID in output else len(output)
        output = output[:length]
        source_vocab, target_vocab = self.tokenizers.source, self.tokenizers.target
        if attention is not None:
            attention = attention[:length, : len(source)].cpu()
        return Translation(
            source=text,
            text=target_vocab.decode(output),
            source_tokens=[source_vocab.id_to_token(i) for i in source],
            target_tokens=[target_vocab.id_to_token(i) for i in output],
            score=score,
            attention=attention,
            truncated=len(encoded) >= self.max_source_tokens,
            unknown_tokens=sum(1 for i in encoded if i == UNK_ID),
        )


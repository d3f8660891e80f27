"""NLP: tokenizers, data, seq2seq and Transformer models, classifiers, decoding and metrics."""

from nlp import cli, models, translation  # noqa: F401  (registers the models, the translation task and `lab translate`)

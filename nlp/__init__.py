"""NLP: tokenizers, data, seq2seq and Transformer models, classifiers, decoding and metrics."""

from nlp import cli, models, translation  # noqa: F401  (registers the models, the translation task and `lab translate`)
from nlp import classifiers, classify_cli, text_classification  # noqa: F401,E402  (text classifiers, the text_classification task, `lab classify`)

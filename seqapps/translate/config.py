"""Configuration of the translation app."""

from __future__ import annotations

import dataclasses

from seqapps.config import TrainConfig


@dataclasses.dataclass
class TranslateConfig(TrainConfig):
    data: str = "default"  # "default" (embedded synthetic corpus), a Tatoeba/Anki file, "anki:spa-eng", "tfds:ted_hrlr_translate/pt_to_en"
    direction: str = "spa->eng"  # source->target; for Anki files the English column is "eng"
    embedded_pairs: int = 20000  # size of the embedded corpus
    on_bad_lines: str = "error"  # "error" (with file:line) or "skip" (counted) for malformed corpus lines
    src_vocab_size: int = 12000
    tgt_vocab_size: int = 8000
    max_src_len: int = 24  # tokens; longer training pairs are dropped, longer inputs truncated (and said)
    max_tgt_len: int = 24
    embedding_dim: int = 128
    units: int = 256
    attention: str = "additive"  # "additive" (Bahdanau) or "multiplicative" (Luong)
    dropout: float = 0.2
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    beam_width: int = 4
    length_penalty: float = 0.6  # GNMT alpha; 0 = plain log-probability
    eval_examples: int = 0  # test pairs decoded for BLEU at the end of training, spread over the split; 0 = all
    tflite_eval_examples: int = 200  # of those, spread over them: TFLite parity and the quantized BLEU change; 0 = all
    int8_calibration_sentences: int = 100  # training sentences that calibrate model_int8.tflite; 0: no int8 file


def tiny() -> TranslateConfig:
    return TranslateConfig(
        embedded_pairs=1200,
        src_vocab_size=400,
        tgt_vocab_size=400,
        embedding_dim=16,
        units=24,
        epochs=4,
        batch_size=32,
        learning_rate=0.01,
        max_src_len=12,
        max_tgt_len=12,
        dropout=0.0,
        eval_examples=0,
        tflite_eval_examples=100,
        int8_calibration_sentences=20,
        beam_width=3,
        verbose=0,
        patience=0,
    )

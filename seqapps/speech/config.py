"""Configuration of the speech command app."""

from __future__ import annotations

import dataclasses

from seqapps.config import ConfigError, TrainConfig

SPEECH_COMMANDS_LABELS = (
    "yes",
    "no",
    "up",
    "down",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
    "_silence_",
    "_unknown_",
)


@dataclasses.dataclass
class SpeechConfig(TrainConfig):
    # data spec: "default"/"synthetic" (eSpeak NG keywords, offline), a Speech Commands folder
    # (<label>/<speaker>_nohash_<n>.wav), any folder of labelled WAVs (sub-folders or file-name prefix, e.g. FSDD),
    # or "tfds:speech_commands"
    data: str = "default"
    extra_train: str = ""  # comma-separated extra specs added to the TRAINING split only (speakers of val/test removed)
    labels: str = "auto"  # "auto" (from the data), "speech_commands" (the 12 labels) or a comma-separated list
    synthetic_per_word: int = 120  # eSpeak clips per keyword for the synthetic data
    synthetic_unknown_words: int = 24  # other words spoken as _unknown_ in the synthetic data
    silence_clips: int = 0  # extra generated silence/noise clips (0: about one label's worth when _silence_ is a label)
    # front end (frame = 2 hops, causal: frame t covers samples [(t-1)*hop, (t+1)*hop))
    sample_rate: int = 16000  # 16000 only (`check`): every clip is read and resampled at 16 kHz
    hop: int = 320  # 20 ms
    fft_length: int = 1024
    num_mel: int = 40
    fmin: float = 20.0
    fmax: float = 7600.0
    # model
    cell: str = "gru"  # gru | lstm | rnn (seqapps.layers)
    conv_filters: int = 64  # causal Conv1D over time before the recurrent layers; 0 disables
    conv_kernel: int = 5
    units: int = 128
    rnn_layers: int = 2
    dropout: float = 0.2
    # augmentation
    time_shift_ms: float = 100.0
    noise_prob: float = 0.8
    noise_snr_db_min: float = 5.0
    noise_snr_db_max: float = 30.0
    gain_db: float = 6.0
    spec_time_masks: int = 2
    spec_time_mask_max: int = 6  # frames
    spec_freq_masks: int = 2
    spec_freq_mask_max: int = 6  # mel channels
    # training
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 2e-3
    patience: int = 8
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    label_smoothing: float = 0.05
    # export / evaluation
    int8_calibration_clips: int = 200
    tflite_eval_examples: int = 0  # test clips used for TFLite accuracy (0 = all)
    stream_resets: int = 4  # predict --stream: parallel recurrent streams (>= 1), staggered, each reset every clip
    detect_threshold: float = 0.6


def check(cfg: SpeechConfig, source: str = "config") -> None:
    """The speech settings that `seqapps.config.check_ranges` (a range per key, shared by every app) cannot judge;
    raise `ConfigError` naming the key and the fix."""
    if cfg.sample_rate != 16000:
        raise ConfigError(
            f"{source}: sample_rate={cfg.sample_rate!r}: the speech app runs at 16000 Hz only (every clip is read, "
            "resampled and served at 16 kHz, so another rate would give the mel filters wrong frequencies); "
            "leave sample_rate at 16000 (input files of any rate are resampled)"
        )
    if cfg.stream_resets < 1:
        raise ConfigError(
            f"{source}: stream_resets={cfg.stream_resets!r} must be >= 1 (predict --stream runs that many staggered "
            "recurrent states, each reset every second), e.g. --set stream_resets=4"
        )


def tiny() -> SpeechConfig:
    return SpeechConfig(
        data="synthetic",
        synthetic_per_word=14,
        synthetic_unknown_words=6,
        num_mel=16,
        conv_filters=8,
        conv_kernel=3,
        units=16,
        rnn_layers=1,
        epochs=2,
        batch_size=32,
        patience=0,
        verbose=0,
        int8_calibration_clips=16,
        tflite_eval_examples=24,
        dropout=0.0,
        val_fraction=0.2,
        test_fraction=0.2,
        labels="yes,no,up,down,_silence_,_unknown_",
    )

"""The keyword-spotting model: log-mel front end inside the model, causal conv, seqapps recurrent layers.

    waveform [B, N] (16 kHz, N a multiple of ``hop``)
      -> LogMelFrontEnd: causal frames of 2*hop samples every hop (frame t = samples [(t-1)hop, (t+1)hop),
         the first frame sees ``hop`` zeros), Hann window, |rfft|^2, mel matrix, log, fixed normalisation
         [B, N/hop, num_mel]
      -> SpecAugment (training only) -> causal Conv1D (ReLU) -> GRU/LSTM stack (seqapps.layers)
      -> Dense logits from the last time step.

Everything is causal, so the same weights run one hop at a time (`StreamingStep`): the state holds the
previous hop of audio, the last ``conv_kernel - 1`` feature frames and the recurrent states. Stepping over
a clip from the zero state gives, after the last hop, the non-streaming result.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from seqapps import layers as seq_layers

PACKAGE = "seqapps_speech"


@contextlib.contextmanager
def mel_in_small_blocks(model):
    """Trace the front end's mel projection in blocks that TFLite's dynamic-range quantizer leaves in float
    (`seqapps.export.tflite.matmul_in_small_blocks`).

    Quantized, the mel product would also quantize its input, the power spectrum, per frame to int8; that
    spectrum spans ~10 decades, so most bins would round to zero before the log. Measured on the shipped
    model: 75.8% accuracy with the quantized front end, 93.1% (= float) with this one."""
    fe = model.get_layer("frontend")
    fe._mel_in_blocks = True
    try:
        yield
    finally:
        fe._mel_in_blocks = False


@keras.saving.register_keras_serializable(package=PACKAGE)
class LogMelFrontEnd(keras.layers.Layer):
    """Raw waveform -> normalised log-mel frames, with TFLite builtin ops only (RFFT2D, COMPLEX_ABS)."""

    def __init__(
        self, sample_rate=16000, hop=320, fft_length=1024, num_mel=40, fmin=20.0, fmax=7600.0, floor=1e-6, **kwargs
    ):
        super().__init__(**kwargs)
        self.sample_rate, self.hop, self.fft_length = int(sample_rate), int(hop), int(fft_length)
        self.num_mel, self.fmin, self.fmax, self.floor = int(num_mel), float(fmin), float(fmax), float(floor)
        self.frame_length = 2 * self.hop
        if self.fft_length < self.frame_length or self.fft_length & (self.fft_length - 1):
            raise ValueError(f"fft_length must be a power of two >= 2*hop ({self.frame_length}), got {fft_length}")
        n = np.arange(self.frame_length)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * n / self.frame_length)).astype(np.float32)  # periodic Hann
        self._mel = tf.signal.linear_to_mel_weight_matrix(
            self.num_mel, self.fft_length // 2 + 1, self.sample_rate, self.fmin, self.fmax
        ).numpy()

    def build(self, input_shape):
        self.mean = self.add_weight(shape=(self.num_mel,), name="mean", initializer="zeros", trainable=False)
        self.std = self.add_weight(shape=(self.num_mel,), name="std", initializer="ones", trainable=False)

    def frames(self, waveform):
        """[B, N] -> [B, N/hop, 2*hop]: block b paired with the block before it (zeros before the start)."""
        hop = self.hop
        blocks = ops.reshape(waveform, (-1, waveform.shape[-1] // hop, hop))
        previous = ops.concatenate([ops.zeros_like(blocks[:, :1]), blocks[:, :-1]], axis=1)
        return ops.concatenate([previous, blocks], axis=-1)

    def frame_features(self, frames, normalize=True):
        """[..., 2*hop] -> [..., num_mel] log-mel (normalised with the stored mean/std)."""
        x = frames * self._window
        power = tf.square(tf.abs(tf.signal.rfft(x, fft_length=[self.fft_length])))
        if getattr(self, "_mel_in_blocks", False):  # see mel_in_small_blocks
            from seqapps.export.tflite import matmul_in_small_blocks

            mel = matmul_in_small_blocks(power, tf.constant(self._mel))
        else:
            mel = tf.tensordot(power, tf.constant(self._mel), axes=1)
        logmel = tf.math.log(mel + self.floor)
        if not normalize:
            return logmel
        return (logmel - self.mean) / self.std

    def call(self, waveform, normalize=True):
        return self.frame_features(self.frames(waveform), normalize)

    def compute_output_shape(self, input_shape):
        t = None if input_shape[-1] is None else input_shape[-1] // self.hop
        return (input_shape[0], t, self.num_mel)

    def get_config(self):
        return {
            **super().get_config(),
            "sample_rate": self.sample_rate,
            "hop": self.hop,
            "fft_length": self.fft_length,
            "num_mel": self.num_mel,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "floor": self.floor,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpecAugment(keras.layers.Layer):
    """SpecAugment masking (Park et al. 2019) of normalised features, in training only: up to ``time_masks``
    runs of at most ``time_mask_max`` frames and ``freq_masks`` bands of at most ``freq_mask_max`` channels
    are set to 0 (the feature mean)."""

    def __init__(self, time_masks=2, time_mask_max=6, freq_masks=2, freq_mask_max=6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.time_masks, self.time_mask_max = int(time_masks), int(time_mask_max)
        self.freq_masks, self.freq_mask_max = int(freq_masks), int(freq_mask_max)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _mask(self, batch, length, count, width_max):
        idx = ops.arange(length, dtype="float32")[None, :]
        keep = ops.ones((batch, length))
        for _ in range(count):
            w = ops.floor(keras.random.uniform((batch, 1), seed=self.seed_generator) * (width_max + 1))
            start = ops.floor(keras.random.uniform((batch, 1), seed=self.seed_generator) * (length - w + 1))
            inside = ops.logical_and(idx >= start, idx < start + w)
            keep = keep * (1.0 - ops.cast(inside, "float32"))
        return keep

    def call(self, x, training=False):
        if not training:
            return x
        batch, t, f = ops.shape(x)[0], x.shape[1], x.shape[2]
        keep_t = self._mask(batch, t, self.time_masks, self.time_mask_max)[:, :, None]
        keep_f = self._mask(batch, f, self.freq_masks, self.freq_mask_max)[:, None, :]
        return x * keep_t * keep_f

    def get_config(self):
        return {
            **super().get_config(),
            "time_masks": self.time_masks,
            "time_mask_max": self.time_mask_max,
            "freq_masks": self.freq_masks,
            "freq_mask_max": self.freq_mask_max,
            "seed": self.seed,
        }


RNN_CLASSES = {
    "gru": seq_layers.GRU,
    "lstm": seq_layers.LSTM,
    "rnn": seq_layers.SimpleRNN,
    "simple_rnn": seq_layers.SimpleRNN,
}


def build_model(cfg, num_labels: int, clip_samples: int = 16000) -> keras.Model:
    if cfg.cell not in RNN_CLASSES:
        raise ValueError(f"cell must be one of {sorted(RNN_CLASSES)}, got {cfg.cell!r}")
    if clip_samples % cfg.hop:
        raise ValueError(f"clip length {clip_samples} must be a multiple of hop {cfg.hop}")
    inp = keras.Input((clip_samples,), name="waveform")
    # the front end stays float32 under mixed precision: the power spectrum spans ~10 decades (float16 tops out
    # at 65504); the layers after it compute in the policy's dtype
    x = LogMelFrontEnd(
        cfg.sample_rate, cfg.hop, cfg.fft_length, cfg.num_mel, cfg.fmin, cfg.fmax, name="frontend", dtype="float32"
    )(inp)
    x = SpecAugment(
        cfg.spec_time_masks,
        cfg.spec_time_mask_max,
        cfg.spec_freq_masks,
        cfg.spec_freq_mask_max,
        seed=cfg.seed,
        name="specaugment",
        dtype="float32",
    )(x)
    if cfg.conv_filters:
        x = keras.layers.Conv1D(cfg.conv_filters, cfg.conv_kernel, padding="causal", activation="relu", name="conv")(x)
    for i in range(cfg.rnn_layers):
        last = i == cfg.rnn_layers - 1
        x = RNN_CLASSES[cfg.cell](cfg.units, return_sequences=not last, name=f"rnn_{i}")(x)
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
    out = keras.layers.Dense(num_labels, name="logits")(x)
    return keras.Model(inp, out, name="speech_commands_crnn")


def adapt_frontend(model, waveforms: np.ndarray, batch: int = 256) -> None:
    """Set the front end's per-channel mean/std from (training) waveforms."""
    fe = model.get_layer("frontend")
    feats = np.concatenate(
        [
            fe(tf.constant(waveforms[i : i + batch]), normalize=False).numpy().reshape(-1, fe.num_mel)
            for i in range(0, len(waveforms), batch)
        ]
    )
    fe.mean.assign(feats.mean(axis=0).astype(np.float32))
    fe.std.assign(np.maximum(feats.std(axis=0), 1e-3).astype(np.float32))


class StreamingStep:
    """One hop of audio + state -> logits + new state, with the weights of a trained clip model.

    State layout (one float32 vector, so a device keeps a single buffer), in this order:
        previous hop of audio (hop) | last conv_kernel-1 feature frames (flattened) | recurrent states of each layer
    """

    def __init__(self, model):
        self.model = model
        self.frontend = model.get_layer("frontend")
        self.conv = next((lyr for lyr in model.layers if lyr.name == "conv"), None)
        self.rnns = [lyr for lyr in model.layers if lyr.name.startswith("rnn_")]
        self.dense = model.get_layer("logits")
        self.hop = self.frontend.hop
        self.k = self.conv.kernel_size[0] if self.conv is not None else 1
        self.sizes = [self.hop, (self.k - 1) * self.frontend.num_mel]
        for rnn in self.rnns:
            ss = rnn.cell.state_size
            self.sizes.extend(list(ss) if isinstance(ss, (list, tuple)) else [ss])
        self.state_size = int(sum(self.sizes))

    def initial_state(self, batch=1):
        return np.zeros((batch, self.state_size), np.float32)

    def __call__(self, audio, state):
        """audio [B, hop], state [B, S] -> (logits [B, labels], new state [B, S])."""
        parts = tf.split(state, self.sizes, axis=-1)
        prev, buf, rnn_states = parts[0], parts[1], parts[2:]
        feat = self.frontend.frame_features(tf.concat([prev, audio], axis=-1))  # [B, num_mel]
        new_parts = [audio]
        if self.conv is not None:
            window = tf.concat([tf.reshape(buf, (-1, self.k - 1, self.frontend.num_mel)), feat[:, None, :]], axis=1)
            kernel = tf.reshape(self.conv.kernel, (-1, self.conv.filters))
            x = tf.nn.relu(tf.matmul(tf.reshape(window, (-1, self.k * self.frontend.num_mel)), kernel) + self.conv.bias)
            new_parts.append(tf.reshape(window[:, 1:], (-1, (self.k - 1) * self.frontend.num_mel)))
        else:
            x = feat
            new_parts.append(buf)
        i = 0
        for rnn in self.rnns:
            ss = rnn.cell.state_size
            n = len(ss) if isinstance(ss, (list, tuple)) else 1
            x, states = rnn.cell(x, list(rnn_states[i : i + n]))
            states = states if isinstance(states, (list, tuple)) else [states]
            new_parts.extend(states)
            i += n
        return self.dense(x), tf.concat(new_parts, axis=-1)

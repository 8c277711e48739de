"""What ships: the SavedModel serving module and the TFLite modules of the speech app.

SavedModel signatures (run with TensorFlow alone)
    serving_default: waveform (float32 [None, 16000], 16 kHz, [-1, 1])
                     -> probabilities (float32 [None, L]), label (string [None])
    classify_wav:    wav (string [], the bytes of a WAV file: PCM 8/16/24/32-bit or float32, any rate, any channels)
                     -> probabilities (float32 [1, L]), label (string [1]), error (string [], "" when fine),
                        sample_rate (int32 []), seconds (float32 [])
                     Channels are averaged, the audio is resampled to 16 kHz (windowed-sinc low-pass + linear
                     interpolation), shorter clips are zero-padded (centred), longer ones give their loudest second.
                     Bad bytes never raise: ``error`` names the problem and the label is "".
TFLite (builtin ops only, batch 1)
    model*.tflite   classify: waveform (float32 [1, 16000]) -> probabilities (float32 [1, L])
    stream.tflite   step: audio (float32 [1, hop]) + state (float32 [1, S]) -> probabilities [1, L], state [1, S]
Every signature reads NaN or infinite samples as 0 (`sanitize`), so that one bad sample cannot turn the
answer (or, streaming, every later state) into NaN. The graphs do not check the [-1, 1] range of a waveform
(raw int16 values give confident, wrong labels); the Python runners (`seqapps.speech.tflite_runtime`) and
``seqapps predict speech`` refuse samples outside it.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from seqapps.export.saved_model import KerasModule
from seqapps.speech.audio import MAX_RATE, MIN_RATE
from seqapps.speech.model import StreamingStep

MAX_WAV_SECONDS = 1200.0


def sanitize(x):
    """NaN and infinite samples as 0. Named as part of the front end, which the int8 file keeps in float (its
    input quantised to int8 would cost the quiet clips their detail)."""
    with tf.name_scope("frontend_sanitize"):
        return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


def _u16(b, pos):
    return tf.cast(tf.io.decode_raw(tf.strings.substr(b, pos, 2), tf.uint16)[0], tf.int64)


def _u32(b, pos):
    v = tf.io.decode_raw(tf.strings.substr(b, pos, 4), tf.uint16)
    return tf.cast(v[0], tf.int64) + tf.cast(v[1], tf.int64) * 65536


def parse_wav(wav, max_seconds=MAX_WAV_SECONDS):
    """WAV bytes (scalar string) -> (mono float32 samples [N], sample rate int64, error string). Never raises."""
    n = tf.cast(tf.strings.length(wav), tf.int64)
    b = tf.strings.join([wav, tf.constant(b"\0" * 64)])  # every header read below stays in bounds

    def chunk_scan(pos, fmt_off, data_off, data_size, found, i):
        cid = tf.strings.substr(b, pos, 4)
        size = _u32(b, pos + 4)
        fmt_off = tf.where(tf.equal(cid, "fmt "), pos + 8, fmt_off)
        is_data = tf.equal(cid, "data")
        data_off = tf.where(is_data, pos + 8, data_off)
        # a size of 0 (left by streaming writers) means the rest of the file, as in seqapps.speech.audio
        rest = n - pos - 8
        data_size = tf.where(is_data, tf.where(size > 0, tf.minimum(size, rest), rest), data_size)
        return pos + 8 + size + size % 2, fmt_off, data_off, data_size, tf.logical_or(found, is_data), i + 1

    zero = tf.constant(0, tf.int64)
    _, fmt_off, data_off, data_size, found, _ = tf.while_loop(
        lambda pos, f, d, s, found, i: tf.logical_and(tf.logical_and(pos + 8 <= n, tf.logical_not(found)), i < 64),
        chunk_scan,
        (tf.constant(12, tf.int64), zero, zero, zero, tf.constant(False), tf.constant(0)),
    )
    tag = _u16(b, fmt_off)
    tag = tf.where(tf.logical_and(tf.equal(tag, 0xFFFE), fmt_off > 0), _u16(b, fmt_off + 24), tag)
    channels, rate, bits = _u16(b, fmt_off + 2), _u32(b, fmt_off + 4), _u16(b, fmt_off + 14)
    width = (bits + 7) // 8
    frame = tf.maximum(width * channels, 1)
    frames = data_size // frame
    seconds = tf.cast(frames, tf.float32) / tf.cast(tf.maximum(rate, 1), tf.float32)
    pcm = tf.equal(tag, 1)
    flt = tf.equal(tag, 3)
    supported = tf.logical_or(
        tf.logical_and(pcm, tf.reduce_any(tf.equal(bits, [8, 16, 24, 32]))), tf.logical_and(flt, tf.equal(bits, 32))
    )
    checks = [
        (tf.equal(n, 0), "empty input (0 bytes): send the bytes of a WAV file"),
        (
            tf.logical_or(
                n < 12,
                tf.logical_not(
                    tf.logical_and(
                        tf.equal(tf.strings.substr(b, 0, 4), "RIFF"), tf.equal(tf.strings.substr(b, 8, 4), "WAVE")
                    )
                ),
            ),
            "not a WAV file (no RIFF/WAVE header); convert it to WAV (PCM 16-bit, 16 kHz, mono is best)",
        ),
        (tf.equal(fmt_off, 0), "corrupt WAV: no 'fmt ' chunk before the audio data"),
        (tf.logical_not(found), "corrupt WAV: no 'data' chunk"),
        (
            tf.logical_or(tf.equal(channels, 0), tf.logical_or(rate < MIN_RATE, rate > MAX_RATE)),
            tf.strings.format("corrupt WAV header: {} channel(s) at {} Hz", (channels, rate)),
        ),
        (
            tf.logical_not(supported),
            tf.strings.format(
                "unsupported WAV encoding (format tag {}, {} bits); use PCM 8/16/24/32-bit or 32-bit float", (tag, bits)
            ),
        ),
        (
            seconds > max_seconds,
            tf.strings.format(
                "audio is {} s long, more than the limit of {} s; split the file", (tf.round(seconds), max_seconds)
            ),
        ),
    ]
    error = tf.constant("")
    for cond, msg in reversed(checks):
        error = tf.where(cond, msg, error)

    def decode():
        raw = tf.strings.substr(b, data_off, frames * frame)

        def u8():
            return (tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.float32) - 128.0) / 128.0

        def s16():
            return tf.cast(tf.io.decode_raw(raw, tf.int16), tf.float32) / 32768.0

        def s24():
            v = tf.reshape(tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.int32), (-1, 3))
            v = v[:, 0] + v[:, 1] * 256 + v[:, 2] * 65536
            v = tf.where(v >= 8388608, v - 16777216, v)
            return tf.cast(v, tf.float32) / 8388608.0

        def s32():
            return tf.cast(tf.cast(tf.io.decode_raw(raw, tf.int32), tf.float64) / 2147483648.0, tf.float32)

        def f32():
            return sanitize(tf.io.decode_raw(raw, tf.float32))

        idx = tf.where(flt, 4, tf.cast(width, tf.int32) - 1)
        x = tf.switch_case(idx, [u8, s16, s24, s32, f32])
        x = tf.reduce_mean(tf.reshape(x, (-1, tf.cast(channels, tf.int32))), axis=1)
        return x

    ok = tf.equal(error, "")
    samples = tf.cond(ok, decode, lambda: tf.zeros([0], tf.float32))
    return samples, rate, error


def source_positions(first, count, rate, target=16000):
    """Where output samples ``first`` .. ``first + count - 1`` of a resampling from ``rate`` to ``target`` Hz read
    the input, i * rate / target: (the input sample at or before it, int64 [count]; the weight of the next one,
    float32 in [0, 1)). Integer arithmetic, so exact at any length: positions computed in float32 snap to
    multiples of 2 or 4 samples beyond 2**24 input samples (350 s at 48 kHz, within the 1,200 s limit)."""
    rate = tf.maximum(tf.cast(rate, tf.int64), 1)
    num = tf.range(first, first + count, dtype=tf.int64) * rate
    return num // target, tf.cast(num % target, tf.float32) / float(target)


def resample(x, rate, target=16000, half_taps=32):
    """Windowed-sinc low-pass (cut-off at the lower Nyquist) + linear interpolation; TensorFlow ops only."""
    rate_f = tf.cast(rate, tf.float32)
    ratio = target / rate_f

    def do():
        cutoff = tf.minimum(1.0, ratio) * 0.95
        t = tf.range(-half_taps, half_taps + 1, dtype=tf.float32)
        arg = math.pi * cutoff * t
        sinc = tf.where(tf.equal(t, 0.0), tf.ones_like(t), tf.sin(arg) / tf.where(tf.equal(arg, 0.0), 1.0, arg))
        window = 0.54 + 0.46 * tf.cos(math.pi * t / (half_taps + 1))
        h = cutoff * sinc * window
        h = h / tf.reduce_sum(h)
        y = tf.nn.conv1d(x[None, :, None], h[:, None, None], stride=1, padding="SAME")[0, :, 0]
        n_in = tf.shape(y, out_type=tf.int64)[0]
        n_out = n_in * target // tf.maximum(tf.cast(rate, tf.int64), 1)
        i0, w = source_positions(0, n_out, rate, target)
        i0 = tf.minimum(i0, n_in - 1)
        i1 = tf.minimum(i0 + 1, n_in - 1)
        return tf.gather(y, i0) * (1 - w) + tf.gather(y, i1) * w

    return tf.cond(tf.logical_or(tf.equal(rate, target), tf.size(x) < 2), lambda: x, do)


def fit_clip(x, length=16000, hop=160):
    """Pad (centred) or take the loudest ``length``-sample window (searched every ``hop`` samples)."""
    n = tf.shape(x)[0]

    def pad():
        left = (length - n) // 2
        return tf.pad(x, [[left, length - n - left]])

    def loudest():
        e = tf.concat([[0.0], tf.cumsum(tf.cast(tf.square(x), tf.float64))], 0)
        starts = tf.range(0, n - length + 1, hop)
        best = tf.gather(starts, tf.argmax(tf.gather(e, starts + length) - tf.gather(e, starts)))
        return x[best : best + length]

    return tf.reshape(tf.cond(n <= length, pad, loudest), [length])


class SpeechModule(KerasModule):
    def __init__(self, model, labels, clip_samples=16000, sample_rate=16000):
        super().__init__(model)
        self.labels = tf.constant(list(labels))
        self.clip_samples, self.sample_rate = int(clip_samples), int(sample_rate)
        self.classify = tf.function(
            self._classify, input_signature=[tf.TensorSpec([None, self.clip_samples], tf.float32, name="waveform")]
        )
        self.classify_wav = tf.function(self._classify_wav, input_signature=[tf.TensorSpec([], tf.string, name="wav")])

    def _classify(self, waveform):
        # a loaded signature does not check the shape it is called with: [1, 32000] gave two labels for one clip
        x = sanitize(tf.ensure_shape(waveform, [None, self.clip_samples]))
        labels = self.labels.shape[0]
        # an empty batch gets empty outputs (the front end's matrix product refuses a batch of 0)
        logits = tf.cond(
            tf.shape(x)[0] > 0, lambda: self.model(x, training=False), lambda: tf.zeros([0, labels], tf.float32)
        )
        probs = tf.nn.softmax(logits, axis=-1)
        return {"probabilities": probs, "label": tf.gather(self.labels, tf.argmax(probs, axis=-1))}

    def _classify_wav(self, wav):
        samples, rate, error = parse_wav(wav)
        ok = tf.equal(error, "")
        seconds = tf.cast(tf.size(samples), tf.float32) / tf.cast(tf.maximum(rate, 1), tf.float32)
        clip = fit_clip(resample(samples, rate, self.sample_rate), self.clip_samples)
        out = self._classify(clip[None, :])
        probs = tf.where(ok, out["probabilities"], tf.zeros_like(out["probabilities"]))
        return {
            "probabilities": probs,
            "label": tf.where(ok, out["label"], [""]),
            "error": error,
            "sample_rate": tf.cast(rate, tf.int32),
            "seconds": seconds,
        }

    def signatures(self):
        return {"serving_default": self.classify, "classify_wav": self.classify_wav}


class ClipTFLite(KerasModule):
    def __init__(self, model, clip_samples=16000):
        super().__init__(model)
        self.classify = tf.function(
            self._classify, input_signature=[tf.TensorSpec([1, clip_samples], tf.float32, name="waveform")]
        )

    def _classify(self, waveform):
        return {"probabilities": tf.nn.softmax(self.model(sanitize(waveform), training=False), axis=-1)}

    def signatures(self):
        return {"classify": self.classify}


class StreamTFLite(KerasModule):
    def __init__(self, model):
        super().__init__(model)
        self.stepper = StreamingStep(model)
        hop, size = self.stepper.hop, self.stepper.state_size
        self.step = tf.function(
            self._step,
            input_signature=[
                tf.TensorSpec([1, hop], tf.float32, name="audio"),
                tf.TensorSpec([1, size], tf.float32, name="state"),
            ],
        )

    def _step(self, audio, state):
        logits, new_state = self.stepper(sanitize(audio), state)
        return {"probabilities": tf.nn.softmax(logits, axis=-1), "state": new_state}

    def signatures(self):
        return {"step": self.step}


def int8_model(model, calibration_clips, clip_samples=16000) -> bytes:
    """Integer-quantised clip classifier (builtin ops only) with the log-mel front end kept in float.

    Full int8 quantisation of the front end destroys it (the power spectrum spans ~10 decades; quantised to int8
    nearly every bin rounds to zero before the log, and accuracy falls to chance), so the TFLite quantisation
    debugger is told to leave every tensor of the ``frontend`` layer in float; the conv, recurrent and dense layers
    run int8. The recurrent loop is traced unrolled: the calibrator cannot run a WHILE loop."""
    from seqapps.export import tflite

    def representative():
        for x in calibration_clips:
            yield [np.asarray(x, np.float32).reshape(1, clip_samples)]

    return tflite.convert_unrolled(
        model, lambda: ClipTFLite(model, clip_samples), "int8", representative, keep_float=lambda n: "frontend" in n
    )

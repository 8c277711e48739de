"""The seqapps layers against the Keras built-ins on whichever Keras backend ``KERAS_BACKEND`` names.

Run as a script (``KERAS_BACKEND=jax python tests/backend_script.py``): `test_layers.py` runs it on JAX on
the CPU; on a GPU machine it runs as it is under JAX and PyTorch, where LSTM and GRU take the backend's
cuDNN kernel (`seqapps.layers.base`). For every layer it checks, with the same weights:

* outputs and states against `keras.layers.SimpleRNN/LSTM/GRU` (masked and not, backwards, sequences);
* the default path and, on a GPU, the layer's own loop (``use_cudnn=False``) too, and that cuDNN was taken
  (without a GPU the default path is that loop);
* the gradients of a loss with respect to every weight against the built-in's, by both paths on a GPU;
* a `.keras` save and load, and a few steps of `fit` of a bidirectional model;
* under the ``mixed_float16`` and ``mixed_bfloat16`` policies, outputs against the built-ins under the same
  policy (float32 weights, 16-bit computation, cuDNN's included).

Prints one JSON line with the largest differences; exits non-zero (an AssertionError) on a mismatch.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402

from seqapps import layers as sl  # noqa: E402
from seqapps.layers import base  # noqa: E402
from seqapps.layers.base import gpu_available  # noqa: E402

GPU = gpu_available()
# cuDNN may use TF32 matrix products on GPUs, which keep 10 bits of mantissa
ATOL = 5e-3 if GPU else 1e-5

FUSED_CALLS = {"count": 0}


def _count_fused(cls):
    original = cls.fused_sequence

    def fused_sequence(self, *args, **kwargs):
        out = original(self, *args, **kwargs)  # raises NotImplementedError where the backend has no kernel
        FUSED_CALLS["count"] += 1
        return out

    cls.fused_sequence = fused_sequence


_count_fused(sl.LSTMCell)
_count_fused(sl.GRUCell)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def max_diff(a, b) -> float:
    a = a if isinstance(a, (list, tuple)) else [a]
    b = b if isinstance(b, (list, tuple)) else [b]
    assert len(a) == len(b), (len(a), len(b))
    return max(float(np.max(np.abs(numpy(x) - numpy(y)))) for x, y in zip(a, b))


def gradients(layer, x, y):
    """Gradients of a squared error with respect to the layer's weights, on this backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True) - y))
        return tape.gradient(loss, layer.trainable_variables)
    if backend == "jax":
        import jax

        frozen = [v.value for v in layer.non_trainable_variables]  # e.g. the dropout seed's state

        def loss_fn(values):
            out, _ = layer.stateless_call(values, frozen, x, training=True)
            return jax.numpy.mean(jax.numpy.square(out - y))

        return jax.grad(loss_fn)([v.value for v in layer.trainable_variables])
    if backend == "torch":
        import torch

        layer.zero_grad()
        loss = torch.mean(torch.square(layer(x, training=True) - keras.ops.convert_to_tensor(y)))
        loss.backward()
        return [v.value.grad for v in layer.trainable_variables]
    raise SystemExit(f"backend {backend!r} is not covered by this script")


def main() -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 9, 5)).astype("float32")
    y = rng.normal(size=(4, 6)).astype("float32")
    mask = np.ones((4, 9), bool)
    mask[1, 6:] = False  # right-padded, as cuDNN takes them
    mask[2, 3:] = False
    pairs = [
        ("SimpleRNN", sl.SimpleRNN, keras.layers.SimpleRNN, {}),
        ("LSTM", sl.LSTM, keras.layers.LSTM, {}),
        ("GRU", sl.GRU, keras.layers.GRU, {}),
        ("GRU reset_after=False", sl.GRU, keras.layers.GRU, {"reset_after": False}),
    ]
    report = {"backend": keras.backend.backend(), "keras": keras.__version__, "gpu": GPU, "max_diff": {}}
    for name, ours_cls, theirs_cls, kwargs in pairs:
        for extra in (
            {},
            {"go_backwards": True},
            {"return_sequences": True, "return_state": True},
            {"go_backwards": True, "return_sequences": True},
        ):
            reference = {}
            if keras.backend.backend() == "jax" and name == "LSTM" and len(extra) == 2 and "go_backwards" in extra:
                # Keras's JAX cuDNN LSTM returns a backward layer's sequence in input order, unlike every other
                # path (the layers give processing order, as Keras's loop does): compare with that loop
                reference = {"use_cudnn": False}
            theirs = theirs_cls(6, **kwargs, **extra, **reference)
            ours = ours_cls(6, **kwargs, **extra)
            loop = ours_cls(6, use_cudnn=False, **kwargs, **extra)
            for layer in (theirs, ours, loop):
                layer(x)
            ours.set_weights(theirs.get_weights())
            loop.set_weights(theirs.get_weights())
            for m in (None, mask):
                key = f"{name} {extra or 'plain'} mask={m is not None}"
                expected = theirs(x, mask=m)
                diff = max_diff(ours(x, mask=m), expected)
                report["max_diff"][key] = [diff]
                if GPU:  # without a GPU the default path is the loop
                    report["max_diff"][key].append(max_diff(loop(x, mask=m), expected))
                assert max(report["max_diff"][key]) <= ATOL, (key, report["max_diff"][key])
        theirs = theirs_cls(6, **kwargs)
        ours = ours_cls(6, **kwargs)
        loop = ours_cls(6, use_cudnn=False, **kwargs)
        for layer in (theirs, ours, loop):
            layer(x)
        ours.set_weights(theirs.get_weights())
        loop.set_weights(theirs.get_weights())
        expected = gradients(theirs, x, y)
        diffs = [max_diff(gradients(ours, x, y), expected)]
        if GPU:
            diffs.append(max_diff(gradients(loop, x, y), expected))
        report["max_diff"][f"{name} gradients"] = diffs
        assert max(diffs) <= ATOL, (name, diffs)
    report["fused_calls"] = FUSED_CALLS["count"]
    if keras.backend.backend() == "jax":  # no cuDNN GRU there: the layer never calls Keras's (a lax.scan loop)
        gru_calls = []
        keras_gru, gpu = keras.src.backend.gru, base.gpu_available
        keras.src.backend.gru = lambda *a, **k: gru_calls.append(1) or keras_gru(*a, **k)
        base.gpu_available = lambda: True
        try:
            sl.GRU(6)(x)
        finally:
            keras.src.backend.gru, base.gpu_available = keras_gru, gpu
        assert gru_calls == [], "a GRU on JAX should run its own loop"
    if GPU:
        assert FUSED_CALLS["count"] > 0, "on a GPU the LSTM and GRU layers should have run the cuDNN kernel"

    model = keras.Sequential(
        [keras.Input((9, 5)), keras.layers.Bidirectional(sl.GRU(8, return_sequences=True)), sl.LSTM(4)]
    )
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y[:, :4], epochs=3, batch_size=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        again = keras.saving.load_model(path)
    saved_diff = max_diff(again(x), model(x))
    assert saved_diff <= 1e-6, saved_diff
    report["fit_losses"] = losses
    report["saved_diff"] = saved_diff
    report["mixed_precision"] = mixed_precision(x, mask)
    return report


def mixed_precision(x, mask) -> dict:
    """Largest difference to the built-in under each 16-bit policy (the same weights, the same policy)."""
    diffs = {}
    for policy, tolerance in (("mixed_float16", 1e-2), ("mixed_bfloat16", 5e-2)):
        keras.mixed_precision.set_dtype_policy(policy)
        try:
            for name, ours_cls, theirs_cls in (
                ("SimpleRNN", sl.SimpleRNN, keras.layers.SimpleRNN),
                ("LSTM", sl.LSTM, keras.layers.LSTM),
                ("GRU", sl.GRU, keras.layers.GRU),
            ):
                theirs, ours = theirs_cls(6, return_sequences=True), ours_cls(6, return_sequences=True)
                theirs(x)
                ours(x)
                ours.set_weights(theirs.get_weights())
                for m in (None, mask):
                    expected, got = theirs(x, mask=m), ours(x, mask=m)
                    assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1], (policy, got.dtype)
                    assert all(w.dtype == "float32" for w in ours.weights), policy
                    diff = max_diff(got, expected)
                    diffs[f"{policy} {name} mask={m is not None}"] = diff
                    assert diff <= tolerance, (policy, name, diff)
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
    return diffs


if __name__ == "__main__":
    print(json.dumps(main()))

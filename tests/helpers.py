"""Shared test helpers: weight copying, save/load round trips, TFLite parity."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from seqapps import native_log
from seqapps.export import saved_model, tflite

PYTHON = sys.executable


def native_noise(stderr: str) -> list[str]:
    """The lines of ``stderr`` that seqapps should have hidden at its default level (2): native INFO and
    WARNING lines, and the expected ERROR lines. Other native ERROR lines (a GPU machine has its own) pass."""
    return [line for line in stderr.splitlines() if not native_log.keep(line, 2, native_log.START_UP_ERRORS)]


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def outputs_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def run_python(code: str, timeout: int = 300) -> str:
    """Run ``code`` in a fresh interpreter and return its stdout (raises with stderr on failure)."""
    proc = subprocess.run([PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


class SingleFn(saved_model.KerasModule):
    """Serve ``model(x)`` with one static-shape signature (for export tests)."""

    def __init__(self, model, shape, dtype=tf.float32, name="x"):
        super().__init__(model)
        self.serve = tf.function(
            lambda x: {"y": self.model(x, training=False)}, input_signature=[tf.TensorSpec(shape, dtype, name=name)]
        )

    def signatures(self):
        return {"serving_default": self.serve}


def tflite_outputs(model, x, variant="float32", representative=None):
    module = SingleFn(model, x.shape)
    blob = tflite.convert_module(module, module.signatures(), variant, representative_dataset=representative)
    interp = tflite.interpreter(blob)
    return blob, tflite.run(interp, "serving_default", x=x)["y"]


def assert_resume_is_uninterrupted(model, data, tmp_path, crash_after=2, epochs=4):
    """Train ``model()`` on ``data()`` for ``epochs`` in one run, and again stopped by Ctrl-C after ``crash_after``
    epochs and resumed (`training.fit(..., resume=True)`): the two must end with the same losses and weights, to
    the bit (the data order, the dropout masks and the optimizer state all carried over)."""
    import keras
    import pytest

    from seqapps import training
    from seqapps.config import TrainConfig

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == crash_after:
                raise KeyboardInterrupt

    cfg = TrainConfig(epochs=epochs, patience=0, verbose=0)
    whole = model()
    full = training.fit(whole, data(), None, cfg, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        training.fit(model(), data(), None, cfg, tmp_path / "run", callbacks=[Crash()])
    resumed = model()
    history = training.fit(resumed, data(), None, cfg, tmp_path / "run", resume=True)
    assert history.history["loss"] == full.history["loss"]
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)

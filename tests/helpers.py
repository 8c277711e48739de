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

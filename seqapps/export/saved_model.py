"""SavedModel export in the TF Serving layout: ``<base>/saved_model/<version>/``.

The serving module is a `tf.Module` holding the Keras model (and whatever pre/post-processing the
app needs) with `tf.function`s that have full input signatures. The SavedModel loads and runs with
``tensorflow`` alone (`run_isolated` proves it in a subprocess where ``seqapps`` cannot be imported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqapps.export.atomic import atomic_dir
from seqapps.layers.base import sequence_projection


class KerasModule(tf.Module):
    """A `tf.Module` that serves a Keras model.

    It tracks the model's TensorFlow variables explicitly: without that, a Keras 3 model held by a
    plain `tf.Module` saves its variables only as captures, and the TFLite converter cannot freeze
    the ones read inside a recurrent WHILE loop (READ_VARIABLE fails on the device).
    """

    def __init__(self, model):
        super().__init__()
        # The model itself is not tracked (tracking it too would save every weight twice); its
        # variables are, once, so the functions that use them find them in the SavedModel.
        object.__setattr__(self, "model", model)
        self.model_variables = [getattr(v, "value", v) for v in model.variables]


def require_trained(model_dir, train_hint: str) -> None:
    """A clear error unless ``model_dir`` holds a Keras file or a SavedModel to export from."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.keras").is_file() and not version_dirs(model_dir):
        raise FileNotFoundError(f"{model_dir / 'model.keras'} not found; train first ({train_hint})")


def load_keras_model(model_dir, build, train_hint: str):
    """The Keras model of a trained folder: ``model.keras`` when present, else ``build()`` given the
    weights of the folder's SavedModel (`restore_weights`: shipped folders leave the Keras file out)."""
    import keras

    model_dir = Path(model_dir)
    require_trained(model_dir, train_hint)
    if (model_dir / "model.keras").is_file():
        return keras.saving.load_model(model_dir / "model.keras", compile=False)
    return restore_weights(build(), model_dir)


def restore_weights(model, base):
    """Give ``model`` (built from the same config) the weights of ``<base>/saved_model/<latest>``.

    `KerasModule` tracks ``model.variables`` in order, so they map back one to one (count and shapes are
    checked). This lets a shipped folder leave out the Keras file: the SavedModel already holds every weight.
    """
    path = latest(base)
    stored = list(getattr(tf.saved_model.load(str(path)), "model_variables", []))
    if len(stored) != len(model.variables):
        raise ValueError(
            f"{path}: {len(stored)} stored variables, the model from config.yaml has {len(model.variables)}; "
            "the SavedModel was not written by this version of seqapps"
        )
    for var, value in zip(model.variables, stored):
        if tuple(var.shape) != tuple(value.shape):
            raise ValueError(f"{path}: variable {var.path} has shape {tuple(value.shape)}, expected {tuple(var.shape)}")
        var.assign(value.numpy())
    print(f"[seqapps] Keras model rebuilt from the weights in {path}")
    return model


def version_dirs(base) -> list[int]:
    root = Path(base) / "saved_model"
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def latest(base) -> Path:
    """Path of the newest ``<base>/saved_model/<version>``."""
    versions = version_dirs(base)
    if not versions:
        raise FileNotFoundError(f"no SavedModel under {Path(base) / 'saved_model'}; export the model first")
    return Path(base) / "saved_model" / str(versions[-1])


def write(module: tf.Module, base, signatures: dict, version: int | None = None) -> Path:
    """Save ``module`` with ``signatures`` to ``<base>/saved_model/<version>`` atomically.

    ``version`` defaults to one more than the newest version present (1 for a new folder). The
    recurrent layers are traced with the whole-sequence projection (`seqapps.layers.sequence_projection`):
    fewer, larger ops, what GPU servers run best, whichever machine writes the model.
    """
    if "serving_default" not in signatures:
        raise ValueError("signatures must include 'serving_default'")
    if version is None:
        version = (version_dirs(base) or [0])[-1] + 1
    final = Path(base) / "saved_model" / str(version)
    with atomic_dir(final, overwrite=True) as tmp, sequence_projection():
        tf.saved_model.save(module, str(tmp), signatures=signatures)
    return final


_ISOLATED = r"""
import json, sys
sys.modules["seqapps"] = None  # prove the SavedModel needs nothing from the project
import numpy as np, tensorflow as tf
req = json.load(open(sys.argv[1]))
model = tf.saved_model.load(req["path"])
fn = model.signatures[req["signature"]]
args = {}
for k, v in req["inputs"].items():
    dtype = fn.structured_input_signature[1][k].dtype
    args[k] = tf.constant(np.array(v, dtype=object) if dtype == tf.string else np.array(v), dtype=dtype)
out = fn(**args)
def enc(t):
    t = t.numpy()
    if t.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(t).tolist() if t.size else t.tolist()
    return t.tolist()
json.dump({k: enc(v) for k, v in out.items()}, open(sys.argv[2], "w"))
"""


def run_isolated(path, inputs: dict, signature: str = "serving_default", timeout: int = 300) -> dict:
    """Run a signature of the SavedModel at ``path`` in a fresh Python process that cannot import
    ``seqapps``; returns the outputs as numpy arrays (strings decoded)."""
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        req, out = os.path.join(tmp, "req.json"), os.path.join(tmp, "out.json")

        def plain(v):
            v = np.asarray(v)
            return v.tolist() if v.dtype != object else [str(x) for x in v.ravel()]

        with open(req, "w") as f:
            json.dump(
                {"path": str(path), "signature": signature, "inputs": {k: plain(v) for k, v in inputs.items()}}, f
            )
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        proc = subprocess.run(
            [sys.executable, "-c", _ISOLATED, req, out],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"SavedModel {path} failed in a plain TensorFlow process:\n{proc.stderr[-3000:]}")
        with open(out) as f:
            return {k: np.array(v) for k, v in json.load(f).items()}

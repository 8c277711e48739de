"""SavedModel export in the TF Serving layout: ``<base>/saved_model/<version>/``.

The serving module is a `tf.Module` holding the Keras model (and whatever pre/post-processing the
app needs) with `tf.function`s that have full input signatures. The SavedModel loads and runs with
``tensorflow`` alone (`run_isolated` proves it in another process, where ``seqapps`` cannot be imported).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
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
import json, os, sys, traceback
sys.modules["seqapps"] = None  # prove the SavedModel needs nothing from the project
replies = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the replies' own channel; what TensorFlow prints: stderr
os.dup2(2, 1)
import numpy as np, tensorflow as tf

def enc(t):
    t = t.numpy()
    if t.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(t).tolist() if t.size else t.tolist()
    return t.tolist()

def run(req_path, out_path):
    req = json.load(open(req_path))
    model = tf.saved_model.load(req["path"])
    fn = model.signatures[req["signature"]]
    args = {}
    for k, v in req["inputs"].items():
        dtype = fn.structured_input_signature[1][k].dtype
        args[k] = tf.constant(np.array(v, dtype=object) if dtype == tf.string else np.array(v), dtype=dtype)
    out = fn(**args)
    json.dump({k: enc(v) for k, v in out.items()}, open(out_path, "w"))

replies.write(json.dumps({"id": "ready"}) + "\n")
replies.flush()
for line in sys.stdin:
    req_path, out_path = json.loads(line)
    try:
        run(req_path, out_path)
        reply = {"id": out_path, "ok": True}
    except Exception:
        reply = {"id": out_path, "ok": False, "error": traceback.format_exc()}
    replies.write(json.dumps(reply) + "\n")
    replies.flush()
"""


class _PlainTensorFlow:
    """A Python process that imports TensorFlow and cannot import ``seqapps`` (`_ISOLATED`): started on the first
    check and kept for the next ones of this process, so that each check does not pay TensorFlow's import again
    (about 10 s on 2 cores; a test run exports dozens of models). Each check loads its SavedModel anew, on the
    CPU (the process stays alive, so it must not hold a GPU, and a served model has to run on CPUs too). It runs
    in a private empty folder with ``-P``: nothing beside it can stand in for a module it imports. Every reply
    names its request; one left over from an interrupted check is skipped."""

    _lock = threading.Lock()
    _current = None

    def __init__(self, timeout: float):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env["CUDA_VISIBLE_DEVICES"] = ""
        self.folder = tempfile.mkdtemp(prefix="seqapps-plain-tf-")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-u", "-c", _ISOLATED],
            cwd=self.folder,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
        )
        self.log = collections.deque(maxlen=300)  # the last lines of its stderr, for an error message
        self.replies = queue.Queue()
        self.readers = [
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.log.append), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.replies.put, True), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self._reply("ready", timeout, "start")

    @staticmethod
    def _drain(stream, put, mark_end: bool = False):
        for line in stream:
            put(line)
        if mark_end:
            put(None)  # the process has gone

    def _reply(self, request: str, timeout: float, what: str) -> dict:
        """The reply to ``request``; lines that are not one (a reply to an interrupted check) are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close(kill=True)
                raise TimeoutError(f"the plain TensorFlow process took more than {timeout:g} s to {what}") from None
            if line is None:
                self.readers[0].join(timeout=5)  # its last words on stderr (the reason it ended)
                self.close()
                raise RuntimeError(
                    f"the plain TensorFlow process ended (exit status {self.proc.returncode}) before it could {what}:"
                    f"\n{self.stderr()}"
                )
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("id") == request:
                return reply

    def stderr(self) -> str:
        return "".join(self.log)[-3000:]

    def call(self, req: str, out: str, timeout: float) -> dict:
        self.log.clear()  # an error message shows what this check printed
        self.proc.stdin.write(json.dumps([req, out]) + "\n")
        self.proc.stdin.flush()
        return self._reply(out, timeout, "run the SavedModel")

    def close(self, kill: bool = False) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # its loop ends
        try:
            self.proc.wait(timeout=0 if kill else 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @classmethod
    def get(cls, timeout: float) -> _PlainTensorFlow:
        current = cls._current
        if current is None or current.proc.poll() is not None:
            if current is not None:
                current.close()
            cls._current = current = cls(timeout)
        return current

    @classmethod
    def close_current(cls) -> None:
        if cls._current is not None:
            cls._current.close()

    @classmethod
    def _after_fork(cls) -> None:
        # a forked child starts its own process: the pipes are its parent's, whose lock may have been held
        cls._lock, cls._current = threading.Lock(), None


atexit.register(_PlainTensorFlow.close_current)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PlainTensorFlow._after_fork)


def run_isolated(path, inputs: dict, signature: str = "serving_default", timeout: int = 300) -> dict:
    """Run a signature of the SavedModel at ``path`` in a Python process of its own that has imported TensorFlow
    and cannot import ``seqapps`` (one kept for the checks of this process, `_PlainTensorFlow`); returns the
    outputs as numpy arrays (strings decoded). ``timeout`` (seconds) bounds the check, and the start of that
    process when the check has to start it."""
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
        with _PlainTensorFlow._lock:
            try:
                worker = _PlainTensorFlow.get(timeout)
                reply = worker.call(req, out, timeout)
            except (OSError, RuntimeError, TimeoutError) as exc:  # OSError: a broken pipe to a process that died
                raise RuntimeError(f"SavedModel {path} failed in a plain TensorFlow process: {exc}") from exc
            except BaseException:  # interrupted (Ctrl-C): this check's reply will come to no one
                _PlainTensorFlow.close_current()
                raise
        if not reply["ok"]:
            raise RuntimeError(f"SavedModel {path} failed in a plain TensorFlow process:\n{reply['error'][-3000:]}")
        with open(out) as f:
            return {k: np.array(v) for k, v in json.load(f).items()}

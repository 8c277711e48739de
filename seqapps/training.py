"""The training loop shared by every app: one `fit()` with the callbacks people expect.

* Keras progress bars (``cfg.verbose``), TensorBoard logs (``<run>/logs``) and a CSV history.
* Early stopping on the validation loss (``cfg.patience``) with the best weights restored.
* Gradient clipping by norm (``cfg.clipnorm``, set on the optimizer by `make_optimizer`).
* ``TerminateOnNaN``.
* A checkpoint every epoch (``<run>/backup``, Keras ``BackupAndRestore``): ``resume=True`` continues
  a run that was killed (even with SIGKILL) from its last finished epoch. Without ``resume`` an
  old checkpoint is moved aside, never silently reused.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np

PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("none", "mirrored")


def strategy(cfg):
    """The `tf.distribute` strategy for ``cfg.distribute``; build and compile models inside its scope.

    ``batch_size`` is the global batch: each of the N replicas gets ``batch_size / N``.
    (MultiWorkerMirroredStrategy is not offered: with Keras 3.15 / TF 2.21 the non-chief worker of a
    two-process run fails in ``fit`` converting a PerReplica batch, even for a plain Keras model.)
    """
    import tensorflow as tf

    if cfg.distribute not in STRATEGIES:
        raise ValueError(f"distribute must be one of {STRATEGIES}, got {cfg.distribute!r}")
    if cfg.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(cfg) -> None:
    """Set the global Keras dtype policy (``cfg.mixed_precision``). Loss scaling for float16 is
    applied by Keras's optimizer wrapper automatically when the model is compiled."""
    if cfg.mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {cfg.mixed_precision!r}")
    keras.mixed_precision.set_global_policy("float32" if cfg.mixed_precision == "none" else cfg.mixed_precision)


def make_optimizer(cfg, learning_rate=None):
    return keras.optimizers.Adam(
        learning_rate=cfg.learning_rate if learning_rate is None else learning_rate,
        clipnorm=cfg.clipnorm or None,
    )


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


class _EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["elapsed_s"] = time.time() - self.start


def fit(model, train_ds, val_ds, cfg, run_dir, resume=False, monitor="val_loss", callbacks=()):
    """Train ``model`` (compiled) on ``train_ds``; returns the Keras ``History`` with ``train_seconds``.

    ``run_dir`` receives ``backup/`` (per-epoch checkpoint), ``logs/`` (TensorBoard) and
    ``history.csv``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    backup = run_dir / "backup"
    if backup.exists() and not resume:
        stale = run_dir / f"backup.old-{int(time.time())}"
        backup.rename(stale)
        print(f"[seqapps] an earlier run's checkpoint was moved to {stale}; pass --resume to continue a run.")
    elif resume and not backup.exists():
        print(f"[seqapps] --resume: no checkpoint in {backup}; starting from epoch 1.")
    elif resume:
        meta = backup / "training_metadata.json"
        if meta.exists():
            print(f"[seqapps] resuming from {backup} after epoch {json.loads(meta.read_text())['epoch']}.")

    cbs = [
        keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        _EpochTimer(),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume),
    ]
    if cfg.patience and val_ds is not None:
        cbs.append(
            keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best_weights=True, verbose=1)
        )
    cbs.extend(callbacks)
    model.jit_compile = bool(cfg.jit_compile)
    start = time.time()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        steps_per_epoch=cfg.steps_per_epoch or None,
        callbacks=cbs,
        verbose=cfg.verbose,
    )
    history.train_seconds = time.time() - start
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise FloatingPointError(f"training diverged (loss {losses[-1]}); lower learning_rate or clipnorm and retry")
    return history


def clear_backup(run_dir) -> None:
    shutil.rmtree(Path(run_dir) / "backup", ignore_errors=True)

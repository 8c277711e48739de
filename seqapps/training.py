"""The training loop shared by every app: one `fit()` with the callbacks people expect.

* Keras progress bars (``cfg.verbose``), TensorBoard logs (``<run>/logs``) and a CSV history.
* Early stopping on the validation loss (``cfg.patience``) with the best weights restored.
* Optionally, the learning rate cut by ``cfg.lr_factor`` after ``cfg.lr_plateau`` epochs without a better
  validation loss (Keras ``ReduceLROnPlateau``; logged as ``learning_rate`` in history.csv).
* Gradient clipping by norm (``cfg.clipnorm``, set on the optimizer by `make_optimizer`).
* Optionally, an exponential moving average of the weights (``cfg.ema``, its momentum; Polyak averaging
  by the optimizer, ``use_ema``): the validation loss, early stopping and the trained model use the
  averaged weights, while the gradient steps go on from the raw ones.
* ``TerminateOnNaN``.
* A checkpoint every epoch (``<run>/backup``, Keras ``BackupAndRestore``): ``resume=True`` continues
  a run that was killed (even with SIGKILL) from its last finished epoch. Without ``resume`` an
  old checkpoint is moved aside, never silently reused.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import keras
import numpy as np

from seqapps.config import PRECISIONS, STRATEGIES  # the values `config.check_ranges` allows
from seqapps.layers import own_loops_for_xla

_MULTI_WORKER = []  # the one MultiWorkerMirroredStrategy of this process (it must exist before other TF ops)


def strategy(cfg):
    """The `tf.distribute` strategy for ``cfg.distribute``; build and compile models inside its scope.

    ``batch_size`` is the global batch: each of the N replicas gets ``batch_size / N``.
    ``multiworker`` is MultiWorkerMirroredStrategy over the machines of ``TF_CONFIG``; create it
    first thing in the process (the CLI does). Keras 3's ``fit`` cannot run it (a PerReplica batch
    reaches a tensor conversion; keras-team/keras#20585), so `fit` trains it with its own loop.
    """
    import tensorflow as tf

    if cfg.distribute not in STRATEGIES:
        raise ValueError(f"distribute must be one of {STRATEGIES}, got {cfg.distribute!r}")
    if cfg.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if cfg.distribute == "multiworker":
        if not _MULTI_WORKER:
            if "TF_CONFIG" not in os.environ:
                raise ValueError(
                    "distribute=multiworker needs TF_CONFIG (the cluster's workers and this worker's index), "
                    'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                    '"task": {"type": "worker", "index": 0}}\'; see the README'
                )
            _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
        return _MULTI_WORKER[0]
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """False only on the non-chief workers of a multi-worker run (they must not write the model)."""
    if not _MULTI_WORKER:
        return True
    resolver = _MULTI_WORKER[0].cluster_resolver
    if resolver.task_type in (None, "chief"):
        return True
    # worker 0 leads only a cluster that names no chief of its own
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def set_precision(cfg) -> None:
    """Set the global Keras dtype policy (``cfg.mixed_precision``). Loss scaling for float16 is
    applied by Keras's optimizer wrapper automatically when the model is compiled."""
    if cfg.mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {cfg.mixed_precision!r}")
    keras.mixed_precision.set_global_policy("float32" if cfg.mixed_precision == "none" else cfg.mixed_precision)


def in_float32(model, build):
    """The trained ``model`` for evaluation, saving and export: itself when it computes in float32; after
    mixed-precision training, the float32 model that ``build()`` makes, holding the same weights (they were
    float32 variables all along). Servers and devices get float32 SavedModels and TFLite files, and a
    `model.keras` that re-exports as such. Leaves the global dtype policy at float32."""
    keras.mixed_precision.set_global_policy("float32")
    if model.dtype_policy.compute_dtype == "float32":
        return model
    twin = build()
    twin.set_weights(model.get_weights())
    return twin


def make_optimizer(cfg, learning_rate=None):
    ema = cfg.ema
    if not 0 <= ema < 1:
        raise ValueError(
            f"ema={ema}: the moving average's momentum must be in [0, 1), e.g. --set ema=0.99 (0 disables)"
        )
    return keras.optimizers.Adam(
        learning_rate=cfg.learning_rate if learning_rate is None else learning_rate,
        clipnorm=cfg.clipnorm or None,
        use_ema=ema > 0,
        ema_momentum=ema or 0.99,
    )


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


class _ResumeState(keras.callbacks.Callback):
    """Keeps what `EarlyStopping` and `ReduceLROnPlateau` hold in memory (the best value and epoch, the epochs
    waited, the best weights) in the checkpoint folder after every epoch, and puts it back when a run resumes.
    `BackupAndRestore` saves only the model and the optimizer: without this, a resumed run took its first
    epoch for the best, restored the wrong weights at the end and waited its patience anew. Listed after
    those callbacks, so that it saves their state of the epoch and restores it after they reset it.

    Each callback's state is kept under its class name, so a resumed run that adds or drops one (``--set
    lr_plateau=...``) gives each only its own. The state and the best weights carry the epoch they were saved
    after, and are put back only with the checkpoint of that epoch: the checkpoint is written first, so a run
    stopped in between, or a damaged checkpoint replaced by the one before, would otherwise pair them wrongly."""

    KEYS = ("wait", "best", "best_epoch", "cooldown_counter")

    def __init__(self, folder, watched):
        super().__init__()
        self.folder, self.watched, self.saved_best = Path(folder), list(watched), None

    def on_train_begin(self, logs=None):
        path, meta = self.folder / "callback_state.json", self.folder / "training_metadata.json"
        if not (path.is_file() and meta.is_file()):
            return
        state, epoch = json.loads(path.read_text()), json.loads(meta.read_text())["epoch"]
        names = ", ".join(type(cb).__name__ for cb in self.watched)
        if not isinstance(state.get("callbacks"), dict) or state.get("epoch") != epoch:
            print(
                f"[seqapps] --resume: the state of {names} saved beside the checkpoint is not that of its epoch "
                f"{epoch} (the run stopped while saving, the checkpoint before a damaged one was restored, or an older "
                "seqapps saved it): they start afresh"
            )
            return
        restored = []
        for cb in self.watched:
            values = state["callbacks"].get(type(cb).__name__)
            if values is None:
                print(
                    f"[seqapps] --resume: {type(cb).__name__} was not in the run that saved the checkpoint: it starts afresh"
                )
                continue
            for key, value in values.items():
                setattr(cb, key, value)
            restored.append(cb)
        weights = self.folder / "best_weights.npz"
        for cb in restored:
            if not getattr(cb, "restore_best_weights", False):
                continue
            try:
                with np.load(weights) as saved:
                    if int(saved["best_epoch"]) != cb.best_epoch:
                        raise ValueError(f"they are those of epoch {int(saved['best_epoch']) + 1}")
                    cb.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files) - 1)]
                self.saved_best = cb.best_epoch
            except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                # its best value without the best weights would make the first resumed epoch the "best" one
                cb.on_train_begin()
                print(
                    f"[seqapps] --resume: the best weights of {type(cb).__name__} cannot be restored from {weights} "
                    f"({exc}): it starts afresh"
                )

    def on_epoch_end(self, epoch, logs=None):
        from seqapps.export.atomic import atomic_write_bytes, atomic_write_text

        state = {
            "epoch": epoch + 1,  # counted as BackupAndRestore counts it in its training_metadata.json
            "callbacks": {
                type(cb).__name__: {k: getattr(cb, k) for k in self.KEYS if hasattr(cb, k)} for cb in self.watched
            },
        }
        for cb in self.watched:
            best = getattr(cb, "best_weights", None)
            if best is not None and cb.best_epoch != self.saved_best:  # new best weights: save them once
                buffer = io.BytesIO()
                np.savez(buffer, *best, best_epoch=cb.best_epoch)
                atomic_write_bytes(self.folder / "best_weights.npz", buffer.getvalue())
                self.saved_best = cb.best_epoch
        atomic_write_text(self.folder / "callback_state.json", json.dumps(state, default=float))


class _RandomState(keras.callbacks.Callback):
    """Keeps the model's random state (the dropout layers' seed generators) beside the checkpoint after every
    epoch, and puts it back when a run resumes, after `BackupAndRestore` has restored the weights (which hold no
    seed state): a resumed run then draws the dropout masks that the uninterrupted run would have drawn."""

    def __init__(self, folder, resumed_data=None, cfg=None):
        super().__init__()
        self.folder, self.resumed_data, self.cfg = Path(folder), resumed_data, cfg

    def _variables(self):
        # in the model's order: their names take a number per process (seed_generator_1, ...), their order not
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def on_train_begin(self, logs=None):
        path, meta = self.folder / "random_state.npz", self.folder / "training_metadata.json"
        if self.resumed_data is not None:  # read after BackupAndRestore chose its checkpoint (or the one before)
            _skip_epochs(self.resumed_data, self.folder, self.cfg)
        if not (path.is_file() and meta.is_file()):
            return
        with np.load(path) as saved:
            # the checkpoint BackupAndRestore loaded may be the one before (a damaged latest one): only the
            # state saved with the same epoch belongs to it
            if int(saved["epoch"]) != json.loads(meta.read_text())["epoch"]:
                return
            variables = self._variables()
            states = [saved[f"state_{i}"] for i in range(len(saved.files) - 1)]
            if [tuple(v.shape) for v in variables] == [s.shape for s in states]:
                for variable, state in zip(variables, states):
                    variable.assign(state)

    def on_epoch_end(self, epoch, logs=None):
        from seqapps.export.atomic import atomic_write_bytes

        buffer = io.BytesIO()
        # `epoch` counted as BackupAndRestore counts it in its training_metadata.json: epochs finished
        np.savez(buffer, epoch=epoch + 1, **{f"state_{i}": v.numpy() for i, v in enumerate(self._variables())})
        atomic_write_bytes(self.folder / "random_state.npz", buffer.getvalue())


def _skip_epochs(dataset, backup, cfg) -> None:
    """Before a resumed run: draw the shuffle orders of the epochs already trained, so that the next epoch sees
    the order it would have seen in the uninterrupted run. Each new iterator of a seeded ``shuffle`` takes the
    next order, and creating one reads nothing. Keras's epoch iterator (``keras.src.trainers.epoch_iterator``)
    makes one per epoch, and one more at the end of an epoch of known length, ready for the next; with
    ``steps_per_epoch`` it keeps one iterator across epochs, and under a distribution strategy the iterators
    are the strategy's: there the order is not restored, and a note says so. A dataset with a ``set_epoch(n)``
    method is told the number of epochs finished instead."""
    import tensorflow as tf

    meta = backup / "training_metadata.json"
    if not meta.is_file():
        return
    done = int(json.loads(meta.read_text())["epoch"])  # epochs finished
    own = hasattr(dataset, "set_epoch")  # a dataset that draws each epoch's order from its number (speech, sentiment)
    if not (own or isinstance(dataset, tf.data.Dataset)):
        return
    if cfg.steps_per_epoch or cfg.distribute != "none":
        print("[seqapps] --resume: with steps_per_epoch or distribute, the data order starts again as in epoch 1")
        return
    if own:
        # Keras's fit has called a PyDataset's on_epoch_end once already, before on_train_begin (its epoch
        # iterator's reset), in the uninterrupted run too: the dataset is one epoch on from the finished ones
        dataset.set_epoch(done + 1 if isinstance(dataset, keras.utils.PyDataset) else done)
        return
    per_epoch = 2 if int(dataset.cardinality()) > 0 else 1
    for _ in range(done * per_epoch):
        iter(dataset)


class _HistoryCSV(keras.callbacks.Callback):
    """``history.csv``: one row per epoch, ``epoch`` then the logged values by name, as
    `keras.callbacks.CSVLogger` writes it. A resumed run appends its rows; where it logs other columns than the
    file has (``--set lr_plateau=1`` adds ``learning_rate``), the file is rewritten with the columns of both,
    empty where an epoch has no value. CSVLogger writes such rows under the old header, which shifts every
    value after the new column into the wrong one."""

    def __init__(self, path, append: bool):
        super().__init__()
        self.path, self.append = Path(path), append

    def on_train_begin(self, logs=None):
        if not self.append:
            self.path.unlink(missing_ok=True)  # a fresh run's history starts empty, as CSVLogger's does

    def on_epoch_end(self, epoch, logs=None):
        import csv

        from seqapps.export.atomic import atomic_write_text

        row = {"epoch": epoch, **{k: v if isinstance(v, str) else float(v) for k, v in sorted((logs or {}).items())}}
        header, rows = [], []
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                header, rows = list(reader.fieldnames or []), list(reader)
        columns = header + [k for k in row if k not in header]
        if columns != header:  # a new file, or new columns: (re)write it whole
            text = io.StringIO()
            writer = csv.DictWriter(text, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            writer.writerow(row)
            atomic_write_text(self.path, text.getvalue())
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, columns, lineterminator="\n").writerow(row)


class _EpochTimer(keras.callbacks.Callback):
    """Logs ``elapsed_s``, the training time up to the end of each epoch. A resumed run goes on from the time the
    finished epochs took (read from ``history.csv``), so that the column counts the whole training."""

    def __init__(self, resumed_csv=None, backup=None):
        super().__init__()
        self.resumed_csv, self.backup = resumed_csv, backup

    def on_train_begin(self, logs=None):
        self.start = time.time()
        meta = self.backup / "training_metadata.json" if self.backup else None
        if self.resumed_csv is not None and meta.is_file():  # read after BackupAndRestore chose its checkpoint
            try:
                rows = _earlier_rows(self.resumed_csv, int(json.loads(meta.read_text())["epoch"]))
                self.start -= _seconds(rows)
            except (OSError, ValueError, KeyError):
                pass  # _whole_history says the file does not match

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["elapsed_s"] = time.time() - self.start


def fit(model, train_ds, val_ds, cfg, run_dir, resume=False, monitor="val_loss", callbacks=()):
    """Train ``model`` (compiled) on ``train_ds``; returns the Keras ``History`` with ``train_seconds``.

    ``run_dir`` receives ``backup/`` (per-epoch checkpoint), ``logs/`` (TensorBoard) and
    ``history.csv``.
    """
    plateau = _lr_plateau(model, val_ds, cfg, monitor)  # its errors come before anything is written
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # inside a LossScaleOptimizer
    ema = bool(getattr(optimizer, "use_ema", False))
    if ema and cfg.distribute == "multiworker":
        raise ValueError(
            "ema is not supported with distribute=multiworker (its loop validates the raw weights): set ema=0"
        )
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

    if cfg.distribute == "multiworker":
        skipped = [type(c).__name__ for c in callbacks] + (["lr_plateau"] if plateau else [])
        if skipped:
            print(f"[seqapps] distribute=multiworker: {skipped} are not run by its loop")
        return _fit_multi_worker(model, train_ds, val_ds, cfg, run_dir, resume, monitor)
    cbs = [
        keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        _EpochTimer(run_dir / "history.csv" if resume and backup.exists() else None, backup),
        *([plateau] if plateau else []),  # before the CSV logger, which then records the learning rate
        # a --resume that found no checkpoint starts over, and so does its history
        _HistoryCSV(run_dir / "history.csv", append=resume and backup.exists()),
        # after the checkpoint (which keeps the raw weights and, in the optimizer, their average) and before
        # early stopping (which then keeps and restores the averaged weights of the best epoch)
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []),
    ]
    if cfg.patience and val_ds is not None:
        cbs.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=_mode(monitor),
                patience=cfg.patience,
                restore_best_weights=True,
                verbose=1,
            )
        )
    watched = [cb for cb in cbs if isinstance(cb, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau))]
    if watched:
        cbs.append(_ResumeState(backup, watched))
    # right after BackupAndRestore: it restores once the weights (and the epoch they belong to) are back
    cbs.insert(1, _RandomState(backup, train_ds if resume and backup.exists() else None, cfg))
    cbs.extend(callbacks)
    if cfg.jit_compile:
        own_loops_for_xla(model)  # cuDNN ops do not compile with XLA; the layers' own loops do
    model.jit_compile = bool(cfg.jit_compile)
    resumed = resume and backup.exists()
    start = time.time()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        steps_per_epoch=cfg.steps_per_epoch or None,
        callbacks=cbs,
        verbose=cfg.verbose,
        shuffle=False,  # the datasets shuffle themselves; Keras warns that fit's own shuffle would be ignored
    )
    history.train_seconds = time.time() - start
    if resumed:
        _whole_history(history, run_dir / "history.csv")
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise FloatingPointError(f"training diverged (loss {losses[-1]}); lower learning_rate or clipnorm and retry")
    return history


def _earlier_rows(csv_path, before: int) -> list[dict]:
    """The rows of ``history.csv`` for the epochs before epoch ``before`` (0-based), one per epoch: the last
    written, where a run that stopped between its checkpoint and the one before wrote an epoch twice."""
    import csv

    with open(csv_path, newline="") as f:
        rows = {int(r["epoch"]): r for r in csv.DictReader(f) if int(r["epoch"]) < before}
    return [rows[e] for e in sorted(rows)]


def _seconds(rows) -> float:
    """The training time of these ``history.csv`` rows: the sum of each run's last ``elapsed_s``. It is the last
    value where every resumed run went on from the time before it (`_EpochTimer`); files from runs that started
    their clock again at each resume add up the values before each drop."""
    elapsed = [float(r.get("elapsed_s") or "nan") for r in rows]
    return float(np.nansum([e for e, nxt in zip(elapsed, [*elapsed[1:], -np.inf]) if not nxt > e]))


def _whole_history(history, csv_path) -> None:
    """After a resumed run, ``history`` holds the epochs of this run only: put the earlier runs' epochs back from
    ``history.csv`` (which the CSV logger appends to), so that the epochs counted and the training time recorded
    with the model are those of the whole training."""
    try:
        earlier = _earlier_rows(csv_path, history.epoch[0] if history.epoch else 2**31)
        if not earlier:
            return
        # a resumed run that had no epoch left to run has an empty history: the file's columns then
        keys = list(history.history) or [
            k for k in earlier[0] if k != "epoch" and all(r[k] not in ("", "NA") for r in earlier)
        ]
        if not all(k in earlier[0] for k in ("epoch", "loss")):
            raise KeyError("loss")
        # a column the earlier epochs lack (this run added lr_plateau) is NaN for them
        merged = {k: [float(r.get(k) or "nan") for r in earlier] + list(history.history.get(k, [])) for k in keys}
        seconds = _seconds(earlier)
    except (OSError, ValueError, KeyError, TypeError):  # no epoch or loss column, or a value that is not a number
        print(f"[seqapps] {csv_path} does not match this run: the epochs before --resume are not counted")
        return
    history.history = merged
    history.epoch = list(range(len(merged.get("loss", []))))
    history.train_seconds += seconds
    history.resumed_after = len(earlier)


def _mode(monitor: str) -> str:
    """Which way ``monitor`` improves, for the callbacks that watch it: down for a loss."""
    return "min" if monitor.endswith("loss") else "auto"


def _lr_plateau(model, val_ds, cfg, monitor):
    """The ``ReduceLROnPlateau`` callback for ``cfg.lr_plateau`` (None when it is 0 or there is no validation
    data); a clear error for settings it cannot apply."""
    if not cfg.lr_plateau:
        return None
    if cfg.lr_plateau < 0 or not 0 < cfg.lr_factor < 1:
        raise ValueError(
            f"lr_plateau={cfg.lr_plateau}, lr_factor={cfg.lr_factor}: lr_plateau must be a number of epochs (>= 0) "
            "and lr_factor in (0, 1), e.g. --set lr_plateau=1 --set lr_factor=0.3"
        )
    if val_ds is None:
        print("[seqapps] lr_plateau: no validation data to watch, so the learning rate stays fixed")
        return None
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # mixed_float16 wraps it
    if isinstance(getattr(optimizer, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule):
        raise ValueError(
            "lr_plateau cannot change a learning rate that already follows a schedule (this app decays it "
            "itself): set lr_plateau=0"
        )
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor,
        mode=_mode(monitor),
        factor=cfg.lr_factor,
        patience=cfg.lr_plateau,
        min_lr=cfg.learning_rate * 1e-3,
        verbose=1 if cfg.verbose else 0,
    )


def clear_backup(run_dir) -> None:
    shutil.rmtree(Path(run_dir) / "backup", ignore_errors=True)


class _History:
    def __init__(self):
        self.history = {}
        self.train_seconds = 0.0


def _fit_multi_worker(model, train_ds, val_ds, cfg, run_dir, resume, monitor):
    """`fit` for MultiWorkerMirroredStrategy: every worker runs the same synchronous steps on its
    shard of each global batch (gradients all-reduced by the optimizer). Kept from `fit`: a
    checkpoint every epoch (the chief's, in ``<run>/backup``), early stopping on ``monitor`` (or
    ``val_loss``) with the best weights, TerminateOnNaN (a non-finite loss stops every worker) and
    history.csv; progress is one line per epoch. Not kept: ``resume`` (every worker would have to
    restore the chief's checkpoint; it is refused) and app callbacks (said when given)."""
    import tensorflow as tf

    if not isinstance(train_ds, tf.data.Dataset):
        raise ValueError("distribute=multiworker needs a tf.data.Dataset to shard across the workers")
    if resume:
        raise ValueError(
            "--resume is not supported with distribute=multiworker: restart the run (the chief's per-epoch "
            "checkpoint is in <run>/backup for a manual tf.train.Checkpoint restore)"
        )
    strat = strategy(cfg)
    replicas = strat.num_replicas_in_sync
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist_train = strat.experimental_distribute_dataset(train_ds.with_options(options))
    dist_val = strat.experimental_distribute_dataset(val_ds.with_options(options)) if val_ds is not None else None

    def replica_loss(x, y, training):
        # Keras losses already divide by the number of replicas inside a tf.distribute replica, so the
        # all-reduced SUM over replicas is the mean over the global batch; regularisation is added once.
        y_pred = model(x, training=training)
        loss = model._compile_loss(y, y_pred) if model._compile_loss is not None else 0.0
        if training and model.losses:
            loss = loss + tf.add_n(model.losses) / replicas
        return loss

    @tf.function
    def train_step(x, y):
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = replica_loss(x, y, True)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return strat.reduce(tf.distribute.ReduceOp.SUM, strat.run(step, args=(x, y)), axis=None)

    @tf.function
    def val_step(x, y):
        return strat.reduce(
            tf.distribute.ReduceOp.SUM, strat.run(lambda x, y: replica_loss(x, y, False), args=(x, y)), axis=None
        )

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch)
    chief = is_chief()
    # every worker saves (saving runs collectives); only the chief's copy is kept
    ckpt_dir = run_dir / "backup" if chief else run_dir / f"backup-worker-{strat.cluster_resolver.task_id}"
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=1)
    history, best, best_weights, wait = _History(), float("inf"), None, 0
    start = time.time()
    while int(epoch.numpy()) < cfg.epochs:
        losses = [float(train_step(x, y)) for x, y in itertools.islice(dist_train, cfg.steps_per_epoch or None)]
        logs = {"loss": float(np.mean(losses)) if losses else float("nan")}
        if dist_val is not None:
            logs["val_loss"] = float(np.mean([float(val_step(x, y)) for x, y in dist_val]))
        logs["elapsed_s"] = time.time() - start
        epoch.assign_add(1)
        for k, v in logs.items():
            history.history.setdefault(k, []).append(v)
        if cfg.verbose:
            print(
                f"Epoch {int(epoch.numpy())}/{cfg.epochs} ({replicas} replicas): "
                + " - ".join(f"{k}: {v:.4g}" for k, v in logs.items())
            )
        manager.save()
        if not np.isfinite(logs["loss"]):
            break
        value = logs.get(monitor, logs.get("val_loss", logs["loss"]))
        if value < best:
            best, best_weights, wait = value, model.get_weights(), 0
        elif cfg.patience and dist_val is not None:
            wait += 1
            if wait >= cfg.patience:
                print(f"[seqapps] early stopping after epoch {int(epoch.numpy())}")
                break
    if best_weights is not None and cfg.patience and dist_val is not None:
        model.set_weights(best_weights)
    history.train_seconds = time.time() - start
    if chief:
        keys = list(history.history)
        rows = zip(*(history.history[k] for k in keys))
        lines = ["epoch," + ",".join(keys)] + [f"{i}," + ",".join(f"{v:.6g}" for v in r) for i, r in enumerate(rows)]
        (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
    else:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise FloatingPointError(f"training diverged (loss {losses[-1]}); lower learning_rate or clipnorm and retry")
    return history

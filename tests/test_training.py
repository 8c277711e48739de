import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("resume_script.py")


def _start(run_dir, log, resume, sleep):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(run_dir), str(log), "1" if resume else "0", str(sleep)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_then_resume_continues_from_last_epoch(tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "epochs.log"
    proc = _start(run_dir, log, resume=False, sleep=1.5)
    deadline = time.time() + 240
    while time.time() < deadline:
        if log.exists() and len(log.read_text().split()) >= 3:
            break
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.1)
    time.sleep(0.5)  # let the checkpoint of the logged epoch be written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = [int(e) for e in log.read_text().split()]
    assert "done" not in log.read_text()
    assert (run_dir / "backup").is_dir()

    proc = _start(run_dir, log, resume=True, sleep=0)
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    entries = log.read_text().split()
    resumed = [int(e) for e in entries[len(done_before) : -1]]
    assert entries[-1] == "done"
    # continues right after the last finished (checkpointed) epoch, up to the configured 6 epochs
    assert resumed[0] in (done_before[-1], done_before[-1] + 1)
    assert resumed[-1] == 5
    assert len(resumed) < 6


def test_fresh_run_moves_old_checkpoint_aside(tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "epochs.log"
    (run_dir / "backup").mkdir(parents=True)
    proc = _start(run_dir, log, resume=False, sleep=0)
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    assert log.read_text().split()[0] == "0"
    assert any(p.name.startswith("backup.old-") for p in run_dir.iterdir())
    assert (run_dir / "history.csv").exists() and (run_dir / "logs").is_dir()


def _tiny(cfg, learning_rate=None):
    import keras

    from seqapps import layers as sl
    from seqapps import training

    training.set_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), sl.GRU(4), keras.layers.Dense(1)])
    model.compile(training.make_optimizer(cfg, learning_rate), "mse")
    return model


def _data(n=32, seed=0):
    import numpy as np
    import tensorflow as tf

    x = np.random.default_rng(seed).normal(size=(n, 5, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x.sum(axis=(1, 2))[:, None])).batch(8)


def test_lr_plateau_cuts_the_learning_rate_when_val_loss_stalls_and_logs_it(tmp_path):
    import csv

    import pytest

    from seqapps import training
    from seqapps.config import TrainConfig

    # a learning rate so small that the val loss moves less than ReduceLROnPlateau's min_delta: no epoch after the
    # first improves, so the rate is halved after each; each epoch logs the rate it trained with
    cfg = TrainConfig(epochs=4, patience=0, verbose=0, learning_rate=1e-7, lr_plateau=1, lr_factor=0.5)
    history = training.fit(_tiny(cfg), _data(), _data(16, 1), cfg, tmp_path / "run")
    assert history.history["learning_rate"] == pytest.approx([1e-7, 1e-7, 5e-8, 2.5e-8], rel=1e-4)
    with open(tmp_path / "run" / "history.csv") as f:
        logged = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    assert logged == pytest.approx(history.history["learning_rate"], rel=1e-4)

    off = TrainConfig(epochs=2, patience=0, verbose=0, learning_rate=1e-7)
    assert "learning_rate" not in training.fit(_tiny(off), _data(), _data(16, 1), off, tmp_path / "off").history


def test_lr_plateau_errors_name_the_setting_and_write_nothing(tmp_path):
    import keras
    import pytest

    from seqapps import training
    from seqapps.config import TrainConfig

    bad = TrainConfig(epochs=1, verbose=0, lr_plateau=1, lr_factor=1.5)
    with pytest.raises(ValueError, match="lr_factor in \\(0, 1\\)"):
        training.fit(_tiny(bad), _data(), _data(16, 1), bad, tmp_path / "bad")
    cfg = TrainConfig(epochs=1, verbose=0, lr_plateau=1)
    scheduled = _tiny(cfg, keras.optimizers.schedules.CosineDecay(1e-3, 10))
    with pytest.raises(ValueError, match="already follows a schedule.*lr_plateau=0"):
        training.fit(scheduled, _data(), _data(16, 1), cfg, tmp_path / "scheduled")
    keras.mixed_precision.set_dtype_policy("mixed_float16")  # compile wraps the optimizer in a LossScaleOptimizer
    try:
        wrapped = _tiny(cfg, keras.optimizers.schedules.CosineDecay(1e-3, 10))
        assert isinstance(wrapped.optimizer, keras.optimizers.LossScaleOptimizer)
        with pytest.raises(ValueError, match="already follows a schedule.*lr_plateau=0"):
            training.fit(wrapped, _data(), _data(16, 1), cfg, tmp_path / "wrapped")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert not list(tmp_path.iterdir())


def test_ema_validates_restores_and_keeps_the_moving_average_of_the_weights(tmp_path):
    import keras
    import numpy as np
    import pytest

    from seqapps import training
    from seqapps.config import TrainConfig

    class Steps(keras.callbacks.Callback):  # the raw weights after every gradient step
        def on_train_begin(self, logs=None):
            self.raw = []

        def on_train_batch_end(self, batch, logs=None):
            self.raw.append(self.model.get_weights())

    def average(raw, momentum):  # the optimizer's update: the first step's weights, then a moving average
        avg = raw[0]
        for w in raw[1:]:
            avg = [momentum * a + (1 - momentum) * b for a, b in zip(avg, w)]
        return avg

    cfg = TrainConfig(epochs=4, patience=10, verbose=0, learning_rate=0.05, ema=0.8)
    model, steps, val = _tiny(cfg), Steps(), _data(16, 1)
    history = training.fit(model, _data(), val, cfg, tmp_path / "run", callbacks=[steps])
    assert len(steps.raw) == 16  # 4 batches x 4 epochs
    probe = _tiny(cfg)
    for epoch, val_loss in enumerate(history.history["val_loss"]):  # each epoch validated its average
        probe.set_weights(average(steps.raw[: 4 * (epoch + 1)], 0.8))
        assert probe.evaluate(val, verbose=0) == pytest.approx(val_loss, rel=1e-5)
    best = int(np.argmin(history.history["val_loss"]))  # early stopping kept the best epoch's average
    for kept, want in zip(model.get_weights(), average(steps.raw[: 4 * (best + 1)], 0.8)):
        np.testing.assert_allclose(kept, want, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(model.get_weights(), steps.raw[4 * best + 3]))

    plain = TrainConfig(epochs=4, patience=0, verbose=0, learning_rate=0.05)  # without it: the last step's weights
    model, steps = _tiny(plain), Steps()
    training.fit(model, _data(), val, plain, tmp_path / "plain", callbacks=[steps])
    for kept, last in zip(model.get_weights(), steps.raw[-1]):
        np.testing.assert_array_equal(kept, last)


def test_ema_errors_name_the_setting_and_write_nothing(tmp_path):
    import pytest

    from seqapps import training
    from seqapps.config import TrainConfig

    with pytest.raises(ValueError, match=r"ema=1.0: .*\[0, 1\).*--set ema=0.99"):
        _tiny(TrainConfig(ema=1.0))
    cfg = TrainConfig(epochs=1, verbose=0, ema=0.9, distribute="multiworker")
    with pytest.raises(ValueError, match="ema is not supported with distribute=multiworker.*set ema=0"):
        training.fit(_tiny(cfg), _data(), None, cfg, tmp_path / "mw")
    assert not list(tmp_path.iterdir())


def test_ema_run_resumed_after_a_crash_ends_with_the_same_weights(tmp_path):
    import keras
    import numpy as np
    import pytest

    from seqapps import training
    from seqapps.config import TrainConfig

    class Crash(keras.callbacks.Callback):  # after epoch 2's checkpoint: raw weights + their average
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    cfg = TrainConfig(epochs=4, patience=0, verbose=0, learning_rate=0.05, ema=0.8)
    with pytest.raises(KeyboardInterrupt):
        training.fit(_tiny(cfg), _data(), _data(16, 1), cfg, tmp_path / "run", callbacks=[Crash()])
    resumed = _tiny(cfg)
    history = training.fit(resumed, _data(), _data(16, 1), cfg, tmp_path / "run", resume=True)
    assert len(history.history["loss"]) == 4 and history.resumed_after == 2  # the whole training's epochs
    whole = _tiny(cfg)
    training.fit(whole, _data(), _data(16, 1), cfg, tmp_path / "whole")
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # Keras, at the end of each epoch of unknown length
@pytest.mark.parametrize("crash_after", [2, 3])
@pytest.mark.parametrize("length", ["known", "unknown"])
def test_resumed_run_draws_the_same_batches_and_dropout_masks_as_an_uninterrupted_one(tmp_path, crash_after, length):
    """The checkpoint holds no random state: without putting it back, a resumed run shuffled its data as in
    epoch 1 and drew epoch 1's dropout masks again. With the seed generators' state kept beside the checkpoint
    and the finished epochs' shuffle orders drawn first, it ends with the same weights, to the bit."""
    import keras
    import numpy as np
    import tensorflow as tf

    from seqapps import layers as sl
    from seqapps import training
    from tests.helpers import assert_resume_is_uninterrupted

    def model():
        training.set_seed(0)
        m = keras.Sequential(
            [
                keras.Input((5, 3)),
                sl.GRU(4, dropout=0.3, recurrent_dropout=0.2),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(1),
            ]
        )
        m.compile(keras.optimizers.Adam(0.01), "mse")
        return m

    def data():
        x = np.random.default_rng(0).normal(size=(64, 5, 3)).astype("float32")
        ds = tf.data.Dataset.from_tensor_slices((x, x.sum((1, 2))[:, None])).shuffle(64, seed=1)
        return (ds if length == "known" else ds.filter(lambda a, b: True)).batch(16)  # filter: length unknown

    assert_resume_is_uninterrupted(model, data, tmp_path, crash_after)


def test_fit_on_datasets_gives_no_keras_warning(tmp_path):
    """The datasets shuffle themselves: fit must not pass its own shuffle=True, which Keras warns it ignores."""
    import warnings

    from seqapps import training
    from seqapps.config import TrainConfig

    cfg = TrainConfig(epochs=1, patience=0, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        training.fit(_tiny(cfg), _data(), _data(16, 1), cfg, tmp_path / "run")
    assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_in_float32_gives_a_float32_copy_of_a_model_trained_in_mixed_precision():
    import keras
    import numpy as np

    from seqapps import layers as sl
    from seqapps import training
    from seqapps.config import TrainConfig

    def build():
        return keras.Sequential([keras.Input((5, 3)), sl.GRU(4), keras.layers.Dense(1)])

    plain = build()
    assert training.in_float32(plain, build) is plain
    training.set_precision(TrainConfig(mixed_precision="mixed_float16"))
    try:
        mixed = build()
        mixed.compile("adam", "mse")
        x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype("float32")
        mixed.fit(x, x.sum(axis=(1, 2))[:, None], epochs=2, verbose=0)
        assert mixed.dtype_policy.name == "mixed_float16"
        twin = training.in_float32(mixed, build)
        assert keras.mixed_precision.global_policy().name == "float32"  # what the export that follows builds in
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert twin is not mixed and twin.compute_dtype == "float32" and twin(x).dtype == "float32"
    for a, b in zip(twin.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(twin(x), np.float32(mixed(x)), atol=2e-2)


def test_resumed_run_keeps_early_stopping_state_and_best_weights(tmp_path):
    """Killed after an epoch past the best one, a resumed run stops where the whole run stops and restores the
    same best weights: the best value, the epochs waited and the best weights survive the restart."""
    import numpy as np

    from seqapps import training
    from seqapps.config import TrainConfig

    model, train, val = _slope_task()
    cfg = TrainConfig(epochs=10, patience=2, verbose=0)
    whole = model()
    full = training.fit(whole, train, val, cfg, tmp_path / "whole")
    assert int(np.argmin(full.history["val_loss"])) == 1 and len(full.history["loss"]) == 4
    with pytest.raises(KeyboardInterrupt):
        training.fit(model(), train, val, cfg, tmp_path / "run", callbacks=[_CrashAfter(2)])  # epoch 2 was the best
    resumed = model()
    history = training.fit(resumed, train, val, cfg, tmp_path / "run", resume=True)
    # it runs epoch 4 only and stops there, as the whole run did; its history (what the apps record as epochs
    # run and training time) holds the three epochs before the crash too
    assert history.resumed_after == 3 and len(history.history["loss"]) == 4
    np.testing.assert_allclose(history.history["val_loss"], full.history["val_loss"], rtol=1e-5)
    assert history.train_seconds > 0
    np.testing.assert_allclose(resumed.get_weights()[0], whole.get_weights()[0], rtol=1e-6)
    # the resumed run's clock goes on from the time the first three epochs took
    elapsed = [float(r.split(",")[1]) for r in (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]]
    assert elapsed == sorted(elapsed) and history.train_seconds >= elapsed[-1] > elapsed[2]
    assert not (tmp_path / "run" / "backup").exists()  # a finished run leaves no checkpoint (nor this state)


def _slope_task():
    """One weight from 0 towards 2 (the training slope) whose validation wants 0.8: the best epoch is the second."""
    import keras
    import numpy as np
    import tensorflow as tf

    def model():
        m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
        m.compile(keras.optimizers.SGD(0.1), "mse")
        return m

    x = np.linspace(-1, 1, 32, dtype="float32")[:, None]
    train = tf.data.Dataset.from_tensor_slices((x, 2 * x)).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x, 0.8 * x)).batch(8)
    return model, train, val


class _CrashAfter:
    def __new__(cls, last):
        import keras

        class Crash(keras.callbacks.Callback):  # after the checkpoint of epoch `last` (0-based)
            def on_epoch_end(self, epoch, logs=None):
                if epoch == last:
                    raise KeyboardInterrupt

        return Crash()


@pytest.mark.parametrize("plateau_before, plateau_after", [(0, 1), (1, 0)])
def test_resume_with_lr_plateau_switched_gives_early_stopping_its_own_state(tmp_path, plateau_before, plateau_after):
    """Resumed with the learning-rate cut switched on or off, each callback gets the state it saved: early
    stopping still stops where the whole run stops, with the best epoch's weights (the state was a list in
    callback order, and went to the other callback)."""
    import csv
    import dataclasses

    import numpy as np

    from seqapps import training
    from seqapps.config import TrainConfig

    model, train, val = _slope_task()
    cfg = TrainConfig(epochs=10, patience=2, verbose=0)
    whole = model()
    training.fit(whole, train, val, cfg, tmp_path / "whole")
    before, after = (dataclasses.replace(cfg, lr_plateau=p) for p in (plateau_before, plateau_after))
    with pytest.raises(KeyboardInterrupt):
        training.fit(model(), train, val, before, tmp_path / "run", callbacks=[_CrashAfter(2)])
    resumed = model()
    history = training.fit(resumed, train, val, after, tmp_path / "run", resume=True)
    assert history.resumed_after == 3 and len(history.history["loss"]) == 4
    np.testing.assert_allclose(resumed.get_weights()[0], whole.get_weights()[0], rtol=1e-6)
    # history.csv keeps each value in its column (CSVLogger wrote the resumed row under the old header)
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3] and None not in rows[-1]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], history.history["loss"], rtol=1e-6)
    lr = [r.get("learning_rate") or "" for r in rows]
    assert lr == (["", "", "", "0.10000000149011612"] if plateau_after else ["0.10000000149011612"] * 3 + [""])


@pytest.mark.parametrize("damaged", ["state", "weights"])
def test_resume_state_from_another_epoch_than_the_checkpoint_is_not_restored(tmp_path, capsys, damaged):
    """A run stopped after its checkpoint was written but before the early-stopping state was (or a damaged
    checkpoint replaced by the one before) has state from another epoch: it is not paired with the checkpoint.
    Best weights that cannot be read back reset early stopping too: its best value without them made the first
    resumed epoch the "best" one, whose weights the run then restored."""
    import json

    import numpy as np

    from seqapps import training
    from seqapps.config import TrainConfig

    model, train, val = _slope_task()
    cfg = TrainConfig(epochs=10, patience=2, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        training.fit(model(), train, val, cfg, tmp_path / "run", callbacks=[_CrashAfter(2)])
    backup = tmp_path / "run" / "backup"
    state = json.loads((backup / "callback_state.json").read_text())
    assert state["epoch"] == 3 and state["callbacks"]["EarlyStopping"]["best_epoch"] == 1
    with np.load(backup / "best_weights.npz") as saved:
        assert int(saved["best_epoch"]) == 1
    if damaged == "state":
        (backup / "callback_state.json").write_text(json.dumps({**state, "epoch": 2}))  # saved after epoch 2 only
    else:
        (backup / "best_weights.npz").write_bytes(b"PK")  # a damaged file
    history = training.fit(model(), train, val, cfg, tmp_path / "run", resume=True)
    out = capsys.readouterr().out
    assert (
        "EarlyStopping saved beside the checkpoint is not that of its epoch 3"
        if damaged == "state"
        else "the best weights of EarlyStopping cannot be restored from"
    ) in out
    # early stopping started afresh: epoch 4 was its first best, and it waited two more
    assert history.resumed_after == 3 and len(history.history["loss"]) == 6


def test_jit_compile_keeps_xla_with_recurrent_layers_on_a_gpu(tmp_path, monkeypatch):
    """On a GPU the layers would run cuDNN, which XLA cannot compile (they say so when made, and Keras would turn
    XLA off): with jit_compile=true, `training.fit` makes them run their own loops, and XLA stays on."""
    import keras

    from seqapps import training
    from seqapps.config import TrainConfig
    from seqapps.layers import base

    monkeypatch.setattr(base, "gpu_available", lambda: True)
    calls = []

    def kernel(*args, **kwargs):
        calls.append(kwargs)
        raise NotImplementedError

    monkeypatch.setattr(keras.src.backend, "gru", kernel)
    cfg = TrainConfig(epochs=1, patience=0, verbose=0, jit_compile=True)
    model = _tiny(cfg)
    assert model.layers[0].supports_jit is False
    training.fit(model, _data(), _data(16, 1), cfg, tmp_path / "run")
    assert model.jit_compile is True and calls == []

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    assert not list(tmp_path.iterdir())

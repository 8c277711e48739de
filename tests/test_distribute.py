"""tf.distribute on this CPU machine: mirrored over two logical CPU devices."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqapps import training
from seqapps.config import TrainConfig

SCRIPT = Path(__file__).with_name("distribute_script.py")
ENV = {**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)}


def _run(args, env=ENV):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def test_mirrored_two_devices_matches_single_device(tmp_path):
    single, mirrored = _run(["none", str(tmp_path / "a")]), _run(["mirrored", str(tmp_path / "b"), "2"])
    for p in (single, mirrored):
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    a = json.loads((tmp_path / "a" / "result-0.json").read_text())
    b = json.loads((tmp_path / "b" / "result-0.json").read_text())
    assert a["replicas"] == 1 and b["replicas"] == 2
    for la, lb in zip(a["loss"], b["loss"]):  # same global batch -> same updates, up to reduction order
        assert lb == pytest.approx(la, rel=2e-2)
    assert b["loss"][-1] < b["loss"][0]


def test_bad_strategy_and_precision_names():
    with pytest.raises(ValueError, match="distribute must be one of"):
        training.strategy(TrainConfig(distribute="tpu"))
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        training.set_precision(TrainConfig(mixed_precision="fp8"))


def _free_ports(n):
    """``n`` ports free now, drawn below the kernel's ephemeral range. The workers bind them only after this
    returns; a port the kernel hands out (bind to 0, outgoing connections, e.g. in the other test process)
    comes from that range, so it cannot take one of these in between."""
    import random
    import socket

    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    span = range(max(1024, low - 12000), max(low, 1025))
    candidates = random.Random().sample(span, min(200, len(span)))
    ports = []
    for port in candidates:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("localhost", port))
            ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free ports found below {low}")


def test_two_process_multi_worker_run_trains_and_saves_one_model(tmp_path):
    """MultiWorkerMirroredStrategy over two processes on localhost (Keras 3's fit cannot run it, so
    `training.fit` uses its own synchronous loop): both workers take the same steps, the chief alone
    writes the model, and the loss matches a single process on the same global batch."""
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(_run(["multiworker", str(tmp_path / "mw")], env={**ENV, "TF_CONFIG": json.dumps(tf_config)}))
    single = _run(["none", str(tmp_path / "single")])
    for p in (*procs, single):
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    chief = json.loads((tmp_path / "mw" / "result-0.json").read_text())
    other = json.loads((tmp_path / "mw" / "result-1.json").read_text())
    alone = json.loads((tmp_path / "single" / "result-0.json").read_text())
    assert chief["replicas"] == 2 and chief["loss"] == pytest.approx(other["loss"], rel=1e-6)
    for a, b in zip(alone["loss"], chief["loss"]):  # same global batch -> same updates, up to reduction order
        assert b == pytest.approx(a, rel=2e-2)
    assert chief["loss"][-1] < chief["loss"][0]
    assert sorted(p.name for p in (tmp_path / "mw").glob("*.keras")) == ["model.keras"]
    assert (tmp_path / "mw" / "run" / "history.csv").is_file()
    assert not list((tmp_path / "mw" / "run").glob("backup-worker-*"))  # the other worker cleaned up


def test_multi_worker_refuses_resume_and_non_tf_data(monkeypatch):
    import tensorflow as tf

    cfg = TrainConfig(distribute="multiworker")
    ds = tf.data.Dataset.from_tensor_slices(([1.0], [1.0]))
    with pytest.raises(ValueError, match="--resume is not supported with distribute=multiworker"):
        training._fit_multi_worker(None, ds, None, cfg, Path("unused"), True, "val_loss")
    with pytest.raises(ValueError, match="needs a tf.data.Dataset"):
        training._fit_multi_worker(None, [1, 2], None, cfg, Path("unused"), False, "val_loss")


def test_cli_refuses_multi_worker_resume_on_every_worker_before_the_strategy(monkeypatch):
    """Refused by the chief only, the other workers would wait for it at their first all-reduce."""
    from seqapps import cli

    monkeypatch.setattr(training, "strategy", lambda cfg: pytest.fail("the strategy was made"))
    monkeypatch.setattr(training, "is_chief", lambda: False)
    with pytest.raises(ValueError, match="--resume is not supported with distribute=multiworker"):
        cli._train_multi_worker(None, TrainConfig(distribute="multiworker"), Path("unused"), True)


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(training, "_MULTI_WORKER", [])
    with pytest.raises(ValueError, match="distribute=multiworker needs TF_CONFIG"):
        training.strategy(TrainConfig(distribute="multiworker"))


@pytest.mark.slow
def test_cli_multi_worker_forecast_writes_one_model(tmp_path):
    """`seqapps train forecast --set distribute=multiworker` as two localhost workers (the README's recipe)."""
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    out = tmp_path / "model"
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        cmd = [sys.executable, "-m", "seqapps", "train", "forecast", "--tiny", "--set", "distribute=multiworker"]
        cmd += ["--set", "verbose=1", "--out", str(out)]
        env = {**ENV, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(tmp_path)}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    epochs = [[line for line in log.splitlines() if line.startswith("Epoch ")] for log in logs]
    losses = [[line.split("loss: ")[1].split(" ")[0] for line in e] for e in epochs]
    assert losses[0] == losses[1] and "(2 replicas)" in epochs[0][0]  # both workers took the same steps
    assert (out / "model.keras").is_file() and (out / "saved_model" / "1").is_dir()
    assert not list(tmp_path.glob("seqapps-worker-*"))  # the other worker's temporary model is gone

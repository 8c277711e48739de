"""tf.distribute on this CPU machine: mirrored over two logical CPU devices, multi-worker on localhost."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from seqapps import training
from seqapps.config import TrainConfig

SCRIPT = Path(__file__).with_name("distribute_script.py")
ENV = {**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)}


def _run(args, env=ENV):
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_mirrored_two_devices_matches_single_device(tmp_path):
    single, mirrored = _run(["none", str(tmp_path / "a")]), _run(["mirrored", str(tmp_path / "b"), "2"])
    for p in (single, mirrored):
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    a = json.loads((tmp_path / "a" / "result-0.json").read_text())
    b = json.loads((tmp_path / "b" / "result-0.json").read_text())
    assert a["replicas"] == 1 and b["replicas"] == 2
    for la, lb in zip(a["loss"], b["loss"]):  # same global batch -> same updates, up to float reordering
        assert lb == pytest.approx(la, rel=1e-3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_multiworker_on_localhost(tmp_path):
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for i in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})}
        procs.append(_run(["multiworker", str(tmp_path / f"w{i}")], env))
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    results = [json.loads((tmp_path / f"w{i}" / f"result-{i}.json").read_text()) for i in range(2)]
    assert all(r["replicas"] == 2 for r in results)
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)  # in sync
    assert (tmp_path / "w0" / "model.keras").exists()


def test_bad_strategy_and_precision_names():
    with pytest.raises(ValueError, match="distribute must be one of"):
        training.strategy(TrainConfig(distribute="tpu"))
    with pytest.raises(ValueError, match="TF_CONFIG"):
        os.environ.pop("TF_CONFIG", None)
        training.strategy(TrainConfig(distribute="multiworker"))
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        training.set_precision(TrainConfig(mixed_precision="fp8"))

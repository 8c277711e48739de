"""tf.distribute on this CPU machine: mirrored over two logical CPU devices."""

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

"""TensorFlow's and LiteRT's native start-up lines below TF_CPP_MIN_LOG_LEVEL stay hidden; devices run the
TFLite runtimes without TensorFlow."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seqapps import native_log
from tests.helpers import native_noise

ROOT = Path(__file__).resolve().parent.parent
INFO = "I0000 00:00:1796010115.308567     914 port.cc:153] oneDNN custom operations are on."
WARN = "W0000 00:00:1796010115.308567     914 x.cc:1] a warning"
ERROR = "E0000 00:00:1796010141.612381    1021 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error"
FATAL = "F0000 00:00:1796010141.612381    1021 x.cc:9] Check failed: x"
DATED = "2025-09-01 00:48:58.900848: I tensorflow/core/util/port.cc:113] an older format, kept"


@pytest.mark.parametrize(
    "line, level, expected, shown",
    [
        (INFO, 0, (), True),
        (INFO, 1, (), False),
        (WARN, 1, (), True),  # 1 hides INFO only, as in TensorFlow
        (WARN, 2, (), False),
        (ERROR, 2, (), True),
        (ERROR, 3, (), False),
        (ERROR, 2, ("failed call to cuInit",), False),
        (ERROR, 0, ("failed call to cuInit",), True),  # level 0 shows everything
        (FATAL, 3, ("Check failed",), True),  # never hidden
        ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", 1, (), False),
        ("ERROR: a LiteRT error", 2, (), True),
        ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", 2, (), False),
        ("fully_quantize: 0, inference_type: 6", 2, ("fully_quantize: ",), False),
        ("fully_quantize: 0, inference_type: 6", 2, (), True),
        ("/x/epoch_iterator.py:74: UserWarning: a Python warning", 3, (), True),
        ("To enable the following instructions: AVX2 FMA", 3, (), True),  # not a log line
        (DATED, 3, (), True),
    ],
)
def test_which_lines_are_kept(line, level, expected, shown):
    assert native_log.keep(line, level, expected) is shown


def test_filtered_drops_lines_below_the_level_on_descriptor_2(monkeypatch, capfd):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_log.filtered(expected=("cuInit",)):
        os.write(2, f"{INFO}\nkept 1\n{ERROR}\n".encode())
        os.write(2, b"kept 2\n")
    err = capfd.readouterr().err
    assert err == "kept 1\nkept 2\n"
    assert INFO in native_log.dropped and ERROR in native_log.dropped

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with native_log.filtered(expected=("cuInit",)):
        os.write(2, f"{INFO}\n{ERROR}\n".encode())
    assert capfd.readouterr().err == f"{INFO}\n{ERROR}\n"


def test_filtered_shows_everything_when_the_block_fails(monkeypatch, capfd):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    with pytest.raises(RuntimeError, match="boom"):
        with native_log.filtered():
            os.write(2, f"{INFO}\n".encode())
            raise RuntimeError("boom")
    assert capfd.readouterr().err == f"{INFO}\n"
    os.write(2, b"descriptor 2 is restored\n")
    assert capfd.readouterr().err == "descriptor 2 is restored\n"


def _python(code, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=300,
    )


def test_import_and_help_print_no_native_log_lines():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # seqapps' own default
    proc = subprocess.run(
        [sys.executable, "-m", "seqapps", "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0 and not native_noise(proc.stderr), proc.stderr
    proc = _python("import seqapps; from seqapps import native_log; native_log.init_devices(); print('ok')")
    assert proc.stdout == "ok\n" and not native_noise(proc.stderr), proc.stderr


# Runs a module as `python -m` would, in a process where importing TensorFlow or Keras fails (a device)
BLOCKED = """
import runpy, sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NoTensorFlow())
sys.argv = {argv!r}
{body}
assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
"""


def test_device_runtimes_run_without_tensorflow():
    trained = ROOT / "trained"
    run = "runpy.run_module(sys.argv[0], run_name='__main__')"
    for module, folder, text, expected in [
        ("seqapps.sentiment.tflite_runtime", "sentiment", "A wonderful, moving film.", "positive\t"),
        ("seqapps.translate.tflite_runtime", "translate", "Tengo hambre.", "hungry"),
    ]:
        proc = _python(BLOCKED.format(argv=[module, str(trained / folder), text], body=run))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert expected in proc.stdout and proc.stderr == "", proc.stdout + proc.stderr
    speech = """
    import numpy as np
    from seqapps.speech.tflite_runtime import StreamRunner
    runner = StreamRunner(sys.argv[1])
    probs, state = runner.step(np.zeros(runner.hop, np.float32), runner.initial_state())
    print(round(float(np.sum(probs)), 3))
    """
    proc = _python(BLOCKED.format(argv=["", str(trained / "speech" / "stream.tflite")], body=textwrap.dedent(speech)))
    assert proc.returncode == 0 and proc.stdout == "1.0\n" and proc.stderr == "", proc.stdout + proc.stderr


def test_commands_without_tensorflow_say_what_to_install():
    body = "from seqapps.cli import main\nprint('exit', main(sys.argv))"
    proc = _python(BLOCKED.format(argv=["predict", "sentiment", "fine"], body=body))
    assert proc.returncode == 0 and proc.stdout == "exit 2\n", proc.stdout + proc.stderr
    assert "is not installed" in proc.stderr and "pip install seqapps" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

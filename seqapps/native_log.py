"""Honour ``TF_CPP_MIN_LOG_LEVEL`` for the native log lines TensorFlow and LiteRT print at start-up.

TensorFlow 2.21 logs through absl before absl logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` (which
``import seqapps`` sets to 2 unless it is set already) no longer hides what ``import tensorflow`` prints:
"WARNING: All log messages before absl::InitializeLog() ...", "I... port.cc] oneDNN custom operations are
on ..." and "I... cudart_stub.cc] Could not find cuda drivers ...", twice each. Creating the first device
on a machine without an NVIDIA driver adds "E... failed call to cuInit"; on some CPUs (this project's
2-core machines, which have AVX-512F, among them) the first boolean transpose adds oneDNN's "E... supports
DT_BOOL only on platforms with AVX-512. Falling back to the default Eigen-based implementation"; LiteRT's
first interpreter prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.". C++ writes them straight to file descriptor 2, out of reach of Python's
``logging`` and ``warnings``.

``filtered()`` points descriptor 2 at a temporary file while its block runs, then writes back every line
that is not below the level: absl lines (``I``/``W``/``E``/``F`` + date) and LiteRT lines (``INFO:``,
``WARNING:``, ``ERROR:``) below ``TF_CPP_MIN_LOG_LEVEL`` are dropped (0 keeps all, 1 drops INFO, 2 also
WARNING, 3 also ERROR), and so are the lines the caller names as expected; everything else (Python
warnings, messages of other formats, FATAL lines) is kept, and when the block raises nothing is dropped.
``TF_CPP_MIN_LOG_LEVEL=0 seqapps ...`` shows every line.

Standard library only: the device runtimes (``seqapps.*.tflite_runtime``) use it without TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# "I0000 00:00:1796010115.308567     914 port.cc:153] message": absl's prefix (severity, date, time, thread,
# file:line); before absl is initialised the date is 0000 and the time 00:00 + seconds since 1970
_ABSL = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
# "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (LiteRT's minimal logging)
_TFLITE = re.compile(r"(INFO|WARNING|ERROR): ")
_SEVERITY = {"I": 0, "INFO": 0, "W": 1, "WARNING": 1, "E": 2, "ERROR": 2, "F": 3}
NO_CUDA_DRIVER = "Could not find cuda drivers on your machine"
# the two ERROR lines of a device start-up that report nothing wrong (see init_devices)
DT_BOOL_FALLBACK = "oneDNN supports DT_BOOL only"
NO_CUINIT = "failed call to cuInit"
START_UP_ERRORS = (DT_BOOL_FALLBACK, NO_CUINIT)

dropped: list[str] = []  # every line this process dropped, for diagnostics and tests


def min_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def severity(line: str) -> int | None:
    """0-3 for a native log line (INFO, WARNING, ERROR, FATAL); None for any other line."""
    m = _ABSL.match(line) or _TFLITE.match(line)
    return _SEVERITY[m.group(1)] if m else None


def keep(line: str, level: int, expected: tuple[str, ...] = ()) -> bool:
    """Whether ``line`` is shown at ``level``; ``expected`` names messages known to be harmless where the
    caller runs (dropped at any level but 0, whatever their severity or format, except FATAL)."""
    sev = severity(line)
    if sev == 3:
        return True
    if level >= 1 and any(text in line for text in expected):
        return False
    return sev is None or sev >= level


@contextlib.contextmanager
def filtered(expected: tuple[str, ...] = ()):
    """Run the block with descriptor 2 captured, then write back the lines that ``keep`` keeps (all of them
    when the block raises)."""
    level = min_level()
    saved = None
    if level > 0:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no descriptor 2 (a daemon, an embedding host)
            saved = None
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            shown = []
            for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True):
                if failed or keep(line, level, expected):
                    shown.append(line)
                else:
                    dropped.append(line.rstrip("\n"))
            with contextlib.suppress(OSError):  # stderr closed or a broken pipe: nowhere left to say it
                _write(2, "".join(shown).encode("utf-8"))


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def init_devices():
    """Start TensorFlow's devices with what that prints filtered, before a command's first op.

    Two ERROR lines come from nothing wrong: "failed call to cuInit", where TensorFlow found no NVIDIA
    driver at import (dropped only then), and oneDNN's "supports DT_BOOL only on platforms with AVX-512.
    Falling back to the default Eigen-based implementation", which it says once per process at the first
    transpose of a boolean tensor (every masked recurrent layer has one): that transpose is run here. Not
    where ``TF_CONFIG`` is set: MultiWorkerMirroredStrategy must be created before any op runs.
    """
    import tensorflow as tf  # imported already, its lines filtered, by seqapps/__init__

    no_driver = any(NO_CUDA_DRIVER in line for line in dropped)
    expected = START_UP_ERRORS if no_driver else (DT_BOOL_FALLBACK,)
    with filtered(expected=expected):
        devices = tf.config.list_physical_devices()
        if "TF_CONFIG" not in os.environ:
            tf.transpose(tf.zeros([1, 1], tf.bool))
    return devices

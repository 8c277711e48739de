"""seqapps: recurrent-network applications on shared custom Keras layers."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seqapps import native_log as _native_log  # noqa: E402

__version__ = "0.1.0"
__all__ = ["layers", "__version__"]

try:
    # registers every custom class; TensorFlow's start-up lines below TF_CPP_MIN_LOG_LEVEL are dropped
    with _native_log.filtered():
        from seqapps import layers
except ModuleNotFoundError as _exc:
    # A device-like install without TensorFlow/Keras (pip install --no-deps seqapps; pip install ai-edge-litert numpy):
    # the TFLite runtimes (python -m seqapps.sentiment.tflite_runtime ...) work, everything else needs them.
    if (_exc.name or "").split(".")[0] not in ("tensorflow", "keras"):
        raise

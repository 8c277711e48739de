"""seqapps: recurrent-network applications on shared custom Keras layers."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from seqapps import layers  # noqa: E402  (registers every custom class)

__version__ = "0.1.0"
__all__ = ["layers", "__version__"]

"""Export core: SavedModel (TF Serving layout), TFLite/LiteRT (builtin ops), metadata, atomic writes.

The submodules are imported when first used, so ``seqapps.export.metadata`` (which the TFLite device
runtimes use) does not import TensorFlow.
"""

import importlib

_NAMES = {
    "saved_model": ("seqapps.export.saved_model", None),
    "tflite": ("seqapps.export.tflite", None),
    "atomic_dir": ("seqapps.export.atomic", "atomic_dir"),
    "atomic_write_bytes": ("seqapps.export.atomic", "atomic_write_bytes"),
    "atomic_write_text": ("seqapps.export.atomic", "atomic_write_text"),
    "write_metadata": ("seqapps.export.metadata", "write"),
}
__all__ = list(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'seqapps.export' has no attribute {name!r}")
    module, attr = _NAMES[name]
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))

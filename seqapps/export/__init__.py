"""Export core: SavedModel (TF Serving layout), TFLite/LiteRT (builtin ops), metadata, atomic writes."""

from seqapps.export import saved_model, tflite
from seqapps.export.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from seqapps.export.metadata import write as write_metadata

__all__ = ["saved_model", "tflite", "atomic_dir", "atomic_write_bytes", "atomic_write_text", "write_metadata"]

"""LiteRT interpreters without TensorFlow: the export checks (`seqapps.export.tflite.interpreter`) and the
device runtimes (``seqapps.*.tflite_runtime``) open their ``.tflite`` files here."""

from __future__ import annotations

from seqapps import native_log


def interpreter(model, num_threads: int = 1):
    """An allocated `ai_edge_litert` interpreter for a path or flatbuffer bytes."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        interp = Interpreter(model_content=bytes(model), num_threads=num_threads)
    else:
        try:
            interp = Interpreter(model_path=str(model), num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:  # empty or damaged: LiteRT's "mmap of size 0 requested", ...
            raise ValueError(f"{model} is not a readable TFLite model ({exc}): export the model again") from None
    with native_log.filtered():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line
        interp.allocate_tensors()
    return interp

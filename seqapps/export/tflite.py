"""TFLite (LiteRT) export with builtin ops only, and a runner on `ai_edge_litert`.

Recipe (verified with TF 2.21 / ai-edge-litert 2.3): save a `tf.Module` whose functions have a
static batch-1 input signature as a SavedModel, convert from that SavedModel (this freezes the
variables), allow only ``TFLITE_BUILTINS``. The recurrent loop becomes a builtin ``WHILE``.

Variants:
    float32   no optimisation
    float16   weights stored as float16 (for the GPU delegate)
    dynamic   dynamic-range quantisation: int8 weights, float activations
    int8      full integer quantisation of the ops that have int8 kernels, calibrated on a
              representative dataset; float input/output (ops without int8 kernels stay float)

The TFLite calibrator crashes the process (segfault, TF 2.21) on a graph with a WHILE loop, so
`convert` refuses int8 for such a graph with a clear error. Full-int8 export of a recurrent model
traces it unrolled over its fixed length instead (no WHILE; also what GPU delegates need):

    with tflite.unrolled(model):
        module = MyServingModule(model)          # build (and trace) the module inside the block
        blob = tflite.convert_module(module, module.signatures(), "int8", representative_dataset=rep)
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqapps import native_log
from seqapps.export.litert import interpreter  # noqa: F401  (tflite.interpreter, as callers know it)
from seqapps.export.metadata import ExportError  # noqa: F401  (tflite.ExportError, as callers know it)
from seqapps.layers.base import sequence_projection

VARIANTS = ("float32", "float16", "dynamic", "int8")
FILE_NAMES = {
    "float32": "model.tflite",
    "float16": "model_float16.tflite",
    "dynamic": "model_dynamic.tflite",
    "int8": "model_int8.tflite",
    "gpu": "model_gpu.tflite",  # float16, recurrent layers unrolled (no WHILE): for GPU delegates
}


def remove_other_variants(folder, variants) -> None:
    """Delete the TFLite files of `FILE_NAMES` that an export into ``folder`` does not write (``variants``): left
    from an earlier export, they would hold other weights and still be listed, analysed and benchmarked."""
    for variant, name in FILE_NAMES.items():
        if variant not in variants and (Path(folder) / name).is_file():
            (Path(folder) / name).unlink()


# TFLite's dynamic-range quantizer leaves weight tensors with fewer elements than this in float.
DYNAMIC_FLOAT_WEIGHTS = 1024


def matmul_in_small_blocks(x, w, max_weights: int = DYNAMIC_FLOAT_WEIGHTS):
    """x [..., D] @ w [D, N], as a sum over row blocks of w with fewer than ``max_weights`` weights each
    (same values up to float rounding). Traced this way, a product stays float in ``model_dynamic.tflite``:
    for weights or inputs that int8 would flatten."""
    rows = max(1, (max_weights - 1) // int(w.shape[1]))
    return tf.add_n([tf.tensordot(x[..., i : i + rows], w[i : i + rows], 1) for i in range(0, int(w.shape[0]), rows)])


@contextlib.contextmanager
def unrolled(model):
    """Trace the recurrent layers of ``model`` unrolled (fixed sequence length) inside the block."""
    import keras

    rnns = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.RNN)]
    saved = [layer.unroll for layer in rnns]
    for layer in rnns:
        layer.unroll = True
    try:
        yield model
    finally:
        for layer, value in zip(rnns, saved):
            layer.unroll = value


def convert_unrolled(
    model, make_module, variant: str = "float16", representative_dataset=None, keep_float=None
) -> bytes:
    """Convert the module that ``make_module()`` builds around ``model`` with its recurrent layers
    traced unrolled (``model`` needs a fixed sequence length). float16 gives the GPU-delegate variant;
    int8 needs it too (the int8 calibrator cannot run a WHILE loop). ``keep_float``: see `convert`."""
    with unrolled(model), sequence_projection():
        module = make_module()
        blob = convert_module(
            module, module.signatures(), variant, representative_dataset=representative_dataset, keep_float=keep_float
        )
    if "WHILE" in op_names(blob):
        raise ExportError("the unrolled export still has a WHILE loop: give the model a fixed sequence length")
    return blob


def _has_while_loop(saved_model_dir, signature_keys) -> bool:
    blob = convert(saved_model_dir, "float32", signature_keys=signature_keys)
    return "WHILE" in op_names(blob)


def convert(
    saved_model_dir, variant: str = "float32", signature_keys=None, representative_dataset=None, keep_float=None
) -> bytes:
    """Convert a SavedModel to a TFLite flatbuffer of the given variant (builtin ops only).

    int8: calibrated on ``representative_dataset``; ranges that calibration left empty are widened first
    (see EMPTY_RANGE). ``keep_float`` (int8 only): a predicate on TFLite tensor names; the tensors it
    accepts stay float32 (the quantizer's deny list), the rest run int8. For values that span decades (a
    power spectrum, raw prices) or that carry a -1e9 attention mask, which one int8 scale would flatten.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose one of {VARIANTS}")
    if variant == "int8" and representative_dataset is not None and _has_while_loop(saved_model_dir, signature_keys):
        raise ExportError(
            "full int8 quantization of a graph with a WHILE loop crashes the TFLite calibrator; trace the model "
            "unrolled for this variant (build the module inside `with seqapps.export.tflite.unrolled(model):`)"
        )
    if variant == "int8" and representative_dataset is None:
        raise ValueError("the int8 variant needs a representative_dataset")
    if keep_float is not None and variant != "int8":
        raise ValueError("keep_float applies to the int8 variant only")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=signature_keys)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        return shorten_long_names(_int8(saved_model_dir, converter, signature_keys, keep_float))
    try:
        blob = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and friends
        raise ExportError(f"TFLite {variant} conversion of {saved_model_dir} failed (builtin ops only): {exc}") from exc
    return shorten_long_names(blob)


MAX_NAME = 128


def shorten_long_names(blob: bytes) -> bytes:
    """``blob`` with every tensor name longer than MAX_NAME characters cut to its first part (before the first
    ``;``) and a ``~<index>`` suffix. The converter names a fused tensor after every op folded into it; in a loop
    unrolled over hundreds of steps those names reach kilobytes each (42 of the 47 MB of the unrolled int8
    sentiment model). Names are not used to run a model: signatures refer to tensors by index."""
    model = _unpack(blob)
    long = [(i, t) for graph in model.subgraphs for i, t in enumerate(graph.tensors) if len(t.name) > MAX_NAME]
    if not long:
        return blob
    for i, tensor in long:
        tensor.name = tensor.name.split(b";")[0][: MAX_NAME - 12] + f"~{i}".encode()
    return _pack(model)


# Calibrated ranges narrower than this are widened to +-EMPTY_RANGE before quantization. Such a tensor was
# (nearly) constant on every calibration sample: e.g. the product of a recurrent kernel with the zero initial
# state, in an unrolled loop. Quantized as calibrated its scale degenerates (~1e-8), and XNNPACK, the default
# CPU delegate, then refuses to build the model ("failed to create XNNPACK runtime").
EMPTY_RANGE, DEGENERATE_SCALE = 0.1, 1e-7


def _int8(saved_model_dir, converter, signature_keys, keep_float) -> bytes:
    """Calibrate, widen empty ranges, quantize (the tensors ``keep_float`` accepts stay float)."""
    from tensorflow.lite.python import convert as lite_convert

    denied = None
    if keep_float is not None:
        float_blob = tf.lite.TFLiteConverter.from_saved_model(
            str(saved_model_dir), signature_keys=signature_keys
        ).convert()
        denied = [n for n in tensor_names(float_blob) if keep_float(n)]
        if not denied:
            raise ExportError("int8 export: no tensor matched keep_float, so nothing would stay in float")
    converter._experimental_calibrate_only = True  # as tf.lite.experimental.QuantizationDebugger does
    # TensorFlow's calibrator runs its own deprecated tf.lite.Interpreter (a warning addressed to code that
    # would, not to this one, which runs ai_edge_litert) and the quantizer prints its settings on stderr
    with warnings.catch_warnings(), native_log.filtered(expected=("fully_quantize: ",)):
        warnings.filterwarnings("ignore", r"\s*Warning: tf\.lite\.Interpreter is deprecated", UserWarning)
        try:
            calibrated = converter.convert()
            blob = lite_convert.mlir_quantize(
                _widen_empty_ranges(calibrated),
                disable_per_channel=converter._experimental_disable_per_channel,
                denylisted_nodes=denied,
            )
        except Exception as exc:
            raise ExportError(f"TFLite int8 conversion of {saved_model_dir} failed: {exc}") from exc
    left = degenerate_int8_tensors(blob)
    if left:
        raise ExportError(f"int8 export: tensors with a degenerate int8 scale remain: {sorted(left)[:5]}")
    return blob


def _widen_empty_ranges(calibrated: bytes) -> bytes:
    """The calibrated flatbuffer with every min/max range narrower than 1e-6 widened to +-EMPTY_RANGE."""
    model = _unpack(calibrated)
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if q is None or q.min is None or q.max is None or not len(q.min):
                continue
            lo, hi = float(np.min(q.min)), float(np.max(q.max))
            if hi - lo < 1e-6:
                q.min = [min(lo, -EMPTY_RANGE)] * len(q.min)
                q.max = [max(hi, EMPTY_RANGE)] * len(q.max)
    return _pack(model)


def degenerate_int8_tensors(model) -> set[str]:
    """Names of the int8 activations (op outputs, every subgraph) of ``model`` whose quantization scale is
    below DEGENERATE_SCALE."""
    from tensorflow.lite.python import schema_py_generated as schema

    out = set()
    for graph in _unpack(model).subgraphs:
        for t in {i for op in graph.operators or [] for i in op.outputs if i >= 0}:
            tensor = graph.tensors[t]
            q = tensor.quantization
            scale = None if q is None or q.scale is None else np.asarray(q.scale)
            if tensor.type == schema.TensorType.INT8 and scale is not None and scale.size:
                if float(scale.min()) < DEGENERATE_SCALE:
                    out.add(tensor.name.decode())
    return out


def _unpack(model):
    """A flatbuffer (bytes or a path) as TFLite's own schema objects (``.subgraphs``: every signature)."""
    from tensorflow.lite.tools import flatbuffer_utils

    buf = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    return flatbuffer_utils.convert_bytearray_to_object(buf)


def _pack(model) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def convert_module(
    module: tf.Module, signatures: dict, variant="float32", representative_dataset=None, keep_float=None
) -> bytes:
    """Save ``module`` with ``signatures`` (static shapes) to a temporary SavedModel and convert it
    (recurrent layers traced with the whole-sequence projection: fewer ops for the interpreter)."""
    with tempfile.TemporaryDirectory() as tmp, sequence_projection():
        tf.saved_model.save(module, tmp, signatures=signatures)
        keys = list(signatures)
        return convert(
            tmp, variant, signature_keys=keys, representative_dataset=representative_dataset, keep_float=keep_float
        )


def run(interp, signature: str | None = None, **inputs) -> dict:
    """Run one signature of an interpreter with named inputs; returns named outputs."""
    sigs = interp.get_signature_list()
    if signature is None:
        if len(sigs) != 1:
            raise ValueError(f"model has signatures {sorted(sigs)}; name one")
        signature = next(iter(sigs))
    runner = interp.get_signature_runner(signature)
    details = runner.get_input_details()
    feed = {k: np.asarray(v, dtype=details[k]["dtype"]) for k, v in inputs.items()}
    return runner(**feed)


def tensor_names(model) -> list[str]:
    """Names of the tensors of every subgraph (every signature) of a flatbuffer, in order, without repeats."""
    return list(dict.fromkeys(t.name.decode() for graph in _unpack(model).subgraphs for t in graph.tensors))


def op_names(model) -> set[str]:
    """Builtin op names used by a flatbuffer (from the TFLite analyzer's report)."""
    import contextlib
    import io

    buf = io.StringIO()
    content = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_content=bytes(content))
    import re

    return set(re.findall(r"Op#\d+ (\w+)\(", buf.getvalue()))

"""TFLite GPU-delegate reports: what `tf.lite.experimental.Analyzer` says of each model, per op.

A recurrent model exported as usual keeps its time loop as a builtin ``WHILE`` whose body is a
separate subgraph: control flow that GPU delegates do not take (the ops the TFLite GPU delegate
documents contain no WHILE), so such a model runs on the CPU. Every app therefore also writes
``model_gpu.tflite``: float16 weights, the recurrent layers traced unrolled over the model's fixed
length (one subgraph, no control flow), checked against Keras like the other variants.

    python -m seqapps.export.gpu trained/forecast trained/sentiment ...   # writes gpu_compatibility.json

For each ``*.tflite`` the report gives the Analyzer's verdict, the ops it flags (with its message),
the control-flow ops and the number of subgraphs; ``stays_on_cpu`` lists the ops a GPU delegate
leaves to the CPU by these two rules (flagged by the Analyzer, or control flow).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

from seqapps import native_log

CONTROL_FLOW = {"WHILE", "IF", "CALL_ONCE"}
REPORT_FILE = "gpu_compatibility.json"
_OP_LINE = re.compile(r"^\s*Op#\d+\s+([A-Z0-9_]+)\(")
_SUBGRAPH = re.compile(r"^Subgraph#(\d+)\s")
_WARNING = "GPU COMPATIBILITY WARNING:"


def analyzer_text(model) -> str:
    """The Analyzer's report (``gpu_compatibility=True``) for a path or flatbuffer bytes."""
    import tensorflow as tf

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if isinstance(model, (bytes, bytearray)):
            tf.lite.experimental.Analyzer.analyze(model_content=bytes(model), gpu_compatibility=True)
        else:
            tf.lite.experimental.Analyzer.analyze(model_path=str(model), gpu_compatibility=True)
    return out.getvalue()


def parse(text: str) -> dict:
    """Verdict, flagged ops (op -> messages), ops and subgraphs from an Analyzer report."""
    ops, flagged, subgraphs = set(), {}, set()
    last_op = None
    for line in text.splitlines():
        m = _SUBGRAPH.match(line)
        if m:
            subgraphs.add(int(m.group(1)))
            continue
        m = _OP_LINE.match(line)
        if m:
            last_op = m.group(1)
            ops.add(last_op)
            continue
        if _WARNING in line and last_op is not None and "Subgraph#" not in line:
            flagged.setdefault(last_op, set()).add(line.split(_WARNING, 1)[1].strip())
    compatible = "looks compatible with GPU delegate" in text
    control = sorted(ops & CONTROL_FLOW)
    return {
        "analyzer_verdict": "compatible" if compatible else "incompatible ops found",
        "analyzer_flagged_ops": {op: sorted(msgs) for op, msgs in sorted(flagged.items())},
        "control_flow_ops": control,
        "subgraphs": len(subgraphs),
        "ops": sorted(ops),
        "stays_on_cpu": sorted(set(flagged) | set(control)),
        "gpu_delegate_ready": compatible and not control,
    }


def report(model) -> dict:
    return parse(analyzer_text(model))


def write_reports(model_dir) -> Path:
    """Analyze every ``*.tflite`` in ``model_dir``; writes and returns ``gpu_compatibility.json``."""
    from seqapps.export.atomic import atomic_write_text

    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.tflite"))
    if not files:
        raise FileNotFoundError(f"no .tflite files in {model_dir}; export the model first (seqapps export APP)")
    reports = {f.name: report(f) for f in files}
    path = model_dir / REPORT_FILE
    atomic_write_text(path, json.dumps(reports, indent=1) + "\n")
    return path


def summarize(model_dir) -> dict:
    """Write ``gpu_compatibility.json`` for ``model_dir`` and return the compact part for metadata.json."""
    reports = json.loads(write_reports(model_dir).read_text())
    keys = ("analyzer_verdict", "control_flow_ops", "stays_on_cpu", "gpu_delegate_ready")
    return {name: {k: rep[k] for k in keys} for name, rep in reports.items()}


def summary_line(name: str, rep: dict) -> str:
    cpu = ", ".join(rep["stays_on_cpu"]) or "none"
    ready = "ready for a GPU delegate" if rep["gpu_delegate_ready"] else "not GPU-delegate ready"
    return f"{name}: Analyzer {rep['analyzer_verdict']}; {rep['subgraphs']} subgraph(s); on CPU: {cpu} -> {ready}"


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m seqapps.export.gpu",
        description="Write gpu_compatibility.json (TFLite Analyzer, gpu_compatibility=True) for model folders.",
    )
    parser.add_argument("model_dirs", nargs="+", help="folders with .tflite files, e.g. trained/forecast")
    args = parser.parse_args(argv)
    native_log.init_devices()  # TensorFlow's start-up errors about nothing wrong stay hidden
    for d in args.model_dirs:
        try:
            path = write_reports(d)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        for name, rep in json.loads(path.read_text()).items():
            print(summary_line(f"{d}/{name}", rep))
        print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

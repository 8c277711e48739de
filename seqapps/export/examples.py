"""Example requests for every shipped SavedModel, as a service sends them.

``python -m seqapps.export.examples`` runs each one in a plain-TensorFlow process (no seqapps) and
prints the ``saved_model_cli run`` command and the TF Serving REST request/response (row format,
``POST /v1/models/<name>:predict``). The tests run the same requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def folder(name) -> Path:
    """The shipped model ``name``: in the working folder's trained/, else the checkout's (`seqapps.app.shipped`)."""
    from seqapps.app import shipped

    return shipped(Path("trained") / name)


def _window(name):
    windows = np.load(folder(name) / "assets" / "sample_windows.npy")
    return windows[:1].astype("float32")


def _clip():
    t = np.arange(16000) / 16000.0
    return (0.1 * np.sin(2 * np.pi * 440 * t) * np.hanning(16000)).astype("float32")[None]


EXAMPLES = {
    "translate": lambda: {"text": np.array(["¿Dónde está la estación?", "Tengo hambre."], dtype=object)},
    "sentiment": lambda: {"text": np.array(["A wonderful, moving film.", "Dull and far too long."], dtype=object)},
    "speech": lambda: {"waveform": _clip()},
    "forecast": lambda: {"window": _window("forecast")},
    "weather": lambda: {"window": _window("weather")},
}


def shipped() -> list[str]:
    return [n for n in EXAMPLES if (folder(n) / "saved_model").is_dir()]


def run(name: str) -> tuple[dict, dict]:
    from seqapps.export import saved_model

    inputs = EXAMPLES[name]()
    return inputs, saved_model.run_isolated(saved_model.latest(folder(name)), inputs)


def rest(inputs: dict, outputs: dict) -> tuple[dict, dict]:
    """TF Serving row-format request and response bodies for one batch."""

    def plain(v):
        v = np.asarray(v)
        if v.dtype == object:
            return [str(x) for x in v.tolist()]
        return np.round(v.astype(float), 4).tolist() if v.dtype.kind == "f" else v.tolist()

    in_p = {k: plain(v) for k, v in inputs.items()}
    out_p = {k: plain(v) for k, v in outputs.items()}
    n = len(next(iter(in_p.values())))
    if len(in_p) == 1:
        instances = next(iter(in_p.values()))
    else:
        instances = [{k: v[i] for k, v in in_p.items()} for i in range(n)]
    if len(out_p) == 1:
        predictions = next(iter(out_p.values()))
    else:
        predictions = [{k: v[i] for k, v in out_p.items()} for i in range(n)]
    return {"instances": instances}, {"predictions": predictions}


INLINE_CHARS = 300  # a longer request body is written to a file for curl -d @FILE


def main(argv=None):
    import argparse
    import os
    import shlex

    from seqapps.export import saved_model
    from seqapps.export.atomic import atomic_write_text

    parser = argparse.ArgumentParser(
        prog="python -m seqapps.export.examples",
        description="Run the example request of every shipped SavedModel in a plain-TensorFlow process and print "
        "the saved_model_cli and TF Serving REST (curl) commands with the actual responses.",
    )
    parser.add_argument(
        "--requests",
        type=Path,
        default=Path("serving-requests"),
        help=f"folder for request bodies longer than {INLINE_CHARS} characters (curl -d @FILE); default: %(default)s",
    )
    args = parser.parse_args(argv)
    if not shipped():
        raise SystemExit("no shipped models found in trained/ (here or in the seqapps checkout): run from a checkout")
    for name in shipped():
        inputs, outputs = run(name)
        req, resp = rest(inputs, outputs)
        path = os.path.relpath(saved_model.latest(folder(name)))
        key = next(iter(inputs))
        print(f"### {name}\n")
        if inputs[key].dtype == object:
            expr = f"{key}={json.dumps([str(s) for s in inputs[key]], ensure_ascii=False)}"
            print(
                f"    saved_model_cli run --dir {path} --tag_set serve --signature_def serving_default \\\n"
                f"        --input_exprs {shlex.quote(expr)}\n"
            )
        body = json.dumps(req, ensure_ascii=False)
        if len(body) > INLINE_CHARS:
            file = args.requests / f"{name}.json"
            atomic_write_text(file, body + "\n")
            data = "@" + str(file)
        else:
            data = body
        print(f"    curl -d {shlex.quote(data)} \\\n        -X POST http://localhost:8501/v1/models/{name}:predict\n")
        print(f"    {json.dumps(resp, ensure_ascii=False)}\n")


if __name__ == "__main__":
    main()

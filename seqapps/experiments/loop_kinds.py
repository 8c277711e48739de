"""How `seqapps.layers.RNN` should run its loop on this backend and device: the ways against Keras.

For each of SimpleRNN, LSTM and GRU, with the same weights, training and inference samples/s of:

* ``keras``: the Keras built-in layer (on a GPU, LSTM and GRU run the backend's cuDNN kernel);
* ``cudnn``: the seqapps layer as it runs by default (``use_cudnn="auto"``: the same kernel where there is one);
* ``loop-gate``, ``loop-step``, ``loop-sequence``: the layer's own loop (``use_cudnn=False``) run per step
  and gate by gate, per step, or with the whole sequence projected first (see `seqapps.layers.base`).

Each figure is a ratio to ``keras`` (above 1: faster), medians of rounds timed in turn (`seqapps.bench`).
The layers alone run on every Keras backend, so this runs without TensorFlow too:

    KERAS_BACKEND=jax python -m seqapps.experiments.loop_kinds --out runs/loop_kinds-jax.md
    python -m seqapps.experiments.loop_kinds --sizes 64x100x64x128 --rounds 3      # quick, TensorFlow
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KINDS = ("gate", "step", "sequence")
DEFAULT_SIZES = ("64x100x64x128", "256x200x128x512")


def parse_size(text: str) -> tuple[int, int, int, int]:
    try:
        size = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) <= 0:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: give batch x steps x features x units as four positive integers, e.g. 64x100x64x128"
        )
    return size


def measure(sizes, rounds: int = 7) -> list[dict]:
    import keras

    from seqapps import bench
    from seqapps.layers import base

    chosen = {"kind": None}
    default_kind = base._loop_kind
    base._loop_kind = lambda unroll: chosen["kind"] or default_kind(unroll)
    try:
        rows = []
        rng = np.random.default_rng(0)
        for batch, steps, features, units in sizes:
            x = keras.ops.convert_to_tensor(rng.normal(size=(batch, steps, features)).astype("float32"))
            y = keras.ops.convert_to_tensor(rng.normal(size=(batch, units)).astype("float32"))
            for name, ours_cls, keras_cls in bench.layer_pairs():
                theirs = keras_cls(units)
                theirs(x)
                variants = {"keras": (theirs, None)}
                if name != "SimpleRNN":
                    variants["cudnn"] = (ours_cls(units), None)
                for kind in KINDS:
                    variants[f"loop-{kind}"] = (ours_cls(units, use_cudnn=False), kind)
                fns = {}
                for label, (layer, kind) in variants.items():
                    chosen["kind"] = kind
                    if layer is not theirs:
                        layer(x)
                        layer.set_weights(theirs.get_weights())
                    for mode, fn in zip(("train", "inference"), bench._layer_fns(layer, x, y)):
                        # the kind is read when the loop is traced (TensorFlow, JAX) or run (PyTorch)
                        def call(fn=fn, kind=kind):
                            chosen["kind"] = kind
                            return fn()

                        fns[f"{label} {mode}"] = call
                times = bench.medians(bench.interleaved_times(fns, rounds))
                for mode in ("train", "inference"):
                    base_s = times[f"keras {mode}"]
                    row = {"size": f"{batch}x{steps}x{features}x{units}", "layer": name, "mode": mode}
                    row["keras samples/s"] = round(batch / base_s)
                    row.update(
                        {label: round(base_s / times[f"{label} {mode}"], 3) for label in variants if label != "keras"}
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        base._loop_kind = default_kind
    return rows


def to_markdown(rows: list[dict], device: str, rounds: int) -> str:
    columns = ["cudnn", *(f"loop-{k}" for k in KINDS)]
    lines = [
        f"# seqapps loop kinds against Keras built-ins ({device})\n",
        f"Ratios to the Keras built-in layer's samples/s (above 1: faster); medians of {rounds} rounds timed in turn. "
        "Sizes are batch x steps x features x units. `cudnn` is the layer's default (`use_cudnn='auto'`), the "
        "`loop-*` columns its own loop with `use_cudnn=False`. Written by `python -m seqapps.experiments.loop_kinds`.\n",
        "| size | layer | mode | keras samples/s | " + " | ".join(columns) + " |",
        "|---|---|---|---:|" + "---:|" * len(columns),
    ]
    for r in rows:
        cells = [str(r.get(c, "")) for c in columns]
        lines.append(
            f"| {r['size']} | {r['layer']} | {r['mode']} | {r['keras samples/s']:,} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seqapps.experiments.loop_kinds",
        description="Time the seqapps layers' loop kinds and cuDNN path against the Keras built-ins "
        "(on the backend KERAS_BACKEND names; TensorFlow by default).",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[parse_size(s) for s in DEFAULT_SIZES],
        help="batch x steps x features x units (default: %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per function (default: 7)")
    parser.add_argument("--out", type=Path, default=Path("runs/loop_kinds.md"), help="Markdown report to write")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder: give the Markdown file to write")

    from seqapps import bench
    from seqapps.export.atomic import atomic_write_text

    rows = measure(args.sizes, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, to_markdown(rows, bench.device_label(), args.rounds))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks (``make bench``): ratios measured side by side in one run, never asserted by tests.

* ``layers``: training and inference samples/s of each seqapps cell (through `seqapps.layers.RNN`)
  against the Keras built-in layer with the same weights, batch 64, T=100, input 64, units 128.
* each app's ``App.bench(model_dir)`` rows for its shipped model.

Results are printed and written to ``bench/results.md``.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

BATCH, STEPS, FEATURES, UNITS = 64, 100, 64, 128


def median_seconds(fn, reps: int) -> float:
    """Median seconds of one call of ``fn`` over ``reps`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def interleaved(fns: dict, rounds: int, calls: int = 3) -> dict:
    """Median seconds per call of each function, timed in alternating rounds (fair under noisy load)."""
    for fn in fns.values():
        fn()
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls)
    return {name: float(np.median(v)) for name, v in times.items()}


def layer_rows(quick: bool = False) -> list[dict]:
    import keras
    import tensorflow as tf

    from seqapps import layers as sl

    pairs = [
        ("SimpleRNN", sl.SimpleRNN, keras.layers.SimpleRNN),
        ("LSTM", sl.LSTM, keras.layers.LSTM),
        ("GRU", sl.GRU, keras.layers.GRU),
    ]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32"))
    y = tf.constant(rng.normal(size=(BATCH, UNITS)).astype("float32"))
    rounds = 3 if quick else 9
    rows = []
    for name, ours_cls, keras_cls in pairs:
        theirs = keras_cls(UNITS)
        theirs(x)
        ours = ours_cls(UNITS)
        ours(x)
        ours.set_weights(theirs.get_weights())
        fns = {}
        for label, layer in (("keras", theirs), ("seqapps", ours)):
            opt = keras.optimizers.Adam(1e-3)

            def infer(layer=layer):
                return layer(x)

            def train(layer=layer, opt=opt):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(layer(x, training=True) - y))
                grads = tape.gradient(loss, layer.trainable_variables)
                opt.apply_gradients(zip(grads, layer.trainable_variables))
                return loss

            fns[f"{label} train"] = tf.function(train)
            fns[f"{label} inference"] = tf.function(infer)
        t = interleaved(fns, rounds)
        for mode in ("train", "inference"):
            mine, base = BATCH / t[f"seqapps {mode}"], BATCH / t[f"keras {mode}"]
            rows.append(
                {
                    "benchmark": f"{name} {mode} (batch {BATCH}, T={STEPS}, in {FEATURES}, units {UNITS})",
                    "value": mine,
                    "unit": "samples/s",
                    "baseline": base,
                    "ratio": mine / base,
                }
            )
    return rows


def _fmt(v):
    if v is None:
        return ""
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def to_markdown(sections: dict) -> str:
    import tensorflow as tf

    lines = [
        f"# seqapps benchmark results\n\nMachine: {platform.machine()}, {platform.processor() or 'CPU'}, "
        f"{__import__('os').cpu_count()} cores; TensorFlow {tf.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n"
        "Ratios are measured side by side in this one run (value / baseline).\n"
    ]
    for title, rows in sections.items():
        lines.append(f"## {title}\n")
        lines.append("| benchmark | value | unit | baseline | ratio |")
        lines.append("|---|---:|---|---:|---:|")
        for r in rows:
            lines.append(
                f"| {r['benchmark']} | {_fmt(r['value'])} | {r['unit']} | {_fmt(r.get('baseline'))} | "
                f"{_fmt(r.get('ratio'))} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(what: str = "all", quick: bool = False, out: str | Path = "bench/results.md") -> int:
    from seqapps import registry

    sections = {}
    if what in ("all", "layers"):
        print("[bench] custom cells vs Keras built-ins ...", flush=True)
        sections["Custom cells vs Keras built-in layers (CPU, samples/s; baseline = keras.layers)"] = layer_rows(quick)
    apps = registry.available() if what == "all" else ([what] if what != "layers" else [])
    for name in apps:
        app = registry.get_app(name)
        model_dir = Path(app.default_model_dir or f"trained/{name}")
        if not model_dir.exists():
            print(f"[bench] {name}: no shipped model in {model_dir}; skipped")
            continue
        print(f"[bench] {name} ...", flush=True)
        rows = app.bench(model_dir)
        if rows:
            sections[f"{name} ({model_dir})"] = rows
    md = to_markdown(sections)
    print(md)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    return 0

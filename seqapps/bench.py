"""Benchmarks (``make bench``): ratios measured side by side in one run, never asserted by tests.

* ``layers``: training and inference samples/s of each seqapps cell (through `seqapps.layers.RNN`)
  against the Keras built-in layer with the same weights, batch 64, T=100, input 64, units 128.
* each app's ``App.bench(model_dir, quick)`` rows for its shipped model;
* every shipped SavedModel and TFLite file: latency, size and task metric (`shipped_model_rows`).

Functions compared with each other are timed in alternating rounds (`interleaved_times`), and their rows give
the lowest and highest single-round ratio beside the median's; the report records the load average and warns
when other work shared the machine.

Results are printed and written to ``bench/results.md`` by a full run (``seqapps bench``, ``make bench``),
the report the README quotes. A part (``seqapps bench layers``) or a ``--quick`` run writes
``bench/results-<part>[-quick].md`` instead (ignored by git), so it never replaces the full report.
"""

from __future__ import annotations

import os
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


def interleaved_times(fns: dict, rounds: int, calls: int = 3) -> dict:
    """Seconds per call of each function in each round, the functions timed in turn within every round (fair
    under noisy load), after two warm-up calls each (the first traces)."""
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
    return times


def medians(times: dict) -> dict:
    """Median seconds per call of each function over `interleaved_times`'s rounds."""
    return {name: float(np.median(v)) for name, v in times.items()}


def ratio_range(times: dict, value: str, baseline: str, speed: bool = False) -> str:
    """Lowest and highest per-round ratio of ``value`` to ``baseline`` (seconds per round from
    `interleaved_times`), as "a–b": how far one round's ratio strays from the median's. ``speed``: the ratio
    of rates (baseline seconds / value seconds), as for samples/s."""
    r = np.asarray(times[value]) / np.asarray(times[baseline])
    r = 1 / r if speed else r
    return f"{r.min():.3g}–{r.max():.3g}"


def _layer_fns(layer, x, y) -> tuple:
    """(train, inference) callables for one layer on the Keras backend in use; each returns a NumPy value,
    so a timed call includes the device's work (GPU kernels run asynchronously)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        opt = keras.optimizers.Adam(1e-3)

        @tf.function
        def train():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(layer(x, training=True) - y))
            grads = tape.gradient(loss, layer.trainable_variables)
            opt.apply_gradients(zip(grads, layer.trainable_variables))
            return loss

        infer = tf.function(lambda: layer(x))
        return (lambda: train().numpy()), (lambda: infer().numpy())
    # JAX and PyTorch: Keras's own compiled steps (jax.jit on JAX; eager on PyTorch)
    model = keras.Sequential([keras.Input(tuple(x.shape[1:])), layer])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return (lambda: model.train_on_batch(x, y)), (lambda: model.predict_on_batch(x))


def device_label() -> str:
    """The Keras backend and the device the benchmarks ran on, e.g. ``tensorflow 2.21.0, CPU``."""
    import keras

    from seqapps.layers.base import gpu_available

    backend = keras.backend.backend()
    version = getattr(__import__(backend), "__version__", "?")  # the backends' module names: tensorflow, jax, torch
    device = "CPU"
    if gpu_available():
        if backend == "torch":
            import torch

            device = torch.cuda.get_device_name(0)
        elif backend == "jax":
            import jax

            device = jax.devices()[0].device_kind
        else:
            device = "GPU"
    return f"{backend} {version}, {device}"


def layer_pairs() -> list[tuple]:
    """(name, seqapps layer, Keras built-in layer) for the three recurrent layers, as the benchmarks pair them."""
    import keras

    from seqapps import layers as sl

    return [
        ("SimpleRNN", sl.SimpleRNN, keras.layers.SimpleRNN),
        ("LSTM", sl.LSTM, keras.layers.LSTM),
        ("GRU", sl.GRU, keras.layers.GRU),
    ]


def layer_rows(quick: bool = False) -> list[dict]:
    """seqapps layers against the Keras built-ins with the same weights, on the backend and device in use.
    On a GPU, LSTM and GRU are also timed with ``use_cudnn=False`` (the layer's own loop), against the
    built-in's cuDNN kernel."""
    import keras

    from seqapps.layers.base import gpu_available

    pairs = layer_pairs()
    gpu = gpu_available()
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32"))
    y = keras.ops.convert_to_tensor(rng.normal(size=(BATCH, UNITS)).astype("float32"))
    rounds = 3 if quick else 15
    rows = []
    for name, ours_cls, keras_cls in pairs:
        theirs = keras_cls(UNITS)
        theirs(x)
        variants = {"keras": theirs, "seqapps": ours_cls(UNITS)}
        if gpu and name != "SimpleRNN":
            variants["seqapps own loop"] = ours_cls(UNITS, use_cudnn=False)
        fns = {}
        for label, layer in variants.items():
            if layer is not theirs:
                layer(x)
                layer.set_weights(theirs.get_weights())
            fns[f"{label} train"], fns[f"{label} inference"] = _layer_fns(layer, x, y)
        times = interleaved_times(fns, rounds)
        t = medians(times)
        for mode in ("train", "inference"):
            base = BATCH / t[f"keras {mode}"]
            for label in variants:
                if label == "keras":
                    continue
                mine = BATCH / t[f"{label} {mode}"]
                suffix = " (use_cudnn=False)" if label == "seqapps own loop" else ""
                rows.append(
                    {
                        "benchmark": f"{name}{suffix} {mode} (batch {BATCH}, T={STEPS}, in {FEATURES}, units {UNITS})",
                        "value": mine,
                        "unit": "samples/s",
                        "baseline": base,
                        "ratio": mine / base,
                        "range": ratio_range(times, f"{label} {mode}", f"keras {mode}", speed=True),
                    }
                )
    return rows


# ---------------------------------------------------------------------------------------------- shipped models
def _variant_metric(name: str, meta: dict, file: str):
    """(metric name, value of the artifact ``file``, value of the Keras model) from an export's metadata.json."""
    if name == "sentiment":
        p = meta.get("parity", {})
        for rep in (p.get(k, {}) for k in ("float32", "dynamic", "int8", "gpu")):
            if rep.get("file") == file:
                return "accuracy (held-out)", rep.get("accuracy"), p.get("keras_accuracy")
    if name == "speech":
        c = meta.get("export_checks", {})
        for rep in (c.get(k, {}) for k in ("float32", "dynamic", "int8", "gpu")):
            if rep.get("file") == file:
                return "accuracy (held-out speakers)", rep.get("accuracy"), c.get("keras_accuracy")
    if name == "translate":
        t = meta.get("tflite", {})
        for rep in (t.get(k, {}) for k in ("float32", "dynamic", "int8", "gpu")):
            if rep.get("file") == file:
                return (
                    "greedy BLEU (200 test sentences)",
                    rep.get("bleu_greedy"),
                    t.get("keras_greedy_bleu_same_sentences"),
                )
    if name in ("forecast", "weather"):
        for rep in meta.get("tflite", {}).values():
            if isinstance(rep, dict) and rep.get("file") == file:
                return "max abs diff vs Keras (target units)", rep.get("max_abs_diff"), 0.0
    return "", None, None


def _tflite_inputs(details, example: dict, rng) -> dict:
    """Inputs for a signature: the example (or another signature's output) where name and shape match, else
    valid values: ids 2-49, masks of ones, zero states, other floats random normal."""
    out = {}
    for name, d in details.items():
        shape, dtype = tuple(d["shape"]), d["dtype"]
        ex = example.get(name)
        if ex is not None and np.asarray(ex).shape[1:] == shape[1:] and np.asarray(ex).dtype.kind == "f":
            out[name] = np.asarray(ex)[:1].astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            out[name] = rng.integers(2, 50, shape).astype(dtype)
        elif "mask" in name:
            out[name] = np.ones(shape, dtype)
        elif "state" in name:
            out[name] = np.zeros(shape, dtype)
        else:
            out[name] = rng.normal(size=shape).astype(dtype)
    return out


def _producers_first(runners: dict) -> list[str]:
    """Signature names, those whose outputs feed another's inputs first (translate: encode, then decode_step
    on encode's outputs)."""
    outputs = {s: set(r.get_output_details()) for s, r in runners.items()}

    def consumes(s):
        return any(set(runners[s].get_input_details()) & outputs[o] for o in runners if o != s)

    return sorted(runners, key=consumes)


def _saved_model_example(name: str, folder: Path, example: dict) -> tuple[dict, str]:
    """The SavedModel rows' input and a note for their label. Sentiment's TFLite files always run ``max_len``
    tokens (their input is padded to it), while its SavedModel runs as many as the longest text has: its rows
    time texts of ``max_len`` tokens (the example's words repeated), so that the two latencies compare."""
    if name != "sentiment":
        return example, ""
    from seqapps import config as config_lib
    from seqapps.sentiment.config import SentimentConfig

    max_len = config_lib.read(SentimentConfig, folder / "config.yaml").max_len
    texts = [" ".join((str(t).split() * max_len)[:max_len]) for t in example["text"]]
    return {"text": np.array(texts, dtype=object)}, f", {max_len} tokens"


# Variants an app builds on request but does not ship (they move the forecasts too much):
# ``make bench`` exports each from the shipped model into a temporary folder and measures it with the rest.
ON_REQUEST = {
    "forecast": ("forecast", ["tflite_int8=true"], "model_int8.tflite"),
    "weather": ("forecast", ["tflite_int8=true"], "model_int8.tflite"),
}


def _build_on_request(name: str, folder: Path, tmp: Path):
    """(path of the variant built from ``folder``, the export's metadata), or None when none is defined."""
    import json

    from seqapps import cli

    if name not in ON_REQUEST:
        return None
    app, overrides, file = ON_REQUEST[name]
    out = tmp / name
    args = ["export", app, "--model", str(folder), "--out", str(out)]
    for kv in overrides:
        args += ["--set", kv]
    print(f"[bench] building {file} of {name} (not shipped): seqapps {' '.join(args)}", flush=True)
    if cli.main(args) != 0 or not (out / file).is_file():
        raise RuntimeError(f"bench: building {file} for {name} failed")
    return out / file, json.loads((out / "metadata.json").read_text())


def shipped_model_rows(quick: bool = False) -> list[dict]:
    """For every shipped model: SavedModel latency at batch 1 and 32, and for every .tflite its size,
    latency with 1 thread (each signature) and its task metric next to the Keras model's; plus the
    ON_REQUEST variants, built for this run (not in quick mode)."""
    import json
    import tempfile

    import tensorflow as tf

    from seqapps.export import examples, saved_model, tflite

    reps = 3 if quick else 10
    rng = np.random.default_rng(0)
    rows = []

    def tflite_row(name, path, meta, example, label):
        interp = tflite.interpreter(path, num_threads=1)
        runners = {sig: interp.get_signature_runner(sig) for sig in interp.get_signature_list()}
        parts, produced = [], {}
        for sig in _producers_first(runners):
            runner = runners[sig]
            feed = _tflite_inputs(runner.get_input_details(), {**example, **produced}, rng)
            parts.append((sig, 1000 * median_seconds(lambda r=runner, f=feed: r(**f), reps)))
            produced.update({k: np.array(v) for k, v in runner(**feed).items()})
        metric, value, keras_value = _variant_metric(name, meta, path.name)
        return {
            "model": name,
            "artifact": label,
            "mb": path.stat().st_size / 1e6,
            "ms": sum(ms for _, ms in parts),
            "per_signature": " + ".join(f"{s} {ms:.3g}" for s, ms in parts) if len(parts) > 1 else "",
            "metric": metric,
            "value": value,
            "keras": keras_value,
        }

    with tempfile.TemporaryDirectory(prefix="seqapps-bench-") as tmp:
        for name in examples.shipped():
            folder = examples.folder(name)
            meta = json.loads((folder / "metadata.json").read_text())
            example = examples.EXAMPLES[name]()
            fn = tf.saved_model.load(str(saved_model.latest(folder))).signatures["serving_default"]
            request, note = _saved_model_example(name, folder, example)
            for batch in (1, 32):
                args = {
                    k: tf.constant(np.resize(np.asarray(v), (batch, *np.asarray(v).shape[1:])))
                    for k, v in request.items()
                }
                n = reps if batch == 1 else max(3, reps // 3)
                ms = 1000 * median_seconds(lambda args=args, fn=fn: fn(**args), n)
                rows.append({"model": name, "artifact": f"SavedModel, batch {batch}{note}", "mb": None, "ms": ms})
            for path in sorted(folder.glob("*.tflite")):
                rows.append(tflite_row(name, path, meta, example, path.name))
            built = None if quick else _build_on_request(name, folder, Path(tmp))
            if built is not None:
                path, built_meta = built
                rows.append(
                    tflite_row(name, path, built_meta, example, f"{path.name} (built for this run, not shipped)")
                )
            print(f"[bench] shipped {name}: {len([r for r in rows if r['model'] == name])} rows", flush=True)
    return rows


def shipped_markdown(rows: list[dict]) -> str:
    lines = [
        "## Shipped models: SavedModel and TFLite (1 thread) latency, size, task metric vs Keras\n\n"
        "SavedModel rows: the example request of `seqapps.export.examples` (sentiment: its texts repeated to "
        "max_len tokens, the fixed length its TFLite files always run); TFLite rows: one call of each signature "
        "with the example input where it fits the fixed shape, else valid values (random ids, masks of ones, "
        "zero states, encode's outputs for decode_step). TFLite variants: "
        "`model.tflite` float32; `model_gpu.tflite` float16 weights (recurrent loops unrolled, for GPU "
        "delegates); `model_dynamic.tflite` dynamic-range (int8 weights, float activations); "
        "`model_int8.tflite` int8 weights and activations, calibrated (tensors that int8 would flatten stay "
        "float). Rows marked *built for this run* are variants the app makes on request but does not ship.\n",
        "| model | artifact | size MB | latency ms | task metric | this artifact | Keras model |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        ms = f"{r['ms']:.3g}" + (f" ({r['per_signature']})" if r.get("per_signature") else "")
        mb = f"{r['mb']:.2f}" if r.get("mb") is not None else ""
        val = "" if r.get("value") is None else f"{r['value']:.4g}"
        ker = "" if r.get("keras") is None else f"{r['keras']:.4g}"
        lines.append(f"| {r['model']} | {r['artifact']} | {mb} | {ms} | {r.get('metric', '')} | {val} | {ker} |")
    return "\n".join(lines) + "\n"


def _fmt(v):
    if v is None:
        return ""
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def load_average() -> float | None:
    """The machine's load average over the last minute (None where the system does not report one)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_note(load: float | None) -> str:
    """A warning when other work shares the machine (load above half a core), else ""."""
    if load is None or load <= 0.5:
        return ""
    return (
        f"Warning: the load average was {load:.2f} when the run began: other work shared the machine, and "
        "the ratios below may be off by more than the per-round range shows. Rerun on an idle machine.\n"
    )


def to_markdown(sections: dict, quick: bool = False, load: float | None = None) -> str:
    import keras

    lines = [
        f"# seqapps benchmark results\n\nMachine: {platform.machine()}, {platform.processor() or 'CPU'}, "
        f"{os.cpu_count()} cores; Keras {keras.__version__} on {device_label()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (f"; load average {load:.2f} at the start" if load is not None else "")
        + ".\n"
        "Ratios are measured side by side in this one run (value / baseline); where the two were timed in "
        "alternating rounds, the last column gives the lowest and highest ratio of a single round.\n"
        + busy_note(load)
        + (
            "Quick run (`--quick`): a few rounds each, for a smoke test of the benchmarks; its ratios are "
            "noisy, so quote a full run.\n"
            if quick
            else ""
        )
    ]
    for title, rows in sections.items():
        lines.append(f"## {title}\n")
        lines.append("| benchmark | value | unit | baseline | ratio | ratio per round (min–max) |")
        lines.append("|---|---:|---|---:|---:|---:|")
        for r in rows:
            lines.append(
                f"| {r['benchmark']} | {_fmt(r['value'])} | {r['unit']} | {_fmt(r.get('baseline'))} | "
                f"{_fmt(r.get('ratio'))} | {r.get('range', '')} |"
            )
        lines.append("")
    return "\n".join(lines)


def default_out(what: str = "all", quick: bool = False) -> Path:
    """``bench/results.md`` for the full run; ``bench/results-<what>[-quick].md`` for a part or a quick run."""
    if what == "all" and not quick:
        return Path("bench/results.md")
    return Path(f"bench/results-{what}{'-quick' if quick else ''}.md")


def main(what: str = "all", quick: bool = False, out: str | Path | None = None) -> int:
    out = Path(out) if out is not None else default_out(what, quick)
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder, not a file: give the Markdown file to write")

    apps = {}
    if what != "layers":  # the layers alone run on every Keras backend; the apps need TensorFlow
        from seqapps import registry

        names = registry.available() if what == "all" else [what]
        apps = {name: registry.get_app(name) for name in names}  # an unknown name stops here, before any timing
    load = load_average()
    note = busy_note(load)
    if note:
        print(f"[bench] {note.strip()}", flush=True)
    sections = {}
    if what in ("all", "layers"):
        print("[bench] custom cells vs Keras built-ins ...", flush=True)
        title = f"Custom cells vs Keras built-in layers ({device_label()}, samples/s; baseline = keras.layers)"
        sections[title] = layer_rows(quick)
    for name, app in apps.items():
        from seqapps.app import shipped

        model_dir = shipped(app.default_model_dir or f"trained/{name}")
        if not model_dir.exists():
            print(f"[bench] {name}: no shipped model in {model_dir}; skipped")
            continue
        print(f"[bench] {name} ...", flush=True)
        rows = app.bench(model_dir, quick=quick)
        if rows:
            sections[f"{name} ({model_dir})"] = rows
    md = to_markdown(sections, quick, load)
    if what == "all":
        print("[bench] shipped models: SavedModel and TFLite latency ...", flush=True)
        md += "\n" + shipped_markdown(shipped_model_rows(quick))
    print(md)
    from seqapps.export.atomic import atomic_write_text

    atomic_write_text(out, md)  # an interrupted run leaves the last results.md whole
    print(f"[bench] written to {out}")
    return 0

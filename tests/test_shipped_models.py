"""Every shipped SavedModel loads and answers its example request in a process without seqapps."""

from pathlib import Path

import numpy as np
import pytest

from seqapps.export import examples

OUTPUTS = {
    "translate": {"translation"},
    "sentiment": {"probabilities", "label"},
    "speech": {"probabilities", "label"},
    "forecast": {"quantiles"},
    "weather": {"quantiles"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", examples.shipped())
def test_example_request(name):
    inputs, outputs = examples.run(name)
    assert OUTPUTS[name] <= set(outputs), sorted(outputs)
    n = len(next(iter(inputs.values())))
    for key in OUTPUTS[name]:
        assert len(outputs[key]) == n
        if outputs[key].dtype.kind == "f":
            assert np.all(np.isfinite(outputs[key]))
    req, resp = examples.rest(inputs, outputs)
    assert len(req["instances"]) == n and len(resp["predictions"]) == n


def test_printed_curl_commands_send_whole_requests(tmp_path, monkeypatch, capsys):
    """`python -m seqapps.export.examples`: a short body is inline and shell-quoted, a long one (a window of
    raw rows) goes whole into a file for `curl -d @FILE`; it was cut at 300 characters, mid-number."""
    import json
    import shlex

    fake = {
        "sentiment": ({"text": np.array(["it's good"], dtype=object)}, {"label": np.array(["positive"], dtype=object)})
    }
    fake["forecast"] = ({"window": np.ones((1, 40, 6), np.float32)}, {"quantiles": np.ones((1, 5, 3), np.float32)})
    monkeypatch.setattr(examples, "shipped", lambda: list(fake))
    monkeypatch.setattr(examples, "run", lambda name: fake[name])
    examples.main(["--requests", str(tmp_path / "req")])
    curls = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("curl -d")]
    bodies = [shlex.split(line.rstrip(" \\"))[2] for line in curls]
    assert json.loads(bodies[0]) == {"instances": ["it's good"]}
    assert bodies[1] == "@" + str(tmp_path / "req" / "forecast.json")
    assert np.shape(json.loads((tmp_path / "req" / "forecast.json").read_text())["instances"]) == (1, 40, 6)


def test_all_apps_ship_a_model():
    assert set(examples.EXAMPLES) == set(examples.shipped())


@pytest.mark.parametrize("name", examples.shipped())
def test_every_shipped_model_has_a_gpu_variant_and_report(name):
    import json

    from seqapps.export import tflite

    folder = examples.folder(name)
    meta = json.loads((folder / "metadata.json").read_text())
    report = json.loads((folder / "gpu_compatibility.json").read_text())
    assert set(report) == {p.name for p in folder.glob("*.tflite")}
    assert "WHILE" not in tflite.op_names(folder / "model_gpu.tflite")
    assert report["model_gpu.tflite"]["gpu_delegate_ready"] and meta["gpu_compatibility"] == {
        k: {f: v[f] for f in ("analyzer_verdict", "control_flow_ops", "stays_on_cpu", "gpu_delegate_ready")}
        for k, v in report.items()
    }


@pytest.mark.parametrize("name", examples.shipped())
def test_metadata_lists_the_files_that_ship(name):
    from seqapps.export import metadata

    folder = examples.folder(name)
    assert metadata.read(folder / "metadata.json")["files"] == metadata.file_sizes(folder)


def test_shipped_benchmark_table_pieces():
    import json

    from seqapps import bench

    meta = json.loads((examples.folder("sentiment") / "metadata.json").read_text())
    metric, value, keras_value = bench._variant_metric("sentiment", meta, "model_gpu.tflite")
    assert metric.startswith("accuracy") and value == meta["parity"]["gpu"]["accuracy"]
    assert keras_value == meta["parity"]["keras_accuracy"]
    assert bench._variant_metric("sentiment", meta, "nope.tflite") == ("", None, None)
    details = {
        "token_ids": {"shape": np.array([1, 5]), "dtype": np.int32},
        "x": {"shape": np.array([1, 3]), "dtype": np.float32},
    }
    feed = bench._tflite_inputs(details, {"x": np.ones((2, 3))}, np.random.default_rng(0))
    assert feed["token_ids"].shape == (1, 5) and feed["token_ids"].min() >= 2 and np.all(feed["x"] == 1)
    feed = bench._tflite_inputs(
        {"source_mask": {"shape": np.array([1, 4]), "dtype": np.float32}, "state": details["x"]},
        {},
        np.random.default_rng(0),
    )
    assert np.all(feed["source_mask"] == 1) and np.all(feed["state"] == 0)
    md = bench.shipped_markdown(
        [{"model": "m", "artifact": "a.tflite", "mb": 1.5, "ms": 2.0, "metric": "acc", "value": 0.9, "keras": 0.91}]
    )
    assert "| m | a.tflite | 1.50 | 2 | acc | 0.9 | 0.91 |" in md


def test_benchmark_inputs_compare_like_with_like():
    """Sentiment's SavedModel rows time texts of max_len tokens, the length its TFLite files always run; the
    translate decoder is timed on what its encoder gave."""
    import tensorflow as tf

    from seqapps import bench
    from seqapps.export import saved_model, tflite

    folder = examples.folder("sentiment")
    request, note = bench._saved_model_example("sentiment", folder, examples.EXAMPLES["sentiment"]())
    fn = tf.saved_model.load(str(saved_model.latest(folder))).signatures["classify_details"]
    out = fn(text=tf.constant(request["text"]))
    assert note == ", 400 tokens" and out["token_ids"].shape == (2, 400) and min(out["num_tokens"]) >= 400
    same = examples.EXAMPLES["speech"]()
    assert bench._saved_model_example("speech", examples.folder("speech"), same) == (same, "")

    interp = tflite.interpreter(examples.folder("translate") / "model.tflite")
    runners = {s: interp.get_signature_runner(s) for s in interp.get_signature_list()}
    assert sorted(runners) == ["decode_step", "encode"] and bench._producers_first(runners) == ["encode", "decode_step"]


def test_benchmark_report_gives_the_spread_and_flags_noisy_runs():
    from seqapps import bench

    times = {"ours": [1.0, 2.0, 1.0], "keras": [2.0, 2.0, 4.0]}
    assert bench.ratio_range(times, "ours", "keras") == "0.25–1"
    assert bench.ratio_range(times, "ours", "keras", speed=True) == "1–4"
    row = {"benchmark": "GRU", "value": 2.0, "unit": "samples/s", "baseline": 1.0, "ratio": 2.0, "range": "1–4"}
    md = bench.to_markdown({"layers": [row]}, quick=True, load=1.7)
    assert "| GRU | 2 | samples/s | 1 | 2 | 1–4 |" in md
    assert "load average 1.70" in md and "Warning: the load average was 1.70" in md and "Quick run" in md
    md = bench.to_markdown({"layers": [row]}, load=0.1)
    assert "Warning" not in md and "Quick run" not in md and "load average 0.10 at the start" in md
    assert bench.busy_note(None) == ""


def test_a_partial_or_quick_benchmark_never_replaces_the_full_report(tmp_path, monkeypatch, capsys):
    from seqapps import bench

    row = {"benchmark": "GRU train", "value": 2.0, "unit": "samples/s", "baseline": 1.0, "ratio": 2.0}
    monkeypatch.setattr(bench, "layer_rows", lambda quick: [row])
    monkeypatch.chdir(tmp_path)
    full = tmp_path / "bench" / "results.md"
    full.parent.mkdir()
    full.write_text("the full report\n")
    assert bench.main("layers", quick=True) == 0
    assert full.read_text() == "the full report\n"
    assert "| GRU train | 2 |" in (tmp_path / "bench" / "results-layers-quick.md").read_text()
    assert "written to bench/results-layers-quick.md" in capsys.readouterr().out
    assert bench.default_out("layers") == Path("bench/results-layers.md")
    assert bench.default_out("all", quick=True) == Path("bench/results-all-quick.md")
    assert bench.default_out() == Path("bench/results.md")
    assert bench.main("layers", out=tmp_path / "mine.md") == 0 and (tmp_path / "mine.md").is_file()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        bench.main("layers", out=tmp_path)


@pytest.mark.parametrize("name", examples.shipped())
def test_benchmark_covers_every_variant_with_its_task_metric(name):
    """`make bench` measures float32, float16 (the GPU file), dynamic-range and int8 for every shipped model:
    shipped, or built for the run (bench.ON_REQUEST); each shipped file has its task metric in metadata.json."""
    import json

    from seqapps import bench

    folder = examples.folder(name)
    meta = json.loads((folder / "metadata.json").read_text())
    shipped = {p.name for p in folder.glob("*.tflite")}
    built = {bench.ON_REQUEST[name][2]} if name in bench.ON_REQUEST else set()
    assert not shipped & built, "a shipped variant is also rebuilt by the benchmark"
    assert {"model.tflite", "model_gpu.tflite", "model_dynamic.tflite", "model_int8.tflite"} <= shipped | built
    for file in shipped - {"stream.tflite"}:
        metric, value, keras_value = bench._variant_metric(name, meta, file)
        assert metric and value is not None and keras_value is not None, file


def test_bench_rows_of_a_shipped_model(monkeypatch, tmp_path):
    """`make bench` times the shipped models: its loop runs (on the small stocks model, quick) from any folder."""
    from seqapps import bench

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(examples, "shipped", lambda: ["forecast"])
    rows = bench.shipped_model_rows(quick=True)
    assert {r["artifact"] for r in rows} >= {"SavedModel, batch 1", "model.tflite", "model_gpu.tflite"}
    assert all(r["ms"] > 0 for r in rows)

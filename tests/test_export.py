"""Export core: SavedModel (TF Serving layout, plain-TensorFlow process, saved_model_cli) and TFLite."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from seqapps import layers as sl
from seqapps.export import atomic_dir, metadata, saved_model, tflite
from tests.helpers import PYTHON, SingleFn, max_diff, tflite_outputs

T, D = 6, 3


def _model(kind):
    inp = keras.Input((T, D), batch_size=1)
    cell = sl.make_cell(kind, 5)
    h = keras.layers.Bidirectional(sl.RNN(cell, return_sequences=True))(inp)
    out = keras.layers.Dense(2)(sl.RNN(sl.make_cell(kind, 4))(h))
    return keras.Model(inp, out)


def _x(batch=1, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, T, D)).astype("float32")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_tflite_float32_matches_keras_with_builtin_ops_only(kind):
    model = _model(kind)
    x = _x()
    blob, y = tflite_outputs(model, x)
    assert max_diff(y, model(x)) < 1e-5
    ops = tflite.op_names(blob)
    assert "WHILE" in ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops


def test_quantized_variants_convert_and_run():
    model = _model("gru")
    x = _x()
    ref = np.asarray(model(x))
    sizes = {}
    rep = lambda: ([_x(1, s)] for s in range(8))  # noqa: E731
    for variant in ("float16", "dynamic", "int8"):
        if variant == "int8":  # the calibrator cannot run WHILE loops: int8 is traced unrolled
            with pytest.raises(tflite.ExportError, match="unrolled"):
                tflite_outputs(model, x, variant, representative=rep)
            with tflite.unrolled(model):
                blob, y = tflite_outputs(model, x, variant, representative=rep)
            assert "WHILE" not in tflite.op_names(blob)
        else:
            blob, y = tflite_outputs(model, x, variant)
        sizes[variant] = len(blob)
        assert np.all(np.isfinite(y))
        assert max_diff(y, ref) < 0.25, variant  # quantised: close, not exact
    assert not any(layer.unroll for layer in model._flatten_layers() if isinstance(layer, keras.layers.RNN))
    with pytest.raises(ValueError, match="representative"):
        tflite_outputs(model, x, "int8")
    with pytest.raises(ValueError, match="unknown TFLite variant"):
        tflite.convert("/nonexistent", "int4")


def test_int8_keeps_tensors_with_an_empty_calibrated_range_in_float(tmp_path):
    """A product that is zero on every calibration sample (here of relu(-|x|); in an unrolled RNN, of the zero
    initial state) gets a degenerate int8 scale, and XNNPACK then refuses the model. `convert` keeps it float."""
    inp = keras.Input((8,), batch_size=1)
    zero = keras.layers.Lambda(lambda v: keras.ops.relu(-keras.ops.abs(v)))(inp)
    out = keras.layers.Dense(4, name="live")(inp) + keras.layers.Dense(4, name="dead")(zero)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    samples = [rng.normal(size=(1, 8)).astype("float32") for _ in range(16)]
    rep = lambda: ([s] for s in samples)  # noqa: E731
    module = SingleFn(model, (1, 8))
    tf.saved_model.save(module, str(tmp_path), signatures=module.signatures())
    plain = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path))
    plain.optimizations, plain.representative_dataset = [tf.lite.Optimize.DEFAULT], rep
    assert tflite.degenerate_int8_tensors(plain.convert())  # what the second pass repairs
    blob = tflite.convert(tmp_path, "int8", representative_dataset=rep)
    assert not tflite.degenerate_int8_tensors(blob)
    y = tflite.run(tflite.interpreter(blob), "serving_default", x=samples[0])["y"]  # XNNPACK builds it
    assert max_diff(y, model(samples[0])) < 0.05


def test_long_tensor_names_are_shortened_without_changing_the_model():
    from tensorflow.lite.tools import flatbuffer_utils

    model = _model("gru")
    x = _x()
    blob, y = tflite_outputs(model, x)
    assert max(len(n) for n in tflite.tensor_names(blob)) <= tflite.MAX_NAME  # converted files are already short
    fat = flatbuffer_utils.convert_bytearray_to_object(blob)
    inputs = set(fat.subgraphs[0].inputs)
    for i, tensor in enumerate(fat.subgraphs[0].tensors):  # names like an unrolled loop's fused ops
        if i not in inputs:
            tensor.name = b";".join([tensor.name] * 40)
    fat = bytes(flatbuffer_utils.convert_object_to_bytearray(fat))
    slim = tflite.shorten_long_names(fat)
    names = tflite.tensor_names(slim)
    assert len(slim) < len(fat) and max(len(n) for n in names) <= tflite.MAX_NAME
    assert len(set(names)) == len(names)  # still unique
    y_slim = tflite.run(tflite.interpreter(slim), "serving_default", x=x)["y"]
    np.testing.assert_array_equal(y_slim, y)
    assert tflite.shorten_long_names(blob) is blob  # nothing to do: unchanged


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_saved_model_serving_layout_runs_without_project(tmp_path, kind):
    model = _model(kind)
    module = SingleFn(model, [None, T, D])
    path = saved_model.write(module, tmp_path / "export", module.signatures())
    assert path == tmp_path / "export" / "saved_model" / "1"
    assert saved_model.write(module, tmp_path / "export", module.signatures()).name == "2"
    assert saved_model.latest(tmp_path / "export").name == "2"
    x = _x(batch=3)
    out = saved_model.run_isolated(path, {"x": x})
    assert max_diff(out["y"], model(x)) < 1e-5


def test_plain_tensorflow_process_is_kept_reports_errors_and_is_restarted_when_it_died(tmp_path):
    """`run_isolated` starts one plain TensorFlow process and keeps it for the next checks; a SavedModel that
    fails there is an error with the traceback, and a process that died is replaced by a new one."""
    model = _model("gru")
    module = SingleFn(model, [None, T, D])
    path = saved_model.write(module, tmp_path / "export", module.signatures())
    x = _x(batch=2)
    assert max_diff(saved_model.run_isolated(path, {"x": x})["y"], model(x)) < 1e-5
    worker = saved_model._PlainTensorFlow._current
    assert max_diff(saved_model.run_isolated(path, {"x": x[:1]})["y"], model(x[:1])) < 1e-5
    assert saved_model._PlainTensorFlow._current is worker and worker.proc.poll() is None  # the same process
    with pytest.raises(RuntimeError, match=r"(?s)failed in a plain TensorFlow process.*Traceback"):
        saved_model.run_isolated(tmp_path / "nothing", {"x": x})
    with pytest.raises(RuntimeError, match=r"(?s)failed in a plain TensorFlow process.*'y'"):
        saved_model.run_isolated(path, {"y": x})  # the signature has no input y
    assert saved_model._PlainTensorFlow._current is worker and worker.proc.poll() is None
    worker.proc.kill()
    worker.proc.wait()
    assert max_diff(saved_model.run_isolated(path, {"x": x})["y"], model(x)) < 1e-5
    again = saved_model._PlainTensorFlow._current
    assert again is not worker and again.proc.pid != worker.proc.pid


def test_plain_tensorflow_process_that_crashes_or_hangs_is_a_clear_error(tmp_path, monkeypatch):
    """A process that ends, or does not answer in time, during a check: an error that says so (with what it
    printed), and the next check starts a new process."""
    saved_model._PlainTensorFlow.close_current()  # an earlier test's process, which the fake scripts replace
    monkeypatch.setattr(saved_model._PlainTensorFlow, "_current", None)
    # what the process prints, and a reply left by an interrupted check, are not taken for this check's reply
    chatty = (
        "import json, sys\nprint(json.dumps({'id': 'ready'}), flush=True)\nfor line in sys.stdin:\n"
        "    req, out = json.loads(line)\n    json.dump({'y': [1.5]}, open(out, 'w'))\n"
        "    print('TensorFlow says hello', flush=True)\n"
        "    print(json.dumps({'id': 'an interrupted check', 'ok': False, 'error': 'not this one'}), flush=True)\n"
        "    print(json.dumps({'id': out, 'ok': True}), flush=True)\n"
    )
    monkeypatch.setattr(saved_model, "_ISOLATED", chatty)
    assert saved_model.run_isolated(tmp_path, {"x": [1.0]})["y"].tolist() == [1.5]
    chatted = saved_model._PlainTensorFlow._current
    chatted.proc.kill()  # the next check starts a new process, with the next script
    chatted.proc.wait()
    ready = 'import sys, time; print(\'{"id": "ready"}\', flush=True); sys.stdin.readline(); '
    crash = ready + "print('core dumped', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(saved_model, "_ISOLATED", crash)
    with pytest.raises(
        RuntimeError, match=r"(?s)ended \(exit status 3\) before it could run the SavedModel.*core dumped"
    ):
        saved_model.run_isolated(tmp_path, {"x": [1.0]})
    crashed = saved_model._PlainTensorFlow._current
    assert crashed is not chatted and not os.path.exists(chatted.folder)  # replaced, its private folder removed
    monkeypatch.setattr(saved_model, "_ISOLATED", ready + "time.sleep(60)")  # hangs on the request
    with pytest.raises(RuntimeError, match=r"took more than 1 s to run the SavedModel"):
        saved_model.run_isolated(tmp_path, {"x": [1.0]}, timeout=1)
    hung = saved_model._PlainTensorFlow._current
    assert hung is not crashed and hung.proc.poll() is not None  # stopped, not left running
    monkeypatch.setattr(saved_model._PlainTensorFlow, "_current", None)


def test_saved_model_cli_run(tmp_path):
    model = _model("lstm")
    module = SingleFn(model, [None, T, D])
    path = saved_model.write(module, tmp_path, module.signatures())
    x = _x(batch=2, seed=5)
    np.save(tmp_path / "x.npy", x)
    cli = Path(PYTHON).with_name("saved_model_cli")
    proc = subprocess.run(
        [
            str(cli),
            "run",
            "--dir",
            str(path),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"x={tmp_path / 'x.npy'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = proc.stdout.split("Result for output key y:")[1]
    values = np.array([float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", printed)])
    assert values.shape == (4,) and max_diff(values, np.asarray(model(x)).ravel()) < 1e-4


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "ok").write_text("1")
    assert (final / "ok").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic_dir(final):
            pass


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """A power cut after the rename must not leave an empty or partial file under the final name: each file is
    synced before it is renamed into place, and the folder after."""
    import os

    from seqapps.export import atomic

    events = []
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))))
    real_replace, real_rename = os.replace, Path.rename
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("rename", str(b))), real_replace(a, b)))
    atomic.atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert (tmp_path / "f.bin").read_bytes() == b"data"
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "rename", "fsync"] and events[2][1] == str(tmp_path)

    events.clear()
    monkeypatch.setattr(Path, "rename", lambda a, b: (events.append(("rename", str(b))), real_rename(a, b))[1])
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")
    synced_first = {path for kind, path in events[: events.index(("rename", str(tmp_path / "out")))]}
    assert any(p.endswith("/sub/w.bin") for p in synced_first) and events[-1] == ("fsync", str(tmp_path))


def test_failed_saved_model_export_leaves_no_version_folder(tmp_path):
    class Broken(saved_model.KerasModule):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x):
            return {"y": x}

    with pytest.raises(ValueError, match="serving_default"):
        saved_model.write(Broken(_model("gru")), tmp_path, {"other": None})
    assert not (tmp_path / "saved_model").exists() or list((tmp_path / "saved_model").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="export the model first"):
        saved_model.latest(tmp_path)


def test_metadata_records_versions_and_sizes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"123")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_bytes(b"ab")
    # written after the listing, or not part of the model: never listed with sizes that would be stale
    for name in ("metadata.json", "MODEL_CARD.md", ".hidden", "run/logs/events"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("an earlier export")
    assert metadata.file_sizes(tmp_path) == {"a.bin": 3, "assets/vocab.txt": 2}
    meta = metadata.write(
        tmp_path / "metadata.json",
        app="x",
        parity={"max_abs_diff": np.float32(1e-7)},
        files=metadata.file_sizes(tmp_path),
    )
    assert meta["versions"]["tensorflow"] == tf.__version__
    loaded = metadata.read(tmp_path / "metadata.json")
    assert loaded["files"]["a.bin"] == 3 and loaded["parity"]["max_abs_diff"] == pytest.approx(1e-7)
    # strict JSON for services in other languages: the learning-rate column that a resume with lr_plateau added
    # is NaN for the epochs before it, and is written as null, as is an infinity (np scalars and arrays too)
    history = {"loss": [0.5, 0.4], "learning_rate": [float("nan"), 0.001], "x": np.array([np.inf, 1.0])}
    metadata.write(tmp_path / "metadata.json", training={"history": history, "best": np.float32("nan")})
    text = (tmp_path / "metadata.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    training = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metadata.json"))["training"]
    assert training == {"history": {"loss": [0.5, 0.4], "learning_rate": [None, 0.001], "x": [None, 1.0]}, "best": None}
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gpu_variant_is_unrolled_float16_and_reported(tmp_path, kind):
    from seqapps.export import gpu

    model = _model(kind)
    x = _x()
    while_blob, _ = tflite_outputs(model, x)
    gpu_blob = tflite.convert_unrolled(model, lambda: SingleFn(model, x.shape))
    y = tflite.run(tflite.interpreter(gpu_blob), "serving_default", x=x)["y"]
    assert max_diff(y, model(x)) < 1e-2  # float16 weights
    assert "WHILE" not in tflite.op_names(gpu_blob)
    (tmp_path / "model.tflite").write_bytes(while_blob)
    (tmp_path / "model_gpu.tflite").write_bytes(gpu_blob)
    summary = gpu.summarize(tmp_path)
    assert summary["model.tflite"]["control_flow_ops"] == ["WHILE"]
    assert "WHILE" in summary["model.tflite"]["stays_on_cpu"] and not summary["model.tflite"]["gpu_delegate_ready"]
    assert summary["model_gpu.tflite"]["stays_on_cpu"] == [] and summary["model_gpu.tflite"]["gpu_delegate_ready"]
    assert (tmp_path / gpu.REPORT_FILE).is_file()
    with pytest.raises(FileNotFoundError, match="no .tflite files"):
        gpu.write_reports(tmp_path / "assets")


def test_gpu_report_parses_analyzer_warnings():
    from seqapps.export import gpu

    text = (
        "Subgraph#0 main(T#0) -> [T#3]\n"
        "  Op#0 FULLY_CONNECTED(T#0, T#1) -> [T#2]\n"
        "  Op#1 CUMSUM(T#2, T#4) -> [T#3]\n"
        "GPU COMPATIBILITY WARNING: Not supported op CUMSUM\n"
        "\nGPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1\n"
    )
    rep = gpu.parse(text)
    assert rep["analyzer_flagged_ops"] == {"CUMSUM": ["Not supported op CUMSUM"]}
    assert rep["stays_on_cpu"] == ["CUMSUM"] and rep["subgraphs"] == 1
    assert rep["analyzer_verdict"] == "incompatible ops found" and not rep["gpu_delegate_ready"]


def test_remove_other_variants_deletes_only_tflite_files_this_export_does_not_write(tmp_path):
    for name in ("model.tflite", "model_int8.tflite", "model_gpu.tflite", "notes.tflite", "stream.tflite"):
        (tmp_path / name).write_bytes(b"x")
    tflite.remove_other_variants(tmp_path, ("float32", "dynamic", "gpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.tflite",
        "model_gpu.tflite",
        "notes.tflite",
        "stream.tflite",
    ]


def test_example_requests_find_the_shipped_models_from_any_folder(tmp_path, monkeypatch):
    from seqapps.export import examples

    monkeypatch.chdir(tmp_path)
    assert examples.shipped() == ["translate", "sentiment", "speech", "forecast", "weather"]
    assert examples._window("weather").shape[0] == 1

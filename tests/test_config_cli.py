import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from seqapps import cli, config, registry
from seqapps.translate.config import TranslateConfig


def test_defaults_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nunits: 32\nattention: multiplicative\n")
    cfg = config.load(TranslateConfig(), f, ["epochs=5", "learning_rate=0.01", "verbose=0"])
    assert (cfg.epochs, cfg.units, cfg.attention, cfg.learning_rate, cfg.verbose) == (5, 32, "multiplicative", 0.01, 0)
    assert cfg.batch_size == TranslateConfig().batch_size
    config.save(cfg, tmp_path / "saved.yaml")
    assert config.read(TranslateConfig, tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize("app", registry.available())
def test_print_config_shows_the_resolved_config_that_config_reads_back(app, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", app, "--tiny", "--set", "epochs=2", "--set", "seed=7", "--print-config"]) == 0
    text = capsys.readouterr().out
    expected = config.load(registry.get_app(app).tiny_config(), None, ["epochs=2", "seed=7"])
    assert config.read(type(expected), _write(tmp_path / "printed.yaml", text)) == expected
    assert cli.main(["train", app, "--config", str(tmp_path / "printed.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["printed.yaml"]  # nothing trained, no runs/ folder
    assert cli.main(["train", app, "--set", "epochs=0", "--print-config"]) == 2  # checked like a training's
    assert "epochs" in capsys.readouterr().err
    # --data SPEC is --set data=SPEC, and a --set data= after it wins
    assert cli.main(["train", app, "--data", "some/file", "--print-config"]) == 0
    assert "data: some/file\n" in capsys.readouterr().out
    assert cli.main(["train", app, "--data", "some/file", "--set", "data=other", "--print-config"]) == 0
    assert "data: other\n" in capsys.readouterr().out


def _write(path, text):
    path.write_text(text)
    return path


def test_unknown_key_names_the_valid_keys(tmp_path):
    with pytest.raises(config.ConfigError, match="unknown config key.*epoch.*Valid keys:.*epochs"):
        config.load(TranslateConfig(), None, ["epoch=3"])
    f = tmp_path / "bad.yaml"
    f.write_text("unitz: 3\n")
    with pytest.raises(config.ConfigError, match="bad.yaml: unknown config key"):
        config.load(TranslateConfig(), f)


def test_type_errors_are_clear():
    with pytest.raises(config.ConfigError, match="epochs: expected int"):
        config.load(TranslateConfig(), None, ["epochs=many"])
    with pytest.raises(config.ConfigError, match="key=value"):
        config.load(TranslateConfig(), None, ["epochs"])
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(TranslateConfig(), "/nonexistent.yaml")
    cfg = config.load(TranslateConfig(), None, ["learning_rate=1", "patience=0"])
    assert isinstance(cfg.learning_rate, float) and cfg.patience == 0


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["epochs=-1"], "--set: epochs=-1 must be >= 1"),
        (["units=0"], "units=0 must be >= 1"),
        (["dropout=1"], "dropout=1.0 must be in [0, 1)"),
        (["learning_rate=0"], "learning_rate=0.0 must be > 0"),
        (["clipnorm=-0.5"], "clipnorm=-0.5 must be >= 0"),
        (["val_fraction=0.6", "test_fraction=0.4"], "val_fraction + test_fraction = 1 leaves no training data"),
        (["verbose=3"], "verbose=3 must be 0 (silent), 1 (progress bar) or 2"),
    ],
)
def test_values_out_of_range_stop_before_any_data_is_read(sets, expected):
    with pytest.raises(config.ConfigError) as err:
        config.load(TranslateConfig(), None, sets)
    assert expected in str(err.value)


def test_evaluate_options_are_checked_like_training_ones(capsys):
    for name, option in (("translate", "eval_examples=-3"), ("forecast", "arima_windows=-1")):
        assert cli.main(["evaluate", name, "--set", option]) == 2  # the shipped model's config, before any data
        assert f"evaluate --set: {option} must be >= 0" in capsys.readouterr().err


def test_every_default_tiny_and_shipped_config_is_in_range():
    from pathlib import Path

    root = Path(cli.__file__).resolve().parent.parent
    for name in registry.available():
        app = registry.get_app(name)
        for cfg in (app.default_config(), app.tiny_config()):
            config.check_ranges(cfg)
        for f in (root / "seqapps" / name / "configs").glob("*.yaml"):
            config.load(app.default_config(), f)
    for folder in (root / "trained").iterdir():
        app = registry.get_app(json.loads((folder / "metadata.json").read_text())["app"])
        config.read(type(app.default_config()), folder / "config.yaml")


def test_yaml_that_does_not_parse_names_the_file_and_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nunits: [32\n")
    with pytest.raises(config.ConfigError, match=r"c.yaml, line 3, column 1: not valid YAML"):
        config.load(TranslateConfig(), f)


def test_a_model_of_another_app_is_refused_by_name(tmp_path, capsys):
    (tmp_path / "metadata.json").write_text(json.dumps({"app": "speech"}))
    assert cli.main(["evaluate", "forecast", "--model", str(tmp_path)]) == 2
    assert f"{tmp_path} holds a speech model (its metadata.json says app: speech), not a forecast model" in (
        capsys.readouterr().err
    )
    assert cli.main(["predict", "translate", "--model", str(tmp_path), "hola"]) == 2
    assert "not a translate model" in capsys.readouterr().err
    assert cli.main(["export", "sentiment", "--model", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a sentiment model" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_every_field_of_every_app_config_is_typed():
    for name in registry.available():
        app = registry.get_app(name)
        for f in dataclasses.fields(app.config_class):
            assert f.type in ("int", "float", "str", "bool", int, float, str, bool), (name, f.name, f.type)


def test_registry_errors_and_help():
    with pytest.raises(KeyError, match="available apps"):
        registry.get_app("nope")
    assert "translate" in registry.available()
    parser = cli.build_parser()
    assert "train" in parser.format_help()


def test_predict_without_an_app_is_an_error_and_help_is_not(capsys):
    assert cli.main(["predict"]) == 2
    out, err = capsys.readouterr()
    assert not out and "usage: seqapps predict APP" in err and "error: name the app" in err
    assert cli.main(["predict", "--help"]) == 0
    assert "apps: " in capsys.readouterr().out


def test_cli_reports_bad_config_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "seqapps", "train", "translate", "--set", "epoch=3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown config key" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "seqapps", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "seqapps train translate" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "seqapps", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("seqapps 0.") and ", tensorflow 2." in proc.stdout
    assert f"python {sys.version.split()[0]}" in proc.stdout


def test_missing_model_folder_names_the_fix(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # no trained/ here: the default is looked up in the checkout of the package
    checkout = Path(cli.__file__).resolve().parent.parent
    for name in ("forecast", "translate"):
        app = registry.get_app(name)
        assert cli._model_dir(app, None) == checkout / "trained" / name
    # a default found in neither place, and a --model that does not exist: errors that name the fix
    monkeypatch.setattr(type(registry.get_app("forecast")), "default_model_dir", Path("trained/no-such-model"))
    assert cli.main(["evaluate", "forecast"]) == 2
    err = capsys.readouterr().err
    assert "model folder trained/no-such-model (relative to" in err and "pass --model DIR" in err
    assert cli.main(["evaluate", "sentiment", "--model", str(tmp_path / "nope")]) == 2
    assert "not found: check the --model path" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "reader, what",
    [
        ("seqapps.sentiment.data:read_table", "data file"),
        ("seqapps.sentiment.data:read_imdb", "IMDB data"),
        ("seqapps.translate.data:read_anki", "corpus file"),
        ("seqapps.speech.data:load_folder", "speech data folder"),
    ],
)
def test_data_that_is_not_there_names_the_path_where_it_was_looked_for_and_the_fix(reader, what, tmp_path, monkeypatch):
    import importlib

    module, name = reader.split(":")
    read = getattr(importlib.import_module(module), name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        read("../shared/data/nothing-here")
    text = str(err.value)
    assert text.startswith(f"{what} ../shared/data/nothing-here not found (relative to {tmp_path})")
    assert "pass another with --data PATH (export: --set data=PATH)" in text
    with pytest.raises(FileNotFoundError) as err:
        read(tmp_path / "absolute")
    assert f"{tmp_path / 'absolute'} not found;" in str(err.value)  # an absolute path needs no folder
    if what != "IMDB data":  # which reads a folder or an archive file
        wrong, state = tmp_path, "is a folder, not a file"
        if "folder" in what:
            wrong, state = tmp_path / "f.txt", "is a file, not a folder"
            wrong.touch()
        with pytest.raises(FileNotFoundError, match=f"{what} {wrong} {state}"):
            read(wrong)


@pytest.mark.parametrize("name, per_line", [("sentiment", "review"), ("translate", "sentence")])
def test_predict_file_that_is_missing_a_folder_empty_or_not_text_is_refused_by_name(name, per_line, tmp_path, capsys):
    files = {
        "folder": (tmp_path / "folder", "is a folder"),
        "missing": (tmp_path / "missing.txt", "not found"),
        "empty": (tmp_path / "empty.txt", "is empty"),
        "binary": (tmp_path / "binary.txt", "looks binary (NUL bytes)"),
        "utf16": (tmp_path / "utf16.txt", "is UTF-16 text; save it as UTF-8"),
        "utf32": (tmp_path / "utf32.txt", "is UTF-32 text; save it as UTF-8"),  # it was called UTF-16
    }
    files["folder"][0].mkdir()
    files["empty"][0].write_text(" \n\n")
    files["binary"][0].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64) + bytes(range(256)))
    files["utf16"][0].write_text("Tengo hambre.\n", encoding="utf-16")
    files["utf32"][0].write_text("Tengo hambre.\n", encoding="utf-32")
    for path, expected in files.values():  # all refused before the model is loaded: no model folder needed
        assert cli.main(["predict", name, "--model", str(tmp_path), "--file", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"error: {path} {expected}" in err and "Traceback" not in err, err
        if "UTF-" not in expected:
            assert f"one {per_line} per line" in err


def test_input_files_may_be_pipes(tmp_path):
    """<(cat file) is a pipe, not a regular file: it was reported as not found."""
    import threading

    from seqapps.data import read_input_file
    from seqapps.speech import audio

    for payload, read in (
        (b"great film\n", lambda p: read_input_file(p, "review")),
        (audio.encode_wav(np.zeros(160, np.float32), 16000, 16), lambda p: audio.load_audio(p).shape),
    ):
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        writer = threading.Thread(target=fifo.write_bytes, args=(payload,))
        writer.start()
        try:
            got = read(fifo)
        finally:  # a reader that refused the pipe never opened it: open it here, so that the writer ends
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            writer.join()
            fifo.unlink()
        assert got == (payload if isinstance(got, bytes) else (160,))


def test_a_file_given_as_out_or_a_folder_given_as_input_is_refused_by_name(tmp_path, capsys):
    from seqapps.forecast import data as forecast_data
    from seqapps.forecast.config import ForecastConfig
    from seqapps.speech import audio

    f = tmp_path / "notes.txt"
    f.write_text("keep me\n")
    for command in (["train", "forecast", "--tiny"], ["export", "forecast", "--model", str(tmp_path)]):
        assert cli.main([*command, "--out", str(f)]) == 2
        assert f"--out {f} is a file, not a folder" in capsys.readouterr().err
    assert f.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="a folder, not an audio file"):
        audio.load_audio(tmp_path)
    with pytest.raises(FileNotFoundError, match="a folder, not a CSV file"):
        forecast_data.read_csv(tmp_path, ForecastConfig())


def test_device_runtimes_name_a_wrong_or_incomplete_model_folder(tmp_path, capsys):
    from pathlib import Path

    from seqapps.sentiment import tflite_runtime as sentiment_runtime
    from seqapps.translate import tflite_runtime as translate_runtime

    trained = Path(cli.__file__).resolve().parent.parent / "trained"
    cases = [
        (translate_runtime, [str(trained / "sentiment"), "hola"], "holds a sentiment model"),
        (sentiment_runtime, [str(tmp_path), "fine"], "lacks assets/tokenizer.json, assets/vocab.txt"),
        (sentiment_runtime, [str(trained / "sentiment"), "--model-file", "x.tflite", "ok"], "it has model.tflite"),
        (sentiment_runtime, [str(tmp_path / "nope"), "ok"], "not found"),
    ]
    for runtime, argv, expected in cases:
        with pytest.raises(SystemExit) as stop:
            runtime.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and expected in err and "Traceback" not in err, err


def test_helper_commands_stop_with_a_message_not_a_traceback(tmp_path, capsys):
    from seqapps.experiments import weather_sweep
    from seqapps.export import gpu

    for main, argv, expected in (
        (gpu.main, [str(tmp_path)], f"no .tflite files in {tmp_path}; export the model first"),
        (weather_sweep.main, ["--seeds", "42,x"], "--seeds '42,x': give whole numbers separated by commas"),
    ):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and expected in err, err


@pytest.mark.parametrize("stop", [KeyboardInterrupt, ValueError("parity check failed")], ids=["ctrl-c", "error"])
@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "out"])
def test_an_export_that_stops_midway_leaves_the_folder_as_it_was(stop, in_place, tmp_path, monkeypatch, capsys):
    """`seqapps export` builds the whole export in a copy of the output folder: files written before a failure
    or Ctrl-C never reach it (each file was atomic, the export was not)."""
    app = registry.get_app("forecast")
    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text(json.dumps({"app": "forecast"}))
    (model / "model.tflite").write_text("old")
    out = model if in_place else tmp_path / "out"
    if not in_place:  # another folder that holds a model of this app, which the export replaces
        out.mkdir()
        (out / "metadata.json").write_text(json.dumps({"app": "forecast"}))
        (out / "model.tflite").write_text("old")
    before = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}

    def half_written(self, model_dir, out_dir=None, **kwargs):
        (out_dir / "model.tflite").write_text("new")
        (out_dir / "saved_model").mkdir()
        raise stop

    monkeypatch.setattr(type(app), "export", half_written)
    rc = cli.main(["export", "forecast", "--model", str(model), *([] if in_place else ["--out", str(out)])])
    assert rc == (130 if stop is KeyboardInterrupt else 2)
    assert {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] + ([] if in_place else ["out"])

    def complete(self, model_dir, out_dir=None, **kwargs):
        (out_dir / "model.tflite").write_text("new")

    monkeypatch.setattr(type(app), "export", complete)
    assert cli.main(["export", "forecast", "--model", str(model), *([] if in_place else ["--out", str(out)])]) == 0
    assert (out / "model.tflite").read_text() == "new"
    assert f"[forecast] exported to {out}" in capsys.readouterr().out


def test_staged_export_follows_links_names_dot_and_replaces_only_a_model(tmp_path, monkeypatch, capsys):
    """Through a symbolic link the real folder is updated and the link kept; `--model .` works; an --out that
    holds a model of the app gets the new model alone (no stale model.keras of the old one); a non-empty
    folder that holds no model is refused."""
    from seqapps.export.atomic import destination

    app = registry.get_app("forecast")
    seen = []

    def export(self, model_dir, out_dir=None, **kwargs):
        seen.append((sorted(p.name for p in out_dir.iterdir()), destination(out_dir)))
        (out_dir / "model.tflite").write_text("new")
        (out_dir / "metadata.json").write_text(json.dumps({"app": "forecast"}))

    monkeypatch.setattr(type(app), "export", export)
    real = tmp_path / "real"
    real.mkdir()
    (real / "metadata.json").write_text(json.dumps({"app": "forecast"}))
    (real / "model.keras").write_text("this model")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert cli.main(["export", "forecast", "--model", str(link)]) == 0
    assert link.is_symlink() and (real / "model.tflite").read_text() == "new" and (real / "model.keras").exists()
    assert seen[-1] == (["metadata.json", "model.keras"], link)  # in place: a copy, the final name known
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # nothing left beside them
    monkeypatch.chdir(real)
    assert cli.main(["export", "forecast", "--model", "."]) == 0 and (real / "model.keras").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "metadata.json").write_text(json.dumps({"app": "forecast"}))
    (other / "model.keras").write_text("an older model")
    assert cli.main(["export", "forecast", "--model", str(real), "--out", str(other)]) == 0
    assert seen[-1][0] == [] and sorted(p.name for p in other.iterdir()) == ["metadata.json", "model.tflite"]
    assert "(the model it held was replaced)" in capsys.readouterr().out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert cli.main(["export", "forecast", "--model", str(real), "--out", str(mine)]) == 2
    assert "is not empty and holds no model" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_out_holding_another_apps_model_is_refused(tmp_path, capsys):
    other = tmp_path / "sentiment"
    other.mkdir()
    (other / "metadata.json").write_text(json.dumps({"app": "sentiment"}))
    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text(json.dumps({"app": "forecast"}))
    for command in (["train", "forecast", "--tiny"], ["export", "forecast", "--model", str(model)]):
        assert cli.main([*command, "--out", str(other)]) == 2
        assert f"--out {other} holds a sentiment model" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["metadata.json"]


def test_ctrl_c_during_training_says_how_to_resume(tmp_path, monkeypatch, capsys):
    app = registry.get_app("forecast")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(app), "train", interrupted)
    out = tmp_path / "my run"
    assert cli.main(["train", "forecast", "--tiny", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "seqapps train: interrupted" in err and "Traceback" not in err
    assert f"continue with: seqapps train forecast --tiny --out '{out}' --resume" in err
    monkeypatch.setattr(type(app), "predict", interrupted)
    assert cli.main(["predict", "forecast", "--model", str(tmp_path), "--csv", "x.csv"]) == 130
    err = capsys.readouterr().err
    assert "seqapps predict: interrupted" in err and "Traceback" not in err


def test_ctrl_c_after_training_ended_points_to_export_not_resume(tmp_path, monkeypatch, capsys):
    """Once training ends its checkpoint is deleted, so --resume would start again from epoch 1: a Ctrl-C while
    the model is scored says so and how to export it, and one during the export says how to finish it."""
    app = registry.get_app("forecast")
    out = tmp_path / "run"

    def train(self, cfg, out_dir, resume=False):
        state["app"] = self  # the CLI's own app object, which it watches for the export
        (out_dir / "run" / "backup").mkdir(parents=True)  # training, checkpointed
        if state["stage"] != "training":
            (out_dir / "run" / "backup").rmdir()  # fit ended: Keras deleted the checkpoint
            (out_dir / "model.keras").write_bytes(b"saved")
            # file times come from the kernel's coarse clock, a few ms behind time.time(): as if it lagged
            os.utime(out_dir / "model.keras", (time.time() - 0.3,) * 2)
        if state["stage"] == "exporting":
            self.export(out_dir, out_dir)
        raise KeyboardInterrupt

    def export(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(app), "train", train)
    monkeypatch.setattr(type(app), "export", export)
    state = {}
    for state["stage"], expected in (
        ("training", f"continue with: seqapps train forecast --tiny --out {out} --resume"),
        (
            "scoring",
            f"{out / 'model.keras'} was saved, but not scored or exported: export it with: seqapps export "
            f"forecast --model {out} (seqapps evaluate forecast --model {out} scores it), or train again with: "
            f"seqapps train forecast --tiny --out {out} --resume (the checkpoint was deleted",
        ),
        ("exporting", f"training had finished; finish the export with: seqapps export forecast --model {out}"),
    ):
        shutil.rmtree(out, ignore_errors=True)
        assert cli.main(["train", "forecast", "--tiny", "--out", str(out)]) == 130
        assert expected in capsys.readouterr().err
    assert "export" not in vars(state["app"]) and state["app"].export  # the watching wrapper is gone again


def test_a_failed_export_after_training_leaves_the_new_model_alone(tmp_path, monkeypatch, capsys):
    """Training into a folder that held a model: the export is all or nothing, and the old model's exported
    files go first, so a failed export never leaves the new vocabulary beside the old model's TFLite files."""
    import os

    from seqapps.app import previous_export
    from seqapps.export.metadata import ExportError

    app = registry.get_app("forecast")
    out = tmp_path / "m"
    (out / "saved_model" / "1").mkdir(parents=True)
    old = ("model.tflite", "saved_model/1/saved_model.pb", "config.yaml", "notes.txt", "MODEL_CARD.md")
    for rel in old:
        (out / rel).write_text("old")
    (out / "metadata.json").write_text(json.dumps({"files": {r: 3 for r in old[:4]}}))  # exports list every file
    for path in out.rglob("*"):
        os.utime(path, (1, 1))

    def train(self, cfg, out_dir, resume=False):
        previous = previous_export(out_dir)
        (out_dir / "config.yaml").write_text("new")  # in place: the same inode, another time (set to 1 s above)
        (out_dir / "model.keras").write_text("new")
        return self.export_trained(out_dir, previous)

    def export(self, model_dir, out_dir=None, **kwargs):
        (out_dir / "model.tflite").write_text("new")
        if state["fail"]:
            raise ExportError("model.tflite differs from the Keras model")
        (out_dir / "metadata.json").write_text("{}")

    monkeypatch.setattr(type(app), "train", train)
    monkeypatch.setattr(type(app), "export", export)
    state = {"fail": True}
    assert cli.main(["train", "forecast", "--tiny", "--out", str(out)]) == 2
    assert (
        f"the model was trained and saved in {out}, but not exported; once the cause is fixed: seqapps export "
        f"forecast --model {out}" in capsys.readouterr().err
    )
    files = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert files == {"config.yaml": "new", "model.keras": "new", "notes.txt": "old"}  # notes.txt: the user's
    state["fail"] = False
    assert cli.main(["train", "forecast", "--tiny", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "metadata.json",
        "model.keras",
        "model.tflite",
        "notes.txt",
    ]
    # listed paths count where they lead: assets/../notes/plot.png is the user's
    (out / "assets" / "x.txt").parent.mkdir()
    (out / "notes").mkdir()
    for rel in ("assets/x.txt", "notes/plot.png"):
        (out / rel).write_text("old")
    (out / "metadata.json").write_text(
        json.dumps({"files": {"assets/x.txt": 3, "assets/../notes/plot.png": 3, "x": None}})
    )
    assert sorted(previous_export(out)) == ["assets/x.txt", "metadata.json"]
    (out / "metadata.json").write_text(json.dumps({"files": 5}))  # a damaged listing: the files it lists are none
    assert sorted(previous_export(out)) == ["metadata.json"]


def test_an_old_export_file_that_cannot_be_removed_is_a_note_and_the_rest_go(tmp_path, monkeypatch, capsys):
    """A file of the previous export that cannot be deleted (read-only, on a share) stays beside the new model,
    with a note naming it; the others go, and folders left empty with them."""
    from pathlib import Path

    from seqapps.app import drop_previous_export, previous_export

    out = tmp_path / "m"
    (out / "saved_model" / "1").mkdir(parents=True)
    for rel in ("model.tflite", "saved_model/1/saved_model.pb"):
        (out / rel).write_text("old")
    (out / "metadata.json").write_text(json.dumps({"files": {"model.tflite": 3, "saved_model/1/saved_model.pb": 3}}))
    previous = previous_export(out)
    unlink = Path.unlink

    def refuse(self, *args, **kwargs):
        if self.name == "model.tflite":
            raise PermissionError(13, "Permission denied", str(self))
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    assert sorted(drop_previous_export(out, previous)) == ["metadata.json", "saved_model/1/saved_model.pb"]
    note = capsys.readouterr().out
    assert f"note: cannot remove {out / 'model.tflite'}, a file of the model {out} held before" in note
    assert "Permission denied" in note
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite"]  # saved_model/1 went with its file


@pytest.mark.parametrize(
    "app, setting",
    [("translate", "test_fraction=0.3"), ("translate", "direction=eng->spa"), ("sentiment", "seed=7"),
     ("speech", "units=8"), ("forecast", "quantiles=0.05,0.5,0.95")],
)  # fmt: skip
def test_export_set_takes_only_the_export_settings(tmp_path, capsys, app, setting):
    """export --set writes config.yaml, which evaluate trusts for the held-out split and predict for the model:
    a split, data direction or network setting changed there would score training examples as test ones."""
    from pathlib import Path

    model = Path(__file__).parent.parent / "trained" / app
    assert cli.main(["export", app, "--model", str(model), "--out", str(tmp_path / "out"), "--set", setting]) == 2
    key = setting.split("=")[0]
    assert f"export --set {key}=" in (err := capsys.readouterr().err) and "the trained model fixes this" in err
    assert "Retrain with the new value instead" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "app, setting",
    [("translate", "direction=eng->spa"), ("translate", "units=7"), ("translate", "attention=bogus"),
     ("sentiment", "max_len=5"), ("sentiment", "truncate=head")],
)  # fmt: skip
def test_evaluate_refuses_settings_the_model_fixes(capsys, app, setting):
    """evaluate --set direction=eng->spa fed English to the Spanish-source model and scored it against Spanish;
    sentiment's max_len=5 was ignored by the SavedModel, and the report then counted texts "truncated to 5"."""
    from pathlib import Path

    model = Path(__file__).parent.parent / "trained" / app
    assert cli.main(["evaluate", app, "--model", str(model), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert f"evaluate --set {setting}: the " in err and "model fixes this" in err
    assert ("evaluate takes eval_examples" if app == "translate" else "evaluate takes data, text_column") in err
    if setting.startswith("direction"):  # with a decoding key too, the message is still about the direction
        args = ["evaluate", app, "--model", str(model), "--set", setting, "--set", "beam_width=2"]
        assert cli.main(args) == 2 and "evaluate --set direction=eng->spa: the trained model fixes this" in (
            capsys.readouterr().err
        )


def test_damaged_model_files_and_non_utf8_arguments_get_errors_that_name_them(tmp_path):
    """A damaged tokenizer.json said only 'Expecting value: line 1 column 1', an empty model.tflite 'mmap of size 0
    requested'; a text argument that is not UTF-8 stopped `predict` for every text."""
    import os

    from seqapps.data import argument_text
    from seqapps.export import litert, metadata

    (tmp_path / "tokenizer.json").write_text("")
    with pytest.raises(
        ValueError, match=r"tokenizer.json is not valid JSON .*: a damaged file; export the model again"
    ):
        metadata.read(tmp_path / "tokenizer.json")
    (tmp_path / "model.tflite").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model.tflite is not a readable TFLite model .*export the model again"):
        litert.interpreter(tmp_path / "model.tflite")
    latin1 = os.fsdecode(b"caf\xe9 was great")  # how Python passes such an argument on
    assert argument_text(latin1) == "caf\ufffd was great" and argument_text("café") == "café"


def test_export_refuses_an_out_folder_that_holds_the_model(tmp_path, capsys):
    model = tmp_path / "runs" / "v2"
    model.mkdir(parents=True)
    (model / "model.keras").write_bytes(b"weights")
    (model / "metadata.json").write_text(json.dumps({"app": "forecast"}))
    assert cli.main(["export", "forecast", "--model", str(model), "--out", str(tmp_path / "runs")]) == 2
    assert f"--out {tmp_path / 'runs'} holds the model folder {model}" in capsys.readouterr().err
    assert (model / "model.keras").read_bytes() == b"weights"


def test_evaluate_takes_data_from_set_as_from_data(tmp_path, monkeypatch, capsys):
    app = registry.get_app("forecast")
    seen = []
    monkeypatch.setattr(
        type(app), "evaluate", lambda self, model_dir, data=None, **options: seen.append((data, options))
    )
    (tmp_path / "metadata.json").write_text(json.dumps({"app": "forecast"}))
    assert cli.main(["evaluate", "forecast", "--model", str(tmp_path), "--set", "data=a.csv", "--set", "seed=1"]) == 0
    assert seen == [("a.csv", {"seed": "1"})]
    assert cli.main(["evaluate", "forecast", "--model", str(tmp_path), "--data", "a.csv", "--set", "data=b.csv"]) == 2
    assert "--data a.csv and --set data=b.csv name different data" in capsys.readouterr().err


def test_split_settings_are_fixed_on_the_training_data_only():
    from seqapps.forecast.app import _split_keys
    from seqapps.forecast.config import ForecastConfig

    keys = ("seed", "test_start", "val_fraction", "split")
    trained = ForecastConfig(data="a.csv", seed=1, test_start="2019-01-01")
    for change in ({"seed": 2}, {"test_start": "2018-01-01"}, {"val_fraction": 0.3}, {"split": "series"}):
        key = next(iter(change))
        with pytest.raises(config.ConfigError, match=f"evaluate --set {key}=.*: on the data this model was trained on"):
            config.check_split_kept(trained, dataclasses.replace(trained, **change), True, keys)
        config.check_split_kept(trained, dataclasses.replace(trained, **change), False, keys)  # other data
    config.check_split_kept(trained, dataclasses.replace(trained, epochs=3), True, keys)
    # forecast: the seed draws held-out series only; a later start scores part of the test period
    assert _split_keys(trained, dataclasses.replace(trained, test_start="2018-06-01")) == ["split", "test_start"]
    assert _split_keys(trained, dataclasses.replace(trained, test_start="2019-06-01")) == ["split"]
    by_series = dataclasses.replace(trained, split="series", test_start="")
    assert _split_keys(by_series, by_series) == ["split", "seed", "test_fraction", "test_start"]


def test_predict_file_dash_reads_standard_input(monkeypatch, capsys):
    import io

    from seqapps.data import read_input_file

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Go.\nVe.\n")))
    assert read_input_file("-", "sentence") == b"Go.\nVe.\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"  \n")))
    assert cli.main(["predict", "translate", "--file", "-"]) == 2  # refused before the model is loaded
    assert "error: standard input is empty; --file takes a text file with one sentence per line" in (
        capsys.readouterr().err
    )


def test_floats_in_e_notation_and_checks_before_any_data_is_read(tmp_path):
    from seqapps.forecast.config import ForecastConfig

    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 3e-4\n")  # YAML 1.1 reads this as a string
    assert config.load(TranslateConfig(), f).learning_rate == 3e-4
    cfg = config.load(TranslateConfig(), None, ["learning_rate=1e-3", "epochs=1e1"])
    assert (cfg.learning_rate, cfg.epochs) == (1e-3, 10)
    with pytest.raises(config.ConfigError, match="epochs: expected int"):
        config.load(TranslateConfig(), None, ["epochs=2.5"])
    # numbers are decimal: YAML 1.1 read 010 as octal 8 and 1:30 as 90 (base 60)
    assert config.load(TranslateConfig(), None, ["epochs=010", "learning_rate=010"]).epochs == 10
    for item in ("epochs=1:30", "epochs=0x10", "learning_rate=1:30"):
        with pytest.raises(config.ConfigError, match=f"{item.split('=')[0]}: expected .* \\(a decimal number\\)"):
            config.load(TranslateConfig(), None, [item])
    # so are they in a config file, which PyYAML would read as YAML 1.1 too
    f.write_text("epochs: 010\nbatch_size: 0032\n")
    assert (config.load(TranslateConfig(), f).epochs, config.load(TranslateConfig(), f).batch_size) == (10, 32)
    for text in ("epochs: 1:30", "epochs: 0x10", "learning_rate: .inf"):
        f.write_text(text + "\n")
        with pytest.raises(config.ConfigError, match=f"{text.split(':')[0]}: expected .* \\(a decimal number\\)"):
            config.load(TranslateConfig(), f)
    f.write_text("epochs: 3\n5: 1\ntrue: 2\n")  # keys that YAML reads as a number or a bool
    with pytest.raises(config.ConfigError, match=r"c.yaml: unknown config key\(s\) 5, True for TranslateConfig"):
        config.load(TranslateConfig(), f)
    # seeds that NumPy and Keras refuse, and infinities, stop here rather than after the data is read
    for item, message in (
        ("seed=-1", r"seed=-1 must be in \[0, 4294967295\]"),
        ("seed=4294967296", r"seed=4294967296 must be in \[0, 4294967295\]"),
        ("learning_rate=inf", r"learning_rate=inf must be a finite number"),
        ("clipnorm=inf", r"clipnorm=inf must be a finite number"),
        ("learning_rate=nan", r"learning_rate=nan must be a finite number"),
        ("learning_rate=1" + "0" * 400, r"learning_rate: a 401-digit number is too large for a float"),
    ):
        with pytest.raises(config.ConfigError, match=message):
            config.load(TranslateConfig(), None, [item])
    assert config.load(TranslateConfig(), None, ["seed=4294967295"]).seed == 2**32 - 1
    from seqapps.sentiment.config import SentimentConfig  # a signed setting: deep_weight=nan mixed in NaN

    with pytest.raises(config.ConfigError, match=r"deep_weight=nan must be a finite number"):
        config.load(SentimentConfig(), None, ["deep_weight=nan"])
    with pytest.raises(config.ConfigError, match=r"seed=4294967295 must be in \[0, 4294967291\].*seed \+ 4"):
        config.load(ForecastConfig(), None, ["seed=4294967295", "ensemble=5"])
    for item, message in (
        ("distribute=mirored", "distribute='mirored' must be one of none, mirrored, multiworker"),
        ("mixed_precision=fp16", "mixed_precision='fp16' must be one of none, mixed_float16"),
        ("ema=1", r"ema=1.0 must be in \[0, 1\)"),
    ):
        with pytest.raises(config.ConfigError, match=message):
            config.load(TranslateConfig(), None, [item])
    with pytest.raises(config.ConfigError, match=r"lr_factor=0.0 must be in \(0, 1\)"):
        config.load(TranslateConfig(), None, ["lr_plateau=2", "lr_factor=0"])
    with pytest.raises(config.ConfigError, match="does not scale the loss that mixed_float16 needs"):
        config.load(TranslateConfig(), None, ["distribute=multiworker", "mixed_precision=mixed_float16"])


def test_lines_that_are_not_utf8_are_counted_by_line_not_by_replacement_character():
    """The note subtracted a count of characters from a count of lines: a line holding two U+FFFD written in the
    file hid a line with a bad byte."""
    from seqapps.data import invalid_utf8_lines

    raw = b"bad \xff byte\nlegit \xef\xbf\xbd\xef\xbf\xbd marks\nalso \xfe\xff bad\nfine\n"
    assert invalid_utf8_lines(raw) == 2
    assert invalid_utf8_lines("caf\u00e9 \ufffd\n".encode()) == 0

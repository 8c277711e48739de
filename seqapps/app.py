"""The small surface every application implements; the CLI and Makefile only use this."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqapps.config import TrainConfig


class App:
    """Base class of an application. Subclasses are registered with `seqapps.registry.register_app`."""

    name = "app"
    config_class: type[TrainConfig] = TrainConfig
    default_model_dir = None  # the shipped model, e.g. Path("trained/translate")
    # the settings that `seqapps export --set` may change: how the export is made and checked, and where the
    # training data is read. The others describe the trained model and its held-out split, which config.yaml
    # records for evaluate and predict: changed at export, they would describe another model or score a "test"
    # split that holds training examples. Nor are the samples that training keeps in run/ for the export (the
    # int8 calibration texts or clips, the test pairs): a setting that would not change them is left out. None: any.
    export_settings: tuple | None = None

    def default_config(self) -> TrainConfig:
        return self.config_class()

    def tiny_config(self) -> TrainConfig:
        """A configuration small enough for a test to train in seconds."""
        raise NotImplementedError

    def train(self, cfg, out_dir: Path, resume: bool = False) -> dict:
        """Train, evaluate on the test split, export; returns the metrics."""
        raise NotImplementedError

    def evaluate(self, model_dir: Path, data: str | None = None, **options) -> dict:
        raise NotImplementedError

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("inputs", nargs="*", help="inputs to run the model on")

    def predict(self, model_dir: Path, args: argparse.Namespace) -> None:
        raise NotImplementedError

    def export(self, model_dir: Path, out_dir: Path | None = None, model=None, cfg=None) -> Path:
        """SavedModel + TFLite files of a trained folder; ``cfg`` overrides the folder's config.yaml."""
        raise NotImplementedError

    def check_export_settings(self, saved, cfg) -> None:
        """Refuse ``export --set`` values (``cfg``, against the trained ``saved`` config) outside
        `export_settings`."""
        from seqapps import config as config_lib

        if self.export_settings is not None:
            takes = f"export takes only {', '.join(self.export_settings)}. Retrain with the new value instead"
            config_lib.refuse_fixed(saved, cfg, self.export_settings, "export --set", takes)

    def export_trained(self, out_dir, previous: dict, **kwargs):
        """The export at the end of `train`, once the new model and everything an export reads are in
        ``out_dir``: all or nothing, as ``seqapps export`` does it (built in a copy of the folder, swapped in at
        the end). ``previous`` (`previous_export`, taken when training began) names the files of the model the
        folder held before; `train` removes those still unchanged before it writes the new model, and this
        removes any left (for a `train` that did not): after a failed export the folder holds the new model
        alone, never its vocabulary beside the old model's TFLite files."""
        from seqapps.export.atomic import staged_dir

        drop_previous_export(out_dir, previous)
        with staged_dir(out_dir) as staging:
            return self.export(staging, staging, **kwargs)

    def bench(self, model_dir: Path, quick: bool = False) -> list[dict]:
        """Benchmark rows (``seqapps.bench.to_markdown``) of a trained folder; ``quick``: fewer repetitions."""
        return []


def progress_bar(total: int, unit: str, title: str):
    """At a terminal, print ``title`` and return a Keras progress bar over ``total`` items (call
    ``.update(done)``); None when standard output is not one, so that a pipe or a log gets the results alone."""
    if not sys.stdout.isatty():
        return None
    import keras

    print(title)
    return keras.utils.Progbar(total, unit_name=unit)


def shipped(path) -> Path:
    """``path`` (``trained/translate``, say) in the working folder when it is there, else in the checkout this
    package was installed from (``pip install -e``, as ``make`` does), so the shipped models are found from
    any folder."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    checkout = Path(__file__).resolve().parent.parent / path
    return checkout if checkout.exists() else path


# the kinds of file an export writes at the top of a model folder (below it: saved_model/ and assets/)
EXPORT_FILES = (".tflite", ".json", ".keras", ".yaml", ".md", ".npz")


def previous_export(folder) -> dict:
    """The files of the model export ``folder`` holds, taken when training into it begins: those its
    ``metadata.json`` lists (under ``saved_model/`` and ``assets/``, and files of `EXPORT_FILES` kinds at the
    top), ``metadata.json`` and the model card, each with its inode, modification time and size. A user's other
    files (a plot, notes) are not among them."""
    import json

    folder = Path(folder)
    try:
        listed = json.loads((folder / "metadata.json").read_text(encoding="utf-8")).get("files") or {}
    except (OSError, ValueError, AttributeError):
        listed = {}
    found = {}
    names = [rel for rel in listed if isinstance(rel, str)] if isinstance(listed, dict) else []
    for rel in ["metadata.json", "MODEL_CARD.md", *names]:
        path = folder / rel
        if not path.is_file() or path.is_symlink() or folder.resolve() not in path.resolve().parents:
            continue
        parts = path.resolve().relative_to(folder.resolve()).parts  # where it leads (assets/../notes: notes)
        if parts[0] in ("saved_model", "assets") if len(parts) > 1 else path.suffix in EXPORT_FILES:
            stat = path.stat()
            found[rel] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return found


def drop_previous_export(folder, previous: dict) -> list[str]:
    """Remove the files of ``previous`` (`previous_export`) that are unchanged since (a file training rewrote
    stays); returns their paths. Folders left empty go too."""
    folder = Path(folder)
    dropped = []
    for rel, was in previous.items():
        path = folder / rel
        try:
            stat = path.stat()
        except OSError:
            continue
        if (stat.st_ino, stat.st_mtime_ns, stat.st_size) == was:
            try:
                path.unlink()
            except OSError as exc:  # a read-only file: the new model is still written, beside it
                print(f"[seqapps] note: cannot remove {path}, a file of the model {folder} held before ({exc})")
                continue
            dropped.append(rel)
            for parent in path.parents:  # folders left empty (saved_model/1/variables, ...)
                if parent == folder or any(parent.iterdir()):
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
    return dropped

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

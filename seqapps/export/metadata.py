"""``metadata.json`` written next to every exported model: versions, config, data, sizes, parity."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import platform
from pathlib import Path

from seqapps.export.atomic import atomic_write_text


def versions() -> dict:
    import keras
    import tensorflow as tf

    import seqapps

    out = {
        "seqapps": seqapps.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }
    try:
        from importlib.metadata import version

        out["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - optional
        pass
    return out


# written from the metadata after it (their sizes are not known yet), or not part of the model: the training
# run's logs and checkpoints
NOT_LISTED = ("metadata.json", "MODEL_CARD.md", "run")


def file_sizes(root) -> dict:
    """Size in bytes of every file of the model folder ``root``, by path relative to it (hidden files and
    ``NOT_LISTED`` left out)."""
    root = Path(root)
    sizes = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not p.name.startswith(".") and rel.parts[0] not in NOT_LISTED:
            sizes[str(rel)] = p.stat().st_size
    return sizes


def write(path, **fields) -> dict:
    data = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    for k, v in fields.items():
        data[k] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
    atomic_write_text(path, json_text(data, indent=2, ensure_ascii=False) + "\n")
    return data


def json_text(obj, **kwargs) -> str:
    """``obj`` as strict JSON, which services in other languages can parse: a NaN or an infinity (e.g. a column
    of ``history`` that the epochs before a resume lack) is written as null, not as Python's ``NaN``."""
    return json.dumps(_finite(obj), allow_nan=False, default=_default, **kwargs)


def _finite(obj):
    import numpy as np  # imported once; later imports are a dictionary lookup

    if isinstance(obj, (np.generic, np.ndarray)):
        obj = obj.tolist()  # a Python scalar or nested lists
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def read(path) -> dict:
    """A JSON file of a model folder (``metadata.json``, ``assets/tokenizer.json``, ...); a damaged one is an
    error that names it, where ``json`` would say only "Expecting value: line 1 column 1"."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        from seqapps.export.atomic import destination

        shown = destination(Path(path).parent) / Path(path).name  # not the staging copy of an export in progress
        raise ValueError(
            f"{shown} is not valid JSON ({exc}): a damaged file; export the model again (an export reads the folder's "
            "metadata.json: delete a damaged one first)"
        ) from None


class ExportError(RuntimeError):
    """An export that must not be shipped: a TFLite file with ops that are not builtin, or an artifact that
    computes another function than the Keras model (`check_parity`). ``seqapps export`` stops with it, and its
    staged output folder is left as it was."""


# Largest difference from the Keras model that an artifact computing the same function in float32 may show
# (relative, or absolute for probabilities): float rounding gives 1e-7 to 1e-5; a conversion that went wrong
# gives far more. Quantized and float16 files are judged by their task metric instead, which is recorded.
PARITY_TOLERANCE = 1e-3


def check_parity(what: str, diff: float, tolerance: float = PARITY_TOLERANCE) -> None:
    """Stop an export whose float32 artifact ``what`` differs from the Keras model by more than ``tolerance``
    (NaN too): it would serve another model than the one trained and measured."""
    if not diff <= tolerance:
        raise ExportError(
            f"{what} differs from the Keras model by {diff:.3g} (at most {tolerance:g} is float rounding): the "
            "conversion went wrong, so the export stopped and the output folder was left as it was"
        )


def app_of(folder) -> str | None:
    """The app whose model ``folder`` holds, from its ``metadata.json``; None when there is none or it is
    unreadable (the app's own loading then reports what is wrong)."""
    try:
        app = json.loads((Path(folder) / "metadata.json").read_text(encoding="utf-8")).get("app")
    except (OSError, ValueError, AttributeError):
        return None
    return app if isinstance(app, str) else None


def check_model_folder(folder, app: str, files=()) -> Path:
    """``folder`` as a `Path`, or a clear error: it is not a folder, its ``metadata.json`` (written by every
    export) names another app, or one of ``files`` (paths inside it) is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} not found: check the path")
    other = app_of(folder)
    if other is not None and other != app:
        raise ValueError(
            f"{folder} holds a {other} model (its metadata.json says app: {other}), not a {app} model: "
            f"use the {other} commands, or give a {app} model folder"
        )
    missing = [str(f) for f in files if not (folder / f).is_file()]
    if missing:
        present = sorted(f.name for f in folder.glob("*.tflite"))
        fix = f"export the model there first (seqapps export {app} --model DIR)"
        if present and any(f.endswith(".tflite") for f in missing):
            fix = f"it has {', '.join(present)}: choose one of them, or {fix}"
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; {fix}")
    return folder


def training_info(model_dir):
    """The training figures to keep when ``model_dir`` is (re-)exported: the training run's
    ``run/train_info.json``, else the ``training`` entry of the folder's ``metadata.json`` (a shipped folder
    exported again without its run folder), else None."""
    model_dir = Path(model_dir)
    run = model_dir / "run" / "train_info.json"
    if run.is_file():
        return json.loads(run.read_text(encoding="utf-8"))
    if (model_dir / "metadata.json").is_file():
        return read(model_dir / "metadata.json").get("training")
    return None


def _default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

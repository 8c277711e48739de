"""Typed configs: dataclass defaults < YAML file < ``--set key=value`` overrides.

Every app's config is a dataclass deriving from `TrainConfig`, flat (one level of keys) so that
each key can be overridden from the command line. Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml


@dataclasses.dataclass
class TrainConfig:
    """Settings shared by every app's training loop."""

    data: str = "default"  # data spec: "default" (offline), a local path, or "tfds:NAME"
    epochs: int = 10
    batch_size: int = 64  # global batch (split across replicas when distributed)
    learning_rate: float = 1e-3
    clipnorm: float = 1.0  # gradient clipping by norm; 0 disables
    patience: int = 3  # early stopping patience in epochs; 0 disables
    lr_plateau: int = 0  # epochs without a better val loss before the learning rate drops (x lr_factor); 0 disables
    lr_factor: float = 0.3  # the drop's factor for lr_plateau, in (0, 1)
    ema: float = 0.0  # momentum of a moving average of the weights (e.g. 0.99), validated and kept; 0 disables
    seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_examples: int = 0  # 0 = use all examples
    steps_per_epoch: int = 0  # 0 = a full pass over the training split
    verbose: int = 1  # Keras progress bar: 0 silent, 1 bar, 2 one line per epoch
    jit_compile: bool = False  # XLA; off by default: variable-length batches would recompile per shape
    mixed_precision: str = "none"  # "none", "mixed_float16" (GPU, with loss scaling) or "mixed_bfloat16"
    distribute: str = "none"  # "none" or "mirrored" (all GPUs/devices of one machine)


class ConfigError(ValueError):
    """A config file or override that cannot be applied."""


def _field_types(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value, kind):
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        value = yaml.safe_load(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")
    return value


def apply(cfg, values: dict, source: str):
    """Return a copy of ``cfg`` with ``values`` applied; unknown keys raise `ConfigError`."""
    types = _field_types(type(cfg))
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(
            f"{source}: unknown config key(s) {', '.join(unknown)} for {type(cfg).__name__}. "
            f"Valid keys: {', '.join(sorted(types))}."
        )
    return dataclasses.replace(cfg, **{k: _coerce(k, v, types[k]) for k, v in values.items()})


def parse_overrides(items) -> dict:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set epochs=5")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def load(cfg, path: str | Path | None = None, overrides=()):
    """Defaults (``cfg``) < YAML file at ``path`` < ``overrides`` (``["key=value", ...]``)."""
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
        cfg = apply(cfg, data, str(path))
    return apply(cfg, parse_overrides(overrides), "--set")


def save(cfg, path: str | Path) -> None:
    from seqapps.export.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


def read(cls, path: str | Path):
    """Load a config written by `save` (e.g. the one next to a trained model)."""
    return load(cls(), path)

"""Typed configs: dataclass defaults < YAML file < ``--set key=value`` overrides.

Every app's config is a dataclass deriving from `TrainConfig`, flat (one level of keys) so that
each key can be overridden from the command line. Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import re
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


class _DecimalLoader(yaml.SafeLoader):
    """PyYAML's safe loader without its int and float resolvers: numbers in a config file reach `_coerce` as
    text, as ``--set`` values do, and are read as decimal there (YAML 1.1 reads ``010`` as octal 8 and ``1:30``
    as base 60, 90)."""


_DecimalLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag.rsplit(":", 1)[-1] not in ("int", "float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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
        if kind in (int, float):  # decimal only: YAML 1.1 would read 010 as octal 8, 1:30 as base 60, 0x10 as 16
            text = value.strip()
            try:
                value = int(text, 10) if re.fullmatch(r"[+-]?\d+", text) else float(text)
            except ValueError:
                raise ConfigError(f"{key}: expected {kind.__name__} (a decimal number), got {value!r}") from None
            if kind is int and isinstance(value, float) and value.is_integer():
                value = int(value)  # 1e3
        else:
            value = yaml.safe_load(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer past 1.8e308 (float("1e400") is inf, caught by check_ranges)
            digits = len(str(abs(value)))
            raise ConfigError(
                f"{key}: a {digits}-digit number is too large for a float (at most about 1.8e308)"
            ) from None
    if kind in (int, float, str, bool) and not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")
    return value


def changed(before, after, keys) -> list:
    """The ``keys`` whose value differs between two configs (e.g. a trained model's and the one --set made)."""
    return [k for k in keys if getattr(after, k) != getattr(before, k)]


def settings_text(cfg, keys) -> str:
    """``key=value, ...`` of ``cfg`` for ``keys``, as messages quote settings."""
    return ", ".join(f"{k}={getattr(cfg, k)}" for k in keys)


def refuse_fixed(trained, cfg, allowed, where: str, takes: str, model: str = "trained", skip=()) -> None:
    """Refuse the settings of ``cfg`` that differ from the ``trained`` config outside ``allowed`` (and ``skip``,
    which another check names): ``where`` (``export --set``, ``evaluate --set``) takes only ``takes``."""
    fixed = changed(trained, cfg, [k for k in vars(trained) if k not in allowed and k not in skip])
    if fixed:
        raise ConfigError(
            f"{where} {settings_text(cfg, fixed)}: the {model} model fixes {'this' if len(fixed) == 1 else 'these'} "
            f"(config.yaml records {settings_text(trained, fixed)}); {takes}"
        )


def check_split_kept(trained, cfg, same_data: bool, keys, where: str = "evaluate --set") -> None:
    """On the data a model was trained on, the settings (``keys``: each app names those that draw its test
    split) are fixed by training: another seed, fraction or start would score examples the model was trained or
    early-stopped on. On other data (``--data``) they choose the part that is scored."""
    if not same_data:
        return
    keys = changed(trained, cfg, keys)
    if keys:
        raise ConfigError(
            f"{where} {settings_text(cfg, keys)}: on the data this model was trained on "
            f"({trained.data}), training fixed the held-out split ({settings_text(trained, keys)}), "
            "and another would score examples the model was trained on. Leave it as trained, or evaluate other "
            "data (--data), where these settings choose the part that is scored"
        )


def pop_flag(options: dict, key: str, meaning: str) -> bool:
    """Take the true/false ``--set`` option ``key`` that is not a config key (evaluate's ``write``) out of
    ``options``: false when absent, spelled as a boolean config value is."""
    value = options.pop(key, False)
    try:
        return _coerce(key, value, bool)
    except ConfigError:
        raise ConfigError(f"evaluate --set {key}={value}: give true or false ({meaning})") from None


def apply(cfg, values: dict, source: str):
    """Return a copy of ``cfg`` with ``values`` applied; unknown keys raise `ConfigError`."""
    types = _field_types(type(cfg))
    unknown = sorted(str(k) for k in set(values) - set(types))  # a YAML key may be a bool or null
    if unknown:
        raise ConfigError(
            f"{source}: unknown config key(s) {', '.join(unknown)} for {type(cfg).__name__}. "
            f"Valid keys: {', '.join(sorted(types))}."
        )
    return dataclasses.replace(cfg, **{k: _coerce(k, v, types[k]) for k, v in values.items()})


def override(cfg, values: dict, source: str):
    """`apply` ``values`` to a complete config (e.g. a trained model's, for ``evaluate --set``) and check the
    result's ranges."""
    cfg = apply(cfg, values, source)
    check_ranges(cfg, source)
    return cfg


def parse_overrides(items) -> dict:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set epochs=5")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


# Ranges of the numeric keys, checked by `load` for every app's config (a key an app lacks is skipped), so
# that a value such as epochs=-1 stops before any data is read instead of training nothing. Every other
# int or float key must be >= 0, except those in SIGNED.
AT_LEAST_ONE = {
    "epochs", "batch_size", "units", "layers", "num_layers", "rnn_layers", "ensemble", "window", "horizon",
    "season", "train_stride", "vol_window", "backtest_step", "max_len", "vocab_size", "embedding_dim",
    "src_vocab_size", "tgt_vocab_size", "max_src_len", "max_tgt_len", "beam_width", "embedded_pairs",
    "sample_rate", "hop", "fft_length", "num_mel", "conv_kernel", "ngram_order", "bucket_width",
}  # fmt: skip
BELOW_ONE = {"val_fraction", "test_fraction", "dropout", "embedding_dropout", "label_smoothing"}  # [0, 1)
UP_TO_ONE = {"noise_prob", "linear_blend"}  # [0, 1]
ABOVE_ZERO = {"learning_rate"}
SIGNED = {"seed", "deep_weight", "noise_snr_db_min", "noise_snr_db_max"}  # deep_weight -1: chosen on validation


PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")  # mixed_precision (`training.set_precision`)
STRATEGIES = ("none", "mirrored", "multiworker")  # distribute (`training.strategy`)


def check_ranges(cfg, source: str = "config") -> None:
    """Raise `ConfigError` naming the first numeric key of ``cfg`` outside its range (see `AT_LEAST_ONE`)."""
    types = _field_types(type(cfg))
    for key, kind in types.items():
        value = getattr(cfg, key)
        if kind is float and not math.isfinite(value):  # signed ones too (deep_weight=nan mixed in NaN)
            raise ConfigError(
                f"{source}: {key}={value!r} must be a finite number (e.g. --set {key}={getattr(type(cfg), key)})"
            )
        if kind not in (int, float) or key in SIGNED or isinstance(value, bool):
            continue
        if key in AT_LEAST_ONE:
            ok, want = value >= 1, ">= 1"
        elif key in BELOW_ONE:
            ok, want = 0 <= value < 1, "in [0, 1)"
        elif key in UP_TO_ONE:
            ok, want = 0 <= value <= 1, "in [0, 1]"
        elif key in ABOVE_ZERO:
            ok, want = value > 0, "> 0"
        else:
            ok, want = value >= 0, ">= 0"
        if not ok:
            raise ConfigError(f"{source}: {key}={value!r} must be {want} (e.g. --set {key}={getattr(type(cfg), key)})")
    seed, members = getattr(cfg, "seed", 0), getattr(cfg, "ensemble", 1)  # members take seed, seed + 1, ...
    if not isinstance(seed, bool) and isinstance(seed, int) and not 0 <= seed <= 2**32 - members:
        raise ConfigError(
            f"{source}: seed={seed} must be in [0, {2**32 - members}] (NumPy and Keras take seeds below 2**32"
            f"{f', and the {members} members use seed to seed + {members - 1}' if members > 1 else ''}); "
            f"e.g. --set seed={getattr(type(cfg), 'seed', 42)}"
        )
    for key, allowed in (("distribute", STRATEGIES), ("mixed_precision", PRECISIONS)):
        if getattr(cfg, key, allowed[0]) not in allowed:
            raise ConfigError(f"{source}: {key}={getattr(cfg, key)!r} must be one of {', '.join(allowed)}")
    if not 0 <= getattr(cfg, "ema", 0) < 1:
        raise ConfigError(f"{source}: ema={cfg.ema!r} must be in [0, 1) (the moving average's momentum; 0 = off)")
    if getattr(cfg, "lr_plateau", 0) and not 0 < getattr(cfg, "lr_factor", 0.5) < 1:
        raise ConfigError(f"{source}: lr_factor={cfg.lr_factor!r} must be in (0, 1) (the learning rate's cut)")
    if getattr(cfg, "distribute", "") == "multiworker" and getattr(cfg, "mixed_precision", "none") == "mixed_float16":
        raise ConfigError(
            f"{source}: distribute=multiworker does not scale the loss that mixed_float16 needs (small float16 "
            "gradients would vanish); use mixed_bfloat16 or distribute=mirrored"
        )
    if getattr(cfg, "verbose", 0) not in (0, 1, 2):
        raise ConfigError(
            f"{source}: verbose={cfg.verbose!r} must be 0 (silent), 1 (progress bar) or 2 (one line per epoch)"
        )
    fractions = getattr(cfg, "val_fraction", 0) + getattr(cfg, "test_fraction", 0)
    if fractions >= 1:
        raise ConfigError(
            f"{source}: val_fraction + test_fraction = {fractions:g} leaves no training data; keep their sum below 1"
        )


def load(cfg, path: str | Path | None = None, overrides=()):
    """Defaults (``cfg``) < YAML file at ``path`` < ``overrides`` (``["key=value", ...]``); numeric keys are
    checked against their ranges (`check_ranges`)."""
    source = "--set"
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_DecimalLoader) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
        cfg = apply(cfg, data, str(path))
        source = f"{path} and --set" if overrides else str(path)
    cfg = apply(cfg, parse_overrides(overrides), "--set")
    check_ranges(cfg, source)
    return cfg


def to_yaml(cfg) -> str:
    """The config as the YAML that `load` reads back (every key, in field order)."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


def save(cfg, path: str | Path) -> None:
    from seqapps.export.atomic import atomic_write_text

    atomic_write_text(path, to_yaml(cfg))


def read(cls, path: str | Path):
    """Load a config written by `save` (e.g. the one next to a trained model)."""
    return load(cls(), path)

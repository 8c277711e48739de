"""The forecasting app: train, evaluate (rolling-origin backtest vs baselines), predict (CSV + fan chart), export."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

from seqapps import config as config_lib
from seqapps.app import App, drop_previous_export, previous_export
from seqapps.export.metadata import json_text
from seqapps.forecast.config import ForecastConfig, tiny
from seqapps.registry import register_app

SPEC_FILE = "feature_spec.json"
SAMPLE_FILE = "sample_windows.npy"
CALIBRATION_FILE = "calibration_windows.npy"  # training windows that calibrate the int8 TFLite variant
CALIBRATION_WINDOWS = 200


def parse_quantiles(text) -> list:
    """The sorted quantile levels of ``text`` ("0.1,0.5,0.9"). They must include 0.5, the median that is the
    point forecast, and 0.1 and 0.9, the 80% interval that the backtest scores."""
    try:
        qs = sorted({round(float(q), 6) for q in str(text).split(",") if q.strip()})
    except ValueError:
        raise ValueError(f"quantiles: expected comma-separated numbers like 0.1,0.5,0.9, got {text!r}") from None
    if not all(0 < q < 1 for q in qs):
        raise ValueError(f"quantiles: every value must lie strictly between 0 and 1, got {text!r}")
    missing = [q for q in (0.1, 0.5, 0.9) if q not in qs]
    if missing:
        raise ValueError(
            f"quantiles={text}: add {','.join(map(str, missing))}. The median (0.5) is the point forecast and 0.1 "
            "and 0.9 bound the 80% interval that the backtest scores; other levels may be added (e.g. "
            "0.05,0.1,0.5,0.9,0.95)"
        )
    return qs


def median_index(quantiles) -> int:
    """Index of the 0.5 quantile, the point forecast (`parse_quantiles` requires it)."""
    return quantiles.index(0.5)


def _check_cfg(cfg):
    if cfg.window < 3 or cfg.horizon < 1:
        raise ValueError(f"window must be >= 3 and horizon >= 1 (got {cfg.window}, {cfg.horizon})")
    if cfg.ensemble < 1:
        raise ValueError(f"ensemble must be >= 1 (networks trained and averaged), got {cfg.ensemble}")
    if not 0.0 <= cfg.linear_blend <= 1.0 or cfg.ridge_l2 < 0:
        raise ValueError(f"linear_blend must be in [0, 1] and ridge_l2 >= 0 (got {cfg.linear_blend}, {cfg.ridge_l2})")
    if cfg.aux_weight < 0:
        raise ValueError(f"aux_weight must be >= 0 (weight of the auxiliary loss), got {cfg.aux_weight}")
    if not 0 <= cfg.loss_last_horizons <= cfg.horizon or not 0 < cfg.loss_other_weight <= 1:
        raise ValueError(
            f"loss_last_horizons must be in [0, horizon={cfg.horizon}] and loss_other_weight in (0, 1] (got "
            f"{cfg.loss_last_horizons}, {cfg.loss_other_weight}), e.g. loss_last_horizons=3, loss_other_weight=0.2"
        )
    if not cfg.target_step >= 0:
        raise ValueError(
            f"target_step must be >= 0 (the step the target is recorded in; 0 = off), got {cfg.target_step}"
        )
    if cfg.bootstrap < 0 or cfg.bootstrap_block < 0:
        raise ValueError(
            f"bootstrap (resamples, 0 = off) and bootstrap_block (origin times per block, 0 = 7 x season) must be "
            f">= 0, got {cfg.bootstrap} and {cfg.bootstrap_block}"
        )
    parse_quantiles(cfg.quantiles)
    if cfg.mixed_precision != "none":
        raise ValueError(
            f"mixed_precision={cfg.mixed_precision}: forecast trains in float32 (its quantile outputs and the "
            "feature engineering exported with the model need it); leave mixed_precision at none"
        )
    for key, allowed in (
        ("missing", ("error", "ffill")),
        ("unsorted", ("error", "sort")),
        ("date_order", ("auto", "dmy", "mdy")),
        ("decimal", ("auto", "comma", "point")),
        ("bad_series", ("error", "skip")),
    ):
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {getattr(cfg, key)!r}")


def _check_target_step(ds, pairs, targets, step: float):
    """``target_step`` rounds the forecast median to the grid the target is recorded on: every training
    target must lie on that grid."""
    from seqapps.forecast.data import format_times

    off = np.abs(targets / step - np.round(targets / step)) > 1e-6
    if off.any():
        i, h = np.argwhere(off)[0]
        si, t = pairs[i]
        s = ds.series[si]
        raise ValueError(
            f"target_step={step:g}: {s.name}: {ds.columns[ds.target_index]!r} at {format_times([s.times[t + h + 1]])[0]} is "
            f"{targets[i, h]:g}, off that grid ({int(off.sum())} training targets are); set target_step to the "
            "step the values are recorded in, or 0 to keep the median unrounded"
        )


def _check_fixed_by_model(cfg, spec):
    """Settings a trained model fixes: an override of them (``--set``) at export or evaluation is an error."""
    for key in ("window", "horizon", "target_step"):
        if getattr(cfg, key) != getattr(spec, key):
            raise ValueError(
                f"{key}={getattr(cfg, key):g} differs from the {getattr(spec, key):g} this model was trained with; "
                f"window, horizon and target_step are fixed by the trained model: retrain with --set "
                f"{key}={getattr(cfg, key):g}"
            )


# what `seqapps export forecast --set` may change: the export's own settings, and where and how to read the
# training data again (int8 calibration when the folder has no calibration windows). Every other key describes
# the trained model (its network, features, quantiles, training), which config.yaml records for evaluate and
# predict: changed at export, it would describe another model than the one in the files.
EXPORT_SETTINGS = (
    "tflite_int8", "tflite_eval_windows", "verbose", "data", "missing", "unsorted", "date_order", "decimal", "bad_series",
    "time_column", "max_series",
)  # fmt: skip


def _split_keys(trained, cfg) -> list:
    """The settings that draw the test windows of ``trained``'s split (`data.split`), for
    `config.check_split_kept`: the held-out series (split series: seed, test_fraction) and the test period's
    start. A start later than the one trained with scores a part of its test period and is allowed."""
    keys = ["split"]
    if trained.split == "series":
        keys += ["seed", "test_fraction"]
    elif not trained.test_start:
        keys += ["test_fraction"]
    from seqapps.forecast.data import parse_test_start

    later = bool(trained.test_start and cfg.test_start) and parse_test_start(cfg.test_start) >= parse_test_start(
        trained.test_start
    )
    return keys if later else [*keys, "test_start"]


def _model_hints(model_dir, cfg, predict=False) -> dict:
    """How messages about a file tell the user to fix it for a trained model, whose config fixes the columns
    it reads (`seqapps.forecast.data.FIX_HINTS`); `predict` takes --ffill and --sort instead of --set."""
    from seqapps.forecast import data as data_lib

    columns = f"the columns {data_lib.column_plan(cfg, cfg.mode)[0]}"
    if not predict:  # evaluate --set time_column=... reads another time column into the same windows
        return {"columns": f"The model {model_dir} reads {columns} (case-insensitive); its config.yaml fixes them."}
    fixed = (
        f"The model {model_dir} reads {columns} and the time from {cfg.time_column!r} (case-insensitive); "
        f"its config.yaml fixes them."
    )
    return {
        "columns": fixed,
        "time_column": fixed,
        "missing": "--ffill",
        "unsorted": "--sort",
        "date_order": "--date-order dmy",
        "decimal": "--decimal comma",
    }


def _calendar_text(meta) -> str:
    """The calendar input columns' values, as the model card states them."""
    values = meta.get("calendar_values") or {}
    return "".join(f"; `{c}` is {v}" for c, v in values.items())


def _parity_text(report: dict, mode: str) -> str:
    """One TFLite file's differences from the Keras model, as the training log and the model card give them.
    Relative differences only for prices: a level such as a temperature crosses zero, where they mean nothing."""
    rel = f" (relative {report['max_rel_diff']:.2e})" if mode == "ohlcv" else ""
    med = report.get("median_forecast_mean_abs_diff")
    med = "" if med is None else f", median forecast mean |diff| {med:.2e},"
    return f"max |diff| {report['max_abs_diff']:.2e}{rel}{med} on {report['windows']} test windows"


def encoder_name(cfg) -> str:
    """The recurrent encoder as the training log and the model card name it: "GRU", "bidirectional LSTM"."""
    return f"{'bidirectional ' if cfg.bidirectional else ''}{cfg.cell.upper()}"


def aux_columns(cfg, spec) -> list:
    """The checked ``aux_targets`` columns (lower-case): numeric input columns of ``spec`` (a
    `features.FeatureSpec`) other than the target."""
    from seqapps.forecast.data import parse_list

    aux = [c.lower() for c in parse_list(cfg.aux_targets)]
    if not aux:
        return []
    target = spec.columns[spec.target_index]
    if spec.mode != "generic":
        raise ValueError(
            f"aux_targets ({', '.join(aux)}) is for generic mode (columns of levels); this data is {spec.mode}. "
            "Leave aux_targets empty, or set mode=generic"
        )
    allowed = [spec.columns[i] for i in spec.numeric if i != spec.target_index]
    bad = [c for c in aux if c not in allowed]
    if bad or len(set(aux)) != len(aux):
        raise ValueError(
            f"aux_targets: {bad or aux} must be distinct input columns other than the target {target!r}; "
            f"choose from {allowed} (a column must be in features to be one)"
        )
    return aux


def _read_spec(model_dir):
    from seqapps.forecast.features import FeatureSpec

    path = Path(model_dir) / "assets" / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; train first (make train-forecast)")
    return FeatureSpec(**json.loads(path.read_text()))


@register_app("forecast")
class ForecastApp(App):
    config_class = ForecastConfig
    default_model_dir = Path("trained/forecast")
    export_settings = EXPORT_SETTINGS

    def tiny_config(self):
        return tiny()

    # ------------------------------------------------------------------ data
    def prepare(self, cfg, ds=None):
        """Data, split, fitted feature spec, quantiles and the train/val arrays; ``ds`` (a `data.Dataset`
        already loaded, e.g. cut to a development year) instead of reading ``cfg.data``."""
        from seqapps.forecast import data, features

        _check_cfg(cfg)
        t0 = time.time()
        ds = data.load(cfg) if ds is None else ds
        sp = data.split(ds, cfg)
        quantiles = parse_quantiles(cfg.quantiles)
        spec = features.FeatureSpec(
            ds.mode,
            ds.columns,
            ds.target_index,
            cfg.window,
            cfg.horizon,
            cfg.vol_window,
            calendar=[c.lower() for c in data.parse_list(cfg.calendar)],
            target_step=float(cfg.target_step),
            median_index=median_index(quantiles),
        )
        if cfg.target_step > 0 and ds.mode != "generic":
            raise ValueError(f"target_step applies to generic (level) data; this data is {ds.mode}: set target_step=0")
        aux = aux_columns(cfg, spec)  # checked before any window is built
        train_pairs = sp.train
        if cfg.max_examples and len(train_pairs) > cfg.max_examples:
            rng = np.random.default_rng(cfg.seed)
            train_pairs = train_pairs[np.sort(rng.choice(len(train_pairs), cfg.max_examples, replace=False))]
        val_pairs = sp.val
        if cfg.max_val_examples and len(val_pairs) > cfg.max_val_examples:
            val_pairs = val_pairs[np.linspace(0, len(val_pairs) - 1, cfg.max_val_examples).round().astype(int)]
        trx, try_ = data.windows(ds, train_pairs, cfg.window, cfg.horizon)
        if cfg.target_step > 0:
            _check_target_step(ds, train_pairs, try_, cfg.target_step)
        spec = features.fit_spec(spec, trx, try_, seed=cfg.seed)  # statistics from training windows only
        arrays = {}
        for name, (x, y) in (("train", (trx, try_)), ("val", data.windows(ds, val_pairs, cfg.window, cfg.horizon))):
            f, a, s = features.batched(x, spec)
            z = np.clip(features.encode_targets(y, a, s, spec), -50, 50)
            arrays[name] = (f, z)
        if aux:  # training-only targets: the columns' changes after the origin, scaled by their training std
            aux_train = data.future_changes(ds, train_pairs, cfg.horizon, aux)
            std = np.maximum(aux_train.reshape(-1, len(aux)).std(0), 1e-6).astype(np.float32)
            aux_val = data.future_changes(ds, val_pairs, cfg.horizon, aux)
            arrays["aux"] = {"columns": aux, "train": aux_train / std, "val": aux_val / std}
        info = {
            "spec": ds.spec,
            "mode": ds.mode,
            "series": len(ds.series),
            "skipped_files": ds.skipped,
            "rows": int(sum(len(s) for s in ds.series)),
            "forward_filled_cells": int(sum(s.filled for s in ds.series)),
            "input_columns": ds.columns,
            "split": cfg.split,
            "test_start": sp.test_start,
            "train_windows": len(train_pairs),
            "val_windows": len(val_pairs),
            "test_windows": len(sp.test),
            "series_roles": {r: sorted(n for n, v in sp.roles.items() if v == r) for r in set(sp.roles.values())},
        }
        print(
            f"[forecast] data {ds.spec}: {len(ds.series)} series ({ds.mode}), columns {ds.columns}, target "
            f"{ds.columns[ds.target_index]!r}; windows train {len(train_pairs)} / val {len(val_pairs)} / test "
            f"{len(sp.test)} ({cfg.split} split, test from {sp.test_start[:10]}); {time.time() - t0:.1f}s"
        )
        return ds, sp, spec, quantiles, arrays, info

    # ------------------------------------------------------------------ train
    def train(self, cfg, out_dir, resume=False):
        previous = previous_export(out_dir)  # the files of the model out_dir holds, if any
        import keras
        import tensorflow as tf

        from seqapps import training
        from seqapps.forecast import model as model_lib

        out_dir = Path(out_dir)
        training.set_seed(cfg.seed)
        ds, sp, spec, quantiles, arrays, info = self.prepare(cfg)
        fx, fz = arrays["train"]
        run_dir = Path(cfg.run_dir) if cfg.run_dir else out_dir / "run"
        member_dirs = [run_dir] if cfg.ensemble == 1 else [run_dir / f"member{i}" for i in range(cfg.ensemble)]
        members, histories = [], []
        for i, member_dir in enumerate(member_dirs):
            seed = cfg.seed + i
            done = member_dir / "member.keras"  # a finished member of an ensemble (kept for --resume)
            if cfg.ensemble > 1 and resume and done.is_file():
                print(f"[forecast] member {i + 1}/{cfg.ensemble}: trained in the earlier run ({done})")
                members.append(keras.saving.load_model(done, compile=False))
                history = json.loads((member_dir / "member_history.json").read_text())
                histories.append(types.SimpleNamespace(**history))
                continue
            done.unlink(missing_ok=True)  # an earlier run's member is not this run's
            name = "forecaster" if cfg.ensemble == 1 else f"forecaster_{i}"
            label = f" {i + 1}/{cfg.ensemble} (seed {seed})" if cfg.ensemble > 1 else ""
            model, history = self.fit_network(
                cfg, spec, quantiles, arrays, seed, member_dir, name=name, label=label, resume=resume
            )
            if cfg.ensemble > 1:
                model.save(done)
                (member_dir / "member_history.json").write_text(
                    json.dumps({"history": history.history, "train_seconds": history.train_seconds})
                )
            members.append(model)
            histories.append(history)
        model = model_lib.average(members)
        if cfg.linear_blend > 0:
            kernel, bias = model_lib.fit_ridge(fx, fz, cfg.ridge_l2)
            model = model_lib.with_linear_blend(model, kernel, bias, cfg.linear_blend, median_index(quantiles))
            print(
                f"[forecast] ridge regression solved on {len(fx):,} training windows; the quantiles move by "
                f"{cfg.linear_blend} x (ridge forecast - median)"
            )

        out_dir.mkdir(parents=True, exist_ok=True)
        drop_previous_export(out_dir, previous)  # the old model's files go before the new model's arrive
        (out_dir / "assets").mkdir(exist_ok=True)
        model.save(out_dir / "model.keras")
        config_lib.save(cfg, out_dir / "config.yaml")
        (out_dir / "assets" / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=1) + "\n")
        from seqapps.forecast import data

        test_x, _ = data.windows(
            ds,
            sp.test[np.linspace(0, len(sp.test) - 1, min(len(sp.test), cfg.tflite_eval_windows)).round().astype(int)],
            cfg.window,
            cfg.horizon,
        )
        np.save(out_dir / "assets" / SAMPLE_FILE, test_x)
        np.save(out_dir / "assets" / CALIBRATION_FILE, _calibration_windows(ds, sp, cfg))
        module = self._module(model, spec)
        print("[forecast] rolling-origin backtest on the test split:")
        results = self._backtest(ds, sp, cfg, quantiles, lambda x: module.forecast(tf.constant(x))["quantiles"].numpy())
        runs = [
            {
                "seed": cfg.seed + i,
                "epochs_run": len(h.history.get("loss", [])),
                "train_seconds": round(h.train_seconds, 1),
                "final": {k: float(v[-1]) for k, v in h.history.items()},
            }
            for i, h in enumerate(histories)
        ]
        train_info = {
            "data": info,
            "epochs_run": runs[0]["epochs_run"],
            "train_seconds": round(sum(h.train_seconds for h in histories), 1),
            "final": runs[0]["final"],
        }
        if cfg.ensemble > 1:
            train_info["members"] = runs
        (out_dir / "evaluation.json").write_text(json_text({"training": train_info, "backtest": results}, indent=1))
        for member_dir in member_dirs:
            training.clear_backup(member_dir)
        self.export_trained(out_dir, previous, model=model, cfg=cfg)
        keras.backend.clear_session()
        return results

    def fit_network(self, cfg, spec, quantiles, arrays, seed, run_dir, name="forecaster", label="", resume=False):
        """Build, compile and train one network (seed ``seed``) on ``arrays`` from `prepare`, early-stopped on
        its val windows; checkpoints and logs in ``run_dir``. Returns (model, history)."""
        import keras
        import tensorflow as tf

        from seqapps import training
        from seqapps.forecast import model as model_lib

        training.set_seed(seed)
        aux = arrays.get("aux")
        # a tf.distribute strategy (cfg.distribute) when the shared training module offers one
        strategy = training.strategy(cfg) if hasattr(training, "strategy") else None
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = model_lib.build_model(cfg, spec.steps, spec.num_features, quantiles, name=name)
            weights = model_lib.horizon_weights(cfg.horizon, cfg.loss_last_horizons, cfg.loss_other_weight)
            fit_model, loss = model, model_lib.PinballLoss(quantiles, horizon_weights=weights)
            if aux:  # trained through a second head on the same hidden layer; `model` (returned) shares weights
                fit_model = model_lib.with_aux_head(model, cfg.horizon, len(aux["columns"]))
                loss = {"quantiles": loss, "aux": keras.losses.MeanAbsoluteError()}
            fit_model.compile(
                optimizer=training.make_optimizer(cfg),
                loss=loss,
                loss_weights={"quantiles": 1.0, "aux": cfg.aux_weight} if aux else None,
            )
        also = f"; training also predicts the changes of {', '.join(aux['columns'])}" if aux else ""
        print(
            f"[forecast] model{label}: {model.count_params():,} parameters ({encoder_name(cfg)} x{cfg.num_layers}, "
            f"{cfg.units} units), input {spec.steps} steps x {spec.num_features} features -> {cfg.horizon} x "
            f"{len(quantiles)} quantiles{also}"
        )

        def targets(part):
            return {"quantiles": arrays[part][1], "aux": aux[part]} if aux else arrays[part][1]

        fx = arrays["train"][0]
        train_ds = (
            tf.data.Dataset.from_tensor_slices((fx, targets("train")))
            .shuffle(min(len(fx), 200_000), seed=seed)
            .batch(cfg.batch_size)
            .prefetch(2)
        )
        val_ds = None
        if len(arrays["val"][0]):
            val_ds = tf.data.Dataset.from_tensor_slices((arrays["val"][0], targets("val"))).batch(cfg.batch_size * 4)
        monitor = "val_quantiles_loss" if aux else "val_loss"  # early stopping judges the forecast alone
        return model, training.fit(fit_model, train_ds, val_ds, cfg, run_dir, resume=resume, monitor=monitor)

    def _calibration(self, model_dir, out_dir, cfg):
        """Training windows for the int8 calibration: ``assets/calibration_windows.npy``, else read from the
        training data (then saved to ``out_dir``); an error that names the fix when neither can be read (an
        int8 file that was asked for is never skipped silently)."""
        from seqapps.forecast import data

        path = Path(model_dir) / "assets" / CALIBRATION_FILE
        if path.is_file():
            return np.load(path)
        try:
            ds = data.load(cfg)
            windows = _calibration_windows(ds, data.split(ds, cfg), cfg)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"tflite_int8=true needs training windows to calibrate on: {model_dir} has no assets/{path.name} "
                f"(it is not shipped: it holds rows of the data) and the training data could not be read ({exc}). "
                "Run from the folder the data path is relative to (the checkout's root for the shipped models), or "
                "give it with --set data=PATH (and --out DIR, to keep this folder's config.yaml as it is)"
            ) from exc
        (Path(out_dir) / "assets").mkdir(parents=True, exist_ok=True)
        np.save(Path(out_dir) / "assets" / CALIBRATION_FILE, windows)
        return windows

    def _module(self, model, spec, batch=None):
        from seqapps.forecast.serving import ForecastModule

        return ForecastModule(model, spec, batch=batch)

    def _backtest(self, ds, sp, cfg, quantiles, predict_fn, verbose=True):
        from seqapps.forecast import backtest, data

        pairs = sp.test
        step = max(1, cfg.backtest_step)
        if step > 1:  # every `step`-th origin of each series
            first = {}
            keep = []
            for k, (si, t) in enumerate(pairs):
                first.setdefault(si, t)
                if (t - first[si]) % step == 0:
                    keep.append(k)
            pairs = pairs[keep]
        if cfg.backtest_max_windows and len(pairs) > cfg.backtest_max_windows:
            pairs = pairs[np.linspace(0, len(pairs) - 1, cfg.backtest_max_windows).round().astype(int)]
        x, y = data.windows(ds, pairs, cfg.window, cfg.horizon)
        q = np.concatenate([predict_fn(x[i : i + 2048]) for i in range(0, len(x), 2048)])
        scale = data.naive_scale(ds, sp)
        res = backtest.run(
            ds, pairs, y, q.astype(np.float64), quantiles, cfg, scale, log_space=ds.mode == "ohlcv", verbose=verbose
        )
        res["origins_every"] = step
        res["test_start"] = sp.test_start
        res["target"] = ds.columns[ds.target_index]
        return res

    # ------------------------------------------------------------------ export
    def export(self, model_dir, out_dir=None, model=None, cfg=None):
        import keras
        import tensorflow as tf

        from seqapps.export import gpu, metadata, saved_model, tflite
        from seqapps.export.atomic import atomic_write_bytes, atomic_write_text
        from seqapps.forecast import model as _model_lib  # noqa: F401  (registers the custom layers for loading)
        from seqapps.forecast.data import CALENDAR_VALUES

        model_dir = Path(model_dir)
        out_dir = Path(out_dir or model_dir)
        if not (model_dir / "model.keras").is_file():
            raise FileNotFoundError(f"{model_dir / 'model.keras'} not found; train first (make train-forecast)")
        saved = config_lib.read(ForecastConfig, model_dir / "config.yaml")
        spec = _read_spec(model_dir)
        _check_fixed_by_model(cfg or saved, spec)
        if cfg is not None and model is None:  # seqapps export --set (training passes the model it just saved)
            self.check_export_settings(saved, cfg)
        cfg = cfg or saved
        quantiles = parse_quantiles(cfg.quantiles)
        model = model or keras.saving.load_model(model_dir / "model.keras", compile=False)
        sample = np.load(model_dir / "assets" / SAMPLE_FILE)
        evaluation = (
            json.loads((model_dir / "evaluation.json").read_text()) if (model_dir / "evaluation.json").is_file() else {}
        )
        if out_dir.resolve() != model_dir.resolve():
            import shutil

            shutil.copytree(model_dir / "assets", out_dir / "assets", dirs_exist_ok=True)
            for name in ("model.keras", "evaluation.json"):
                if (model_dir / name).is_file():
                    shutil.copy2(model_dir / name, out_dir / name)
        config_lib.save(cfg, out_dir / "config.yaml")  # the config this export was made with (--set)

        module = self._module(model, spec)
        reference = module.forecast(tf.constant(sample))["quantiles"].numpy()
        sm_path = saved_model.write(module, out_dir, module.signatures(), version=1)
        iso = saved_model.run_isolated(sm_path.resolve(), {"window": sample[:8]})
        sm_diff = float(np.max(np.abs(iso["quantiles"] - reference[:8])))
        # parity relative to the forecasts' scale (not to each value: temperatures pass through 0)
        scale = max(1.0, float(np.max(np.abs(reference))))
        metadata.check_parity("the SavedModel (difference / largest forecast)", sm_diff / scale)
        print(
            f"[forecast] SavedModel -> {sm_path.relative_to(out_dir)} (plain-TensorFlow run: max |diff| vs Keras {sm_diff:.2e})"
        )

        lite = self._module(model, spec, batch=1)
        mid = median_index(quantiles)
        report = {}
        calibration = self._calibration(model_dir, out_dir, cfg) if cfg.tflite_int8 else None
        variants = ("float32", "dynamic", *(("int8",) if cfg.tflite_int8 else ()), "gpu")
        tflite.remove_other_variants(out_dir, variants)
        for variant in variants:
            if variant == "gpu":  # float16, the RNN unrolled over the window: for GPU delegates
                blob = tflite.convert_unrolled(model, lambda: self._module(model, spec, batch=1))
            elif variant == "int8":
                # int8 weights and activations in the network; the feature engineering (log returns, scaling
                # by the window's own level) and the decoding back to prices stay float: int8 over raw prices
                # would round away the day-to-day moves being forecast.
                blob = tflite.convert_unrolled(
                    model,
                    lambda: self._module(model, spec, batch=1),
                    "int8",
                    lambda: ([w[None].astype(np.float32)] for w in calibration),
                    keep_float=lambda name: model.name not in name,
                )
            else:
                blob = tflite.convert_module(lite, lite.signatures(), variant)
            ops = sorted(tflite.op_names(blob))
            path = out_dir / tflite.FILE_NAMES[variant]
            atomic_write_bytes(path, blob)
            interp = tflite.interpreter(path)
            outs = np.stack([tflite.run(interp, "serving_default", window=w[None])["quantiles"][0] for w in sample])
            diff = np.abs(outs - reference)
            rel = diff / np.maximum(np.abs(reference), 1e-6)
            report[variant] = {
                "file": path.name,
                "bytes": path.stat().st_size,
                "ops": ops,
                "windows": len(sample),
                "max_abs_diff": float(diff.max()),
                "max_rel_diff": float(rel.max()),
                "median_forecast_mean_abs_diff": float(np.mean(diff[..., mid])),
            }
            print(
                f"[forecast] TFLite {variant}: {path.name} {path.stat().st_size / 1e3:.0f} kB, ops {ops}; "
                f"vs Keras {_parity_text(report[variant], spec.mode)}"
            )
            if variant == "float32":
                metadata.check_parity(f"{path.name} (difference / largest forecast)", float(diff.max()) / scale)
        gpu_summary = gpu.summarize(out_dir)
        meta = metadata.write(
            out_dir / "metadata.json",
            app="forecast",
            config=cfg,
            data_spec=cfg.data,
            mode=spec.mode,
            input_columns=spec.columns,
            calendar_values={c: CALENDAR_VALUES[c] for c in spec.calendar},
            target=spec.columns[spec.target_index],
            window=spec.window,
            horizon=spec.horizon,
            quantiles=quantiles,
            feature_spec=spec.to_dict(),
            saved_model={
                "path": str(sm_path.relative_to(out_dir)),
                "signatures": {
                    "serving_default": f"window (float32 [None, {spec.window}, {len(spec.columns)}]"
                    f", raw values in input_columns order) -> quantiles (float32 [None, "
                    f"{spec.horizon}, {len(quantiles)}], target units), valid (bool [None])"
                },
                "plain_tensorflow_max_abs_diff": sm_diff,
            },
            tflite=report,
            gpu_compatibility=gpu_summary,
            training=evaluation.get("training"),
            backtest=evaluation.get("backtest"),
            files=metadata.file_sizes(out_dir),
        )
        atomic_write_text(out_dir / "MODEL_CARD.md", model_card(meta, cfg))
        return sm_path

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, model_dir, data=None, **options):
        import tensorflow as tf

        from seqapps.export import saved_model
        from seqapps.export.atomic import atomic_write_text
        from seqapps.forecast import backtest
        from seqapps.forecast import data as data_lib

        model_dir = Path(model_dir)
        write = config_lib.pop_flag(options, "write", "true stores the backtest")
        trained = config_lib.read(ForecastConfig, model_dir / "config.yaml")
        cfg = config_lib.override(trained, options, "evaluate --set")
        if parse_quantiles(cfg.quantiles) != parse_quantiles(trained.quantiles):
            raise ValueError(
                f"quantiles={cfg.quantiles}: the model outputs the quantiles {trained.quantiles}, fixed by training"
            )
        if data:
            cfg = config_lib.apply(cfg, {"data": data}, "--data")
        from seqapps.data import same_spec

        if same_spec(cfg.data, trained.data):  # the test split that training held out
            config_lib.check_split_kept(trained, cfg, True, _split_keys(trained, cfg))
        spec = _read_spec(model_dir)
        cfg = dataclasses.replace(cfg, mode=spec.mode)
        _check_fixed_by_model(cfg, spec)
        _check_cfg(cfg)
        ds = data_lib.load(cfg, hints=_model_hints(model_dir, cfg))
        if ds.columns != spec.columns or ds.target_index != spec.target_index:
            raise ValueError(
                f"data columns {ds.columns} (target {ds.columns[ds.target_index]!r}) differ from the model's "
                f"{spec.columns} (target {spec.columns[spec.target_index]!r})"
            )
        sp = data_lib.split(ds, cfg)
        fn = tf.saved_model.load(str(saved_model.latest(model_dir))).signatures["serving_default"]
        quantiles = parse_quantiles(cfg.quantiles)
        print(f"[forecast] evaluating {saved_model.latest(model_dir)} on {ds.spec} (test from {sp.test_start[:10]})")
        res = self._backtest(
            ds, sp, cfg, quantiles, lambda x: fn(window=tf.constant(x))["quantiles"].numpy(), verbose=False
        )
        print(backtest.table(res, cfg.horizon))
        if write:  # --set write=true: store this backtest with the model and refresh metadata.json / MODEL_CARD.md
            from seqapps.export.atomic import staged_dir

            path = model_dir / "evaluation.json"
            old = json.loads(path.read_text()) if path.is_file() else {}
            with staged_dir(model_dir) as staging:  # as `seqapps export` does: all or nothing
                atomic_write_text(
                    staging / path.name, json_text({"training": old.get("training"), "backtest": res}, indent=1)
                )
                self.export(staging, staging)
        return res

    # ------------------------------------------------------------------ predict
    def add_predict_arguments(self, parser):
        parser.add_argument("--csv", type=Path, required=True, help="CSV file with the model's input columns")
        parser.add_argument(
            "--horizon", type=int, default=None, help="steps ahead, 1 to the model's horizon (default: all of them)"
        )
        parser.add_argument(
            "--out",
            type=Path,
            help="output CSV (default <csv stem>_forecast.csv); a .png fan chart is written next to it",
        )
        parser.add_argument("--ffill", action="store_true", help="forward-fill missing values instead of an error")
        parser.add_argument("--sort", action="store_true", help="sort unsorted dates instead of an error")
        parser.add_argument(
            "--date-order",
            choices=("auto", "dmy", "mdy"),
            default=None,
            help="dates that are not year first: day first (31.12.2020) or month first (12/31/2020); auto: "
            "whichever reads every date, an error when both do (default: the model's date_order, auto unless set)",
        )
        parser.add_argument(
            "--decimal",
            choices=("auto", "comma", "point"),
            default=None,
            help="numbers in a tab- or ';'-separated file: decimal comma (3,25) or point (1,234.5); auto: a comma "
            "is decimal where no number says otherwise, an error where 112,630 could be either (default: the "
            "model's decimal, auto unless set)",
        )
        parser.add_argument("--history", type=int, default=0, help="rows of history in the chart (default 3 windows)")

    def predict(self, model_dir, args):
        import tensorflow as tf

        from seqapps.export import saved_model
        from seqapps.export.atomic import atomic_write_text
        from seqapps.forecast import data as data_lib

        if args.out is not None and args.out.suffix.lower() == ".png":
            raise ValueError(
                f"--out {args.out}: give the CSV's name (e.g. {args.out.with_suffix('.csv')}); "
                "the chart is written next to it as .png"
            )
        model_dir = Path(model_dir)
        cfg = config_lib.read(ForecastConfig, model_dir / "config.yaml")
        spec = _read_spec(model_dir)
        quantiles = parse_quantiles(cfg.quantiles)
        horizon = spec.horizon if args.horizon is None else args.horizon
        if not 1 <= horizon <= spec.horizon:
            raise ValueError(f"--horizon {horizon}: this model forecasts 1 to {spec.horizon} steps ahead")
        cfg = dataclasses.replace(
            cfg,
            mode=spec.mode,
            missing="ffill" if args.ffill else "error",
            unsorted="sort" if args.sort else "error",
            date_order=args.date_order or cfg.date_order,
            decimal=args.decimal or cfg.decimal,
        )
        out_csv = args.out or Path(f"{args.csv.stem}_forecast.csv")  # its folder is made by the atomic writes
        png = out_csv.with_suffix(".png")
        _check_outputs(args.csv, out_csv, png)
        series = data_lib.read_csv(
            args.csv, cfg, min_rows=spec.window, hints=_model_hints(model_dir, cfg, predict=True)
        )
        if series.filled:
            print(
                f"note: {args.csv}: {series.filled} missing cell(s) forward-filled from the row before (--ffill)",
                file=sys.stderr,
            )
        if series.columns != spec.columns:
            raise ValueError(f"{args.csv}: columns {series.columns} do not match the model's {spec.columns}")
        window = series.values[-spec.window :].astype(np.float32)[None]
        fn = tf.saved_model.load(str(saved_model.latest(model_dir))).signatures["serving_default"]
        out = fn(window=tf.constant(window))
        if not bool(out["valid"].numpy()[0]):
            raise ValueError(f"{args.csv}: the last {spec.window} rows contain values the model cannot use")
        q = out["quantiles"].numpy()[0][:horizon]
        if not np.isfinite(q).all():
            j = int(np.argmax(np.abs(window[0]).max(axis=0)))
            raise ValueError(
                f"{args.csv}: the forecast from the last {spec.window} rows is not a finite number: their values lie "
                f"far outside what the model was trained on (up to {np.abs(window[0][:, j]).max():g} in "
                f"{series.columns[j]!r}); check those rows"
            )
        times = future_times(series.times, horizon)
        target = spec.columns[spec.target_index]
        names = [f"q{round(100 * x):02d}" for x in quantiles]
        # the last observed time and the forecast times in one format (hourly data keeps "00:00" at midnight)
        last_text, *time_text = data_lib.format_times([series.times[-1], *times])
        lines = ["step,time,last_observed," + ",".join(names)]
        for h in range(horizon):
            lines.append(f"{h + 1},{time_text[h]},{series.target[-1]:.6g}," + ",".join(f"{v:.6g}" for v in q[h]))
        fan_chart(
            series.times,
            series.target,
            times,
            q,
            quantiles,
            png,
            args.history or 3 * spec.window,
            title=f"{args.csv.stem}: {target} forecast ({horizon} steps, model {model_dir})",
        )
        atomic_write_text(out_csv, "\n".join(lines) + "\n")  # the chart first: a CSV is never left without it
        print(forecast_table(target, last_text, series.target[-1], time_text, names, q))
        print(f"wrote {out_csv} and {png}")

    # ------------------------------------------------------------------ bench
    def bench(self, model_dir, quick: bool = False):
        import tensorflow as tf

        from seqapps.bench import median_seconds
        from seqapps.export import saved_model, tflite

        model_dir = Path(model_dir)
        sample = np.load(model_dir / "assets" / SAMPLE_FILE)
        fn = tf.saved_model.load(str(saved_model.latest(model_dir))).signatures["serving_default"]

        one = tf.constant(sample[:1])
        reps = 10 if quick else 50
        sm1 = median_seconds(lambda: fn(window=one), reps) * 1e3
        batch = tf.constant(np.repeat(sample, max(1, 256 // len(sample)) + 1, axis=0)[:256])
        smb = median_seconds(lambda: fn(window=batch), reps // 5)
        rows = [
            {
                "benchmark": "forecast SavedModel latency, 1 window",
                "value": round(sm1, 3),
                "unit": "ms",
                "baseline": None,
                "ratio": None,
            },
            {
                "benchmark": "forecast SavedModel throughput, batch 256",
                "value": round(256 / smb, 1),
                "unit": "windows/s",
                "baseline": round(1e3 / sm1, 1),
                "ratio": round(256 / smb / (1e3 / sm1), 2),
            },
        ]
        for variant in ("float32", "dynamic", "int8"):
            path = model_dir / tflite.FILE_NAMES[variant]
            if not path.is_file():
                continue
            interp = tflite.interpreter(path)
            runner = interp.get_signature_runner("serving_default")
            w = sample[:1]
            ms = median_seconds(lambda r=runner, w=w: r(window=w), 4 * reps) * 1e3
            rows.append(
                {
                    "benchmark": f"forecast TFLite {variant} latency, 1 window (vs SavedModel)",
                    "value": round(ms, 3),
                    "unit": "ms",
                    "baseline": round(sm1, 3),
                    "ratio": round(ms / sm1, 3),
                }
            )
        return rows


# ---------------------------------------------------------------------------------------------- helpers
def _calibration_windows(ds, sp, cfg) -> np.ndarray:
    """Up to CALIBRATION_WINDOWS raw training windows, evenly spread over the training split."""
    from seqapps.forecast import data

    pairs = sp.train
    pairs = pairs[np.linspace(0, len(pairs) - 1, min(len(pairs), CALIBRATION_WINDOWS)).round().astype(int)]
    return data.windows(ds, pairs, cfg.window, cfg.horizon)[0].astype(np.float32)


def display_decimals(q) -> int:
    """Decimals that show a forecast [steps, quantiles] to about three digits of its narrowest interval.

    The narrowest interval is the first step's, as a rule: a width of 6.5 (a price one day ahead) gives 2
    decimals, 0.043 gives 4; the result is kept within 0 to 6, and a forecast with no spread gives 3."""
    q = np.asarray(q, np.float64)
    widths = q[:, -1] - q[:, 0] if q.ndim == 2 and q.shape[1] > 1 else np.zeros(1)
    widths = widths[np.isfinite(widths) & (widths > 0)]
    if not widths.size:
        return 3
    return int(np.clip(2 - np.floor(np.log10(widths.min())), 0, 6))


def forecast_table(target, last_text, last_value, time_text, names, q) -> str:
    """The forecast as `predict` prints it: one line per step, the quantiles in aligned columns, all with the
    same decimals (the CSV keeps six significant digits)."""
    d = display_decimals(q)
    cells = [[f"{v:.{d}f}" for v in row] for row in np.asarray(q)]
    width = max(len(c) for row in cells for c in row)
    step_w, time_w = max(4, len(f"+{len(cells)}")), max(len(t) for t in time_text)
    lines = [
        f"{target} at {last_text}: {last_value:.{d}f}",
        f"  {'step':>{step_w}} {'time':<{time_w}}  " + "  ".join(f"{n:>{width}}" for n in names),
    ]
    for h, row in enumerate(cells):
        lines.append(f"  {f'+{h + 1}':>{step_w}} {time_text[h]:<{time_w}}  " + "  ".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)


def _check_outputs(csv, *outputs) -> None:
    """Before anything is read or written: no output may be the input file, a folder, or in a place that
    cannot hold it (a file where its folder would be, a folder this process cannot write in)."""
    import os

    for out in outputs:
        if out.resolve() == csv.resolve():
            raise ValueError(f"--out: {out} is the input file --csv {csv}; writing it would lose the data")
        if out.is_dir():
            raise ValueError(f"--out: {out} is a folder; give a file name, e.g. {out / 'forecast.csv'}")
        folder = out.parent
        while not folder.exists():  # the atomic writes make the missing folders
            folder = folder.parent
        if not folder.is_dir():
            raise ValueError(f"--out: cannot write {out}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"--out: cannot write {out}: no permission to write in {folder}")


def future_times(times, horizon):
    """The times of the next ``horizon`` rows: business days after daily rows that skip weekends (stock
    prices), else the median step of the last rows (hourly bars, prices traded every day, weather)."""
    import pandas as pd

    last = pd.Timestamp(times[-1])
    steps = np.diff(times[-50:]).astype("timedelta64[s]").astype(np.int64)
    step = int(np.median(steps)) if len(steps) else 86400
    if step == 86400 and all(pd.DatetimeIndex(times[-50:]).dayofweek < 5):
        return np.array(
            [(last + pd.offsets.BDay(h)).to_datetime64() for h in range(1, horizon + 1)], dtype="datetime64[s]"
        )
    return np.array([times[-1] + np.timedelta64(step * h, "s") for h in range(1, horizon + 1)], dtype="datetime64[s]")


def fan_chart(times, y, ftimes, q, quantiles, path, history, title="", ax=None):
    """History, median and the quantile bands (outermost lightest)."""
    import matplotlib

    own = ax is None
    if own:
        matplotlib.use("Agg")  # files only; a notebook passes its own axes
    import matplotlib.pyplot as plt

    if own:
        fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(times[-history:], y[-history:], color="black", lw=1.2, label="history")
    mid = median_index(quantiles)
    xs = np.concatenate([times[-1:], ftimes])
    level = {round(x, 6): i for i, x in enumerate(quantiles)}
    # bands between symmetric levels (0.1 and 0.9, 0.05 and 0.95, ...), the widest first and lightest; a level
    # without its mirror (0.95 alone) draws no band, since its interval would not be centred on the median
    pairs = [(i, level[round(1 - x, 6)]) for i, x in enumerate(quantiles[:mid]) if round(1 - x, 6) in level]
    for k, (i, j) in enumerate(pairs):
        ax.fill_between(
            xs,
            np.concatenate([[y[-1]], q[:, i]]),
            np.concatenate([[y[-1]], q[:, j]]),
            color="tab:blue",
            alpha=0.15 + 0.2 * k,
            label=f"{round(100 * (quantiles[j] - quantiles[i]))}% interval",
        )
    ax.plot(xs, np.concatenate([[y[-1]], q[:, mid]]), color="tab:blue", lw=1.8, label=f"median (q{quantiles[mid]})")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    if own:
        fig.autofmt_xdate()
        fig.tight_layout()
        import io

        from seqapps.export.atomic import atomic_write_bytes

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())  # never a half-written PNG


def model_card(meta: dict, cfg) -> str:
    bt = meta.get("backtest") or {}
    tr = meta.get("training") or {}
    H = meta["horizon"]
    extras = ""
    if cfg.aux_targets:
        extras = (
            f"; trained to also predict the changes of {cfg.aux_targets} over the horizon (auxiliary head, loss "
            f"weight {cfg.aux_weight}; not part of the saved model)"
        )
    if cfg.ensemble > 1:
        seeds = f"{cfg.seed}..{cfg.seed + cfg.ensemble - 1}"
        extras += f"; average of {cfg.ensemble} such networks trained with seeds {seeds}"
    if cfg.linear_blend > 0:
        extras += (
            f"; quantiles moved by {cfg.linear_blend} x (ridge forecast - median), the ridge regression (L2 "
            f"{cfg.ridge_l2}) of the scaled targets on the window solved on the training windows"
        )
    if cfg.target_step > 0:
        extras += (
            f"; the median is rounded to a multiple of {cfg.target_step:g} (the step `{meta['target']}` is recorded"
            " in), the other quantiles clipped so that none crosses it"
        )
    from seqapps.forecast import model as model_lib

    loss = "the pinball loss"
    if model_lib.horizon_weights(H, cfg.loss_last_horizons, cfg.loss_other_weight) is not None:
        loss += (
            f", weighted 1 on the last {cfg.loss_last_horizons} horizons and {cfg.loss_other_weight:g} on the others"
        )
    if cfg.lr_plateau:
        loss += f" (learning rate x{cfg.lr_factor:g} after {cfg.lr_plateau} epoch(s) without a better val loss)"
    if cfg.ema:
        loss += f", keeping a moving average of the weights (momentum {cfg.ema:g})"
    lines = [
        f"# forecast model: {meta['target']} from {cfg.data}",
        "",
        f"Recurrent quantile forecaster (seqapps.layers {encoder_name(cfg)}, {cfg.units} units x {cfg.num_layers}"
        f"{extras}"
        f") trained with {loss}. Input: the last {meta['window']} rows of {meta['input_columns']} (raw "
        f"values; features and scaling are inside the model{_calendar_text(meta)}). Output: quantiles {meta['quantiles']} of "
        f"`{meta['target']}` for 1..{H} steps ahead, in the target's units.",
        "",
        "## Data",
        "",
        f"- spec: `{cfg.data}` (mode {meta['mode']}, split `{cfg.split}`, test origins from "
        f"{str(bt.get('test_start', ''))[:10]})",
    ]
    d = tr.get("data") or {}
    if d:
        lines.append(
            f"- {d.get('series')} series, {d.get('rows')} rows; windows train {d.get('train_windows')} / val "
            f"{d.get('val_windows')} / test {d.get('test_windows')}; skipped files: "
            f"{len(d.get('skipped_files') or {})} (listed in metadata.json)"
        )
        roles = d.get("series_roles") or {}
        if "test" in roles:
            lines.append(f"- held-out test series ({len(roles['test'])}): {', '.join(roles['test'])}")
    if tr:
        if tr.get("members"):
            epochs = ", ".join(str(m["epochs_run"]) for m in tr["members"])
            lines.append(f"- training: {epochs} epochs (members), {tr.get('train_seconds')} s in all on a 2-core CPU")
        else:
            lines.append(f"- training: {tr.get('epochs_run')} epochs, {tr.get('train_seconds')} s on a 2-core CPU")
    lines += [
        "",
        "## Backtest (rolling origin, test split)",
        "",
        f"{bt.get('windows')} windows from {bt.get('series')} series, an origin every {bt.get('origins_every')} "
        "rows. MAE/RMSE are in the target's units, averaged over all windows; MASE is scaled by each series' in-sample "
        "one-step naive MAE (rows before the test period); direction = share of windows where the sign of "
        "(forecast - last value) matches the outcome (naive has none); coverage = share inside the 10%-90% "
        f"interval (naive: random-walk normal interval). Seasonal naive uses period {cfg.season} rows, so it "
        f"equals naive at horizon {cfg.season}.",
        "",
    ]
    if bt:
        from seqapps.forecast import backtest

        iv = bt.get("mae_ratio_interval")
        for h in sorted({1, H}):
            lines += [
                f"### horizon {h}",
                "",
                "| method | MAE | RMSE | MAPE % | MASE | direction | 80% coverage | MAE / naive |",
                "|---|---|---|---|---|---|---|---|",
            ]
            groups = [("", bt["methods"])]
            if "arima_subset" in bt:
                groups.append(
                    (f" (ARIMA subset, {bt['arima_subset']['windows']} windows)", bt["arima_subset"]["methods"])
                )
            for tag, methods in groups:
                nm = methods["naive"]["mae"][h - 1]
                for name, m in methods.items():
                    vals = [m[k][h - 1] for k in ("mae", "rmse", "mape", "mase", "directional", "coverage80")]
                    cells = ["-" if v is None else f"{v:.4g}" for v in vals]
                    lines.append(f"| {name}{tag} | " + " | ".join(cells) + f" | {m['mae'][h - 1] / nm:.4f} |")
            lines.append("")
            if iv:
                lines += [f"{backtest.interval_text(iv, h, level=True)}.", ""]
        if H > 1:
            mo = backtest.mean_over_horizons(bt["methods"])
            lines += [
                f"MAE averaged over horizons 1..{H}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in mo["mae_mean"].items())
                + "; model MAE / baseline MAE: "
                + ", ".join(f"{k} {v:.4f}" for k, v in mo["model_ratio_vs"].items())
                + (f" ({backtest.interval_text(iv, level=True)})" if iv else "")
                + ".",
                "",
            ]
        if iv:
            lines += [backtest.interval_note(iv), ""]
        for key in backtest.NOTES:
            if bt.get(key):
                lines += [bt[key], ""]
        cal = bt.get("calibration", {})
        lines += [
            f"Calibration (all horizons): fraction of outcomes below each quantile {cal.get('nominal')}: "
            f"{cal.get('observed_fraction_below')}.",
            "",
        ]
    lite = meta.get("tflite") or {}
    lines += [
        "## Export",
        "",
        f"- SavedModel `{meta['saved_model']['path']}`: {meta['saved_model']['signatures']['serving_default']}",
        f"- plain-TensorFlow run vs Keras: max |diff| {meta['saved_model']['plain_tensorflow_max_abs_diff']:.2e}",
    ]
    for v, r in lite.items():
        lines.append(
            f"- TFLite {v} `{r['file']}` ({r['bytes'] / 1e3:.0f} kB, batch 1, builtin ops {r['ops']}): "
            f"{_parity_text(r, meta['mode'])}"
        )
    lines += [
        "",
        "## Commands",
        "",
        "```",
        "make train-forecast CONFIG=<config> OUT=<this folder>",
        "seqapps evaluate forecast --model <this folder>    # prints the comparison table",
        "seqapps predict forecast --model <this folder> --csv FILE.csv --horizon N",
        "```",
        "",
        "## Limitations",
        "",
        "- Point forecasts of daily returns are close to a random walk: do not expect to beat the naive forecast "
        "by much; the value is in calibrated intervals."
        if meta["mode"] == "ohlcv"
        else "- Trained on one station's history; other climates need retraining.",
        "- Figures are from one backtest period; markets/weather in other periods differ.",
        f"- Inputs must be regular rows in time (the model sees the last {meta['window']} rows, not dates).",
        "",
    ]
    return "\n".join(lines)

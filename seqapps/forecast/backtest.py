"""Rolling-origin backtest: the model against naive, drift, seasonal naive and ARIMA on the same windows.

At every origin t (last observed row) each method forecasts rows t+1..t+H from the history up to t.
Metrics per method and horizon h:
    MAE, RMSE, MAPE (%, over rows whose actual value is not 0), MASE (|error| / in-sample MAE of the one-step naive forecast of that series,
    averaged), directional accuracy (sign of forecast - y_t vs sign of y_{t+h} - y_t, over rows where
    both are non-zero), 80% interval coverage (where the method gives an interval).
Baselines:
    naive           y_t (random walk); interval y_t * / + 1.2816 sigma sqrt(h) with sigma the std of the
                    last ``history`` one-step changes (log changes for prices)
    drift           y_t + h (y_t - y_{t-n+1}) / (n - 1), n = min(history, rows available)
    seasonal_naive  y_{t+h-m*ceil(h/m)} (m = season: 5 trading days, 24 hours)
    arima           pmdarima.auto_arima (non-seasonal, stepwise) on the last ``history`` rows (log prices for
                    stocks), 80% interval; fitted on an evenly spaced subset of the windows when asked (slow)
Uncertainty of the comparison: a circular block bootstrap over the test period gives a 90% interval for the model's
MAE / baseline MAE at every horizon (``ratio_intervals``). The blocks are runs of consecutive origin times, with
every series' windows at those times, so that the errors' correlation over days (and across series on the same
dates) stays inside a block.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

Z80 = 1.2815515655446004
MASE_MIN_ROWS = 20  # rows before the test period that a series needs for its MASE scale (`data.naive_scale`)
NOTES = ("mape_note", "mase_note")  # what the table and the model card print under the metrics


def history(ds, si, t, n):
    y = ds.series[si].target
    return y[max(0, t - n + 1) : t + 1]


def seasonal_naive(ds, pairs, horizon, season) -> np.ndarray:
    """Seasonal-naive forecasts [N, H]: for target row t+h, the row at the same phase of the last season
    observed by origin t (t+h-season for h <= season, two seasons back beyond that, ...)."""
    hs = np.arange(1, horizon + 1)
    back = hs - season * np.ceil(hs / season).astype(int)  # <= 0: never after the origin
    out = np.empty((len(pairs), horizon))
    for k, (si, t) in enumerate(pairs):
        out[k] = ds.series[si].target[np.maximum(t + back, 0)]
    return out


def baselines(ds, pairs, horizon, season, hist, log_space):
    """naive, drift, seasonal naive point forecasts [N, H] and the naive 80% interval [N, H, 2]."""
    N = len(pairs)
    naive = np.empty((N, horizon))
    drift = np.empty((N, horizon))
    nint = np.empty((N, horizon, 2))
    hs = np.arange(1, horizon + 1)
    for k, (si, t) in enumerate(pairs):
        y = ds.series[si].target
        h = history(ds, si, t, hist)
        naive[k] = y[t]
        slope = (h[-1] - h[0]) / (len(h) - 1) if len(h) > 1 else 0.0
        drift[k] = y[t] + hs * slope
        g = np.log(h) if log_space else h
        sd = float(np.std(np.diff(g))) if len(g) > 2 else 0.0
        half = Z80 * sd * np.sqrt(hs)
        if log_space:
            nint[k, :, 0], nint[k, :, 1] = y[t] * np.exp(-half), y[t] * np.exp(half)
        else:
            nint[k, :, 0], nint[k, :, 1] = y[t] - half, y[t] + half
    return naive, drift, seasonal_naive(ds, pairs, horizon, season), nint


def arima_forecasts(ds, pairs, horizon, hist, log_space):
    """auto_arima per window -> (point [N, H], interval [N, H, 2], seconds), with a progress bar at a
    terminal (a few hundred fits take minutes)."""
    import pmdarima as pm

    from seqapps.app import progress_bar

    bar = progress_bar(len(pairs), "window", f"ARIMA (pmdarima.auto_arima) on {len(pairs)} test windows:")

    point = np.empty((len(pairs), horizon))
    interval = np.empty((len(pairs), horizon, 2))
    t0 = time.time()
    try:  # multi-threaded BLAS makes these small fits ~20x slower on a shared CPU
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)
    except ImportError:  # pragma: no cover - comes with scikit-learn (a pmdarima dependency)
        limits = None
    for k, (si, t) in enumerate(pairs):
        h = history(ds, si, t, hist)
        g = np.log(h) if log_space else h
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                m = pm.auto_arima(
                    g,
                    seasonal=False,
                    stepwise=True,
                    max_p=3,
                    max_q=3,
                    max_d=1,
                    suppress_warnings=True,
                    error_action="ignore",
                    information_criterion="aic",
                )
                f, ci = m.predict(horizon, return_conf_int=True, alpha=0.2)
                f, ci = np.asarray(f), np.asarray(ci)
            except Exception:  # noqa: BLE001 - a failed fit falls back to the random walk, counted below
                f, ci = np.full(horizon, g[-1]), np.full((horizon, 2), g[-1])
        if log_space:
            f, ci = np.exp(f), np.exp(ci)
        point[k], interval[k] = f, ci
        if bar is not None:
            bar.update(k + 1)
    if limits is not None:
        limits.restore_original_limits()
    return point, interval, time.time() - t0


def metrics(pred, y, last, scale, interval=None, directional=True) -> dict:
    """Per-horizon metrics. pred, y [N, H]; last [N] (y_t); scale [N] (MASE denominators)."""
    err = pred - y
    out = {
        "mae": np.mean(np.abs(err), 0),
        "rmse": np.sqrt(np.mean(err**2, 0)),
        "mape": _mape(err, y),
        "mase": _mase(err, scale),
    }
    if directional:
        dp, dy = np.sign(pred - last[:, None]), np.sign(y - last[:, None])
        both = (dp != 0) & (dy != 0)
        hit = np.where(both, dp == dy, False).sum(0)
        n = both.sum(0)
        out["directional"] = np.where(n > 0, hit / np.maximum(n, 1), np.nan)
    else:
        out["directional"] = np.full(y.shape[1], np.nan)
    if interval is not None:
        inside = (y >= interval[..., 0]) & (y <= interval[..., 1])
        out["coverage80"] = inside.mean(0)
        out["interval_width"] = np.mean(interval[..., 1] - interval[..., 0], 0)
    else:
        out["coverage80"] = np.full(y.shape[1], np.nan)
        out["interval_width"] = np.full(y.shape[1], np.nan)
    return {k: [None if not np.isfinite(x) else round(float(x), 6) for x in v] for k, v in out.items()}


def _has_scale(scale) -> np.ndarray:
    """Windows whose series has a MASE scale (`data.naive_scale` gives NaN to a series with too few rows before
    the test period)."""
    return np.isfinite(scale) & (scale > 0)


def _mase(err, scale) -> np.ndarray:
    """Mean of |error| / scale over the windows whose series has a scale."""
    ok = _has_scale(scale)
    if not ok.any():
        return np.full(err.shape[1], np.nan)
    return np.mean(np.abs(err[ok]) / scale[ok, None], 0)


def mase_note(ds, pairs, scale) -> str | None:
    """Which test windows MASE leaves out: those of series with no in-sample scale."""
    left = ~_has_scale(scale)
    if not left.any():
        return None
    names = sorted({ds.series[si].name for si in pairs[left, 0]})
    return (
        f"MASE leaves out {int(left.sum()):,} of the {len(pairs):,} windows: those of {', '.join(names[:5])}"
        f"{' ...' if len(names) > 5 else ''}, which have fewer than {MASE_MIN_ROWS} rows before the test period "
        "to scale by."
    )


def mape_note(y) -> str | None:
    """Why MAPE says little, when the actual values ``y`` reach zero or below (a temperature in degrees Celsius,
    say): a percentage of a value near zero is large whatever the error. None for positive values (prices)."""
    y = np.asarray(y, np.float64)
    y = y[np.isfinite(y)]
    if not y.size or y.min() > 0:
        return None
    zeros = int((np.abs(y) <= 1e-9).sum())
    return (
        f"MAPE says little here: the actual values run from {y.min():.4g} to {y.max():.4g}, through zero "
        f"({zeros:,} of the {y.size:,} values scored are 0 and left out of it), and a percentage of a value near "
        "zero is large whatever the error. Compare MAE, RMSE and MASE."
    )


def _mape(err, y):
    """Mean absolute percentage error over the rows where the actual value is not zero (undefined there)."""
    nz = np.abs(y) > 1e-9
    return 100 * np.where(nz, np.abs(err) / np.where(nz, np.abs(y), 1.0), 0.0).sum(0) / np.maximum(nz.sum(0), 1)


def run(ds, pairs, y, model_q, quantiles, cfg, scale_by_series, arima_windows=None, log_space=True, verbose=True):
    """The comparison on ``pairs`` (test windows). ``model_q`` [N, H, Q] are the model's quantiles."""
    quantiles = list(quantiles)
    qi = {q: i for i, q in enumerate(quantiles)}
    mid = qi.get(0.5, len(quantiles) // 2)
    lo_i, hi_i = qi.get(0.1, 0), qi.get(0.9, len(quantiles) - 1)
    last = np.array([ds.series[si].target[t] for si, t in pairs])
    scale = scale_by_series[pairs[:, 0]]
    hist = cfg.arima_history
    naive, drift, snaive, nint = baselines(ds, pairs, cfg.horizon, cfg.season, hist, log_space)
    model_int = np.stack([model_q[..., lo_i], model_q[..., hi_i]], -1)
    res = {
        "windows": len(pairs),
        "series": int(len(np.unique(pairs[:, 0]))),
        "methods": {
            "model": metrics(model_q[..., mid], y, last, scale, model_int),
            "naive": metrics(naive, y, last, scale, nint, directional=False),
            "drift": metrics(drift, y, last, scale),
            "seasonal_naive": metrics(snaive, y, last, scale),
        },
    }
    below = (y[..., None] <= model_q).mean(axis=(0, 1))
    for key, note in (("mape_note", mape_note(y)), ("mase_note", mase_note(ds, pairs, scale))):
        if note:
            res[key] = note
    res["calibration"] = {
        "nominal": quantiles,
        "observed_fraction_below": [round(float(b), 4) for b in below],
        "by_horizon": (y[..., None] <= model_q).mean(axis=0).round(4).tolist(),
    }
    res["mae_ratio_vs"] = {
        k: _ratio(res["methods"]["model"]["mae"], res["methods"][k]["mae"])
        for k in ("naive", "drift", "seasonal_naive")
    }
    if cfg.bootstrap:
        block = cfg.bootstrap_block or default_block(cfg.season, cfg.backtest_step)
        point = {"model": model_q[..., mid], "naive": naive, "drift": drift, "seasonal_naive": snaive}
        res["mae_ratio_interval"] = ratio_intervals(
            point, y, origin_times(ds, pairs), block, cfg.bootstrap, seed=cfg.seed
        )
    n_arima = cfg.arima_windows if arima_windows is None else arima_windows
    if n_arima:
        sub = np.unique(np.linspace(0, len(pairs) - 1, min(n_arima, len(pairs))).round().astype(int))
        ap, ai, secs = arima_forecasts(ds, pairs[sub], cfg.horizon, hist, log_space)
        args = (y[sub], last[sub], scale[sub])
        res["arima_subset"] = {
            "windows": len(sub),
            "seconds": round(secs, 1),
            "history_rows": hist,
            "note": "ARIMA is slow, so it runs on an evenly spaced subset of the test windows; the other methods "
            "are repeated here on exactly that subset",
            "methods": {
                "arima": metrics(ap, *args, ai),
                "model": metrics(model_q[sub][..., mid], *args, model_int[sub]),
                "naive": metrics(naive[sub], *args, nint[sub], directional=False),
            },
        }
        res["mae_ratio_vs"]["arima_subset"] = _ratio(
            res["arima_subset"]["methods"]["model"]["mae"], res["arima_subset"]["methods"]["arima"]["mae"]
        )
    if verbose:
        print(table(res, cfg.horizon))
    return res


def default_block(season: int, origins_every: int = 1) -> int:
    """Bootstrap block length in origins: those in 7 seasons of rows (a week of hours, seven weeks of trading
    days), so that errors correlated over days stay in one block."""
    return max(1, round(7 * season / max(1, origins_every)))


def origin_times(ds, pairs) -> np.ndarray:
    """The time of each window's origin row, for (series, row) ``pairs``."""
    return np.array([ds.series[si].times[t] for si, t in pairs])


def ratio_intervals(point: dict, y, times, block: int, resamples: int, level=0.9, seed=0) -> dict:
    """Circular block bootstrap intervals for MAE(model) / MAE(baseline), per horizon and averaged over horizons.

    ``point`` maps method -> point forecasts [N, H] (it must hold "model"); ``times`` [N] are the windows' origin
    times. Blocks are runs of ``block`` consecutive distinct origin times (shortened to a fifth of the period when
    the period is short), with every window at those times; a block that starts near the end goes on from the
    first time. Each resample draws as many blocks as fit in the period, with random starts, and sums every
    method's absolute errors over them. Returns the ends of the central ``level`` percentile interval (None where
    a baseline made no error, so the ratio has no bound) and the settings used.
    """
    if "model" not in point:
        raise ValueError("ratio_intervals needs the model's forecasts under 'model'")
    if resamples < 1 or block < 1:
        raise ValueError(f"bootstrap resamples ({resamples}) and block length ({block}) must be at least 1")
    uniq, inverse = np.unique(np.asarray(times), return_inverse=True)
    n_times = len(uniq)
    block = int(min(block, max(1, n_times // 5)))
    n_blocks = -(-n_times // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_times, size=(resamples, n_blocks))
    horizons = y.shape[1]

    def resampled(pred):
        per_time = np.zeros((n_times, horizons))  # absolute errors summed per origin time
        np.add.at(per_time, inverse, np.abs(np.asarray(pred, np.float64) - y))
        # circular: a block that runs past the last origin time goes on from the first, so that every time is
        # drawn equally often (a plain moving block under-draws both ends of the period)
        wrapped = np.concatenate([np.zeros((1, horizons)), per_time, per_time[:block]])
        cum = np.cumsum(wrapped, axis=0)
        return (cum[starts + block] - cum[starts]).sum(axis=1)  # [resamples, H]

    model = resampled(point["model"])
    tail = 100 * (1 - level) / 2
    out = {}
    for name, pred in point.items():
        if name == "model":
            continue
        base = resampled(pred)
        with np.errstate(divide="ignore", invalid="ignore"):  # a baseline without error: inf, no bound
            lo, hi = np.nanpercentile(model / base, [tail, 100 - tail], axis=0)
            mean_ends = np.nanpercentile(model.sum(1) / base.sum(1), [tail, 100 - tail])
        out[name] = {"lo": _finite(lo), "hi": _finite(hi), "mean_over_horizons": _finite(mean_ends)}
    return {
        "level": level,
        "resamples": int(resamples),
        "block_origins": block,
        "origin_times": int(n_times),
        "method": "circular block bootstrap over origin times",
        "vs": out,
    }


def _finite(values) -> list:
    return [round(float(v), 4) if np.isfinite(v) else None for v in values]


def interval_text(iv: dict, h=None, level=False) -> str:
    """'naive 0.7824-0.8328, ...' for horizon h (1-based), or for the mean over horizons when h is None;
    ``level``: led by '90% interval of model MAE / baseline MAE: '."""

    def ends(v):
        lo, hi = v["mean_over_horizons"] if h is None else (v["lo"][h - 1], v["hi"][h - 1])
        return "-" if lo is None or hi is None else f"{lo:.4f}-{hi:.4f}"

    text = ", ".join(f"{k} {ends(v)}" for k, v in iv["vs"].items())
    return f"{round(100 * iv['level'])}% interval of model MAE / baseline MAE: {text}" if level else text


def interval_note(iv: dict) -> str:
    return (
        f"Intervals: {iv['method']}, blocks of {iv['block_origins']} consecutive of the {iv['origin_times']} origin "
        f"times, {iv['resamples']} resamples."
    )


def _ratio(a, b):
    return [None if (x is None or y in (None, 0)) else round(x / y, 4) for x, y in zip(a, b)]


def _fmt(v, pct=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if pct:
        return f"{v:.3g}%"
    return "0" if v == 0 else (f"{v:.4g}" if abs(v) >= 1e-3 else f"{v:.2e}")


def mean_over_horizons(methods: dict) -> dict:
    """MAE averaged over horizons 1..H per method, and each method's ratio to it."""
    means = {k: float(np.mean(m["mae"])) for k, m in methods.items()}
    return {
        "mae_mean": {k: round(v, 6) for k, v in means.items()},
        "model_ratio_vs": {k: round(means["model"] / v, 4) for k, v in means.items() if k != "model" and v},
    }


def table(res, horizon) -> str:
    hs = sorted({1, horizon})
    cols = ["mae", "rmse", "mape", "mase", "directional", "coverage80"]
    iv = res.get("mae_ratio_interval")
    lines = []
    for h in hs:
        lines.append(f"horizon {h} ({res['windows']} windows, {res['series']} series):")
        lines.append(f"  {'method':<16}" + "".join(f"{c:>12}" for c in cols) + f"{'MAE/naive':>11}")
        groups = [("", res["methods"])]
        if "arima_subset" in res:
            groups.append((f" [subset of {res['arima_subset']['windows']} windows]", res["arima_subset"]["methods"]))
        naive_mae = None
        for tag, methods in groups:
            if tag:
                lines.append(f"  ARIMA comparison{tag}:")
            naive_mae = methods["naive"]["mae"][h - 1]
            for name, m in methods.items():
                row = "".join(f"{_fmt(m[c][h - 1], pct=(c == 'mape')):>12}" for c in cols)
                ratio = m["mae"][h - 1] / naive_mae if naive_mae else float("nan")
                lines.append(f"  {name:<16}{row}{ratio:>11.4f}")
        if iv:
            lines.append(f"  {interval_text(iv, h, level=True)}")
    if horizon > 1:
        mo = mean_over_horizons(res["methods"])
        lines.append(
            f"MAE averaged over horizons 1..{horizon}: " + ", ".join(f"{k} {v:.4g}" for k, v in mo["mae_mean"].items())
        )
        lines.append(
            "  model MAE / baseline MAE: " + ", ".join(f"{k} {v:.4f}" for k, v in mo["model_ratio_vs"].items())
        )
        if iv:
            lines.append(f"  {interval_text(iv, level=True)}")
    if iv:
        lines.append(interval_note(iv))
    lines += [res[key] for key in NOTES if res.get(key)]
    return "\n".join(lines)

"""How much of the 24 h temperature forecast is in the inputs? Ridge regressions and boosted trees on the same windows.

The shipped weather model (`trained/weather`) forecasts Beijing temperature 24 h ahead from the past
72 h. This script fits linear (ridge) models on the same 72-hour windows (train: 2010-2013, test: 2014)
to the 24-hour change of temperature, with the model's inputs and with the extra columns the model does
not use (wind direction ``cbwd`` one-hot, log PM2.5), and reports their MAE against the seasonal-naive
forecast (same hour yesterday = the last observed value at 24 h), then gradient-boosted trees on summary
features of the same windows (a non-linear model):

    python -m seqapps.experiments.weather_linear [--data ../shared/data/weather/pollution.csv]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys

import numpy as np

BASE = ["TEMP", "DEWP", "PRES", "Iws", "Is", "Ir"]
WINDOW, HORIZON = 72, 24


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(c not in rows[0] for c in BASE + ["year", "month", "day", "hour", "cbwd", "pm2.5"]):
        raise ValueError(f"{path}: expected the Beijing PM2.5 columns (year, month, day, hour, TEMP, cbwd, ...)")
    cols = {c: np.array([float(r[c]) for r in rows]) for c in BASE + ["year", "hour"]}
    doy = np.array(
        [datetime.date(int(r["year"]), int(r["month"]), int(r["day"])).timetuple().tm_yday for r in rows], float
    )
    cols["hour_sin"], cols["hour_cos"] = np.sin(2 * np.pi * cols["hour"] / 24), np.cos(2 * np.pi * cols["hour"] / 24)
    cols["doy_sin"], cols["doy_cos"] = np.sin(2 * np.pi * doy / 365.25), np.cos(2 * np.pi * doy / 365.25)
    for d in ("NE", "NW", "SE", "cv"):
        cols[f"wind_{d}"] = np.array([r["cbwd"] == d for r in rows], float)
    pm, last = [], 0.0
    for r in rows:  # forward fill
        last = float(r["pm2.5"]) if r["pm2.5"] not in ("NA", "") else last
        pm.append(np.log1p(last))
    cols["log_pm25"] = np.array(pm)
    return cols


def ridge_mae(cols, names, lam=10.0):
    years = cols["year"]
    origins = np.arange(WINDOW - 1, len(years) - HORIZON)
    train, test = years[origins] < 2014, years[origins] == 2014
    v = np.stack([cols[n] for n in names], 1)
    v = (v - v[years < 2014].mean(0)) / (v[years < 2014].std(0) + 1e-9)
    idx = origins[:, None] - np.arange(WINDOW)[None, :]
    x = np.concatenate([v[idx].reshape(len(origins), -1), np.ones((len(origins), 1))], 1)
    y = cols["TEMP"][origins + HORIZON] - cols["TEMP"][origins]
    w = np.linalg.solve(x[train].T @ x[train] + lam * np.eye(x.shape[1]), x[train].T @ y[train])
    return float(np.abs(x[test] @ w - y[test]).mean()), float(np.abs(y[test]).mean()), int(test.sum())


LAGS = (0, 1, 2, 3, 6, 9, 12, 18, 24, 36, 48, WINDOW - 1)


def summary_features(windows, numeric, periodic=(), season: int = 24) -> np.ndarray:
    """Raw windows [N, W, C] -> [N, F] features for boosted trees. For each column index in ``numeric``: its
    values ``LAGS`` rows before the last row (lags beyond the window are skipped), its changes over the last 3
    and ``season`` rows, and its mean, min and max over the last ``season`` rows (both clipped to the window);
    then the sine and cosine of each ``(column index, period)`` in ``periodic`` at the last row."""
    w = windows.shape[1]
    if w < 2:
        raise ValueError(f"summary_features needs windows of at least 2 rows, got {w}")
    short, long = min(3, w - 1), min(season, w - 1)
    feats = []
    for c in numeric:
        v = windows[:, :, c].astype(np.float64)
        feats += [v[:, -1 - lag] for lag in LAGS if lag < w]
        feats += [v[:, -1] - v[:, -1 - short], v[:, -1] - v[:, -1 - long]]
        day = v[:, ::-1][:, : min(season, w)]  # newest row first
        feats += [day.mean(1), day.min(1), day.max(1)]
    for c, period in periodic:
        angle = 2 * np.pi * windows[:, -1, c].astype(np.float64) / period
        feats += [np.sin(angle), np.cos(angle)]
    return np.stack(feats, 1)


def fit_boosted_trees(x, y, seeds=(0,)):
    """Gradient-boosted trees (absolute loss, sklearn's early stopping on a random 10% of the rows), one per
    seed: their mean is the forecast (`predict_trees`). Several seeds bag the early-stopping split."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return [
        HistGradientBoostingRegressor(
            loss="absolute_error", max_iter=600, learning_rate=0.05, min_samples_leaf=40, random_state=seed
        ).fit(x, y)
        for seed in seeds
    ]


def predict_trees(models, x) -> np.ndarray:
    return np.mean([m.predict(x) for m in models], 0)


def boosted_trees_mae(cols, names):
    """Gradient-boosted trees (absolute loss) on lags, 3 h and 24 h changes and 24 h min/mean/max of each
    column (`summary_features`), plus the calendar at the origin and at the target time: a non-linear model
    of the same history."""
    years = cols["year"]
    origins = np.arange(WINDOW - 1, len(years) - HORIZON)
    train, test = years[origins] < 2014, years[origins] == 2014
    v = np.stack([cols[n] for n in names], 1)
    x = summary_features(v[origins[:, None] - np.arange(WINDOW)[::-1]], range(len(names)))
    calendar = [
        cols[n][o] for n in ("hour_sin", "hour_cos", "doy_sin", "doy_cos") for o in (origins, origins + HORIZON)
    ]
    x = np.concatenate([x, np.stack(calendar, 1)], 1)
    y = cols["TEMP"][origins + HORIZON] - cols["TEMP"][origins]
    pred = predict_trees(fit_boosted_trees(x[train], y[train]), x[test])
    return float(np.abs(pred - y[test]).mean()), float(np.abs(y[test]).mean()), int(test.sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seqapps.experiments.weather_linear", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", default="../shared/data/weather/pollution.csv")
    parser.add_argument("--no-trees", action="store_true", help="skip the gradient-boosted trees (~15 s)")
    args = parser.parse_args(argv)
    cols = load(args.data)
    calendar = ["hour_sin", "hour_cos", "doy_sin", "doy_cos"]
    wind = ["wind_NE", "wind_NW", "wind_SE", "wind_cv"]
    print(f"{WINDOW} h windows -> temperature {HORIZON} h ahead; train 2010-2013, test 2014")
    print("| model, inputs | test windows | MAE | seasonal naive | MAE lower by |")
    print("|---|---:|---:|---:|---:|")
    for label, names in (
        ("the model's inputs", BASE + calendar),
        ("+ wind direction", BASE + calendar + wind),
        ("+ wind direction + log PM2.5", BASE + calendar + wind + ["log_pm25"]),
    ):
        mae, naive, n = ridge_mae(cols, names)
        print(f"| ridge, {label} | {n:,} | {mae:.3f} | {naive:.3f} | {100 * (1 - mae / naive):.1f}% |")
    if not args.no_trees:
        mae, naive, n = boosted_trees_mae(cols, BASE + wind + ["log_pm25"])
        label = "boosted trees, + wind direction + log PM2.5"
        print(f"| {label} | {n:,} | {mae:.3f} | {naive:.3f} | {100 * (1 - mae / naive):.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

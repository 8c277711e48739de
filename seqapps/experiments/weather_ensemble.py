"""Does averaging several weather models reach the 24 h target? Median forecasts of trained folders, averaged.

The forecast app now trains such an average itself (``ensemble: K`` in the config; the shipped weather
config uses 5 networks plus a ridge blend). This script scores trained folders one by one and averaged, on
the test windows of the first folder's config (2014) against the seasonal-naive forecast (same hour
yesterday), e.g. single networks with other seeds:

    for s in 1 2 3; do
      seqapps train forecast --config seqapps/forecast/configs/weather.yaml --set seed=$s \\
          --set ensemble=1 --set linear_blend=0 --set arima_windows=0 --out runs/weather-seed$s
    done
    python -m seqapps.experiments.weather_ensemble runs/weather-seed1 runs/weather-seed2 runs/weather-seed3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from seqapps import native_log


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seqapps.experiments.weather_ensemble", description=__doc__.split("\n")[0]
    )
    parser.add_argument("models", nargs="+", help="trained forecast folders (each with saved_model/ and config.yaml)")
    parser.add_argument("--config", default=None, help="config whose data and test split to use (default: the first)")
    args = parser.parse_args(argv)
    native_log.init_devices()  # TensorFlow's start-up errors about nothing wrong stay hidden

    import tensorflow as tf

    from seqapps import config as config_lib
    from seqapps.export import saved_model
    from seqapps.forecast import backtest
    from seqapps.forecast import data as data_lib
    from seqapps.forecast.app import median_index, parse_quantiles
    from seqapps.forecast.config import ForecastConfig

    for d in args.models:
        if not saved_model.version_dirs(Path(d)):
            parser.error(f"{d}: no SavedModel (saved_model/<version>) in this folder; train it first")
    cfg = config_lib.read(ForecastConfig, args.config or Path(args.models[0]) / "config.yaml")
    ds = data_lib.load(cfg)
    sp = data_lib.split(ds, cfg)
    x, y = data_lib.windows(ds, sp.test, cfg.window, cfg.horizon)
    base = np.abs(backtest.seasonal_naive(ds, sp.test, cfg.horizon, cfg.season) - y).mean(0)
    print(f"{len(x):,} test windows; target {cfg.target}; seasonal naive MAE at {cfg.horizon} h {base[-1]:.3f}")
    print(f"| model | MAE at {cfg.horizon} h | lower by | MAE over 1..{cfg.horizon} h | lower by |")
    print("|---|---:|---:|---:|---:|")
    medians = []
    for d in args.models:
        fn = tf.saved_model.load(str(saved_model.latest(Path(d)))).signatures["serving_default"]
        q = np.concatenate(
            [fn(window=tf.constant(x[i : i + 2048]))["quantiles"].numpy() for i in range(0, len(x), 2048)]
        )
        medians.append(q[..., median_index(parse_quantiles(cfg.quantiles))])
    for label, m in [*zip(args.models, medians), (f"average of {len(medians)}", np.mean(medians, 0))]:
        mae = np.abs(m - y).mean(0)
        print(
            f"| {label} | {mae[-1]:.3f} | {100 * (1 - mae[-1] / base[-1]):.1f}% | {mae.mean():.3f} | "
            f"{100 * (1 - mae.mean() / base.mean()):.1f}% |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which weather settings help at 24 h? Networks trained per setting and seed, scored on a development year.

The 2014 test year must not choose the settings, so this script cuts the data before the year after
``--dev-year`` and uses that year as the test split (default: train 2010-2012, test 2013). For every
variant (config overrides) and seed it trains one network as the forecast app does (`ForecastApp.fit_network`,
early-stopped on the last 10% before the dev year), and prints, at the last horizon, each network's
MAE against the seasonal-naive forecast (same hour yesterday), the average of its seeds, that average
moved ``--blend`` of the way to the ridge forecast on the variant's inputs (as ``linear_blend`` does; all
rounded to multiples of ``target_step`` when the config sets one, as the saved model rounds its median),
and the same for all networks of all variants together (blended with the first variant's ridge). With
``--trees W`` it also fits gradient-boosted trees to the last horizon (`weather_linear.summary_features` of
every window before the dev year, three bagged fits) and adds a column with the trees blended in at W and
the ridge at ``--blend``: a third kind of model next to the networks and the ridge. Under the table, each
row's last column is compared with the first row's on the same windows: the ratio of their MAEs with a
paired 90% interval (circular block bootstrap over weeks of origins), which shows how large a difference
the windows of one year can tell apart. The variants must share the test windows and targets (same horizon
and data):

    python -m seqapps.experiments.weather_sweep [--config seqapps/forecast/configs/weather.yaml] \\
        [--dev-year 2013] [--seeds 42,43,44,45,46] [--variant lstm=cell:lstm ...] [--blend 0.25] [--trees 0.2] \\
        [--out runs/weather-sweep]

Each network's median forecasts are kept in ``--out`` (``VARIANT/seedS.npy``), so an interrupted or
extended sweep trains only what is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from seqapps import native_log

DEFAULT_VARIANTS = {
    "shipped settings": "",
    "lstm": "cell:lstm",
    "lr 0.001, 25 epochs": "learning_rate:0.001,epochs:25,patience:4",
    "32 units": "units:32",
    "batch 64": "batch_size:64",
    "2 layers": "num_layers:2",
}


def parse_variant(text: str) -> tuple[str, list]:
    """``NAME=key:value,key:value`` -> (NAME, ["key=value", ...]); ``NAME=`` is the config unchanged. An item
    without a colon continues the previous value, for list settings: ``aux=aux_targets:dewp,pres``."""
    name, sep, body = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--variant {text!r}: expected NAME=key:value[,key:value...], e.g. lstm=cell:lstm")
    pairs = []
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, colon, value = item.partition(":")
        if not colon and pairs:
            pairs[-1][1] += f",{item}"
        elif not colon or not key.strip():
            raise ValueError(f"--variant {text!r}: {item!r} is not key:value")
        else:
            pairs.append([key.strip(), value.strip()])
    return name.strip(), [f"{k}={v}" for k, v in pairs]


def cut_before(ds, end):
    """The dataset with every series cut to its rows before ``end`` (numpy datetime64)."""
    series = [dataclasses.replace(s, times=s.times[s.times < end], values=s.values[s.times < end]) for s in ds.series]
    return dataclasses.replace(ds, series=series)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seqapps.experiments.weather_sweep",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="default variants: " + "; ".join(f"{k} ({v or 'the config'})" for k, v in DEFAULT_VARIANTS.items()),
    )
    parser.add_argument("--config", default="seqapps/forecast/configs/weather.yaml", help="forecast config (YAML)")
    parser.add_argument("--dev-year", type=int, default=2013, help="test year; later rows are dropped (default 2013)")
    parser.add_argument("--seeds", default="42,43,44,45,46", help="comma-separated seeds per variant")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=key:value,... (repeatable); a list value goes on after commas: aux=aux_targets:dewp,pres",
    )
    parser.add_argument("--blend", type=float, default=0.5, help="ridge blend weight for the blended column")
    parser.add_argument(
        "--trees", type=float, default=0.0, help="blend weight of boosted trees in an extra column (0 = no trees)"
    )
    parser.add_argument("--set", action="append", default=[], help="key=value override for every variant")
    parser.add_argument("--out", default="runs/weather-sweep", help="folder for the networks and their forecasts")
    args = parser.parse_args(argv)
    native_log.init_devices()  # TensorFlow's start-up errors about nothing wrong stay hidden
    try:
        variants = dict(parse_variant(v) for v in args.variant) or {
            k: parse_variant(f"x={v}")[1] for k, v in DEFAULT_VARIANTS.items()
        }
    except ValueError as exc:
        parser.error(str(exc))
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. 42,43,44")
    if not seeds:
        parser.error("--seeds: give at least one seed")
    if not 0 <= args.blend <= 1:
        parser.error(f"--blend must be in [0, 1], got {args.blend}")
    if not 0 <= args.trees <= 1 - args.blend + 1e-9:
        parser.error(f"--trees must be in [0, 1 - --blend] = [0, {1 - args.blend:g}], got {args.trees}")

    import keras
    import yaml

    from seqapps import config as config_lib
    from seqapps.forecast import backtest, features
    from seqapps.forecast import data as data_lib
    from seqapps.forecast import model as model_lib
    from seqapps.forecast.app import ForecastApp, median_index

    app = ForecastApp()
    start = f"{args.dev_year}-01-01"
    base = config_lib.load(app.config_class(), args.config, [*args.set, f"test_start={start}", "verbose=0"])
    ds = cut_before(data_lib.load(base), np.datetime64(f"{args.dev_year + 1}-01-01", "s"))
    out = Path(args.out)
    rows, all_medians, y, naive, ridges = [], [], None, None, []
    for name, sets in variants.items():
        cfg = config_lib.load(app.config_class(), args.config, [*args.set, *sets, f"test_start={start}", "verbose=0"])
        _, sp, spec, quantiles, arrays, _ = app.prepare(cfg, ds=ds)
        x, target = data_lib.windows(ds, sp.test, cfg.window, cfg.horizon)
        if y is None:
            y, pairs, first = target, sp.test, (cfg, spec, sp)
            naive = np.abs(backtest.seasonal_naive(ds, pairs, cfg.horizon, cfg.season)[:, -1] - y[:, -1]).mean()
        elif not (np.array_equal(sp.test, pairs) and np.array_equal(target, y)):
            parser.error(f"variant {name!r} changes the test windows or targets (horizon or data): sweep it separately")
        test_f, anchor, scale = features.batched(x, spec)
        kernel, bias = model_lib.fit_ridge(*arrays["train"], cfg.ridge_l2)  # this variant's inputs
        ridges.append(anchor + scale[:, -1] * (test_f.reshape(len(x), -1) @ kernel[:, -1] + bias[-1]))
        mid = median_index(quantiles)
        folder = out / _slug(name)
        # target_step only rounds the scored forecasts: networks kept with and without it are the same
        settings = {**dataclasses.asdict(cfg), "target_step": None}
        if (folder / "config.yaml").is_file():
            kept = yaml.safe_load((folder / "config.yaml").read_text())
            # a key the kept file lacks is an option added since its networks were trained, at its default then
            defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
            missing = object()
            differ = sorted(
                k
                for k in kept.keys() | settings.keys()
                if kept.get(k, defaults.get(k, missing)) != settings.get(k, missing)
            )
            if differ:
                parser.error(
                    f"{folder} holds networks trained with other settings ({', '.join(differ)}): "
                    "pass another --out, or delete it"
                )
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=True))
        medians = []
        for seed in seeds:
            path = folder / f"seed{seed}.npy"
            if not path.is_file():
                model, _ = app.fit_network(cfg, spec, quantiles, arrays, seed, folder / f"run{seed}")
                z = model.predict(test_f, batch_size=4096, verbose=0)[:, -1, mid]
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, (anchor + scale[:, -1] * z).astype(np.float64))
                tmp.replace(path)
                keras.backend.clear_session()
            medians.append(np.load(path))
        all_medians += medians
        rows.append((name, medians, ridges[-1]))
    if len(rows) > 1:  # blended with the first variant's ridge
        rows.append((f"all {len(all_medians)} networks", all_medians, ridges[0]))

    trees = None
    if args.trees > 0:
        print("[weather_sweep] fitting boosted trees (three bagged fits, about 30 s on 2 cores)", flush=True)
        trees = tree_forecast(*first, ds)
    step = base.target_step

    def lower(pred):
        return lower_mae(pred, y[:, -1], naive, step)

    h = base.horizon
    print(
        f"\n{len(y):,} windows of {args.dev_year}; seasonal naive MAE at {h} h: {naive:.3f}; ridge alone {lower(ridges[0]):.1f}%"
    )
    if trees is not None:
        print(f"boosted trees alone {lower(trees):.1f}%")
    if step > 0:
        print(f"forecasts rounded to multiples of target_step={step:g} (--set target_step=0: unrounded)")
    extra = "" if trees is None else f" + ridge x{args.blend:g} + trees x{args.trees:g} |"
    print(f"| variant | single networks, % lower at {h} h | average | average + ridge x{args.blend:g} |{extra}")
    print("|---|---|---:|---:|" + ("---:|" if extra else ""))
    finals = []  # each row's last column
    for name, medians, ridge in rows:
        singles = " / ".join(f"{lower(m):.1f}" for m in medians) if len(medians) <= 10 else f"{len(medians)} nets"
        avg = np.mean(medians, 0)
        blended = (1 - args.blend) * avg + args.blend * ridge
        cells = f"| {name} | {singles} | {lower(avg):.1f}% | {lower(blended):.1f}% |"
        if trees is not None:
            blended = (1 - args.blend - args.trees) * avg + args.blend * ridge + args.trees * trees
            cells += f" {lower(blended):.1f}% |"
        print(cells)
        finals.append((name, rounded(blended, step)))
    if len(finals) > 1:
        block = backtest.default_block(base.season)  # every origin of the dev year is scored
        print(paired_intervals(finals, y[:, -1], backtest.origin_times(ds, pairs), block))
    return 0


def paired_intervals(finals, y, times, block: int) -> str:
    """Each forecast's MAE over the first's on the same windows, with a 90% interval from a circular block
    bootstrap over the origins (`backtest.ratio_intervals`): how much of a difference the windows of one
    development year can tell apart. ``finals``: (name, forecasts [N]) pairs."""
    from seqapps.forecast.backtest import ratio_intervals

    (first_name, first), y = finals[0], np.asarray(y, np.float64)[:, None]
    lines = [
        f"\nLast column's MAE / that of {first_name!r} on the same windows, with a paired 90% interval\n"
        f"(circular block bootstrap over blocks of {block} origins: the windows of this year, not other years or "
        "seeds):"
    ]
    for name, pred in finals[1:]:
        iv = ratio_intervals({"model": pred[:, None], "first": first[:, None]}, y, times, block, 1000)
        lo, hi = iv["vs"]["first"]["lo"][0], iv["vs"]["first"]["hi"][0]
        ratio = np.abs(pred[:, None] - y).sum() / np.abs(first[:, None] - y).sum()
        ends = "no bound" if lo is None or hi is None else f"{lo:.4f}-{hi:.4f}"
        lines.append(f"  {name}: {ratio:.4f} ({ends})")
    return "\n".join(lines)


def tree_forecast(cfg, spec, sp, ds, seeds=(0, 1, 2)) -> np.ndarray:
    """Boosted trees' forecast of the target at the last horizon for the test windows of split ``sp``: trained
    on every window whose targets end before the test split (the training and validation blocks, every origin
    from the first to the last), on `weather_linear.summary_features` of the raw windows (numeric columns;
    sine and cosine of the calendar fields) with the target's change from the origin as the label; the mean
    of ``seeds`` bagged fits."""
    from seqapps.experiments import weather_linear
    from seqapps.forecast import data as data_lib
    from seqapps.forecast.data import CALENDAR_PERIODS

    periodic = [(spec.columns.index(c), CALENDAR_PERIODS[c]) for c in spec.calendar]

    def summary(pairs):
        x, y = data_lib.windows(ds, pairs, cfg.window, cfg.horizon)
        feats = weather_linear.summary_features(x, spec.numeric, periodic, cfg.season)
        return feats, x[:, -1, spec.target_index], y[:, -1]

    # the training blocks are strided and the windows between the blocks left out: take every origin, per series
    known, every = np.concatenate([sp.train, sp.val]), []
    for si in np.unique(known[:, 0]):
        origins = known[known[:, 0] == si, 1]
        every += [(si, o) for o in range(origins.min(), origins.max() + 1)]
    x_train, last_train, y_train = summary(np.array(every))
    x_test, last_test, _ = summary(sp.test)
    models = weather_linear.fit_boosted_trees(x_train, y_train - last_train, seeds)
    return last_test + weather_linear.predict_trees(models, x_test)


def lower_mae(pred, y, naive_mae: float, step: float = 0.0) -> float:
    """How much lower (%) the MAE of ``pred`` is than ``naive_mae``; with ``step`` > 0 the forecasts are first
    rounded to multiples of it, as a saved model with that ``target_step`` rounds its median."""
    return 100 * (1 - np.abs(rounded(pred, step) - y).mean() / naive_mae)


def rounded(pred, step: float) -> np.ndarray:
    """``pred`` as float64, rounded to multiples of ``step`` when it is > 0 (as the saved model rounds)."""
    from seqapps.forecast.features import round_to_step

    pred = np.asarray(pred, np.float64)
    return round_to_step(pred, step).numpy() if step > 0 else pred


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "variant"


if __name__ == "__main__":
    sys.exit(main())

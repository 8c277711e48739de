"""Window -> model features, and model outputs -> quantiles in target units, as TensorFlow ops.

The same functions run when the training arrays are built and inside the exported SavedModel and
TFLite models, so serving sees exactly the features training saw (no train/serve skew). Everything
a window needs is inside the window; the only fitted numbers are the normalisation statistics,
fitted on the training windows alone and stored in the spec (and in ``metadata.json``).

ohlcv mode (prices), for the W-1 steps of a window of W rows:
    r_t = log p_t - log p_{t-1}                     (p = target price, e.g. close or adj close)
    sigma = sqrt(mean(r^2 over the last vol_window returns)), floored at ``sigma_floor``
    features: r_t / sigma, log(high/low) / sigma, log(close/open) / sigma,
              log(1+volume) - its window mean, log(sigma) -> standardised (train mean/std), clipped to +-10
    output z[h, q] -> price quantile  p_T * exp(sigma * sqrt(h) * z)     (a scaled log-return quantile)
generic mode (levels, e.g. temperature), for the W steps:
    features: (x - mean) / std for the target and feature columns, (y_t - y_{t-1}) / std_diff,
              sin/cos of the calendar fields (hour, day of year, ...)
    output z[h, q] -> y_T + scale_h * z   (scale_h = train std of y_{t+h} - y_t)
    target_step > 0 (a target recorded in whole steps, e.g. whole degrees): the median is rounded to a
    multiple of it, the other quantiles clipped so they never cross it (`round_median`)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from seqapps.forecast.data import CALENDAR_PERIODS, OHLCV


@dataclasses.dataclass
class FeatureSpec:
    mode: str
    columns: list
    target_index: int
    window: int
    horizon: int
    vol_window: int = 20
    sigma_floor: float = 1e-3
    calendar: list = dataclasses.field(default_factory=list)
    feat_mean: list = dataclasses.field(default_factory=list)  # standardisation of engineered features (ohlcv)
    feat_std: list = dataclasses.field(default_factory=list)
    col_mean: list = dataclasses.field(default_factory=list)  # generic: per numeric column
    col_std: list = dataclasses.field(default_factory=list)
    diff_std: float = 1.0
    horizon_scale: list = dataclasses.field(default_factory=list)  # generic: std of y_{t+h} - y_t
    target_step: float = 0.0  # generic: > 0 rounds the median (quantile median_index) to multiples of it
    median_index: int = 0

    @property
    def steps(self) -> int:
        return self.window - 1 if self.mode == "ohlcv" else self.window

    @property
    def numeric(self) -> list:
        return [i for i, c in enumerate(self.columns) if c not in self.calendar]

    @property
    def num_features(self) -> int:
        if self.mode == "ohlcv":
            return 5
        return len(self.numeric) + 1 + 2 * len(self.calendar)

    def to_dict(self):
        return dataclasses.asdict(self)


def _ohlcv_raw(raw, spec: FeatureSpec):
    idx = {c: spec.columns.index(c) for c in OHLCV}
    tiny = 1e-12
    logp = tf.math.log(tf.maximum(raw[:, :, spec.target_index], tiny))
    r = logp[:, 1:] - logp[:, :-1]
    k = min(spec.vol_window, spec.window - 1)
    sigma = tf.sqrt(tf.reduce_mean(tf.square(r[:, -k:]), axis=1) + tiny)
    sigma = tf.maximum(sigma, spec.sigma_floor)
    s = sigma[:, None]
    o, h, lo, c, v = (raw[:, 1:, idx[n]] for n in OHLCV)
    hl = (tf.math.log(tf.maximum(h, tiny)) - tf.math.log(tf.maximum(lo, tiny))) / s
    co = (tf.math.log(tf.maximum(c, tiny)) - tf.math.log(tf.maximum(o, tiny))) / s
    lv = tf.math.log(1.0 + tf.maximum(v, 0.0))
    lv = lv - tf.reduce_mean(lv, axis=1, keepdims=True)
    ls = tf.ones_like(r) * tf.math.log(s)
    feats = tf.stack([r / s, hl, co, lv, ls], axis=-1)
    return feats, logp[:, -1], sigma


def engineer(raw, spec: FeatureSpec, standardise: bool = True):
    """raw window [B, W, C] -> (features [B, S, F] float32, anchor [B], scale [B, H])."""
    raw = tf.convert_to_tensor(raw, tf.float32)
    hs = tf.sqrt(tf.range(1, spec.horizon + 1, dtype=tf.float32))
    if spec.mode == "ohlcv":
        feats, anchor, sigma = _ohlcv_raw(raw, spec)
        if standardise:
            feats = (feats - tf.constant(spec.feat_mean, tf.float32)) / tf.constant(spec.feat_std, tf.float32)
        feats = tf.clip_by_value(feats, -10.0, 10.0)
        return feats, anchor, sigma[:, None] * hs[None, :]
    parts = []
    num = spec.numeric
    x = tf.gather(raw, num, axis=2)
    x = (x - tf.constant(spec.col_mean, tf.float32)) / tf.constant(spec.col_std, tf.float32)
    parts.append(x)
    y = raw[:, :, spec.target_index]
    d = tf.concat([tf.zeros_like(y[:, :1]), y[:, 1:] - y[:, :-1]], axis=1) / spec.diff_std
    parts.append(d[:, :, None])
    for name in spec.calendar:
        ang = raw[:, :, spec.columns.index(name)] * (2 * math.pi / CALENDAR_PERIODS[name])
        parts.append(tf.stack([tf.sin(ang), tf.cos(ang)], axis=-1))
    feats = tf.clip_by_value(tf.concat(parts, axis=-1), -10.0, 10.0)
    scale = tf.ones_like(y[:, :1]) * tf.constant(spec.horizon_scale, tf.float32)[None, :]
    return feats, y[:, -1], scale


def decode(z, anchor, scale, spec: FeatureSpec):
    """Model output z [B, H, Q] -> quantiles in target units [B, H, Q]."""
    if spec.mode == "ohlcv":
        return tf.exp(anchor[:, None, None] + scale[:, :, None] * z)
    q = anchor[:, None, None] + scale[:, :, None] * z
    return round_median(q, spec.target_step, spec.median_index) if spec.target_step > 0 else q


def round_median(q, step: float, median_index: int):
    """Quantiles [B, H, Q] with the median rounded to a multiple of ``step`` and the other quantiles clipped
    so that none crosses it.

    For a quantity recorded in whole steps (the Beijing station reports whole degrees), every quantile of
    what will be recorded is a whole step, so the median that minimises the expected absolute error is a
    whole step too. The continuous median lies between two steps, and rounding it moves it to the nearer
    one. The other quantiles keep their continuous values unless they would cross the median, so the
    intervals' coverage barely moves.
    """
    med = round_to_step(q[:, :, median_index], step)
    cols = [
        med if i == median_index else (tf.minimum if i < median_index else tf.maximum)(q[:, :, i], med)
        for i in range(q.shape[-1])
    ]
    return tf.stack(cols, axis=-1)


def round_to_step(x, step: float):
    """``x`` rounded to the nearest multiple of ``step`` (halves up), as TensorFlow ops: FLOOR is a builtin
    TFLite op that the GPU delegate runs."""
    x = tf.convert_to_tensor(x)
    step = tf.constant(step, x.dtype)
    return tf.floor(x / step + 0.5) * step


def encode_targets(y, anchor, scale, spec: FeatureSpec) -> np.ndarray:
    """Targets [B, H] in target units -> the scaled values the model learns (inverse of `decode`)."""
    y = np.asarray(y, np.float64)
    anchor = np.asarray(anchor, np.float64)[:, None]
    scale = np.asarray(scale, np.float64)
    if spec.mode == "ohlcv":
        return ((np.log(y) - anchor) / scale).astype(np.float32)
    return ((y - anchor) / scale).astype(np.float32)


def valid(raw, spec: FeatureSpec):
    """[B] bool: every value finite (and prices > 0 in ohlcv mode)."""
    raw = tf.convert_to_tensor(raw, tf.float32)
    ok = tf.reduce_all(tf.math.is_finite(raw), axis=[1, 2])
    if spec.mode == "ohlcv":
        prices = [i for i, c in enumerate(spec.columns) if c in ("open", "high", "low", "close", "adj close")]
        ok = tf.logical_and(ok, tf.reduce_all(tf.gather(raw, prices, axis=2) > 0, axis=[1, 2]))
    return ok


def fit_spec(spec: FeatureSpec, train_x: np.ndarray, train_y: np.ndarray, max_windows: int = 20000, seed: int = 0):
    """Fit the normalisation statistics on training windows only (returns a new spec)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(train_x), min(len(train_x), max_windows), replace=False))
    x = train_x[idx]
    if spec.mode == "ohlcv":
        feats, _, _ = _ohlcv_raw(tf.constant(x), spec)
        f = feats.numpy().reshape(-1, feats.shape[-1])
        mean, std = f.mean(0), f.std(0)
        mean[0] = 0.0  # keep a zero return at zero
        return dataclasses.replace(spec, feat_mean=mean.tolist(), feat_std=np.maximum(std, 1e-6).tolist())
    num = spec.numeric
    vals = x[:, :, num].reshape(-1, len(num)).astype(np.float64)
    y = x[:, :, spec.target_index].astype(np.float64)
    dstd = float(np.std(y[:, 1:] - y[:, :-1])) or 1.0
    hscale = np.std(train_y[idx] - y[:, -1:], axis=0)
    return dataclasses.replace(
        spec,
        col_mean=vals.mean(0).tolist(),
        col_std=np.maximum(vals.std(0), 1e-6).tolist(),
        diff_std=dstd,
        horizon_scale=np.maximum(hscale, 1e-6).tolist(),
    )


def batched(raw: np.ndarray, spec: FeatureSpec, batch: int = 8192):
    """`engineer` over a large array in chunks -> numpy (features, anchor, scale)."""
    fs, an, sc = [], [], []
    for i in range(0, len(raw), batch):
        f, a, s = engineer(raw[i : i + batch], spec)
        fs.append(f.numpy())
        an.append(a.numpy())
        sc.append(s.numpy())
    if not fs:
        return (
            np.zeros((0, spec.steps, spec.num_features), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, spec.horizon), np.float32),
        )
    return np.concatenate(fs), np.concatenate(an), np.concatenate(sc)

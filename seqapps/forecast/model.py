"""Recurrent quantile forecaster built from `seqapps.layers`.

    features (batch, S, F) -> [RNN(cell, units, return_sequences)] x (num_layers - 1)
                           -> RNN(cell, units) -> Dropout -> Dense(units, relu) -> Dense(H * Q)
                           -> MonotoneQuantiles -> z (batch, H, Q), non-decreasing along Q

Trained with the pinball (quantile) loss on scaled targets (see `features.py`), across all series
at once: the model only ever sees scale-free features, so one set of weights serves every ticker.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from seqapps import layers as sl


@keras.saving.register_keras_serializable(package="seqapps")
class MonotoneQuantiles(keras.layers.Layer):
    """(batch, H*Q) -> (batch, H, Q) with q_0 = a_0, q_k = q_{k-1} + softplus(a_k): no quantile crossing."""

    def __init__(self, horizon, num_quantiles, **kwargs):
        super().__init__(**kwargs)
        self.horizon = int(horizon)
        self.num_quantiles = int(num_quantiles)

    def call(self, x):
        x = ops.reshape(x, (-1, self.horizon, self.num_quantiles))
        outs = [x[:, :, 0]]
        for k in range(1, self.num_quantiles):
            outs.append(outs[-1] + ops.softplus(x[:, :, k]))
        return ops.stack(outs, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.horizon, self.num_quantiles)

    def get_config(self):
        return {**super().get_config(), "horizon": self.horizon, "num_quantiles": self.num_quantiles}


def build_model(cfg, steps: int, num_features: int, quantiles) -> keras.Model:
    """The forecaster; the head's bias starts at the standard normal quantiles (a calibrated prior)."""
    num_quantiles = len(quantiles)
    inputs = keras.Input((steps, num_features), name="features")
    x = inputs
    for i in range(cfg.num_layers):
        last = i == cfg.num_layers - 1
        x = sl.RNN(sl.make_cell(cfg.cell, cfg.units), return_sequences=not last, name=f"rnn_{i}")(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    x = keras.layers.Dense(cfg.units, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(cfg.horizon * num_quantiles, name="head", kernel_initializer="zeros")(x)
    out = MonotoneQuantiles(cfg.horizon, num_quantiles, name="quantiles")(x)
    model = keras.Model(inputs, out, name="forecaster")
    from statistics import NormalDist

    z = [NormalDist().inv_cdf(q) for q in quantiles]
    bias = [z[0]] + [math.log(math.expm1(max(b - a, 1e-3))) for a, b in zip(z, z[1:])]
    head = model.get_layer("head")
    head.bias.assign(np.tile(np.asarray(bias, "float32"), cfg.horizon))
    return model


@keras.saving.register_keras_serializable(package="seqapps")
class PinballLoss(keras.losses.Loss):
    """Mean over horizons and quantiles of max(q * e, (q - 1) * e), e = y - y_hat_q."""

    def __init__(self, quantiles=(0.1, 0.5, 0.9), name="pinball", **kwargs):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true, y_pred):
        q = ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        e = ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1) - y_pred
        return ops.mean(ops.maximum(q * e, (q - 1.0) * e), axis=(-2, -1))

    def get_config(self):
        return {**super().get_config(), "quantiles": self.quantiles}

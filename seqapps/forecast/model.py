"""Recurrent quantile forecaster built from `seqapps.layers`.

    features (batch, S, F) -> [RNN(cell, units, return_sequences)] x (num_layers - 1)
                           -> RNN(cell, units) -> Dropout -> Dense(units, relu) -> Dense(H * Q)
                           -> MonotoneQuantiles -> z (batch, H, Q), non-decreasing along Q

With ``bidirectional: true`` (config), every RNN reads the window both ways (`keras.layers.Bidirectional`,
outputs concatenated). The window holds only rows up to the origin, so reading it backwards uses no later
value; the backward RNN's final state summarises the window from its oldest rows.

With ``ensemble: K`` (config), K such networks are trained with seeds seed..seed+K-1 and `average`
joins them into one model whose quantiles are the members' quantiles averaged (quantile averaging keeps
them non-decreasing).

With ``aux_targets: a,b`` (config, generic mode), each network is trained through `with_aux_head` to also
predict the changes of those input columns over the horizon (multi-task regularisation); only the
quantile network is kept.

With ``linear_blend: w`` (config), a ridge regression of the scaled targets on the flattened window
(closed form on the training windows, `fit_ridge`) moves every quantile by w * (ridge - median):
a linear forecast blended into the median, the spread left to the network (`with_linear_blend`).

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


def build_model(cfg, steps: int, num_features: int, quantiles, name: str = "forecaster") -> keras.Model:
    """The forecaster; the head's bias starts at the standard normal quantiles (a calibrated prior)."""
    num_quantiles = len(quantiles)
    inputs = keras.Input((steps, num_features), name="features")
    x = inputs
    for i in range(cfg.num_layers):
        last = i == cfg.num_layers - 1
        rnn = sl.RNN(sl.make_cell(cfg.cell, cfg.units), return_sequences=not last, name=f"rnn_{i}")
        x = keras.layers.Bidirectional(rnn, name=f"birnn_{i}")(x) if cfg.bidirectional else rnn(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    x = keras.layers.Dense(cfg.units, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(cfg.horizon * num_quantiles, name="head", kernel_initializer="zeros")(x)
    out = MonotoneQuantiles(cfg.horizon, num_quantiles, name="quantiles")(x)
    model = keras.Model(inputs, out, name=name)
    from statistics import NormalDist

    z = [NormalDist().inv_cdf(q) for q in quantiles]
    bias = [z[0]] + [math.log(math.expm1(max(b - a, 1e-3))) for a, b in zip(z, z[1:])]
    head = model.get_layer("head")
    head.bias.assign(np.tile(np.asarray(bias, "float32"), cfg.horizon))
    return model


def with_aux_head(model: keras.Model, horizon: int, num_columns: int) -> keras.Model:
    """A training-only view of ``model``: {"quantiles": its output, "aux": [B, H, C] from a Dense head on its
    hidden layer}, for ``aux_targets`` (auxiliary targets: other columns' changes). ``model`` shares the
    weights and stays the exported network; the head is not part of it."""
    head = keras.layers.Dense(horizon * num_columns, name="aux_head")(model.get_layer("hidden").output)
    aux = keras.layers.Reshape((horizon, num_columns), name="aux")(head)
    return keras.Model(model.inputs, {"quantiles": model.output, "aux": aux}, name=f"{model.name}_with_aux")


def average(members) -> keras.Model:
    """One model from trained members with the same input: the mean of their quantiles [batch, H, Q]."""
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(tuple(members[0].inputs[0].shape[1:]), name="features")
    outs = [m(inputs) for m in members]
    return keras.Model(inputs, keras.layers.Average(name="ensemble_mean")(outs), name="forecaster_ensemble")


@keras.saving.register_keras_serializable(package="seqapps")
class ShiftTowards(keras.layers.Layer):
    """(quantiles [B, H, Q], point [B, H]) -> quantiles + weight * (point - median): every quantile of a
    horizon moves by the same amount, so they stay ordered."""

    def __init__(self, weight, median_index, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)
        self.median_index = int(median_index)

    def call(self, inputs):
        q, point = inputs
        return q + self.weight * ops.expand_dims(point - q[:, :, self.median_index], -1)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "median_index": self.median_index}


@keras.saving.register_keras_serializable(package="seqapps")
class FrozenLinear(keras.layers.Layer):
    """[B, D] -> [B, units] = x @ kernel + bias with weights set, not trained (`fit_ridge`).

    The product is traced in blocks that TFLite's dynamic-range quantizer leaves in float
    (`seqapps.export.tflite.matmul_in_small_blocks`), so the ridge forecast is not rounded to int8 in
    ``model_dynamic.tflite``."""

    def __init__(self, units, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel", trainable=False)
        self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros", trainable=False)

    def call(self, x):
        from seqapps.export.tflite import matmul_in_small_blocks

        return matmul_in_small_blocks(x, self.kernel) + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.pop("trainable", None)
        return {**config, "units": self.units}


def fit_ridge(features: np.ndarray, targets: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression of targets [N, H] on the flattened windows [N, S, F] (intercept not penalised):
    (kernel [S*F, H], bias [H]), solved in float64."""
    x = features.reshape(len(features), -1).astype(np.float64)
    y = targets.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    kernel = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return kernel.astype(np.float32), (y_mean - x_mean @ kernel).astype(np.float32)


def with_linear_blend(model: keras.Model, kernel, bias, weight: float, median_index: int) -> keras.Model:
    """``model`` with its quantiles moved by ``weight`` * (linear forecast - median); the linear layer is
    frozen (fitted by `fit_ridge`, not by gradient descent)."""
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name="features")
    linear = FrozenLinear(len(bias), name="ridge")
    point = linear(keras.layers.Flatten(name="flat_window")(inputs))
    linear.set_weights([kernel, bias])
    out = ShiftTowards(weight, median_index, name="linear_blend")([model(inputs), point])
    return keras.Model(inputs, out, name="forecaster_blend")


@keras.saving.register_keras_serializable(package="seqapps")
class PinballLoss(keras.losses.Loss):
    """Mean over horizons and quantiles of w_h * max(q * e, (q - 1) * e), e = y - y_hat_q; the horizon
    weights w_h (`horizon_weights`) are 1 everywhere unless given."""

    def __init__(self, quantiles=(0.1, 0.5, 0.9), horizon_weights=None, name="pinball", **kwargs):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]
        self.horizon_weights = None if horizon_weights is None else [float(w) for w in horizon_weights]

    def call(self, y_true, y_pred):
        q = ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        e = ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1) - y_pred
        loss = ops.maximum(q * e, (q - 1.0) * e)
        if self.horizon_weights is not None:
            loss = loss * ops.convert_to_tensor(self.horizon_weights, dtype=y_pred.dtype)[:, None]
        return ops.mean(loss, axis=(-2, -1))

    def get_config(self):
        return {**super().get_config(), "quantiles": self.quantiles, "horizon_weights": self.horizon_weights}


def horizon_weights(horizon: int, last: int, other: float):
    """Loss weights per horizon: 1 for the last ``last`` horizons, ``other`` for the rest, scaled to mean 1
    (so the loss keeps its scale); None (all alike) when ``last`` is 0 or covers every horizon."""
    if not 0 < last < horizon:
        return None
    w = np.where(np.arange(horizon) >= horizon - last, 1.0, float(other))
    return (w / w.mean()).tolist()

"""Gated recurrent unit (`GRU`)."""

import keras
from keras import ops

from seqapps.layers.base import PACKAGE, RecurrentCell, RecurrentLayer


@keras.saving.register_keras_serializable(package=PACKAGE)
class GRUCell(RecurrentCell):
    """GRU cell, weight-compatible with `keras.layers.GRUCell` (gate order z, r, h).

    Equations (``sigma`` = ``recurrent_activation``, default sigmoid; ``tanh`` = ``activation``),
    ``W``: (features, 3u), ``U``: (u, 3u):

        z  = sigma(x_t W_z + b_z + h_{t-1} U_z + b'_z)         update gate
        r  = sigma(x_t W_r + b_r + h_{t-1} U_r + b'_r)         reset gate
        reset_after=True  (default, cuDNN-compatible; bias shape (2, 3u) = [input, recurrent]):
            hh = tanh(x_t W_h + b_h + r * (h_{t-1} U_h + b'_h))
        reset_after=False (original GRU; bias shape (3u,), no recurrent bias):
            hh = tanh(x_t W_h + b_h + (r * h_{t-1}) U_h)
        h_t = z * h_{t-1} + (1 - z) * hh

    Args:
        units: size of the hidden state.
        reset_after: where the reset gate applies (see above), as in Keras.
        activation, recurrent_activation, dropout, recurrent_dropout, seed: as in `LSTMCell`.

    Example:
        >>> cell = GRUCell(16)
        >>> h, [h] = cell(np.zeros((2, 3), "float32"), [np.zeros((2, 16), "float32")])

    Reference:
        Cho et al., "Learning phrase representations using RNN encoder-decoder for statistical
        machine translation", EMNLP 2014.
    """

    gates = 3

    def __init__(self, units, recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.reset_after = reset_after

    def _build_bias(self):
        shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        return self.add_weight(
            shape=shape, name="bias", initializer=self.bias_initializer, regularizer=self.bias_regularizer
        )

    def _input_bias(self):
        if self.bias is None:
            return None
        return self.bias[0] if self.reset_after else self.bias

    def step(self, x_proj, states, training=False):
        h_tm1 = states[0]
        h_rec = self._recurrent_input(h_tm1, training)
        x_z, x_r, x_h = ops.split(x_proj, 3, axis=-1)
        u = self.units
        if self.reset_after:
            inner = ops.matmul(h_rec, self.recurrent_kernel)
            if self.bias is not None:
                inner = inner + self.bias[1]
            r_z, r_r, r_h = ops.split(inner, 3, axis=-1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            hh = self.activation(x_h + r * r_h)
        else:
            inner = ops.matmul(h_rec, self.recurrent_kernel[:, : 2 * u])
            r_z, r_r = ops.split(inner, 2, axis=-1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            hh = self.activation(x_h + ops.matmul(r * h_rec, self.recurrent_kernel[:, 2 * u :]))
        h = z * h_tm1 + (1.0 - z) * hh
        return h, [h]

    def get_config(self):
        config = {
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "reset_after": self.reset_after,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GRU(RecurrentLayer):
    """`RNN(GRUCell(units, ...))` with flat arguments, like `keras.layers.GRU`."""

    cell_class = GRUCell
    cell_name = "gru_cell"

"""Gated recurrent unit (`GRU`)."""

import keras
from keras import ops
from keras.src import backend as _backend

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
    cudnn_kernel = True

    def __init__(self, units, recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.reset_after = reset_after

    def _build_bias(self):
        shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        return self.add_weight(
            shape=shape,
            name="bias",
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def _input_bias(self):
        if self.bias is None:
            return None
        if not self.reset_after:
            return self.bias
        # b_z + b'_z and b_r + b'_r are plain sums, so they go into the input projection (computed
        # once per sequence); only b'_h, which the reset gate multiplies, stays in the step.
        u = self.units
        return self.bias[0] + ops.concatenate([self.bias[1][: 2 * u], ops.zeros((u,), self.bias.dtype)])

    def step_constants(self, per_gate=False):
        constants = super().step_constants(per_gate)
        u = self.units
        if not self.reset_after and not per_gate:
            # (r * h_{t-1}) U_h needs r first: U_z|U_r is one product, U_h another
            kernel = self.recurrent_kernel
            constants["recurrent_kernel"] = [kernel[:, : 2 * u], kernel[:, 2 * u :]]
        if self.reset_after and self.bias is not None:
            constants["recurrent_bias_h"] = self.bias[1][2 * u :]
        return constants

    def step(self, x_proj, states, training=False, constants=None):
        constants = constants or self.step_constants()
        h_tm1 = states[0]
        h_rec = self._recurrent_input(h_tm1, training)
        x_z, x_r, x_h = self._gate_inputs(x_proj)
        kernels = constants["recurrent_kernel"]
        if self.reset_after:
            r_z, r_r, r_h = self._matmul_gates(h_rec, kernels)
            if self.bias is not None:
                r_h = r_h + constants["recurrent_bias_h"]
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            hh = self.activation(x_h + r * r_h)
        else:
            r_z, r_r = self._matmul_gates(h_rec, kernels[:-1])
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            hh = self.activation(x_h + ops.matmul(r * h_rec, kernels[-1]))
        # Keras's form: z * h_{t-1} and (1 - z) run beside the candidate, so the chain from h_{t-1}
        # to h_t is one op shorter than hh + z * (h_{t-1} - hh).
        h = z * h_tm1 + (1 - z) * hh
        return h, [h]

    def cudnn_settings_ok(self, unroll=False) -> bool:
        # Keras's JAX GRU is a lax.scan loop, not cuDNN; the own loop is no slower
        return self.reset_after and keras.backend.backend() != "jax" and super().cudnn_settings_ok(unroll)

    def fused_sequence(self, sequences, initial_state, return_sequences, training=False):
        return _backend.gru(
            self._input_dropout(sequences, training),
            initial_state[0],
            None,
            reset_after=True,
            **self._cudnn_kwargs(return_sequences),
        )

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

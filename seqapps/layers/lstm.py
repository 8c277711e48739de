"""Long short-term memory (`LSTM`)."""

import keras
from keras import ops
from keras.src import backend as _backend

from seqapps.layers.base import PACKAGE, RecurrentCell, RecurrentLayer


@keras.saving.register_keras_serializable(package=PACKAGE)
class LSTMCell(RecurrentCell):
    """LSTM cell, weight-compatible with `keras.layers.LSTMCell` (gate order i, f, c, o).

    Equations (``sigma`` = ``recurrent_activation``, default sigmoid; ``tanh`` = ``activation``):

        z   = x_t W + h_{t-1} U + b          W: (features, 4u), U: (u, 4u), b: (4u,)
        i   = sigma(z_i)                      input gate
        f   = sigma(z_f)                      forget gate
        g   = tanh(z_c)                       candidate cell
        o   = sigma(z_o)                      output gate
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    The states are ``[h, c]``, each (batch, units).

    Args:
        units: size of ``h`` and ``c``.
        activation, recurrent_activation: ``tanh`` and ``sigmoid`` by default.
        unit_forget_bias: add 1 to the forget-gate bias at initialisation (Jozefowicz et al., 2015).
        dropout, recurrent_dropout, seed: as in `SimpleRNNCell`.

    Example:
        >>> layer = seqapps.layers.RNN(LSTMCell(16), return_state=True)
        >>> out, h, c = layer(np.zeros((2, 5, 3), "float32"))

    Reference:
        Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 9(8), 1997;
        Gers, Schmidhuber & Cummins, "Learning to forget", 2000.
    """

    gates = 4
    cudnn_kernel = True

    def __init__(self, units, recurrent_activation="sigmoid", unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias
        self.state_size = [units, units]

    def _build_bias(self):
        if not self.unit_forget_bias:
            return super()._build_bias()
        base, units = self.bias_initializer, self.units

        def initializer(shape, dtype=None):
            return ops.concatenate(
                [base((units,), dtype=dtype), ops.ones((units,), dtype=dtype), base((2 * units,), dtype=dtype)]
            )

        return self.add_weight(
            shape=(4 * units,),
            name="bias",
            initializer=initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def step(self, x_proj, states, training=False, constants=None):
        constants = constants or self.step_constants()
        h_tm1, c_tm1 = states
        x_i, x_f, x_c, x_o = self._gate_inputs(x_proj)
        r_i, r_f, r_c, r_o = self._matmul_gates(self._recurrent_input(h_tm1, training), constants["recurrent_kernel"])
        i = self.recurrent_activation(x_i + r_i)
        f = self.recurrent_activation(x_f + r_f)
        o = self.recurrent_activation(x_o + r_o)
        c = f * c_tm1 + i * self.activation(x_c + r_c)
        h = o * self.activation(c)
        return h, [h, c]

    def fused_sequence(self, sequences, initial_state, return_sequences, training=False):
        h0, c0 = initial_state
        return _backend.lstm(
            self._input_dropout(sequences, training), h0, c0, None, **self._cudnn_kwargs(return_sequences)
        )

    def get_config(self):
        config = {
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "unit_forget_bias": self.unit_forget_bias,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LSTM(RecurrentLayer):
    """`RNN(LSTMCell(units, ...))` with flat arguments, like `keras.layers.LSTM`."""

    cell_class = LSTMCell
    cell_name = "lstm_cell"

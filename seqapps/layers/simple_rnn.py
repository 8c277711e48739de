"""Elman recurrent network (`SimpleRNN`)."""

import keras

from seqapps.layers.base import PACKAGE, RecurrentCell, RecurrentLayer


@keras.saving.register_keras_serializable(package=PACKAGE)
class SimpleRNNCell(RecurrentCell):
    """Elman cell, weight-compatible with `keras.layers.SimpleRNNCell`.

    Equations (per time step, ``x_t``: (batch, features), ``h_{t-1}``: (batch, units)):

        h_t = tanh(x_t W_xh + h_{t-1} W_hh + b_h)

    with ``W_xh = kernel`` (features, units), ``W_hh = recurrent_kernel`` (units, units) and
    ``b_h = bias`` (units,); ``tanh`` is the default ``activation``.

    Args:
        units: size of the hidden state.
        activation: the nonlinearity (default ``"tanh"``).
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer, *_regularizer, *_constraint:
            as in Keras.
        dropout: fraction of the inputs dropped (one mask per sequence) while training.
        recurrent_dropout: fraction of ``h_{t-1}`` dropped (one mask per sequence) while training.
        seed: seed of the dropout masks.

    Example:
        >>> layer = seqapps.layers.RNN(SimpleRNNCell(16), return_sequences=True)
        >>> layer(np.zeros((2, 5, 3), "float32")).shape
        (2, 5, 16)

    Reference:
        Elman, "Finding structure in time", Cognitive Science 14(2), 1990.
    """

    gates = 1

    def step(self, x_proj, states, training=False, constants=None):
        constants = constants or self.step_constants()
        h_tm1 = self._recurrent_input(states[0], training)
        (x,) = self._gate_inputs(x_proj)
        (r,) = self._matmul_gates(h_tm1, constants["recurrent_kernel"])
        h = self.activation(x + r)
        return h, [h]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SimpleRNN(RecurrentLayer):
    """`RNN(SimpleRNNCell(units, ...))` with flat arguments, like `keras.layers.SimpleRNN`."""

    cell_class = SimpleRNNCell
    cell_name = "simple_rnn_cell"

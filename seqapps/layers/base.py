"""Common machinery of the seqapps recurrent cells and the fast `RNN` layer.

A seqapps cell splits its work in two, so that the same weights serve three uses:

* ``project_inputs(x)``: the input half, ``x @ kernel (+ input bias)``. It has no time dependence, so
  for a whole sequence it is one large matrix product instead of T small ones.
* ``step(x_proj, states)``: the recurrent half for one time step.
* ``call(x_t, states) = step(project_inputs(x_t), states)``: the Keras cell contract, used by
  ``keras.layers.RNN``, ``Bidirectional``, ``StackedRNNCells`` and by streaming/step decoders.

``seqapps.layers.RNN`` (a ``keras.layers.RNN``) uses the split to project the whole sequence
first (one large matrix product, time-major so that the big projected tensor is never transposed)
and loop only over ``step``, which has fewer ops per step than Keras's cells (``make bench`` measures
both side by side).
"""

from __future__ import annotations

import inspect

import keras
import tensorflow as tf
from keras import ops

# Keras's dropout-mask mixin: `keras.layers.RNN` pre-computes the masks of cells that derive from it
# before its loop (a mask created inside a tf.while_loop cannot be cached across steps).
from keras.src.backend import rnn as _backend_rnn
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

PACKAGE = "seqapps"


def _shape_str(shape) -> str:
    return "(" + ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(shape)) + ")"


class RecurrentCell(DropoutRNNCell, keras.layers.Layer):
    """Base class of the seqapps cells (not used on its own).

    Subclasses set ``gates`` (number of ``units``-wide blocks in the kernels) and implement
    ``_build_bias``/``_input_bias`` and ``step``.
    """

    gates = 1

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"{type(self).__name__}: `units` must be a positive integer, got {units!r}.")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{type(self).__name__}: `{name}` must be in [0, 1), got {rate!r}.")
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.state_size = units
        self.output_size = units

    # --- weights -------------------------------------------------------------------------------
    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects one time step of shape (batch, features) with a known "
                f"feature size, got {tuple(input_shape)}. To run a whole sequence (batch, time, features) "
                f"wrap the cell: seqapps.layers.RNN(cell)."
            )
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
        )
        self.bias = self._build_bias() if self.use_bias else None

    def _build_bias(self):
        return self.add_weight(
            shape=(self.gates * self.units,),
            name="bias",
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
        )

    def _input_bias(self):
        """The part of the bias added to the input projection (None when there is none)."""
        return self.bias

    # --- the two halves ------------------------------------------------------------------------
    def project_inputs(self, inputs, training=False, time_major=False):
        """``inputs @ kernel + input_bias`` for a step (batch, features) or a sequence.

        A sequence is (batch, T, features), or (T, batch, features) with ``time_major=True``; the
        dropout mask (one per sample, as in Keras) is shared by every time step.
        """
        if training and 0.0 < self.dropout < 1.0:
            if len(inputs.shape) == 2:
                mask = self.get_dropout_mask(inputs)
            else:
                mask = self.get_dropout_mask(inputs[0] if time_major else inputs[:, 0, :])
                mask = ops.expand_dims(mask, 0 if time_major else 1)
            inputs = inputs * mask
        x = ops.matmul(inputs, self.kernel)
        bias = self._input_bias()
        if bias is not None:
            x = x + bias
        return x

    def _recurrent_input(self, h_tm1, training):
        if training and 0.0 < self.recurrent_dropout < 1.0:
            return h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
        return h_tm1

    def step(self, x_proj, states, training=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        states_list = list(states) if nested else [states]
        self._check_states(states_list)
        output, new_states = self.step(self.project_inputs(inputs, training), states_list, training)
        return output, (new_states if nested or len(new_states) > 1 else new_states[0])

    def _check_states(self, states):
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        if len(states) != len(sizes):
            raise ValueError(
                f"{type(self).__name__} expects {len(sizes)} state tensor(s) of shape "
                f"{', '.join(_shape_str((None, s)) for s in sizes)}, got {len(states)}."
            )
        for state, size in zip(states, sizes):
            if len(state.shape) != 2 or (state.shape[-1] is not None and state.shape[-1] != size):
                raise ValueError(
                    f"{type(self).__name__} expects each state of shape {_shape_str((None, size))}, "
                    f"got {tuple(state.shape)}."
                )

    def get_initial_state(self, batch_size=None):
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        return [ops.zeros((batch_size, s), dtype=self.compute_dtype) for s in sizes]

    def get_config(self):
        config = {
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RNN(keras.layers.RNN):
    """`keras.layers.RNN` with a fast path for seqapps cells.

    For a `RecurrentCell` the input projection ``x_t @ kernel + b`` of every time step is computed
    in one batched matrix product before the loop, and the loop runs only the recurrent half
    (``cell.step``). Outputs are identical to the step-by-step loop; any other cell falls back to
    the standard Keras loop. Accepts every argument of `keras.layers.RNN`.

    Example:
        >>> layer = RNN(GRUCell(32), return_sequences=True)
        >>> layer(np.zeros((4, 10, 8), "float32")).shape
        (4, 10, 32)
    """

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, timesteps, features), "
                f"got shape {tuple(sequences_shape)} (rank {len(sequences_shape)})."
            )
        super().build(sequences_shape, initial_state_shape)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if not isinstance(cell, RecurrentCell):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        cell._check_states(list(initial_state))
        # Time-major throughout: transposing the (batch, T, features) input is cheap, while
        # transposing the projected (batch, T, gates*units) tensor (and its gradient) is not.
        projected = cell.project_inputs(ops.transpose(sequences, (1, 0, 2)), training=training, time_major=True)
        if mask is not None:
            mask = ops.transpose(mask, (1, 0))
        if self.go_backwards:
            # Reverse here rather than in Keras's loop: its unrolled path (used for TFLite exports)
            # misplaces the outputs of a masked backward layer in a Bidirectional. Outputs come in
            # processing order either way, as Keras's RNN layer expects.
            projected = ops.flip(projected, axis=0)
            mask = None if mask is None else ops.flip(mask, axis=0)
        if sequences.shape[1] is None and projected.shape[1] is not None:
            # With ``input_length=None`` Keras's loop takes its length from ``inputs.shape[1]``, the
            # batch axis of a time-major tensor: hide the static batch size so that it counts the
            # steps at run time (as it does for a batch-major input of unknown length).
            projected = tf.reshape(projected, tf.stack([tf.shape(projected)[0], -1, projected.shape[-1]]))

        def step(x_proj, states):
            return cell.step(x_proj, list(states), training=training)

        last, outputs, states = _backend_rnn(
            step,
            projected,
            list(initial_state),
            go_backwards=False,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            time_major=True,
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )
        return last, ops.transpose(outputs, (1, 0, 2)), states


class RecurrentLayer(RNN):
    """A `RNN` that builds its own cell (``cell_class``) from the arguments, like `keras.layers.GRU`.

    Cell arguments (units, activation, dropout, ...) and RNN arguments (return_sequences, ...) are
    given flat; `get_config` is flat too, so configs look like Keras's built-in layers.
    """

    cell_class: type[RecurrentCell] = RecurrentCell
    cell_name = "cell"  # the name Keras gives the cell of its built-in layer, so weight paths match

    def __init__(self, units, **kwargs):
        params = {
            name
            for klass in self.cell_class.__mro__
            if issubclass(klass, RecurrentCell)
            for name, p in inspect.signature(klass.__init__).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "units")
        }
        cell_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in params}
        cell = self.cell_class(units, name=self.cell_name, dtype=kwargs.get("dtype"), **cell_kwargs)
        super().__init__(cell, **kwargs)

    @property
    def units(self):
        return self.cell.units

    def get_config(self):
        config = super().get_config()
        config.pop("cell")
        cell_config = self.cell.get_config()
        for key in ("name", "dtype", "trainable"):
            cell_config.pop(key, None)
        return {**config, **cell_config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

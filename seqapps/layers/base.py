"""Common machinery of the seqapps recurrent cells and the fast `RNN` layer.

A seqapps cell splits its work in two, so that the same weights serve every use:

* the input half, ``x @ kernel (+ input bias)``, which has no time dependence;
* ``step(x_proj, states)``: the recurrent half of one time step.

``call(x_t, states) = step(project_inputs(x_t), states)`` is the Keras cell contract, used by
``keras.layers.RNN``, ``Bidirectional``, ``StackedRNNCells`` and by streaming/step decoders.

``seqapps.layers.RNN`` runs the loop itself, in one of three ways (same weights, same outputs):

* **per step, gate by gate** (TensorFlow on CPU): each step projects its own input, one small
  matrix product per gate, with the weights split once per sequence. The input products of later
  steps do not depend on ``h`` and run on free cores while the recurrent chain runs, and the
  per-gate recurrent products run side by side; this is what beats `keras.layers.LSTM/GRU` on
  CPU (``make bench``).
* **per step** (JAX and PyTorch on CPU): each step projects its own input, one product for all
  gates, as Keras's cells do; on JAX's CPU the fastest for LSTM and GRU (XLA compiles the loop, so
  split gates gain nothing), see ``python -m seqapps.experiments.loop_kinds``.
* **whole sequence** (GPU, unrolled loops, and every export, see `sequence_projection`): the
  input half of all time steps is one large matrix product before the loop (time-major, so the
  big projected tensor is never transposed) and each step does one recurrent matrix product (two
  for a GRU with ``reset_after=False``). Fewer, larger ops: what GPUs and single-threaded TFLite
  interpreters run best.

On a GPU, an LSTM or GRU whose settings cuDNN supports (`RecurrentCell.cudnn_settings_ok`) and that is
given no mask runs none of these loops: like `keras.layers.LSTM/GRU` (``use_cudnn="auto"``), it hands its
weights, which have Keras's layout, to the backend's cuDNN kernel (`keras.src.backend.lstm/gru`), which runs
the same equations. Backward layers reverse their input first, so the outputs come in processing order on
every backend (Keras's JAX LSTM returns them in input order). Masked inputs run the layer's own loop: Keras's
cuDNN paths take no mask on JAX and PyTorch, and on TensorFlow only right-padded masks with a step in every
row, which they assert at run time (an empty text would stop training). JAX has no cuDNN GRU (Keras's is a
``lax.scan`` loop), so a GRU runs its own loop there. Exports never take the cuDNN path
(`sequence_projection`), so a SavedModel written on a GPU machine serves on CPUs too.

The layers run on every Keras 3 backend (TensorFlow, JAX, PyTorch); the apps need TensorFlow.
"""

from __future__ import annotations

import contextlib
import inspect
import threading

import keras
from keras import ops

# Keras's dropout-mask mixin: `keras.layers.RNN` pre-computes the masks of cells that derive from it
# before its loop (a mask created inside a tf.while_loop cannot be cached across steps).
from keras.src.backend import AutocastScope
from keras.src.backend import rnn as _backend_rnn
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

PACKAGE = "seqapps"

_TRACE = threading.local()


@contextlib.contextmanager
def sequence_projection():
    """Trace `seqapps.layers.RNN` layers with the whole-sequence projection inside the block.

    Exports use it (`seqapps.export`), so that SavedModels and TFLite files get the graph with
    fewer, larger ops whatever machine writes them. Outputs are the same either way.
    """
    previous = getattr(_TRACE, "sequence", False)
    _TRACE.sequence = True
    try:
        yield
    finally:
        _TRACE.sequence = previous


def gpu_available() -> bool:
    """Whether the Keras backend in use runs on a GPU here (TensorFlow, JAX or PyTorch)."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if name == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if name == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def _loop_kind(unroll: bool) -> str:
    """How `RNN` runs its loop here: ``"gate"``, ``"step"`` or ``"sequence"`` (see the module docstring)."""
    if unroll or getattr(_TRACE, "sequence", False) or gpu_available():
        return "sequence"
    return "gate" if keras.backend.backend() == "tensorflow" else "step"


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
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
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
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
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
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = self._build_bias() if self.use_bias else None

    def _build_bias(self):
        return self.add_weight(
            shape=(self.gates * self.units,),
            name="bias",
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def _input_bias(self):
        """The part of the bias added to the input projection (None when there is none)."""
        return self.bias

    # --- the two halves ------------------------------------------------------------------------
    def _input_dropout(self, inputs, training, time_major=False):
        if not (training and 0.0 < self.dropout < 1.0):
            return inputs
        # masks that `RNN.call` made in the layer's dtype are cast to the cell's
        if len(inputs.shape) == 2:
            return inputs * ops.cast(self.get_dropout_mask(inputs), inputs.dtype)
        mask = self.get_dropout_mask(inputs[0] if time_major else inputs[:, 0, :])
        return inputs * ops.expand_dims(ops.cast(mask, inputs.dtype), 0 if time_major else 1)

    def project_inputs(self, inputs, training=False, time_major=False):
        """``inputs @ kernel + input_bias`` for a step (batch, features) or a sequence.

        A sequence is (batch, T, features), or (T, batch, features) with ``time_major=True``; the
        dropout mask (one per sample, as in Keras) is shared by every time step.
        """
        x = ops.matmul(self._input_dropout(inputs, training, time_major), self.kernel)
        bias = self._input_bias()
        if bias is not None:
            x = x + bias
        return x

    def _blocks(self, weight, per_gate):
        return ops.split(weight, self.gates, axis=-1) if per_gate and self.gates > 1 else [weight]

    def step_constants(self, per_gate=False):
        """The loop-invariant tensors of `step`, computed once per sequence instead of every step.

        ``per_gate=True`` splits the recurrent kernel into one (units, units) block per gate: one small
        matrix product per gate, which independent cores run side by side.
        """
        return {"recurrent_kernel": self._blocks(self.recurrent_kernel, per_gate)}

    def input_blocks(self, per_gate=True):
        """(kernels, input biases), split per gate with ``per_gate``, for `project_step`; computed once
        per sequence."""
        bias = self._input_bias()
        return self._blocks(self.kernel, per_gate), None if bias is None else self._blocks(bias, per_gate)

    def project_step(self, inputs, blocks, training=False):
        """The input half of one step inside the loop, as a list of per-gate (batch, units) tensors;
        ``blocks`` comes from `input_blocks`."""
        kernels, biases = blocks
        return self._matmul_gates(self._input_dropout(inputs, training), kernels, biases)

    def _gate_inputs(self, x_proj):
        """``x_proj`` (one tensor or per-gate blocks) as a list of per-gate (batch, units) tensors."""
        if isinstance(x_proj, (list, tuple)):
            return list(x_proj)
        return ops.split(x_proj, self.gates, axis=-1) if self.gates > 1 else [x_proj]

    def _matmul_gates(self, x, kernels, biases=None):
        """``x @ k (+ b)`` for each kernel block (and bias block), split into per-gate (batch, units) tensors."""
        out = []
        for kernel, bias in zip(kernels, biases or [None] * len(kernels)):
            y = ops.matmul(x, kernel)
            y = y if bias is None else y + bias
            n = kernel.shape[-1] // self.units
            out.extend(ops.split(y, n, axis=-1) if n > 1 else [y])
        return out

    def _recurrent_input(self, h_tm1, training):
        if training and 0.0 < self.recurrent_dropout < 1.0:
            return h_tm1 * ops.cast(self.get_recurrent_dropout_mask(h_tm1), h_tm1.dtype)
        return h_tm1

    cudnn_kernel = False  # whether Keras's backends have a cuDNN kernel for this cell (LSTM and GRU)

    def cudnn_settings_ok(self, unroll=False) -> bool:
        """Whether cuDNN can run this cell here: a cell with a kernel, tanh and sigmoid, a bias, no
        ``recurrent_dropout`` and no unroll (a GRU adds its own conditions)."""
        return (
            self.cudnn_kernel
            and self.activation in (keras.activations.tanh, ops.tanh)
            and self.recurrent_activation in (keras.activations.sigmoid, ops.sigmoid)
            and self.use_bias
            and not self.recurrent_dropout
            and not unroll
        )

    def fused_sequence(self, sequences, initial_state, return_sequences, training=False):
        """The whole (unmasked, forward) sequence through the backend's cuDNN kernel, as Keras's
        ``(last, outputs, states)``; `RNN` calls it where `cudnn_settings_ok` and a GPU allow."""
        raise NotImplementedError

    def _cudnn_kwargs(self, return_sequences):
        """The keyword arguments Keras's layers pass to the backend's cuDNN function (weights, activations)."""
        return dict(
            kernel=self.kernel,
            recurrent_kernel=self.recurrent_kernel,
            bias=self.bias,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
            return_sequences=return_sequences,
            go_backwards=False,
            unroll=False,
        )

    def step(self, x_proj, states, training=False, constants=None):  # pragma: no cover - abstract
        """One recurrent step. ``x_proj`` is the input half (one tensor, or per-gate blocks from
        `project_step`); ``constants`` comes from `step_constants` (computed here when None)."""
        raise NotImplementedError

    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        states_list = list(states) if nested else [states]
        self._check_states(states_list)
        output, new_states = self.step(self.project_inputs(inputs, training), states_list, training=training)
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
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": keras.constraints.serialize(self.recurrent_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RNN(keras.layers.RNN):
    """`keras.layers.RNN` with a fast loop for seqapps cells.

    For a `RecurrentCell` the layer runs its own loop over ``cell.step`` with the loop-invariant
    weights prepared once: per step and gate by gate on CPU, or with the input projection of the
    whole sequence first on GPU, unrolled and in exports (see the module docstring). Outputs are
    identical to the step-by-step Keras loop; any other cell falls back to it. Accepts every
    argument of `keras.layers.RNN`.

    Example:
        >>> layer = RNN(GRUCell(32), return_sequences=True)
        >>> layer(np.zeros((4, 10, 8), "float32")).shape
        (4, 10, 32)
    """

    def __init__(self, cell, use_cudnn="auto", **kwargs):
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"{type(self).__name__}: `use_cudnn` must be 'auto', True or False, got {use_cudnn!r}.")
        super().__init__(cell, **kwargs)
        self.use_cudnn = use_cudnn
        if (
            keras.backend.backend() == "tensorflow"
            and use_cudnn is not False
            and isinstance(cell, RecurrentCell)
            and cell.cudnn_settings_ok(self.unroll)
            and gpu_available()
        ):
            self.supports_jit = False  # cuDNN ops do not compile with XLA: as keras.layers.LSTM/GRU, say so now

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, timesteps, features), "
                f"got shape {tuple(sequences_shape)} (rank {len(sequences_shape)})."
            )
        if sequences_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} needs a known feature size: got inputs of shape "
                f"{_shape_str(sequences_shape)}; give the last axis a size, e.g. keras.Input((None, 8))."
            )
        super().build(sequences_shape, initial_state_shape)

    def get_config(self):
        return {**super().get_config(), "use_cudnn": self.use_cudnn}

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if not isinstance(cell, RecurrentCell):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        # The loop calls the cell's halves directly, not the cell: do what the cell's __call__ would, run
        # it in its own dtype policy (which may differ from this layer's, e.g. a float32 recurrence in a
        # mixed_float16 model), with its weights cast to its compute dtype.
        dtype = cell.compute_dtype
        autocast = cell.autocast and keras.backend.is_float_dtype(dtype)
        with AutocastScope(dtype if autocast else None):
            sequences = ops.cast(sequences, dtype)
            fused = self._fused(cell, sequences, initial_state, mask, training)
            if fused is not None:
                return fused
            return self._fast_loop(cell, sequences, initial_state, mask, training)

    def _fused(self, cell, sequences, initial_state, mask, training):
        """The cell's cuDNN path where allowed and possible, else None (see the module docstring)."""
        if self.use_cudnn is False or getattr(_TRACE, "sequence", False) or getattr(self, "_for_xla", False):
            return None
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        try:
            if mask is not None or not cell.cudnn_settings_ok(self.unroll) or not gpu_available():
                raise NotImplementedError
            if self.go_backwards:
                # processing order, as the layer's own loop gives (Keras's backends differ on this)
                sequences = ops.flip(sequences, axis=1)
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            out = cell.fused_sequence(sequences, states, self.return_sequences, training=training)
        except NotImplementedError:
            if self.use_cudnn is True:
                raise ValueError(
                    f"{self.name}: use_cudnn=True, but cuDNN cannot run this layer here "
                    f"({keras.backend.backend()} backend). It needs a GPU, an LSTM or GRU with the default "
                    "activations, a bias, no recurrent_dropout, no unroll and no mask (and for a GRU "
                    "reset_after=True and a backend other than JAX). Pass use_cudnn='auto' to run the "
                    "layer's own loop where cuDNN cannot."
                ) from None
            return None
        return out

    def _fast_loop(self, cell, sequences, initial_state, mask, training):
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        cell._check_states(list(initial_state))
        kind = _loop_kind(self.unroll)
        per_step = kind != "sequence"
        constants = cell.step_constants(per_gate=kind == "gate")
        blocks = cell.input_blocks(per_gate=kind == "gate") if per_step else None
        # Time-major throughout: transposing the (batch, T, features) input is cheap, while
        # transposing the projected (batch, T, gates*units) tensor (and its gradient) is not.
        inputs = ops.transpose(sequences, (1, 0, 2))
        if per_step:

            def step(x_t, states):
                x_proj = cell.project_step(x_t, blocks, training=training)
                return cell.step(x_proj, list(states), training=training, constants=constants)

        else:
            inputs = cell.project_inputs(inputs, training=training, time_major=True)

            def step(x_proj, states):
                return cell.step(x_proj, list(states), training=training, constants=constants)

        if mask is not None:
            mask = ops.transpose(mask, (1, 0))
        if self.go_backwards:
            # Reverse here rather than in Keras's loop: its unrolled path (used for TFLite exports)
            # misplaces the outputs of a masked backward layer in a Bidirectional. Outputs come in
            # processing order either way, as Keras's RNN layer expects.
            inputs = ops.flip(inputs, axis=0)
            mask = None if mask is None else ops.flip(mask, axis=0)
        if keras.backend.backend() == "tensorflow" and sequences.shape[1] is None and inputs.shape[1] is not None:
            # With ``input_length=None`` Keras's loop takes its length from ``inputs.shape[1]``, the
            # batch axis of a time-major tensor: hide the static batch size so that it counts the
            # steps at run time (as it does for a batch-major input of unknown length).
            import tensorflow as tf  # noqa: PLC0415 - only the TensorFlow backend builds symbolic shapes

            inputs = tf.reshape(inputs, tf.stack([tf.shape(inputs)[0], -1, inputs.shape[-1]]))

        last, outputs, states = _backend_rnn(
            step,
            inputs,
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


def own_loops_for_xla(model) -> int:
    """Let XLA compile ``model`` (``jit_compile=True``): its seqapps recurrent layers run their own loops, which
    XLA compiles, instead of cuDNN, which it cannot (on a GPU they tell Keras so when made, as Keras's LSTM
    and GRU do, and Keras would then turn XLA off). Their configs are unchanged, so layers made afterwards (a
    loaded or cloned model) run cuDNN again unless this is called on them too. Returns how many layers."""
    count = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, RNN):
            layer._for_xla = True
            layer.supports_jit = True
            count += 1
    return count


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

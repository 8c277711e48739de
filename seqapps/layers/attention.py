"""Attention for encoder-decoder models: additive (Bahdanau) and multiplicative (Luong)."""

import keras
from keras import ops

from seqapps.layers.base import PACKAGE

_NEG = -1e9  # the score of a padded position: its softmax weight is exactly 0
_NEG_FLOAT16 = -3e4  # float16 cannot hold -1e9 (it becomes -inf); exp(-3e4 - max score) is 0 all the same


def mask_bias(keep, dtype):
    """0 where ``keep`` (boolean or 0/1) is true, else a large negative number of ``dtype``: added to scores, it
    gives padded positions a weight of 0 after a softmax, and keeps them from the maximum of real values.

    The number is -1e9, or -3e4 in float16 (mixed precision): float16 turns -1e9 into -inf, and the 0 * -inf of
    the kept positions was NaN. Float32 graphs keep the -1e9 that the exports were checked with."""
    neg = _NEG_FLOAT16 if keras.backend.standardize_dtype(dtype) == "float16" else _NEG
    return (1.0 - ops.cast(keep, dtype)) * ops.cast(neg, dtype)


class _Attention(keras.layers.Layer):
    """Shared call logic: scores -> masked softmax -> weighted sum of ``value``.

    ``call(query, value, mask=None)``:
        query: (batch, Tq, Dq), or (batch, Dq) for a single decoder step.
        value: (batch, Tv, Dv), the encoder outputs (also used as keys).
        mask:  (batch, Tv) boolean/0-1, True where ``value`` is a real (not padded) position.
    Returns ``(context, weights)``: context (batch, Tq, Dv) and weights (batch, Tq, Tv), or
    (batch, Dv) and (batch, Tv) for a rank-2 query. Weights sum to 1 over the unmasked positions. A row
    with no unmasked position has no meaningful weights (they fall on padded positions, in proportions that
    depend on the scores and the dtype): give such rows no weight downstream.
    """

    def _check(self, query, value):
        if len(value.shape) != 3:
            raise ValueError(
                f"{type(self).__name__}: `value` must have shape (batch, Tv, Dv), got {tuple(value.shape)}."
            )
        if len(query.shape) not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: `query` must have shape (batch, Tq, Dq) or (batch, Dq), "
                f"got {tuple(query.shape)}."
            )

    def call(self, query, value, mask=None):
        self._check(query, value)
        single = len(query.shape) == 2
        if single:
            query = ops.expand_dims(query, 1)
        scores = self.score(query, value)  # (batch, Tq, Tv)
        if mask is not None:
            scores = scores + mask_bias(ops.expand_dims(mask, 1), scores.dtype)
        weights = ops.softmax(scores, axis=-1)
        context = ops.matmul(weights, value)
        if single:
            return context[:, 0], weights[:, 0]
        return context, weights

    def compute_mask(self, query, value, mask=None):
        return None


@keras.saving.register_keras_serializable(package=PACKAGE)
class BahdanauAttention(_Attention):
    """Additive attention.

    score(q_t, k_s) = v^T tanh(W_q q_t + W_k k_s)
    a_t = softmax_s(score), context_t = sum_s a_ts k_s

    Args:
        units: size of the hidden layer of the score (``W_q``, ``W_k``: (D, units), ``v``: (units,)).

    Example:
        >>> attn = BahdanauAttention(32)
        >>> context, weights = attn(np.zeros((2, 4, 16), "float32"), np.zeros((2, 7, 24), "float32"))
        >>> context.shape, weights.shape
        ((2, 4, 24), (2, 4, 7))

    Reference:
        Bahdanau, Cho & Bengio, "Neural machine translation by jointly learning to align and
        translate", ICLR 2015.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        # the sublayers compute in this layer's dtype policy, not the global one
        policy = self.dtype_policy
        self.query_dense = keras.layers.Dense(units, use_bias=False, name="query_dense", dtype=policy)
        self.key_dense = keras.layers.Dense(units, name="key_dense", dtype=policy)
        self.score_dense = keras.layers.Dense(1, use_bias=False, name="score_dense", dtype=policy)

    def build(self, query_shape, value_shape, mask_shape=None):
        self.query_dense.build(query_shape)
        self.key_dense.build(value_shape)
        self.score_dense.build((None, None, None, self.units))

    def score(self, query, value):
        q = ops.expand_dims(self.query_dense(query), 2)  # (b, Tq, 1, u)
        k = ops.expand_dims(self.key_dense(value), 1)  # (b, 1, Tv, u)
        return ops.squeeze(self.score_dense(ops.tanh(q + k)), -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LuongAttention(_Attention):
    """Multiplicative attention.

    score(q_t, k_s) = q_t^T W k_s   (``score="general"``, W: (Dq, Dv))
    score(q_t, k_s) = q_t^T k_s     (``score="dot"``, needs Dq == Dv)
    a_t = softmax_s(score), context_t = sum_s a_ts k_s

    Args:
        score: ``"general"`` (default) or ``"dot"``.
        scale: divide scores by sqrt(Dv) (helps large models; off by default as in the paper).

    Example:
        >>> context, weights = LuongAttention()(np.zeros((2, 16), "float32"), np.zeros((2, 7, 24), "float32"))
        >>> context.shape, weights.shape
        ((2, 24), (2, 7))

    Reference:
        Luong, Pham & Manning, "Effective approaches to attention-based neural machine
        translation", EMNLP 2015.
    """

    def __init__(self, score="general", scale=False, **kwargs):
        if score not in ("general", "dot"):
            raise ValueError(f"LuongAttention: `score` must be 'general' or 'dot', got {score!r}.")
        super().__init__(**kwargs)
        self.score_mode = score
        self.scale = scale

    def build(self, query_shape, value_shape, mask_shape=None):
        if self.score_mode == "general":
            self.kernel = self.add_weight(
                shape=(query_shape[-1], value_shape[-1]), name="kernel", initializer="glorot_uniform"
            )
        elif query_shape[-1] != value_shape[-1]:
            raise ValueError(
                f"LuongAttention(score='dot') needs query and value of the same size, got "
                f"{query_shape[-1]} and {value_shape[-1]}; use score='general'."
            )

    def score(self, query, value):
        q = ops.matmul(query, self.kernel) if self.score_mode == "general" else query
        scores = ops.matmul(q, ops.transpose(value, (0, 2, 1)))
        if self.scale:
            scores = scores / ops.sqrt(ops.cast(ops.shape(value)[-1], scores.dtype))
        return scores

    def get_config(self):
        return {**super().get_config(), "score": self.score_mode, "scale": self.scale}

"""The sentiment classifier, built from `seqapps.layers`.

    token ids (batch, T), 0 = padding
      -> Embedding(vocab, E, mask_zero)  -> word dropout (whole token vectors)
      -> [Bidirectional] RNN(cell) x layers, return_sequences  (cell: gru | lstm | rnn)
      -> pooling over the unmasked steps: "maxmean" (concat of max and mean), "max", "mean" or
         "attention" (additive self-attention: a_t = softmax(v . tanh(W h_t)), sum_t a_t h_t)
      -> Dropout -> [Dense(hidden, relu)] -> Dense(classes, softmax)   probabilities (batch, classes)

With ``ngram_buckets`` > 0 that recurrent ("deep") classifier is one member of a two-model ensemble:
a "wide" fastText classifier (Joulin et al. 2016) reads the same token ids -- the masked mean of
embeddings of the unigrams and hashed bigrams -> Dense(classes, softmax) -- and the output is
``deep_weight * deep + (1 - deep_weight) * wide`` (the weight is chosen on the validation split). The members share no weights and `training_model` gives each
its own loss, so one `fit` trains both as if apart (the wide one would otherwise fit the training
set within an epoch and starve the recurrent one of gradient).

With ``wide: nblr`` the n-gram part is instead `HashedNgramClassifier`: an NB-weighted logistic regression
(NBSVM, Wang & Manning 2012) on the set of hashed 1..``ngram_order``-grams, fitted in closed form before the
recurrent member trains (`seqapps.sentiment.nblr`; `fit` does not change it). The recurrent member then ends in
linear logits, a correction: output ``softmax(ngram_logits + deep_weight * correction)`` (`AddLogits`), and it
is trained on the residual of out-of-fold n-gram logits (`residual_training_model`).

``impl="keras"`` builds the same model with `keras.layers.GRU/LSTM/SimpleRNN` (for the benchmark).
"""

from __future__ import annotations

import keras
from keras import ops

from seqapps import layers as sl


@keras.saving.register_keras_serializable(package="seqapps.sentiment")
class MaskedPooling(keras.layers.Layer):
    """Pools (batch, T, D) over the steps where ``mask`` is True; an all-masked row pools to zeros.

    Args:
        mode: "maxmean" (output 2D), "max", "mean" (D) or "attention" (D, additive self-attention).
        units: hidden size of the attention score (mode "attention" only).
    """

    MODES = ("maxmean", "max", "mean", "attention")

    def __init__(self, mode="maxmean", units=64, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"pooling must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.units = units
        self.supports_masking = True

    def build(self, input_shape):
        if self.mode == "attention":
            self.score_dense = keras.layers.Dense(self.units, activation="tanh", name="score_hidden")
            self.score_dense.build(input_shape)
            self.score_v = keras.layers.Dense(1, use_bias=False, name="score")
            self.score_v.build((*input_shape[:-1], self.units))

    def call(self, x, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(x)[:2], dtype="bool")
        m = ops.expand_dims(ops.cast(mask, x.dtype), -1)  # (B, T, 1)
        any_valid = ops.cast(ops.max(m, axis=1) > 0, x.dtype)  # (B, 1)
        outs = []
        if self.mode in ("maxmean", "max"):
            outs.append(ops.max(x * m + sl.mask_bias(m, x.dtype), axis=1) * any_valid)
        if self.mode in ("maxmean", "mean"):
            outs.append(ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0))
        if self.mode == "attention":
            scores = self.score_v(self.score_dense(x)) + sl.mask_bias(m, x.dtype)  # (B, T, 1)
            weights = ops.softmax(scores, axis=1) * m
            outs.append(ops.sum(weights * x, axis=1))
        return outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)

    def compute_mask(self, x, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        d = input_shape[-1] * (2 if self.mode == "maxmean" else 1)
        return (input_shape[0], d)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "units": self.units}


# (prev * vocab + next) must fit in int32, the dtype the TFLite model takes
MAX_NGRAM_VOCAB = 46340


@keras.saving.register_keras_serializable(package="seqapps.sentiment")
class BagOfNgrams(keras.layers.Layer):
    """Masked mean of the embeddings of the unigrams and hashed bigrams of a 0-padded id sequence.

    Unigram ``w`` (``w`` > 0) has row ``w``; the bigram ``(a, b)`` of two adjacent non-padding ids
    has row ``vocab_size + (a * vocab_size + b) mod buckets``. Every op (multiply, floor-mod,
    gather, sum) is a TFLite builtin, so devices feed the same token ids as the recurrent path.

    Args:
        vocab_size: number of token ids (0 = padding).
        buckets: number of hashed bigram rows.
        dim: embedding size.
        scale: the vectors are ``scale * embeddings`` (initialised ``1/scale`` smaller): with Adam this
            multiplies the learning rate of the table by ``scale`` (a sparse bag learns slowly).

    Input (batch, T) int32 -> output (batch, dim); a row with no token gives zeros.
    """

    def __init__(self, vocab_size, buckets, dim=8, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if vocab_size > MAX_NGRAM_VOCAB:
            raise ValueError(
                f"BagOfNgrams: vocab_size {vocab_size} is too large for int32 bigram ids; "
                f"use vocab_size <= {MAX_NGRAM_VOCAB} or ngram_buckets=0."
            )
        if buckets <= 0:
            raise ValueError(f"BagOfNgrams: buckets must be positive, got {buckets}")
        self.vocab_size = int(vocab_size)
        self.buckets = int(buckets)
        self.dim = int(dim)
        self.scale = float(scale)

    def build(self, input_shape):
        limit = 0.05 / self.scale
        self.embeddings = self.add_weight(
            shape=(self.vocab_size + self.buckets, self.dim),
            name="embeddings",
            initializer=keras.initializers.RandomUniform(-limit, limit),
        )

    def call(self, ids):
        ids = ops.cast(ids, "int32")
        prev, nxt = ids[:, :-1], ids[:, 1:]
        bigram = self.vocab_size + ops.mod(prev * self.vocab_size + nxt, self.buckets)
        bigram_valid = ops.logical_and(prev > 0, nxt > 0)
        all_ids = ops.concatenate([ids, ops.where(bigram_valid, bigram, 0)], axis=1)
        valid = ops.cast(ops.concatenate([ids > 0, bigram_valid], axis=1), self.compute_dtype)
        vectors = ops.take(self.embeddings, all_ids, axis=0) * ops.expand_dims(valid, -1)
        count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
        return ops.sum(vectors, axis=1) * (self.scale / count)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "buckets": self.buckets,
            "dim": self.dim,
            "scale": self.scale,
        }


@keras.saving.register_keras_serializable(package="seqapps.sentiment")
class HashedNgramClassifier(keras.layers.Layer):
    """Class logits of a linear model over the *set* of hashed n-grams of a 0-padded id sequence.

    The rows are those of `seqapps.sentiment.nblr.ngram_rows` (unigrams, then bigrams and trigrams hashed
    into ``buckets`` rows after the ``vocab_size`` unigram rows); each distinct row counts once: the rows
    are sorted (TOPK_V2) and a row equal to its predecessor is dropped. ``z = sum(table[rows]) + bias``;
    two classes: one logit z of class 1, returned as the class logits ``[0, z]``; more: one-vs-rest
    logits (a softmax of either gives the class probabilities). Every op is a TFLite builtin and all
    integer arithmetic stays in int32. The weights come from `nblr.fit` (`set_weights`), not from
    gradient descent, so they are not trainable.

    Input (batch, T) int32 -> output (batch, classes) logits.
    """

    def __init__(self, vocab_size, buckets, order=3, classes=2, **kwargs):
        super().__init__(**kwargs)
        from seqapps.sentiment import nblr

        nblr.check(vocab_size, buckets, order)
        if classes < 2:
            raise ValueError(f"need at least 2 classes, got {classes}")
        self.vocab_size, self.buckets, self.order, self.classes = (
            int(vocab_size),
            int(buckets),
            int(order),
            int(classes),
        )
        self.prime = nblr.trigram_prime(self.vocab_size)

    def build(self, input_shape):
        outputs = 1 if self.classes == 2 else self.classes
        rows = self.vocab_size + self.buckets
        self.table = self.add_weight(shape=(rows, outputs), name="table", initializer="zeros", trainable=False)
        self.bias = self.add_weight(shape=(outputs,), name="bias", initializer="zeros", trainable=False)

    def rows(self, ids):
        """(batch, N) int32 table rows of every n-gram position; 0 where the n-gram touches padding."""
        ids = ops.cast(ids, "int32")
        v, parts = self.vocab_size, [ids]
        if self.order >= 2:
            a, b = ids[:, :-1], ids[:, 1:]
            h = v + ops.mod(a * v + b, self.buckets)
            parts.append(ops.where(ops.logical_and(a > 0, b > 0), h, 0))
        if self.order >= 3:
            a, b, c = ids[:, :-2], ids[:, 1:-1], ids[:, 2:]
            h = v + ops.mod(ops.mod(a * v + b, self.prime) * v + c, self.buckets)
            parts.append(ops.where(ops.logical_and(ops.logical_and(a > 0, b > 0), c > 0), h, 0))
        return ops.concatenate(parts, axis=1)

    def call(self, ids):
        import tensorflow as tf

        rows = self.rows(ids)
        ranked = tf.math.top_k(rows, k=tf.shape(rows)[1], sorted=True).values  # descending, padding last
        previous = ops.concatenate([ops.full_like(ranked[:, :1], -1), ranked[:, :-1]], axis=1)
        first = ops.cast(ops.logical_and(ranked > 0, ranked != previous), self.compute_dtype)
        z = ops.sum(ops.take(self.table, ranked, axis=0) * ops.expand_dims(first, -1), axis=1) + self.bias
        return ops.concatenate([ops.zeros_like(z), z], axis=1) if self.classes == 2 else z

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.classes)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "buckets": self.buckets,
            "order": self.order,
            "classes": self.classes,
        }


WIDE_KINDS = ("fasttext", "nblr")

_KERAS_LAYERS = {
    "gru": keras.layers.GRU,
    "lstm": keras.layers.LSTM,
    "rnn": keras.layers.SimpleRNN,
    "simple_rnn": keras.layers.SimpleRNN,
}


def recurrent_layer(kind: str, units: int, impl: str = "seqapps", name=None):
    if impl == "seqapps":
        return sl.RNN(sl.make_cell(kind, units), return_sequences=True, name=name)
    if impl == "keras":
        if kind.lower() not in _KERAS_LAYERS:
            raise ValueError(f"Unknown cell type {kind!r}; choose one of {sorted(_KERAS_LAYERS)}.")
        return _KERAS_LAYERS[kind.lower()](units, return_sequences=True, name=name)
    raise ValueError(f"impl must be 'seqapps' or 'keras', got {impl!r}")


def build_model(cfg, vocab_size: int, num_classes: int, impl: str = "seqapps", length=None) -> keras.Model:
    """The classifier; ``length`` fixes the number of time steps (needed to trace the RNNs unrolled)."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if cfg.wide not in WIDE_KINDS:
        raise ValueError(f"wide must be one of {WIDE_KINDS}, got {cfg.wide!r}")
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocab_size, cfg.embedding_dim, mask_zero=True, name="embedding")(ids)
    # word dropout: a dropped token loses its whole embedding vector (one mask value per time step)
    x = keras.layers.Dropout(cfg.embedding_dropout, noise_shape=(None, None, 1), name="word_dropout")(x)
    for i in range(cfg.layers):
        rnn = recurrent_layer(cfg.cell, cfg.units, impl, name=f"rnn_{i + 1}")
        x = keras.layers.Bidirectional(rnn, name=f"birnn_{i + 1}")(x) if cfg.bidirectional else rnn(x)
    x = MaskedPooling(cfg.pooling, cfg.units, name="pooling")(x)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    if cfg.hidden:
        x = keras.layers.Dense(cfg.hidden, activation="relu", name="hidden")(x)
    if not cfg.ngram_buckets:
        probs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
        return keras.Model(ids, probs, name=f"sentiment_{cfg.cell}")
    weight = 0.5 if cfg.deep_weight < 0 else cfg.deep_weight  # < 0: chosen on validation after training
    if cfg.wide == "nblr":
        # the recurrent member learns a correction of the n-gram model's logits (see residual_training_model)
        corrections = keras.layers.Dense(num_classes, name=DEEP_LOGITS)(x)
        ngram_logits = HashedNgramClassifier(vocab_size, cfg.ngram_buckets, cfg.ngram_order, num_classes, name=NBLR)(
            ids
        )
        probs = AddLogits(weight, name="probabilities")([ngram_logits, corrections])
        return keras.Model(ids, probs, name=f"sentiment_nblr_and_{cfg.cell}")
    deep = keras.layers.Dense(num_classes, activation="softmax", name=DEEP)(x)
    bag = BagOfNgrams(vocab_size, cfg.ngram_buckets, cfg.ngram_dim, cfg.ngram_scale, name="bag_of_ngrams")(ids)
    wide = keras.layers.Dense(num_classes, activation="softmax", name=WIDE)(bag)
    probs = MixProbabilities(weight, name="probabilities")([deep, wide])
    return keras.Model(ids, probs, name=f"sentiment_{cfg.cell}_and_ngrams")


@keras.saving.register_keras_serializable(package="seqapps.sentiment")
class MixProbabilities(keras.layers.Layer):
    """``weight * deep + (1 - weight) * wide``: the ensemble's probabilities (a fixed weight, chosen on
    the validation split; no trainable weights)."""

    def __init__(self, weight=0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"deep_weight must be in [0, 1], got {weight!r}")
        self.weight = float(weight)

    def call(self, inputs):
        deep, wide = inputs
        return self.weight * deep + (1.0 - self.weight) * wide

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


DEEP, WIDE = "deep_probabilities", "wide_probabilities"
NBLR, DEEP_LOGITS = "nblr_logits", "recurrent_correction"


@keras.saving.register_keras_serializable(package="seqapps.sentiment")
class AddLogits(keras.layers.Layer):
    """``softmax(ngram_logits + weight * correction)``: the n-gram model corrected by the recurrent member
    (the weight is chosen on the validation split; 0 leaves the n-gram model alone)."""

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"deep_weight must be in [0, 1], got {weight!r}")
        self.weight = float(weight)

    def call(self, inputs):
        base, correction = inputs
        return ops.softmax(base + self.weight * correction, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


def residual_training_model(model: keras.Model) -> keras.Model | None:
    """For the nblr model: ``[token_ids, base_logits] -> softmax(base_logits + correction)``, the model that
    trains the recurrent member on the residual of the n-gram model. ``base_logits`` are out-of-fold n-gram
    logits for training examples (the fitted n-gram model knows its own training set too well to leave a
    residual there). None for other models."""
    if NBLR not in {layer.name for layer in model.layers}:
        return None
    base = keras.Input(model.get_layer(NBLR).output.shape[1:], name="base_logits")
    correction = model.get_layer(DEEP_LOGITS).output
    probs = keras.layers.Softmax(name="probabilities")(keras.layers.Add()([base, correction]))
    return keras.Model([model.input, base], probs, name=f"{model.name}_residual_training")


def training_model(model: keras.Model) -> tuple[keras.Model, int]:
    """(model to fit, number of outputs): for the deep+wide ensemble, a model that also outputs each
    member's probabilities, so that each member gets its own loss (the ensemble output has weight 0)."""
    names = {layer.name for layer in model.layers}
    if DEEP not in names:
        return model, 1
    outs = [model.output, model.get_layer(DEEP).output, model.get_layer(WIDE).output]
    return keras.Model(model.input, outs, name=f"{model.name}_training"), 3


class BestMemberWeights(keras.callbacks.Callback):
    """Gives each member of the deep+wide ensemble the weights of the epoch of its own best validation
    loss (``val_deep_probabilities_loss``, ``val_wide_probabilities_loss``) when training ends: the
    recurrent member overfits in an epoch or two, the bag keeps improving for longer. Runs after
    EarlyStopping's restore (list it after). After ``--resume`` it tracks the epochs run since then.
    """

    def __init__(self, model: keras.Model):
        super().__init__()
        wide_layers = {"bag_of_ngrams", WIDE}
        self.members = {
            f"val_{DEEP}_loss": [v for v in model.weights if v.path.split("/")[0] not in wide_layers],
            f"val_{WIDE}_loss": [v for v in model.weights if v.path.split("/")[0] in wide_layers],
        }
        self.best = {key: (float("inf"), None, None) for key in self.members}

    def on_epoch_end(self, epoch, logs=None):
        for key, variables in self.members.items():
            value = (logs or {}).get(key)
            if value is not None and value < self.best[key][0]:
                self.best[key] = (float(value), epoch + 1, [v.numpy() for v in variables])

    def on_train_end(self, logs=None):
        for key, variables in self.members.items():
            _, epoch, values = self.best[key]
            if values is not None:
                for v, x in zip(variables, values):
                    v.assign(x)
                print(f"[sentiment] {key.removeprefix('val_').removesuffix('_loss')}: weights of epoch {epoch}")

    @property
    def best_epochs(self) -> dict:
        return {key.removeprefix("val_").removesuffix("_loss"): best[1] for key, best in self.best.items()}

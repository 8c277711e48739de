"""What ships: the SavedModel serving module (strings in) and the TFLite module (token ids in).

SavedModel signatures
    serving_default:  text (tf.string [None]) -> probabilities (float32 [None, classes]), label (tf.string [None])
    classify_details: text (tf.string [None]) -> probabilities, label, token_ids (int32 [None, max_len]),
                      num_tokens (int32 [None], before truncation), truncated (bool [None]), empty (bool [None])
    Empty or whitespace-only texts (no tokens) get label "" and uniform probabilities; texts longer than
    ``max_len`` tokens are truncated (``truncated`` says so); invalid UTF-8 is decoded with U+FFFD.
TFLite (builtin ops, batch 1)
    classify: token_ids (int32 [1, max_len], 0-padded, from `seqapps.sentiment.tokenizer`) -> probabilities [1, classes]
"""

from __future__ import annotations

import tensorflow as tf

from seqapps.export.saved_model import KerasModule
from seqapps.sentiment import text


class SentimentModule(KerasModule):
    def __init__(self, model, vocab, labels, max_len, truncate):
        super().__init__(model)  # tracks the model's variables once (see KerasModule)
        self.table = text.lookup_table(vocab)
        self.labels = tf.constant(labels)
        self.num_classes = len(labels)
        self.max_len = int(max_len)
        self.truncate = truncate

    def encode(self, texts):
        """Strings -> (ids [B, T<=max_len] int32 0-padded, num_tokens [B], truncated [B])."""
        tokens = text.tokenize(texts)
        n = tf.cast(tokens.row_lengths(), tf.int32)
        ids = tf.cast(self.table.lookup(text.truncate(tokens, self.max_len, self.truncate)), tf.int32)
        ids = ids.to_tensor(default_value=0)
        width = tf.shape(ids)[1]
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(1 - width, 0)]])  # at least one (masked) step
        return ids, n, n > self.max_len

    def _classify(self, texts):
        ids, n, truncated = self.encode(texts)
        empty = tf.equal(n, 0)
        probs = tf.cast(self.model(ids, training=False), tf.float32)
        uniform = tf.fill(tf.shape(probs), 1.0 / self.num_classes)
        probs = tf.where(empty[:, None], uniform, probs)
        label = tf.where(empty, tf.constant(""), tf.gather(self.labels, tf.argmax(probs, axis=-1)))
        return probs, label, ids, n, truncated, empty

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text_in):
        probs, label, *_ = self._classify(text_in)
        return {"probabilities": probs, "label": label}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def details(self, text_in):
        probs, label, ids, n, truncated, empty = self._classify(text_in)
        width = tf.shape(ids)[1]
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(self.max_len - width, 0)]])[:, : self.max_len]
        return {
            "probabilities": probs,
            "label": label,
            "token_ids": ids,
            "num_tokens": n,
            "truncated": truncated,
            "empty": empty,
        }

    def signatures(self):
        return {"serving_default": self.serve, "classify_details": self.details}


class TFLiteModule(KerasModule):
    """``classify`` with a static batch-1, fixed-length input (what the converter turns into builtin ops)."""

    def __init__(self, model, max_len):
        super().__init__(model)
        self.classify = tf.function(
            self._classify, input_signature=[tf.TensorSpec([1, int(max_len)], tf.int32, name="token_ids")]
        )

    def _classify(self, token_ids):
        return {"probabilities": tf.cast(self.model(token_ids, training=False), tf.float32)}

    def signatures(self):
        return {"classify": self.classify}


def tflite_blob(model, cfg, vocab_size, num_classes, variant, representative_ids=()):
    """TFLite flatbuffer of ``model``: variant "float32", "dynamic" (int8 weights), "full" (int8 weights and
    activations) or "gpu" (float16 weights, unrolled). Full int8 traces the RNN unrolled over ``max_len`` steps (the int8 calibrator cannot run a
    WHILE loop); that model grows with ``max_len`` (31 MB at 400 tokens for a BiGRU 64), so it suits short texts.
    """
    from seqapps.export import tflite
    from seqapps.sentiment.model import build_model

    if variant in ("float32", "dynamic"):
        module = TFLiteModule(model, cfg.max_len)
        return tflite.convert_module(module, module.signatures(), variant)
    if variant == "gpu":  # float16 weights, the RNN unrolled over max_len steps (no WHILE): GPU delegates
        fixed = build_model(cfg, vocab_size, num_classes, length=cfg.max_len)
        fixed.set_weights(model.get_weights())
        return tflite.convert_unrolled(fixed, lambda: TFLiteModule(fixed, cfg.max_len))
    if variant != "full":
        raise ValueError(f"int8_mode must be 'dynamic' or 'full', got {variant!r}")
    if not len(representative_ids):
        raise ValueError("full int8 needs representative token ids")

    def representative():
        for ids in representative_ids:
            yield {"token_ids": ids}

    fixed = build_model(cfg, vocab_size, num_classes, length=cfg.max_len)
    fixed.set_weights(model.get_weights())
    with tflite.unrolled(fixed):
        module = TFLiteModule(fixed, cfg.max_len)
        return tflite.convert_module(module, module.signatures(), "int8", representative_dataset=representative)

"""Encoder-decoder GRU with attention, built from `seqapps.layers`.

    source ids -> Embedding -> Bidirectional(RNN(GRUCell)) -> encoder outputs (batch, S, 2u)
                                         final states [h_fw, h_bw] -> Dense(tanh) -> decoder state
    target ids -> Embedding -> RNN(GRUCell) (teacher forcing) -> h_t
    attention(query=h_t, value=encoder outputs, mask=source mask) -> context_t
    logits_t = Dense(vocab)(Dense(u, tanh)([h_t; context_t]))          (Luong et al., 2015)

`decode_step` runs the same decoder cell one token at a time (state in, state out); decoding
loops (greedy, beam search) live in `decoding.py`.
"""

from __future__ import annotations

import keras
from keras import ops

from seqapps import layers as sl


@keras.saving.register_keras_serializable(package="seqapps")
class Translator(keras.Model):
    def __init__(
        self, src_vocab_size, tgt_vocab_size, embedding_dim=128, units=256, attention="additive", dropout=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.src_vocab_size = src_vocab_size
        self.tgt_vocab_size = tgt_vocab_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.attention_kind = attention
        self.dropout_rate = dropout
        self.src_embedding = keras.layers.Embedding(src_vocab_size, embedding_dim, mask_zero=True, name="src_embedding")
        self.encoder = keras.layers.Bidirectional(
            sl.RNN(sl.GRUCell(units), return_sequences=True, return_state=True), name="encoder"
        )
        self.bridge = keras.layers.Dense(units, activation="tanh", name="bridge")
        self.tgt_embedding = keras.layers.Embedding(tgt_vocab_size, embedding_dim, name="tgt_embedding")
        self.decoder_cell = sl.GRUCell(units, name="decoder_cell")
        self.decoder = sl.RNN(self.decoder_cell, return_sequences=True, return_state=True, name="decoder")
        self.attention = sl.make_attention(attention, units)
        self.combine = keras.layers.Dense(units, activation="tanh", name="combine")
        self.drop = keras.layers.Dropout(dropout)
        self.output_layer = keras.layers.Dense(tgt_vocab_size, name="logits", dtype="float32")  # stable softmax

    def encode(self, source, training=False):
        """source ids (batch, S) -> (encoder outputs (batch, S, 2u), source mask (batch, S), state (batch, u))."""
        mask = ops.not_equal(source, 0)
        x = self.drop(self.src_embedding(source), training=training)
        outputs, h_fw, h_bw = self.encoder(x, mask=mask, training=training)
        state = self.bridge(ops.concatenate([h_fw, h_bw], axis=-1))
        return outputs, mask, state

    def _readout(self, h, context, training=False):
        return self.output_layer(self.drop(self.combine(ops.concatenate([h, context], axis=-1)), training=training))

    def call(self, inputs, training=False):
        source, target_in = inputs
        enc_out, src_mask, state = self.encode(source, training)
        y = self.drop(self.tgt_embedding(target_in), training=training)
        dec_out, _ = self.decoder(y, initial_state=[state], training=training)
        context, _ = self.attention(dec_out, enc_out, mask=src_mask)
        return self._readout(dec_out, context, training)

    def decode_step(self, token, state, enc_out, src_mask):
        """One decoder step: token (batch,), state (batch, u) -> (logits (batch, V), state, attention (batch, S))."""
        y = self.tgt_embedding(token)
        h, _ = self.decoder_cell(y, [state])
        context, weights = self.attention(h, enc_out, mask=src_mask)
        return self._readout(h, context), h, weights

    def get_config(self):
        return {
            **super().get_config(),
            "src_vocab_size": self.src_vocab_size,
            "tgt_vocab_size": self.tgt_vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention": self.attention_kind,
            "dropout": self.dropout_rate,
        }


def build_model(cfg, src_vocab_size, tgt_vocab_size) -> Translator:
    model = Translator(src_vocab_size, tgt_vocab_size, cfg.embedding_dim, cfg.units, cfg.attention, cfg.dropout)
    model((ops.ones((1, 2), "int32"), ops.ones((1, 2), "int32")))  # build the weights
    return model


@keras.saving.register_keras_serializable(package="seqapps")
def masked_loss(y_true, logits):
    loss = keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
    mask = ops.cast(ops.not_equal(y_true, 0), loss.dtype)
    return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="seqapps")
def masked_accuracy(y_true, logits):
    pred = ops.cast(ops.argmax(logits, axis=-1), y_true.dtype)
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    return ops.sum(ops.cast(ops.equal(pred, y_true), "float32") * mask) / ops.maximum(ops.sum(mask), 1.0)

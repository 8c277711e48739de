"""What ships: the SavedModel serving module (strings in, strings out) and the TFLite modules.

SavedModel signatures
    serving_default:   text (tf.string [None]) -> translation (tf.string [None])        beam search
    translate_details: text (tf.string [None]) -> translation, tokens (tf.string [None, T]),
                       attention (float32 [None, T, S]), source_tokens (tf.string [None, S]),
                       truncated (tf.bool [None])                                       greedy
TFLite (one file, builtin ops, batch 1, source padded to ``max_src_len``)
    encode:      source_ids (int32 [1, S]) -> encoder_outputs [1, S, 2u], source_mask [1, S], state [1, u]
    decode_step: token (int32 [1]), state, encoder_outputs, source_mask
                 -> logits [1, V], state [1, u], attention [1, S]
"""

from __future__ import annotations

import tensorflow as tf

from seqapps.export.saved_model import KerasModule
from seqapps.translate import decoding, text


class TranslateModule(KerasModule):
    def __init__(
        self, model, src_vocab, tgt_vocab, max_src_len, max_tgt_len, beam_width=4, length_penalty=0.6, truecase=None
    ):
        super().__init__(model)
        self.src_table = text.lookup_table(src_vocab)
        self.tgt_tokens = tf.constant(tgt_vocab)
        self.truecase = text.truecase_table(truecase) if truecase else None  # assets/truecase.tsv
        self.max_src_len = int(max_src_len)
        self.max_tgt_len = int(max_tgt_len)
        self.beam_width = int(beam_width)
        self.length_penalty = float(length_penalty)

    def prepare(self, sentences):
        """Strings -> (ids [B, S] int32, source tokens, lengths, truncated)."""
        tokens = text.tokenize(sentences)
        lengths = tokens.row_lengths()
        truncated = lengths > self.max_src_len
        tokens = tokens[:, : self.max_src_len]
        ids = tf.cast(self.src_table.lookup(tokens), tf.int32)
        ids = ids.to_tensor(default_value=0, shape=[None, self.max_src_len])
        return ids, tokens, lengths, truncated

    def to_text(self, ids, lengths):
        tokens = tf.gather(self.tgt_tokens, ids)
        sentences = text.detokenize(tokens, self.truecase)
        return tf.where(lengths > 0, sentences, "")  # empty input -> empty translation

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def translate(self, text_in):
        ids, _, lengths, _ = self.prepare(text_in)
        out = decoding.beam_search(self.model, ids, self.max_tgt_len, self.beam_width, self.length_penalty)
        return {"translation": self.to_text(out, lengths)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def translate_details(self, text_in):
        ids, src_tokens, lengths, truncated = self.prepare(text_in)
        out, attention = decoding.greedy(self.model, ids, self.max_tgt_len)
        # an empty input has no translation, so no tokens or attention either (the decoder ran on padding)
        out = tf.where(lengths[:, None] > 0, out, tf.zeros_like(out))
        attention = tf.where(lengths[:, None, None] > 0, attention, tf.zeros_like(attention))
        return {
            "translation": self.to_text(out, lengths),
            "tokens": tf.gather(self.tgt_tokens, out),
            "attention": attention,
            "source_tokens": src_tokens.to_tensor(default_value=""),
            "truncated": truncated,
        }

    def signatures(self):
        return {"serving_default": self.translate, "translate_details": self.translate_details}


class TFLiteModule(KerasModule):
    """encode / decode_step with static batch-1 shapes (what the converter turns into builtin ops)."""

    def __init__(self, model, max_src_len):
        super().__init__(model)
        units, s = model.units, int(max_src_len)
        self.encode = tf.function(self._encode, input_signature=[tf.TensorSpec([1, s], tf.int32, name="source_ids")])
        self.decode_step = tf.function(
            self._decode_step,
            input_signature=[
                tf.TensorSpec([1], tf.int32, name="token"),
                tf.TensorSpec([1, units], tf.float32, name="state"),
                tf.TensorSpec([1, s, 2 * units], tf.float32, name="encoder_outputs"),
                tf.TensorSpec([1, s], tf.float32, name="source_mask"),
            ],
        )

    def _encode(self, source_ids):
        enc_out, mask, state = self.model.encode(source_ids)
        return {"encoder_outputs": enc_out, "source_mask": tf.cast(mask, tf.float32), "state": state}

    def _decode_step(self, token, state, encoder_outputs, source_mask):
        logits, new_state, weights = self.model.decode_step(token, state, encoder_outputs, source_mask > 0.5)
        return {"logits": logits, "state": new_state, "attention": weights}

    def signatures(self):
        return {"encode": self.encode, "decode_step": self.decode_step}


def int8_model(model, max_src_len: int, float_translator, sentences) -> bytes:
    """Full-integer TFLite translator (builtin ops only): ``encode`` and ``decode_step`` calibrated on the calls
    that the float32 TFLite ``float_translator`` makes while it translates ``sentences`` greedily.

    The attention layer stays float: its scores carry the -1e9 mask of padded positions, and on one int8
    scale for [-1e9, scores] every real score rounds to the same value (greedy BLEU fell from 42 to 0.7
    on the shipped model). The encoder is traced unrolled: the calibrator cannot run a WHILE loop."""
    from seqapps.export import tflite

    samples = []
    for sentence in sentences:
        float_translator.greedy_ids(sentence, record=samples)
    if not samples:
        raise ValueError("int8 calibration needs at least one source sentence")

    def representative():
        yield from samples

    return tflite.convert_unrolled(
        model,
        lambda: TFLiteModule(model, max_src_len),
        "int8",
        representative,
        keep_float=lambda name: model.attention.name in name,
    )

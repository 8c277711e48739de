"""Decoding loops over `Translator.encode`/`decode_step`: greedy and batched beam search.

Both are TensorFlow code that runs eagerly or inside a `tf.function` (the SavedModel uses them).
They return token ids (batch, T) padded with 0 after the end token (the end token itself dropped), with
T <= ``max_len``: a translation that has not ended after ``max_len`` tokens is cut there, as the training
targets (at most ``max_tgt_len`` tokens) are.
"""

from __future__ import annotations

import tensorflow as tf

from seqapps.translate.text import END_ID, PAD_ID, START_ID

NEG_INF = -1e9


def greedy(model, source, max_len: int):
    """Greedy decoding of at most ``max_len`` tokens.

    Returns (tokens (batch, T) int32, attention (batch, T, S) float32). It runs at most ``max_len`` steps: the
    end token after a translation of ``max_len`` tokens would be dropped anyway."""
    enc_out, mask, state = model.encode(source)
    batch = tf.shape(source)[0]
    token = tf.fill([batch], START_ID)
    done = tf.zeros([batch], tf.bool)
    tokens = tf.TensorArray(tf.int32, size=max_len)
    attn = tf.TensorArray(tf.float32, size=max_len)
    steps = 0
    for t in tf.range(max_len):
        logits, state, weights = model.decode_step(token, state, enc_out, mask)
        token = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
        done_before = done
        done = done | tf.equal(token, END_ID) | tf.equal(token, PAD_ID)  # as beam search and the TFLite loop stop
        token_out = tf.where(done, PAD_ID, token)
        tokens = tokens.write(t, token_out)
        attn = attn.write(t, tf.where(done_before[:, None], tf.zeros_like(weights), weights))
        steps = t + 1
        if tf.reduce_all(done):
            break
    out = tf.transpose(tokens.stack()[:steps])
    return out, tf.transpose(attn.stack()[:steps], [1, 0, 2])


def _length_penalty(length, alpha: float):
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def beam_search(model, source, max_len: int, beam_width: int = 4, length_penalty: float = 0.6):
    """Batched beam search of at most ``max_len`` tokens; hypotheses are ranked by
    log p / ((5 + len) / 6) ** alpha.

    It runs at most ``max_len + 1`` steps, and in the last one a hypothesis can only end: every hypothesis is
    ranked as a finished translation of at most ``max_len`` tokens, its end token's probability included.
    Returns the best hypothesis per sentence: tokens (batch, T) int32.
    """
    if beam_width <= 1:
        return greedy(model, source, max_len)[0]
    k = beam_width
    enc_out, mask, state = model.encode(source)
    batch = tf.shape(source)[0]
    # tile everything to (batch * k, ...)
    enc_out = tf.repeat(enc_out, k, axis=0)
    mask = tf.repeat(mask, k, axis=0)
    state = tf.repeat(state, k, axis=0)
    scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], NEG_INF)], 0)[None], [batch, 1])  # (b, k)
    token = tf.fill([batch * k], START_ID)
    finished = tf.zeros([batch, k], tf.bool)
    lengths = tf.zeros([batch, k], tf.int32)
    history = tf.zeros([batch, k, 0], tf.int32)
    for step in tf.range(max_len + 1):
        tf.autograph.experimental.set_loop_options(shape_invariants=[(history, tf.TensorShape([None, k, None]))])
        logits, state, _ = model.decode_step(token, state, enc_out, mask)
        vocab = tf.shape(logits)[-1]
        logp = tf.reshape(tf.nn.log_softmax(logits), [batch, k, vocab])
        # after max_len tokens only the end token may follow
        end_only = tf.one_hot(END_ID, vocab, on_value=0.0, off_value=NEG_INF)
        logp = tf.where(tf.equal(step, max_len), logp + end_only[None, None], logp)
        # a finished beam can only be extended by PAD, at no cost
        pad_only = tf.one_hot(PAD_ID, vocab, on_value=0.0, off_value=NEG_INF)
        logp = tf.where(finished[:, :, None], pad_only[None, None], logp)
        cand = tf.reshape(scores[:, :, None] + logp, [batch, k * vocab])
        scores, flat = tf.math.top_k(cand, k=k)
        beam = flat // vocab
        new_token = tf.cast(flat % vocab, tf.int32)
        finished = tf.gather(finished, beam, batch_dims=1)
        lengths = tf.gather(lengths, beam, batch_dims=1) + tf.cast(~finished, tf.int32)
        history = tf.concat([tf.gather(history, beam, batch_dims=1), new_token[:, :, None]], axis=2)
        finished = finished | tf.equal(new_token, END_ID) | tf.equal(new_token, PAD_ID)
        rows = tf.reshape(beam + tf.range(batch)[:, None] * k, [-1])
        state = tf.gather(state, rows)
        token = tf.reshape(new_token, [-1])
        if tf.reduce_all(finished):
            break
    normalized = scores / _length_penalty(tf.maximum(lengths, 1), length_penalty)
    best = tf.argmax(normalized, axis=1, output_type=tf.int32)
    tokens = tf.gather(history, best, batch_dims=1)[:, :max_len]  # the last column can only hold END or PAD
    return tf.where(tf.equal(tokens, END_ID), PAD_ID, tokens)

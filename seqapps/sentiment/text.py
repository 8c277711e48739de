"""The tokenizer as TensorFlow ops (inside the SavedModel), twin of `seqapps.sentiment.tokenizer`.

See `seqapps.sentiment.tokenizer` for the steps; tests check both give the same ids.
"""

from __future__ import annotations

import tensorflow as tf

from seqapps.sentiment.tokenizer import BR_PATTERN, PAD_ID, RESERVED, UNK_ID, read_lines

_SPACES = r"[\p{Z}\p{Cc}\p{Cf}\p{Co}\x{FFFD}]"
_SPLIT = r"([^\p{L}\p{N}\p{M} ])"


def standardize(text: tf.Tensor) -> tf.Tensor:
    """tf.string [batch] -> tf.string [batch] with tokens separated by spaces."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    text = tf.strings.regex_replace(text, BR_PATTERN, " ")
    text = tf.strings.regex_replace(text, _SPACES, " ")  # before lower(), which stops at a NUL byte
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, "['\u2018\u2019\u02bc`]", "")
    return tf.strings.regex_replace(text, _SPLIT, r" \1 ")


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [batch] -> ragged tf.string [batch, (tokens)]."""
    return tf.strings.split(standardize(text))


def lookup_table(vocab: list[str]) -> tf.lookup.StaticHashTable:
    keys = tf.constant(vocab[len(RESERVED) :])
    values = tf.range(len(RESERVED), len(vocab), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=UNK_ID)


def truncate(tokens: tf.RaggedTensor, max_len: int, how: str) -> tf.RaggedTensor:
    if how == "head":
        return tokens[:, :max_len]
    if how == "tail":
        return tokens[:, -max_len:]
    raise ValueError(f"truncate must be 'head' or 'tail', got {how!r}")


def build_vocabulary(token_lists, max_size: int, min_count: int = 2) -> list[str]:
    """Reserved tokens, then tokens by decreasing frequency (ties alphabetical)."""
    from collections import Counter

    counts = Counter(t for tokens in token_lists for t in tokens)
    for r in RESERVED:
        counts.pop(r, None)
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return RESERVED + ranked[: max(0, max_size - len(RESERVED))]


def read_vocab(path) -> list[str]:
    vocab = read_lines(path)
    if vocab[: len(RESERVED)] != RESERVED:
        raise ValueError(f"{path}: not a seqapps sentiment vocabulary (first lines must be {RESERVED})")
    return vocab


def write_lines(path, lines: list[str]) -> None:
    from seqapps.export.atomic import atomic_write_text

    for line in lines:
        if "\n" in line:
            raise ValueError(f"cannot write {line!r} as one line")
    atomic_write_text(path, "\n".join(lines) + "\n")


__all__ = [
    "standardize",
    "tokenize",
    "lookup_table",
    "truncate",
    "build_vocabulary",
    "read_vocab",
    "write_lines",
    "PAD_ID",
    "UNK_ID",
    "RESERVED",
]

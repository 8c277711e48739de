"""Text processing shared by training, the SavedModel and devices.

`standardize`/`tokenize` are TensorFlow ops (they run inside the SavedModel); `py_tokenize` is the
same processing in pure Python for devices and the TFLite reference loop (tests keep them equal),
usable where TensorFlow is not installed.

Steps: Unicode composition (NFC) of accented Latin letters, lower-casing, curly quotes to
straight, every character that is not a letter, digit, apostrophe or space split off as its own
token (so ``¿``, ``?``, ``,`` are tokens), whitespace split.
"""

from __future__ import annotations

import re
import unicodedata

try:
    import tensorflow as tf
except ModuleNotFoundError as _exc:  # a device-like install: only the pure-Python twins are used there
    if _exc.name != "tensorflow":
        raise
    tf = None

PAD, UNK, START, END = "", "[UNK]", "[START]", "[END]"
RESERVED = [PAD, UNK, START, END]
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3

# NFD -> NFC for the accented letters of Latin-1 and Latin Extended-A (what Spanish, Portuguese,
# French, German ... use). Core TensorFlow has no general Unicode normaliser.
_COMPOSE = []
for _cp in range(0xC0, 0x180):
    _ch = chr(_cp)
    _nfd = unicodedata.normalize("NFD", _ch)
    if len(_nfd) == 2 and _nfd != _ch:
        _COMPOSE.append((_nfd, _ch))
# Python's str.split() whitespace (str.isspace): ASCII whitespace, the information separators, NEL and every
# Unicode space (\p{Z}: no-break, thin, ideographic, line and paragraph separators). RE2's \s is ASCII only,
# so the graph makes these spaces first; NUL too, at which tf.strings.lower would end the string.
_SPACES_TF = r"[\x{00}\t\n\x{0b}\f\r\x{1c}-\x{1f}\x{85}\p{Z}]"
_SPLIT_TF = r"([^\p{L}\p{N}'\s])"
_SPLIT_PY = re.compile(r"([^\w'\s]|_)")


def standardize(text: tf.Tensor) -> tf.Tensor:
    """tf.string -> tf.string, element-wise."""
    if any(True for _ in _COMPOSE):
        # One pass for every combining mark present is enough: only strings containing U+03xx change.
        has_marks = tf.strings.regex_full_match(text, r"(?s).*[\x{0300}-\x{036F}].*")
        composed = text
        for nfd, nfc in _COMPOSE:
            composed = tf.strings.regex_replace(composed, nfd, nfc)
        text = tf.where(has_marks, composed, text)
    text = tf.strings.regex_replace(text, _SPACES_TF, " ")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, "[\u2018\u2019\u02bc]", "'")
    text = tf.strings.regex_replace(text, _SPLIT_TF, r" \1 ")
    return tf.strings.strip(text)


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [batch] -> ragged tf.string [batch, (tokens)]."""
    return tf.strings.split(standardize(text))


def py_tokenize(text: str) -> list[str]:
    """Pure-Python twin of `tokenize` for one string: it composes the same accented letters (not full NFC,
    which the graph cannot do), and str.split() splits at the spaces the graph makes."""
    if any("\u0300" <= ch <= "\u036f" for ch in text):
        for nfd, nfc in _COMPOSE:
            text = text.replace(nfd, nfc)
    text = text.replace("\x00", " ").lower()
    text = re.sub("[\u2018\u2019\u02bc]", "'", text)
    return _SPLIT_PY.sub(r" \1 ", text).split()


def detokenize(tokens: tf.Tensor) -> tf.Tensor:
    """ragged/dense tf.string tokens [batch, T] (padding "") -> sentence strings [batch].

    Joins with spaces, removes the space before closing punctuation and after ``¿``/``¡``, and
    capitalises the first letter (the model works in lower case).
    """
    text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
    text = tf.strings.regex_replace(text, r"\s+", " ")
    text = tf.strings.strip(text)
    text = tf.strings.regex_replace(text, r" ([.?!,;:%)\]])", r"\1")
    text = tf.strings.regex_replace(text, r"([¿¡(\[]) ", r"\1")
    text = tf.strings.regex_replace(text, r"(^|\s)i([\s'.?!,;:]|$)", r"\1I\2")  # English "i" -> "I"
    # Capitalise the first letter (after an opening ¿ ¡ " « when there is one).
    n_head = tf.where(tf.strings.regex_full_match(text, r'(?s)[¿¡"«(].*'), 2, 1)
    length = tf.strings.length(text, unit="UTF8_CHAR")
    n_head = tf.minimum(n_head, length)
    head = tf.strings.substr(text, tf.zeros_like(n_head), n_head, unit="UTF8_CHAR")
    rest = tf.strings.substr(text, n_head, length, unit="UTF8_CHAR")
    return tf.strings.join([tf.strings.upper(head, encoding="utf-8"), rest])


def py_detokenize(tokens: list[str]) -> str:
    text = " ".join(t for t in tokens if t)
    text = re.sub(r" ([.?!,;:%)\]])", r"\1", text)
    text = re.sub(r"([¿¡(\[]) ", r"\1", text)
    text = re.sub(r"(^|\s)i([\s'.?!,;:]|$)", r"\1I\2", text)
    n_head = 2 if text[:1] in '¿¡"«(' else 1
    return text[:n_head].upper() + text[n_head:]


def build_vocabulary(token_lists, max_size: int, min_count: int = 1) -> list[str]:
    """Reserved tokens, then tokens by decreasing frequency (ties alphabetical)."""
    from collections import Counter

    counts = Counter(t for tokens in token_lists for t in tokens)
    for r in RESERVED:
        counts.pop(r, None)
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return RESERVED + ranked[: max(0, max_size - len(RESERVED))]


def lookup_table(vocab: list[str]) -> tf.lookup.StaticHashTable:
    keys = tf.constant(vocab[1:])
    values = tf.range(1, len(vocab), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=UNK_ID)


def read_vocab(path) -> list[str]:
    from pathlib import Path

    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    if lines[: len(RESERVED)] != RESERVED:
        raise ValueError(f"{path}: not a seqapps vocabulary (first lines must be {RESERVED})")
    return lines


def write_vocab(path, vocab: list[str]) -> None:
    from seqapps.export.atomic import atomic_write_text

    atomic_write_text(path, "\n".join(vocab) + "\n")

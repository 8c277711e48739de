"""Pure-Python tokenizer giving exactly the ids of the in-graph one (`seqapps.sentiment.text`).

No TensorFlow import: this is what a device (or a service without TensorFlow) runs before the
TFLite model. The steps, identical to the TensorFlow ops of the SavedModel:

1. bytes are decoded as UTF-8, invalid sequences replaced by U+FFFD;
2. HTML line breaks ``<br />`` (any case, ``<br>``, ``<br/>``) become spaces;
3. whitespace, control (NUL included), format and private-use characters and U+FFFD become spaces;
4. lower-casing (Unicode, with the case table of TensorFlow 2.21);
5. apostrophes (``' ’ ‘ ʼ```) are removed: ``don't`` -> ``dont``;
6. every character that is not a letter, digit or combining mark is split off as its own token
   (``!``, ``,``, ``:)`` -> ``:`` ``)``, emoji);
7. split on spaces; ids from ``vocab.txt`` (line number = id; 0 padding, 1 unknown);
8. longer than ``max_len`` tokens: keep the first (``truncate: head``) or last (``tail``) ``max_len``.

Usage::

    tok = Tokenizer.from_dir("trained/sentiment")     # reads assets/vocab.txt + assets/tokenizer.json
    ids, n_tokens, truncated = tok.encode("A <br />great film!")   # int list of length max_len
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

PAD, UNK = "", "[UNK]"
RESERVED = [PAD, UNK]
PAD_ID, UNK_ID = 0, 1

BR_PATTERN = r"(?i)<br[\t\n\f\r ]*/?>"
APOSTROPHES = "'\u2018\u2019\u02bc`"
# Code points that Python 3.11's str.lower() changes but TensorFlow 2.21's lower-casing leaves as
# they are (letters added in Unicode 14).
_TF_NO_LOWER = frozenset(
    [
        0x2C2F,
        0xA7C0,
        0xA7D0,
        0xA7D6,
        0xA7D8,
        *range(0x10570, 0x1057B),
        *range(0x1057C, 0x1058B),
        *range(0x1058C, 0x10593),
        0x10594,
        0x10595,
    ]
)
_SPACE_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Co"}
# Unassigned (Cn) in Python 3.11's Unicode 14 tables but letters/marks/digits (resp. format controls) in the
# newer tables of TensorFlow 2.21's RE2: the twin must treat them the same way.
_TF_WORD_CN = (
    (0xCF3, 0xCF3),
    (0xECE, 0xECE),
    (0x10EFD, 0x10EFF),
    (0x1123F, 0x11241),
    (0x11F00, 0x11F10),
    (0x11F12, 0x11F3A),
    (0x11F3E, 0x11F42),
    (0x11F50, 0x11F59),
    (0x1342F, 0x1342F),
    (0x13440, 0x13455),
    (0x1B132, 0x1B132),
    (0x1B155, 0x1B155),
    (0x1D2C0, 0x1D2D3),
    (0x1DF25, 0x1DF2A),
    (0x1E030, 0x1E06D),
    (0x1E08F, 0x1E08F),
    (0x1E4D0, 0x1E4F9),
    (0x2B739, 0x2B739),
    (0x31350, 0x323AF),
)
_TF_SPACE_CN = ((0x13439, 0x1343F),)
# The reverse: letters in the Unicode 15.1 tables of Python 3.13 (CJK Extension I) that TensorFlow 2.21's RE2
# (Unicode 15.0) does not know, so it splits each off as a token of its own. The other 15.1 additions are
# symbols (So), tokens of their own either way.
_TF_UNASSIGNED_LETTERS = ((0x2EBF0, 0x2EE5D),)
_BR = re.compile(BR_PATTERN)
_NO_LOWER = re.compile("([" + "".join(re.escape(chr(c)) for c in sorted(_TF_NO_LOWER)) + "])")


def _lower(text: str) -> str:
    if not any(ord(c) in _TF_NO_LOWER for c in text):
        return text.lower()
    return "".join(
        part if len(part) == 1 and ord(part) in _TF_NO_LOWER else part.lower() for part in _NO_LOWER.split(text)
    )


def _kind(ch: str) -> str:
    """'w' word character, 's' space, 'p' a token of its own."""
    if ch == "\ufffd":
        return "s"
    cat = unicodedata.category(ch)
    if cat in _SPACE_CATEGORIES:
        return "s"
    if cat[0] in "LNM":
        cp = ord(ch)
        return "p" if any(a <= cp <= b for a, b in _TF_UNASSIGNED_LETTERS) else "w"
    if cat == "Cn":
        cp = ord(ch)
        if any(a <= cp <= b for a, b in _TF_WORD_CN):
            return "w"
        if any(a <= cp <= b for a, b in _TF_SPACE_CN):
            return "s"
    return "p"


def standardize(text: str | bytes) -> str:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    text = _BR.sub(" ", text)
    if "\u03a3" in text:  # lower() makes a capital sigma final (ς) by its context, in which the graph has
        text = "".join(" " if _kind(c) == "s" else c for c in text)  # already made spaces of format characters
    text = _lower(text)
    return "".join(c for c in text if c not in APOSTROPHES)


def tokenize(text: str | bytes) -> list[str]:
    """The tokens of one text (all of them: truncation happens in `Tokenizer.encode`)."""
    tokens, word = [], []
    for ch in standardize(text):
        kind = _kind(ch)
        if kind == "w":
            word.append(ch)
            continue
        if word:
            tokens.append("".join(word))
            word = []
        if kind == "p":
            tokens.append(ch)
    if word:
        tokens.append("".join(word))
    return tokens


def read_lines(path) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


class Tokenizer:
    def __init__(self, vocab: list[str], max_len: int, truncate: str = "tail"):
        if vocab[: len(RESERVED)] != RESERVED:
            raise ValueError(f"not a seqapps sentiment vocabulary: the first lines must be {RESERVED}")
        if truncate not in ("head", "tail"):
            raise ValueError(f"truncate must be 'head' or 'tail', got {truncate!r}")
        self.vocab = vocab
        self.index = {t: i for i, t in enumerate(vocab)}
        self.max_len = int(max_len)
        self.truncate = truncate

    @classmethod
    def from_dir(cls, model_dir) -> Tokenizer:
        from seqapps.export import metadata

        assets = Path(model_dir) / "assets"
        spec = metadata.read(assets / "tokenizer.json")
        return cls(read_lines(assets / "vocab.txt"), spec["max_len"], spec["truncate"])

    def ids(self, tokens: list[str]) -> list[int]:
        return [self.index.get(t, UNK_ID) for t in tokens]

    def encode(self, text: str | bytes) -> tuple[list[int], int, bool]:
        """(ids padded with 0 to ``max_len``, number of tokens before truncation, truncated)."""
        tokens = tokenize(text)
        n = len(tokens)
        kept = tokens[: self.max_len] if self.truncate == "head" else tokens[max(0, n - self.max_len) :]
        ids = self.ids(kept)
        return ids + [PAD_ID] * (self.max_len - len(ids)), n, n > self.max_len

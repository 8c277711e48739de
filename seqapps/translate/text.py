"""Text processing shared by training, the SavedModel and devices.

`standardize`/`tokenize` are TensorFlow ops (they run inside the SavedModel); `py_tokenize` is the
same processing in pure Python for devices and the TFLite reference loop (tests keep them equal),
usable where TensorFlow is not installed.

Steps: Unicode composition (NFC) of accented Latin letters, invisible format characters (soft hyphen,
zero-width space, ...) deleted, lower-casing, curly quotes to straight, every character that is not a
letter, digit, apostrophe or space split off as its own token (so ``¿``, ``?``, ``,`` are tokens),
whitespace split.

`detokenize`/`py_detokenize` turn the model's lower-case tokens back into a sentence: a re-casing table
learned from the training targets (`build_truecase`: "tom" -> "Tom", "tv" -> "TV"), a capital at the start of
every sentence, and the spacing of punctuation, quotes, hyphenated words, numbers and amounts (2:30, 3,776,
$77.8) and runs of single letters (a.m., U.S.).
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
# Invisible format characters (soft hyphen, zero-width space and joiners, direction marks, word joiner, byte order
# mark) are deleted, as BERT's tokenizer does: "co\u00adoperate" is "cooperate", not three tokens.
_FORMAT = "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_FORMAT_TF = "[" + re.sub(r"[\u0080-\uffff]", lambda m: f"\\x{{{ord(m.group()):04x}}}", _FORMAT) + "]"
_FORMAT_PY = re.compile(f"[{_FORMAT}]")
FORMAT_CHARACTERS = ", ".join(  # for tokenizer.json: "U+00AD, ..., U+200B to U+200F, ..."
    " to ".join(f"U+{ord(c):04X}" for c in part[::2]) for part in re.findall(".-.|.", _FORMAT)
)
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
    text = tf.strings.regex_replace(text, _FORMAT_TF, "")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, "[\u2018\u2019\u02bc]", "'")
    text = tf.strings.regex_replace(text, _SPLIT_TF, r" \1 ")
    return tf.strings.strip(text)


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [batch] -> ragged tf.string [batch, (tokens)]."""
    return tf.strings.split(standardize(text))


def py_tokenize(text: str, lower: bool = True, keep_format: bool = False) -> list[str]:
    """Pure-Python twin of `tokenize` for one string: it composes the same accented letters (not full NFC,
    which the graph cannot do), and str.split() splits at the spaces the graph makes. ``lower=False`` keeps
    the case (what `build_truecase` counts); ``keep_format=True`` splits format characters off as tokens
    instead of deleting them, as before 2026-11-30 (the key of `data.split_of`)."""
    if any("\u0300" <= ch <= "\u036f" for ch in text):
        for nfd, nfc in _COMPOSE:
            text = text.replace(nfd, nfc)
    text = text.replace("\x00", " ")
    text = text if keep_format else _FORMAT_PY.sub("", text)
    text = text.lower() if lower else text
    text = re.sub("[\u2018\u2019\u02bc]", "'", text)
    return _SPLIT_PY.sub(r" \1 ", text).split()


# Detokenizing. A sentence's capital goes to its first token with a letter or digit (not to a quote, bracket or
# dash), and a sentence starts after every sentence end. A "." ends none after one of these abbreviations
# ("Mr. Smith", "Sra. López"), nor inside a run of single letters ("a.m.", "J. K. Rowling"); it does after a
# single letter alone ("taller than I. She ...").
_ENDING = (".", "?", "!", "…")
_ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "mt", "st", "jr", "sr", "sra", "srta", "dra", "ud", "uds", "vd", "vds", "vs")
# The same rules in both regex dialects: RE2 (the graph) has no look-ahead and an ASCII-only \w and \d, so the
# patterns spell their classes out, and the hyphen and number joins run twice (for "a - b - c", "1, 000, 000").
_JOIN_RULES = (
    (r" ([.?!,;:%)\]»…])", r"\1"),  # no space before closing punctuation
    (r"([¿¡(\[«]) ", r"\1"),  # nor after opening punctuation
    (r'"\s*([^"]*?)\s*"', r'"\1"'),  # straight double quotes, paired from the left: "a" "b"
    (r"(^|\s)i([\s'.?!,;:]|$)", r"\1I\2"),  # English "i" (for a model without a re-casing table)
    (r"(^|\s)([A-Za-z])\. ([A-Za-z])\.", r"\1\2.\3."),  # a.m., U.S.
    (r"([$€£]) ([0-9])", r"\1\2"),  # $300, €30
)
_NUMBERS = (  # 3,776 and 10.000 (a group of three digits), 2:30 (two); not "October 10, 1972" nor "in 1990. 3 years"
    (r"([0-9])([,.]) ([0-9]{3})([^0-9]|$)", r"\1\2\3\4"),
    (r"([0-9]): ([0-9]{2})([^0-9]|$)", r"\1:\2\3"),
    (r"([0-9])\. ([0-9]+%)", r"\1.\2"),  # 1.2%
    (r"([$€£][0-9]+)\. ([0-9])", r"\1.\2"),  # $77.8
)
_JOIN_TWICE_TF = ((r"([\p{L}\p{N}]) - ([\p{L}\p{N}])", r"\1-\2"), *_NUMBERS)
_JOIN_TWICE_PY = ((r"([^\W_]) - ([^\W_])", r"\1-\2"), *_NUMBERS)


def _initial(tokens: tf.Tensor) -> tf.Tensor:
    """Dense string tokens [B, T] ("" padding) -> bool [B, T]: the first token of each sentence that a
    capital letter starts."""
    word = tf.strings.regex_full_match(tokens, r"(?s).*[\p{L}\p{N}].*")
    pad = tf.fill([tf.shape(tokens)[0], 2], "")
    previous = tf.concat([pad[:, :1], tokens], axis=1)[:, :-1]
    before_previous = tf.concat([pad, tokens], axis=1)[:, :-2]
    following = tf.concat([tokens, pad[:, :1]], axis=1)[:, 1:]
    abbreviation = tf.equal(tokens, ".") & (
        tf.reduce_any(
            tf.equal(tf.strings.lower(previous, encoding="utf-8")[..., None], tf.constant(_ABBREVIATIONS)), axis=-1
        )
        | (
            tf.strings.regex_full_match(previous, r"\p{L}")
            & (tf.strings.regex_full_match(following, r"\p{L}") | tf.equal(before_previous, "."))
        )
    )
    ending = tf.reduce_any(tf.equal(tokens[..., None], tf.constant(_ENDING)), axis=-1) & ~abbreviation
    sentence = tf.cumsum(tf.cast(ending, tf.int32), axis=1, exclusive=True)
    same_sentence = tf.equal(sentence[:, :, None], sentence[:, None, :])
    length = tf.shape(tokens)[1]
    earlier = tf.range(length)[None, :] < tf.range(length)[:, None]  # [i, j]: j before i
    seen = tf.reduce_any(same_sentence & earlier[None] & word[:, None, :], axis=-1)
    return word & ~seen


def _py_initial(tokens: list[str]) -> list[bool]:
    def single(t):
        return len(t) == 1 and t.isalpha()

    out, start = [], True
    for i, t in enumerate(tokens):
        if any(c.isalnum() for c in t):
            out.append(start)
            start = False
            continue
        out.append(False)
        previous = tokens[i - 1] if i > 0 else ""
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        abbreviation = t == "." and (
            previous.lower() in _ABBREVIATIONS
            or (single(previous) and (single(following) or (i > 1 and tokens[i - 2] == ".")))
        )
        if t in _ENDING and not abbreviation:
            start = True
    return out


def truecase_table(truecase: dict[str, str]) -> tf.lookup.StaticHashTable:
    """The graph's re-casing table ("" for a token it does not hold)."""
    keys = tf.constant(list(truecase) or [""], tf.string)
    values = tf.constant(list(truecase.values()) or [""], tf.string)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value="")


def detokenize(tokens: tf.Tensor, truecase: tf.lookup.StaticHashTable | None = None) -> tf.Tensor:
    """ragged/dense tf.string tokens [batch, T] (padding "") -> sentence strings [batch].

    Re-cases tokens with ``truecase`` (a `truecase_table`), capitalises the first letter of every sentence, joins
    with spaces and applies the spacing rules of `_JOIN_RULES`."""
    if isinstance(tokens, tf.RaggedTensor):
        tokens = tokens.to_tensor(default_value="")
    if truecase is not None:
        cased = truecase.lookup(tokens)
        tokens = tf.where(tf.equal(cased, ""), tokens, cased)
    length = tf.strings.length(tokens, unit="UTF8_CHAR")
    first = tf.minimum(length, 1)
    head = tf.strings.upper(tf.strings.substr(tokens, tf.zeros_like(first), first, unit="UTF8_CHAR"), encoding="utf-8")
    rest = tf.strings.substr(tokens, first, length, unit="UTF8_CHAR")
    tokens = tf.where(_initial(tokens), tf.strings.join([head, rest]), tokens)
    text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
    text = tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))
    for pattern, replacement in _JOIN_RULES:
        text = tf.strings.regex_replace(text, pattern, replacement)
    for pattern, replacement in _JOIN_TWICE_TF * 2:
        text = tf.strings.regex_replace(text, pattern, replacement)
    return text


def py_detokenize(tokens: list[str], truecase: dict[str, str] | None = None) -> str:
    """Pure-Python twin of `detokenize` for one sentence; ``truecase`` is the dict of `read_truecase`."""
    tokens = [t for t in tokens if t]
    if truecase:
        tokens = [truecase.get(t, t) for t in tokens]
    tokens = [t[:1].upper() + t[1:] if first else t for t, first in zip(tokens, _py_initial(tokens))]
    text = " ".join(tokens)
    for pattern, replacement in _JOIN_RULES:
        text = re.sub(pattern, replacement, text)
    for pattern, replacement in _JOIN_TWICE_PY * 2:
        text = re.sub(pattern, replacement, text)
    return text


def build_truecase(sentences, vocab: list[str]) -> dict[str, str]:
    """Re-casing table from training target ``sentences``: for each lower-case token of ``vocab``, the cased form
    it takes most often where a sentence does not start, when that form is not the lower-case one and is used
    more than half the time ("tom" -> "Tom", "tv" -> "TV"; "may" stays, being a verb more often than a month)."""
    from collections import Counter, defaultdict

    wanted = set(vocab[len(RESERVED) :])
    counts = defaultdict(Counter)
    for sentence in sentences:
        cased = py_tokenize(sentence, lower=False)
        lowered = py_tokenize(sentence)
        if [t.lower() for t in cased] != lowered:  # a letter whose lower case is not one character
            continue
        for token, low, first in zip(cased, lowered, _py_initial(lowered)):
            if not first and low in wanted:
                counts[low][token] += 1
    table = {}
    for low in sorted(counts):
        form, n = min(counts[low].items(), key=lambda kv: (-kv[1], kv[0]))
        if form != low and 2 * n > sum(counts[low].values()):
            table[low] = form
    return table


def read_truecase(path) -> dict[str, str]:
    """``truecase.tsv`` (lower-case token, tab, cased form; one pair a line) -> dict."""
    from pathlib import Path

    table = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or parts[1].lower() != parts[0]:
            raise ValueError(
                f"{path}, line {n}: expected a lower-case token, a tab and its cased form; got {line!r} (delete "
                "the file and export the model again: the export builds it anew from the training data)"
            )
        table[parts[0]] = parts[1]
    return table


def write_truecase(path, truecase: dict[str, str]) -> None:
    from seqapps.export.atomic import atomic_write_text

    atomic_write_text(path, "".join(f"{k}\t{v}\n" for k, v in truecase.items()))


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

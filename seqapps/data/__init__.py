"""Data helpers shared by the apps."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def decode_utf8(raw: bytes, path, hint: str) -> str:
    """Decode ``raw`` (the bytes of ``path``) as UTF-8 (a BOM is dropped), or raise a `ValueError` naming
    the file, the line and the offending byte, followed by ``hint`` (how to fix it)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); {hint}"
        ) from None


# train and evaluate take --data; export, which reads the training data again only for a folder without its run/
# folder (a shipped one), takes --set data= (as train and evaluate do too)
DATA_FIX = "pass another with --data PATH (export: --set data=PATH)"


def argument_text(arg: str) -> str:
    """A command-line argument as text: one that is not UTF-8 reaches Python with surrogate escapes, which
    TensorFlow cannot convert (the whole call failed); its bytes are decoded as a ``--file``'s lines are, an
    invalid one as U+FFFD."""
    return arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def spread(items, n: int) -> list:
    """``n`` of ``items`` evenly spread over them, in their order (all of them when ``n`` is 0 or more than
    there are). A corpus file sorted by length (Tatoeba's is) gives its first ``n`` as its shortest items;
    this gives a sample of the whole range, the same on every run."""
    items = list(items)
    if not n or n >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def same_spec(a, b) -> bool:
    """Whether two data specs name the same data: the same string, or paths to the same file or folder
    (``../shared/data/x`` and its absolute spelling). Evaluate uses it to tell the training data, whose held-out
    split it must score, from other data."""
    if a == b:
        return True
    try:
        return Path(a).exists() and Path(a).resolve() == Path(b).resolve()
    except (TypeError, OSError):
        return False


def text_lines(content: str) -> list[str]:
    """The lines of a text file as editors and ``wc -l`` count them: split at line feeds (a carriage return
    before one is dropped; a file of carriage returns alone is split at those). Unlike `str.splitlines`, a
    U+2028 line separator, a form feed or a vertical tab inside a line (tweets hold them) stays in it. A byte
    order mark at the start of a line is dropped: ``cat a.txt b.txt`` leaves b's in the middle of the file."""
    sep = "\n" if "\n" in content or "\r" not in content else "\r"
    lines = content.split(sep)
    if lines[-1] == "":
        lines.pop()
    return [(line[:-1] if line.endswith("\r") else line).removeprefix("\ufeff") for line in lines]


def not_found(what: str, path, fix: str = DATA_FIX) -> FileNotFoundError:
    """The error for data that is not there (or is a folder where a file belongs, or the reverse): ``what``
    and ``path``, the folder a relative path was looked up from (shipped configs name ``../shared/data/...``,
    which exists beside a checkout only), and ``fix``."""
    path = Path(path)
    # callers raise this when the path is not the kind they read: missing, or a folder/file where the other belongs
    state = "is a folder, not a file" if path.is_dir() else "is a file, not a folder" if path.exists() else "not found"
    return FileNotFoundError(f"{what} {path} {state}{looked_up_from(path)}; {fix}")


def looked_up_from(path: Path) -> str:
    """For a relative path, " (relative to CWD)": where a path that is not there was looked for."""
    return "" if path.is_absolute() else f" (relative to {Path.cwd()})"


def input_name(path) -> str:
    """How messages name a ``--file`` input: its path, or "standard input" for ``-``."""
    return "standard input" if str(path) == "-" else str(path)


def read_input_file(path, one_per_line: str) -> bytes:
    """The bytes of a ``predict --file`` input, which holds one ``one_per_line`` (a review, a sentence) per
    line (``-``: standard input): a clear error when it is missing, a folder, empty or binary (NUL bytes)."""
    if str(path) == "-":
        import sys

        raw = sys.stdin.buffer.read()
    else:
        raw = _read_file(Path(path), one_per_line)
    path = input_name(path)
    if not raw.strip():
        raise ValueError(f"{path} is empty; --file takes a text file with one {one_per_line} per line")
    if raw[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):  # before UTF-16's, which FF FE also starts
        raise ValueError(f"{path} is UTF-32 text; save it as UTF-8 (e.g. iconv -f UTF-32 -t UTF-8)")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ValueError(f"{path} is UTF-16 text; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    if b"\x00" in raw[:4096] and raw.count(b"\x00") > len(raw) // 10:
        raise ValueError(
            f"{path} looks binary (NUL bytes), not text with one {one_per_line} per line; if it is UTF-16 or UTF-32 "
            "text without a byte-order mark, save it as UTF-8"
        )
    return raw


def invalid_utf8_lines(raw: bytes) -> int:
    """How many lines of ``raw`` hold bytes that are not UTF-8 (which a lenient decode replaces by U+FFFD; a
    U+FFFD written in the file is valid UTF-8 and not counted)."""
    count = 0
    sep = b"\n" if b"\n" in raw or b"\r" not in raw else b"\r"  # lines end as `text_lines` ends them
    for line in raw.split(sep):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            count += 1
    return count


def _read_file(path: Path, one_per_line: str) -> bytes:
    if path.is_dir():
        raise ValueError(f"{path} is a folder; --file takes a text file with one {one_per_line} per line")
    if not (path.is_file() or path.is_fifo()):  # a pipe (<(...)) reads like a file; /dev/zero would never end
        fix = f"--file takes a text file with one {one_per_line} per line"
        raise FileNotFoundError(f"{path} not found{looked_up_from(path)}; {fix}")
    return path.read_bytes()

"""Data helpers shared by the apps."""

from __future__ import annotations

from pathlib import Path


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


DATA_FIX = "pass another with --set data=PATH (train) or --data PATH (evaluate)"


def not_found(what: str, path, fix: str = DATA_FIX) -> FileNotFoundError:
    """The error for data that is not there: ``what`` and ``path``, the folder a relative path was looked
    up from (shipped configs name ``../shared/data/...``, which exists beside a checkout only), and ``fix``."""
    path = Path(path)
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    return FileNotFoundError(f"{what} {path} not found{where}; {fix}")

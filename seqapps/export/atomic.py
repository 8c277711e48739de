"""Atomic writes: build in a hidden temporary sibling, then rename into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(final, overwrite: bool = False):
    """Yield a temporary folder that becomes ``final`` only if the block succeeds.

    On any exception the temporary folder is removed and ``final`` is untouched. With
    ``overwrite`` an existing ``final`` is replaced (moved aside first, deleted after the rename; if
    the rename fails, it is moved back). ``final`` is resolved first: through a symbolic link the
    real folder is replaced and the link kept, and ``.`` or ``..`` name their folders.
    """
    final = Path(final).resolve()
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; remove it or choose another output folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
    except PermissionError as exc:
        raise PermissionError(
            f"cannot write {final}: the folder is built beside it, in {final.parent}, and swapped in at the end, so "
            f"that a failure leaves it as it was; that needs write access to {final.parent} ({exc.strerror})"
        ) from exc
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(old)
        tmp.rename(final)
    except BaseException as exc:
        if old is not None and not final.exists():
            old.rename(final)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # e.g. a mount point, which cannot be renamed
            raise OSError(f"cannot replace {final} ({exc.strerror}): give a folder inside it instead") from exc
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_STAGED: dict[Path, Path] = {}  # temporary folder of a staged_dir being built -> the folder it will become


@contextlib.contextmanager
def staged_dir(final, start_empty: bool = False):
    """`atomic_dir` (``final`` replaced) whose temporary folder starts as a copy of ``final``'s files when it
    exists (unless ``start_empty``): what the block writes replaces or joins them, and ``final`` is unchanged
    unless the block succeeds (``seqapps export`` builds a whole export this way). `destination` gives
    ``final`` for the temporary folder meanwhile (for texts such as model cards)."""
    with atomic_dir(final, overwrite=True) as tmp:
        if Path(final).is_dir() and not start_empty:
            shutil.copytree(Path(final).resolve(), tmp, symlinks=True, dirs_exist_ok=True)
        _STAGED[tmp.resolve()] = Path(final)
        try:
            yield tmp
        finally:
            _STAGED.pop(tmp.resolve(), None)


def destination(path) -> Path:
    """The folder ``path`` will become: ``final`` while ``path`` is a `staged_dir` being built, else ``path``."""
    return _STAGED.get(Path(path).resolve(), Path(path))


def atomic_write_bytes(path, data: bytes | memoryview) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

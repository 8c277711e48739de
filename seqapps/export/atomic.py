"""Atomic writes: build in a hidden temporary sibling, then rename into place."""

from __future__ import annotations

import contextlib
import errno
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
    real folder is replaced and the link kept, and ``.`` or ``..`` name their folders. The files are synced to
    disk before the rename, so that a power cut never leaves ``final`` with files whose data had not been written.
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
        _fsync_tree(tmp)  # the files reach the disk before the rename makes them the folder
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
    _fsync_dir(final.parent)
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
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``.

    The bytes go to a temporary file beside ``path``, are flushed to disk (``fsync``), and the file is renamed
    over ``path``; the folder is synced too, so that the rename itself survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_tree(root) -> None:
    """Sync every file and folder under ``root`` to disk (links are not followed). A file the platform will not
    sync through a read-only handle (Windows) is skipped; a failing disk is an error that names the file."""
    for folder, _, files in os.walk(root):
        for name in files:
            file = os.path.join(folder, name)
            if os.path.islink(file):
                continue
            try:
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.EINVAL, errno.EACCES, errno.EPERM):
                    continue
                raise OSError(exc.errno, f"cannot write {file} to disk ({exc.strerror})") from exc
        _fsync_dir(folder)


def _fsync_dir(folder) -> None:
    """Sync a folder's entries (a rename into it) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows, where folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))

"""Atomic file writes: a temporary file in the target folder, fsync, then a rename into place.

A reader never sees a half-written target: until the rename the bytes live in a hidden temporary
file (``.<name>.embkit-tmp-<random>``) beside the target, and the rename is atomic on one file
system. Without ``overwrite`` the rename is a hard link, which fails if the target appeared in the
meantime, so an existing file is never replaced by a race either. Any failure removes the temporary
file; a process killed outright (SIGKILL, power loss) can leave only such a hidden temporary file,
never a partial target.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from typing import Callable, Iterable

from .errors import TargetExistsError, WriteError

TMP_MARK = ".embkit-tmp-"


def temp_name(path: str) -> str:
    """The hidden temporary path used for ``path`` (same folder, so the rename stays atomic)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}{TMP_MARK}{secrets.token_hex(4)}")


def is_temp(name: str) -> bool:
    """True for a temporary file or folder left by an interrupted write."""
    return TMP_MARK in os.path.basename(name)


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_target(path: str, overwrite: bool) -> None:
    """Raise :class:`TargetExistsError` when ``path`` exists and ``overwrite`` is false."""
    if not overwrite and os.path.lexists(path):
        raise TargetExistsError("exists; pass overwrite=True (--overwrite) to replace it", path=path)


def write_bytes(path: str | os.PathLike, chunks: bytes | Iterable[bytes], *, overwrite: bool = False, sync_dir: bool = True) -> None:
    """Write ``chunks`` to ``path`` atomically.

    ``sync_dir=False`` skips the fsync of the folder after the rename (the file's own bytes are
    always fsync'ed before it gets its name); batch writers sync each folder once at the end.
    """
    path = os.fspath(path)
    check_target(path, overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = temp_name(path)
    try:
        _write_tmp(tmp, chunks, path, sync=True)
        _publish(tmp, path, overwrite)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            raise WriteError(f"write failed ({exc.strerror or exc})", path=path) from None
        raise
    if sync_dir:
        fsync_dir(folder)


#: threads writing a batch: fsync waits on the disk, not the CPU, and the file system merges
#: the journal commits of concurrent fsyncs, so a few threads multiply throughput.
BATCH_THREADS = 2


def write_group(group: list[tuple[str, bytes | Iterable[bytes]]], *, overwrite: bool = False) -> None:
    """Write a few files as one all-or-nothing unit (an SDXL pair), each like :func:`write_bytes`
    but leaving the folder's fsync to the caller. On failure nothing of the group is left."""
    for path, _ in group:
        check_target(os.fspath(path), overwrite)
    tmps: list[tuple[str, str]] = []
    done: list[str] = []
    try:
        for path, chunks in group:
            path = os.fspath(path)
            tmps.append((temp_name(path), path))
            _write_tmp(tmps[-1][0], chunks, path, sync=True)
        for tmp, path in tmps:
            _publish(tmp, path, overwrite)
            done.append(path)
    except BaseException as exc:
        for tmp, _ in tmps:
            _remove(tmp)
        if not overwrite:
            for path in done:
                _remove(path)
        if isinstance(exc, OSError):
            raise WriteError(f"write failed ({exc.strerror or exc})", path=tmps[-1][1] if tmps else None) from None
        raise


class BatchWriter:
    """Writes groups of files on a few threads while the caller prepares the next ones.

    ``submit(group)`` returns at once; ``finish()`` waits, fsyncs each folder written to once,
    and returns each submitted group's error (``None`` when it was written)::

        with BatchWriter() as bw:
            for group in groups:
                bw.submit(group)
            errors = bw.finish()
    """

    def __init__(self, *, overwrite: bool = False, threads: int = BATCH_THREADS):
        from concurrent.futures import ThreadPoolExecutor

        self.overwrite = overwrite
        self._pool = ThreadPoolExecutor(threads)
        self._futures: list = []
        self._groups: list = []

    def submit(self, group: list[tuple[str, bytes | Iterable[bytes]]]) -> int:
        """Queue one group; returns its index in :meth:`finish`'s list."""
        self._groups.append(group)
        self._futures.append(self._pool.submit(write_group, group, overwrite=self.overwrite))
        return len(self._futures) - 1

    def finish(self) -> list[BaseException | None]:
        """Wait for every group; fsync the folders; the error of each group or ``None``."""
        errors: list[BaseException | None] = []
        folders = set()
        for fut, group in zip(self._futures, self._groups):
            exc = fut.exception()
            errors.append(exc)
            if exc is None:
                folders.update(os.path.dirname(os.path.abspath(os.fspath(p))) for p, _ in group)
        for folder in folders:
            fsync_dir(folder)
        self._futures, self._groups = [], []
        return errors

    def close(self) -> None:
        """Wait for queued writes and stop the threads."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_many(groups: list[list[tuple[str, bytes | Iterable[bytes]]]], *, overwrite: bool = False) -> list[BaseException | None]:
    """Write many groups of files (see :func:`write_group`) on a few threads, each folder
    fsync'ed once at the end. Returns, per group, ``None`` or the error that stopped it
    (:class:`TargetExistsError`, :class:`WriteError`); the other groups go on."""
    with BatchWriter(overwrite=overwrite) as bw:
        for group in groups:
            bw.submit(group)
        return bw.finish()


def _write_tmp(tmp: str, chunks, path: str, *, sync: bool) -> None:
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    except FileNotFoundError:
        raise WriteError("its folder does not exist", path=path) from None
    except OSError as exc:
        raise WriteError(f"cannot create a file there ({exc.strerror or exc})", path=path) from None
    try:
        try:
            for chunk in [chunks] if isinstance(chunks, (bytes, bytearray, memoryview)) else chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _remove(tmp)
        raise


def write_folder(path: str | os.PathLike, fill: Callable[[str], None], *, overwrite: bool = False) -> None:
    """Create the folder ``path`` atomically: ``fill(tmp_folder)`` writes its files into a hidden
    temporary folder, which is then renamed into place. With ``overwrite`` an existing folder is
    moved aside first and removed only after the new one is in place."""
    path = os.fspath(path).rstrip("/\\") or os.fspath(path)
    check_target(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise WriteError("its folder does not exist", path=path)
    tmp = temp_name(path)
    old = None
    try:
        os.mkdir(tmp)
        fill(tmp)
        for name in os.listdir(tmp):
            _fsync_file(os.path.join(tmp, name))
        fsync_dir(tmp)
        if overwrite and os.path.lexists(path):
            if not os.path.isdir(path) or os.path.islink(path):
                raise WriteError("exists and is not a folder; refusing to replace it with one", path=path)
            old = temp_name(path)
            os.rename(path, old)
        os.rename(tmp, path)  # fails if the target appeared meanwhile: never merged into
    except BaseException as exc:
        _remove(tmp)
        if old is not None and not os.path.lexists(path):
            os.rename(old, path)
            old = None
        if isinstance(exc, OSError):
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise TargetExistsError("exists; pass overwrite=True (--overwrite) to replace it", path=path) from None
            raise WriteError(f"write failed ({exc.strerror or exc})", path=path) from None
        raise
    if old is not None:
        _remove(old)
    fsync_dir(parent)


def _publish(tmp: str, path: str, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and refuses to clobber a file that appeared since the check
    except FileExistsError:
        raise TargetExistsError("exists; pass overwrite=True (--overwrite) to replace it", path=path) from None
    except OSError:
        # file systems without hard links (FAT, some network mounts): check, then rename
        if os.path.lexists(path):
            raise TargetExistsError("exists; pass overwrite=True (--overwrite) to replace it", path=path) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


def _fsync_file(path: str) -> None:
    if os.path.isfile(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass


__all__ = ["write_bytes", "write_group", "write_many", "BatchWriter", "write_folder", "check_target", "fsync_dir", "temp_name", "is_temp"]

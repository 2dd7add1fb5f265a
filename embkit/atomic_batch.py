"""Batches of atomic writes with group commit: many temporaries are written, made durable by one
``syncfs`` of their file system, and only then renamed into place (see :mod:`embkit.atomic` for
the rule both share: a name is only ever given to bytes already on disk)."""

from __future__ import annotations

import os
import sys
from typing import Iterable

from .atomic import _fsync_file, _publish, _remove, _write_tmp, check_target, fsync_dir, temp_name
from .errors import write_error


#: files per group commit: a batch is made durable and published this many files at a time,
#: so a huge batch appears progressively and a crash loses at most one commit's temporaries.
COMMIT_EVERY = 256


def write_group(group: list[tuple[str, bytes | Iterable[bytes]]], *, overwrite: bool = False) -> None:
    """Write a few files as one all-or-nothing unit (an SDXL pair), each like :func:`write_bytes`
    but leaving the folder's fsync to the caller. On failure nothing of the group is left."""
    for path, _ in group:
        check_target(os.fspath(path), overwrite)
    tmps: list[tuple[str, str]] = []
    try:
        for path, chunks in group:
            path = os.fspath(path)
            tmps.append((temp_name(path), path))
            _write_tmp(tmps[-1][0], chunks, path, sync=True)
    except BaseException as exc:
        for tmp, _ in tmps:
            _remove(tmp)
        raise _as_write_error(exc, tmps[-1][1] if tmps else None) from None
    _publish_group(tmps, overwrite)


class BatchWriter:
    """Writes many groups of files (see :func:`write_group`) with one disk flush per commit.

    This is a *group commit*. Each group's bytes go to hidden temporary files in the target
    folder, not fsync'ed one by one; every :data:`COMMIT_EVERY` files (and at :meth:`finish`) the
    pending temporaries are made durable together by one ``syncfs`` of their file system (Linux;
    elsewhere, or on an old kernel, each file is fsync'ed as it is written), and only then is each
    renamed into place (never over an existing file unless ``overwrite``) and each folder
    fsync'ed once. It is exactly as durable as fsync-then-rename per file: no name ever points at
    bytes that are not on disk yet, so a crash at any moment leaves every target complete or
    absent (plus, at worst, one commit's hidden temporaries). ``finish()`` returns each
    submitted group's error (``None`` when it was written)::

        with BatchWriter() as bw:
            for group in groups:
                bw.submit(group)
            errors = bw.finish()
    """

    def __init__(self, *, overwrite: bool = False, commit_every: int = COMMIT_EVERY, folders_by_syncfs: bool = False):
        self.overwrite = overwrite
        self.commit_every = max(1, commit_every)
        #: make the renames durable with one ``syncfs`` per file system instead of an fsync per
        #: folder: for batches spread over many folders (a content-addressed tree touches dozens
        #: per commit, each fsync a disk round trip)
        self.folders_by_syncfs = folders_by_syncfs
        self._errors: list[BaseException | None] = []
        #: written but not yet durable: (index, [(tmp, path), ...])
        self._pending: list[tuple[int, list[tuple[str, str]]]] = []
        self._pending_files = 0
        self._sync_each = _syncfs() is None

    def submit(self, group: list[tuple[str, bytes | Iterable[bytes]]]) -> int:
        """Write one group's temporary files (committing when enough are pending); returns its
        index in :meth:`finish`'s list. Target-exists and write errors are recorded, not raised."""
        index = len(self._errors)
        self._errors.append(None)
        tmps: list[tuple[str, str]] = []
        path = None
        try:
            for path, chunks in group:
                # no existence check here: callers check before preparing the bytes, and
                # publishing refuses an existing target atomically anyway
                path = os.fspath(path)
                tmps.append((temp_name(path), path))
                _write_tmp(tmps[-1][0], chunks, path, sync=self._sync_each)
        except BaseException as exc:
            for tmp, _ in tmps:
                _remove(tmp)
            if not isinstance(exc, Exception):  # KeyboardInterrupt: leave no temporaries
                self.discard()
                raise
            self._errors[index] = _as_write_error(exc, path)
            return index
        self._pending.append((index, tmps))
        self._pending_files += len(tmps)
        if self._pending_files >= self.commit_every:
            self.commit()
        return index

    def commit(self) -> None:
        """Make the pending temporaries durable, then give them their names; fsync each folder."""
        pending, self._pending, self._pending_files = self._pending, [], 0
        if not pending:
            return
        try:
            failed = {} if self._sync_each else _flush([t for _, tmps in pending for t in tmps])
            folders: set[str] = set()
            for index, tmps in pending:
                bad = next((failed[tmp] for tmp, _ in tmps if tmp in failed), None)
                if bad is not None:
                    for tmp, _ in tmps:
                        _remove(tmp)
                    self._errors[index] = bad
                    continue
                try:
                    _publish_group(tmps, self.overwrite)
                except Exception as exc:
                    self._errors[index] = exc
                    continue
                folders.update(os.path.dirname(path) or "." for _, path in tmps)
            if self.folders_by_syncfs:
                _sync_folders(folders)
            else:
                for folder in folders:
                    fsync_dir(folder)
        except BaseException:
            for _, tmps in pending:
                for tmp, _ in tmps:
                    _remove(tmp)
            raise

    def discard(self) -> None:
        """Remove the pending temporaries without publishing them."""
        for _, tmps in self._pending:
            for tmp, _ in tmps:
                _remove(tmp)
        self._pending, self._pending_files = [], 0

    def finish(self) -> list[BaseException | None]:
        """Commit what is pending; the error of each group submitted since the last finish, or ``None``."""
        self.commit()
        errors, self._errors = self._errors, []
        return errors

    def close(self) -> None:
        """Commit what is pending."""
        self.commit()

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.discard()


def write_many(groups: list[list[tuple[str, bytes | Iterable[bytes]]]], *, overwrite: bool = False) -> list[BaseException | None]:
    """Write many groups of files (see :func:`write_group`) by group commit (see
    :class:`BatchWriter`). Returns, per group, ``None`` or the error that stopped it
    (:class:`TargetExistsError`, :class:`WriteError`); the other groups go on."""
    with BatchWriter(overwrite=overwrite) as bw:
        for group in groups:
            bw.submit(group)
        return bw.finish()


def _as_write_error(exc: BaseException, path: str | None) -> BaseException:
    if isinstance(exc, OSError):
        return write_error(exc, path)
    return exc


def _publish_group(tmps: list[tuple[str, str]], overwrite: bool) -> None:
    """Rename each durable temporary into place; all or nothing (a pair)."""
    done: list[str] = []
    try:
        for tmp, path in tmps:
            _publish(tmp, path, overwrite)
            done.append(path)
    except BaseException as exc:
        for tmp, _ in tmps:
            _remove(tmp)
        if not overwrite:
            for path in done:
                _remove(path)
        raise _as_write_error(exc, tmps[len(done)][1]) from None


_SYNCFS: list = []


def _syncfs():
    """libc's ``syncfs`` where it reports write-back errors (Linux 5.8+), else None."""
    if not _SYNCFS:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                major, minor = (int(x) for x in os.uname().release.split(".")[:2])
            except ValueError:
                major, minor = 0, 0
            if (major, minor) >= (5, 8):  # before 5.8 syncfs returned 0 even when write-back failed
                try:
                    import ctypes

                    fn = ctypes.CDLL(None, use_errno=True).syncfs
                    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
                except (OSError, AttributeError):
                    fn = None
        _SYNCFS.append(fn)
    return _SYNCFS[0]


def _sync_folders(folders: set[str]) -> None:
    """Make renames in ``folders`` durable: one ``syncfs`` per file system (it commits the
    directory entries too), else an fsync per folder."""
    synced: dict[int, bool] = {}
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            dev = os.fstat(fd).st_dev
            if dev not in synced:
                fn = _syncfs()
                synced[dev] = fn is not None and fn(fd) == 0
            if not synced[dev]:
                os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _flush(tmps: list[tuple[str, str]]) -> dict[str, BaseException]:
    """Make the (closed) temporaries durable: one ``syncfs`` per file system they are on. If a
    ``syncfs`` fails, each of its files is fsync'ed on its own, to find which did not make it.
    Returns the error of each temporary that is not on disk."""
    failed: dict[str, BaseException] = {}
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for tmp, path in tmps:
        by_folder.setdefault(os.path.dirname(tmp) or ".", []).append((tmp, path))
    synced: dict[int, bool] = {}  # st_dev -> syncfs succeeded
    for folder, files in by_folder.items():
        ok = False
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            fd = None
        if fd is not None:
            try:
                dev = os.fstat(fd).st_dev
                if dev not in synced:
                    synced[dev] = _syncfs()(fd) == 0
                ok = synced[dev]
            finally:
                os.close(fd)
        if not ok:
            for tmp, path in files:
                try:
                    _fsync_file(tmp, write=True)
                except OSError as exc:
                    failed[tmp] = write_error(exc, path)
    return failed


__all__ = ["write_group", "write_many", "BatchWriter", "COMMIT_EVERY"]

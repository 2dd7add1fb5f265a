"""Atomic file writes: a temporary file in the target folder, fsync, then a rename into place.

A reader never sees a half-written target: until the rename the bytes live in a hidden temporary
file (``.<name>.embkit-tmp-<random>``) beside the target, and the rename is atomic on one file
system. Without ``overwrite`` the rename is a hard link, which fails if the target appeared in the
meantime, so an existing file is never replaced by a race either. Any failure removes the temporary
file; a process killed outright (SIGKILL, power loss) can leave only such a hidden temporary file,
never a partial target.

Single files (:func:`write_bytes`) are fsync'ed, renamed, and their folder fsync'ed. Batches
(:class:`BatchWriter`, :func:`write_many`) use group commit: many temporaries are written, made
durable by one ``syncfs`` of their file system, and only then renamed into place. The rule that
makes both durable is the same: a name is only ever given to bytes already on disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from typing import Callable, Iterable

from .errors import TargetExistsError, WriteError

TMP_MARK = ".embkit-tmp-"
_WRITEV = hasattr(os, "writev")


class _Token:
    """A random per-process prefix and a counter for temporary names (no syscall per name; a
    forked child draws its own prefix, so two processes never pick the same name)."""

    prefix = ""
    count = 0

    @classmethod
    def next(cls) -> str:
        if not cls.prefix:
            cls.prefix = os.urandom(4).hex()
        cls.count += 1
        return f"{cls.prefix}{cls.count:x}"

    @classmethod
    def reset(cls) -> None:
        cls.prefix, cls.count = "", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Token.reset)


def temp_name(path: str) -> str:
    """The hidden temporary path used for ``path`` (same folder, so the rename stays atomic)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{TMP_MARK}{_Token.next()}")


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

    def __init__(self, *, overwrite: bool = False, commit_every: int = COMMIT_EVERY):
        self.overwrite = overwrite
        self.commit_every = max(1, commit_every)
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
        return WriteError(f"write failed ({exc.strerror or exc})", path=path)
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
                    failed[tmp] = WriteError(f"write failed ({exc.strerror or exc})", path=path)
    return failed


def _write_tmp(tmp: str, chunks, path: str, *, sync: bool) -> None:
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    except FileNotFoundError:
        raise WriteError("its folder does not exist", path=path) from None
    except OSError as exc:
        raise WriteError(f"cannot create a file there ({exc.strerror or exc})", path=path) from None
    try:
        try:
            chunks = [chunks] if isinstance(chunks, (bytes, bytearray, memoryview)) else list(chunks)
            done = os.writev(fd, chunks) if _WRITEV and 1 < len(chunks) <= 64 else 0  # one syscall
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                if done >= len(view):
                    done -= len(view)
                    continue
                view, done = view[done:], 0
                while view:
                    view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _remove(tmp)
        raise


def check_folder(path: str | os.PathLike) -> None:
    """Raise :class:`WriteError` ("its folder does not exist") unless the folder that would hold
    ``path`` exists: writers never create it. For callers that check before slow work."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(os.fspath(path)))):
        raise WriteError("its folder does not exist", path=os.fspath(path))


def _check_replaceable_folder(path: str) -> None:
    # overwrite replaces a concept folder, never a folder of the user's: one holding anything but
    # a concept folder's own files (an embeddings folder written "into" by mistake) is refused
    from .formats.concept_folder import EMBED_FILES, TOKEN_FILE, TYPE_FILE

    own = set(EMBED_FILES) | {TOKEN_FILE, TYPE_FILE}
    try:
        others = [name for name in os.listdir(path) if name not in own]
    except OSError as exc:
        raise WriteError(f"cannot look into the existing folder ({exc.strerror or exc})", path=path) from None
    if others:
        raise TargetExistsError(
            f"is a folder holding other files ({', '.join(sorted(others)[:3])}{', …' if len(others) > 3 else ''}); "
            "overwrite replaces only a concept folder's own files",
            path=path,
        )


def write_folder(path: str | os.PathLike, fill: Callable[[str], None], *, overwrite: bool = False) -> None:
    """Create the folder ``path`` atomically: ``fill(tmp_folder)`` writes its files into a hidden
    temporary folder, which is then renamed into place. With ``overwrite`` an existing concept folder
    (nothing in it but a concept folder's own files) is moved aside first and removed only after
    the new one is in place; any other folder is refused."""
    path = os.fspath(path).rstrip("/\\") or os.fspath(path)
    check_target(path, overwrite)
    check_folder(path)
    if overwrite and os.path.isdir(path):
        _check_replaceable_folder(path)
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
    fsync_dir(os.path.dirname(os.path.abspath(path)))


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


def _fsync_file(path: str, *, write: bool = False) -> None:
    if write or os.path.isfile(path):
        fd = os.open(path, os.O_RDWR if write else os.O_RDONLY)
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


__all__ = ["write_bytes", "write_group", "write_many", "BatchWriter", "COMMIT_EVERY", "write_folder", "check_target", "fsync_dir", "temp_name", "is_temp"]

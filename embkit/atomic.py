"""Atomic file writes: a temporary file in the target folder, fsync, then a rename into place.

A reader never sees a half-written target: until the rename the bytes live in a hidden temporary
file (``.<name>.embkit-tmp-<random>``) beside the target, and the rename is atomic on one file
system. Without ``overwrite`` the rename is a hard link, which fails if the target appeared in the
meantime, so an existing file is never replaced by a race either. Any failure removes the temporary
file; a process killed outright (SIGKILL, power loss) can leave only such a hidden temporary file,
never a partial target.

Single files (:func:`write_bytes`) are fsync'ed, renamed, and their folder fsync'ed. Batches
(:mod:`embkit.atomic_batch`) use group commit: many temporaries are written, made durable by one
``syncfs`` of their file system, and only then renamed into place. The rule that makes both
durable is the same: a name is only ever given to bytes already on disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from typing import Callable, Iterable

from .errors import TargetExistsError, WriteError, write_error

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
            raise write_error(exc, path) from None
        raise
    if sync_dir:
        fsync_dir(folder)




def _write_tmp(tmp: str, chunks, path: str, *, sync: bool) -> None:
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    except FileNotFoundError:
        raise WriteError("its folder does not exist", path=path) from None
    except OSError as exc:
        raise write_error(exc, path, "cannot create a file there") from None
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


def _check_replaceable_folder(path: str, owns: Iterable[str]) -> None:
    # overwrite replaces a folder the writer owns (a concept folder), never a folder of the user's:
    # one holding anything but the files the writer says it owns (an embeddings folder written
    # "into" by mistake) is refused
    own = {n for n in owns if not n.endswith("/")}
    own_folders = {n.rstrip("/") for n in owns if n.endswith("/")}
    try:
        # an owned name counts only as a file (or a link, which removal unlinks, never follows):
        # a user's folder that happens to be named learned_embeds.bin is not ours to delete (found
        # in review: --overwrite emptied it); a name owned as a folder ("thumbs/") only as a real
        # folder holding nothing but files
        others = [name for name in os.listdir(path)
                  if not (name in own and _file_or_link(os.path.join(path, name))) and not (name in own_folders and _flat_folder(os.path.join(path, name)))]
    except OSError as exc:
        raise WriteError(f"cannot look into the existing folder ({exc.strerror or exc})", path=path) from None
    if others:
        odd = [n for n in others if n in own]  # an owned name that is a folder (or a pipe, a device)
        what = f" ({', '.join(sorted(odd))} {'is not a file' if len(odd) == 1 else 'are not files'})" if odd else ""
        odd_folders = [n for n in others if n in own_folders]
        what += f" ({', '.join(sorted(odd_folders))}: not a folder of files only)" if odd_folders else ""
        raise TargetExistsError(
            f"is a folder holding other files ({', '.join(sorted(others)[:3])}{', …' if len(others) > 3 else ''}){what}; "
            f"overwrite replaces only a folder holding nothing but {', '.join(sorted(own | {f + '/' for f in own_folders})) or 'nothing'}",
            path=path,
        )


def _file_or_link(path: str) -> bool:
    mode = os.lstat(path).st_mode
    return stat.S_ISREG(mode) or stat.S_ISLNK(mode)


def _flat_folder(path: str) -> bool:
    """A real folder (not a link) holding nothing but files and links."""
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    return all(_file_or_link(os.path.join(path, n)) for n in os.listdir(path))


def write_folder(path: str | os.PathLike, fill: Callable[[str], None], *, owns: Iterable[str] = (), overwrite: bool = False) -> None:
    """Create the folder ``path`` atomically: ``fill(tmp_folder)`` writes its files into a hidden
    temporary folder, which is then renamed into place. With ``overwrite`` an existing folder
    holding nothing but files named in ``owns`` (a concept folder's own files, say; a name ending
    in ``/`` owns a folder of files, a gallery's ``thumbs/``) is moved aside first and removed only
    after the new one is in place; any other folder is refused."""
    path = os.fspath(path).rstrip("/\\") or os.fspath(path)
    check_target(path, overwrite)
    check_folder(path)
    if overwrite and os.path.isdir(path):
        _check_replaceable_folder(path, owns)
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
            raise write_error(exc, path) from None
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


__all__ = ["write_bytes", "write_folder", "check_target", "check_folder", "fsync_dir", "temp_name", "is_temp"]

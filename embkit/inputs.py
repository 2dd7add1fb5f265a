"""What ``embkit.read`` accepts besides a path: the file's bytes or a binary file object.

Kept apart from :mod:`embkit.io` (which opens them) so that the rules are in one short place: the
name an in-memory file is known by, and how a file object is drained (to its end, with a cap, since
a file object may be a pipe that never ends).
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Sequence, Union

from .errors import BrokenFileError, TooLargeError

#: What :func:`embkit.read`, :func:`embkit.read_all` and :func:`embkit.probe` accept: a path, the
#: file's bytes, a binary file object, or the two files of a diffusers SDXL pair given together.
FileSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, Sequence[Any]]
#: The name an embedding read from bytes or a file object is known by when none is given.
IN_MEMORY_NAME = "<bytes>"


def label(data: Any, name: str | None) -> str:
    """The name in-memory ``data`` is known by: ``name``, else a file object's own file name, else
    :data:`IN_MEMORY_NAME`. It names the file in errors and triggers file-stem layouts; nothing
    is ever looked up on disk under it."""
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise TypeError("name= must be a non-empty file name")
        return name
    own = getattr(data, "name", None)
    return os.path.basename(own) if isinstance(own, str) and own.strip() else IN_MEMORY_NAME


def bytes_of(data: Any, what: str, cap: int) -> bytes:
    """The bytes of ``data``: bytes-like as given, a binary file object read from where it stands
    to its end, at most ``cap`` bytes (:class:`~embkit.errors.TooLargeError` past it)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        out = bytes(data)
    else:
        chunks, total = [], 0
        while True:
            chunk = data.read(1 << 20)
            if isinstance(chunk, str):
                raise TypeError(f"{what}: the file object gives text; open it in binary mode ('rb')")
            if not chunk:
                break
            total += len(chunk)
            if total > cap:
                raise TooLargeError(f"file object gives more than {cap} bytes; pass a path for larger files", path=what)
            chunks.append(bytes(chunk))
        out = b"".join(chunks)
    if not out:
        raise BrokenFileError("file is empty (0 bytes)", path=what)
    return out

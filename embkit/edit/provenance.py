"""Provenance records: what an operation's inputs were (name, source file, SHA-256, a hash of the
vectors, their own history). :mod:`embkit.ops` and :mod:`embkit.port` put these records into
``metadata["provenance"]`` through :meth:`embkit.schema.Embedding.with_provenance`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ..schema import Embedding

_FILE_SHA: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: str) -> str | None:
    """SHA-256 of a source file (cached by path, size and mtime); None when it is not a file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _FILE_SHA[key] = h.hexdigest()
    return _FILE_SHA[key]


def vectors_sha256(emb: Embedding) -> str:
    """A hash of an embedding's vectors (slot names, shapes, stored dtypes and values as float32);
    identifies an input even when it was never a file."""
    h = hashlib.sha256()
    for slot, arr in emb.vectors.items():
        h.update(f"{slot}:{arr.shape[0]}x{arr.shape[1]}:{emb.dtypes[slot]};".encode())
        h.update(np.ascontiguousarray(arr, dtype="<f4").tobytes())
    return h.hexdigest()


def describe(emb: Embedding, *, history: bool = True) -> dict[str, Any]:
    """The provenance record of one input: name, file path/format/SHA-256 when it was read from a
    file, vectors hash, and (``history``) the input's own provenance."""
    rec: dict[str, Any] = {"name": emb.name}
    if emb.source is not None:
        rec["path"] = os.path.basename(emb.source.path)
        rec["format"] = emb.source.format
        if emb.source.member:
            rec["member"] = emb.source.member
        sha = _file_sha256(emb.source.path)
        if sha:
            rec["sha256"] = sha
    rec["vectors_sha256"] = vectors_sha256(emb)
    if history and emb.provenance:
        rec["provenance"] = emb.provenance
    return rec


__all__ = ["describe", "vectors_sha256"]

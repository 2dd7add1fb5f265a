"""Reading a model's safetensors files without loading them: the header, and the row norms of one
matrix read in chunks (the token-embedding table of a text encoder, for validation's norm bands)."""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from ..errors import TargetError

#: Caps for reading checkpoint headers (the safetensors library's own header limit).
MAX_HEADER_BYTES = 100 * 1024 * 1024
#: The largest token matrix read for norms (T5-XXL's is 32128 x 4096 = 132M elements).
MAX_MATRIX_ELEMENTS = 256 * 1024 * 1024
_ST_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}


def read_st_header(path: str) -> tuple[dict[str, Any], dict[str, str], int, int]:
    """A safetensors file's header without reading tensor data: (entries, ``__metadata__``, data
    start, file size). Entries whose offsets fall outside the file raise :class:`TargetError`."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise TargetError("file is too short to be safetensors", path=path)
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise TargetError(f"safetensors header claims {n} bytes; the file has {size}", path=path)
            raw = fh.read(n)
    except OSError as exc:
        raise TargetError(f"cannot read ({exc.strerror or exc})", path=path) from None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TargetError(f"safetensors header is not valid JSON ({exc})", path=path) from None
    if not isinstance(header, dict):
        raise TargetError("safetensors header is not a JSON object", path=path)
    meta = header.pop("__metadata__", None) or {}
    start = 8 + n
    for name, entry in header.items():
        offs = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs) and 0 <= offs[0] <= offs[1] <= size - start):
            raise TargetError(f"tensor {name!r} has data offsets outside the file", path=path)
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise TargetError(f"tensor {name!r} has a bad shape", path=path)
    return header, meta if isinstance(meta, dict) else {}, start, size


def matrix_norms(path: str, entry: dict, start: int, chunk_rows: int = 4096) -> np.ndarray:
    """Row L2 norms of one 2-D tensor of a safetensors file, read in chunks (only its bytes)."""
    dtype = _ST_DTYPES.get(entry.get("dtype"))
    shape = entry["shape"]
    if dtype is None or len(shape) != 2:
        raise TargetError(f"token-embedding tensor has dtype {entry.get('dtype')} and shape {shape}; expected a 2-D float", path=path)
    rows, width = shape
    if rows * width > MAX_MATRIX_ELEMENTS:
        raise TargetError(f"token-embedding tensor of shape {shape} is past the cap of {MAX_MATRIX_ELEMENTS} elements", path=path)
    lo, hi = entry["data_offsets"]
    if rows * width * dtype.itemsize != hi - lo:
        raise TargetError(f"token-embedding tensor of shape {shape} does not fill its {hi - lo} bytes", path=path)
    out = np.empty(rows, dtype=np.float64)
    with open(path, "rb") as fh:
        fh.seek(start + lo)
        for first in range(0, rows, chunk_rows):
            count = min(chunk_rows, rows - first)
            buf = fh.read(count * width * dtype.itemsize)
            block = np.frombuffer(buf, dtype=dtype).reshape(count, width)
            if entry["dtype"] == "BF16":
                block = (block.astype(np.uint32) << 16).view(np.float32)
            out[first : first + count] = np.linalg.norm(block.astype(np.float64), axis=1)
    return out

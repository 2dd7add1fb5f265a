"""safetensors container: an 8-byte header length, a JSON header, raw little-endian data.

The header is parsed here, with caps applied before anything is allocated, so that probing reads only
the header and bf16 can be widened by hand (numpy has no bf16). Tensor bytes are sliced straight out
of the file buffer. :func:`dumps` writes the same format by hand (it is a page of spec) so that
bf16 can be stored without torch; tests load its output with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from ..errors import BrokenFileError, NotMine, TooLargeError
from .base import MAX_TENSOR_ELEMENTS, NUMPY_DTYPES, Raw, Tensor, check_json_size

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
#: safetensors dtype code → stored dtype name.
ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
ST_CODES = {v: k for k, v in ST_DTYPES.items()}


def accepts(prefix: bytes) -> bool:
    """An 8-byte little-endian length followed by ``{`` (the JSON header)."""
    if len(prefix) < 9:
        return False
    (n,) = struct.unpack_from("<Q", prefix, 0)
    return prefix[8:9] == b"{" and 2 <= n


def read_header(data: bytes | memoryview, path: str) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse and check the header: (tensor entries, ``__metadata__``, offset where data starts)."""
    if len(data) < 8:
        raise BrokenFileError("file is too short to be safetensors", path=path)
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > MAX_HEADER_BYTES:
        raise TooLargeError(f"safetensors header claims {n} bytes, past the cap of {MAX_HEADER_BYTES}", path=path)
    if 8 + n > len(data):
        raise BrokenFileError(f"safetensors header claims {n} bytes but the file has {len(data) - 8} after the length", path=path)
    raw = bytes(data[8 : 8 + n])
    check_json_size(raw, path, "safetensors header")
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BrokenFileError(f"safetensors header is not valid JSON ({exc})", path=path) from None
    except RecursionError:
        raise BrokenFileError("safetensors header JSON nests too deeply", path=path) from None
    if not isinstance(header, dict):
        raise BrokenFileError("safetensors header is not a JSON object", path=path)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise BrokenFileError("safetensors __metadata__ must map strings to strings", path=path)
    start = 8 + n
    size = len(data) - start
    for name, entry in header.items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            raise BrokenFileError(f"safetensors entry {name!r} lacks dtype, shape or data_offsets", path=path)
        shape, offs = entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise BrokenFileError(f"tensor {name!r} has a bad shape {shape!r:.60}", path=path)
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs) and 0 <= offs[0] <= offs[1] <= size):
            raise BrokenFileError(f"tensor {name!r} has data offsets {offs!r:.60} outside the file", path=path)
        numel = 1
        for d in shape:
            numel *= d
        if numel > MAX_TENSOR_ELEMENTS:
            raise TooLargeError(f"tensor {name!r} of shape {shape} is past the cap of {MAX_TENSOR_ELEMENTS} elements", path=path)
        dtype = ST_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None  # a list would not hash
        if dtype is not None and numel * NUMPY_DTYPES[dtype].itemsize != offs[1] - offs[0]:
            raise BrokenFileError(
                f"tensor {name!r}: shape {shape} of {entry['dtype']} needs {numel * NUMPY_DTYPES[dtype].itemsize} bytes, "
                f"its offsets give {offs[1] - offs[0]}",
                path=path,
            )
    # the format forbids overlapping tensors; allowing them let a 1 MB file read as 400 MB of tensors
    spans = sorted((entry["data_offsets"][0], entry["data_offsets"][1], name) for name, entry in header.items())
    for (_lo1, hi1, first), (lo2, _hi2, second) in zip(spans, spans[1:]):
        if lo2 < hi1:
            raise BrokenFileError(f"tensors {first!r} and {second!r} share bytes (their data offsets overlap)", path=path)
    return header, meta, start


def read_raw(data: bytes | memoryview, path: str) -> Raw:
    """Read a safetensors file into a flat :class:`Raw` tree of lazy tensors."""
    if not accepts(bytes(data[:9])):
        raise NotMine(path)
    header, meta, start = read_header(data, path)
    tree: dict[str, Any] = {}
    for name, entry in header.items():
        dtype = ST_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            # kept as an opaque tensor so layouts can say which key has the odd dtype
            tree[name] = Tensor(shape=tuple(entry["shape"]), dtype=str(entry["dtype"]).lower(), loader=_refuse(name, entry["dtype"], path))
            continue
        lo, hi = entry["data_offsets"]
        tree[name] = Tensor(shape=tuple(entry["shape"]), dtype=dtype, loader=_slicer(data, start + lo, start + hi, dtype))
    return Raw(tree=tree, container="safetensors", metadata=dict(meta))


def _slicer(data, lo: int, hi: int, dtype: str):
    def load() -> np.ndarray:
        return np.frombuffer(bytes(data[lo:hi]), dtype=NUMPY_DTYPES[dtype])

    return load


def _refuse(name: str, code: str, path: str):
    def load() -> np.ndarray:
        raise BrokenFileError(f"tensor {name!r} has dtype {code}, which embkit cannot read", path=path)

    return load


def data_offset(data: bytes | memoryview) -> int:
    """Where tensor data starts (``8 + header length``): AutoV3 hashes from here to the end."""
    (n,) = struct.unpack_from("<Q", data, 0)
    return 8 + n


def dumps(tensors: dict[str, tuple[str, np.ndarray]], metadata: dict[str, str] | None = None) -> list[bytes]:
    """A safetensors file as a list of byte chunks: ``tensors`` maps a key to (dtype name, array
    of the stored bytes: bf16 as uint16 bit patterns). Tensors are laid out like the safetensors
    library does (by alignment, then name), the header is padded with spaces to 8 bytes."""
    order = sorted(tensors, key=lambda k: (-NUMPY_DTYPES[tensors[k][0]].itemsize, k))
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks: list[bytes] = []
    offset = 0
    for key in order:
        dtype, arr = tensors[key]
        buf = np.ascontiguousarray(arr, dtype=NUMPY_DTYPES[dtype]).tobytes()
        header[key] = {"dtype": ST_CODES[dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(buf)]}
        chunks.append(buf)
        offset += len(buf)
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return [struct.pack("<Q", len(text)) + text, *chunks]

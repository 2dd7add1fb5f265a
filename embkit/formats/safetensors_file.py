"""safetensors container: an 8-byte header length, a JSON header, raw little-endian data.

The header is parsed here, with caps applied before anything is allocated, so that probing reads only
the header and bf16 can be widened by hand (numpy has no bf16). Tensor bytes are sliced straight out
of the file buffer. :func:`dumps` writes the same format by hand (it is a page of spec) so that
bf16 can be stored without torch; tests load its output with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import numpy as np

from ..errors import BrokenFileError, NotMine
from .base import MAX_TENSOR_ELEMENTS, NUMPY_DTYPES, Raw, Tensor, check_json_size
from .rules import too_large

#: The safetensors library's own limit (``MAX_HEADER_SIZE``: 100,000,000 bytes, decimal).
MAX_HEADER_BYTES = 100_000_000
#: safetensors dtype code → stored dtype name (the dtypes embkit reads).
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
#: Every dtype the safetensors library knows, with its size in bits (``Dtype::bitsize``); a file
#: naming another is invalid, one naming a dtype embkit cannot read is valid but refused on load.
ST_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
    "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
_USIZE = 2**64 - 1
#: serde_json's nesting limit (the safetensors library parses the header with it)
_MAX_DEPTH = 128
_JSON_SPACE = b" \t\n\r"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def accepts(prefix: bytes) -> bool:
    """An 8-byte little-endian length followed by the JSON header's ``{`` (JSON whitespace may
    come first, as the safetensors library allows)."""
    if len(prefix) < 9:
        return False
    (n,) = struct.unpack_from("<Q", prefix, 0)
    body = prefix[8:].lstrip(_JSON_SPACE)
    return body[:1] == b"{" and 2 <= n


class _Pairs(list):
    """A JSON object as its list of ``(key, value)`` pairs: duplicates stay visible."""


def _int_or_float(text: str) -> int | float:
    value = int(text)
    return -0.0 if value == 0 and text.startswith("-") else value  # serde_json reads "-0" as a float


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def _bad(message: str, path: str) -> BrokenFileError:
    return BrokenFileError(f"not a valid safetensors file: {message} (the safetensors library refuses it)", path=path)


def _usize(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _USIZE


def _depth_and_surrogates(doc: Any) -> tuple[int, bool]:
    """Nesting depth of the parsed header, and whether any string holds a lone surrogate."""
    deepest, lone = 0, False
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list):  # an object (_Pairs) or an array
            deepest = max(deepest, depth)
            for item in node:
                if isinstance(node, _Pairs):
                    key, item = item
                    lone = lone or any(0xD800 <= ord(c) <= 0xDFFF for c in key)
                stack.append((item, depth + 1))
        elif isinstance(node, str):
            lone = lone or any(0xD800 <= ord(c) <= 0xDFFF for c in node)
    return deepest, lone


def read_header(data: bytes | memoryview, path: str) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse and check the header exactly as the safetensors library does (its rules in
    docs/safety.md; embkit's caps come first): (tensor entries, ``__metadata__``, offset where the
    data starts). Every rule the library applies refuses the file here too, as broken-file."""
    if len(data) < 8:
        raise _bad("header too small (under 8 bytes)", path)
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > MAX_HEADER_BYTES:
        raise too_large(f"safetensors header claims {n} bytes, past the cap of {MAX_HEADER_BYTES}", path)
    if 8 + n > len(data):
        raise _bad(f"invalid header length: it claims {n} bytes but the file has {len(data) - 8} after the length", path)
    raw = bytes(data[8 : 8 + n])
    check_json_size(raw, path, "safetensors header")
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_Pairs, parse_int=_int_or_float, parse_float=_finite, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise _bad(f"invalid UTF-8 in header ({exc})", path) from None
    except ValueError as exc:
        raise _bad(f"invalid JSON in header ({exc})", path) from None
    except RecursionError:
        raise _bad("header JSON nests too deeply", path) from None
    if not isinstance(doc, _Pairs):
        raise _bad("header is not a JSON object", path)
    # the walk is needed only when the text could nest past the limit or escapes a surrogate
    suspect = raw.count(b"[") + raw.count(b"{") > _MAX_DEPTH or _SURROGATE_ESCAPE.search(raw) is not None
    depth, lone = _depth_and_surrogates(doc) if suspect else (0, False)
    if depth > _MAX_DEPTH or lone:
        raise _bad("header JSON nests past 128 levels" if depth > _MAX_DEPTH else "header JSON holds a lone surrogate escape", path)
    meta: dict[str, str] | None = None
    header: dict[str, Any] = {}
    seen_meta = False
    for name, entry in doc:
        if name == "__metadata__":
            if seen_meta:
                raise _bad("duplicate field __metadata__", path)
            seen_meta = True
            if entry is not None and (not isinstance(entry, _Pairs) or not all(isinstance(v, str) for _k, v in entry)):
                raise _bad("__metadata__ must map strings to strings", path)
            meta = dict(entry) if entry is not None else None
            continue
        header[name] = _tensor_info(name, entry, path)  # a repeated name: the last one wins, as in the library
    _check_offsets(header, n, len(data), path)
    for name, entry in header.items():
        numel = 1
        for d in entry["shape"]:
            numel *= d
        if numel > MAX_TENSOR_ELEMENTS:
            raise too_large(f"tensor {name!r} of shape {entry['shape']} is past the cap of {MAX_TENSOR_ELEMENTS} elements", path)
    return header, meta or {}, 8 + n


def _tensor_info(name: str, entry: Any, path: str) -> dict[str, Any]:
    """One tensor entry checked as serde reads a ``TensorInfo`` (extra fields ignored)."""
    if not isinstance(entry, _Pairs):
        raise _bad(f"entry {name!r} is not a tensor description", path)
    fields: dict[str, Any] = {}
    for key, value in entry:
        if key in ("dtype", "shape", "data_offsets"):
            if key in fields:
                raise _bad(f"entry {name!r} repeats the field {key}", path)
            fields[key] = value
    missing = {"dtype", "shape", "data_offsets"} - fields.keys()
    if missing:
        raise _bad(f"entry {name!r} lacks {', '.join(sorted(missing))}", path)
    dtype, shape, offs = fields["dtype"], fields["shape"], fields["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ST_BITS:
        raise _bad(f"tensor {name!r} has an unknown dtype {dtype!r:.40}", path)
    if not isinstance(shape, list) or isinstance(shape, _Pairs) or not all(_usize(d) for d in shape):
        raise _bad(f"tensor {name!r} has a bad shape {shape!r:.60}", path)
    if not isinstance(offs, list) or isinstance(offs, _Pairs) or len(offs) != 2 or not all(_usize(o) for o in offs):
        raise _bad(f"tensor {name!r} has bad data offsets {offs!r:.60}", path)
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


def _check_offsets(header: dict[str, Any], n: int, size: int, path: str) -> None:
    """The library's ``Metadata::validate`` and coverage check: tensors sorted by offsets must
    tile the data from 0 without gaps or overlaps, each exactly as long as its shape and dtype
    say, and the data must end where the file ends."""
    start = 0
    for name, entry in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        s, e = entry["data_offsets"]
        if s != start or e < s:
            raise _bad(f"invalid offset for tensor {name!r} (a gap, an overlap or reversed offsets)", path)
        start = e
        numel = 1
        for d in entry["shape"]:
            numel *= d
            if numel > _USIZE:
                raise _bad(f"overflow computing the size of tensor {name!r}", path)
        bits = numel * ST_BITS[entry["dtype"]]
        if bits > _USIZE:
            raise _bad(f"overflow computing the size of tensor {name!r}", path)
        if bits % 8 or e - s != bits // 8:
            raise _bad(f"invalid shape, data type, or offset for tensor {name!r}", path)
    if start + 8 + n != size:
        raise _bad("incomplete metadata, file not fully covered (bytes missing, or trailing after the data)", path)


def _on_disk(path: str, size: int) -> bool:
    import os
    import stat

    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def confirm_with_library(data: bytes | memoryview, path: str) -> None:
    """Ask the safetensors library itself, where it answers cheaply: ``deserialize`` of a file up to
    16 MB, ``safe_open`` (header only, memory-mapped) of a bigger one when ``path`` is the regular
    file holding ``data``. A refusal is a broken file with the library's message."""
    from safetensors import SafetensorError, deserialize, safe_open

    try:
        if len(data) <= 16 * 1024 * 1024:
            deserialize(bytes(data))  # 7 µs for an embedding; copies at most 16 MB
        elif _on_disk(path, len(data)):
            with safe_open(path, framework="numpy"):
                pass
    except SafetensorError as exc:
        raise BrokenFileError(f"the safetensors library refuses it ({exc})", path=path) from None


def read_raw(data: bytes | memoryview, path: str) -> Raw:
    """Read a safetensors file into a flat :class:`Raw` tree of lazy tensors."""
    if not accepts(bytes(data[:32])):
        raise NotMine(path)
    header, meta, start = read_header(data, path)
    confirm_with_library(data, path)
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

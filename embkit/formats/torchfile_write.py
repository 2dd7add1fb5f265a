"""Write torch zip pickles without importing torch.

The layout is the one ``torch.save`` writes (a zip, members stored, not compressed, each member's
data aligned to 64 bytes with padding in the local header's extra field), with only the members
every A1111 release's safe loader accepts (``embkit.hosts.safeload``):

    archive/data.pkl                 the object, pickled with protocol 2
    archive/data/<key>               one raw little-endian storage per tensor (keys 0, 1, …)
    archive/version                  ``3``

torch 2.1+ also writes ``byteorder`` and ``.data/serialization_id``, which A1111 before 1.10
refuses ("bad file inside", ``modules/safe.py``), and recent torch ``.format_version`` and
``.storage_alignment``, which every A1111 release refuses. torch reads files without them (a file
without ``byteorder`` is read as little-endian, which these are), as the older files in the wild
(``EasyNegative.pt``: ``data.pkl``, ``data/0``, ``version``) show.

The pickle is emitted opcode by opcode (Python's pickler would import ``torch`` to check the
globals it names). A tensor is the call torch itself records:
``torch._utils._rebuild_tensor_v2(<persistent storage>, 0, size, stride, False, OrderedDict())``,
which torch's ``weights_only`` loader and embkit's allow-list reader both accept.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import NUMPY_DTYPES

ALIGNMENT = 64
#: stored dtype → torch storage class name (inverse of torchfile.STORAGE_DTYPES, floats only).
STORAGE_CLASSES = {"float32": "FloatStorage", "float16": "HalfStorage", "bfloat16": "BFloat16Storage", "float64": "DoubleStorage"}
#: extra-field id torch's writer uses for its alignment padding
_PAD_ID = 0x4246


@dataclass(frozen=True)
class TensorData:
    """A tensor to write: its dtype name and the array of its stored bytes (bf16 as uint16)."""

    dtype: str
    array: np.ndarray


class _Emitter:
    """Protocol-2 pickle opcodes for the few value types an embedding file holds."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.storages: list[tuple[str, TensorData]] = []

    def emit(self, obj: Any) -> None:
        w = self.out.write
        if obj is None:
            w(b"N")
        elif obj is True:
            w(b"\x88")
        elif obj is False:
            w(b"\x89")
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, float):
            w(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            w(b"X" + struct.pack("<I", len(data)) + data)
        elif isinstance(obj, TensorData):
            self._tensor(obj)
        elif isinstance(obj, dict):
            self._filled(b"}", [item for pair in obj.items() for item in pair], b"u")  # EMPTY_DICT, MARK, ..., SETITEMS
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            self._filled(b"]", obj, b"e")  # EMPTY_LIST, MARK, ..., APPENDS
        else:
            raise TypeError(f"cannot pickle a {type(obj).__name__} without torch")

    def _filled(self, empty: bytes, items: list, fill: bytes) -> None:
        # an empty container, then (as pickle writes one that holds anything) MARK, the items and
        # the opcode that puts them all in at once
        self.out.write(empty)
        if items:
            self.out.write(b"(")
            for item in items:
                self.emit(item)
            self.out.write(fill)

    def _int(self, n: int) -> None:
        w = self.out.write
        if 0 <= n < 256:
            w(b"K" + bytes([n]))
        elif 0 <= n < 65536:
            w(b"M" + struct.pack("<H", n))
        elif -(2**31) <= n < 2**31:
            w(b"J" + struct.pack("<i", n))
        else:
            data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            w(b"\x8a" + bytes([len(data)]) + data)

    def _tuple(self, items: tuple) -> None:
        if not items:
            self.out.write(b")")
            return
        if len(items) > 3:
            self.out.write(b"(")
        for value in items:
            self.emit(value)
        self.out.write({1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t"))

    def _global(self, module: str, name: str) -> None:
        self.out.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def _tensor(self, t: TensorData) -> None:
        key = str(len(self.storages))
        self.storages.append((key, t))
        shape = tuple(int(d) for d in t.array.shape)
        stride = tuple(int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape)))
        w = self.out.write
        self._global("torch._utils", "_rebuild_tensor_v2")
        w(b"(")
        # persistent id: ('storage', torch.FloatStorage, key, 'cpu', numel)
        w(b"(")
        self.emit("storage")
        self._global("torch", STORAGE_CLASSES[t.dtype])
        self.emit(key)
        self.emit("cpu")
        self.emit(int(t.array.size))
        w(b"tQ")
        self.emit(0)
        self._tuple(shape)
        self._tuple(stride)
        w(b"\x89")
        self._global("collections", "OrderedDict")
        w(b")R")
        w(b"tR")


def dumps_pickle(obj: Any) -> tuple[bytes, list[tuple[str, TensorData]]]:
    """``data.pkl`` bytes for ``obj`` and the storages it names, in key order."""
    em = _Emitter()
    em.out.write(b"\x80\x02")
    em.emit(obj)
    em.out.write(b".")
    return em.out.getvalue(), em.storages


def dumps(obj: Any, archive: str = "archive") -> bytes:
    """A torch zip file holding ``obj`` (dicts, lists, tuples, str, int, float, bool, None and
    :class:`TensorData`), byte for byte in the layout ``torch.save`` writes."""
    pkl, storages = dumps_pickle(obj)
    members: list[tuple[str, bytes]] = [(f"{archive}/data.pkl", pkl)]
    for key, t in storages:
        data = np.ascontiguousarray(t.array, dtype=NUMPY_DTYPES[t.dtype]).tobytes()
        members.append((f"{archive}/data/{key}", data))
    members.append((f"{archive}/version", b"3\n"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            start = buf.tell() + 30 + len(name.encode()) + 4
            pad = -start % ALIGNMENT
            info.extra = struct.pack("<HH", _PAD_ID, pad) + b"Z" * pad
            zf.writestr(info, data)
    return buf.getvalue()

"""Torch pickle container, read without torch and without running any code.

Two on-disk forms:

* the zip form torch has written since 1.6: ``<dir>/data.pkl`` (a pickle) plus one raw little-endian
  member ``<dir>/data/<key>`` per storage;
* the legacy form: a stream of pickles (magic number, protocol, sys info, the object, storage keys)
  followed by each storage's element count and raw bytes.

The pickle is run by the *allow-list* unpickler of :mod:`embkit.formats.pickle_allow`: only the
handful of globals a tensor file needs are resolved; any other global raises
:class:`~embkit.errors.UnsafeFileError` naming it, before anything is imported. The zip is read by
:mod:`embkit.formats.stored_zip`, which refuses any layout miniz (torch) and :mod:`zipfile` could
read differently, and :mod:`embkit.formats.torch_zip` checks what the members hold. Tensors come
back as lazy :class:`~embkit.formats.base.Tensor` handles, so probing never copies tensor data.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

import numpy as np

from ..errors import BrokenFileError, NotMine, TooLargeError, UnsafeFileError
from .base import MAX_TOTAL_BYTES, NUMPY_DTYPES, Raw, Tensor
from .pickle_allow import _OpCount, _unpickle
from .pickle_globals import ModuleStandIn, TensorRef
from .pickle_walk import OpBudget, walk_streams
from .rules import refuse
from .stored_zip import ZipArchive
from .torch_zip import check_members, open_torch_zip

ZIP_MAGIC = b"PK\x03\x04"
#: torch's legacy magic number, pickled with protocol 2 as the first object of the stream.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
MAX_PICKLE_BYTES = 64 * 1024 * 1024  # an embedding's data.pkl is a few hundred bytes

def accepts(prefix: bytes) -> bool:
    """Cheap check on the first bytes: a zip, or a legacy torch pickle stream."""
    return prefix.startswith(ZIP_MAGIC) or prefix.startswith(LEGACY_PREFIX)


class _Budget:
    """Bytes a file may make us materialise: a few times its size. Shared storages, zero strides
    and compressed members otherwise let a small file expand into gigabytes."""

    def __init__(self, file_size: int, path: str) -> None:
        self.left = 4 * file_size + 64 * 1024 * 1024
        self.path = path

    def spend(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise TooLargeError("its tensors expand to far more bytes than the file holds", path=self.path)


# -- zip form -----------------------------------------------------------------------------------


def _read_member(zf: ZipArchive, name: str, cap: int, path: str) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise BrokenFileError(f"zip member {name} is missing", path=path) from None
    return zf.read(info, cap, path)


def _zip_loader(zf: ZipArchive, prefix: str, ref: TensorRef, path: str, budget: _Budget | None = None):
    def load() -> np.ndarray:
        st = ref.storage
        dt = NUMPY_DTYPES[st.dtype]
        if budget is not None:
            budget.spend((st.numel + _numel(ref.shape)) * dt.itemsize)
        raw = _read_member(zf, f"{prefix}/data/{st.key}", min(MAX_TOTAL_BYTES, st.numel * dt.itemsize), path)
        if len(raw) != st.numel * dt.itemsize:
            raise BrokenFileError(
                f"storage {st.key} holds {len(raw)} bytes, expected {st.numel * dt.itemsize} ({st.numel} x {st.dtype})",
                path=path,
            )
        return _view(np.frombuffer(raw, dtype=dt), ref)

    return load


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _view(flat: np.ndarray, ref: TensorRef) -> np.ndarray:
    """Copy the strided view a tensor describes out of its storage (bounds checked at rebuild)."""
    item = flat.dtype.itemsize
    # checked again here, where it matters: as_strided past the buffer reads foreign memory
    extent = ref.offset + sum((d - 1) * st for d, st in zip(ref.shape, ref.stride) if d)
    if any(d < 0 or st < 0 for d, st in zip(ref.shape, ref.stride)) or (0 not in ref.shape and extent >= flat.size):
        raise UnsafeFileError(f"tensor of shape {list(ref.shape)} reaches past its storage of {flat.size} elements")
    numel = _numel(ref.shape)
    if ref.stride == _contiguous_strides(ref.shape) and flat.flags.aligned and flat.base is not None and len(flat.base) == flat.nbytes:
        # the usual case (torch.save of a plain tensor, its storage read as its own bytes): a
        # read-only view, no copy and no as_strided. A legacy file's storage is a slice of the
        # whole file, often unaligned: copied, so the array neither keeps the file alive nor
        # reads unaligned.
        return flat[ref.offset : ref.offset + numel].reshape(ref.shape)
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :], shape=ref.shape, strides=tuple(s * item for s in ref.stride), writeable=False
    )
    return np.array(view, copy=True)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    step = 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


#: Elements :func:`_wrap` visits at most, each container and each item it holds counted every
#: time it is reached (a real embedding pickle has a few dozen; a LoRA bundle a few thousand).
MAX_TREE_VISITS = 1_000_000


def _wrap(obj: Any, loader_for, depth: int = 0, visits: list[int] | None = None) -> Any:
    """Replace every TensorRef in the tree by a lazy Tensor; dicts stay dicts.

    The memo lets a pickle reuse one object in many places, so the tree can be exponentially
    larger than the pickle (``t = (t, t)`` 40 deep is a 415-byte file and 2**40 paths; found in
    review): every container and item reached is counted and capped (sets included: a 5 KB file
    of a set of tuples sharing one nested structure slipped past a count of containers alone),
    and the depth cap ends cycles."""
    if depth > 64:
        raise TooLargeError("object tree nests too deeply")
    if isinstance(obj, TensorRef):
        return Tensor(shape=obj.shape, dtype=obj.storage.dtype, loader=loader_for(obj))
    if not isinstance(obj, (dict, list, tuple, set, frozenset, ModuleStandIn)):
        return obj
    if visits is None:
        visits = [0]
    visits[0] += 1 + (len(obj) if not isinstance(obj, ModuleStandIn) else 0)
    if visits[0] > MAX_TREE_VISITS:
        raise TooLargeError(f"pickle's object tree has more than {MAX_TREE_VISITS} elements (shared objects counted each time)")
    if isinstance(obj, dict):
        return {k: _wrap(v, loader_for, depth + 1, visits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_wrap(v, loader_for, depth + 1, visits) for v in obj)
    # NEWOBJ without BUILD leaves a module without state (``__init__`` never ran)
    obj.state = _wrap(obj.__dict__.get("state", {}), loader_for, depth + 1, visits)
    return obj


def read_raw(data: bytes | memoryview, path: str, extra_globals: dict | None = None) -> Raw:
    """Read a torch pickle (zip or legacy form) into a :class:`Raw` tree of lazy tensors.
    ``extra_globals``: a reading mode's additions to the allow-list (model checkpoints:
    :data:`embkit.formats.pickle_ckpt.CHECKPOINT_GLOBALS`); embedding files are read without."""
    prefix = bytes(data[:32])
    if prefix.startswith(ZIP_MAGIC):
        zf, root = open_torch_zip(data, path)
        pkl = _read_member(zf, f"{root}/data.pkl", MAX_PICKLE_BYTES, path)
        obj, _storages, used = _unpickle(pkl, path, extra=extra_globals)
        check_members(zf, root, path, pkl, used)
        budget = _Budget(len(data), path)
        return Raw(tree=_wrap(obj, lambda ref: _zip_loader(zf, root, ref, path, budget)), container="pickle")
    if prefix.startswith(LEGACY_PREFIX):
        return _read_legacy(data, path, extra_globals)
    raise NotMine(path)


# -- legacy form --------------------------------------------------------------------------------


def _read_legacy(data: bytes | memoryview, path: str, extra_globals: dict | None = None) -> Raw:
    # bytes and a memory map slice to bytes and serve np.frombuffer as they are: no copy of the file
    buf = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
    # each pickle is read from a slice of at most MAX_PICKLE_BYTES (as for a zip's data.pkl): the
    # whole rest of the file copied per pickle made a 400 MB file peak at 1.2 GB (found in review)
    pos = 0
    header = []
    ops = _OpCount()  # one opcode budget for the file's five pickles, not one each
    for _ in range(3):  # magic number, protocol version, sys info: plain values only
        obj, _storages, used = _unpickle(buf[pos : pos + MAX_PICKLE_BYTES], path, ops)
        header.append(obj)
        pos += used
    if header[0] != LEGACY_MAGIC:
        raise NotMine(path)
    if header[1] != 1001:
        raise BrokenFileError(f"legacy torch file has protocol version {header[1]!r}, expected 1001", path=path)
    obj, storages, used = _unpickle(buf[pos : pos + MAX_PICKLE_BYTES], path, ops, extra_globals)
    pos += used
    keys, _storages, used = _unpickle(buf[pos : pos + MAX_PICKLE_BYTES], path, ops)
    pos += used
    if type(keys) is not list or any(type(k) is not str for k in keys):
        raise BrokenFileError("legacy torch file has a damaged storage key list", path=path)
    offsets: dict[str, int] = {}
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise BrokenFileError(f"legacy torch file lists storage {key} that no tensor uses", path=path)
        if pos + 8 > len(buf):
            raise BrokenFileError(f"legacy torch file is truncated before storage {key}", path=path)
        (count,) = struct.unpack_from("<q", buf, pos)
        if count != ref.numel:
            raise BrokenFileError(f"storage {key} holds {count} elements, expected {ref.numel}", path=path)
        pos += 8
        offsets[key] = pos
        pos += count * NUMPY_DTYPES[ref.dtype].itemsize
        if pos > len(buf):
            raise BrokenFileError(f"legacy torch file is truncated inside storage {key}", path=path)
    if pos != len(buf):
        # torch stops after the last storage; a scanner reading on would meet whatever follows
        tail = walk_streams(bytes(buf[pos : pos + MAX_PICKLE_BYTES]), 0, where="after the storages", budget=OpBudget(100_000))
        named = [n for t in tail for n in t.refused]
        raise refuse("legacy-trailing-data", f"legacy torch file holds {len(buf) - pos} bytes after its last storage"
                     + (f" (a pickle naming {', '.join(named[:5])})" if named else ""), path)

    budget = _Budget(len(buf), path)

    def loader_for(ref: TensorRef):
        def load() -> np.ndarray:
            st = ref.storage
            budget.spend(_numel(ref.shape) * NUMPY_DTYPES[st.dtype].itemsize)
            if st.key not in offsets:
                raise BrokenFileError(f"storage {st.key} has no data in the file", path=path)
            flat = np.frombuffer(buf, dtype=NUMPY_DTYPES[st.dtype], count=st.numel, offset=offsets[st.key])
            return _view(flat, ref)

        return load

    return Raw(tree=_wrap(obj, loader_for), container="pickle", notes=["legacy (pre-zip) torch pickle"])

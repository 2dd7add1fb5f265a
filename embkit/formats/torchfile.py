"""Torch pickle container, read without torch and without running any code.

Two on-disk forms:

* the zip form torch has written since 1.6: ``<dir>/data.pkl`` (a pickle) plus one raw little-endian
  member ``<dir>/data/<key>`` per storage;
* the legacy form: a stream of pickles (magic number, protocol, sys info, the object, storage keys)
  followed by each storage's element count and raw bytes.

The pickle is run by an *allow-list* unpickler: only the handful of globals a tensor file needs are
resolved, each to a small function of ours that records what the file asks for; any other global
raises :class:`~embkit.errors.UnsafeFileError` naming it, before anything is imported. Tensors come
back as lazy :class:`~embkit.formats.base.Tensor` handles, so probing never copies tensor data.
"""

from __future__ import annotations

import io
import lzma
import pickle
import posixpath
import struct
import warnings
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BrokenFileError, NotMine, TooLargeError, UnsafeFileError
from . import pickle_fast
from .base import MAX_TENSOR_ELEMENTS, MAX_TOTAL_BYTES, NUMPY_DTYPES, Raw, Tensor

ZIP_MAGIC = b"PK\x03\x04"
#: torch's legacy magic number, pickled with protocol 2 as the first object of the stream.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
MAX_PICKLE_BYTES = 64 * 1024 * 1024  # an embedding's data.pkl is a few hundred bytes
MAX_ZIP_MEMBERS = 100_000

#: torch storage class name → stored dtype.
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def accepts(prefix: bytes) -> bool:
    """Cheap check on the first bytes: a zip, or a legacy torch pickle stream."""
    return prefix.startswith(ZIP_MAGIC) or prefix.startswith(LEGACY_PREFIX)


# -- the objects the allow-listed globals build ------------------------------------------------


def _refuse_build(self, state: Any) -> None:
    # The pickle BUILD opcode calls ``__setstate__`` (or writes ``__dict__``) on any object on the
    # stack. On our checked records that would undo the checks (a tensor's shape rewritten after its
    # bounds were verified read out of bounds), so they refuse it.
    raise UnsafeFileError(f"pickle tries to overwrite the fields of a {type(self).__name__}; refusing")


@dataclass(frozen=True)
class StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only says which dtype."""

    dtype: str
    __setstate__ = _refuse_build


@dataclass(frozen=True)
class StorageRef:
    """A storage named by a persistent id; its bytes live in the zip member ``data/<key>``."""

    key: str
    dtype: str
    numel: int
    __setstate__ = _refuse_build


@dataclass
class TensorRef:
    """What ``_rebuild_tensor_v2`` was asked to build: a strided view of a storage."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    __setstate__ = _refuse_build


class _Marker:
    """An allow-listed name that stands for a type (``torch.nn.parameter.Parameter``)."""

    __slots__ = ()
    __setstate__ = _refuse_build


class _Global:
    """An allow-listed function as the unpickler hands it out: fresh per lookup, callable, and
    refusing BUILD, so a pickle can neither set attributes on our functions nor poison them for
    later files (the modelscan #85 trick)."""

    __slots__ = ("name", "target", "budget")

    def __init__(self, name: str, target: Any, budget: _CallBudget | None = None) -> None:
        self.name = name
        self.target = target
        self.budget = budget

    def __call__(self, *args: Any) -> Any:
        if self.budget is not None:
            self.budget.spend(args)
        return self.target(*args)

    def __repr__(self) -> str:  # error messages name it, without a memory address
        return f"<global {self.name}>"

    def __setstate__(self, state: Any) -> None:
        raise UnsafeFileError(f"pickle tries to set attributes on the global {self.name}; refusing")


class _CallBudget:
    """How many elements one pickle's calls may copy. ``OrderedDict(d)`` or ``set(items)`` on a
    memoised container costs 4 bytes of pickle and copies the whole container, so without a cap a
    20 KB pickle built 500 MB of copies (found in review). The cap is generous: 16 elements per
    pickle byte, and real pickles call a handful of functions on small arguments."""

    __slots__ = ("left", "path")

    def __init__(self, pickle_size: int, path: str) -> None:
        self.left = 16 * pickle_size + 10_000
        self.path = path

    def spend(self, args: tuple) -> None:
        n = 1
        for a in args:
            if isinstance(a, (list, tuple, dict, set)):
                n += len(a)
        self.left -= n
        if self.left < 0:
            raise TooLargeError("pickle copies containers far beyond its own size", path=self.path)


#: Tuples nest this deep at most. Python hashes nested tuples recursively in C without a depth
#: check: a 200 KB pickle of 200,000 nested tuples used as a dict key crashed the interpreter
#: (found in review). Real torch pickles nest tuples two or three deep.
MAX_TUPLE_DEPTH = 64
#: Elements one tuple may hold counting through its nested tuples, a shared one once per place:
#: ``t = (t, t)`` thirty times is a 250-byte pickle whose hash (as a dict key) walks 2**30
#: elements (a hang; found in review). Real torch tuples hold a handful.
MAX_TUPLE_SIZE = 100_000


class ModuleStandIn:
    """Stand-in for a pickled ``nn.Module`` (the original TI repo's ``nn.ParameterDict``).

    NEWOBJ makes one without arguments; BUILD hands it the module's state, which is only
    recorded. The A1111 layout unwraps ``state["_parameters"]``.
    """

    kind = "Module"

    def __init__(self) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafeFileError(f"unexpected state for {self.kind}: {type(state).__name__}")
        self.state = state


class ParameterDictStandIn(ModuleStandIn):
    """Stand-in for ``torch.nn.modules.container.ParameterDict``."""

    kind = "ParameterDict"


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise UnsafeFileError(f"tensor rebuild got {what}={value!r}, expected a non-negative integer")
    return value


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if type(value) not in (tuple, list) or len(value) > 8:
        raise UnsafeFileError(f"tensor rebuild got {what}={value!r}, expected a tuple of integers")
    return tuple(_int(v, what) for v in value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, StorageRef):
        raise UnsafeFileError(f"torch._utils._rebuild_tensor_v2 was given {type(storage).__name__} instead of a storage")
    if backward_hooks not in (None,) and not (isinstance(backward_hooks, dict) and not backward_hooks):
        raise UnsafeFileError("torch._utils._rebuild_tensor_v2 was given backward hooks; refusing")
    if type(requires_grad) is not bool:
        raise UnsafeFileError(f"torch._utils._rebuild_tensor_v2 got requires_grad={requires_grad!r}")
    shape = _ints(size, "size")
    strides = _ints(stride, "stride")
    if len(shape) != len(strides):
        raise UnsafeFileError(f"tensor rebuild: size {shape} and stride {strides} differ in length")
    offset = _int(storage_offset, "storage_offset")
    numel = 1
    extent = offset
    for dim, st in zip(shape, strides):
        numel *= dim
        if dim:
            extent += (dim - 1) * st
    if numel > MAX_TENSOR_ELEMENTS:
        raise TooLargeError(f"a tensor of shape {list(shape)} ({numel} elements) is past the cap of {MAX_TENSOR_ELEMENTS}")
    if numel > max(storage.numel, 1 << 20):
        # zero strides let a tiny storage expand into a huge tensor; real files never need it
        raise TooLargeError(f"a tensor of shape {list(shape)} expands a storage of {storage.numel} elements")
    if numel and extent >= storage.numel:
        raise UnsafeFileError(
            f"tensor of shape {list(shape)} at offset {offset} reaches past its storage of {storage.numel} elements"
        )
    return TensorRef(storage, offset, shape, strides)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, TensorRef):
        raise UnsafeFileError(f"torch._utils._rebuild_parameter was given {type(data).__name__} instead of a tensor")
    if backward_hooks is not None and not (isinstance(backward_hooks, dict) and not backward_hooks):
        raise UnsafeFileError("torch._utils._rebuild_parameter was given backward hooks; refusing")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch wraps tensor subclasses (Parameter among them) this way; only our own rebuild
    # functions may be the callee, and only a Parameter the type.
    func = getattr(func, "target", None)
    if func not in (_rebuild_tensor_v2, _rebuild_parameter, _rebuild_tensor) or new_type is not _PARAMETER:
        raise UnsafeFileError("torch._tensor._rebuild_from_type_v2 with an unexpected function or type")
    if type(args) is not tuple:
        raise UnsafeFileError("torch._tensor._rebuild_from_type_v2 with non-tuple arguments")
    return func(*args)


def _ordered_dict(*args):
    if args and not (len(args) == 1 and isinstance(args[0], (list, tuple, dict))):
        raise UnsafeFileError("collections.OrderedDict called with unexpected arguments")
    return OrderedDict(*args)


def _reconstructor(cls, base, state):
    # copyreg._reconstructor(cls, object, None): protocol 0/1 pickles of nn.Modules.
    if cls is not ParameterDictStandIn or base is not object or state is not None:
        raise UnsafeFileError("copyreg._reconstructor used for something other than a known module")
    return ParameterDictStandIn()


def _set(items=()):
    if not isinstance(items, (list, tuple)):
        raise UnsafeFileError("builtins.set called with unexpected arguments")
    return set(items)


_PARAMETER = _Marker()

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _PARAMETER,
    ("collections", "OrderedDict"): _ordered_dict,
    ("copyreg", "_reconstructor"): _reconstructor,
    **{("torch", name): StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
    ("torch.nn.modules.container", "ParameterDict"): ParameterDictStandIn,
    # nn.Module state holds an empty set (``_non_persistent_buffers_set``).
    ("builtins", "set"): _set,
    ("__builtin__", "set"): _set,
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
}


def _refuse_bytearray(unpickler: Any) -> None:
    raise BrokenFileError("pickle holds a bytearray (BYTEARRAY8), which no torch file does", path=unpickler._path)


class _SafeUnpickler(pickle._Unpickler):  # noqa: SLF001
    """Resolves only :data:`ALLOWED_GLOBALS`; storages come back as :class:`StorageRef`.

    Built on the pure-Python unpickler on purpose: the C one sizes its memo as an array indexed by
    the PUT argument, so a 5-byte ``LONG_BINPUT 2**30`` made it allocate and zero gigabytes (found by
    fuzzing). The Python memo is a dict. Embedding pickles are tiny; the cost is about 1.6x on a
    3,000-tensor pickle (25 ms to 40 ms).
    """

    # BYTEARRAY8 allocates its declared size before reading: 13 bytes made a zeroed 1 GB
    # bytearray (found by fuzzing). Every other opcode reads only the bytes that are there.
    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001
    dispatch[pickle.BYTEARRAY8[0]] = _refuse_bytearray

    def __init__(self, stream: io.BytesIO, path: str, size: int):
        super().__init__(stream)
        self._path = path
        self.storages: dict[str, StorageRef] = {}
        self._budget = _CallBudget(size, path)
        self._depths: dict[int, tuple[int, int, tuple]] = {}

    def find_class(self, module: str, name: str) -> Any:
        return _find_global(module, name, self._path, self._budget)

    def _note_tuple(self) -> None:
        if pickle_fast.tuple_too_big(self.stack[-1], self._depths, MAX_TUPLE_DEPTH, MAX_TUPLE_SIZE):
            raise TooLargeError(
                f"pickle builds tuples nested more than {MAX_TUPLE_DEPTH} deep or holding more than {MAX_TUPLE_SIZE} elements through shared parts",
                path=self._path,
            )

    def persistent_load(self, pid: Any) -> StorageRef:
        return _storage_ref(pid, self.storages, self._path)


def _with_tuple_check(load):
    def run(self):
        load(self)
        self._note_tuple()

    return run


for _op, _load in (
    (pickle.TUPLE, pickle._Unpickler.load_tuple),  # noqa: SLF001
    (pickle.TUPLE1, pickle._Unpickler.load_tuple1),  # noqa: SLF001
    (pickle.TUPLE2, pickle._Unpickler.load_tuple2),  # noqa: SLF001
    (pickle.TUPLE3, pickle._Unpickler.load_tuple3),  # noqa: SLF001
):
    _SafeUnpickler.dispatch[_op[0]] = _with_tuple_check(_load)


def _find_global(module: Any, name: Any, path: str, budget: _CallBudget | None = None) -> Any:
    """The stand-in for an allow-listed global; :class:`UnsafeFileError` for any other."""
    try:
        value = ALLOWED_GLOBALS[(module, name)]
    except (KeyError, TypeError):
        raise UnsafeFileError(
            f"pickle asks for the global {module}.{name}, which is not on embkit's allow-list; nothing was executed",
            path=path,
        ) from None
    if not callable(value) or isinstance(value, type):
        return value
    # only the functions that copy a container they are given can multiply memory; the tensor
    # rebuilders check their own arguments
    return _Global(f"{module}.{name}", value, budget if value in (_ordered_dict, _set) else None)


def _storage_ref(pid: Any, storages: dict[str, StorageRef], path: str) -> StorageRef:
    """Check a persistent id (``("storage", type, key, location, numel)``) and record its storage."""
    if type(pid) is not tuple or len(pid) not in (5, 6) or pid[0] not in ("storage", b"storage"):
        raise UnsafeFileError(f"unexpected persistent id {pid!r:.80}", path=path)
    stype, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
    if not isinstance(stype, StorageType):
        raise UnsafeFileError(f"persistent id names {stype!r:.60} instead of a storage type", path=path)
    if type(key) is not str or not key or len(key) > 64 or "/" in key or "\\" in key or ".." in key:
        raise UnsafeFileError(f"persistent id has a bad storage key {key!r:.60}", path=path)
    if type(numel) is not int or numel < 0:
        raise UnsafeFileError(f"persistent id has a bad element count {numel!r:.60}", path=path)
    if numel > MAX_TENSOR_ELEMENTS:
        raise TooLargeError(f"a storage of {numel} elements is past the cap of {MAX_TENSOR_ELEMENTS}", path=path)
    if len(pid) == 6 and pid[5] is not None:
        raise UnsafeFileError("legacy storage views are not supported", path=path)
    seen = storages.get(key)
    if seen is not None:
        if seen.dtype != stype.dtype or seen.numel != numel:
            raise UnsafeFileError(f"storage {key} is declared twice with different types or sizes", path=path)
        return seen
    ref = StorageRef(key, stype.dtype, numel)
    storages[key] = ref
    return ref


#: Pickles up to this size go straight to the unpickler (worst case a few dozen MB of objects);
#: bigger ones are first walked to count their opcodes, since one opcode byte can make a 200-byte
#: object (EMPTY_SET) and a compressed data.pkl can be 1000 times its size on disk.
SMALL_PICKLE_BYTES = 256 * 1024
MAX_PICKLE_OPS = 500_000


def _count_ops(data: bytes, path: str) -> None:
    import pickletools

    try:
        for n, (op, _arg, _pos) in enumerate(pickletools.genops(data)):
            if n >= MAX_PICKLE_OPS:
                raise TooLargeError(f"pickle has more than {MAX_PICKLE_OPS} opcodes; an embedding has a few hundred", path=path)
            if op.name == "STOP":
                return
    except TooLargeError:
        raise
    except Exception:  # damaged opcodes: the unpickler itself reports them
        return


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


def _unpickle(data: bytes, path: str) -> tuple[Any, dict[str, StorageRef], int]:
    """Run the allow-list unpickler over ``data``; returns the object, the storages its persistent
    ids named, and the bytes used. The common small torch pickle takes the fast path
    (:mod:`embkit.formats.pickle_fast`, same allow-list); anything it declines, errors included,
    goes through :class:`_SafeUnpickler`, which gives the answer or the error message."""
    if len(data) > SMALL_PICKLE_BYTES:
        _count_ops(data, path)
    storages: dict[str, StorageRef] = {}
    budget = _CallBudget(len(data), path)
    fast = pickle_fast.load(data, lambda m, n: _find_global(m, n, path, budget), lambda pid: _storage_ref(pid, storages, path), MAX_TUPLE_DEPTH, MAX_TUPLE_SIZE)
    if fast is not None:
        return fast[0], storages, fast[1]
    stream = io.BytesIO(data)
    up = _SafeUnpickler(stream, path, len(data))
    try:
        with warnings.catch_warnings():  # odd STRING escapes warn; a hostile file must not print
            warnings.simplefilter("ignore")
            obj = up.load()
    except (UnsafeFileError, BrokenFileError):
        raise
    except RecursionError:
        raise TooLargeError("pickle nests too deeply", path=path) from None
    except MemoryError:
        raise TooLargeError("pickle asks for more memory than embkit allows", path=path) from None
    except Exception as exc:  # the pickle machine's own errors: truncated or malformed stream
        raise BrokenFileError(f"pickle data is damaged ({type(exc).__name__}: {exc})", path=path) from None
    return obj, up.storages, stream.tell()


# -- zip form -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    filename: str
    file_size: int
    start: int
    crc: int


class _StoredZip:
    """The zip layout torch itself writes, read straight from the bytes (parsing it with
    :mod:`zipfile` costs more than the rest of reading a small embedding). Only the plain case
    is taken: one disk, no comment, no prepended data, ASCII names, members stored (not
    compressed, not encrypted), sizes that fit 32 bits, every member's local header agreeing
    with the central directory, members in order without overlap. :func:`_parse_stored_zip`
    returns None for anything else and :mod:`zipfile` reads it as before. CRCs are checked."""

    def __init__(self, data: bytes | memoryview, members: dict[str, _Member]):
        self._data = data
        self._members = members

    def infolist(self) -> list[_Member]:
        return list(self._members.values())

    def getinfo(self, name: str) -> _Member:
        return self._members[name]

    def read(self, info: _Member) -> bytes:
        chunk = bytes(self._data[info.start : info.start + info.file_size])
        if zlib.crc32(chunk) != info.crc:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        return chunk


_EOCD = struct.Struct("<4s4H2IH")  # end of central directory, 22 bytes
_Z64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_Z64_EOCD = struct.Struct("<4sQ2H2I4Q")  # 56 bytes
# central (46 bytes) and local (30 bytes) headers, unpacking only the fields checked (pad bytes
# skip the rest: fewer values to build per member)
_CENTRAL_FIELDS = struct.Struct("<4s2x3H4x3I4H6xI")  # sig, need, flags, method, crc, csize, size, nlen, xlen, clen, disk, offset
_LOCAL_FIELDS = struct.Struct("<4s2x2H16x2H")  # sig, flags, method, nlen, xlen


def _plain_extra(extra: bytes) -> bool:
    """True when an extra field is well formed and holds nothing zipfile would act on (padding,
    timestamps); zip64 (0x0001) and Unicode-path (0x7075) records are left to zipfile."""
    while len(extra) >= 4:
        kind, size = struct.unpack_from("<HH", extra)
        if size + 4 > len(extra) or kind in (0x0001, 0x7075):
            return False
        extra = extra[size + 4 :]
    return True


def _parse_stored_zip(data: bytes | memoryview) -> _StoredZip | None:
    """A :class:`_StoredZip` for torch's plain layout, or None (then :mod:`zipfile` decides)."""
    n = len(data)
    eocd = n - _EOCD.size
    if eocd < 0 or bytes(data[eocd : eocd + 4]) != b"PK\x05\x06":
        return None  # a comment, or not a zip at all
    _sig, disk, cd_disk, count_disk, count, cd_size, cd_offset, comment = _EOCD.unpack_from(data, eocd)
    if disk or cd_disk or comment or count_disk != count or count > MAX_ZIP_MEMBERS or 0xFFFF in (count,) or 0xFFFFFFFF in (cd_size, cd_offset):
        return None
    cd_end = eocd
    loc = eocd - _Z64_LOCATOR.size
    if loc >= 0 and bytes(data[loc : loc + 4]) == b"PK\x06\x07":  # torch always writes zip64 records
        _sig, z64_disk, z64_at, disks = _Z64_LOCATOR.unpack_from(data, loc)
        if z64_disk != 0 or disks != 1 or z64_at != loc - _Z64_EOCD.size:
            return None
        sig, rec_size, _made, _need, d1, d2, c1, c2, size64, off64 = _Z64_EOCD.unpack_from(data, z64_at)
        if sig != b"PK\x06\x06" or rec_size != _Z64_EOCD.size - 12 or d1 or d2 or (c1, c2, size64, off64) != (count, count, cd_size, cd_offset):
            return None
        cd_end = z64_at
    if cd_offset + cd_size != cd_end:
        return None  # prepended data or a gap: zipfile's business
    members: dict[str, _Member] = {}
    pos, last_end = cd_offset, 0
    central, local = _CENTRAL_FIELDS.unpack_from, _LOCAL_FIELDS.unpack_from
    for _ in range(count):
        if pos + 46 > cd_end:
            return None
        (sig, need, flags, method, crc, csize, size, nlen, xlen, clen, disk_start, at) = central(data, pos)
        if sig != b"PK\x01\x02" or need > zipfile.MAX_EXTRACT_VERSION or method or flags & ~0x808 or csize != size or clen or disk_start:
            return None  # compressed, encrypted, comments: zipfile's business
        name_at = pos + 46
        raw_name = bytes(data[name_at : name_at + nlen])
        if xlen and not _plain_extra(bytes(data[name_at + nlen : name_at + nlen + xlen])):
            return None
        pos = name_at + nlen + xlen
        if not raw_name.isascii() or at < last_end or at + 30 > cd_offset:
            return None
        (lsig, lflags, lmethod, lnlen, lxlen) = local(data, at)
        start = at + 30 + lnlen + lxlen
        if lsig != b"PK\x03\x04" or lflags != flags or lmethod or lnlen != nlen or bytes(data[at + 30 : at + 30 + nlen]) != raw_name:
            return None
        last_end = start + size
        if last_end > cd_offset:
            return None
        name = raw_name.decode("ascii")
        if name in members:
            return None  # zipfile keeps both; _open_zip refuses the file
        members[name] = _Member(name, size, start, crc)
    if pos != cd_end:
        return None
    return _StoredZip(data, members)


def _open_zip(data: bytes | memoryview, path: str) -> tuple[zipfile.ZipFile | _StoredZip, str]:
    """Open the zip and find the one ``<dir>/data.pkl``; refuse hostile member names."""
    try:
        zf = _parse_stored_zip(data) or zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError, zlib.error, lzma.LZMAError) as exc:
        raise BrokenFileError(f"damaged zip archive ({exc})", path=path) from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise TooLargeError(f"zip holds {len(infos)} members", path=path)
    pkls = []
    names = set()
    for info in infos:
        name = info.filename
        if name[:1] in ("/", "\\") or "\\" in name or ".." in name or ":" in name:
            # the precise checks only when a cheap one fires: names with ".." or ":" inside are fine
            if name.startswith(("/", "\\")) or "\\" in name or ".." in name.split("/") or ":" in name.split("/")[0]:
                raise UnsafeFileError(f"zip member name {name!r} escapes the archive", path=path)
        if name in names:
            raise UnsafeFileError(f"zip holds two members named {name!r}", path=path)
        names.add(name)
        if name.endswith("data.pkl") and name.count("/") == 1 and posixpath.basename(name) == "data.pkl":
            pkls.append(name)
    if not pkls:
        raise NotMine(path)
    if len(pkls) > 1:
        raise UnsafeFileError(f"zip holds several pickles ({', '.join(pkls)}); a torch file has one", path=path)
    return zf, posixpath.dirname(pkls[0])


def _read_member(zf: zipfile.ZipFile | _StoredZip, name: str, cap: int, path: str) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise BrokenFileError(f"zip member {name} is missing", path=path) from None
    if info.file_size > cap:
        raise TooLargeError(f"zip member {name} declares {info.file_size} bytes, past the cap of {cap}", path=path)
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError) as exc:
        # RuntimeError: the member's "encrypted" flag is set (found by fuzzing)
        raise BrokenFileError(f"zip member {name} is damaged ({exc})", path=path) from None


def _zip_loader(zf: zipfile.ZipFile | _StoredZip, prefix: str, ref: TensorRef, path: str, budget: _Budget | None = None):
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


#: Containers :func:`_wrap` visits at most (a real embedding pickle has a few dozen; a LoRA bundle
#: a few thousand).
MAX_TREE_VISITS = 200_000


def _wrap(obj: Any, loader_for, depth: int = 0, visits: list[int] | None = None) -> Any:
    """Replace every TensorRef in the tree by a lazy Tensor; dicts stay dicts.

    The memo lets a pickle reuse one object in many places, so the tree can be exponentially
    larger than the pickle (``t = (t, t)`` 40 deep is a 415-byte file and 2**40 paths; found in
    review): visits are counted and capped, and the depth cap ends cycles."""
    if depth > 64:
        raise TooLargeError("object tree nests too deeply")
    if isinstance(obj, TensorRef):
        return Tensor(shape=obj.shape, dtype=obj.storage.dtype, loader=loader_for(obj))
    if not isinstance(obj, (dict, list, tuple, ModuleStandIn)):
        return obj
    if visits is None:
        visits = [0]
    visits[0] += 1
    if visits[0] > MAX_TREE_VISITS:
        raise TooLargeError(f"pickle's object tree has more than {MAX_TREE_VISITS} containers (shared objects counted each time)")
    if isinstance(obj, dict):
        return {k: _wrap(v, loader_for, depth + 1, visits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_wrap(v, loader_for, depth + 1, visits) for v in obj)
    # NEWOBJ without BUILD leaves a module without state (``__init__`` never ran)
    obj.state = _wrap(obj.__dict__.get("state", {}), loader_for, depth + 1, visits)
    return obj


def read_raw(data: bytes | memoryview, path: str) -> Raw:
    """Read a torch pickle (zip or legacy form) into a :class:`Raw` tree of lazy tensors."""
    prefix = bytes(data[:32])
    if prefix.startswith(ZIP_MAGIC):
        zf, root = _open_zip(data, path)
        pkl = _read_member(zf, f"{root}/data.pkl", MAX_PICKLE_BYTES, path)
        obj, _storages, _n = _unpickle(pkl, path)
        budget = _Budget(len(data), path)
        return Raw(tree=_wrap(obj, lambda ref: _zip_loader(zf, root, ref, path, budget)), container="pickle")
    if prefix.startswith(LEGACY_PREFIX):
        return _read_legacy(data, path)
    raise NotMine(path)


def referenced_globals(data: bytes | memoryview, path: str) -> list[str]:
    """Every global the file's pickles name, found by walking opcodes; nothing is executed.

    See :mod:`embkit.scan`, which tracks the memo (so a STACK_GLOBAL built from memoised strings
    resolves correctly) and walks every pickle of a legacy stream, not only the first."""
    from ..scan import scan_bytes

    return scan_bytes(bytes(data), path).globals


# -- legacy form --------------------------------------------------------------------------------


def _read_legacy(data: bytes | memoryview, path: str) -> Raw:
    buf = bytes(data)
    pos = 0
    header = []
    for _ in range(3):  # magic number, protocol version, sys info: plain values only
        obj, _storages, used = _unpickle(buf[pos:], path)
        header.append(obj)
        pos += used
    if header[0] != LEGACY_MAGIC:
        raise NotMine(path)
    if header[1] != 1001:
        raise BrokenFileError(f"legacy torch file has protocol version {header[1]!r}, expected 1001", path=path)
    obj, storages, used = _unpickle(buf[pos:], path)
    pos += used
    keys, _storages, used = _unpickle(buf[pos:], path)
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

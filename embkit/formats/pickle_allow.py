"""The allow-list unpickler for torch pickles: the two unpicklers that resolve only the globals of
:mod:`embkit.formats.pickle_globals` (the fast path in :mod:`embkit.formats.pickle_fast` and
:class:`_SafeUnpickler`, its fallback).

Caps on tuples, copies and opcodes keep a small hostile pickle from taking time or memory out of
proportion to its size (see docs/safety.md).
"""

from __future__ import annotations

import io
import pickle
import warnings
from typing import Any

from ..errors import BrokenFileError, TooLargeError, UnsafeFileError
from . import pickle_fast
from .pickle_globals import (
    MAX_TUPLE_DEPTH,
    MAX_TUPLE_SIZE,
    StorageRef,
    _CallBudget,
    _find_global,
    _storage_ref,
)
from .rules import refuse


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

    def __init__(self, stream: io.BytesIO, path: str, size: int, extra: dict | None = None):
        super().__init__(stream)
        self._path, self._extra = path, extra
        self.storages: dict[str, StorageRef] = {}
        self._depths: dict[int, tuple[int, int, tuple]] = {}
        self._budget = _CallBudget(size, path, self._depths)

    def find_class(self, module: str, name: str) -> Any:
        return _find_global(module, name, self._path, self._budget, self._extra)

    def _note_tuple(self) -> None:
        if pickle_fast.tuple_too_big(self.stack[-1], self._depths, MAX_TUPLE_DEPTH, MAX_TUPLE_SIZE):
            raise TooLargeError(
                f"pickle builds tuples nested more than {MAX_TUPLE_DEPTH} deep or holding more than {MAX_TUPLE_SIZE} elements through shared parts",
                path=self._path,
            )

    def persistent_load(self, pid: Any) -> StorageRef:
        return _storage_ref(pid, self.storages, self._path)


def _charging(load, keys):
    """A loader that first charges the budget for the tuples its container will hash."""

    def run(self):
        self._budget.charge_keys(keys(self))
        load(self)

    return run


# dict keys and set elements are hashed: SETITEM's key sits under its value; SETITEMS and DICT
# take key/value pairs above the mark (the items are self.stack then); ADDITEMS and FROZENSET elements
for _op, _load, _keys in (
    (pickle.SETITEM, pickle._Unpickler.load_setitem, lambda u: u.stack[-2:-1]),  # noqa: SLF001
    (pickle.SETITEMS, pickle._Unpickler.load_setitems, lambda u: u.stack[0::2]),  # noqa: SLF001
    (pickle.DICT, pickle._Unpickler.load_dict, lambda u: u.stack[0::2]),  # noqa: SLF001
    (pickle.ADDITEMS, pickle._Unpickler.load_additems, lambda u: u.stack),  # noqa: SLF001
    (pickle.FROZENSET, pickle._Unpickler.load_frozenset, lambda u: u.stack),  # noqa: SLF001
):
    _SafeUnpickler.dispatch[_op[0]] = _charging(_load, _keys)


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



#: Pickles up to this size go straight to the unpickler (worst case a few dozen MB of objects);
#: bigger ones are first walked to count their opcodes, since one opcode byte can make a 200-byte
#: object (EMPTY_SET) and a compressed data.pkl can be 1000 times its size on disk.
SMALL_PICKLE_BYTES = 256 * 1024
MAX_PICKLE_OPS = 500_000


class _OpCount:
    """Opcodes the pickles of one file may hold together (a legacy file's five pickles share it)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_PICKLE_OPS


def _count_ops(data: bytes, path: str, ops: _OpCount) -> None:
    import pickletools

    try:
        for op, _arg, _pos in pickletools.genops(data):
            ops.left -= 1
            if ops.left < 0:
                raise TooLargeError(f"pickles hold more than {MAX_PICKLE_OPS} opcodes; an embedding has a few hundred", path=path)
            if op.name == "STOP":
                return
    except TooLargeError:
        raise
    except Exception:  # damaged opcodes: the unpickler itself reports them
        return


def _unpickle(data: bytes, path: str, ops: _OpCount | None = None, extra: dict | None = None) -> tuple[Any, dict[str, StorageRef], int]:
    """Run the allow-list unpickler over ``data``; returns the object, the storages its persistent
    ids named, and the bytes used. The common small torch pickle takes the fast path
    (:mod:`embkit.formats.pickle_fast`, same allow-list); anything it declines, errors included,
    goes through :class:`_SafeUnpickler`, which gives the answer or the error message. ``ops``
    is the file's opcode budget (pickles over 256 KB are counted against it first)."""
    if len(data) > SMALL_PICKLE_BYTES:
        _count_ops(data, path, ops or _OpCount())
    storages: dict[str, StorageRef] = {}
    sizes: dict[int, tuple[int, int, tuple]] = {}
    budget = _CallBudget(len(data), path, sizes)
    fast = pickle_fast.load(data, lambda m, n: _find_global(m, n, path, budget, extra), lambda pid: _storage_ref(pid, storages, path), MAX_TUPLE_DEPTH, MAX_TUPLE_SIZE, sizes)
    if fast is not None:
        return fast[0], storages, fast[1]
    stream = io.BytesIO(data)
    up = _SafeUnpickler(stream, path, len(data), extra)
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
        if "frame" in str(exc):  # an opcode across a FRAME's end: the C unpickler reads on regardless
            raise refuse("pickle-frame", f"pickle opcodes run across a frame's end ({exc})", path) from None
        raise BrokenFileError(f"pickle data is damaged ({type(exc).__name__}: {exc})", path=path) from None
    return obj, up.storages, stream.tell()

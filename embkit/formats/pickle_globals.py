"""The allow-list of the torch unpickler: the globals a tensor file may name, the stand-ins they
build, and the checks on what the file gives them.

Only the handful of globals a tensor file needs are resolved, each to a small function of ours that
records what the file asks for; any other global raises :class:`~embkit.errors.UnsafeFileError`
naming it, before anything is imported. The unpicklers that use this table live in
:mod:`embkit.formats.pickle_allow` (and its fast path :mod:`embkit.formats.pickle_fast`); the
static walk of :mod:`embkit.formats.pickle_walk` reads the same table.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..errors import TooLargeError, UnsafeFileError
from .base import MAX_TENSOR_ELEMENTS
from .rules import refuse

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
    """How many elements one pickle's calls may copy or hash. ``OrderedDict(d)`` or ``set(items)``
    on a memoised container costs 4 bytes of pickle and copies the whole container, so without a
    cap a 20 KB pickle built 500 MB of copies (found in review); and hashing a tuple walks every
    tuple nested in it, shared ones once per place, so a 5 KB pickle of a set of tuples sharing one
    nested structure hashed for a minute (found in review). The cap is generous: 16 elements per
    pickle byte, and real pickles call a handful of functions on small arguments, keyed by strings.
    ``sizes`` is the unpickler's table of nested tuples (:func:`pickle_fast.tuple_too_big`)."""

    __slots__ = ("left", "path", "sizes")

    def __init__(self, pickle_size: int, path: str, sizes: dict | None = None) -> None:
        self.left = 16 * pickle_size + 10_000
        self.path = path
        self.sizes = sizes if sizes is not None else {}

    def charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise TooLargeError("pickle copies or hashes containers far beyond its own size", path=self.path)

    def hash_cost(self, key: Any) -> int:
        """Elements hashing ``key`` walks (a tuple's nested tuples counted per place)."""
        if type(key) is not tuple:
            return 1
        seen = self.sizes.get(id(key))
        return 1 + (seen[1] if seen is not None else len(key))

    def charge_keys(self, keys: Any) -> None:
        """Charge for hashing every tuple among ``keys`` (dict keys, set elements)."""
        for k in keys:
            if type(k) is tuple:
                self.charge(self.hash_cost(k))

    def spend(self, args: tuple) -> None:
        n = 1
        for a in args:
            if isinstance(a, (list, tuple, dict, set)):
                n += len(a)
        self.charge(n)
        for a in args:  # what the copy hashes: dict keys, set elements (or the pairs holding keys)
            if isinstance(a, (list, tuple, dict, set)):
                self.charge_keys(a.keys() if isinstance(a, dict) else a)


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


#: No size, stride or offset of a real tensor comes near this; a bigger one overflowed numpy's C
#: integers when the view was taken (OverflowError; found in review).
MAX_TENSOR_INT = 2**48


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise UnsafeFileError(f"tensor rebuild got {what}={value!r:.60}, expected a non-negative integer")
    if value > MAX_TENSOR_INT:
        raise TooLargeError(f"tensor rebuild got {what}={value}, past any real tensor")
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


def _find_global(module: Any, name: Any, path: str, budget: _CallBudget | None = None, extra: dict | None = None) -> Any:
    """The stand-in for an allow-listed global (or one of ``extra``, a reading mode's own, such as
    :data:`embkit.formats.pickle_ckpt.CHECKPOINT_GLOBALS`); :class:`UnsafeFileError` for any other."""
    try:
        value = extra[(module, name)] if extra and (module, name) in extra else ALLOWED_GLOBALS[(module, name)]
    except (KeyError, TypeError):
        raise refuse("global", f"pickle asks for the global {module}.{name}, which is not on embkit's allow-list; nothing was executed", path) from None
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

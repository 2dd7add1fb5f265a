"""Shared pieces of the format machinery: lazy tensors, raw container contents, parsed parts.

A *container* reader (pickle, safetensors, image, folder) turns a file into a :class:`Raw`: a tree of
plain Python values whose tensors are lazy :class:`Tensor` handles. A *layout* (a1111, diffusers,
kohya, multi, …) turns a Raw into :class:`Part` records. Reading materialises a Part's tensors into an
:class:`~embkit.schema.Embedding`; probing only looks at their shapes and dtypes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import BrokenFileError, TooLargeError
from ..schema import WIDTH_TO_SLOT

#: numpy dtype for each stored dtype name; bf16 is read as raw uint16 and widened by hand.
NUMPY_DTYPES = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

#: Caps that keep hostile files from making us allocate: no embedding is anywhere near these.
MAX_TENSOR_ELEMENTS = 64 * 1024 * 1024  # 64 Mi elements (256 MB of fp32)
MAX_TOTAL_BYTES = 2 * 1024**3


def widen_bf16(raw: np.ndarray) -> np.ndarray:
    """uint16 bf16 bit patterns → float32 (exact: bf16 is the top half of an fp32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def narrow_bf16(values: np.ndarray) -> np.ndarray:
    """float32 → uint16 bf16 bit patterns, rounding to nearest even (what torch does)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(values.astype(np.float32))
    out[nan] = 0x7FC0
    return out


@dataclass
class Tensor:
    """A tensor in a file, known by shape and dtype; its values are read only when asked."""

    shape: tuple[int, ...]
    dtype: str
    loader: Callable[[], np.ndarray] = field(repr=False)
    _cache: np.ndarray | None = field(default=None, repr=False)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def array(self) -> np.ndarray:
        """The values as a numpy array (bf16 widened to float32)."""
        if self._cache is None:
            arr = self.loader()
            if self.dtype == "bfloat16":
                arr = widen_bf16(arr)
            self._cache = arr.reshape(self.shape)
        return self._cache


@dataclass
class Raw:
    """What a container holds: a tree of plain values and :class:`Tensor` handles."""

    tree: Any
    container: str
    #: string metadata the container itself carries (safetensors ``__metadata__``, PNG text).
    metadata: dict[str, str] = field(default_factory=dict)
    #: Notes for the reader (e.g. "decoded from pixels: text chunk missing").
    notes: list[str] = field(default_factory=list)


@dataclass
class Part:
    """One embedding as a layout found it: tensors per slot (not yet loaded), and metadata."""

    name: str
    tensors: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    member: str | None = None
    warnings: list[str] = field(default_factory=list)


def tensor_matrix(t: Tensor, path: str, what: str) -> np.ndarray:
    """A stored tensor as a 2-D float matrix (1-D becomes one row), or a clear error."""
    return t.array().reshape(matrix_shape(t, path, what))


def matrix_shape(t: Tensor, path: str, what: str) -> tuple[int, int]:
    """The (vectors, width) a tensor would have as a matrix, checked like :func:`tensor_matrix`."""
    if t.dtype not in FLOAT_DTYPES:
        raise BrokenFileError(f"{what} has dtype {t.dtype}; an embedding must hold floats", path=path)
    if len(t.shape) == 1:
        shape = (1, t.shape[0])
    elif len(t.shape) == 2:
        shape = t.shape
    else:
        raise BrokenFileError(f"{what} has shape {list(t.shape)}; expected [vectors, width] or [width]", path=path)
    if 0 in shape:
        raise BrokenFileError(f"{what} is empty (shape {list(t.shape)})", path=path)
    return int(shape[0]), int(shape[1])


def width_slot(t: Tensor, path: str, what: str) -> str:
    """The slot a single-encoder layout's tensor belongs to, from its width."""
    _, width = matrix_shape(t, path, what)
    slot = WIDTH_TO_SLOT.get(width)
    if slot is None:
        raise BrokenFileError(
            f"{what} is {width} wide, which matches no known text encoder (768 CLIP-L, 1024 CLIP-H, 1280 CLIP-G, 4096 T5)",
            path=path,
        )
    return slot


#: Objects and arrays a JSON text may open. ``json`` builds a 64-byte dict for each 2-byte ``{}``,
#: so a 99 MB safetensors header of them took 2.5 GB (found in review); real headers and
#: metadata open a few per tensor.
MAX_JSON_CONTAINERS = 200_000
#: Values a JSON text may hold (counted as its commas): a list of 40 million zeros in a
#: safetensors metadata value took 23 s and 3.4 GB to show (found in review). A card of 75
#: vectors holds 57,600 numbers; a big model's header a few per tensor.
MAX_JSON_VALUES = 1_000_000


def check_json_size(text: str | bytes, path: str, what: str) -> None:
    """Refuse (``too-large``) JSON that opens more objects and arrays, or holds more values, than
    any embedding needs, before parsing it (counted on the raw text: braces and commas inside
    strings count too, which only errs on the safe side)."""
    if isinstance(text, str):
        n, values = text.count("{") + text.count("["), text.count(",")
    else:
        n, values = text.count(b"{") + text.count(b"["), text.count(b",")
    if n > MAX_JSON_CONTAINERS:
        raise TooLargeError(f"{what} opens {n} JSON objects and arrays, more than the {MAX_JSON_CONTAINERS} embkit allows", path=path)
    if values > MAX_JSON_VALUES:
        raise TooLargeError(f"{what} holds {values} JSON values, more than the {MAX_JSON_VALUES} embkit allows", path=path)


#: Last parts of the dotted names model weights are stored under (``….conv_in.weight``).
WEIGHT_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked", "alpha", "scale", "position_ids")


def looks_like_weight_key(key: Any) -> bool:
    """True for a dotted module path ending in a parameter name (``first_stage_model.….weight``,
    ``lora_unet_….lora_down.weight``): how checkpoints and LoRAs name tensors, never how a
    trigger word is spelled. Such a file beside embeddings is a model, not a damaged embedding."""
    if not isinstance(key, str) or "." not in key:
        return False
    head, _, last = key.rpartition(".")
    return bool(head) and last in WEIGHT_SUFFIXES and " " not in key


def stem_of(path: str) -> str:
    """The file name without its extension: A1111, kohya and multi files are triggered by it."""
    name = os.path.basename(path)
    if name in ("", ".", ".."):  # a folder given as "x/" or "x/."
        name = os.path.basename(os.path.normpath(path))
    for suffix in (".preview.png",):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0] or name


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON-compatible copy of a metadata value (tensors become their list of numbers)."""
    if depth > 16:
        return repr(value)[:200]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or infinity (a file's NaN crashed `inspect --json`)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        if value.numel > 64:  # described without reading it: probing must not load big tensors
            return f"<tensor {list(value.shape)} {value.dtype}>"
        arr = value.array()
        return plain(arr.item() if arr.size == 1 else arr.tolist(), depth + 1)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v, depth + 1) for v in value]
    return repr(value)[:200]

"""A single-file model checkpoint opened without torch: its tensor names, dtypes and shapes, and any
one tensor's values on demand.

* ``.safetensors``: the header alone (:func:`embkit.model.headers.read_st_header`); a tensor's bytes
  are read from its offsets when asked.
* ``.ckpt`` / ``.pt`` / ``.pth`` (torch pickles, what older A1111 checkpoints are): read by embkit's
  own allow-list unpickler (:mod:`embkit.formats.torchfile`) in its checkpoint mode, which also
  allows the data-only globals real checkpoints name (:mod:`embkit.formats.pickle_ckpt`). Nothing
  in the file runs; ``torch.load`` is never called on it. A pickle past embkit's caps, or one naming
  any other global, is refused with the safe alternative named.

``{"state_dict": …}`` wrappers (Lightning saves, nested any depth) are unwrapped as diffusers does.
:func:`write_safetensors` streams a checkpoint's tensors into a ``.safetensors`` file one tensor at
a time (how a ``.ckpt`` reaches diffusers' single-file loader without torch unpickling it).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import EmbkitError, TargetError, TooLargeError, UnsafeFileError
from .headers import read_st_header

#: safetensors dtype codes ↔ embkit's dtype names (bf16 travels as raw uint16 bit patterns).
ST_TO_NAME = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
              "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
NAME_TO_ST = {v: k for k, v in ST_TO_NAME.items()}
_NUMPY = {"float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<u2", "int64": "<i8", "int32": "<i4",
          "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?"}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SAFE_ALTERNATIVE = ("use the model's .safetensors release, or convert the .ckpt to .safetensors once in a sandbox "
                    "(a throw-away container or VM) with a tool you trust")


@dataclass
class TensorInfo:
    """One tensor of a checkpoint: its dtype name (``float16`` …) and shape."""

    dtype: str
    shape: tuple[int, ...]


@dataclass
class Checkpoint:
    """An opened single-file checkpoint: ``tensors`` (name → :class:`TensorInfo`), ``metadata``
    (safetensors ``__metadata__``; empty for pickles), ``container`` (``safetensors`` or ``pickle``)
    and ``extra`` (the non-tensor values of a pickle's top level, e.g. ``global_step``)."""

    path: str
    container: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    _raw: Callable[[str], np.ndarray] | None = field(default=None, repr=False)

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The shape of tensor ``name``, or ``None`` when the checkpoint has no such tensor."""
        info = self.tensors.get(name)
        return info.shape if info else None

    def raw(self, name: str) -> np.ndarray:
        """Tensor ``name`` as stored (bf16 as uint16 bit patterns), read now."""
        if name not in self.tensors or self._raw is None:
            raise TargetError(f"has no tensor {name!r}", path=self.path)
        return self._raw(name)

    def array(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a float32 (or integer) numpy array."""
        arr = self.raw(name)
        if self.tensors[name].dtype == "bfloat16":
            return (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(np.float32) if arr.dtype.kind == "f" else arr


def is_pickle_checkpoint(path: str) -> bool:
    """True for a file named like a torch pickle (``.ckpt``, ``.pt``, ``.pth``, ``.bin``)."""
    return path.lower().endswith(PICKLE_SUFFIXES)


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open a ``.safetensors`` or torch-pickle checkpoint without torch (see the module docstring).
    :class:`TargetError` for an unreadable file, :class:`UnsafeFileError` / :class:`TooLargeError`
    (with the safe alternative named) for a pickle embkit will not read."""
    path = os.fspath(path)
    if path.lower().endswith(".safetensors"):
        return _open_safetensors(path)
    if is_pickle_checkpoint(path):
        return _open_pickle(path)
    raise TargetError("is neither a .safetensors nor a .ckpt checkpoint", path=path)


def _open_safetensors(path: str) -> Checkpoint:
    header, meta, start, _ = read_st_header(path)
    tensors = {}
    for name, entry in header.items():
        dtype = ST_TO_NAME.get(entry.get("dtype"))
        if dtype is None:
            raise TargetError(f"tensor {name!r} has dtype {entry.get('dtype')!r}, which embkit does not read", path=path)
        tensors[name] = TensorInfo(dtype, tuple(entry["shape"]))

    def raw(name: str) -> np.ndarray:
        lo, hi = header[name]["data_offsets"]
        info = tensors[name]
        dt = np.dtype(_NUMPY[info.dtype])
        if int(np.prod(info.shape, dtype=np.int64)) * dt.itemsize != hi - lo:
            raise TargetError(f"tensor {name!r} of shape {list(info.shape)} does not fill its {hi - lo} bytes", path=path)
        with open(path, "rb") as fh:
            fh.seek(start + lo)
            return np.frombuffer(fh.read(hi - lo), dtype=dt).reshape(info.shape)

    return Checkpoint(path, "safetensors", tensors, {str(k): str(v) for k, v in meta.items()}, {}, raw)


def _open_pickle(path: str) -> Checkpoint:
    from ..formats.base import Tensor
    from ..formats.pickle_ckpt import CHECKPOINT_GLOBALS
    from ..formats.torchfile import read_raw

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise TargetError(f"cannot read ({exc.strerror or exc})", path=path) from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise TargetError("is empty", path=path)
        data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        tree = read_raw(data, path, CHECKPOINT_GLOBALS).tree
    except (UnsafeFileError, TooLargeError) as exc:
        raise type(exc)(f"{exc.detail}; embkit will not read this checkpoint: {SAFE_ALTERNATIVE}", path=path) from None
    except EmbkitError as exc:
        raise TargetError(f"cannot read as a torch checkpoint ({exc.detail})", path=path) from None
    except Exception as exc:  # noqa: BLE001  (NotMine and friends: not a torch pickle at all)
        raise TargetError(f"is not a torch checkpoint ({type(exc).__name__})", path=path) from None
    extra: dict[str, Any] = {}
    while isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict):
        extra.update({k: v for k, v in tree.items() if k != "state_dict" and isinstance(v, (int, float, str))})
        tree = tree["state_dict"]
    if not isinstance(tree, dict):
        raise TargetError(f"holds a {type(tree).__name__}, not a state dict", path=path)
    handles = {k: v for k, v in tree.items() if isinstance(k, str) and isinstance(v, Tensor)}
    tensors = {k: TensorInfo(v.dtype, tuple(v.shape)) for k, v in handles.items()}

    def raw(name: str) -> np.ndarray:
        return np.asarray(handles[name].loader()).reshape(tensors[name].shape)

    return Checkpoint(path, "pickle", tensors, {}, extra, raw)


def write_safetensors(checkpoint: Checkpoint, target: str, *, keep: Callable[[str], bool] | None = None) -> str:
    """Write ``checkpoint``'s tensors (those ``keep`` accepts) to a new ``.safetensors`` file at
    ``target``, one tensor in memory at a time. ``target`` must not exist (it is a scratch file)."""
    names = [n for n in checkpoint.tensors if keep is None or keep(n)]
    header: dict[str, Any] = {}
    offset = 0
    for name in names:
        info = checkpoint.tensors[name]
        nbytes = int(np.prod(info.shape, dtype=np.int64)) * np.dtype(_NUMPY[info.dtype]).itemsize
        header[name] = {"dtype": NAME_TO_ST[info.dtype], "shape": list(info.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw_header = json.dumps(header, separators=(",", ":")).encode()
    raw_header += b" " * (-len(raw_header) % 8)
    with open(target, "xb") as fh:
        fh.write(struct.pack("<Q", len(raw_header)) + raw_header)
        for name in names:
            arr = np.ascontiguousarray(checkpoint.raw(name), dtype=np.dtype(_NUMPY[checkpoint.tensors[name].dtype]))
            fh.write(memoryview(arr).cast("B"))
    return target


def tensor_names(checkpoint: Checkpoint, prefix: str) -> Iterator[str]:
    """The names of ``checkpoint``'s tensors that start with ``prefix``."""
    return (n for n in checkpoint.tensors if n.startswith(prefix))


__all__ = ["Checkpoint", "TensorInfo", "open_checkpoint", "write_safetensors", "is_pickle_checkpoint", "SAFE_ALTERNATIVE"]

"""The few pickle globals a *model checkpoint* (``.ckpt``) names beyond a tensor file's, allowed
only when embkit reads a model checkpoint (:func:`embkit.model.checkpoint.open_checkpoint`), never
for embedding files.

Real Stable Diffusion ``.ckpt`` files are PyTorch-Lightning saves: besides the state dict they hold
``global_step``/``epoch`` as numpy scalars (pickled as ``numpy.core.multiarray.scalar`` or, numpy 2,
``numpy._core.multiarray.scalar`` with a ``numpy.dtype`` and the bytes through ``_codecs.encode``),
and the original CompVis files key their ``callbacks`` by the class
``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``. A1111's own restricted unpickler
allows exactly these (AUTOMATIC1111/stable-diffusion-webui ``modules/safe.py``
@05933840f0676dd1a90a7e2ad3f2a0672624b2cd, ``RestrictedUnpickler.find_class``). Each is resolved
here to a data-only stand-in: nothing is imported, no class of the file's is instantiated, and
numpy builds only a plain number from a few bytes of a plain numeric dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsafeFileError

#: numpy dtype names a checkpoint's scalars use (``global_step`` int64, ``epoch`` int64, scores float).
SCALAR_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
#: Longest string ``_codecs.encode`` may turn into bytes (a numpy scalar's bytes are 1-16 long).
MAX_ENCODE_CHARS = 64


class LightningCallbackKey:
    """Stands for the class ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``, which
    old Lightning saves use as a dictionary key; it is only ever a key, never built."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<pytorch_lightning ModelCheckpoint>"

    def __setstate__(self, state: Any) -> None:
        raise UnsafeFileError("pickle tries to set the fields of the Lightning callback class; refusing")


class DTypeStandIn:
    """A numpy dtype as a checkpoint pickles it: ``numpy.dtype(name, False, True)`` followed by a
    BUILD with numpy's state tuple, which is checked for shape and otherwise ignored."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byte order, subdescr, names, fields, elsize, alignment, flags)
        if type(state) is not tuple or len(state) > 9 or any(v is not None and type(v) not in (int, str) for v in state):
            raise UnsafeFileError("pickle gives a numpy dtype an unexpected state; refusing")
        if len(state) > 1 and state[1] not in ("<", "|", "=", ">"):
            raise UnsafeFileError(f"pickle gives a numpy dtype the byte order {state[1]!r}; refusing")
        if len(state) > 1 and state[1] == ">":
            self.dtype = self.dtype.newbyteorder(">")


LIGHTNING_CALLBACK = LightningCallbackKey()


def _dtype(name: Any, align: Any = False, copy: Any = True) -> DTypeStandIn:
    if type(name) is not str or name not in SCALAR_DTYPES or type(align) is not bool or type(copy) is not bool:
        raise UnsafeFileError(f"pickle asks for the numpy dtype {name!r:.40}; embkit reads only plain numeric scalars")
    return DTypeStandIn(np.dtype(name))


def _scalar(dtype: Any, data: Any = None) -> int | float | bool:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` → the Python number it holds."""
    if not isinstance(dtype, DTypeStandIn) or type(data) is not bytes or len(data) != dtype.dtype.itemsize:
        raise UnsafeFileError("numpy scalar rebuilt from something other than a numeric dtype and its bytes; refusing")
    return np.frombuffer(data, dtype=dtype.dtype)[0].item()


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(str, "latin1")``: how protocol-2 pickles carry bytes (a numpy scalar's)."""
    if type(text) is not str or len(text) > MAX_ENCODE_CHARS or encoding not in ("latin1", "latin-1"):
        raise UnsafeFileError("pickle calls _codecs.encode on something other than a short latin1 string; refusing")
    return text.encode("latin1")


#: (module, name) → stand-in, added to :data:`embkit.formats.pickle_allow.ALLOWED_GLOBALS` when a
#: model checkpoint is read. Both numpy spellings (numpy 1 ``numpy.core``, numpy 2 ``numpy._core``).
CHECKPOINT_GLOBALS: dict[tuple[str, str], Any] = {
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): LIGHTNING_CALLBACK,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
}

__all__ = ["CHECKPOINT_GLOBALS", "LIGHTNING_CALLBACK", "LightningCallbackKey", "DTypeStandIn", "SCALAR_DTYPES"]

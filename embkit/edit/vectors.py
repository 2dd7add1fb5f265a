"""What every edit and merge shares: rounding to a slot's stored dtype, picking the slots an
operation acts on, row selections, and building the result with its provenance record."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import OperationError
from ..formats.base import narrow_bf16, widen_bf16
# every dtype spelling (fp16, half, float16 …): the one table, the writers'
from ..formats.writer_base import DTYPE_ALIASES, dtype_name  # noqa: F401
from ..schema import Embedding
from .provenance import describe


def _edited(emb: Embedding, vectors: dict[str, np.ndarray], operation: str, dtypes: dict | None = None, **params: Any) -> Embedding:
    """The edit result: new vectors, the source dropped (it is no longer that file), provenance added."""
    changes: dict[str, Any] = {"vectors": vectors, "source": None}
    if dtypes is not None:
        changes["dtypes"] = dtypes
    out = emb.replace(**changes)
    return out.with_provenance(operation, [describe(emb, history=False)], **params)


def store(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values rounded to a stored dtype: float16/float32/float64 by numpy; bfloat16 rounded to
    nearest even like :func:`embkit.formats.base.narrow_bf16` and widened back to float32. Finite
    values that would overflow (past ±65504 in float16) raise :class:`OperationError`."""
    values = np.asarray(values)
    with np.errstate(over="ignore"):
        if dtype == "bfloat16":
            out = widen_bf16(narrow_bf16(values.astype(np.float32))).reshape(values.shape)
        else:
            out = values.astype(dtype)
    if not np.isfinite(out).all() and np.isfinite(values).all():
        peak = float(np.abs(values).max())
        raise OperationError(f"values up to {peak:g} do not fit in {dtype} (they would become infinite)")
    return out


def targets(emb: Embedding, slot: str | None) -> list[str]:
    """The slots an edit acts on: every input slot, or the one named (an output slot only by name)."""
    if slot is None:
        return list(emb.slots)
    if slot not in emb.vectors:
        raise OperationError(f"embedding {emb.name!r} has no slot {slot!r} (it has {', '.join(emb.vectors)})")
    return [slot]


def _map(emb: Embedding, slot: str | None, fn: Callable[[np.ndarray], np.ndarray], operation: str, *, keep_dtype: bool = True, **params: Any) -> Embedding:
    vectors = dict(emb.vectors)
    for s in targets(emb, slot):
        out = fn(np.asarray(emb.vectors[s], dtype=np.float64)) if keep_dtype else fn(emb.vectors[s])
        vectors[s] = store(out, emb.dtypes[s]) if keep_dtype else out
    if slot is not None:
        params["slot"] = slot
    return _edited(emb, vectors, operation, **params)


def indices(spec: str | int | slice | Sequence[int], count: int, *, what: str = "selection") -> list[int]:
    """Row indices from a selection: ``"0:4"``, ``"-2:"``, ``"0,2,5"``, ``"0:2,7"``, an int, a slice
    or a list of ints. Negative indices count from the end; every index must exist."""
    if isinstance(spec, slice):
        return list(range(count))[spec]
    if isinstance(spec, (int, np.integer)):
        spec = [int(spec)]
    if isinstance(spec, str):
        out: list[int] = []
        for piece in spec.replace(" ", "").split(","):
            if not re.fullmatch(r"-?\d+|-?\d*:-?\d*(:-?\d*)?", piece):
                raise OperationError(f"{what} {spec!r} is not understood; use forms like 0:4, -2:, 0,2,5")
            if ":" in piece:
                parts = [int(p) if p else None for p in piece.split(":")]
                if len(parts) == 3 and parts[2] == 0:
                    raise OperationError(f"{what} {spec!r} has a step of 0")
                out.extend(list(range(count))[slice(*parts)])
            else:
                out.extend(indices([int(piece)], count, what=what))
        return out
    result = []
    for i in spec:
        if not -count <= int(i) < count:
            raise OperationError(f"{what}: vector {i} does not exist (there are {count})")
        result.append(int(i) % count)
    return result

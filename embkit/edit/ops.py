"""Merge and edit operations. Each returns a new :class:`~embkit.schema.Embedding` and records, in
``metadata["provenance"]``, the operation, its parameters and its inputs (name, file SHA-256, a hash
of the vectors).

Edits act on every *input* slot of an embedding alike (an SDXL embedding's ``clip_l`` and ``clip_g``
rows stay paired), or on one slot when ``slot=`` names it. OneTrainer's output slots
(``<slot>_out``) are never token rows: they are carried along unchanged unless ``slot=`` names one.
A merge combines the input slots and carries the first input's output slots (:mod:`.merges`; this
module hands its names on, so ``embkit.ops`` offers every operation).

Values an edit changes are rounded to the slot's stored dtype, so what is in memory is exactly what a
writer stores. Arithmetic is done in float64. No torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import OperationError
from ..schema import DTYPES, Embedding
from .merges import MODES, SLERP_DOT_THRESHOLD, as_embedding, concat, lerp, mean, merge, slerp, slerp_rows, weighted_sum
from .provenance import describe, vectors_sha256
from .vectors import DTYPE_ALIASES, _edited, _map, dtype_name, indices, store, targets

def rename(emb: Embedding, name: str) -> Embedding:
    """The same vectors under a new trigger name."""
    if not isinstance(name, str) or not name.strip():
        raise OperationError("a new name must be a non-empty string")
    # names the file stored under the old name stop being true: a kohya file's stored_name, the
    # modelspec title that is the name
    meta = {k: v for k, v in emb.metadata.items() if k != "stored_name"}
    if meta.get("modelspec.title") in (emb.name, emb.metadata.get("stored_name")):
        meta["modelspec.title"] = name
    out = emb.replace(name=name, metadata=meta, source=None)
    return out.with_provenance("rename", [describe(emb, history=False)], old=emb.name, new=name)


def scale(emb: Embedding, factor: float, *, slot: str | None = None) -> Embedding:
    """Every vector multiplied by ``factor`` (all input slots, or one)."""
    factor = float(factor)
    return _map(emb, slot, lambda a: a * factor, "scale", factor=factor)


def normalize(emb: Embedding, target: float, *, slot: str | None = None, each: bool = False) -> Embedding:
    """Scale to a target L2 norm: by default each slot as a whole, so that its mean vector norm
    becomes ``target`` (the vectors keep their relative sizes); with ``each`` every vector gets
    norm ``target``. All-zero vectors stay zero."""
    target = float(target)
    if not np.isfinite(target) or target < 0:
        raise OperationError(f"target norm must be a non-negative number, got {target}")

    def fn(a: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        if each:
            return np.divide(a * target, norms, out=np.zeros_like(a), where=norms > 0)
        mean = float(norms.mean())
        if mean == 0:
            raise OperationError(f"embedding {emb.name!r}: cannot scale all-zero vectors to norm {target}")
        return a * (target / mean)

    return _map(emb, slot, fn, "normalize", target=target, each=each)


def _pick(emb: Embedding, spec: Any, slot: str | None, operation: str, **params: Any) -> Embedding:
    picked: dict[str, list[int]] = {}
    for s in targets(emb, slot):
        picked[s] = indices(spec, emb.vectors[s].shape[0], what=f"{operation} of {s}")
        if not picked[s]:
            raise OperationError(f"{operation} {spec!r} keeps no vectors of {emb.name!r} ({s} has {emb.vectors[s].shape[0]})")
    vectors = dict(emb.vectors)
    for s, rows in picked.items():
        vectors[s] = emb.vectors[s][rows]
    if slot is not None:
        params["slot"] = slot
    return _edited(emb, vectors, operation, **params)


def select(emb: Embedding, which: str | int | slice | Sequence[int], *, slot: str | None = None) -> Embedding:
    """Keep the rows picked by ``which`` (see :func:`indices`), in that order, in every input slot
    alike (or in one slot)."""
    if isinstance(which, slice):
        spec: Any = f"{'' if which.start is None else which.start}:{'' if which.stop is None else which.stop}" + (
            "" if which.step is None else f":{which.step}"
        )
    else:
        spec = which if isinstance(which, (str, int)) else [int(i) for i in which]
    return _pick(emb, which, slot, "select", which=spec)


def crop(emb: Embedding, count: int, *, slot: str | None = None) -> Embedding:
    """Keep the first ``count`` vectors (frees prompt tokens; the first vectors usually matter most)."""
    if int(count) < 1:
        raise OperationError(f"crop needs at least 1 vector, got {count}")
    return _pick(emb, slice(0, int(count)), slot, "crop", count=int(count))


def pad(emb: Embedding, count: int, *, slot: str | None = None) -> Embedding:
    """Append all-zero vectors until each slot has ``count`` rows."""
    count = int(count)

    def fn(a: np.ndarray) -> np.ndarray:
        if count < a.shape[0]:
            raise OperationError(f"cannot pad {emb.name!r} to {count} vectors: it has {a.shape[0]} (use crop)")
        return np.concatenate([a, np.zeros((count - a.shape[0], a.shape[1]), dtype=a.dtype)])

    return _map(emb, slot, fn, "pad", keep_dtype=False, count=count)


def reorder(emb: Embedding, order: Sequence[int] | str, *, slot: str | None = None) -> Embedding:
    """Rows in a new order; ``order`` must name every row exactly once."""
    for s in targets(emb, slot):
        n = emb.vectors[s].shape[0]
        rows = indices(order, n, what="order")
        if sorted(rows) != list(range(n)):
            raise OperationError(f"order {order!r} is not a permutation of the {n} vectors of {emb.name!r} {s}")
    spec = order if isinstance(order, str) else [int(i) for i in order]
    return _pick(emb, order, slot, "reorder", order=spec)


def drop_zero(emb: Embedding, *, slot: str | None = None) -> Embedding:
    """Drop vectors that are all zero, judged across the slots acted on (a row goes only when it is
    zero in every one of them, so paired slots stay paired)."""
    slots = targets(emb, slot)
    n = max(emb.vectors[s].shape[0] for s in slots)
    keep = np.zeros(n, dtype=bool)
    for s in slots:
        a = emb.vectors[s]
        keep[: a.shape[0]] |= np.any(a != 0, axis=1)
    if not keep.any():
        raise OperationError(f"embedding {emb.name!r}: every vector is zero; nothing would be left")
    vectors = dict(emb.vectors)
    for s in slots:
        vectors[s] = emb.vectors[s][keep[: emb.vectors[s].shape[0]]]
    dropped = [int(i) for i in np.flatnonzero(~keep)]
    params: dict[str, Any] = {"dropped": dropped}
    if slot is not None:
        params["slot"] = slot
    return _edited(emb, vectors, "drop_zero", **params)


def cast(emb: Embedding, dtype: str, *, slot: str | None = None) -> Embedding:
    """Store in another dtype (float16, bfloat16, float32, float64; every spelling of
    :data:`~embkit.formats.writer_base.DTYPE_ALIASES`: fp16, half, bf16, fp32 …). The values are
    rounded now, so a later write is exact; :attr:`Embedding.dtypes` records the choice."""
    try:
        dtype = dtype_name(dtype)
    except ValueError:
        raise OperationError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} (or fp16, half, bf16, fp32, fp64)") from None
    vectors, dtypes = dict(emb.vectors), dict(emb.dtypes)
    for s in targets(emb, slot):
        vectors[s] = store(emb.vectors[s], dtype)
        dtypes[s] = dtype
    params: dict[str, Any] = {"dtype": dtype}
    if slot is not None:
        params["slot"] = slot
    return _edited(emb, vectors, "cast", dtypes=dtypes, **params)


__all__ = [
    "MODES", "SLERP_DOT_THRESHOLD", "DTYPE_ALIASES", "as_embedding", "targets", "merge", "concat", "weighted_sum", "mean", "lerp", "slerp", "slerp_rows", "scale", "normalize",
    "select", "crop", "pad", "reorder", "drop_zero", "rename", "cast", "indices", "describe", "vectors_sha256", "store",
]

"""Merge and edit operations. Each returns a new :class:`~embkit.schema.Embedding` and records, in
``metadata["provenance"]``, the operation, its parameters and its inputs (name, file SHA-256, a hash
of the vectors).

Edits act on every *input* slot of an embedding alike (an SDXL embedding's ``clip_l`` and ``clip_g``
rows stay paired), or on one slot when ``slot=`` names it. OneTrainer's output slots
(``<slot>_out``) are never token rows: they are carried along unchanged unless ``slot=`` names one.
A merge combines the input slots and carries the first input's output slots.

Values an edit changes are rounded to the slot's stored dtype, so what is in memory is exactly what a
writer stores. Arithmetic is done in float64. No torch.
"""

from __future__ import annotations

import os

import re
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import OperationError
from .formats.base import narrow_bf16, widen_bf16
from .provenance import describe, vectors_sha256
from .schema import DTYPES, Embedding

MODES = ("concat", "sum", "mean", "lerp", "slerp")
#: Above this |cosine| two vectors are treated as parallel and slerp falls back to lerp (the usual
#: threshold of the reference implementation: the sin(omega) division loses precision there).
SLERP_DOT_THRESHOLD = 0.9995
#: Short dtype spellings the CLI accepts.
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32", "fp64": "float64"}


# -- helpers -------------------------------------------------------------------------------------
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


# -- edits ---------------------------------------------------------------------------------------
def rename(emb: Embedding, name: str) -> Embedding:
    """The same vectors under a new trigger name."""
    if not isinstance(name, str) or not name.strip():
        raise OperationError("a new name must be a non-empty string")
    out = emb.replace(name=name, source=None)
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
    """Store in another dtype (float16, bfloat16, float32, float64; fp16/bf16/fp32 accepted). The
    values are rounded now, so a later write is exact; :attr:`Embedding.dtypes` records the choice."""
    dtype = DTYPE_ALIASES.get(dtype, dtype)
    if dtype not in DTYPES:
        raise OperationError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} (or fp16, bf16, fp32)")
    vectors, dtypes = dict(emb.vectors), dict(emb.dtypes)
    for s in targets(emb, slot):
        vectors[s] = store(emb.vectors[s], dtype)
        dtypes[s] = dtype
    params: dict[str, Any] = {"dtype": dtype}
    if slot is not None:
        params["slot"] = slot
    return _edited(emb, vectors, "cast", dtypes=dtypes, **params)


# -- merges --------------------------------------------------------------------------------------
def _who(emb: Embedding) -> str:
    """An input as errors name it: its trigger, and its file when it came from one."""
    return f"{emb.name!r} from {emb.source.path}" if emb.source is not None else repr(emb.name)


def _check_compatible(embs: Sequence[Embedding]) -> None:
    if not embs:
        raise OperationError("nothing to merge: no embeddings given")
    first = embs[0]
    for other in embs[1:]:
        if set(other.slots) != set(first.slots):
            raise OperationError(
                f"cannot combine {_who(first)} ({first.family}: {', '.join(first.slots)}) with {_who(other)} "
                f"({other.family}: {', '.join(other.slots)}): different model families; port one first "
                "(embkit edit --port sd1|sdxl)"
            )
        for s in first.slots:
            wa, wb = first.vectors[s].shape[1], other.vectors[s].shape[1]
            if wa != wb:
                raise OperationError(f"cannot combine {_who(first)} and {_who(other)}: their {s} vectors are {wa} and {wb} wide")


def _result_dtype(embs: Sequence[Embedding], slot: str) -> str:
    """The inputs' stored dtype when they agree, else the widest of them (float32 at least)."""
    kinds = {e.dtypes[slot] for e in embs}
    if len(kinds) == 1:
        return kinds.pop()
    return "float64" if "float64" in kinds else "float32"


def _aligned(embs: Sequence[Embedding], slot: str, pad_rows: bool, mode: str) -> list[np.ndarray]:
    arrays = [np.asarray(e.vectors[slot], dtype=np.float64) for e in embs]
    counts = [a.shape[0] for a in arrays]
    n = max(counts)
    if len(set(counts)) > 1:
        if not pad_rows:
            listing = ", ".join(f"{_who(e)} has {c}" for e, c in zip(embs, counts))
            raise OperationError(f"{mode} needs equal vector counts but {listing} ({slot}); pass pad=True (--pad) to zero-pad")
        arrays = [np.concatenate([a, np.zeros((n - a.shape[0], a.shape[1]))]) for a in arrays]
    return arrays


def slerp_rows(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation of each row of ``a`` towards the same row of ``b``:
    ``sin((1-t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b`` with ``cos Ω`` the rows' cosine; rows that are
    nearly parallel (|cos Ω| > 0.9995) or zero are interpolated linearly instead."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    out = (1 - t) * a + t * b
    ok = (na > 0) & (nb > 0)
    dot = np.zeros_like(na)
    dot[ok] = np.clip(np.sum(a[ok] * b[ok], axis=1) / (na[ok] * nb[ok]), -1.0, 1.0)
    curved = ok & (np.abs(dot) <= SLERP_DOT_THRESHOLD)
    omega = np.arccos(dot[curved])
    so = np.sin(omega)
    wa = (np.sin((1 - t) * omega) / so)[:, None]
    wb = (np.sin(t * omega) / so)[:, None]
    out[curved] = wa * a[curved] + wb * b[curved]
    return out


def _merge_weights(mode: str, n: int, weights: Sequence[float] | None) -> list[float]:
    if mode == "concat":
        if weights is not None:
            raise OperationError("concat takes no weights (it stacks the vectors)")
        return []
    if mode in ("lerp", "slerp"):
        if n != 2:
            raise OperationError(f"{mode} blends exactly two embeddings, got {n}")
        if weights is None:
            return [0.5, 0.5]
        w = [float(x) for x in weights]
        if len(w) == 1:  # t, the share of the second input
            return [1 - w[0], w[0]]
        if len(w) != 2 or w[0] + w[1] == 0:
            raise OperationError(f"{mode} takes one weight (t) or two weights that do not sum to 0, got {list(weights)}")
        return [w[0] / (w[0] + w[1]), w[1] / (w[0] + w[1])]
    if weights is None:
        return [1.0 / n if mode == "mean" else 1.0] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise OperationError(f"{len(w)} weights for {n} embeddings")
    if not all(np.isfinite(w)):
        raise OperationError(f"weights must be finite numbers, got {w}")
    if mode == "mean":
        total = sum(w)
        if total == 0:
            raise OperationError("mean weights sum to 0")
        w = [x / total for x in w]
    return w


def _combine(embs: Sequence[Embedding], s: str, mode: str, w: list[float], pad_rows: bool) -> np.ndarray:
    if mode == "concat":
        return np.concatenate([np.asarray(e.vectors[s], dtype=np.float64) for e in embs])
    arrays = _aligned(embs, s, pad_rows, mode)
    if mode == "slerp":
        return slerp_rows(arrays[0], arrays[1], w[1])
    return sum(wi * a for wi, a in zip(w, arrays))


def as_embedding(value: Any) -> Embedding:
    """An :class:`Embedding` as given, or read from a path; anything else a clear TypeError."""
    if isinstance(value, Embedding):
        return value
    if isinstance(value, (str, os.PathLike)):
        from .io import read

        return read(value)
    raise TypeError(f"expected an Embedding or a path, got {type(value).__name__}")


def merge(
    embeddings: Iterable[Embedding | str | os.PathLike],
    mode: str = "concat",
    weights: Sequence[float] | None = None,
    *,
    pad: bool = False,
    name: str | None = None,
    slot: str | None = None,
) -> Embedding:
    """Combine embeddings of one family into a new one.

    Modes: ``concat`` stacks the vectors (a 2-vector and a 3-vector make a 5-vector embedding);
    ``sum`` is ``Σ wᵢ·xᵢ`` (weights default to 1); ``mean`` the weighted average (weights are
    normalised to sum to 1); ``lerp`` and ``slerp`` blend two, with one weight ``t`` (share of the
    second, default 0.5) or two weights normalised to a share. When vector counts differ, the
    arithmetic modes refuse unless ``pad`` zero-pads the shorter ones. Inputs of different families
    or widths are refused with :class:`~embkit.errors.OperationError`. The result is named ``name``
    (default: the input names joined with ``_``), carries the first input's output slots, and records
    every input (hash, name, weight) in ``metadata["provenance"]``. With ``slot``, only that slot
    is combined and every other slot is the first input's, unchanged. Inputs may be paths (each
    file read with :func:`embkit.read`), as :func:`embkit.validate` and ``apply`` take them.
    """
    embs = [as_embedding(e) for e in embeddings]
    if mode not in MODES:
        raise OperationError(f"unknown merge mode {mode!r}; use one of {', '.join(MODES)}")
    _check_compatible(embs)
    w = _merge_weights(mode, len(embs), weights)
    vectors: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    if slot is not None:
        for e in embs:
            targets(e, slot)
    for s in embs[0].slots:
        if slot is not None and s != slot:
            vectors[s], dtypes[s] = embs[0].vectors[s], embs[0].dtypes[s]
            continue
        dtype = _result_dtype(embs, s)
        vectors[s] = store(_combine(embs, s, mode, w, pad), dtype)
        dtypes[s] = dtype
    if slot is not None and slot not in embs[0].slots:  # an output slot named explicitly
        dtypes[slot] = _result_dtype(embs, slot)
        vectors[slot] = store(_combine(embs, slot, mode, w, pad), dtypes[slot])
    for s in embs[0].output_slots:
        if s in vectors:
            continue
        vectors[s] = embs[0].vectors[s]
        dtypes[s] = embs[0].dtypes[s]
    inputs = [describe(e) for e in embs]
    for rec, wi in zip(inputs, w):
        rec["weight"] = wi
    params: dict[str, Any] = {"mode": mode}
    if mode in ("lerp", "slerp"):
        params["t"] = w[1]
    if pad:
        params["pad"] = True
    if slot is not None:
        params["slot"] = slot
    result = Embedding(name=name or "_".join(e.name for e in embs), vectors=vectors, dtypes=dtypes)
    return result.with_provenance(f"merge.{mode}", inputs, **params)


def concat(embeddings: Iterable[Embedding], *, name: str | None = None) -> Embedding:
    """Stack the vectors of several embeddings (``merge(..., "concat")``)."""
    return merge(embeddings, "concat", name=name)


def weighted_sum(embeddings: Iterable[Embedding], weights: Sequence[float] | None = None, *, pad: bool = False, name: str | None = None) -> Embedding:
    """``Σ wᵢ·xᵢ`` (``merge(..., "sum", weights)``)."""
    return merge(embeddings, "sum", weights, pad=pad, name=name)


def mean(embeddings: Iterable[Embedding], weights: Sequence[float] | None = None, *, pad: bool = False, name: str | None = None) -> Embedding:
    """Weighted average (``merge(..., "mean", weights)``)."""
    return merge(embeddings, "mean", weights, pad=pad, name=name)


def lerp(a: Embedding, b: Embedding, t: float = 0.5, *, pad: bool = False, name: str | None = None) -> Embedding:
    """``(1-t)·a + t·b``."""
    return merge([a, b], "lerp", [t], pad=pad, name=name)


def slerp(a: Embedding, b: Embedding, t: float = 0.5, *, pad: bool = False, name: str | None = None) -> Embedding:
    """Spherical interpolation per vector (see :func:`slerp_rows`)."""
    return merge([a, b], "slerp", [t], pad=pad, name=name)


__all__ = [
    "MODES", "merge", "concat", "weighted_sum", "mean", "lerp", "slerp", "slerp_rows", "scale", "normalize",
    "select", "crop", "pad", "reorder", "drop_zero", "rename", "cast", "indices", "describe", "vectors_sha256", "store",
]

"""Merges: several embeddings into one (concatenated, summed, averaged, interpolated, or by a weight
expression). Each result records its inputs and parameters in ``metadata["provenance"]``."""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import OperationError
from ..schema import Embedding
from .provenance import describe
from .vectors import store, targets

MODES = ("concat", "sum", "mean", "lerp", "slerp")
#: Above this |cosine| two vectors are treated as parallel and slerp falls back to lerp (the usual
#: threshold of the reference implementation: the sin(omega) division loses precision there).
SLERP_DOT_THRESHOLD = 0.9995


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
        from ..io import read

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

"""A text encoder's token-embedding matrix, read without torch, and the nearest tokens to vectors.

:class:`TokenMatrix` memory-maps one 2-D tensor of a safetensors file, found by name: a real
``text_encoder_2`` is 1.4 GB and only this tensor (or a few of its rows) is needed; a single-file
checkpoint's header gives the same tensor's offsets. :func:`nearest` ranks a matrix's rows by cosine
similarity to each vector, as Embedding Inspector does (every row, special tokens included), fast:
one float32 matrix product against pre-normalised rows, ``argpartition`` for the top ``k``, then
the few candidates re-scored exactly in float64. ``embkit port --via`` (the single nearest token)
and ``embkit inspect --nearest`` (the ``k`` nearest) both use it.
"""

from __future__ import annotations

import mmap
import os
from typing import Callable, Sequence

import numpy as np

from ..errors import BrokenFileError, TargetError
from ..formats.base import NUMPY_DTYPES, widen_bf16
from ..formats.safetensors_file import ST_DTYPES, accepts, read_header

#: Weight files tried in each encoder folder, in order (diffusers layout, then its fp16 variant).
WEIGHT_FILES = ("model.safetensors", "model.fp16.safetensors")
#: Tensor names of the token-embedding matrix in transformers' CLIP text models.
TOKEN_EMBEDDING_NAMES = ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight")
#: Scores within this of the k-th best are re-scored exactly (float32 rounding cannot reorder more).
RESCORE_MARGIN = 1e-4
#: At most this many candidates beyond ``k`` are re-scored (a matrix of identical rows ties them all).
MAX_EXTRA = 256


class TokenMatrix:
    """One ``(vocab, width)`` float tensor of a safetensors file, memory-mapped.

    ``name`` picks the tensor; without it the first of :data:`TOKEN_EMBEDDING_NAMES`, else any
    tensor whose name ends in ``token_embedding.weight``. ``width``, when given, is checked."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, width: int | None = None):
        path = os.fspath(path)
        if os.path.getsize(path) < 9:
            raise BrokenFileError("is too short to be a safetensors file", path=path)
        with open(path, "rb") as fh:
            self._data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            if not accepts(bytes(self._data[:9])):
                raise BrokenFileError("is not a safetensors file", path=path)
            header, _, start = read_header(self._data, path)
            if name is None:
                name = next((n for n in TOKEN_EMBEDDING_NAMES if n in header), None)
                name = name or next((n for n in header if n.endswith("token_embedding.weight")), None)
            if name is None or name not in header:
                raise TargetError(f"holds no {name or 'token_embedding.weight'} tensor", path=path)
            entry = header[name]
            self.dtype = ST_DTYPES.get(entry["dtype"], entry["dtype"])
            if len(entry["shape"]) != 2 or (width is not None and entry["shape"][1] != width):
                raise TargetError(f"{name} has shape {entry['shape']}; expected [vocab, {width or 'width'}]", path=path)
            if self.dtype not in ("float16", "bfloat16", "float32", "float64"):
                raise BrokenFileError(f"{name} has dtype {entry['dtype']}; expected floats", path=path)
            self.vocab, self.width = entry["shape"]
            if entry["data_offsets"][1] - entry["data_offsets"][0] != self.vocab * self.width * NUMPY_DTYPES[self.dtype].itemsize:
                raise BrokenFileError(f"{name} of shape {entry['shape']} does not fill its bytes", path=path)
        except BaseException:
            self._data.close()
            raise
        self.path, self.name = path, name
        self._offset = start + entry["data_offsets"][0]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, encoder: str, width: int | None = None) -> "TokenMatrix":
        """The token matrix of ``<folder>/<encoder>/model.safetensors`` (or its fp16 variant)."""
        base = os.path.join(os.fspath(folder), encoder)
        path = next((os.path.join(base, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(base, f))), None)
        if path is None:
            raise TargetError(f"no {' or '.join(WEIGHT_FILES)} in {encoder}/ (the text encoder's weights are needed)", path=folder)
        return cls(path, None, width)

    def _decode(self, raw: bytes, rows: int) -> np.ndarray:
        arr = np.frombuffer(raw, dtype=NUMPY_DTYPES[self.dtype])
        if self.dtype == "bfloat16":
            arr = widen_bf16(arr)
        return arr.reshape(rows, self.width).astype(np.float32)

    def matrix(self) -> np.ndarray:
        """All rows as float32."""
        size = self.vocab * self.width * NUMPY_DTYPES[self.dtype].itemsize
        return self._decode(self._data[self._offset : self._offset + size], self.vocab)

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        """Only the rows ``ids``, as float32 (reads a few kilobytes, not the whole matrix)."""
        step = self.width * NUMPY_DTYPES[self.dtype].itemsize
        out = [self._decode(self._data[self._offset + i * step : self._offset + (i + 1) * step], 1) for i in ids]
        return np.concatenate(out) if out else np.zeros((0, self.width), np.float32)

    def close(self) -> None:
        self._data.close()


def token_embeddings(folder: str | os.PathLike, encoder: str, width: int) -> np.ndarray:
    """The ``(vocab, width)`` token-embedding matrix of ``<folder>/<encoder>/model.safetensors``
    as float32, found by name (``…token_embedding.weight``)."""
    tm = TokenMatrix.from_folder(folder, encoder, width)
    try:
        return tm.matrix()
    finally:
        tm.close()


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """The rows scaled to length 1, as float32 (zero rows stay zero): computed once per matrix, so
    that each cosine is one dot product."""
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def nearest(vectors: np.ndarray, unit: np.ndarray, k: int, rows: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``vectors``, the ``k`` rows of the matrix with the highest cosine similarity,
    best first: ``(ids, cosines)``, each ``(len(vectors), k)``. ``unit`` is :func:`unit_rows` of
    the matrix and ``rows(ids)`` gives its raw rows, for the exact float64 re-scoring of the
    candidates. Ties go to the lower id; a zero vector matches ids ``0 … k-1`` with cosine 0."""
    v = np.asarray(vectors, dtype=np.float64)
    k = max(1, min(int(k), unit.shape[0]))
    vn = np.linalg.norm(v, axis=1, keepdims=True)
    vu = np.divide(v, vn, out=np.zeros_like(v), where=vn > 0)
    with np.errstate(all="ignore"):  # a NaN vector scores NaN everywhere; it is answered below
        scores = vu.astype(np.float32) @ unit.T
    wide = min(k + MAX_EXTRA, unit.shape[0])
    # one partition for every vector: the `wide` best scores of each row, unordered
    tops = np.argpartition(-scores, wide - 1, axis=1)[:, :wide] if wide < unit.shape[0] else np.broadcast_to(np.arange(wide), (len(v), wide))
    ids = np.empty((len(v), k), dtype=np.int64)
    cos = np.empty((len(v), k), dtype=np.float64)
    for i, (row, s, top) in enumerate(zip(vu, scores, tops)):
        if not vn[i, 0] > 0 or not np.isfinite(row).all():
            ids[i], cos[i] = np.arange(k), 0.0
            continue
        got = s[top]
        kth = np.partition(got, len(top) - k)[len(top) - k]
        cand = top[got >= kth - RESCORE_MARGIN]
        raw = np.asarray(rows(cand), dtype=np.float64)
        norms = np.linalg.norm(raw, axis=1)
        exact = np.divide(raw @ row, norms, out=np.zeros(len(cand)), where=norms > 0)
        order = np.lexsort((cand, -exact))[:k]
        ids[i], cos[i] = cand[order], exact[order]
    return ids, cos


def nearest_tokens(vectors: np.ndarray, vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``vectors``, the index of the ``vocab`` row with the highest cosine, and that
    cosine (the float64 answer). Zero rows match token 0 with cosine 0. Ties go to the lowest index."""
    m = np.asarray(vocab, dtype=np.float32)
    ids, cos = nearest(vectors, unit_rows(m), 1, lambda idx: m[idx])
    return ids[:, 0], cos[:, 0]


__all__ = ["TokenMatrix", "token_embeddings", "unit_rows", "nearest", "nearest_tokens", "WEIGHT_FILES", "TOKEN_EMBEDDING_NAMES"]

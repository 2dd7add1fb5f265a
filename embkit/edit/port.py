"""Port embeddings between SD1 (CLIP-L) and SDXL (CLIP-L + CLIP-G).

* SDXL → SD1: keep the CLIP-L half (exact: SDXL's first encoder is SD1's CLIP-L).
* SD1 → SDXL, ``zero``: a zero CLIP-G half. Weak: the second encoder then sees nothing, so the
  embedding carries about half its effect. The warning is recorded in the provenance.
* SD1 → SDXL, ``nearest-token``: given a local SDXL model folder, each CLIP-L vector is matched to
  the vocabulary token whose CLIP-L row is nearest (cosine), and that token's CLIP-G row becomes the
  CLIP-G vector. The two token-embedding matrices are read with embkit's own safetensors reader
  (no torch); a real SDXL folder's matrices are 49408×768 and 49408×1280.

The method, and for nearest-token the token ids and cosines, go into ``metadata["provenance"]``.
"""

from __future__ import annotations

import mmap
import os
from typing import Any, Sequence

import numpy as np

from ..errors import BrokenFileError, OperationError, TargetError
from ..formats.base import NUMPY_DTYPES, widen_bf16
from ..formats.safetensors_file import ST_DTYPES, accepts, read_header
from .merges import as_embedding
from .vectors import store
from .provenance import describe
from ..schema import SLOT_WIDTHS, Embedding

ZERO_WARNING = (
    "the CLIP-G half is all zeros: SDXL's second text encoder sees nothing of this embedding, so it "
    "works weakly at best; pass a local SDXL model folder (--via) for nearest-token transfer"
)
#: Weight files tried in each encoder folder, in order (diffusers layout, then its fp16 variant).
WEIGHT_FILES = ("model.safetensors", "model.fp16.safetensors")
#: Tensor names of the token-embedding matrix in transformers' CLIP text models.
TOKEN_EMBEDDING_NAMES = ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight")


class TokenMatrix:
    """The token-embedding tensor of one text encoder's safetensors file, memory-mapped: a real
    ``text_encoder_2`` is 1.4 GB and only this tensor (or a few of its rows) is needed."""

    def __init__(self, folder: str | os.PathLike, encoder: str, width: int):
        base = os.path.join(os.fspath(folder), encoder)
        path = next((os.path.join(base, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(base, f))), None)
        if path is None:
            raise TargetError(f"no {' or '.join(WEIGHT_FILES)} in {encoder}/ (a diffusers SDXL folder is needed)", path=folder)
        if os.path.getsize(path) < 9:
            raise BrokenFileError("is too short to be a safetensors file", path=path)
        with open(path, "rb") as fh:
            self._data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            if not accepts(bytes(self._data[:9])):
                raise BrokenFileError("is not a safetensors file", path=path)
            header, _, start = read_header(self._data, path)
            name = next((n for n in TOKEN_EMBEDDING_NAMES if n in header), None)
            name = name or next((n for n in header if n.endswith("token_embedding.weight")), None)
            if name is None:
                raise TargetError("holds no token_embedding.weight tensor", path=path)
            entry = header[name]
            self.dtype = ST_DTYPES.get(entry["dtype"], entry["dtype"])
            if len(entry["shape"]) != 2 or entry["shape"][1] != width:
                raise TargetError(f"{name} has shape {entry['shape']}; expected [vocab, {width}]", path=path)
            if self.dtype not in ("float16", "bfloat16", "float32", "float64"):
                raise BrokenFileError(f"{name} has dtype {entry['dtype']}; expected floats", path=path)
        except BaseException:
            self._data.close()
            raise
        self.path, self.name = path, name
        self.vocab, self.width = entry["shape"]
        self._offset = start + entry["data_offsets"][0]

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
    tm = TokenMatrix(folder, encoder, width)
    try:
        return tm.matrix()
    finally:
        tm.close()


def nearest_tokens(vectors: np.ndarray, vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``vectors``, the index of the ``vocab`` row with the highest cosine, and that
    cosine. Zero rows match token 0 with cosine 0. Ties go to the lowest index.

    The full scan runs in float32 (fast on 49408 rows); the few candidates within 1e-4 of the best
    are then compared again in float64, so the answer is the float64 argmax."""
    v = np.asarray(vectors, dtype=np.float64)
    m = np.asarray(vocab, dtype=np.float32)
    vn = np.linalg.norm(v, axis=1, keepdims=True)
    vu = np.divide(v, vn, out=np.zeros_like(v), where=vn > 0)
    mn = np.linalg.norm(m, axis=1).astype(np.float32)
    inv = np.divide(1.0, mn, out=np.zeros_like(mn), where=mn > 0)
    cos32 = (vu.astype(np.float32) @ m.T) * inv
    ids, best = [], []
    for row, c in zip(vu, cos32):
        cand = np.flatnonzero(c >= c.max() - 1e-4)
        cm = m[cand].astype(np.float64)
        cn = np.linalg.norm(cm, axis=1)
        exact = np.divide(cm @ row, cn, out=np.zeros(len(cand)), where=cn > 0)
        k = int(np.argmax(exact))
        ids.append(int(cand[k]))
        best.append(float(exact[k]))
    return np.asarray(ids, dtype=np.int64), np.asarray(best)


def to_sd1(emb: Embedding) -> Embedding:
    """SDXL (or any family with CLIP-L) → SD1: the CLIP-L rows, and ``clip_l_out`` if present."""
    if "clip_l" not in emb.slots:
        raise OperationError(f"embedding {emb.name!r} ({emb.family}) has no CLIP-L vectors to port to sd1")
    if emb.slots == ("clip_l",):
        raise OperationError(f"embedding {emb.name!r} is already sd1 (CLIP-L only)")
    keep = [s for s in emb.vectors if s in ("clip_l", "clip_l_out")]
    dropped = [s for s in emb.vectors if s not in keep]
    out = emb.replace(vectors={s: emb.vectors[s] for s in keep}, source=None)
    return out.with_provenance("port", [describe(emb, history=False)], to="sd1", method="take-clip-l", dropped=dropped)


def to_sdxl(emb: Embedding, via: str | os.PathLike | None = None) -> Embedding:
    """SD1 → SDXL. Without ``via``: a zero CLIP-G half (weak; the warning is in the provenance).
    With ``via`` (a local diffusers SDXL folder): nearest-token transfer through its vocabulary."""
    if emb.slots != ("clip_l",):
        raise OperationError(f"embedding {emb.name!r} is {emb.family} ({', '.join(emb.slots)}); only sd1 (CLIP-L) ports to sdxl")
    rows = emb.vectors["clip_l"]
    g_width = SLOT_WIDTHS["clip_g"]
    params: dict[str, Any] = {"to": "sdxl"}
    if via is None:
        clip_g = np.zeros((rows.shape[0], g_width), dtype=np.float32)
        params.update(method="zero-clip-g", warning=ZERO_WARNING)
        dtype = "float32" if emb.dtypes["clip_l"] == "float64" else emb.dtypes["clip_l"]
    else:
        enc_l = TokenMatrix(via, "text_encoder", rows.shape[1])
        try:
            enc_g = TokenMatrix(via, "text_encoder_2", g_width)
        except BaseException:
            enc_l.close()
            raise
        try:
            if enc_l.vocab != enc_g.vocab:
                raise TargetError(
                    f"text_encoder has {enc_l.vocab} tokens but text_encoder_2 has {enc_g.vocab}; they must share a vocabulary",
                    path=via,
                )
            ids, cos = nearest_tokens(rows, enc_l.matrix())
            clip_g = enc_g.rows(ids)
        finally:
            enc_l.close()
            enc_g.close()
        dtype = emb.dtypes["clip_l"] if emb.dtypes["clip_l"] != "float64" else "float32"
        params.update(
            method="nearest-token",
            via=os.path.basename(os.path.normpath(os.fspath(via))),
            token_ids=[int(i) for i in ids],
            cosines=[round(float(c), 6) for c in cos],
        )
    vectors = dict(emb.vectors)
    vectors["clip_g"] = store(clip_g, dtype)
    dtypes = dict(emb.dtypes)
    dtypes["clip_g"] = dtype
    out = emb.replace(vectors=vectors, dtypes=dtypes, source=None)
    return out.with_provenance("port", [describe(emb, history=False)], **params)


def port(emb: Embedding | str | os.PathLike, family: str, *, via: str | os.PathLike | None = None) -> Embedding:
    """Port to ``"sd1"`` or ``"sdxl"`` (see :func:`to_sd1`, :func:`to_sdxl`); ``emb`` may be a path."""

    emb = as_embedding(emb)
    family = family.strip().lower() if isinstance(family, str) else family
    if family == "sd1":
        if via is not None:
            raise OperationError("porting to sd1 takes no model folder (it keeps the CLIP-L half)")
        return to_sd1(emb)
    if family == "sdxl":
        return to_sdxl(emb, via)
    raise OperationError(f"cannot port to {family!r}; embkit ports between sd1 and sdxl")


def port_warning(emb: Embedding) -> str | None:
    """The warning the last port recorded (the zero CLIP-G method), if any."""
    history = emb.provenance
    if history and history[-1].get("operation") == "port":
        params = history[-1].get("params")
        return params.get("warning") if isinstance(params, dict) else None
    return None


__all__ = ["port", "to_sd1", "to_sdxl", "nearest_tokens", "token_embeddings", "TokenMatrix", "port_warning", "ZERO_WARNING"]

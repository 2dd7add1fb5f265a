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
from typing import Any

import numpy as np

from .errors import BrokenFileError, OperationError, TargetError
from .formats.safetensors_file import read_raw
from .ops import store
from .provenance import describe
from .schema import SLOT_WIDTHS, Embedding

ZERO_WARNING = (
    "the CLIP-G half is all zeros: SDXL's second text encoder sees nothing of this embedding, so it "
    "works weakly at best; pass a local SDXL model folder (--via) for nearest-token transfer"
)
#: Weight files tried in each encoder folder, in order (diffusers layout, then its fp16 variant).
WEIGHT_FILES = ("model.safetensors", "model.fp16.safetensors")
#: Tensor names of the token-embedding matrix in transformers' CLIP text models.
TOKEN_EMBEDDING_NAMES = ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight")


def token_embeddings(folder: str | os.PathLike, encoder: str, width: int) -> np.ndarray:
    """The ``(vocab, width)`` token-embedding matrix of ``<folder>/<encoder>/model.safetensors``
    as float32, found by name (``…token_embedding.weight``)."""
    base = os.path.join(os.fspath(folder), encoder)
    path = next((os.path.join(base, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(base, f))), None)
    if path is None:
        raise TargetError(f"no {' or '.join(WEIGHT_FILES)} in {encoder}/ (a diffusers SDXL folder is needed)", path=folder)
    if os.path.getsize(path) < 9:
        raise BrokenFileError("is too short to be a safetensors file", path=path)
    with open(path, "rb") as fh:
        # mapped, not read: a real text_encoder_2 is 1.4 GB and only one tensor is needed
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        raw = read_raw(data, path)
        tensors = raw.tree
        name = next((n for n in TOKEN_EMBEDDING_NAMES if n in tensors), None)
        if name is None:
            name = next((n for n in tensors if n.endswith("token_embedding.weight")), None)
        if name is None:
            raise TargetError("holds no token_embedding.weight tensor", path=path)
        t = tensors[name]
        if len(t.shape) != 2 or t.shape[1] != width:
            raise TargetError(f"{name} has shape {list(t.shape)}; expected [vocab, {width}]", path=path)
        if t.dtype not in ("float16", "bfloat16", "float32", "float64"):
            raise BrokenFileError(f"{name} has dtype {t.dtype}; expected floats", path=path)
        return np.array(t.array(), dtype=np.float32)
    finally:
        data.close()


def nearest_tokens(vectors: np.ndarray, vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``vectors``, the index of the ``vocab`` row with the highest cosine, and that
    cosine. Zero rows match token 0 with cosine 0. Ties go to the lowest index."""
    v = np.asarray(vectors, dtype=np.float64)
    m = np.asarray(vocab, dtype=np.float64)
    vn = np.linalg.norm(v, axis=1, keepdims=True)
    mn = np.linalg.norm(m, axis=1, keepdims=True)
    vu = np.divide(v, vn, out=np.zeros_like(v), where=vn > 0)
    mu = np.divide(m, mn, out=np.zeros_like(m), where=mn > 0)
    cos = vu @ mu.T
    idx = np.argmax(cos, axis=1)
    return idx, cos[np.arange(len(idx)), idx]


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
        vocab_l = token_embeddings(via, "text_encoder", rows.shape[1])
        vocab_g = token_embeddings(via, "text_encoder_2", g_width)
        if vocab_l.shape[0] != vocab_g.shape[0]:
            raise TargetError(
                f"text_encoder has {vocab_l.shape[0]} tokens but text_encoder_2 has {vocab_g.shape[0]}; they must share a vocabulary",
                path=via,
            )
        ids, cos = nearest_tokens(rows, vocab_l)
        clip_g = vocab_g[ids]
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


def port(emb: Embedding, family: str, *, via: str | os.PathLike | None = None) -> Embedding:
    """Port to ``"sd1"`` or ``"sdxl"`` (see :func:`to_sd1`, :func:`to_sdxl`)."""
    if family == "sd1":
        if via is not None:
            raise OperationError("porting to sd1 takes no model folder (it keeps the CLIP-L half)")
        return to_sd1(emb)
    if family == "sdxl":
        return to_sdxl(emb, via)
    raise OperationError(f"cannot port to {family!r}; embkit ports between sd1 and sdxl")


def port_warning(emb: Embedding) -> str | None:
    """The warning the last port recorded (the zero CLIP-G method), if any."""
    history = emb.metadata.get("provenance") or []
    if history and history[-1].get("operation") == "port":
        return history[-1].get("params", {}).get("warning")
    return None


__all__ = ["port", "to_sd1", "to_sdxl", "nearest_tokens", "token_embeddings", "port_warning", "ZERO_WARNING"]

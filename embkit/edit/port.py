"""Port embeddings between SD1 (CLIP-L) and SDXL (CLIP-L + CLIP-G).

* SDXL → SD1: keep the CLIP-L half (exact: SDXL's first encoder is SD1's CLIP-L).
* SD1 → SDXL, ``zero``: a zero CLIP-G half. Weak: the second encoder then sees nothing, so the
  embedding carries about half its effect. The warning is recorded in the provenance.
* SD1 → SDXL, ``nearest-token``: given an SDXL model (``via``: what ``--model`` names, a diffusers
  folder, a single-file ``.safetensors`` checkpoint or a Hub id in the cache), each CLIP-L vector is matched to
  the vocabulary token whose CLIP-L row is nearest (cosine), and that token's CLIP-G row becomes the
  CLIP-G vector. The two token-embedding matrices are read with embkit's own safetensors reader
  (no torch; :mod:`embkit.model.tokens`, which ``inspect --nearest`` shares); a real SDXL
  folder's matrices are 49408×768 and 49408×1280.

The method, and for nearest-token the token ids and cosines, go into ``metadata["provenance"]``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import OperationError, TargetError
from ..model.tokens import TokenMatrix, nearest_tokens, token_embeddings  # noqa: F401  (public names)
from .merges import as_embedding
from .vectors import store
from .provenance import describe
from ..schema import SLOT_WIDTHS, Embedding

ZERO_WARNING = (
    "the CLIP-G half is all zeros: SDXL's second text encoder sees nothing of this embedding, so it "
    "works weakly at best; pass an SDXL model (--via: a diffusers folder, a single-file checkpoint or a cached Hub id) "
    "for nearest-token transfer"
)

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
        ids, cos, clip_g = _nearest_via(rows, via, g_width)
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


def _nearest_via(rows: np.ndarray, via: str | os.PathLike, g_width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(token ids, cosines, CLIP-G rows)``: each CLIP-L row's nearest token in ``via``'s CLIP-L
    matrix, and that token's CLIP-G row. ``via`` is what ``--model`` names, less a family (it holds
    no weights): a diffusers folder (its ``text_encoder`` and ``text_encoder_2``), a Hub id in the
    cache (the same folders), or a single-file ``.safetensors`` checkpoint (its two token matrices)."""
    from ..schema import FAMILIES

    text = os.path.expanduser(os.fspath(via))
    if text.strip().lower() in FAMILIES and not os.path.exists(text):
        raise TargetError(f"{text!r} is a family: --via needs the model's token embeddings (a diffusers folder, a single-file "
                          ".safetensors checkpoint or a Hub id in the cache)")
    enc_l, enc_g, index = _matrices(text, rows.shape[1], g_width)
    try:
        if enc_l.width != rows.shape[1] or enc_g.width != g_width:
            raise TargetError(f"token embeddings are {enc_l.width} and {enc_g.width} wide, not {rows.shape[1]} and {g_width}", path=text)
        if enc_l.vocab != enc_g.vocab:
            raise TargetError(f"text_encoder has {enc_l.vocab} tokens but text_encoder_2 has {enc_g.vocab}; they must share a vocabulary", path=text)
        ids, cos = nearest_tokens(rows, enc_l.matrix())
        return ids, cos, enc_g.rows(ids)
    finally:
        if index is not None:
            index.close()
        else:
            enc_l.close()
            enc_g.close()


def _matrices(text: str, l_width: int, g_width: int):
    """The CLIP-L and CLIP-G token matrices of the model ``text`` names, and the index to close."""
    from ..model.nearest import _HUB_ID, TokenIndex, _cached_repo

    folder = text if os.path.isdir(text) else None
    if folder is None and not os.path.isfile(text):
        if not _HUB_ID.match(text):
            raise TargetError(f"cannot find token embeddings in {text!r}: not a folder, a .safetensors checkpoint, or a Hub repo id")
        folder = _cached_repo(text)  # a Hub id already in the cache: never a download
    if folder is not None:
        enc_l = TokenMatrix.from_folder(folder, "text_encoder", l_width)
        try:
            return enc_l, TokenMatrix.from_folder(folder, "text_encoder_2", g_width), None
        except BaseException:
            enc_l.close()
            raise
    index = TokenIndex.from_target(text)  # a single-file checkpoint
    enc_l, enc_g = index.tables.get("clip_l"), index.tables.get("clip_g")
    if enc_l is None or enc_g is None:
        index.close()
        raise TargetError("holds no CLIP-L and CLIP-G token embeddings: porting to sdxl needs an SDXL model", path=text)
    return enc_l.matrix, enc_g.matrix, index


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

"""What a target model offers an embedding: its text-encoder slots, their widths, vocabularies,
prompt token limits and token-embedding norms.

A :class:`ModelSpec` is built from a family name, a local diffusers folder, a single-file
``.safetensors`` checkpoint (header only), a live diffusers pipeline, or a Hub repo id
(:func:`resolve_target` picks). Only the pipeline path imports torch, and only inside the function.
"""

from __future__ import annotations

import json
import os
import re
import struct
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .encoders import CLIP_TOKEN_LIMIT, FAMILIES, WIDTH_TO_SLOT, family_for
from .errors import TargetError
from .schema import SLOT_WIDTHS, SLOTS
from .vocab import Vocab

#: T5 prompt limits the diffusers pipelines use by default (``max_sequence_length``).
T5_TOKEN_LIMIT = {"sd3": 256, "flux": 512}
#: Family name aliases people type.
ALIASES = {"sd15": "sd1", "sd1.5": "sd1", "sd-1.5": "sd1", "sd21": "sd2", "sd2.1": "sd2", "xl": "sdxl", "sd35": "sd3", "sd3.5": "sd3"}
#: Caps for reading checkpoint headers (the safetensors library's own header limit).
MAX_HEADER_BYTES = 100 * 1024 * 1024
#: The largest token matrix read for norms (T5-XXL's is 32128 x 4096 = 132M elements).
MAX_MATRIX_ELEMENTS = 256 * 1024 * 1024
_ST_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class TokenNorms:
    """L2 norms of a text encoder's token-embedding rows, summarised.

    ``source`` is ``"matrix"`` when measured on the model's own weights, ``"prior"`` for the
    documented per-slot approximations used when the weights are not at hand.
    """

    median: float
    p01: float
    p99: float
    max: float
    count: int
    source: str = "matrix"

    @classmethod
    def from_norms(cls, norms: np.ndarray) -> "TokenNorms":
        """Summarise a vector of row norms."""
        norms = np.asarray(norms, dtype=np.float64)
        norms = norms[np.isfinite(norms)]
        if norms.size == 0:
            raise TargetError("token-embedding matrix holds no finite rows")
        p01, med, p99 = np.percentile(norms, [1, 50, 99])
        return cls(float(med), float(p01), float(p99), float(norms.max()), int(norms.size), "matrix")

    def to_dict(self) -> dict:
        return {"median": self.median, "p01": self.p01, "p99": self.p99, "max": self.max, "count": self.count, "source": self.source}


#: Approximate token-norm priors per slot, for targets whose weights are not read (a family name, a
#: checkpoint header). CLIP-L's median (≈0.39) matches vectors built from real tokens (EasyNegative's
#: rows are 0.375-0.394); CLIP-H and CLIP-G are rough (OpenCLIP initialises rows at std 0.02, so
#: 0.02·√width, shrunk like CLIP-L's). They only feed a wide band (see embkit.validate), so a rough
#: value is enough. T5 has no prior: its norms are not checked without the real matrix.
NORM_PRIORS: Mapping[str, TokenNorms] = types.MappingProxyType(
    {
        "clip_l": TokenNorms(0.39, 0.25, 0.55, 0.9, 49408, "prior"),
        "clip_h": TokenNorms(0.45, 0.28, 0.65, 1.0, 49408, "prior"),
        "clip_g": TokenNorms(0.50, 0.30, 0.75, 1.2, 49408, "prior"),
    }
)


@dataclass(frozen=True)
class SlotSpec:
    """One text encoder of a target: token width, vocabulary (a :class:`~embkit.vocab.Vocab`, a
    frozenset of tokens, or ``None`` when unknown), prompt token limit, token-norm summary."""

    width: int
    vocab: Any = None
    token_limit: int = CLIP_TOKEN_LIMIT
    token_norms: TokenNorms | None = None
    #: the pipeline component it lives in (``text_encoder``, ``text_encoder_2`` …), when known
    component: str | None = None

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "vocab_size": len(self.vocab) if self.vocab is not None else None,
            "token_limit": self.token_limit,
            "token_norms": self.token_norms.to_dict() if self.token_norms else None,
            "component": self.component,
        }


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A validation target: its family (or ``"unknown"``) and its slots.

    Build one with :meth:`from_family`, :meth:`from_folder`, :meth:`from_checkpoint`,
    :meth:`from_pipeline` or :func:`resolve_target`.
    """

    family: str
    slots: Mapping[str, SlotSpec]
    #: what it was built from, for messages: ``family sdxl``, a path, ``pipeline StableDiffusionPipeline``
    source: str = ""
    kind: str = "family"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        ordered = {s: self.slots[s] for s in sorted(self.slots, key=SLOTS.index)}
        object.__setattr__(self, "slots", types.MappingProxyType(ordered))

    def describe(self) -> str:
        """``SDXL (clip_l 768, clip_g 1280)``: the family and its slots, for messages."""
        name = self.family.upper() if self.family != "unknown" else "unknown model"
        return f"{name} ({', '.join(f'{s} {spec.width}' for s, spec in self.slots.items())})"

    def to_dict(self) -> dict:
        """JSON form, as used in ``embkit verify --json``."""
        return {"family": self.family, "kind": self.kind, "source": self.source, "slots": {s: v.to_dict() for s, v in self.slots.items()}, "notes": list(self.notes)}

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def from_family(cls, name: str) -> "ModelSpec":
        """The spec of a family (``sd1``, ``sd2``, ``sdxl``, ``sd3``, ``flux``): canonical widths,
        75-token CLIP prompts, documented norm priors, no vocabulary."""
        fam = ALIASES.get(name.strip().lower(), name.strip().lower())
        if fam not in FAMILIES:
            raise TargetError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}")
        return cls(fam, {s: _default_slot(s, fam) for s in FAMILIES[fam]}, source=f"family {fam}", kind="family")

    @classmethod
    def from_folder(cls, path: str | os.PathLike) -> "ModelSpec":
        """Read a local diffusers model folder: ``text_encoder*/config.json`` for the slots,
        ``tokenizer*/`` for vocabularies, and (when present) only the token-embedding tensor of
        ``text_encoder*/model*.safetensors`` for real token norms. No torch."""
        from .modelspec_files import read_folder

        return read_folder(cls, os.fspath(path))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "ModelSpec":
        """Read a single-file ``.safetensors`` checkpoint's header (no tensor data): the shapes of
        its token-embedding tensors name the slots, diffusion-model keys the family."""
        from .modelspec_files import read_checkpoint

        return read_checkpoint(cls, os.fspath(path))

    @classmethod
    def from_pipeline(cls, pipe: Any) -> "ModelSpec":
        """Read a live diffusers pipeline's text encoders and tokenizers (imports torch)."""
        import torch  # noqa: F401  (a pipeline means torch is loaded; norms are computed with it)

        slots: dict[str, SlotSpec] = {}
        for i, suffix in enumerate(("", "_2", "_3")):
            encoder = getattr(pipe, f"text_encoder{suffix}", None)
            if encoder is None:
                continue
            weight = encoder.get_input_embeddings().weight.detach()
            width = int(weight.shape[1])
            model_type = str(getattr(encoder.config, "model_type", ""))
            slot = slot_of_encoder(model_type, width, i)
            norms = torch.linalg.vector_norm(weight.float(), dim=1).cpu().numpy()
            tokenizer = getattr(pipe, f"tokenizer{suffix}", None)
            vocab = None
            limit = CLIP_TOKEN_LIMIT if slot != "t5" else 256
            if tokenizer is not None:
                kind = "t5" if slot == "t5" else "clip"
                vocab = Vocab.from_callable(tokenizer.get_vocab().keys(), tokenizer.tokenize, kind=kind, added=tokenizer.get_added_vocab().keys())
                max_len = getattr(tokenizer, "model_max_length", None)
                if isinstance(max_len, int) and 2 < max_len <= 4096:
                    limit = max_len - 2 if slot != "t5" else max_len
            if slot in slots:
                raise TargetError(f"pipeline has two text encoders for slot {slot}")
            slots[slot] = SlotSpec(width, vocab, limit, TokenNorms.from_norms(norms), f"text_encoder{suffix}")
        if not slots:
            raise TargetError(f"{type(pipe).__name__} has no text encoder (text_encoder, text_encoder_2, text_encoder_3)")
        fam = family_for(slots)
        if fam in T5_TOKEN_LIMIT and "t5" in slots:
            # the pipelines' max_sequence_length default, not the tokenizer's 512
            slots["t5"] = _replace_limit(slots["t5"], T5_TOKEN_LIMIT[fam])
        return cls(fam, slots, source=f"pipeline {type(pipe).__name__}", kind="pipeline")


def _replace_limit(spec: SlotSpec, limit: int) -> SlotSpec:
    return SlotSpec(spec.width, spec.vocab, limit, spec.token_norms, spec.component)


def _default_slot(slot: str, family: str) -> SlotSpec:
    limit = T5_TOKEN_LIMIT.get(family, 256) if slot == "t5" else CLIP_TOKEN_LIMIT
    component = None
    if family in FAMILIES and slot in FAMILIES[family]:
        i = FAMILIES[family].index(slot)
        component = "text_encoder" + ("" if i == 0 else f"_{i + 1}")
    return SlotSpec(SLOT_WIDTHS[slot], None, limit, NORM_PRIORS.get(slot), component)


def slot_of_encoder(model_type: str, width: int, position: int) -> str:
    """The slot of a text encoder from its config's ``model_type``, its width, and its position
    (``text_encoder`` = 0, ``text_encoder_2`` = 1 …) when the width is not a canonical one."""
    if "t5" in model_type.lower():
        return "t5"
    slot = WIDTH_TO_SLOT.get(int(width))
    if slot is not None and slot != "t5":
        return slot
    # a CLIP encoder of an unusual width (tiny test models): CLIP-L first, CLIP-G second
    return "clip_l" if position == 0 else "clip_g"


def read_st_header(path: str) -> tuple[dict[str, Any], dict[str, str], int, int]:
    """A safetensors file's header without reading tensor data: (entries, ``__metadata__``, data
    start, file size). Entries whose offsets fall outside the file raise :class:`TargetError`."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise TargetError("file is too short to be safetensors", path=path)
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise TargetError(f"safetensors header claims {n} bytes; the file has {size}", path=path)
            raw = fh.read(n)
    except OSError as exc:
        raise TargetError(f"cannot read ({exc.strerror or exc})", path=path) from None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TargetError(f"safetensors header is not valid JSON ({exc})", path=path) from None
    if not isinstance(header, dict):
        raise TargetError("safetensors header is not a JSON object", path=path)
    meta = header.pop("__metadata__", None) or {}
    start = 8 + n
    for name, entry in header.items():
        offs = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs) and 0 <= offs[0] <= offs[1] <= size - start):
            raise TargetError(f"tensor {name!r} has data offsets outside the file", path=path)
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise TargetError(f"tensor {name!r} has a bad shape", path=path)
    return header, meta if isinstance(meta, dict) else {}, start, size


def matrix_norms(path: str, entry: dict, start: int, chunk_rows: int = 4096) -> np.ndarray:
    """Row L2 norms of one 2-D tensor of a safetensors file, read in chunks (only its bytes)."""
    dtype = _ST_DTYPES.get(entry.get("dtype"))
    shape = entry["shape"]
    if dtype is None or len(shape) != 2:
        raise TargetError(f"token-embedding tensor has dtype {entry.get('dtype')} and shape {shape}; expected a 2-D float", path=path)
    rows, width = shape
    if rows * width > MAX_MATRIX_ELEMENTS:
        raise TargetError(f"token-embedding tensor of shape {shape} is past the cap of {MAX_MATRIX_ELEMENTS} elements", path=path)
    lo, hi = entry["data_offsets"]
    if rows * width * dtype.itemsize != hi - lo:
        raise TargetError(f"token-embedding tensor of shape {shape} does not fill its {hi - lo} bytes", path=path)
    out = np.empty(rows, dtype=np.float64)
    with open(path, "rb") as fh:
        fh.seek(start + lo)
        for first in range(0, rows, chunk_rows):
            count = min(chunk_rows, rows - first)
            buf = fh.read(count * width * dtype.itemsize)
            block = np.frombuffer(buf, dtype=dtype).reshape(count, width)
            if entry["dtype"] == "BF16":
                block = (block.astype(np.uint32) << 16).view(np.float32)
            out[first : first + count] = np.linalg.norm(block.astype(np.float64), axis=1)
    return out


def resolve_target(value: Any) -> ModelSpec:
    """A :class:`ModelSpec` from anything a user may name as a target: a ModelSpec, a family name
    (``sd1`` …), an existing diffusers folder, an existing ``.safetensors`` checkpoint, a live
    diffusers pipeline, or a Hub repo id ``org/name`` (through :mod:`embkit.hub`)."""
    if isinstance(value, ModelSpec):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(value, str) and ALIASES.get(text.strip().lower(), text.strip().lower()) in FAMILIES:
            return ModelSpec.from_family(text)
        text = os.path.expanduser(text)
        if os.path.isdir(text):
            return ModelSpec.from_folder(text)
        if os.path.isfile(text):
            if text.lower().endswith(".safetensors"):
                return ModelSpec.from_checkpoint(text)
            raise TargetError(
                "is not a .safetensors checkpoint; embkit reads single-file checkpoints only as .safetensors "
                "(a .ckpt is a pickle: convert it, or pass the diffusers folder)",
                path=text,
            )
        if isinstance(value, str) and _HUB_ID.match(text):
            try:
                from .hub import model_folder
            except ImportError:
                raise TargetError(f"{text!r} looks like a Hub repo id, but hub support is not available in this install") from None
            return ModelSpec.from_folder(model_folder(text))
        raise TargetError(
            f"cannot use {text!r} as a target: not a family ({', '.join(FAMILIES)}), an existing folder or "
            ".safetensors file, or a Hub repo id (org/name)"
        )
    if hasattr(value, "text_encoder") or hasattr(value, "text_encoder_2"):
        return ModelSpec.from_pipeline(value)
    raise TargetError(f"cannot use a {type(value).__name__} as a target model")

"""The parts of a target model's description: per-encoder slot specs and token-norm summaries.

Kept apart from :class:`~embkit.model.spec.ModelSpec` so that the readers of folders and
checkpoints (:mod:`embkit.model.files`) build slot specs without knowing the class they fill.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import TargetError
from ..schema import CLIP_TOKEN_LIMIT, FAMILIES, SLOT_WIDTHS, WIDTH_TO_SLOT

#: T5 prompt limits the diffusers pipelines use by default (``max_sequence_length``).
T5_TOKEN_LIMIT = {"sd3": 256, "flux": 512}
#: Family name aliases people type.
ALIASES = {"sd15": "sd1", "sd1.5": "sd1", "sd-1.5": "sd1", "sd21": "sd2", "sd2.1": "sd2", "xl": "sdxl", "sd35": "sd3", "sd3.5": "sd3"}


def family_name(name: str) -> str:
    """The canonical family id for what a user typed (``SD1.5`` → ``sd1``); unknown names pass
    through lower-cased."""
    text = name.strip().lower()
    return ALIASES.get(text, text)


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


def replace_limit(spec: SlotSpec, limit: int) -> SlotSpec:
    """The same slot spec with another prompt token limit."""
    return SlotSpec(spec.width, spec.vocab, limit, spec.token_norms, spec.component)


def default_slot(slot: str, family: str) -> SlotSpec:
    """A family's canonical spec of one slot: its width, prompt limit, norm prior and component."""
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

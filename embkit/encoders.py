"""Text encoders ("slots") and model families.

Families are sets of slots. Width alone is ambiguous (768 is SD1 *or* the CLIP-L half of SDXL/Flux),
so detection reports every candidate and names a family only when the slots match one exactly.
"""

from __future__ import annotations

import functools
import types
from typing import Iterable, Mapping

from .schema import SLOT_WIDTHS, SLOTS

#: family → the slots its text encoders fill, in canonical order.
FAMILIES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "sd1": ("clip_l",),
        "sd2": ("clip_h",),
        "sdxl": ("clip_l", "clip_g"),
        "sd3": ("clip_l", "clip_g", "t5"),
        "flux": ("clip_l", "t5"),
    }
)

#: width → slot, for layouts that store one tensor without saying which encoder it is for.
WIDTH_TO_SLOT: Mapping[int, str] = types.MappingProxyType({w: s for s, w in SLOT_WIDTHS.items()})

#: CLIP prompts hold 75 content tokens (77 with the start and end tokens).
CLIP_TOKEN_LIMIT = 75


def slot_for_width(width: int) -> str | None:
    """The slot whose encoder has this token width, or ``None``."""
    return WIDTH_TO_SLOT.get(int(width))


def families_for(slots: Iterable[str]) -> tuple[str, ...]:
    """Every family whose encoders include all these input slots; an exact match comes first,
    then the others from the fewest extra slots to the most."""
    return _families_for(frozenset(s for s in slots if s in SLOTS))


def family_for(slots: Iterable[str]) -> str:
    """The family whose slots are exactly these, else ``"unknown"`` (the candidates are
    :func:`families_for`)."""
    return _family_for(frozenset(s for s in slots if s in SLOTS))


# Cached on the slot set (a handful of distinct sets exist): a library scan asks once per file.
@functools.lru_cache(maxsize=64)
def _families_for(have: frozenset[str]) -> tuple[str, ...]:
    if not have:
        return ()
    fits = [f for f, fs in FAMILIES.items() if have <= set(fs)]
    return tuple(sorted(fits, key=lambda f: (len(FAMILIES[f]) - len(have), list(FAMILIES).index(f))))


@functools.lru_cache(maxsize=64)
def _family_for(have: frozenset[str]) -> str:
    for fam, fs in FAMILIES.items():
        if set(fs) == have:
            return fam
    return "unknown"


#: Names that live in :mod:`embkit.modelspec` (which imports this module), re-exported lazily.
_SPEC_NAMES = ("ModelSpec", "SlotSpec", "TokenNorms", "resolve_target", "NORM_PRIORS")


def __getattr__(name: str):
    if name in _SPEC_NAMES:
        from . import modelspec

        return getattr(modelspec, name)
    raise AttributeError(f"module 'embkit.encoders' has no attribute {name!r}")

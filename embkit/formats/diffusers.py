"""diffusers layout: ``{token: T[d]}`` (before spring 2023) or ``{token: T[n, d]}``.

Written by diffusers' training scripts and the sd-concepts-library. The key is the trigger. diffusers'
SDXL script writes two such files, one per encoder (768 and 1280 wide); each reads as one slot.
"""

from __future__ import annotations

from ..errors import BrokenFileError
from .base import Part, Raw, Tensor, width_slot

#: Keys that belong to other layouts; a dict holding one of them is not a diffusers file.
OTHER_LAYOUT_KEYS = {"string_to_param", "emb_params", "emp_params", "clip_l", "clip_g", "clip_h", "t5", "t5xxl"}


def detect(raw: Raw) -> bool:
    """A non-empty dict of tensors keyed by tokens, none of them another layout's key."""
    tree = raw.tree
    return (
        isinstance(tree, dict)
        and bool(tree)
        and all(isinstance(v, Tensor) for v in tree.values())
        and not any(isinstance(k, str) and (k in OTHER_LAYOUT_KEYS or k.endswith("_out") or k.startswith("bundle_emb.")) for k in tree)
    )


def parse(raw: Raw, path: str) -> list[Part]:
    """Each token key as one embedding, named by its token."""
    parts = []
    for token, tensor in raw.tree.items():
        if not isinstance(token, str) or not token.strip():
            raise BrokenFileError(f"token key {token!r} is not a usable trigger word", path=path)
        slot = width_slot(tensor, path, f"tensor {token!r}")
        parts.append(Part(name=token, tensors={slot: tensor}, metadata={}, member=token if len(raw.tree) > 1 else None))
    return parts

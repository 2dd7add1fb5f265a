"""Encoder-keyed layout: ``clip_l``, ``clip_h``, ``clip_g``, ``t5`` (ComfyUI spells it ``t5xxl``).

Written by kohya (SDXL), OneTrainer (SDXL, SD3, Flux, …) and diffusers' advanced scripts. OneTrainer
may add ``<slot>_out`` tensors: output embeddings added to an encoder's output, kept apart from the
token rows. Triggered by the file stem.
"""

from __future__ import annotations

from ..errors import BrokenFileError
from ..schema import SLOT_WIDTHS
from .base import Part, Raw, Tensor, matrix_shape, plain, stem_of

#: key in the file → slot.
KEY_SLOTS = {"clip_l": "clip_l", "clip_h": "clip_h", "clip_g": "clip_g", "t5": "t5", "t5xxl": "t5"}


def _slot_of(key: str) -> str | None:
    if key in KEY_SLOTS:
        return KEY_SLOTS[key]
    if key.endswith("_out") and key[:-4] in KEY_SLOTS:
        return KEY_SLOTS[key[:-4]] + "_out"
    return None


def detect(raw: Raw) -> bool:
    """A dict with at least one encoder-named tensor and no tensors under other names."""
    tree = raw.tree
    if not isinstance(tree, dict):
        return False
    keys = [k for k, v in tree.items() if isinstance(v, Tensor)]
    return bool(keys) and all(isinstance(k, str) and _slot_of(k) for k in keys) and any(k in KEY_SLOTS for k in keys)


def parse(raw: Raw, path: str) -> list[Part]:
    """One embedding named by the file stem, a slot per encoder key."""
    tensors: dict[str, Tensor] = {}
    warnings: list[str] = []
    meta = {}
    for key, value in raw.tree.items():
        slot = _slot_of(key) if isinstance(value, Tensor) else None
        if slot is None:
            meta[str(key)] = plain(value)
            continue
        if slot in tensors:
            raise BrokenFileError(f"slot {slot} appears twice (keys t5 and t5xxl?)", path=path)
        _, width = matrix_shape(value, path, f"tensor {key!r}")
        expected = SLOT_WIDTHS[slot.removesuffix("_out")]
        if width != expected:
            warnings.append(f"{key} vectors are {width} wide; that encoder's tokens are {expected} wide")
        tensors[slot] = value
        if key == "t5xxl" or key == "t5xxl_out":
            meta["t5_key"] = key
    return [Part(name=stem_of(path), tensors=tensors, metadata=meta, warnings=warnings)]

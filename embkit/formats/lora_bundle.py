"""Embeddings bundled in a LoRA: ``bundle_emb.<name>.<key>`` tensors beside the LoRA weights.

``<key>`` is ``string_to_param.*`` (an A1111-style single tensor) or an encoder key (``clip_l``,
``clip_g``, ``t5``…). Each distinct ``<name>`` is one embedding; the LoRA tensors are ignored.
The name is the text between the first and second dot, as A1111 splits it
(``extensions-builtin/Lora/networks.py``) and SD.Next too: ``bundle_emb.style.v2.string_to_param.*``
is ``style``, the word typed in both.
"""

from __future__ import annotations

from ..errors import BrokenFileError
from .base import Part, Raw, Tensor, width_slot
from .multi import _slot_of

PREFIX = "bundle_emb."


def detect(raw: Raw) -> bool:
    """Any key starting with ``bundle_emb.``."""
    return isinstance(raw.tree, dict) and any(isinstance(k, str) and k.startswith(PREFIX) for k in raw.tree)


def parse(raw: Raw, path: str) -> list[Part]:
    """One embedding per bundled name, in the order they first appear."""
    groups: dict[str, dict[str, Tensor]] = {}
    for key, value in raw.tree.items():
        if not (isinstance(key, str) and key.startswith(PREFIX)):
            continue
        if not isinstance(value, Tensor):
            raise BrokenFileError(f"{key} is not a tensor", path=path)
        rest = key[len(PREFIX) :]
        name, _, sub = rest.partition(".")
        if "string_to_param" in sub.split("."):
            slot = width_slot(value, path, key)
        else:
            slot = _slot_of(sub.rsplit(".", 1)[-1]) if name and sub else None
            if slot is None:
                raise BrokenFileError(f"bundled key {key!r} names no known encoder", path=path)
        if not name:
            raise BrokenFileError(f"bundled key {key!r} has no embedding name", path=path)
        group = groups.setdefault(name, {})
        if slot in group:
            raise BrokenFileError(f"bundled embedding {name!r} has two tensors for {slot}", path=path)
        group[slot] = value
    lora_keys = sum(1 for k in raw.tree if not (isinstance(k, str) and k.startswith(PREFIX)))
    return [
        Part(name=name, tensors=tensors, metadata={"lora_tensors": lora_keys}, member=name)
        for name, tensors in groups.items()
    ]

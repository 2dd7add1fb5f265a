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


# -- writing ------------------------------------------------------------------------------------

T5_KEYS = ("t5", "t5xxl")


def write(emb, path: str, container: str, options: dict):
    """Plan an encoder-keyed file: every slot, output vectors as ``<key>_out``. ``t5_key`` spells
    the T5 key (``t5`` for OneTrainer and diffusers, ``t5xxl`` for ComfyUI; default: as read, else
    ``t5``). Metadata is kept in safetensors. Triggered by the file stem."""
    from . import safetensors_file, torchfile_write
    from ..errors import WriteError
    from .writer_base import Output, Plan, metadata_losses, safetensors_metadata, stored_array, trigger_loss

    t5_key = options.get("t5_key") or emb.metadata.get("t5_key") or "t5"
    if t5_key in ("t5xxl_out",):
        t5_key = "t5xxl"
    if t5_key not in T5_KEYS:
        raise WriteError(f"t5_key must be 't5' or 't5xxl', not {t5_key!r}", path=path)
    losses: list = []
    stem = stem_of(path)
    trigger_loss(emb, stem, "multi", losses)
    tensors = {}
    for slot in emb.vectors:
        base = slot.removesuffix("_out")
        key = (t5_key if base == "t5" else base) + ("_out" if slot.endswith("_out") else "")
        tensors[key] = stored_array(emb, slot)
    if container == "safetensors":
        kept = emb if stem == emb.name else emb.replace(metadata={**emb.metadata, "stored_name": emb.name})
        data = safetensors_file.dumps(tensors, safetensors_metadata(kept))
    else:
        metadata_losses(emb, "multi .pt", (), losses)
        data = torchfile_write.dumps({k: torchfile_write.TensorData(*v) for k, v in tensors.items()})
    return Plan([Output(path, data, tree={k: torchfile_write.TensorData(*v) for k, v in tensors.items()})], losses)

"""Building a :class:`~embkit.model.spec.ModelSpec` from files on disk, without torch.

- a diffusers folder: ``text_encoder*/config.json`` (slots, widths, prompt length), ``tokenizer*/``
  (vocabulary), and only the token-embedding tensor of ``text_encoder*/model*.safetensors`` (norms);
- a single-file checkpoint: a ``.safetensors`` header alone, or a ``.ckpt``'s tensor names and shapes
  through embkit's allow-list unpickler (:mod:`embkit.model.checkpoint`; no tensor data is read). Text-encoder tensors are found by
  their name's ending (``…token_embedding.weight`` for CLIP in both the HF and the OpenCLIP naming,
  ``…shared.weight`` / ``…embed_tokens.weight`` for T5), so SD1 (``cond_stage_model.transformer.…``),
  SD2 (``cond_stage_model.model.…``), SDXL (``conditioner.embedders.0/1.…``) and SD3/Flux
  (``text_encoders.clip_l/clip_g/t5xxl.transformer.…``) all read the same way.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ..errors import TargetError
from ..schema import CLIP_TOKEN_LIMIT, FAMILIES, SLOTS, WIDTH_TO_SLOT, architecture_family, family_for
from .checkpoint import is_pickle_checkpoint, open_checkpoint
from .headers import matrix_norms, read_st_header
from .slots import NORM_PRIORS, T5_TOKEN_LIMIT, SlotSpec, TokenNorms, default_slot, slot_of_encoder
from .vocab import read_tokenizer_folder

#: Where a diffusers text encoder keeps its token-embedding matrix (transformers 5 saves CLIP without
#: the ``text_model.`` prefix, older saves with it; T5 under ``shared`` or ``encoder.embed_tokens``).
FOLDER_EMBED_KEYS = ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight", "shared.weight", "encoder.embed_tokens.weight")
WEIGHT_FILES = ("model.safetensors", "model.fp16.safetensors")
INDEX_FILES = ("model.safetensors.index.json", "model.fp16.safetensors.index.json")
_ENCODER_DIR = re.compile(r"^text_encoder(?:_(\d+))?$")


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise TargetError("is not a JSON object", path=path)
    return data


def read_folder(cls: type, folder: str) -> Any:
    """See :meth:`ModelSpec.from_folder`."""
    if not os.path.isdir(folder):
        raise TargetError("is not a folder", path=folder)
    encoders = []
    for name in os.listdir(folder):
        m = _ENCODER_DIR.match(name)
        if m and os.path.isfile(os.path.join(folder, name, "config.json")):
            encoders.append((int(m.group(1) or 1), name))
    if not encoders:
        raise TargetError("has no text_encoder*/config.json: not a diffusers model folder", path=folder)
    slots: dict[str, SlotSpec] = {}
    notes: list[str] = []
    for number, name in sorted(encoders):
        sub = os.path.join(folder, name)
        config = _read_json(os.path.join(sub, "config.json"))
        config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
        model_type = str(config.get("model_type", "")) + " " + " ".join(map(str, config.get("architectures") or []))
        width = config.get("hidden_size", config.get("d_model"))
        if not isinstance(width, int) or width <= 0:
            raise TargetError("config.json has no hidden_size (or d_model)", path=os.path.join(sub, "config.json"))
        slot = slot_of_encoder(model_type, width, number - 1)
        if slot in slots:
            raise TargetError(f"{name} is a second text encoder for slot {slot}", path=folder)
        tok_dir = os.path.join(folder, "tokenizer" + ("" if number == 1 else f"_{number}"))
        vocab = read_tokenizer_folder(tok_dir) if os.path.isdir(tok_dir) else None
        if vocab is None:
            notes.append(f"{name}: no tokenizer files embkit can read; vocabulary checks skipped")
        limit = _token_limit(slot, config, tok_dir)
        norms = _folder_norms(sub, slot)
        if norms is None:
            notes.append(f"{name}: no safetensors weights; token norms use the {slot} prior")
            norms = NORM_PRIORS.get(slot)
        slots[slot] = SlotSpec(width, vocab, limit, norms, name)
    fam = family_for(slots)
    if "t5" in slots and slots["t5"].token_limit <= 0:
        t5 = slots["t5"]
        slots["t5"] = SlotSpec(t5.width, t5.vocab, T5_TOKEN_LIMIT.get(fam, 256), t5.token_norms, t5.component)
    return cls(fam, slots, source=folder, kind="folder", notes=tuple(notes))


def _token_limit(slot: str, config: dict, tok_dir: str) -> int:
    if slot != "t5":
        positions = config.get("max_position_embeddings")
        return positions - 2 if isinstance(positions, int) and positions > 2 else CLIP_TOKEN_LIMIT
    tok_config = os.path.join(tok_dir, "tokenizer_config.json")
    if os.path.isfile(tok_config):
        length = _read_json(tok_config).get("model_max_length")
        if isinstance(length, int) and 0 < length <= 4096:
            return length
    return 0  # filled in from the family once it is known


def _folder_norms(encoder_dir: str, slot: str) -> TokenNorms | None:
    found = encoder_matrix(encoder_dir)
    if found is None:
        return None
    weights, key, header, start = found
    return TokenNorms.from_norms(matrix_norms(weights, header[key], start))


def encoder_matrix(encoder_dir: str) -> tuple[str, str, dict, int] | None:
    """Where a diffusers text encoder keeps its token-embedding matrix: ``(weights file, tensor
    name, header, data start)``, or ``None`` when it has no safetensors weights."""
    for weights in _weight_files(encoder_dir):
        header, _, start, _ = read_st_header(weights)
        for key in FOLDER_EMBED_KEYS:
            if key in header:
                return weights, key, header, start
    return None


def _weight_files(encoder_dir: str) -> list[str]:
    files = [os.path.join(encoder_dir, f) for f in WEIGHT_FILES if os.path.isfile(os.path.join(encoder_dir, f))]
    for index_name in INDEX_FILES:
        index = os.path.join(encoder_dir, index_name)
        if os.path.isfile(index):
            weight_map = _read_json(index).get("weight_map") or {}
            for key in FOLDER_EMBED_KEYS:
                shard = weight_map.get(key)
                if isinstance(shard, str) and os.path.isfile(os.path.join(encoder_dir, os.path.basename(shard))):
                    files.append(os.path.join(encoder_dir, os.path.basename(shard)))
    return files


def read_checkpoint(cls: type, path: str) -> Any:
    """See :meth:`ModelSpec.from_checkpoint`."""
    if path.lower().endswith(".safetensors"):
        header, meta, _, _ = read_st_header(path)
    elif is_pickle_checkpoint(path):
        # a .ckpt through embkit's own allow-list unpickler: names and shapes, no tensor data
        header, meta = {n: {"shape": list(t.shape)} for n, t in open_checkpoint(path).tensors.items()}, {}
    else:
        raise TargetError("is not a single-file checkpoint (.safetensors or .ckpt)", path=path)
    found = checkpoint_token_keys(header, path)  # slot → (width, key)
    limits: dict[str, int] = {}
    for key, entry in header.items():
        shape = entry["shape"]
        if key.endswith(("position_embedding.weight", "positional_embedding")) and len(shape) == 2 and shape[0] > 2:
            slot = WIDTH_TO_SLOT.get(shape[1])
            if slot in found:
                limits[slot] = shape[0] - 2
    arch = _architecture(header, meta)
    fam = arch or family_for(found)
    if fam == "unknown" and not found:
        raise TargetError("holds no text-encoder token embedding and no diffusion model embkit recognises", path=path)
    slots: dict[str, SlotSpec] = {}
    notes: list[str] = []
    for slot in FAMILIES.get(fam, tuple(found)):
        base = default_slot(slot, fam)
        if slot in found:
            width = found[slot][0]
            slots[slot] = SlotSpec(width, None, limits.get(slot, base.token_limit), base.token_norms, found[slot][1])
        else:
            slots[slot] = base
            notes.append(f"{slot}: not in the file (loaded separately); using {fam} defaults")
    for slot in found:
        if slot not in slots:
            slots[slot] = SlotSpec(found[slot][0], None, limits.get(slot, CLIP_TOKEN_LIMIT), NORM_PRIORS.get(slot), found[slot][1])
            notes.append(f"{slot}: in the file but not part of {fam}")
    return cls(fam if fam in FAMILIES else family_for(slots), {s: slots[s] for s in sorted(slots, key=SLOTS.index)}, source=path, kind="checkpoint", notes=tuple(notes))


def checkpoint_token_keys(header: dict, path: str) -> dict[str, tuple[int, str]]:
    """slot → ``(width, tensor name)`` of each text encoder's token embedding in a single-file
    checkpoint's header, found by the name's ending (see the module docstring)."""
    found: dict[str, tuple[int, str]] = {}
    for key, entry in header.items():
        shape = entry["shape"]
        if len(shape) != 2:
            continue
        if key.endswith("token_embedding.weight"):
            slot = WIDTH_TO_SLOT.get(shape[1])
            if slot is None or slot == "t5":
                continue
        elif (key.endswith("shared.weight") or key.endswith("embed_tokens.weight")) and "t5" in key.lower() and shape[1] == 4096:
            slot = "t5"
        else:
            continue
        if slot in found and found[slot][1] != key:
            raise TargetError(f"holds two {slot} token embeddings ({found[slot][1]}, {key})", path=path)
        found[slot] = (shape[1], key)
    return found


def _architecture(header: dict, meta: dict) -> str | None:
    """The family the diffusion-model keys (or ``modelspec.architecture``) say, if any."""
    keys = header.keys()
    if any(k.startswith("double_blocks.") or ".double_blocks." in k for k in keys):
        return "flux"
    if any("joint_blocks." in k for k in keys):
        return "sd3"
    for key in keys:
        # the UNet's cross-attention input width is the conditioning width: 768 SD1, 1024 SD2, 2048 SDXL
        if key.endswith("attn2.to_k.weight") and key.startswith("model.diffusion_model."):
            context = header[key]["shape"][-1] if header[key]["shape"] else 0
            return {768: "sd1", 1024: "sd2", 2048: "sdxl"}.get(context)
    return architecture_family(meta.get("modelspec.architecture", ""))

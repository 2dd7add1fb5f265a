"""diffusers layout: ``{token: T[d]}`` (before spring 2023) or ``{token: T[n, d]}``.

Written by diffusers' training scripts and the sd-concepts-library. The key is the trigger. diffusers'
SDXL script writes two such files, one per encoder (768 and 1280 wide); each reads as one slot.
"""

from __future__ import annotations

from ..errors import BrokenFileError
from .base import Part, Raw, Tensor, looks_like_weight_key, width_slot

#: Keys that belong to other layouts; a dict holding one of them is not a diffusers file.
OTHER_LAYOUT_KEYS = {"string_to_param", "emb_params", "emp_params", "clip_l", "clip_g", "clip_h", "t5", "t5xxl"}


def detect(raw: Raw) -> bool:
    """A non-empty dict of tensors keyed by tokens, none of them another layout's key nor a
    model weight's dotted name (a checkpoint's token table is not a 49,408-vector embedding)."""
    tree = raw.tree
    return (
        isinstance(tree, dict)
        and bool(tree)
        and all(isinstance(v, Tensor) for v in tree.values())
        and not any(
            isinstance(k, str)
            and (k in OTHER_LAYOUT_KEYS or k.removesuffix("_out") in OTHER_LAYOUT_KEYS or k.startswith("bundle_emb.") or looks_like_weight_key(k))
            for k in tree
        )
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


# -- writing ------------------------------------------------------------------------------------


def second_file(path: str) -> str:
    """The CLIP-G file beside an SDXL pair's first file: ``learned_embeds_2.safetensors``."""
    import os

    root, ext = os.path.splitext(path)
    return f"{root}_2{ext}"


def write(emb, path: str, container: str, options: dict):
    """Plan a diffusers file ``{trigger: T[n, d]}`` (safetensors with metadata, or ``.bin``); the
    key is ``token=`` when given, else the embedding's name.
    ``sdxl_two_files=True`` writes an SDXL pair the way diffusers' SDXL script does: CLIP-L to
    ``path``, CLIP-G to :func:`second_file`, under the same token."""
    from . import safetensors_file, torchfile_write
    from ..errors import WriteError
    from .writer_base import Loss, Output, Plan, check_width, metadata_losses, output_losses, pick_slot, safetensors_metadata, stored_array

    losses: list = []
    if options.get("sdxl_two_files"):
        if not {"clip_l", "clip_g"} <= set(emb.slots):
            raise WriteError(f"sdxl_two_files needs clip_l and clip_g; {emb.name!r} has {', '.join(emb.slots)}", path=path)
        pairs = [(path, "clip_l"), (second_file(path), "clip_g")]
        for other in emb.slots:
            if other not in ("clip_l", "clip_g"):
                losses.append(Loss("slot-dropped", f"a diffusers SDXL pair holds clip_l and clip_g: {other} dropped", other))
        output_losses(emb, "diffusers", losses)
        for _, slot in pairs:
            check_width(emb, slot, "diffusers", path)
    else:
        pairs = [(path, pick_slot(emb, "diffusers", options, losses, path=path))]
        if {"clip_l", "clip_g"} <= set(emb.slots):
            hint = "; sdxl_two_files=True writes both"
            losses = [Loss(x.code, x.message + hint, x.slot) if x.code == "slot-dropped" else x for x in losses]
    if container != "safetensors":
        metadata_losses(emb, "diffusers .bin", (), losses)
    outputs = []
    token = options.get("token") or emb.name
    if token != emb.name:
        losses.append(Loss("trigger-renamed", f"the file stores the trigger {token!r} (its file name, so every host types the same word), not {emb.name!r}"))
    for target, slot in pairs:
        dtype, arr = stored_array(emb, slot)
        tree = {token: torchfile_write.TensorData(dtype, arr)}
        if container == "safetensors":
            data = safetensors_file.dumps({token: (dtype, arr)}, safetensors_metadata(emb, all_json=bool(options.get("_in_folder"))))
        else:
            data = torchfile_write.dumps(tree)
        outputs.append(Output(target, data, tree=tree))
    return Plan(outputs, losses)

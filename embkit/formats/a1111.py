"""A1111 layout: ``{'string_to_param': {'*': T[n, d]}, 'string_to_token', 'name', 'step', …}``.

A1111 triggers the embedding by the *file stem*; the stored ``name`` is kept as ``stored_name``. The
original textual-inversion repo wrote ``string_to_param`` as an ``nn.ParameterDict`` (unwrapped from
``_parameters``), could hold several placeholders, and had no ``name``: each key becomes one embedding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BrokenFileError
from .base import Part, Raw, Tensor, plain, stem_of, width_slot
from .pickle_globals import ModuleStandIn

#: Top-level keys A1111 writes besides the tensors, copied into metadata under the same names.
META_KEYS = ("step", "sd_checkpoint", "sd_checkpoint_name")


def detect(raw: Raw) -> bool:
    """A dict with a ``string_to_param`` entry."""
    return isinstance(raw.tree, dict) and "string_to_param" in raw.tree


def _params(value: Any, path: str) -> dict:
    if isinstance(value, ModuleStandIn):
        value = value.state.get("_parameters", {})
    if not isinstance(value, dict):
        raise BrokenFileError(f"string_to_param is a {type(value).__name__}, expected a dict of tensors", path=path)
    if not value:
        raise BrokenFileError("string_to_param is empty", path=path)
    return value


def parse(raw: Raw, path: str) -> list[Part]:
    """Each ``string_to_param`` key as one embedding (A1111 itself accepts only one)."""
    tree = raw.tree
    params = _params(tree["string_to_param"], path)
    stem = stem_of(path)
    stored = tree.get("name")
    meta: dict[str, Any] = {k: plain(tree[k]) for k in META_KEYS if k in tree}
    extra = {str(k): plain(v) for k, v in tree.items() if k not in ("string_to_param", "string_to_token", "name", *META_KEYS)}
    meta.update(extra)
    if isinstance(stored, str):
        meta["stored_name"] = stored
    if "string_to_token" in tree:
        meta["string_to_token"] = plain(tree["string_to_token"])
    parts = []
    for i, (key, tensor) in enumerate(params.items()):
        if not isinstance(tensor, Tensor):
            raise BrokenFileError(f"string_to_param[{key!r}] is a {type(tensor).__name__}, not a tensor", path=path)
        slot = width_slot(tensor, path, f"string_to_param[{key!r}]")
        name = stem if len(params) == 1 else f"{stem}_{i}"
        warnings = []
        if isinstance(stored, str) and stored != stem and raw.container == "pickle":
            warnings.append(
                f"stored name {stored!r} differs from the file name {stem!r}: A1111 triggers it as {stem!r}, diffusers as {stored!r}"
            )
        if len(params) > 1:
            warnings.append(f"file holds {len(params)} placeholders; A1111 refuses files with more than one")
        part_meta = dict(meta)
        if len(params) > 1 or key != "*":
            part_meta["placeholder"] = str(key)
        parts.append(Part(name=name, tensors={slot: tensor}, metadata=part_meta, member=str(key) if len(params) > 1 else None, warnings=warnings))
    return parts


def parse_image(raw: Raw, path: str) -> list[Part]:
    """An image card: the same dict, triggered by its stored name (the file name is a picture's)."""
    parts = parse(raw, path)
    stored = raw.tree.get("name")
    for part in parts:
        if isinstance(stored, str) and stored.strip() and len(parts) == 1:
            part.name = stored
        part.warnings.extend(n for n in raw.notes if n.startswith("decoded"))
    return parts


# -- writing ------------------------------------------------------------------------------------

#: A1111 writes this token id for its one placeholder, whatever the model.
A1111_TOKEN_ID = 265


def _a1111_tree(emb, tensor, name: str, losses: list, fmt_id: str) -> dict:
    """The dict A1111's ``Embedding.save`` writes, key for key and in its order."""
    from .writer_base import Loss

    meta = emb.metadata
    step = meta.get("step")
    if step is not None and not (type(step) is int):
        try:
            step = int(str(step))
        except ValueError:
            losses.append(Loss("metadata-dropped", f"{fmt_id} stores step as an integer; {step!r} dropped"))
            step = None
    checkpoint = {}
    for key in ("sd_checkpoint", "sd_checkpoint_name"):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            value = str(value)
        checkpoint[key] = value
    return {
        "string_to_token": {"*": A1111_TOKEN_ID},
        "string_to_param": {"*": tensor},
        "name": name,
        "step": step,
        **checkpoint,
    }


def write(emb, path: str, container: str, options: dict):
    """Plan an A1111 ``.pt``: one slot, ``token=`` (else the stored name, else the trigger) as
    ``name``, step and checkpoint from the metadata; triggered by the file stem."""
    from . import torchfile_write
    from .writer_base import (
        Output,
        Plan,
        metadata_losses,
        pick_slot,
        stored_array,
        trigger_loss,
    )

    losses: list = []
    slot = pick_slot(emb, "a1111", options, losses, path=path)
    dtype, arr = stored_array(emb, slot)
    name = options.get("token") or (emb.metadata.get("stored_name") if isinstance(emb.metadata.get("stored_name"), str) else emb.name)
    tree = _a1111_tree(emb, torchfile_write.TensorData(dtype, arr), name, losses, "a1111")
    metadata_losses(emb, "a1111", META_KEYS, losses)
    trigger_loss(emb, stem_of(path), "a1111", losses, stored=name)
    return Plan([Output(path, torchfile_write.dumps(tree), tree=tree)], losses)


def write_image(emb, path: str, container: str, options: dict):
    """Plan an A1111 embedding card (PNG): the A1111 dict as text chunk and pixels around
    ``picture=`` (a PIL image or a path) or a generated picture. Triggered by the stored name.
    Cards hold JSON numbers read back as float32."""
    from . import imagecard
    from .writer_base import Loss, Output, Plan, cast, metadata_losses, pick_slot

    losses: list = []
    slot = pick_slot(emb, "a1111-image", options, losses, path=path)
    if emb.dtypes[slot] != "float32":
        losses.append(Loss("dtype-changed", f"{slot}: an embedding card stores numbers read back as float32, not {emb.dtypes[slot]}", slot))
    one = cast(emb.replace(vectors={slot: emb.vectors[slot]}), "float32", losses, fmt_id="a1111-image")
    values = np.asarray(one.vectors[slot], dtype=np.float32)
    tree = _a1111_tree(emb, values, emb.name, losses, "a1111-image")
    metadata_losses(emb, "a1111-image", META_KEYS, losses)
    return Plan([Output(path, imagecard.dumps_png(tree, options.get("picture")), tree=tree)], losses)

"""A1111 layout: ``{'string_to_param': {'*': T[n, d]}, 'string_to_token', 'name', 'step', …}``.

A1111 triggers the embedding by the *file stem*; the stored ``name`` is kept as ``stored_name``. The
original textual-inversion repo wrote ``string_to_param`` as an ``nn.ParameterDict`` (unwrapped from
``_parameters``), could hold several placeholders, and had no ``name``: each key becomes one embedding.
"""

from __future__ import annotations

from typing import Any

from ..errors import BrokenFileError
from .base import Part, Raw, Tensor, plain, stem_of, width_slot
from .torchfile import ModuleStandIn

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
    extra = {k: plain(v) for k, v in tree.items() if k not in ("string_to_param", "string_to_token", "name", *META_KEYS)}
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

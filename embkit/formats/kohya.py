"""kohya layout: ``{'emb_params': T[n, d]}`` (OneTrainer misspells it ``emp_params`` for SD1/SD2).

Triggered by the file stem. safetensors files may carry ``modelspec.*`` metadata, kept as is.
"""

from __future__ import annotations

from .base import Part, Raw, Tensor, width_slot

KEYS = ("emb_params", "emp_params")


def detect(raw: Raw) -> bool:
    """A dict whose only tensor is ``emb_params`` or ``emp_params``."""
    tree = raw.tree
    if not isinstance(tree, dict):
        return False
    tensors = [k for k, v in tree.items() if isinstance(v, Tensor)]
    return len(tensors) == 1 and tensors[0] in KEYS


def parse(raw: Raw, path: str) -> list[Part]:
    """One embedding named by the file stem."""
    from .base import plain, stem_of

    key = next(k for k in raw.tree if k in KEYS)
    tensor = raw.tree[key]
    slot = width_slot(tensor, path, key)
    meta = {k: plain(v) for k, v in raw.tree.items() if k != key}
    if key == "emp_params":
        meta["key"] = key
    return [Part(name=stem_of(path), tensors={slot: tensor}, metadata=meta)]

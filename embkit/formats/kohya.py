"""kohya layout: ``{'emb_params': T[n, d]}`` (OneTrainer misspells it ``emp_params`` for SD1/SD2).

Triggered by the file stem. safetensors files may carry ``modelspec.*`` metadata, kept as is.

OneTrainer's SD1.5/SD2 saver adds ``emp_params_out`` when its "output embedding" option is on
(OneTrainer@23df3832e8:modules/modelSaver/stableDiffusion/StableDiffusionEmbeddingSaver.py:19-33):
the output vectors of the same encoder, read into ``<slot>_out`` of the slot the width names. With
that option the plain ``emp_params`` is all zeros (modules/model/BaseModel.py:24-49); ``inspect``
says so.
"""

from __future__ import annotations

from ..errors import BrokenFileError
from .base import Part, Raw, Tensor, matrix_shape, plain, stem_of, width_slot

KEYS = ("emb_params", "emp_params")
#: OneTrainer's output vectors beside ``emp_params`` (never beside kohya's ``emb_params``).
OUT_KEY = "emp_params_out"


def detect(raw: Raw) -> bool:
    """A dict whose only tensor is ``emb_params`` or ``emp_params``, or OneTrainer's
    ``emp_params`` with ``emp_params_out``."""
    tree = raw.tree
    if not isinstance(tree, dict):
        return False
    tensors = [k for k, v in tree.items() if isinstance(v, Tensor)]
    if len(tensors) == 1:
        return tensors[0] in KEYS
    return len(tensors) == 2 and set(tensors) == {"emp_params", OUT_KEY}


def parse(raw: Raw, path: str) -> list[Part]:
    """One embedding named by the file stem; ``emp_params_out`` as the output vectors of the slot
    ``emp_params``'s width names."""
    key = next(k for k in raw.tree if k in KEYS and isinstance(raw.tree[k], Tensor))  # detect saw exactly one
    tensor = raw.tree[key]
    slot = width_slot(tensor, path, key)
    tensors = {slot: tensor}
    out = raw.tree.get(OUT_KEY)
    if isinstance(out, Tensor):
        width = matrix_shape(out, path, OUT_KEY)[1]
        if width != matrix_shape(tensor, path, key)[1]:
            raise BrokenFileError(f"{OUT_KEY} is {width} wide but {key} is {matrix_shape(tensor, path, key)[1]}: they must be one encoder's", path=path)
        tensors[slot + "_out"] = out
    meta = {str(k): plain(v) for k, v in raw.tree.items() if k not in (key, OUT_KEY)}
    if key == "emp_params":
        meta["key"] = key
    return [Part(name=stem_of(path), tensors=tensors, metadata=meta)]


# -- writing ------------------------------------------------------------------------------------

#: ``modelspec.architecture`` for a kohya file, by the slot it holds (kohya's sai_model_spec names).
ARCHITECTURES = {
    "clip_l": "stable-diffusion-v1/textual-inversion",
    "clip_h": "stable-diffusion-v2-768-v/textual-inversion",
    "clip_g": "stable-diffusion-xl-v1-base/textual-inversion",
}


def write(emb, path: str, container: str, options: dict):
    """Plan a kohya file: ``{'emb_params': T[n, d]}``; in safetensors with ``modelspec.*`` keys
    and embkit's metadata, in a ``.pt`` with nothing else. Triggered by the file stem."""
    from . import safetensors_file, torchfile_write
    from .base import stem_of
    from .writer_base import Output, Plan, metadata_losses, pick_slot, safetensors_metadata, stored_array, trigger_loss

    losses: list = []
    slot = pick_slot(emb, "kohya", options, losses, path=path)
    dtype, arr = stored_array(emb, slot)
    stem = stem_of(path)
    trigger_loss(emb, stem, "kohya", losses)
    if container == "safetensors":
        spec = {
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": ARCHITECTURES[slot],
            "modelspec.implementation": "https://github.com/Stability-AI/generative-models" if slot == "clip_g" else "diffusers",
            "modelspec.title": emb.name,
        }
        # the file name is the trigger; a different name is kept as stored_name
        kept = emb if stem == emb.name else emb.replace(metadata={**emb.metadata, "stored_name": emb.name})
        meta = safetensors_metadata(kept)
        for key, value in spec.items():
            meta.setdefault(key, value)
        data = safetensors_file.dumps({"emb_params": (dtype, arr)}, meta)
    else:
        metadata_losses(emb, "kohya .pt", (), losses)
        data = torchfile_write.dumps({"emb_params": torchfile_write.TensorData(dtype, arr)})
    return Plan([Output(path, data, tree={"emb_params": torchfile_write.TensorData(dtype, arr)})], losses)

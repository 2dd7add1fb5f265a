"""InvokeAI (``Invoke@8e71a8a``): embeddings are installed as models, then typed as ``<name>``.

* install candidates: files ending ``.ckpt .bin .pth .safetensors .pt .gguf``, and folders holding
  ``learned_embeds.bin`` (one model, named after the folder); pictures never;
* pickles pass picklescan, then ``torch.load`` (torch ≥ 2.7: ``weights_only=True``);
* the base model comes from the token width: ``string_to_param``'s value when the file has
  ``string_to_token``, ``emb_params``, ``clip_g``, else **``shape[0]``** of the first value (right
  for 1-D diffusers tensors, wrong for 2-D ones): 768 → SD1, 1024 → SD2, 1280 → SDXL, anything
  else refuses the install;
* a trigger ``<name>`` whose model's base is not the graph's is ignored with a warning; on SDXL each
  encoder takes the half of the width it needs, a missing half raises "Cannot load embedding".
"""

from __future__ import annotations

import os
import re

from .common import FAMILY_TITLES, KEY_SLOTS, SLOT_TITLES, HostVerdict, Read, failed, finish, first_value, shape_text
from .facts import FileFacts, TensorInfo
from .safeload import weights_only_refusal

MODEL_EXTS = (".ckpt", ".bin", ".pth", ".safetensors", ".pt", ".gguf")
#: ``ti_utils.py:11-15``: the only triggers InvokeAI finds in a prompt.
TRIGGER_RE = re.compile(r"<[a-zA-Z0-9., _-]+>")
#: token width → base model (``configs/textual_inversion.py:65-94``)
BASES = {768: "sd1", 1024: "sd2", 1280: "sdxl"}


def _name(facts: FileFacts) -> str:
    if facts.container == "folder" and facts.inner == "learned_embeds.bin":
        return facts.filename
    if facts.container == "folder":
        return facts.inner_stem or "learned_embeds"
    return facts.stem


def read(facts: FileFacts) -> list[Read]:
    """What installing the file into InvokeAI gives: a model name and base, or why it fails."""
    if facts.bundles:
        return [Read(None, member=n, status="skipped", reasons=["InvokeAI drops bundle_emb.* keys when it loads a LoRA"]) for n in _groups(facts)]
    ext = os.path.splitext(facts.inner)[1].lower() if facts.container == "folder" and facts.inner else facts.ext
    if facts.container != "folder" and ext not in MODEL_EXTS:
        return [Read(None, status="ignored", reasons=[f"InvokeAI installs {', '.join(MODEL_EXTS)} files and concept folders; a {ext or 'folder'} is not a model to it"])]
    name = _name(facts)
    trigger = f"<{name}>"
    notes: list[str] = []
    if not TRIGGER_RE.fullmatch(trigger):
        return [Read(None, status="error", reasons=[f"{name!r} cannot be typed: InvokeAI finds only <names> made of letters, digits, '.', ',', ' ', '_' and '-'"])]
    if ext != ".safetensors" and facts.container in ("pickle", "folder"):
        why = weights_only_refusal(facts)
        if why is not None:
            return [Read(trigger, status="error", reasons=[f"install fails: {why}"])]
        if not facts.exact:
            notes.append("whether torch.load with weights_only=True accepts it needs the file itself: not checked")
    tensors = {t.key: t for t in facts.tensors}
    keys = facts.keys
    looks = "string_to_param" in keys or "emb_params" in keys or "clip_g" in keys or (len(keys) < 10 and len(tensors) == len(keys) and keys)
    if not looks:
        return [Read(trigger, status="error", reasons=["install fails: InvokeAI does not recognise it as a textual inversion"])]
    first = first_value(facts)
    params = facts.params
    if facts.string_to_token and params:
        dim, src = params[0].width, "string_to_param"
    elif "emb_params" in tensors:
        dim, src = tensors["emb_params"].width, "emb_params"
    elif "clip_g" in tensors:
        dim, src = tensors["clip_g"].width, "clip_g"
    elif first is not None:
        dim, src = first.shape[0], f"shape[0] of {first.key!r} ({shape_text(first)})"
    else:
        return [Read(trigger, status="error", reasons=["install fails: its first value is not a tensor (an A1111 file without string_to_token?)"])]
    base = BASES.get(int(dim))
    if base is None:
        return [Read(trigger, status="error", reasons=[f"install fails: InvokeAI takes the token width from {src}, {dim}: 'unrecognized token dimension'"])]
    unused: list[str] = []
    if "string_to_param" in keys and params:
        vec: TensorInfo | dict[str, TensorInfo] = params[0]
        if len(params) > 1:
            notes.append(f"{len(params)} tokens in string_to_param: only the first is used")
    elif "emb_params" in tensors:
        vec = tensors["emb_params"]
    elif "clip_g" in tensors and "clip_l" in tensors:
        vec = {"embedding": tensors["clip_g"], "embedding_2": tensors["clip_l"]}
        unused = [KEY_SLOTS[k] for k in tensors if k in KEY_SLOTS and KEY_SLOTS[k] not in ("clip_l", "clip_g")]
    else:
        vec = first  # type: ignore[assignment]
    return [Read(trigger, vec, member=facts.embkit[0][1] if len(facts.embkit) == 1 else None, notes=notes, extra={"base": base, "unused": unused})]


def _groups(facts: FileFacts) -> list[str]:
    from .common import bundle_groups

    return list(bundle_groups(facts))


def apply(read: Read, family: str, name: str | None = None) -> HostVerdict:
    """A graph of the model family: same base → the encoders take their half; another base →
    ignored with a warning."""
    if read.status is not None:
        return failed("invokeai", family, read, name)
    base = read.extra["base"]
    fam = FAMILY_TITLES[family]
    if family not in BASES.values():
        return finish("invokeai", family, read, [], [], [f"InvokeAI has textual inversions only for SD1, SD2 and SDXL, not {fam}"], status="skipped", name=name)
    if base != family:
        return finish(
            "invokeai", family, read, [], [],
            [f"installed as a {FAMILY_TITLES[base]} model: on a {fam} graph InvokeAI ignores it ('not a valid textual inversion model for this graph')"],
            status="skipped", name=name,
        )
    if family != "sdxl":
        return finish("invokeai", family, read, ["clip_l" if family == "sd1" else "clip_h"], [], [], name=name)
    vec = read.vec
    halves = vec if isinstance(vec, dict) else {"embedding": vec}
    applied, reasons = [], []
    for slot, width in (("clip_l", 768), ("clip_g", 1280)):
        second = halves.get("embedding_2")
        pick = second if second is not None and second.width == width else halves["embedding"]
        if pick.width != width:
            reasons.append(f"{SLOT_TITLES[slot]} needs {width}-wide vectors, the file has {pick.width}: 'Cannot load embedding for {read.trigger}'")
        else:
            applied.append(slot)
    if reasons:
        return finish("invokeai", family, read, applied, [s for s in ("clip_l", "clip_g") if s not in applied], reasons, status="error", name=name)
    return finish("invokeai", family, read, applied, [], [], name=name, unused=read.extra.get("unused", []))

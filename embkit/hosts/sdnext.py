"""SD.Next, diffusers backend (``SDNext@058a7f0:modules/textual_inversion.py``): its own loader.

* lists only ``.safetensors`` and ``.pt`` files (not ``.bin``), skips ``*.preview`` stems, zero-byte
  files and pictures; textual inversion runs on SD1, SD2 and SDXL models only;
* ``.safetensors``: every tensor, in key order; ``.pt``: ``torch.load``, then ``['string_to_param']['*']``
  only (anything else is a KeyError, logged at debug level: silently skipped);
* tokens ``stem, stem_1 …`` (the file stem, case-sensitive);
* skipped unless every tensor's width is one of the model's encoders' and the count fits
  (``load_diffusers_embedding``); each tensor goes to the encoder of its width;
* LoRA bundles load when the LoRA is applied, named by the second dot-part of the key.
"""

from __future__ import annotations

import os

from .common import FAMILY_TITLES, HostVerdict, Read, bundle_groups, failed, finish, shape_text
from .facts import FileFacts, TensorInfo
from .safeload import weights_only_refusal

HIDDEN = {"sd1": (768,), "sd2": (1024,), "sdxl": (768, 1280)}
WIDTH_SLOT = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}


def read(facts: FileFacts) -> list[Read]:
    """What SD.Next's embeddings list makes of the file."""
    if facts.bundles:
        return [
            Read(name, list(parts.values()), member=name, notes=[f"applies while the LoRA {facts.stem!r} is applied"])  # type: ignore[arg-type]
            for name, parts in bundle_groups(facts).items()
        ]
    if facts.container == "folder":
        if facts.inner != "learned_embeds.safetensors":
            return [Read(None, status="ignored", reasons=["SD.Next lists only .safetensors and .pt files: learned_embeds.bin is never read"])]
        ext, stem = ".safetensors", facts.inner_stem
    else:
        ext, stem = facts.ext, facts.stem
    if ext not in (".safetensors", ".pt"):
        return [Read(None, status="ignored", reasons=[f"SD.Next lists only .safetensors and .pt files; a {ext or 'this'} file is never read"])]
    if os.path.splitext(stem or "")[1].upper() == ".PREVIEW" or facts.size == 0:
        return [Read(None, status="ignored", reasons=["SD.Next skips *.preview files and zero-byte files"])]
    trigger = stem
    if ext == ".safetensors":
        if facts.container not in ("safetensors", "folder"):
            return [Read(trigger, status="error", reasons=["safe_open cannot read it"])]
        tensors = sorted(facts.tensors, key=lambda t: t.key)
        one_d = [t.key for t in tensors if len(t.shape) == 1]
        if one_d:
            return [Read(trigger, status="error", reasons=[f"{one_d[0]!r} is 1-D: SD.Next makes one token per element ({tensors[0].shape[0]} tokens of single numbers)"])]
        return [Read(trigger, tensors, member=_member(facts))]  # type: ignore[arg-type]
    why = weights_only_refusal(facts) if facts.container == "pickle" else "torch.load cannot read it"
    if why is not None:
        return [Read(trigger, status="error", reasons=[why])]
    star = next((p for p in facts.params if p.key == "*"), None) if "string_to_param" in facts.keys else None
    if star is None:
        return [Read(trigger, status="skipped", reasons=["SD.Next reads only string_to_param['*'] from a .pt: KeyError, logged at debug level"])]
    return [Read(trigger, [star], member=_member(facts))]  # type: ignore[arg-type]


def _member(facts: FileFacts) -> str | None:
    return facts.embkit[0][1] if len(facts.embkit) == 1 else None


def apply(read: Read, family: str, name: str | None = None) -> HostVerdict:
    """``load_diffusers_embedding``'s width rules."""
    if read.status is not None:
        return failed("sdnext", family, read, name)
    fam = FAMILY_TITLES[family]
    if family not in HIDDEN:
        return finish("sdnext", family, read, [], [], [f"SD.Next runs textual inversion on SD1, SD2 and SDXL models, not {fam}"], status="skipped", name=name)
    vecs: list[TensorInfo] = list(read.vec) if isinstance(read.vec, list) else []  # type: ignore[arg-type]
    hidden = HIDDEN[family]
    sizes = [t.width for t in vecs]
    slots = [WIDTH_SLOT[w] for w in hidden]
    if not all(w in hidden for w in sizes) or len(sizes) > len(hidden) or (len(sizes) < len(hidden) and len(sizes) != 2):
        shown = ", ".join(shape_text(t) for t in vecs)
        why = f"SD.Next skips it: tensor widths {shown} do not fit {fam}'s encoders ({', '.join(map(str, hidden))})"
        if family == "sdxl" and sizes == [768]:
            why += " (unless 'Auto-convert SD15 embeddings to SDXL' is on)"
        return finish("sdnext", family, read, [], slots, [why], name=name)
    if len(set(sizes)) < len(sizes):
        return finish("sdnext", family, read, [], [], [f"two tensors of width {sizes[0]}: SD.Next writes both into {WIDTH_SLOT[sizes[0]]} as token rows (OneTrainer's _out vectors become prompt tokens)"], status="error", name=name)
    got = [WIDTH_SLOT[w] for w in sizes]
    return finish("sdnext", family, read, got, [s for s in slots if s not in got], [], name=name)

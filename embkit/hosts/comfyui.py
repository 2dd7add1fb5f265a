"""ComfyUI (``Comfy@a125cd8:comfy/sd1_clip.py``): ``embedding:NAME`` in the prompt.

* ``NAME`` is looked up in ``models/embeddings`` and every folder below it, as given, then with
  ``.safetensors``, ``.pt``, ``.bin`` appended; the name ends at the first whitespace; the lookup is
  the file system's (case-sensitive on Linux).
* ``.safetensors`` → ``safetensors.torch.load_file``; anything else → ``torch.load`` with ``weights_only=True``
  (plus ComfyUI's extra globals), and on failure a zip fallback that guesses the tensor from the
  ``data/`` members (width 768 or 1024, float32 assumed).
* each text encoder looks the embedding up with its own key (``clip_l`` 768, ``clip_h`` 1024,
  ``clip_g`` 1280, ``t5xxl`` 4096): ``string_to_param``'s first value, else its key, else the first
  value of the dict; a width that does not match is dropped with a warning, the rest applies.
* LoRA-bundled embeddings are not applied by the LoRA loader ("lora key not loaded").
"""

from __future__ import annotations

import os

from .common import FAMILY_TITLES, KEY_SLOTS, SLOT_TITLES, HostVerdict, Read, failed, finish, first_value, shape_text
from .facts import FileFacts
from .safeload import COMFYUI_EXTRA_GLOBALS, comfyui_zip_guess, weights_only_refusal

AUTO_EXTS = (".safetensors", ".pt", ".bin")
#: (slot, key ComfyUI looks up, width) per text encoder of each family.
ENCODERS = {
    "sd1": (("clip_l", "clip_l", 768),),
    "sd2": (("clip_h", "clip_h", 1024),),
    "sdxl": (("clip_l", "clip_l", 768), ("clip_g", "clip_g", 1280)),
    "sd3": (("clip_l", "clip_l", 768), ("clip_g", "clip_g", 1280), ("t5", "t5xxl", 4096)),
    "flux": (("clip_l", "clip_l", 768), ("t5", "t5xxl", 4096)),
}


def trigger_of(facts: FileFacts) -> str:
    """``embedding:<stem>`` (the three extensions ComfyUI appends itself), else the full name;
    a concept folder's tensor file as ``<folder>/learned_embeds``."""
    if facts.container == "folder":
        return f"embedding:{facts.filename}/{facts.inner_stem or 'learned_embeds'}"
    name = facts.stem if facts.ext in AUTO_EXTS else facts.filename
    return f"embedding:{name}"


def read(facts: FileFacts) -> list[Read]:
    """What ComfyUI makes of the file when its name is typed after ``embedding:``."""
    if facts.bundles:
        return [
            Read(None, member=name, status="skipped", reasons=["ComfyUI's LoRA loader does not apply bundled embeddings ('lora key not loaded')"],
                 notes=[f"placed in models/embeddings, `embedding:{facts.stem}` would concatenate every bundled vector"])
            for name in _bundle_names(facts)
        ]
    trigger = trigger_of(facts)
    name = trigger.split(":", 1)[1]
    if any(c.isspace() for c in name):
        return [Read(None, status="error", reasons=[f"{name!r} cannot be typed: ComfyUI's embedding name ends at the first space"])]
    if facts.size == 0:
        return [Read(trigger, status="error", reasons=["ComfyUI cannot load a zero-byte file ('error loading embedding')"])]
    inner_ext = os.path.splitext(facts.inner)[1].lower() if facts.inner else facts.ext
    is_st = inner_ext == ".safetensors"
    notes: list[str] = []
    if is_st:
        if facts.container not in ("safetensors", "folder"):
            return [Read(trigger, status="error", reasons=["safetensors cannot read it ('error loading embedding, skipping loading')"])]
        return [Read(trigger, {t.key: t for t in facts.tensors}, member=_member(facts), extra={"first": first_value(facts)})]
    if facts.container in ("png", "webp"):
        return [Read(trigger, status="error", reasons=["torch.load cannot read a picture and it is no zip: 'error loading embedding, skipping loading' (embedding cards are A1111's)"])]
    why = weights_only_refusal(facts, COMFYUI_EXTRA_GLOBALS) if facts.container in ("pickle", "folder") else "not a torch file"
    if why is not None or facts.container not in ("pickle", "folder"):
        guess = comfyui_zip_guess(facts)
        if guess is None:
            return [Read(trigger, status="error", reasons=[f"{why}, and its zip fallback finds no tensor: 'error loading embedding, skipping loading'"])]
        rows, width = guess
        dtypes = {t.dtype for t in (facts.params or facts.tensors)}
        if dtypes - {"float32"}:
            return [Read(trigger, status="error", reasons=[f"{why}; its zip fallback reads the {'/'.join(sorted(dtypes))} data as float32: garbage vectors"])]
        notes.append(f"{why}; ComfyUI's zip fallback guesses a {rows}x{width} tensor from the raw data")
        return [Read(trigger, None, member=_member(facts), notes=notes, extra={"guess": width})]
    if not facts.exact:
        notes.append("whether torch.load with weights_only=True accepts it needs the file itself: not checked")
    return [Read(trigger, {t.key: t for t in facts.tensors}, member=_member(facts), notes=notes, extra={"first": first_value(facts), "params": facts.params if "string_to_param" in facts.keys else ()})]


def _bundle_names(facts: FileFacts) -> list[str]:
    from .common import bundle_groups

    return list(bundle_groups(facts))


def _member(facts: FileFacts) -> str | None:
    return facts.embkit[0][1] if len(facts.embkit) == 1 else None


def apply(read: Read, family: str, name: str | None = None) -> HostVerdict:
    """Each text encoder of the family looks the embedding up with its own key; a width that
    does not fit is dropped ("shape mismatch … will be ignored"), the rest applies."""
    if read.status is not None:
        return failed("comfyui", family, read, name)
    applied, missed, reasons, took = [], [], [], []
    tensors = read.vec if isinstance(read.vec, dict) else {}
    for slot, key, width in ENCODERS[family]:
        if "guess" in read.extra:
            got_w, what = read.extra["guess"], "the guessed tensor"
        else:
            params = read.extra.get("params") or ()
            pick = params[0] if params else tensors.get(key) or read.extra.get("first")
            if pick is None:
                missed.append(slot)
                reasons.append(f"no tensor for {SLOT_TITLES[slot]}")
                continue
            got_w, what = pick.width, f"{pick.key!r} ({shape_text(pick)})"
            if got_w == width:
                took.append(pick.key)
        if got_w == width:
            applied.append(slot)
        else:
            missed.append(slot)
            reasons.append(f"{SLOT_TITLES[slot]} gets {what}, {got_w} wide, not {width}: dropped with 'shape mismatch … embedding will be ignored'")
    notes = []
    if applied and missed:
        notes.append(f"on {FAMILY_TITLES[family]} only the {', '.join(SLOT_TITLES[s] for s in applied)} part applies")
    # an encoder-keyed tensor no encoder took (an SDXL file's CLIP-G half on SD1)
    unused = [] if read.extra.get("params") else [KEY_SLOTS[k] for k in tensors if k in KEY_SLOTS and k not in took]
    return finish("comfyui", family, read, applied, missed, reasons, notes, name=name, unused=unused)

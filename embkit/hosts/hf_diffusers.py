"""huggingface/diffusers ``pipe.load_textual_inversion(path)`` (``diffusers@58eb52c:src/diffusers/loaders/textual_inversion.py``).

* a folder is tried as ``learned_embeds.safetensors``, then ``learned_embeds.bin``; a file by its
  extension: ``.safetensors`` → ``load_file``, anything else → ``torch.load`` with ``weights_only=True``;
* the token: a one-key dict's key (also kohya's ``emb_params``), else A1111's stored ``name`` with
  ``string_to_param['*']``, else ``ValueError("Loaded state dictionary is incorrect")``; a
  multi-vector token becomes ``tok tok_1 …``;
* the width must match the text encoder it loads into: ``pipe.text_encoder`` by default (CLIP-L
  on SDXL and Flux); SDXL's CLIP-G needs a second call with ``text_encoder_2``/``tokenizer_2``;
  SD3 pipelines have no ``load_textual_inversion``.
"""

from __future__ import annotations

import os

from .common import FAMILY_TITLES, HostVerdict, Read, failed, finish, shape_text
from .facts import FileFacts
from .safeload import weights_only_refusal

#: the text encoder ``load_textual_inversion`` targets by default, per family (slot, width)
DEFAULT_ENCODER = {"sd1": ("clip_l", 768), "sd2": ("clip_h", 1024), "sdxl": ("clip_l", 768), "flux": ("clip_l", 768)}


def read(facts: FileFacts) -> list[Read]:
    """What ``load_textual_inversion(path)`` loads: the token and the tensor, or the error."""
    if facts.bundles:
        return [Read(None, member=n, status="skipped", reasons=["diffusers has no code for embeddings bundled in a LoRA (bundle_emb.*)"]) for n in _groups(facts)]
    ext = os.path.splitext(facts.inner)[1].lower() if facts.container == "folder" and facts.inner else facts.ext
    notes: list[str] = []
    if ext == ".safetensors":
        if facts.container not in ("safetensors", "folder"):
            return [Read(None, status="error", reasons=["safetensors.torch.load_file cannot read it"])]
    else:
        if facts.container in ("png", "webp"):
            return [Read(None, status="error", reasons=["torch.load cannot read a picture (embedding cards are A1111's)"])]
        why = weights_only_refusal(facts) if facts.container in ("pickle", "folder") else "torch.load cannot read it"
        if why is not None:
            return [Read(None, status="error", reasons=[why])]
        if not facts.exact:
            notes.append("whether torch.load with weights_only=True accepts it needs the file itself: not checked")
    if len(facts.keys) == 1:
        t = facts.tensor(facts.keys[0])
        if t is None:
            return [Read(None, status="error", reasons=["its one value is not a tensor"])]
        token = t.key
        if token in ("emb_params", "emp_params"):
            notes.append(f"kohya's key {token!r} becomes the token: pass token= to trigger it by another word")
        return [Read(token, t, member=_member(facts), notes=notes)]
    if "string_to_param" in facts.keys:
        if facts.stored_name is None:
            return [Read(None, status="error", reasons=["an A1111 file without a stored 'name': KeyError 'name' (pass token=)"])]
        star = next((p for p in facts.params if p.key == "*"), None)
        if star is None:
            return [Read(None, status="error", reasons=["string_to_param has no '*' key: KeyError"])]
        return [Read(facts.stored_name, star, member=_member(facts), notes=notes)]
    keys = ", ".join(facts.keys[:4]) + (" …" if len(facts.keys) > 4 else "")
    return [Read(None, status="error", reasons=[f"ValueError 'Loaded state dictionary is incorrect': {len(facts.keys)} keys ({keys}) and no string_to_param; load each tensor with token="])]


def _groups(facts: FileFacts) -> list[str]:
    from .common import bundle_groups

    return list(bundle_groups(facts))


def _member(facts: FileFacts) -> str | None:
    return facts.embkit[0][1] if len(facts.embkit) == 1 else None


def apply(read: Read, family: str, name: str | None = None) -> HostVerdict:
    """The width against the text encoder the call loads into."""
    if read.status is not None:
        return failed("diffusers", family, read, name)
    fam = FAMILY_TITLES[family]
    if family == "sd3":
        return finish("diffusers", family, read, [], [], ["StableDiffusion3Pipeline has no load_textual_inversion"], status="error", name=name)
    t = read.vec
    assert t is not None and not isinstance(t, dict)
    slot, width = DEFAULT_ENCODER[family]
    if family == "sdxl":
        if t.width == 768:
            return finish("diffusers", family, read, ["clip_l"], ["clip_g"], ["the call loads into text_encoder (CLIP-L); CLIP-G needs a 1280-wide tensor loaded with text_encoder_2 and tokenizer_2"], name=name)
        if t.width == 1280:
            return finish("diffusers", family, read, ["clip_g"], ["clip_l"], ["1280 wide: load it with text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2 (the default call raises a shape error); CLIP-L gets nothing"], name=name)
    if t.width != width:
        return finish(
            "diffusers", family, read, [], [slot],
            [f"ValueError 'Loaded embeddings are of incorrect shape': {fam}'s text encoder takes {width}, the tensor is {shape_text(t)}"],
            status="error", name=name,
        )
    notes = ["Flux: only the CLIP-L encoder takes textual inversions in diffusers"] if family == "flux" else []
    return finish("diffusers", family, read, [slot], [], [], notes, name=name)

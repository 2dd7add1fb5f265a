"""AUTOMATIC1111's web UI (v1.10.1) and Forge: how they read an embeddings folder.

Facts (``A1111@82a973c:modules/textual_inversion/textual_inversion.py``; Forge's copy in
``backend/text_processing/textual_inversion.py``):

* the folder is walked; ``.pt``/``.bin`` go through ``torch.load`` (A1111: its safe loader),
  ``.safetensors`` through ``safetensors.torch.load_file``; ``.png``/``.webp``/``.jxl``/``.avif`` are
  embedding cards unless named ``*.preview.*``; zero-byte files and every other extension are
  ignored;
* the name is the file stem (``os.path.splitext``), a card's stored ``name``;
* ``create_embedding_from_data``: ``string_to_param`` (exactly one term), else a dict holding
  ``clip_g`` and ``clip_l`` (SDXL: every key kept, width = G + L), else a dict whose first value is
  a tensor (exactly one key), else an error;
* A1111 compares the width with the loaded model's (768 SD1, 1024 SD2, 2048 SDXL) and skips a
  mismatch silently; Forge does so per text encoder with hard-coded widths per engine.
* LoRA-bundled embeddings (A1111 only): ``bundle_emb.<name>.<rest>``, the name before the second dot.
"""

from __future__ import annotations

import os

from .common import FAMILY_TITLES, SLOT_TITLES, HostVerdict, Read, bundle_groups, failed, finish, first_value, unused_slots
from .facts import FileFacts, TensorInfo
from .safeload import A1111_RELEASES, a1111_refusal

CARD_EXTS = (".png", ".webp", ".jxl", ".avif")
PICKLE_EXTS = (".pt", ".bin")
#: A1111: the width ``get_expected_shape`` measures per model family (SDXL concatenates L and G).
A1111_WIDTHS = {"sd1": 768, "sd2": 1024, "sdxl": 2048}
#: Forge: (key, expected width) per text-encoder engine (``Forge@dfdcbab:backend/diffusion_engine/*.py``).
FORGE_ENGINES = {
    "sd1": (("clip_l", 768),),
    "sd2": (("clip_h", 1024),),
    "sdxl": (("clip_l", 2048), ("clip_g", 2048)),
    "sd3": (("clip_l", 768), ("clip_g", 1280)),
    "flux": (("clip_l", 768),),
}


def _trigger_name(facts: FileFacts, ext: str) -> str:
    if facts.container == "folder":
        return facts.inner_stem or "learned_embeds"
    if ext in CARD_EXTS:
        return facts.stored_name if facts.stored_name is not None else facts.stem
    return facts.stem


def _discover(facts: FileFacts, host: str) -> tuple[str, Read | None]:
    """The extension the host dispatches on, and a Read when it never loads the file."""
    ext = os.path.splitext(facts.inner)[1].lower() if facts.container == "folder" and facts.inner else facts.ext
    title = "A1111" if host == "a1111" else "Forge"
    if ext in CARD_EXTS:
        if os.path.splitext(os.path.splitext(facts.filename)[0])[1].upper() == ".PREVIEW":
            return ext, Read(None, status="ignored", reasons=[f"{title} treats *.preview.* pictures as previews, never as embeddings"])
        if facts.embkit_error is not None and not facts.keys:
            return ext, Read(None, status="ignored", reasons=[f"the picture holds no embedding card: {title} shows it as a plain image"])
    elif ext not in (*PICKLE_EXTS, ".safetensors"):
        return ext, Read(None, status="ignored", reasons=[f"{title} reads .pt, .bin, .safetensors and embedding cards; it ignores {ext or 'this'} files"])
    if facts.size == 0:
        return ext, Read(None, status="ignored", reasons=[f"{title} skips zero-byte files"])
    want = "pickle" if ext in PICKLE_EXTS else "safetensors" if ext == ".safetensors" else None
    have = facts.container if facts.container != "folder" else ("safetensors" if ext == ".safetensors" else "pickle")
    if want and facts.exact and have not in (want,) and facts.container not in ("png", "webp"):
        loader = "torch.load" if want == "pickle" else "safetensors"
        return ext, Read(_trigger_name(facts, ext), status="error", reasons=[f"{loader} cannot read it: the {ext} file holds {have} data (\"Error loading embedding\")"])
    return ext, None


def _interpret(data_keys: tuple[str, ...], tensors: dict[str, TensorInfo], params: tuple[TensorInfo, ...] | None, first: TensorInfo | None, title: str) -> tuple[TensorInfo | dict[str, TensorInfo] | None, str | None]:
    """``create_embedding_from_data``: the vector (or SDXL dict) kept, or why it fails."""
    if params is not None:
        if len(params) != 1:
            return None, f"{title} refuses it: 'embedding file has multiple terms in it' ({len(params)} terms in string_to_param)"
        return params[0], None
    if "clip_g" in tensors and "clip_l" in tensors:
        return dict(tensors), None
    if first is not None:
        if len(data_keys) != 1:
            return None, f"{title} refuses it: 'embedding file has multiple terms in it' ({len(data_keys)} keys: {', '.join(data_keys[:4])}{' …' if len(data_keys) > 4 else ''})"
        return first, None
    return None, f"{title} cannot identify it: \"neither textual inversion embedding nor diffuser concept\""


def read(facts: FileFacts, host: str = "a1111") -> list[Read]:
    """What A1111 (``host="a1111"``) or Forge (``"forge"``) makes of the file."""
    title = "A1111" if host == "a1111" else "Forge"
    if facts.bundles:
        return _bundles(facts, host, title)
    ext, stop = _discover(facts, host)
    if stop is not None:
        return [stop]
    trigger = _trigger_name(facts, ext)
    releases: dict[str, bool] = {}
    notes: list[str] = []
    if ext in PICKLE_EXTS and host == "a1111":
        refusals = {rel: a1111_refusal(facts, pattern) for rel, pattern in A1111_RELEASES}
        releases = {rel: why is None for rel, why in refusals.items()}
        if refusals["1.10+"] is not None:
            return [Read(trigger, status="error", reasons=[f"{refusals['1.10+']}: 'Unable to load Textual inversion embedding due to data issue'"], releases=releases)]
        if refusals["before 1.10"] is not None:
            notes.append(f"A1111 before 1.10: {refusals['before 1.10']}; the file does not load there")
        if not facts.exact:
            notes.append("A1111's safe-loader checks need the file itself: not checked")
    if ext in CARD_EXTS and facts.embkit_error is not None:
        return [Read(trigger, status="error", reasons=[f"{title} cannot decode the card: {facts.embkit_error}"], releases=releases)]
    tensors = {t.key: t for t in facts.tensors}
    params = facts.params if "string_to_param" in facts.keys else None
    vec, why = _interpret(facts.keys, tensors, params, first_value(facts), title)
    if why is not None:
        return [Read(trigger, status="error", reasons=[why], releases=releases, notes=notes)]
    if params is not None and facts.params_module:
        notes.append("string_to_param is an nn.ParameterDict (original textual-inversion repo): unwrapped")
    return [Read(trigger, vec, status=None, notes=notes, releases=releases, member=_member(facts))]


def _member(facts: FileFacts) -> str | None:
    parts = facts.embkit
    return parts[0][1] if len(parts) == 1 else None


def _bundles(facts: FileFacts, host: str, title: str) -> list[Read]:
    """Embeddings bundled in a LoRA: A1111 registers each while the LoRA is in the prompt."""
    lora = os.path.splitext(facts.filename)[0]
    out = []
    for name, parts in bundle_groups(facts).items():
        if host == "forge":
            out.append(Read(name, member=name, status="skipped", reasons=["Forge does not apply embeddings bundled in a LoRA (no code reads bundle_emb.* keys)"]))
            continue
        s2p = {k: t for k, t in parts.items() if k.split(".")[0] == "string_to_param"}
        keys = tuple(k for k in parts if k not in s2p) + (("string_to_param",) if s2p else ())
        # emb_dict['string_to_param'] = {k2: weight}: a later string_to_param tensor replaces an earlier one
        params = (list(s2p.values())[-1],) if s2p else None
        others = {k: t for k, t in parts.items() if k not in s2p}
        first = next(iter(others.values()), None)
        vec, why = _interpret(keys, others, params, first, title)
        note = f"applies while <lora:{lora}:1> is in the prompt; an embeddings-folder file named {name!r} wins over it"
        if why is not None:
            out.append(Read(name, member=name, status="error", reasons=[why + "; the whole LoRA then fails to load"], notes=[note]))
        else:
            out.append(Read(name, vec, member=name, notes=[note]))
    return out


def _width(vec: TensorInfo | dict[str, TensorInfo]) -> int:
    if isinstance(vec, dict):
        return vec["clip_g"].width + vec["clip_l"].width
    return vec.width


def apply_a1111(read: Read, family: str, name: str | None = None) -> HostVerdict:
    """A1111 on a model family: loads when the width matches, else skipped without a word."""
    if read.status is not None:
        return failed("a1111", family, read, name)
    if family not in A1111_WIDTHS:
        why = "A1111 does not run Flux models" if family == "flux" else "embkit has no facts on A1111's textual inversion for SD3 (not researched)"
        return finish("a1111", family, read, [], [], [why], status="skipped" if family == "flux" else "unknown", name=name)
    vec = read.vec
    assert vec is not None
    width, want = _width(vec), A1111_WIDTHS[family]
    fam = FAMILY_TITLES[family]
    if width != want:
        return finish(
            "a1111", family, read, [], _slots(family),
            [f"A1111 skips it silently: its vectors are {width} wide, the {fam} model takes {want} (the skipped list is printed only with 'textual_inversion_print_at_load')"],
            name=name,
        )
    notes = []
    if isinstance(vec, dict):
        extra = [k for k in vec if k not in ("clip_l", "clip_g")]
        if extra:
            notes.append(f"{', '.join(extra)} kept but not used on SDXL")
    return finish("a1111", family, read, _slots(family), [], [], notes, name=name, unused=unused_slots(vec, _slots(family)))


def apply_forge(read: Read, family: str, name: str | None = None) -> HostVerdict:
    """Forge on a model family: one database per text-encoder engine, each with its own width."""
    if read.status is not None:
        return failed("forge", family, read, name)
    vec = read.vec
    assert vec is not None
    width = _width(vec)
    applied, missed, reasons = [], [], []
    for key, want in FORGE_ENGINES[family]:
        fits = width == want and (not isinstance(vec, dict) or key in vec)
        (applied if fits else missed).append(key)
        if not fits:
            reasons.append(f"Forge's {SLOT_TITLES[key]} engine on {FAMILY_TITLES[family]} takes {want}-wide embeddings, this one is {width}: skipped silently")
    return finish("forge", family, read, applied, missed, reasons, name=name, unused=unused_slots(vec, applied))


def _slots(family: str) -> list[str]:
    from ..schema import FAMILIES

    return [s for s in FAMILIES[family] if s != "t5"]

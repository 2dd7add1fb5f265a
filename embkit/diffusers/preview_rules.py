"""The facts of a preview that need no torch: which word a host triggers an embedding by, whether an
embedding is a negative one, where its preview file goes, and the ``parameters`` text it carries.

The library (scan, gallery) and the renderer (:mod:`.previews`) both read these, so they live
apart from the renderer and import nothing heavier than Pillow (and that only inside functions).

A preview is ``<stem>.preview.png`` beside the embedding: the name A1111's Extra Networks tab
looks for after ``<stem>.<ext>``, and the one its "Save preview" button writes
(AUTOMATIC1111/stable-diffusion-webui@82a973c, ``modules/ui_extra_networks.py`` lines 22-30 and
647-658, ``find_preview``; ``modules/ui_extra_networks_textual_inversion.py`` line 32). Forge
shares that code. Civitai Helper downloads previews under the same name, sometimes with JPEG or
WebP bytes inside (butaixianran/Stable-Diffusion-Webui-Civitai-Helper@bcbb4b7,
``scripts/ch_lib/civitai.py`` lines 379-418), so readers sniff the bytes, never the extension.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

#: Image extensions A1111 looks for a preview under (``<stem>.preview.<ext>``), in embkit's order
#: of preference (A1111 tries a set, so its own order is not fixed).
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
#: Hosts a preview can be rendered for, in the order the gallery lists them.
PREVIEW_HOSTS = ("a1111", "forge", "comfyui", "invokeai", "sdnext", "diffusers", "embkit")
#: Hosts that trigger a plain embedding file by its file stem.
_STEM_HOSTS = frozenset({"a1111", "forge", "comfyui", "invokeai", "sdnext"})
#: Containers whose trigger is the stored name for every host (A1111 image cards).
_CARD_CONTAINERS = frozenset({"png", "webp"})
#: Text longer than this in a picture's ``parameters`` chunk is cut (a hostile file can hold MBs).
MAX_PARAMETERS_CHARS = 16_384


# -- trigger words ---------------------------------------------------------------------------------


def triggers(item: Any) -> dict[str, str]:
    """The word each host triggers ``item`` by: ``{host id: word}`` for :data:`PREVIEW_HOSTS`.

    ``item`` is an :class:`~embkit.schema.Embedding` or a library
    :class:`~embkit.library.Entry`. A1111, Forge, ComfyUI, InvokeAI and SD.Next trigger a plain
    file by its file stem (ComfyUI users type it as ``embedding:<stem>``); an A1111 image card by
    its stored name; diffusers' ``load_textual_inversion`` by the stored token or name; embkit by
    the embedding's name. Facts and citations: docs/hosts.md and /research/hosts.md.

    This is the one place the previews choose a trigger. The lead replaces it with
    ``embkit.hosts.triggers`` (the hosts table, issue 14) when the branches merge.
    """
    name = str(item.name)
    source = getattr(item, "source", None)
    if source is not None or not hasattr(item, "path"):
        path = getattr(source, "path", None)
        container = getattr(source, "container", None)
        member = getattr(source, "member", None)
        stored = (getattr(item, "metadata", None) or {}).get("stored_name")
    else:
        path, container, member, stored = item.path, item.container, item.member or None, item.stored_name
    stem = name
    if path and not member and container not in _CARD_CONTAINERS:
        base = os.path.basename(str(path).rstrip("/\\"))
        stem = base if container == "folder" else os.path.splitext(base)[0] or name
    stored_word = stored if isinstance(stored, str) and stored.strip() else name
    return {host: (stem if host in _STEM_HOSTS else stored_word if host == "diffusers" else name) for host in PREVIEW_HOSTS}


# -- negative embeddings ---------------------------------------------------------------------------

#: Pieces of a name (case-folded) that mark a negative embedding: the names of the widely used
#: negatives (EasyNegative, ng_deepnegative, bad-hands-5, bad_prompt, badhandv4, verybadimagenegative,
#: FastNegative, BadDream, UnrealisticDream, unaestheticXL, negativeXL …) share these.
NEGATIVE_NAME_PARTS = ("negative", "easyneg", "verybad", "unaesthetic", "badhand", "baddream", "unrealisticdream", "bad-", "bad_", "ng_", "neg_", "neg-", "_neg", "-neg")
#: Whole words (split at anything not a letter or digit) that mark one: ``neg``, ``negxl`` …
NEGATIVE_WORDS = frozenset({"neg", "negxl", "negs", "ng"})
#: Metadata keys whose text says what an embedding is for (sidecars, model cards, notes).
DESCRIPTIVE_KEYS = frozenset({"description", "notes", "tags", "tag", "type", "trained_words", "trainedwords", "activation text", "usage"})
_NEGATIVE_TEXT = re.compile(r"\bnegative\b", re.IGNORECASE)


def is_negative(item: Any) -> bool:
    """Whether ``item`` (an Embedding or a library Entry) is a negative embedding, one meant for
    the negative prompt.

    The rule: its name or file stem, case-folded, contains one of :data:`NEGATIVE_NAME_PARTS` or
    has one of :data:`NEGATIVE_WORDS` as a whole word; or a descriptive metadata value
    (:data:`DESCRIPTIVE_KEYS`: a sidecar's description or tags, say) has the word "negative".
    Guesses go wrong both ways (``bad-`` catches a style called ``bad-romance``), so every
    command that uses it takes an explicit ``--negative-embeddings`` / ``--positive-embeddings``.
    """
    names = {str(item.name)}
    names.update(w for w in triggers(item).values())
    for name in names:
        low = name.casefold()
        if any(part in low for part in NEGATIVE_NAME_PARTS):
            return True
        if NEGATIVE_WORDS & set(re.split(r"[^0-9a-z]+", low)):
            return True
    metadata: Mapping[str, Any] = getattr(item, "metadata", None) or {}
    for key, value in metadata.items():
        if str(key).casefold().replace("_", "") not in {k.replace("_", "") for k in DESCRIPTIVE_KEYS}:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, str) and _NEGATIVE_TEXT.search(v[:4096]) for v in values):
            return True
    return False


# -- files -----------------------------------------------------------------------------------------


def member_part(text: str) -> str:
    """A member name as a file-name part: anything but letters, digits, ``.``, ``_``, ``-`` → ``_``."""
    return re.sub(r"[^0-9A-Za-z._-]", "_", text).strip(".") or "_"


def preview_path(path: str | os.PathLike, member: str | None = None, out: str | os.PathLike | None = None) -> str:
    """Where the preview of the embedding at ``path`` goes: ``<stem>.preview.png`` beside it, or in
    ``out``. A file holding several embeddings gets one per ``member``:
    ``<stem>.<member>.preview.png``. A concept folder's preview sits beside the folder."""
    path = os.fspath(path).rstrip("/\\")
    base = os.path.basename(path)
    stem = base if os.path.isdir(path) else os.path.splitext(base)[0]
    name = f"{stem}.{member_part(member)}.preview.png" if member else f"{stem}.preview.png"
    return os.path.join(os.fspath(out) if out is not None else os.path.dirname(path), name)


def preview_prefix(name: str) -> str | None:
    """``foo`` for ``foo.preview.png`` (any of :data:`PREVIEW_EXTENSIONS`, any case), else ``None``."""
    low = name.lower()
    for ext in PREVIEW_EXTENSIONS:
        if low.endswith(f".preview.{ext}"):
            return name[: -len(f".preview.{ext}")]
    return None


def find_preview(path: str | os.PathLike) -> str | None:
    """The preview beside the embedding at ``path`` (``<stem>.preview.<ext>``), or ``None``."""
    path = os.fspath(path).rstrip("/\\")
    for ext in PREVIEW_EXTENSIONS:
        candidate = preview_path(path)[: -len("png")] + ext
        if os.path.isfile(candidate):
            return candidate
    return None


def read_preview(path: str | os.PathLike) -> dict[str, Any]:
    """What a preview picture says about itself: ``{"format", "width", "height", "parameters",
    "embkit"}``. ``parameters`` is its A1111-style ``parameters`` text chunk (cut at
    :data:`MAX_PARAMETERS_CHARS`) or ``None``; ``embkit`` whether embkit rendered it (the chunk
    names embkit as its version). Only the header is read; an unreadable picture gives
    ``format: None``."""
    from PIL import Image, UnidentifiedImageError

    out: dict[str, Any] = {"format": None, "width": None, "height": None, "parameters": None, "embkit": False}
    try:
        with Image.open(os.fspath(path)) as im:
            out.update(format=im.format, width=int(im.width), height=int(im.height))
            text = im.info.get("parameters") if isinstance(im.info, dict) else None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return out
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if isinstance(text, str):
        out["parameters"] = text[:MAX_PARAMETERS_CHARS]
        out["embkit"] = parse_parameters(out["parameters"]).get("Version", "").startswith("embkit")
    return out


# -- the parameters chunk --------------------------------------------------------------------------


def parse_parameters(text: str) -> dict[str, str]:
    """An A1111 infotext read back: ``{"prompt", "negative_prompt", "Steps", "Seed", …}``.

    The last line holds ``key: value`` pairs separated by commas (a value in double quotes may
    hold commas); the lines before it are the prompt, and the one starting ``Negative prompt:``
    the negative prompt. Written by :func:`embkit.diffusers.previews.parameters_text`."""
    lines = text.strip("\n").split("\n")
    out: dict[str, str] = {}
    pairs = _pairs(lines[-1]) if lines else []
    if len(pairs) >= 2:  # a prompt line can hold one "word: word" by chance, not a list of them
        lines = lines[:-1]
        out.update(pairs)
    prompt, negative = [], []
    for line in lines:
        if line.startswith("Negative prompt:") or negative:
            negative.append(line[len("Negative prompt:"):].strip() if not negative else line)
        else:
            prompt.append(line)
    out["prompt"] = "\n".join(prompt)
    out["negative_prompt"] = "\n".join(negative)
    return out


def _pairs(line: str) -> list[tuple[str, str]]:
    """``key: value`` pairs of an infotext's last line; ``[]`` when a piece is not one."""
    pieces, buf, quoted, escaped = [], [], False, False
    for ch in line:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == "," and not quoted:
            pieces.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    pieces.append("".join(buf))
    pairs = []
    for piece in pieces:
        if not piece.strip():
            continue
        key, sep, value = piece.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z][\w \-/]*", key):
            return []
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        pairs.append((key, value))
    return pairs


__all__ = [
    "triggers",
    "is_negative",
    "preview_path",
    "preview_prefix",
    "member_part",
    "find_preview",
    "read_preview",
    "parse_parameters",
    "PREVIEW_EXTENSIONS",
    "PREVIEW_HOSTS",
    "NEGATIVE_NAME_PARTS",
    "NEGATIVE_WORDS",
]

"""The facts of a preview that need no torch: which word a host triggers an embedding by, whether an
embedding is a negative one, where its preview file goes, and what a preview picture says about
itself.

The library (scan, gallery) and the renderer (:mod:`.previews`) both read these, so they live
apart from the renderer and import nothing heavier than Pillow (and that only inside functions).
The trigger words come from the hosts table (:mod:`embkit.hosts`), the preview's names from the
sidecar rules (:mod:`embkit.formats.sidecars`), the ``parameters`` text from :mod:`.infotext`.

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

#: Text longer than this in a picture's ``parameters`` chunk is cut (a hostile file can hold MBs).
MAX_PARAMETERS_CHARS = 16_384


# -- trigger words ---------------------------------------------------------------------------------


def triggers(item: Any) -> dict[str, str | None]:
    """``{host id: the exact text to type}`` for every host of :data:`embkit.hosts.HOST_IDS`
    (``None`` where nothing can be typed), from the hosts table: :func:`embkit.hosts.triggers`.

    ``item`` is an :class:`~embkit.schema.Embedding` or a library :class:`~embkit.library.Entry`
    (answered from its row: :func:`embkit.hosts.facts.facts_from_entry`). No file is read."""
    from ..hosts import triggers as host_triggers
    from ..hosts.facts import facts_from_entry
    from ..schema import Embedding

    return host_triggers(item if isinstance(item, Embedding) else facts_from_entry(item))


def trigger_word(item: Any, host: str) -> str | None:
    """The word ``host`` triggers ``item`` by, without the host's prompt syntax (ComfyUI's
    ``embedding:NAME`` and InvokeAI's ``<NAME>`` give ``NAME``): what a preview's prompt holds."""
    from ..hosts import get_host

    return get_host(host).bare(triggers(item).get(host))


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
    from ..hosts import get_host

    names = {str(item.name)}
    names.update(w for host, t in triggers(item).items() if (w := get_host(host).bare(t)))
    for name in names:
        low = name.casefold()
        if any(part in low for part in NEGATIVE_NAME_PARTS):
            return True
        if NEGATIVE_WORDS & set(re.split(r"[^0-9a-z]+", low)):
            return True
    keys = {k.replace("_", "") for k in DESCRIPTIVE_KEYS}
    for metadata in _descriptions(item):
        for key, value in metadata.items():
            if str(key).casefold().replace("_", "") not in keys:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, str) and _NEGATIVE_TEXT.search(v[:4096]) for v in values):
                return True
    return False


def _descriptions(item: Any) -> list[Mapping[str, Any]]:
    """The mappings whose descriptive keys say what ``item`` is for: its metadata, and the JSON
    sidecars beside its file (an Embedding's :class:`~embkit.schema.Sidecars`, a library entry's
    stored ``sidecars``), with their trained words."""
    out: list[Mapping[str, Any]] = [getattr(item, "metadata", None) or {}]
    side = getattr(item, "sidecars", None)
    if side:
        get = side.get if isinstance(side, Mapping) else lambda k: getattr(side, k, None)
        out += [v for v in (get("civitai_info"), get("a1111_json"), get("metadata_json")) if isinstance(v, Mapping)]
        out.append({"trained_words": list(get("trained_words") or ())})
    return out


# -- files -----------------------------------------------------------------------------------------


def preview_path(path: str | os.PathLike, member: str | None = None, out: str | os.PathLike | None = None) -> str:
    """Where the preview of the embedding at ``path`` goes: ``<stem>.preview.png`` beside it (the
    first name :func:`embkit.formats.sidecars.candidates` tries), or in ``out``. A file holding
    several embeddings gets one per ``member``: ``<stem>.<member>.preview.png``
    (:func:`~embkit.formats.sidecars.member_preview_names`). A concept folder's sits beside it."""
    from ..formats.sidecars import candidates, member_preview_names

    path = os.path.normpath(os.fspath(path))
    name = member_preview_names(path, member)[0] if member else candidates(path)["preview"][0]
    return os.path.join(os.fspath(out) if out is not None else os.path.dirname(path), name)


def read_preview(path: str | os.PathLike) -> dict[str, Any]:
    """What a preview picture says about itself: ``{"format", "width", "height", "parameters",
    "embkit"}``. ``parameters`` is its A1111-style ``parameters`` text chunk (cut at
    :data:`MAX_PARAMETERS_CHARS`) or ``None``; ``embkit`` whether embkit rendered it (the chunk
    names embkit as its version: :func:`embkit.diffusers.infotext.by_embkit`). Only the header is
    read; an unreadable picture gives ``format: None``."""
    from PIL import Image, UnidentifiedImageError

    from .infotext import by_embkit

    out: dict[str, Any] = {"format": None, "width": None, "height": None, "parameters": None, "embkit": False}
    try:
        with Image.open(os.fspath(path)) as im:
            out.update(format=im.format, width=int(im.width), height=int(im.height))
            text = im.info.get("parameters") if isinstance(im.info, dict) else None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return out
    except Exception:  # noqa: BLE001 - Pillow raises many kinds on hostile headers; the picture is then unreadable
        return out
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if isinstance(text, str):
        out["parameters"] = text[:MAX_PARAMETERS_CHARS]
        out["embkit"] = by_embkit(out["parameters"])
    return out


__all__ = [
    "triggers",
    "trigger_word",
    "is_negative",
    "preview_path",
    "read_preview",
    "NEGATIVE_NAME_PARTS",
    "NEGATIVE_WORDS",
]

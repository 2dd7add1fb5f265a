"""sd-concepts-library folder: ``learned_embeds.bin`` (or ``.safetensors``), ``token_identifier.txt``
and ``type_of_concept.txt``. The tensor file is in diffusers layout; the text files name the trigger
and say whether it is an ``object`` or a ``style``.
"""

from __future__ import annotations

import os

from ..errors import BrokenFileError, NotMine
from ..walk import regular_file_inside
from . import diffusers
from .base import Part, Raw

EMBED_FILES = ("learned_embeds.safetensors", "learned_embeds.bin")
TOKEN_FILE = "token_identifier.txt"
TYPE_FILE = "type_of_concept.txt"
MAX_TEXT = 4096


def _own_file(folder: str, name: str) -> str | None:
    """``folder/name`` when it is a regular file inside the folder (a link may point within it, or
    into the Hugging Face cache the folder lies in), else None: a concept folder whose
    ``token_identifier.txt`` links to a secret file must not put the secret in a report, a
    converted file or a model card (found in review)."""
    candidate = os.path.join(folder, name)
    return candidate if regular_file_inside(candidate, folder) else None


def embeds_file(folder: str) -> str:
    """The tensor file inside a concept folder, or :class:`NotMine` when there is none."""
    for name in EMBED_FILES:
        candidate = _own_file(folder, name)
        if candidate is not None:
            return candidate
    raise NotMine(folder)


def is_concept_folder(folder: str) -> bool:
    """A folder holding a tensor file and at least one of the concept text files."""
    try:
        embeds_file(folder)
    except NotMine:
        return False
    return any(_own_file(folder, f) is not None for f in (TOKEN_FILE, TYPE_FILE))


def _text(folder: str, name: str) -> str | None:
    p = _own_file(folder, name)
    if p is None:
        return None
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)
    except OSError:
        return None
    if len(data) > MAX_TEXT:
        raise BrokenFileError(f"{name} is longer than {MAX_TEXT} bytes", path=folder)
    return data.decode("utf-8", "replace").strip() or None


def folder_metadata(folder: str) -> dict[str, str]:
    """The concept's text files as container metadata."""
    meta = {}
    for key, name in (("token_identifier", TOKEN_FILE), ("type_of_concept", TYPE_FILE)):
        value = _text(folder, name)
        if value is not None:
            meta[key] = value
    return meta


def detect(raw: Raw) -> bool:
    """A folder container whose tensor file is in diffusers layout."""
    return raw.container == "folder" and diffusers.detect(raw)


def parse(raw: Raw, path: str) -> list[Part]:
    """The diffusers file's embedding, triggered by ``token_identifier.txt`` when present."""
    parts = diffusers.parse(raw, path)
    token = raw.metadata.get("token_identifier")
    for part in parts:
        if token and len(parts) == 1:
            if part.name != token:
                part.warnings.append(f"token_identifier.txt says {token!r}, the tensor is stored under {part.name!r}")
                part.metadata["stored_name"] = part.name
            part.name = token
        if "type_of_concept" in raw.metadata:
            part.metadata["type_of_concept"] = raw.metadata["type_of_concept"]
    return parts


# -- writing ------------------------------------------------------------------------------------


def write(emb, path: str, container: str, options: dict):
    """Plan an sd-concepts-library folder: ``learned_embeds.bin`` (``embeds="safetensors"`` for
    ``learned_embeds.safetensors``, which keeps metadata), ``token_identifier.txt`` with the
    trigger, ``type_of_concept.txt`` (``object`` unless the metadata says otherwise)."""
    from ..errors import WriteError
    from .writer_base import Output, Plan, metadata_losses

    embeds = options.get("embeds", "bin")
    if embeds not in ("bin", "safetensors"):
        raise WriteError(f"embeds must be 'bin' or 'safetensors', not {embeds!r}", path=path)
    inner_name = f"learned_embeds.{embeds}"
    plan = diffusers.write(emb, os.path.join(path, inner_name), "safetensors" if embeds == "safetensors" else "pickle", {**{k: v for k, v in options.items() if k == "slot"}, "_in_folder": True})
    losses = [x for x in plan.losses if x.code != "metadata-dropped"]
    if embeds == "bin":
        metadata_losses(emb, "concept folder", ("type_of_concept",), losses)
    data = plan.outputs[0].data
    concept = str(emb.metadata.get("type_of_concept") or "object")

    def fill(folder: str) -> None:
        for name, content in ((inner_name, data), (TOKEN_FILE, emb.name.encode("utf-8")), (TYPE_FILE, concept.encode("utf-8"))):
            with open(os.path.join(folder, name), "wb") as fh:
                for chunk in [content] if isinstance(content, bytes) else content:
                    fh.write(chunk)

    return Plan([Output(path, fill=fill, owns=(*EMBED_FILES, TOKEN_FILE, TYPE_FILE))], losses)

"""Sidecars: the files other tools keep beside an embedding, read into :class:`~embkit.schema.Sidecars`.

=====================  ============================================  =======================================
kind                   file                                          written by
=====================  ============================================  =======================================
``civitai_info``       ``<stem>.civitai.info``                       Civitai Helper (both forks): the Civitai
                                                                     model-version JSON (``trainedWords``,
                                                                     ``baseModel``, ``model.name`` …)
``a1111_json``         ``<stem>.json``                               A1111/Forge's user-metadata editor
                                                                     (``description``, ``notes``; Lora-only
                                                                     keys such as ``activation text`` and
                                                                     ``sd version`` written by third parties)
``metadata_json``      ``<stem>.metadata.json``                      ComfyUI-Lora-Manager (``base_model``,
                                                                     ``trainedWords``, ``civitai`` …)
``preview``            ``<stem>.preview.<png|jpg|jpeg|webp|gif>``,   A1111 Extra Networks, Civitai Helper
                       else ``<stem>.<png|jpg|jpeg|webp|gif>`` that   (which may save JPEG bytes as .png)
                       is not itself an embedding card
=====================  ============================================  =======================================

Sources: docs/formats.md ("Sidecars") cites each tool's code. A sidecar is read only when it is a
regular file inside the embedding's folder (a link is followed only to a file inside that folder,
or inside the folder the embedding itself links into, as in the Hugging Face cache), and a JSON
sidecar only up to :data:`MAX_SIDECAR_BYTES`. A sidecar that cannot be read gives a warning naming
it, never an error: the embedding is read all the same.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from typing import Any, Iterable

from ..errors import EmbkitError, NotMine
from ..schema import Sidecars
from .base import check_json_size

#: JSON sidecars larger than this are not read (real ones are a few KB; a Civitai info with many
#: image entries a few hundred).
MAX_SIDECAR_BYTES = 1024 * 1024
#: Previews larger than this are not carried along by convert and pull.
MAX_PREVIEW_BYTES = 64 * 1024 * 1024
#: kind → the suffix after the stem.
JSON_SUFFIXES = {"civitai_info": ".civitai.info", "a1111_json": ".json", "metadata_json": ".metadata.json"}
#: Picture extensions A1111 looks for (modules/ui_extra_networks.py, allowed_preview_extensions).
PREVIEW_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
PREVIEW_SUFFIXES = tuple(".preview" + e for e in PREVIEW_EXTENSIONS)
#: What a file with no sidecars has (shared: a library scan reads thousands of such files).
EMPTY = Sidecars()
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))


def is_preview_name(name: str) -> bool:
    """``x.preview.png`` (any case, any picture extension): a picture, never an embedding."""
    return name.lower().endswith(PREVIEW_SUFFIXES)


def is_sidecar_name(name: str) -> bool:
    """Whether a file name is a sidecar's by its suffix alone (previews, ``.civitai.info``,
    ``.metadata.json``); a plain ``<stem>.json`` is only one beside its embedding."""
    low = name.lower()
    return is_preview_name(name) or low.endswith((".civitai.info", ".metadata.json"))


def owners(names: Iterable[str]) -> dict[str, list[str]]:
    """stem → the names among ``names`` that may be sidecars of an embedding with that stem (a
    folder walk asks this once per folder, then each file only looks up its stem). A preview
    ``a.b.preview.png`` is listed under ``a.b`` and under ``a`` (the preview of member ``b`` of
    ``a``: :func:`member_preview_names`)."""
    out: dict[str, list[str]] = {}
    endings = (*JSON_SUFFIXES.values(), *PREVIEW_SUFFIXES, *PREVIEW_EXTENSIONS)
    for name in names:
        low = name.lower()
        if not low.endswith(endings):  # most names in an embeddings folder: one test each
            continue
        for end in endings:
            if low.endswith(end) and len(name) > len(end):
                out.setdefault(name[: -len(end)], []).append(name)
        if is_preview_name(name):
            stem = name[: low.rindex(".preview.")]
            while "." in stem.strip("."):
                stem = stem.rsplit(".", 1)[0]
                if stem:
                    out.setdefault(stem, []).append(name)
    return out


def member_part(member: str) -> str:
    """A member's name as a part of a file name: anything but letters, digits, ``.``, ``_`` and
    ``-`` becomes ``_`` (``<one>`` → ``_one_``)."""
    return re.sub(r"[^0-9A-Za-z._-]", "_", member).strip(".") or "_"


def member_preview_names(path: str, member: str) -> list[str]:
    """The names the preview of one member of the file at ``path`` may have, in the order they are
    tried: ``<stem>.<member>.preview.<ext>`` (embkit's name for a file holding several embeddings;
    A1111 shows one preview per file, ``<stem>.preview.<ext>``)."""
    stem = _stem(path)
    return [f"{stem}.{member_part(member)}{s}" for s in PREVIEW_SUFFIXES]


def _stem(path: str) -> str:
    # as candidates() names it: the file's (or concept folder's) name without its extension
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def candidates(path: str) -> dict[str, list[str]]:
    """kind → the file names that may hold it beside ``path``, in the order they are tried."""
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    out: dict[str, list[str]] = {kind: [stem + suffix] for kind, suffix in JSON_SUFFIXES.items()}
    plain = [stem + e for e in PREVIEW_EXTENSIONS if stem + e != name]
    out["preview"] = [stem + s for s in PREVIEW_SUFFIXES] + plain
    return out


def picture_kind(head: bytes) -> str | None:
    """``png``, ``jpeg``, ``gif`` or ``webp`` from the first bytes (an extension proves nothing)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def _folders(path: str) -> tuple[str, ...]:
    # the folder the path names and the one it really lies in (a Hugging Face cache file is a link
    # into blobs/, and so are its sidecars)
    return tuple({os.path.realpath(os.path.dirname(os.path.abspath(path))), os.path.dirname(os.path.realpath(path))})


def _inside(real: str, folders: Iterable[str]) -> bool:
    return any(real == os.path.join(f, os.path.basename(real)) or real.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def open_sidecar(path: str, embedding: str, cap: int | None) -> tuple[bytes | None, str | None]:
    """The bytes of the sidecar at ``path`` (``None`` and no warning when there is none), or
    ``None`` with a warning when it is not a regular file inside ``embedding``'s folder or is
    larger than ``cap`` (``cap=None``: only the first 16 bytes are read)."""
    name = os.path.basename(path)
    try:
        os.lstat(path)
    except OSError:
        return None, None
    real = os.path.realpath(path)
    if not _inside(real, _folders(embedding)):
        return None, f"sidecar {name} links out of the embedding's folder; not read"
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return None, f"sidecar {name} cannot be opened ({exc.strerror or exc}); not read"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"sidecar {name} is not a regular file; not read"
        if cap is not None and st.st_size > cap:
            return None, f"sidecar {name} is {st.st_size} bytes, past the cap of {cap}; not read"
        want = 16 if cap is None else st.st_size
        chunks, got = [], 0
        while got < want:
            chunk = os.read(fd, want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks), None
    finally:
        os.close(fd)


def parse_json(data: bytes, name: str) -> tuple[dict | None, str | None]:
    """A JSON object from a sidecar's bytes, or ``None`` with a warning naming the file."""
    try:
        check_json_size(data, name, f"sidecar {name}")
        text = data.decode("utf-8-sig")
        # NaN, Infinity and 1e999 kept as text: the report must stay valid JSON (`inspect --json`)
        value = json.loads(text, parse_constant=str, parse_float=_finite_or_text)
    except EmbkitError:
        return None, f"sidecar {name} opens too many JSON objects; not read"
    except UnicodeDecodeError:
        return None, f"sidecar {name} is not UTF-8 text; not read"
    except (ValueError, RecursionError) as exc:
        return None, f"sidecar {name} is not valid JSON ({str(exc)[:80]}); ignored"
    if not isinstance(value, dict):
        return None, f"sidecar {name} holds a JSON {type(value).__name__}, not an object; ignored"
    return value, None


def _finite_or_text(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _is_card(data: bytes, path: str) -> bool:
    """Whether a picture beside an embedding is itself an A1111 embedding card (not a preview)."""
    from . import a1111, imagecard

    try:
        return a1111.detect(imagecard.read_raw(data, path))
    except (EmbkitError, NotMine):
        return False
    except Exception:  # a picture Pillow chokes on is no card; it must not stop reading the embedding
        return False


def _preview(path: str, names: list[str], present: set[str] | None, warnings: list[str]) -> str | None:
    folder = os.path.dirname(path)
    for name in names:
        if present is not None and name not in present:
            continue
        full = os.path.join(folder, name)
        is_plain = not is_preview_name(name)
        head, warning = open_sidecar(full, path, MAX_PREVIEW_BYTES if is_plain and name.lower().endswith((".png", ".webp")) else None)
        if warning:
            warnings.append(warning)
        if head is None:
            continue
        if picture_kind(head[:16]) is None:
            warnings.append(f"sidecar {name} is not a picture (first bytes {head[:8]!r}); not a preview")
            continue
        if is_plain and name.lower().endswith((".png", ".webp")) and _is_card(head, full):
            continue  # an embedding of its own, not this one's preview
        return full
    return None


def preview_of(path: str, member: str | None = None, present: Iterable[str] | None = None) -> str | None:
    """The preview picture of the embedding file at ``path`` (of its ``member``, when given: see
    :func:`member_preview_names`), by the rules :func:`read_sidecars` follows, or ``None``.
    ``present``, when given, is the set of file names beside it."""
    if not os.path.basename(path):
        path = os.path.normpath(path)
    names = member_preview_names(path, member) if member else candidates(path)["preview"]
    return _preview(path, names, set(present) if present is not None else None, [])


def read_sidecars(path: str, present: Iterable[str] | None = None) -> Sidecars:
    """The sidecars of the embedding file at ``path``. ``present``, when given, is the set of
    file names in its folder (a folder walk has it), so that absent files cost no system call."""
    names = present if present is None or isinstance(present, (set, frozenset)) else set(present)  # a walk's listing, not copied per file
    if names is not None and not names:
        return EMPTY
    if not os.path.basename(path):  # a folder named "x/": its sidecars are "x.civitai.info" … beside it
        path = os.path.normpath(path)
    found: dict[str, Any] = {}
    files: dict[str, str] = {}
    warnings: list[str] = []
    folder = os.path.dirname(path)
    for kind, (name,) in ((k, v) for k, v in candidates(path).items() if k != "preview"):
        if names is not None and name not in names:
            continue
        data, warning = open_sidecar(os.path.join(folder, name), path, MAX_SIDECAR_BYTES)
        if warning:
            warnings.append(warning)
        if data is None:
            continue
        files[kind] = os.path.join(folder, name)
        value, warning = parse_json(data, name)
        if warning:
            warnings.append(warning)
        found[kind] = value
    preview = _preview(path, candidates(path)["preview"], names, warnings)
    if preview is not None:
        files["preview"] = preview
    return Sidecars(
        **{k: v for k, v in found.items() if v is not None},
        preview=preview,
        trained_words=tuple(trained_words(found)),
        base_model=base_model(found),
        files=files,
        warnings=tuple(warnings),
    )


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def trained_words(found: dict[str, Any]) -> list[str]:
    """The trigger words the sidecars name, in order, each once (case-insensitively): Civitai's
    ``trainedWords``, Lora Manager's ``trainedWords`` and ``civitai.trainedWords``, then A1111's
    ``activation text`` split on ``" || "`` (Civitai Helper's separator when a word holds a
    comma) or else on commas."""
    words: list[str] = []
    for value in (_get(found.get("civitai_info"), "trainedWords"), _get(found.get("metadata_json"), "trainedWords"),
                  _get(found.get("metadata_json"), "civitai", "trainedWords")):
        if isinstance(value, list):
            words += [w for w in value if isinstance(w, str)]
    activation = _get(found.get("a1111_json"), "activation text")
    if isinstance(activation, str):
        words += activation.split(" || ") if " || " in activation else activation.split(",")
    out, seen = [], set()
    for w in words:
        w = w.strip().strip(",").strip()
        if w and w.casefold() not in seen:
            seen.add(w.casefold())
            out.append(w)
    return out


def base_model(found: dict[str, Any]) -> str | None:
    """The base model the sidecars name, as they spell it (``"SD 1.5"``, ``"SDXL 1.0"``,
    ``"Pony"``, ``"SD1"``): Civitai's ``baseModel``, Lora Manager's ``base_model`` or
    ``civitai.baseModel``, A1111's ``sd version``; ``"Unknown"`` and empty values are skipped."""
    for value in (_get(found.get("civitai_info"), "baseModel"), _get(found.get("metadata_json"), "base_model"),
                  _get(found.get("metadata_json"), "civitai", "baseModel"), _get(found.get("a1111_json"), "sd version")):
        if isinstance(value, str) and value.strip() and value.strip().casefold() != "unknown":
            return value.strip()
    return None


def copies(sidecars: Sidecars | None, stem: str, folder: str) -> list[tuple[str, str]]:
    """``(source file, target path)`` for every sidecar file, renamed to ``stem`` in ``folder``:
    what convert and pull carry along with an output."""
    if not sidecars:
        return []
    out = []
    for kind, src in sidecars.files.items():
        name = os.path.basename(src)
        if kind == "preview":
            suffix = name[name.lower().rindex(".preview.") :] if ".preview." in name.lower() else os.path.splitext(name)[1]
        else:
            suffix = JSON_SUFFIXES[kind]
        out.append((src, os.path.join(folder, stem + suffix)))
    return out


def read_copy(src: str, embedding: str) -> bytes:
    """The bytes of a sidecar to carry along (the same checks as when it was read)."""
    data, warning = open_sidecar(src, embedding, MAX_PREVIEW_BYTES)
    if data is None:
        raise EmbkitError(warning or "sidecar vanished", path=src)
    return data


__all__ = ["read_sidecars", "is_preview_name", "is_sidecar_name", "candidates", "preview_of", "member_preview_names", "member_part", "copies", "read_copy", "trained_words", "base_model",
           "MAX_SIDECAR_BYTES", "JSON_SUFFIXES", "PREVIEW_SUFFIXES"]

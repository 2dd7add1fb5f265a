"""One file → the rows the library stores for it. Runs in scan worker processes, so it returns
plain tuples (cheap to send between processes) and never touches the database.

Each file is read once: the bytes are hashed, then handed to :func:`embkit.io.open_file`. A file
that cannot be read or is refused as unsafe becomes a row with its error code and message instead
of stopping the scan.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np

from .. import hashes
from ..errors import EmbkitError, TooLargeError
from ..formats import sniff_container
from ..formats.base import tensor_matrix
from ..io import _read_bytes, open_file
from ..schema import families_for, family_for, is_output_slot, slot_order

#: Files larger than this are recorded as too large without being read (no embedding is close).
MAX_FILE_BYTES = 1024**3

#: Result kinds.
SAME = "same"  # the content hash matches the stored one: only size/mtime changed
FILE = "file"  # a full record


def examine(path: str, size: int, mtime_ns: int, known_sha: str | None = None, sidecar_key: str = "",
            present: tuple[str, ...] | None = None) -> tuple:
    """Read, hash and parse one file.

    Returns ``(SAME, path, size, mtime_ns, scanned_at)`` when its sha256 equals ``known_sha``, else
    ``(FILE, file_row, embeddings, trained_words, previews)`` where ``file_row`` is ``(path, size, mtime_ns,
    sha256, autov2, autov3, format, container, metadata_json, error_code, error, scanned_at,
    sidecars_json, base_model, sidecar_key)``, each embedding is ``(member, name, stored_name,
    family, families, num_vectors, vectors_hash, metadata_json, warnings_json, slots)`` with slots
    ``[(slot, vectors, width, dtype, vectors_hash, norm_min, norm_mean, norm_max)]``, and each
    preview (:func:`previews_of`) is ``(member, path, size, mtime_ns, format, width, height,
    parameters, embkit)``.
    ``sidecar_key`` is stored as given (the walk's key of the sidecars); ``present``, the names
    of the sidecar files beside it, spares the sidecar reader its look-ups.
    """
    now = time.time()
    hashes: dict[str, str] = {}
    try:
        if size > MAX_FILE_BYTES:
            raise TooLargeError(f"file is {size} bytes, past the library's cap of {MAX_FILE_BYTES}", path=path)
        data = _read_bytes(path)
        hashes = _hashes(data)
        if known_sha is not None and hashes["sha256"] == known_sha:
            return (SAME, path, size, mtime_ns, now)
        with np.errstate(all="ignore"):  # hostile values overflow the float32 cast and the norms: no warnings
            return _parse(path, size, mtime_ns, data, hashes, now, sidecar_key, present)
    except EmbkitError as exc:
        return _error_row(path, size, mtime_ns, hashes, exc.code, str(exc), now, sidecar_key)
    except Exception as exc:  # a reader bug on a strange file must not end a scan of thousands
        return _error_row(path, size, mtime_ns, hashes, "error", f"{path}: unexpected {type(exc).__name__}: {exc}", now, sidecar_key)


def _hashes(data: Any) -> dict[str, str]:
    # The hashes the library stores, as embkit.hashes defines them (file_hashes would also
    # compute CRC32 and BLAKE3, which are not stored: skipping them saves a pass over the bytes).
    sha = hashes.sha256(data)
    out = {"sha256": sha, "autov2": hashes.autov2(sha)}
    container = sniff_container(bytes(data[:32]))
    if container is not None and container.id == "safetensors":
        out["autov3"] = hashes.autov3(data)
    return out


def _error_row(path, size, mtime_ns, hashes, code, message, now, sidecar_key="") -> tuple:
    sha = hashes.get("sha256")
    row = (path, size, mtime_ns, sha, hashes.get("autov2"), hashes.get("autov3"), None, None, None, code, message, now, None, None, sidecar_key)
    return (FILE, row, [], [], [])


def _parse(path: str, size: int, mtime_ns: int, data: Any, hashes: dict, now: float, sidecar_key: str = "",
           present: tuple[str, ...] | None = None) -> tuple:
    loaded = open_file(path, data=data, present=present)
    embeddings = [_embedding_row(loaded, part) for part in loaded.parts]
    meta = _json(loaded.metadata) if loaded.metadata else None
    side = loaded.sidecars
    # the preview is recorded once, in the previews table (with what its header says), not here
    stored = {k: v for k, v in (side.to_dict() if side else {}).items() if k != "preview"}
    files = {k: v for k, v in (side.files if side else {}).items() if k != "preview"}
    side_json = _json({**stored, "files": files, "warnings": list(side.warnings)}) if side and (files or side.warnings) else None
    row = (path, size, mtime_ns, hashes["sha256"], hashes["autov2"], hashes.get("autov3"), loaded.format.id, loaded.container, meta, None, None, now,
           side_json, side.base_model if side else None, sidecar_key)
    return (FILE, row, embeddings, list(side.trained_words) if side else [], previews_of(loaded, present))


def previews_of(loaded: Any, present: tuple[str, ...] | None) -> list[tuple]:
    """The previews of an opened file: its own (the sidecar reader's ``preview``) and each member's
    (``<stem>.<member>.preview.png``), as rows for the ``previews`` table (see :func:`examine`)."""
    import os

    from ..diffusers.preview_rules import read_preview
    from ..formats.sidecars import preview_of

    found: list[tuple[str, str]] = []
    if loaded.sidecars and loaded.sidecars.preview:
        found.append(("", loaded.sidecars.preview))
    members = [p.member for p in loaded.parts if p.member]
    if members and present != ():  # the walk found no names beside it: no member has a preview
        where = loaded.path if loaded.container == "folder" else (loaded.file or loaded.path)
        found += [(m, picture) for m in members if (picture := preview_of(where, m, present)) is not None]
    rows = []
    for member, picture in found:
        try:
            st = os.stat(picture)
        except OSError:
            continue  # gone since it was found
        facts = read_preview(picture)
        rows.append((member, picture, st.st_size, st.st_mtime_ns, facts["format"], facts["width"], facts["height"], facts["parameters"], int(facts["embkit"])))
    return rows


def _embedding_row(loaded, part) -> tuple:
    # The same checks embkit.io.embedding_of applies (2-D float matrices, known slots), without
    # building a frozen Embedding: the scan only needs shapes, hashes and norms.
    slots = []
    whole = hashlib.sha256()
    inputs = []
    count = 0
    tensors = part.tensors
    for slot in sorted(tensors, key=slot_order) if len(tensors) > 1 else tensors:
        t = tensors[slot]
        a = tensor_matrix(t, loaded.path, f"{part.name} {slot}")
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            a = np.ascontiguousarray(a, dtype=np.float32)
        n, d = a.shape
        h = hashlib.sha256(b"%d,%d;" % (n, d))
        h.update(a.data)
        vh = h.hexdigest()
        whole.update(b"%s:%s;" % (slot.encode(), vh.encode()))
        norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64)).tolist()
        slots.append((slot, n, d, t.dtype, vh, _num(min(norms)), _num(sum(norms) / n), _num(max(norms))))
        if not is_output_slot(slot):
            inputs.append(slot)
            count = max(count, n)
    meta = {**loaded.metadata, **part.metadata}
    warnings = [*part.warnings, *(loaded.sidecars.warnings if loaded.sidecars else ())]
    stored = meta.get("stored_name")
    return (
        part.member or "",
        part.name,
        stored if isinstance(stored, str) else None,
        family_for(inputs),
        ",".join(families_for(inputs)),
        count,
        whole.hexdigest(),
        _json(meta) if meta else "{}",
        _json(warnings) if warnings else "[]",
        slots,
    )


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str, allow_nan=True)
    except TypeError:  # keys of mixed types (a pickle's dict) cannot be sorted: as strings, like inspect
        from ..formats.base import plain

        return json.dumps(plain(value), ensure_ascii=False, sort_keys=True, default=str, allow_nan=True)


def _num(value) -> float | None:
    v = float(value)
    return v if v == v and v not in (float("inf"), float("-inf")) else None

"""The record ``embkit library scan`` makes of a file, as manifest fields, and back.

:func:`embkit.library.extract.examine` makes the record (one implementation for the library and
for ingest); this module only names its tuple's fields. :func:`record_fields` turns the tuple into
the manifest's columns; :func:`examine_result` turns a manifest row back into the tuple, so
``--library DB`` fills a library from the rows without reading a file again. When ``examine``
grows a field, both functions change here and nowhere else.
"""

from __future__ import annotations

import json
import time
from typing import Any

#: examine()'s file row, by position (see its docstring); ``sidecars`` is its ``sidecars_json``.
FILE_FIELDS = (
    "path", "size", "mtime_ns", "sha256", "autov2", "autov3", "format", "container", "metadata", "error_code", "error", "scanned_at",
    "sidecars", "base_model", "sidecar_key",
)
#: examine()'s embedding tuple, by position (``slots`` last).
EMBEDDING_FIELDS = ("member", "name", "stored_name", "family", "families", "num_vectors", "vectors_hash", "metadata", "warnings", "slots")
#: examine()'s slot tuple, by position.
SLOT_FIELDS = ("slot", "vectors", "width", "dtype", "vectors_hash", "norm_min", "norm_mean", "norm_max")
#: examine()'s preview tuple (a picture beside the file), by position (``sidecar_previews``).
PICTURE_FIELDS = ("member", "path", "size", "mtime_ns", "format", "width", "height", "parameters", "embkit")
#: The file-row fields the manifest keeps (path, size and mtime come from the read step; the
#: scan time is left out: rows are a function of the file, not of when it was read).
RECORD_FIELDS = ("sha256", "autov2", "autov3", "format", "container", "metadata", "error_code", "error", "sidecars", "base_model", "sidecar_key")


def record_fields(result: tuple) -> dict[str, Any]:
    """``examine(...)``'s ``(FILE, file_row, embeddings, trained_words, previews)`` → manifest fields."""
    file_row, embeddings, words, pictures = result[1], result[2], result[3], result[4]
    named = dict(zip(FILE_FIELDS, file_row))
    out: dict[str, Any] = {k: named[k] for k in RECORD_FIELDS}
    out["embeddings"] = [_embedding(e) for e in embeddings]
    out["trained_words"] = list(words)
    out["sidecar_previews"] = [dict(zip(PICTURE_FIELDS, p)) for p in pictures]
    return out


def _embedding(e: tuple) -> dict[str, Any]:
    named = dict(zip(EMBEDDING_FIELDS, e))
    named["families"] = [f for f in (named["families"] or "").split(",") if f]
    named["warnings"] = [str(w) for w in json.loads(named["warnings"] or "[]")]
    named["slots"] = [dict(zip(SLOT_FIELDS, s)) for s in named["slots"]]
    return named


def examine_result(row: dict, scanned_at: float | None = None) -> tuple:
    """A manifest row → the ``(FILE, file_row, embeddings, trained_words, previews)`` tuple the
    library stores. Rows of files that were never read (``skipped`` with one of
    :data:`~embkit.ingest.manifest.NOT_READ_CODES`) have no record: ``None``. A file read and
    found to be no embedding (``skipped`` by the folder rule) is recorded with its error, as
    ``embkit library scan`` records it."""
    from ..library.extract import FILE
    from .manifest import NOT_READ_CODES

    if row.get("status") == "skipped" and row.get("error_code") in NOT_READ_CODES:
        return None  # type: ignore[return-value]
    when = time.time() if scanned_at is None else scanned_at
    values = {**{k: row.get(k) for k in RECORD_FIELDS}, "path": row["path"], "size": row["size"], "mtime_ns": row["mtime_ns"], "scanned_at": when}
    file_row = tuple(values[k] for k in FILE_FIELDS)
    embeddings = []
    for e in row.get("embeddings") or []:
        fields = dict(e)
        fields["families"] = ",".join(e.get("families") or [])
        fields["warnings"] = json.dumps(list(e.get("warnings") or []), ensure_ascii=False, sort_keys=True, default=str, allow_nan=True) if e.get("warnings") else "[]"
        fields["slots"] = [tuple(s.get(k) for k in SLOT_FIELDS) for s in e.get("slots") or []]
        embeddings.append(tuple(fields.get(k) for k in EMBEDDING_FIELDS))
    pictures = [tuple(int(p["embkit"]) if k == "embkit" else p.get(k) for k in PICTURE_FIELDS) for p in row.get("sidecar_previews") or []]
    return (FILE, file_row, embeddings, list(row.get("trained_words") or []), pictures)


__all__ = ["record_fields", "examine_result", "RECORD_FIELDS", "PICTURE_FIELDS"]

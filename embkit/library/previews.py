"""The previews the library knows: the picture beside each embedding file (``<stem>.preview.<ext>``,
A1111's name, or a plain ``<stem>.<ext>`` picture; ``<stem>.<member>.preview.png`` for one
embedding of a file holding several), and, when its header has one, the A1111-style ``parameters``
chunk (which says whether embkit rendered it and how).

One place for each fact: which picture is a file's preview is the sidecar rule
(:mod:`embkit.formats.sidecars`), found by the scan's one walk (its per-folder listing of names);
what the picture says is read when the file is (:func:`embkit.library.extract.previews_of`) and
stored in the ``previews`` table, keyed by the file's row: a file's previews go with it. A preview
that appears, changes or goes changes the file's sidecar key, so the next scan reads the file
again. This module reads the table.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass
from typing import Iterable


@dataclass(frozen=True)
class PreviewRecord:
    """A preview picture the library found: its path, format as Pillow reads it and size in
    pixels, its ``parameters`` text chunk (or ``None``), whether embkit rendered it, and the
    picture file's size and modification time."""

    path: str
    format: str | None
    width: int | None
    height: int | None
    parameters: str | None
    embkit: bool
    size: int
    mtime_ns: int

    def to_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


def for_entries(conn: sqlite3.Connection, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], PreviewRecord]:
    """The preview of each ``(file id, member)``: the member's own (``<stem>.<member>.preview.png``)
    when there is one, else the file's."""
    keys = list(keys)
    ids = sorted({f for f, _m in keys})
    rows: dict[tuple[int, str], PreviewRecord] = {}
    for i in range(0, len(ids), 900):
        chunk = ids[i : i + 900]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT file_id, member, path, format, width, height, parameters, embkit, size, mtime_ns FROM previews WHERE file_id IN ({marks})"
        for r in conn.execute(sql, chunk):
            rows[(r[0], r[1])] = PreviewRecord(r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])
    out: dict[tuple[int, str], PreviewRecord] = {}
    for file_id, member in keys:
        found = (rows.get((file_id, member)) if member else None) or rows.get((file_id, ""))
        if found is not None:
            out[(file_id, member)] = found
    return out


def count_under(conn: sqlite3.Connection, roots: list[str]) -> int:
    """How many files at or under ``roots`` have a preview (their own or a member's)."""
    found: set[int] = set()
    sql = "SELECT DISTINCT p.file_id FROM previews p JOIN files f ON f.id = p.file_id WHERE f.path = ? OR (f.path >= ? AND f.path < ?)"
    for root in roots:
        lo = root.rstrip(os.sep) + os.sep
        hi = lo[:-1] + chr(ord(os.sep) + 1)
        found.update(r[0] for r in conn.execute(sql, (root, lo, hi)))
    return len(found)


__all__ = ["PreviewRecord", "for_entries", "count_under"]

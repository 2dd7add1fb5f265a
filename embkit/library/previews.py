"""The previews the library knows: the picture beside each embedding file (``<stem>.preview.<ext>``,
A1111's name; ``<stem>.<member>.preview.png`` for one embedding of a file holding several), and,
when its header has one, the A1111-style ``parameters`` chunk (which says whether embkit rendered
it and how).

A scan brings the ``previews`` table in line with what it found under its roots: pictures that
appeared, changed (size or mtime) or went away. Only the picture's header is read. The naming
rules are :mod:`embkit.diffusers.preview_rules` (torch-free).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass
from typing import Iterable

from ..diffusers.preview_rules import PREVIEW_EXTENSIONS, member_part, preview_prefix, read_preview


@dataclass(frozen=True)
class PreviewRecord:
    """A preview picture the library found: its path, sniffed format and size in pixels, its
    ``parameters`` text chunk (or ``None``), and whether embkit rendered it."""

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


#: A picture found by a walk: ``(path, size, mtime_ns)``, keyed by its prefix (the path without
#: ``.preview.<ext>``).
Found = dict[str, tuple[str, int, int]]


def collect(found: Found, folder: str, name: str, size: int, mtime_ns: int) -> bool:
    """Note ``folder/name`` in ``found`` when it is a preview picture; whether it was one. When two
    pictures share a prefix, the extension earlier in :data:`PREVIEW_EXTENSIONS` wins."""
    prefix = preview_prefix(name)
    if prefix is None:
        return False
    key = os.path.join(folder, prefix)
    path = os.path.join(folder, name)
    old = found.get(key)
    if old is None or _rank(path) < _rank(old[0]):
        found[key] = (path, size, mtime_ns)
    return True


def _rank(path: str) -> int:
    ext = path.rsplit(".", 1)[-1].lower()
    return PREVIEW_EXTENSIONS.index(ext) if ext in PREVIEW_EXTENSIONS else len(PREVIEW_EXTENSIONS)


def beside(path: str) -> Found:
    """The preview pictures in the folder of the file ``path`` (for a scan of single files)."""
    found: Found = {}
    folder = os.path.dirname(path)
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if preview_prefix(entry.name) is not None and entry.is_file():
                    st = entry.stat()
                    collect(found, folder, entry.name, st.st_size, st.st_mtime_ns)
    except OSError:
        pass
    return found


def record(conn: sqlite3.Connection, roots: list[str], embedding_paths: Iterable[str], found: Found) -> int:
    """Bring the previews of the embedding files under ``roots`` in line with the pictures
    ``found`` beside them; returns how many embedding files have a preview. Headers are read only
    for pictures that are new or changed."""
    by_stem: dict[str, list[str]] = {}
    for path in embedding_paths:
        by_stem.setdefault(os.path.splitext(path)[0], []).append(path)
    wanted: dict[tuple[str, str], tuple[str, int, int]] = {}
    for prefix, picture in found.items():
        for path, member in _owners(prefix, by_stem):
            old = wanted.get((path, member))
            if old is None or _rank(picture[0]) < _rank(old[0]):
                wanted[(path, member)] = picture
    stored = _stored(conn, roots)
    changed = [(key, pic) for key, pic in wanted.items() if stored.get(key) != pic]
    rows = []
    for (path, member), (picture, size, mtime) in changed:
        facts = read_preview(picture)
        rows.append((path, member, picture, size, mtime, facts["format"], facts["width"], facts["height"], facts["parameters"], int(facts["embkit"])))
    gone = [key for key in stored if key not in wanted]
    if rows or gone:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM previews WHERE path = ? AND member = ?", gone)
            conn.executemany(
                "INSERT OR REPLACE INTO previews (path, member, preview, size, mtime_ns, format, width, height, parameters, embkit) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len({path for path, _member in wanted})


def _owners(prefix: str, by_stem: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The ``(embedding path, member)`` pairs a preview prefix belongs to: ``foo`` → the files with
    stem ``foo`` (member ``''``); ``foo.bar`` → those, member ``bar``, unless a file has stem ``foo.bar``."""
    if prefix in by_stem:
        return [(p, "") for p in by_stem[prefix]]
    head = prefix
    while "." in os.path.basename(head):
        head = head.rsplit(".", 1)[0]
        if head in by_stem:
            return [(p, prefix[len(head) + 1 :]) for p in by_stem[head]]
    return []


def _stored(conn: sqlite3.Connection, roots: list[str]) -> dict[tuple[str, str], tuple[str, int, int]]:
    out: dict[tuple[str, str], tuple[str, int, int]] = {}
    sql = "SELECT path, member, preview, size, mtime_ns FROM previews WHERE path = ? OR (path >= ? AND path < ?)"
    for root in roots:
        lo = root.rstrip(os.sep) + os.sep
        hi = lo[:-1] + chr(ord(os.sep) + 1)
        for path, member, preview, size, mtime in conn.execute(sql, (root, lo, hi)):
            out[(path, member)] = (preview, size, mtime)
    return out


def for_entries(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PreviewRecord]:
    """The preview of each ``(path, member)``: the member's own (``<stem>.<member>.preview.png``)
    when there is one, else the file's."""
    keys = list(keys)
    paths = sorted({p for p, _m in keys})
    rows: dict[tuple[str, str], PreviewRecord] = {}
    for i in range(0, len(paths), 900):
        chunk = paths[i : i + 900]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT path, member, preview, format, width, height, parameters, embkit, size, mtime_ns FROM previews WHERE path IN ({marks})"
        for r in conn.execute(sql, chunk):
            rows[(r[0], r[1])] = PreviewRecord(r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])
    out: dict[tuple[str, str], PreviewRecord] = {}
    for path, member in keys:
        record_ = rows.get((path, member_part(member))) if member else None
        record_ = record_ or rows.get((path, ""))
        if record_ is not None:
            out[(path, member)] = record_
    return out


__all__ = ["PreviewRecord", "collect", "beside", "record", "for_entries"]

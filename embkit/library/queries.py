"""Reading the library: entries with filters, lookup by name or hash, duplicates and conflicts.

Everything here is plain SQL over the tables in :mod:`embkit.library.schema` plus a little Python;
no file is opened.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from typing import Any

from ..errors import LibraryError
from .previews import PreviewRecord, for_entries
from .scan import is_picture, not_an_embedding


@dataclass(frozen=True)
class SlotRecord:
    """One slot of a stored embedding: shape, stored dtype, a hash of its float32 vectors, and the
    minimum / mean / maximum L2 norm of its vectors."""

    slot: str
    vectors: int
    width: int
    dtype: str
    vectors_hash: str
    norm_min: float | None
    norm_mean: float | None
    norm_max: float | None


@dataclass(frozen=True)
class Entry:
    """One embedding in the library (a file holding several gives several entries)."""

    id: int
    name: str
    stored_name: str | None
    member: str
    path: str
    format: str
    container: str
    family: str
    families: tuple[str, ...]
    num_vectors: int
    slots: tuple[SlotRecord, ...]
    size: int
    mtime_ns: int
    sha256: str
    autov2: str
    autov3: str | None
    vectors_hash: str
    metadata: dict[str, Any]
    warnings: tuple[str, ...]
    scanned_at: float
    tags: tuple[str, ...] = ()
    #: what the sidecars beside the file name (see :mod:`embkit.formats.sidecars`)
    base_model: str | None = None
    trained_words: tuple[str, ...] = ()
    #: ``{"civitai_info", "a1111_json", "metadata_json", "trained_words", "base_model", "files",
    #: "warnings"}`` as stored; empty when the file has no sidecars but (perhaps) a preview
    sidecars: dict[str, Any] = field(default_factory=dict)
    #: the entry's preview picture (its own ``<stem>.<member>.preview.png``, else the file's
    #: ``<stem>.preview.png`` or plain ``<stem>.png``) and what it says, when a scan found one:
    #: the library's one record of previews (the ``previews`` table)
    preview: PreviewRecord | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (the shape ``--json`` prints)."""
        d = asdict(self)
        d["families"] = list(self.families)
        d["slots"] = [asdict(s) for s in self.slots]
        d["warnings"] = list(self.warnings)
        d["tags"] = list(self.tags)
        d["trained_words"] = list(self.trained_words)
        return d

    def rows(self) -> list[tuple[str, str]]:
        """Everything stored about the entry as ``(field, value)`` lines, in the order ``embkit
        library show`` prints them and the gallery's detail view lists them. Values are raw
        strings from files: the caller escapes them for its medium."""
        e = self
        rows = [
            ("path", e.path + (f" [{e.member}]" if e.member else "")),
            ("stored name", e.stored_name or "-"),
            ("format", f"{e.format} ({e.container})"),
            ("family", f"{e.family} (fits: {', '.join(e.families) or 'none'})"),
            ("vectors", str(e.num_vectors)),
            ("size", f"{e.size} bytes"),
            ("sha256", e.sha256),
            ("AutoV2", e.autov2),
            ("AutoV3", e.autov3 or "-"),
            ("vectors hash", e.vectors_hash),
            ("tags", ", ".join(e.tags) or "-"),
        ]
        if e.sidecars:
            rows += [("base model", e.base_model or "-"), ("trained words", ", ".join(e.trained_words) or "-")]
            rows += [(f"sidecar {kind}", path) for kind, path in sorted((e.sidecars.get("files") or {}).items())]
        for s in e.slots:
            norms = f"norms {s.norm_min:.3g} / {s.norm_mean:.3g} / {s.norm_max:.3g}" if s.norm_mean is not None else "norms n/a"
            rows.append((f"slot {s.slot}", f"{s.vectors} x {s.width} {s.dtype}, {norms} (min/mean/max)"))
        for k, v in sorted(e.metadata.items()):
            rows.append((f"meta {k}", str(v)[:200]))
        for w in e.warnings:
            rows.append(("warning", w))
        if e.preview is not None:
            p = e.preview
            made = "rendered by embkit" if p.embkit else "not rendered by embkit"
            rows.append(("preview", f"{p.path} ({p.format or 'unreadable'}{f', {p.width}x{p.height}' if p.width else ''}; {made})"))
            if p.parameters:
                rows.append(("preview parameters", p.parameters))
        return rows


@dataclass(frozen=True)
class FileError:
    """A file the scan could not read, with the embkit error code and message."""

    path: str
    code: str
    message: str
    size: int
    sha256: str | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Group:
    """A duplicate group or a conflict: what kind, the key they share, a sentence, the entries."""

    kind: str
    key: str
    message: str
    entries: tuple[Entry, ...] = field(default_factory=tuple)
    #: conflicts only: the hosts (embkit.hosts ids) the conflict concerns
    hosts: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "key": self.key, "message": self.message, "entries": [_brief(e) for e in self.entries]}
        if self.hosts:
            out["hosts"] = list(self.hosts)
        return out


def _brief(e: Entry) -> dict:
    return {"name": e.name, "path": e.path, "member": e.member, "format": e.format, "family": e.family, "sha256": e.sha256}


_SELECT = """
SELECT e.id, e.name, e.stored_name, e.member, f.path, f.format, f.container, e.family, e.families, e.num_vectors,
       f.size, f.mtime_ns, f.sha256, f.autov2, f.autov3, e.vectors_hash, e.metadata, e.warnings, f.scanned_at,
       f.id, f.base_model, f.sidecars
FROM embeddings e JOIN files f ON f.id = e.file_id
"""


#: a trained word of the file matches a glob
_WORDS = "EXISTS (SELECT 1 FROM trained_words w WHERE w.file_id = f.id AND lower(w.word) GLOB ?)"
#: each filter of :meth:`embkit.library.Library.search` but ``vectors``: its SQL clause and the
#: arguments it binds for the value given (globs match lower case)
_FILTERS: dict[str, tuple[str, Callable[[Any], list[Any]]]] = {
    "pattern": (f"(lower(e.name) GLOB ? OR {_WORDS})", lambda v: [v.lower(), v.lower()]),
    "word": (_WORDS, lambda v: [v.lower()]),
    "base_model": ("lower(f.base_model) GLOB ?", lambda v: [v.lower()]),
    "family": ("e.family = ?", lambda v: [v]),
    # every family the slots fit: an SD1 embedding also fits SDXL's clip_l slot
    "fits": ("(e.family = ? OR ',' || e.families || ',' LIKE ?)", lambda v: [v, f"%,{v},%"]),
    "slot": ("EXISTS (SELECT 1 FROM slots s WHERE s.embedding_id = e.id AND s.slot = ?)", lambda v: [v]),
    "name": ("lower(e.name) GLOB ?", lambda v: [v.lower()]),
    "format": ("f.format = ?", lambda v: [v]),
    "tag": ("EXISTS (SELECT 1 FROM tags t WHERE t.sha256 = f.sha256 AND t.member = e.member AND t.tag = ?)", lambda v: [v]),
}


def entries(conn: sqlite3.Connection, *, where: str = "", params: tuple = (), **filters: Any) -> list[Entry]:
    """Entries matching every filter given (the keywords of :meth:`embkit.library.Library.search`)
    and the SQL condition ``where`` with its ``params``."""
    unknown = sorted(set(filters) - {*_FILTERS, "vectors"})
    if unknown:
        raise TypeError(f"unknown search filter: {', '.join(unknown)}")
    clauses, args = [where] if where else [], list(params)
    for key, (clause, bind) in _FILTERS.items():
        if filters.get(key):
            clauses.append(clause)
            args += bind(filters[key])
    vectors = filters.get("vectors")
    if vectors is not None:
        lo, hi = (vectors, vectors) if isinstance(vectors, int) else vectors
        if lo is not None:
            clauses.append("e.num_vectors >= ?")
            args.append(int(lo))
        if hi is not None:
            clauses.append("e.num_vectors <= ?")
            args.append(int(hi))
    sql = _SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY lower(e.name), f.path, e.member"
    rows = conn.execute(sql, args).fetchall()
    return _build(conn, rows)


def _build(conn: sqlite3.Connection, rows: list[tuple]) -> list[Entry]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    slots: dict[int, list[SlotRecord]] = {}
    tags: dict[tuple[str, str], list[str]] = {}
    for chunk in _chunks(ids, 900):
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(
            f"SELECT embedding_id, slot, vectors, width, dtype, vectors_hash, norm_min, norm_mean, norm_max FROM slots WHERE embedding_id IN ({marks})",
            chunk,
        ):
            slots.setdefault(r[0], []).append(SlotRecord(*r[1:]))
    for sha, member, tag in conn.execute("SELECT sha256, member, tag FROM tags ORDER BY tag"):
        tags.setdefault((sha, member), []).append(tag)
    words: dict[int, list[str]] = {}
    file_ids = sorted({r[19] for r in rows})
    for chunk in _chunks(file_ids, 900):
        marks = ",".join("?" * len(chunk))
        for file_id, word in conn.execute(f"SELECT file_id, word FROM trained_words WHERE file_id IN ({marks})", chunk):
            words.setdefault(file_id, []).append(word)
    previews = for_entries(conn, [(r[19], r[3]) for r in rows])
    from ..schema import slot_order

    out = []
    for r in rows:
        s = sorted(slots.get(r[0], []), key=lambda x: slot_order(x.slot))
        out.append(
            Entry(
                id=r[0], name=r[1], stored_name=r[2], member=r[3], path=r[4], format=r[5], container=r[6], family=r[7],
                families=tuple(f for f in r[8].split(",") if f), num_vectors=r[9], slots=tuple(s), size=r[10],
                mtime_ns=r[11], sha256=r[12], autov2=r[13], autov3=r[14], vectors_hash=r[15],
                metadata=json.loads(r[16]), warnings=tuple(json.loads(r[17])), scanned_at=r[18],
                tags=tuple(tags.get((r[12], r[3]), ())), base_model=r[20],
                trained_words=tuple(_ordered(words.get(r[19], []), r[21])), sidecars=json.loads(r[21]) if r[21] else {},
                preview=previews.get((r[19], r[3])),
            )
        )
    return out


def _ordered(words: list[str], sidecars_json: str | None) -> list[str]:
    # the table is keyed for search; the order the sidecars gave is in the stored JSON
    order = (json.loads(sidecars_json).get("trained_words") or []) if sidecars_json else []
    rank = {w: i for i, w in enumerate(order)}
    return sorted(words, key=lambda w: (rank.get(w, len(rank)), w))


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def errors(conn: sqlite3.Connection) -> list[FileError]:
    """Files recorded with an error instead of embeddings, leaving out the files that are no
    embedding (plain pictures, see :func:`pictures`; a model's weights, an XTI file: the rule of
    every folder walk, :func:`embkit.library.scan.not_an_embedding`)."""
    return [e for e in _recorded(conn) if not_an_embedding(e.path, e.code, e.message) is None]


def pictures(conn: sqlite3.Connection) -> list[FileError]:
    """Images holding no embedding (previews beside embedding files). They are recorded like
    unreadable files, so a rescan skips them, but they are not errors; the rule is
    :func:`embkit.library.scan.is_picture`, the one the scan report counts by."""
    return [e for e in _recorded(conn) if is_picture(e.path, e.code)]


def _recorded(conn: sqlite3.Connection) -> list[FileError]:
    # Every file row with an error, split in Python by is_picture rather than in SQL so that the
    # picture rule is written once.
    rows = conn.execute("SELECT path, error_code, error, size, sha256 FROM files WHERE error_code IS NOT NULL ORDER BY path")
    return [FileError(*r) for r in rows]


def find(conn: sqlite3.Connection, key: str) -> list[Entry]:
    """Entries whose trigger name (any case), path, member, or hash (sha256, AutoV2, AutoV3,
    vectors hash; a prefix of at least 6 hex digits) is ``key``. Raises when nothing matches."""
    import os

    k = key.strip()
    if not k:
        raise LibraryError("give a name, a path or a hash")
    found = entries(conn, where="lower(e.name) = lower(?)", params=(k,))
    if not found:
        found = entries(conn, where="f.path = ? OR e.member = ?", params=(os.path.abspath(k), k))
    low = k.lower()
    if not found and len(low) >= 6 and all(c in "0123456789abcdef" for c in low):
        like = low + "%"
        found = entries(
            conn,
            where="(f.sha256 LIKE ? OR f.autov3 LIKE ? OR e.vectors_hash LIKE ?)",
            params=(like, like, like),
        )
    if not found:
        raise LibraryError(f"no embedding in the library matches {key!r} (by name, path or hash)")
    return found


def dupes(conn: sqlite3.Connection) -> list[Group]:
    """Groups of entries that are copies: the same file bytes (``same-file``), or the same vectors
    in files that differ (``same-vectors``: a conversion, another format, a renamed copy)."""
    groups: list[Group] = []
    shas = [r[0] for r in conn.execute(
        "SELECT f.sha256 FROM files f WHERE f.error_code IS NULL GROUP BY f.sha256 HAVING count(*) > 1 ORDER BY f.sha256"
    )]
    for sha in shas:
        es = entries(conn, where="f.sha256 = ?", params=(sha,))
        paths = sorted({e.path for e in es})
        groups.append(Group("same-file", sha, f"{len(paths)} files have identical bytes (sha256 {sha[:12]})", tuple(es)))
    vh = [r[0] for r in conn.execute(
        "SELECT e.vectors_hash FROM embeddings e JOIN files f ON f.id = e.file_id GROUP BY e.vectors_hash"
        " HAVING count(DISTINCT f.sha256) > 1 ORDER BY e.vectors_hash"
    )]
    for h in vh:
        es = entries(conn, where="e.vectors_hash = ?", params=(h,))
        fmts = sorted({e.format for e in es})
        groups.append(Group("same-vectors", h, f"{len(es)} embeddings hold the same vectors in different files ({', '.join(fmts)})", tuple(es)))
    return groups

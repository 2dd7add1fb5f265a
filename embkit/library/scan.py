"""Scanning folders into the library: walk, compare with what is stored, read what changed (in
parallel), and write the results in batched transactions.

Incremental: a file whose size and mtime match its row is not opened. One whose size or mtime
changed is hashed; when its sha256 is unchanged only the row's size and mtime are updated, else it
is parsed again. A file whose sidecars changed (a Civitai info, a preview appeared, changed or went:
the walk keeps a key of their names, sizes and mtimes) is parsed again too, and its sidecars and
previews recorded anew. Rows for files that are gone from a scanned folder are deleted, and with
them (foreign keys) their trained words and previews.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import LibraryPathNotFoundError
from .tree import walk

#: Below this many files to read, worker processes cost more than they save.
PARALLEL_ABOVE = 64
#: Files per task sent to a worker: at least this many (each task costs a round trip), at most
#: CHUNK_MAX, and about 1/16 of each worker's share so the last tasks end close together.
CHUNK = 16
CHUNK_MAX = 256
#: Results per write transaction: small enough that little is left to write when the last worker
#: ends (the parent writes while workers read).
BATCH = 500
#: Result kinds from embkit.library.extract.examine (repeated here so this module need not import it).
SAME, FILE = "same", "file"
#: Image containers (ids in the formats table): a picture in an embeddings folder is usually a
#: preview, not a damaged embedding card.
PICTURE_CONTAINERS = ("png", "webp")
#: The error codes such an image gets when it holds no embedding (no text chunk, no card in the
#: pixels). Other codes (unsafe-file, too-large …) are reported even for images.
PICTURE_CODES = ("broken-file", "unknown-format")


@dataclass
class ScanReport:
    """What a scan did. ``errors`` lists ``(path, code, message)`` for files that could not be read."""

    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    #: images (PNG/WebP) holding no embedding: previews beside embedding files, not problems. They
    #: are recorded like unreadable files (so the next scan skips them) but not listed in ``errors``.
    pictures: int = 0
    #: files under the scanned paths with a preview beside them (``<stem>.preview.png``, or one of
    #: their members' ``<stem>.<member>.preview.png``), as the ``previews`` table records them
    previews: int = 0
    seconds: float = 0.0
    #: ``(path, reason)`` of the files under the roots that are no embedding (embkit.folder: by
    #: their name, never opened; or after a read, recorded so the next scan skips them, pictures
    #: included): not errors
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The walk rule (:func:`embkit.folder.walk_exit_code`) over the files under the roots as
        they are now (an unreadable file unchanged since the last scan counts again)."""
        from ..errors import exit_code_of
        from ..folder import walk_exit_code

        return walk_exit_code((exit_code_of(code) for _p, code, _m in self.errors), self.seen - self.read_skips)

    #: how many of ``skipped`` were read first (they are among ``seen``; the others were not opened)
    read_skips: int = field(default=0, repr=False)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "seen": self.seen,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "errors": [{"path": p, "code": c, "message": m} for p, c, m in self.errors],
            "pictures": self.pictures,
            "previews": self.previews,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "seconds": round(self.seconds, 3),
        }


def scan(
    conn: sqlite3.Connection,
    paths: Iterable[str | os.PathLike],
    *,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Scan files and folders (recursively) into the database; see the module docstring."""
    from ..formats import extensions
    from .previews import count_under

    start = time.perf_counter()
    report = ScanReport()
    exts = tuple(extensions())
    found: dict[str, tuple[int, int]] = {}
    roots = []
    for p in paths:
        root = os.path.abspath(os.fspath(p))
        if not os.path.exists(root):
            # most likely a typo; forgetting everything stored under it would be a nasty surprise
            raise LibraryPathNotFoundError("no such file or folder (to forget files that are gone: embkit library remove --missing)", path=root)
        roots.append(root)
    beside: dict[str, tuple[str, tuple[str, ...]]] = {}
    by_name: list[tuple[str, str]] = []
    for root in roots:
        for path, size, mtime in walk(root, exts, beside, by_name):
            found[path] = (size, mtime)
    report.seen = len(found)

    stored = _stored_under(conn, roots)
    todo: list[tuple] = []
    for path, (size, mtime) in found.items():
        old = stored.get(path)
        key, present = beside.get(path, ("", ()))
        if old is None:
            todo.append((path, size, mtime, None, key, present))
        elif old[0] == size and old[1] == mtime and (old[3] or "") == key:
            # still unreadable: the report says so again; no embedding: skipped, not "unchanged"
            if old[4] is None or not _count_error(report, path, old[4], old[5]):
                report.unchanged += 1
        else:
            # sidecars that changed beside an unchanged file: read it again, whatever its hash
            todo.append((path, size, mtime, old[2] if (old[3] or "") == key else None, key, present))
    gone = [path for path in stored if path not in found]

    total = len(todo)
    if progress:
        progress(0, total)
    done = 0
    pending: list[tuple] = []
    for results in _run(todo, jobs):
        pending.extend(results)
        done += len(results)
        if len(pending) >= BATCH:
            _write(conn, pending, [], report, stored)
            pending = []
        if progress:
            progress(done, total)
    _write(conn, pending, gone, report, stored)
    report.skipped = by_name + report.skipped
    report.previews = count_under(conn, roots)
    report.seconds = time.perf_counter() - start
    return report


def store(conn: sqlite3.Connection, results: list[tuple]) -> ScanReport:
    """Write :func:`~embkit.library.extract.examine` results made elsewhere (``embkit ingest``
    records each file once, in its own workers) in batched transactions; a path's row is replaced
    whole, as a scan replaces it. Nothing is walked, so no row is removed."""
    start = time.perf_counter()
    report = ScanReport(seen=len(results))
    for i in range(0, len(results), BATCH):
        batch = results[i : i + BATCH]
        paths = [r[1][0] if r[0] == FILE else r[1] for r in batch]
        marks = ",".join("?" * len(paths))
        sql = f"SELECT path, size, mtime_ns, sha256, sidecar_key, error_code, error FROM files WHERE path IN ({marks})"
        stored = {p: tuple(row) for p, *row in conn.execute(sql, paths)}
        _write(conn, batch, [], report, stored)
    # files with a preview beside them, as a scan counts them (the results carry their previews)
    report.previews = sum(1 for r in results if r[0] == FILE and r[4])
    report.seconds = time.perf_counter() - start
    return report


def _stored_under(conn: sqlite3.Connection, roots: list[str]) -> dict[str, tuple]:
    """Rows whose path is one of the roots or lies under one: path → (size, mtime_ns, sha256,
    sidecar key, error code, error)."""
    out: dict[str, tuple] = {}
    sql = "SELECT path, size, mtime_ns, sha256, sidecar_key, error_code, error FROM files WHERE path = ? OR (path >= ? AND path < ?)"
    for root in roots:
        lo = root.rstrip(os.sep) + os.sep
        hi = lo[:-1] + chr(ord(os.sep) + 1)
        for path, size, mtime, sha, key, code, error in conn.execute(sql, (root, lo, hi)):
            out[path] = (size, mtime, sha, key, code, error)
    return out


def _examine_chunk(chunk: list[tuple]) -> list[tuple]:
    from .extract import examine  # imported here: a warm rescan that reads nothing never needs it

    return [examine(*item) for item in chunk]


def _run(todo: list, jobs: int | None):
    """Yield lists of :func:`~embkit.library.extract.examine` results, in worker processes when it pays."""
    if jobs is None:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not todo:
        return
    from . import extract  # noqa: F401  (before forking, so workers inherit it instead of each importing it)

    size = max(CHUNK, min(CHUNK_MAX, len(todo) // (max(jobs, 1) * 16)))
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    if jobs <= 1 or len(todo) < PARALLEL_ABOVE:
        for chunk in chunks:
            yield _examine_chunk(chunk)
        return
    import multiprocessing as mp

    # fork starts workers in milliseconds and they inherit the imported readers; elsewhere the
    # platform default (spawn) works, only slower to start.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    # workers ignore Ctrl-C (the parent stops, terminating them, and the rows written so far stay:
    # each batch is its own transaction); otherwise each printed a traceback
    with ctx.Pool(min(jobs, len(chunks)), initializer=_ignore_sigint) as pool:
        yield from pool.imap_unordered(_examine_chunk, chunks)


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write(conn: sqlite3.Connection, results: list[tuple], gone: list[str], report: ScanReport, stored: dict) -> None:
    """Write one batch in one transaction. The row for a path is replaced whole, so two scans
    writing the same file one after the other leave one consistent row."""
    if not results and not gone:
        return
    conn.execute("BEGIN IMMEDIATE")  # waits (busy timeout) for another scan's batch to finish
    try:
        same = [(r[2], r[3], r[4], r[1]) for r in results if r[0] == SAME]
        if same:
            conn.executemany("UPDATE files SET size = ?, mtime_ns = ?, scanned_at = ? WHERE path = ?", same)
        full = [r for r in results if r[0] == FILE]
        delete = [(r[1][0],) for r in full] + [(p,) for p in gone]
        if delete:
            conn.executemany("DELETE FROM files WHERE path = ?", delete)
        if full:
            _insert(conn, full)
            _carry_tags(conn, full, stored)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    report.unchanged += len(same)
    report.removed += len(gone)
    for r in full:
        row = r[1]
        if row[9] is not None and _count_error(report, row[0], row[9], row[10]):
            continue  # no embedding: recorded so the next scan skips it, counted as skipped only
        report.updated += row[0] in stored
        report.added += row[0] not in stored


def _count_error(report: ScanReport, path: str, code: str, message: str) -> bool:
    """A file recorded with an error: a picture or another file that is no embedding is skipped
    (:func:`embkit.folder.error_reason`; True), anything else is an error of the report (False)."""
    reason = not_an_embedding(path, code, message)
    if reason is None:
        report.errors.append((path, code, message))
        return False
    if is_picture(path, code):
        report.pictures += 1
    report.skipped.append((path, reason))
    report.read_skips += 1
    return True


def not_an_embedding(path: str, code: str | None, message: str = "") -> str | None:
    """Why a file recorded with error ``code`` is no embedding rather than an unreadable one (the
    walk rule of every command, :func:`embkit.folder.error_reason`), or ``None``."""
    if code is None:
        return None
    from ..folder import error_reason

    detail = message[len(path) + 2:] if message.startswith(path + ": ") else message
    return error_reason(path, code, detail)


def _carry_tags(conn: sqlite3.Connection, full: list[tuple], stored: dict) -> None:
    # Tags are keyed by content so they follow a file when it moves; when a file is edited in
    # place, its tags follow the path to the new content too (the old content keeps them).
    moves = []
    for _kind, row, *_rest in full:
        old = stored.get(row[0])
        if old is not None and old[2] and row[3] and old[2] != row[3]:
            moves.append((row[3], old[2]))
    if moves:
        conn.executemany("INSERT OR IGNORE INTO tags (sha256, member, tag) SELECT ?, member, tag FROM tags WHERE sha256 = ?", moves)


def is_picture(path: str, error_code: str | None) -> bool:
    """Whether a file recorded with ``error_code`` is a plain picture (a PNG/WebP holding no
    embedding) rather than an unreadable file. The one rule the scan report, ``Library.errors()``,
    ``Library.pictures()`` and the CLI all follow."""
    return error_code in PICTURE_CODES and path.lower().endswith(_picture_extensions())


@functools.lru_cache(maxsize=None)
def _picture_extensions() -> tuple[str, ...]:
    # From the formats table (house rule 2: no second list of extensions); cached because it is
    # asked once per recorded error.
    from ..formats import get_container

    return tuple(ext for c in PICTURE_CONTAINERS for ext in get_container(c).extensions)


def _insert(conn: sqlite3.Connection, full: list[tuple]) -> None:
    # We hold the write lock, so ids can be handed out here and every table filled with one
    # executemany each, instead of a statement per row to learn lastrowid.
    file_id = conn.execute("SELECT coalesce(max(id), 0) FROM files").fetchone()[0]
    emb_id = conn.execute("SELECT coalesce(max(id), 0) FROM embeddings").fetchone()[0]
    files, embs, slots = [], [], []
    words, previews = [], []
    for _kind, row, embeddings, trained, pictures in full:
        file_id += 1
        files.append((file_id, *row))
        words.extend((file_id, w) for w in dict.fromkeys(trained))
        previews.extend((file_id, *p) for p in pictures)
        for e in embeddings:
            emb_id += 1
            embs.append((emb_id, file_id, *e[:9]))
            slots.extend((emb_id, *s) for s in e[9])
    conn.executemany(
        "INSERT INTO files (id, path, size, mtime_ns, sha256, autov2, autov3, format, container, metadata, error_code, error, scanned_at,"
        " sidecars, base_model, sidecar_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        files,
    )
    if words:
        conn.executemany("INSERT INTO trained_words (file_id, word) VALUES (?,?)", words)
    if previews:
        conn.executemany(
            "INSERT INTO previews (file_id, member, path, size, mtime_ns, format, width, height, parameters, embkit) VALUES (?,?,?,?,?,?,?,?,?,?)",
            previews,
        )
    if embs:
        conn.executemany(
            "INSERT INTO embeddings (id, file_id, member, name, stored_name, family, families, num_vectors, vectors_hash, metadata, warnings)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            embs,
        )
    if slots:
        conn.executemany(
            "INSERT INTO slots (embedding_id, slot, vectors, width, dtype, vectors_hash, norm_min, norm_mean, norm_max) VALUES (?,?,?,?,?,?,?,?,?)",
            slots,
        )

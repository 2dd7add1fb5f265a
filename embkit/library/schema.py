"""The library's SQLite database: where it lives, how it is opened, and its versioned schema.

The schema version is SQLite's ``PRAGMA user_version``. :data:`MIGRATIONS` is an append-only list of
SQL scripts; script *i* takes a database from version *i* to *i + 1*. Opening a database applies the
missing ones inside ``BEGIN IMMEDIATE`` so two processes opening a fresh database at once do not
both migrate it. WAL mode lets readers work while a scan writes; a long busy timeout makes a second
writer wait for the first instead of failing with "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

from ..errors import LibraryError

#: Environment variable that names the database file (``--db`` wins over it).
ENV_VAR = "EMBKIT_LIBRARY"
#: How long a writer waits for another writer before giving up (seconds).
BUSY_TIMEOUT_S = 120.0

#: Append-only: never edit a released step, add a new one.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: files, the embeddings in them, and each embedding's slots.
    """
    CREATE TABLE files (
        id          INTEGER PRIMARY KEY,
        path        TEXT NOT NULL UNIQUE,
        size        INTEGER NOT NULL,
        mtime_ns    INTEGER NOT NULL,
        sha256      TEXT,
        autov2      TEXT,
        autov3      TEXT,
        format      TEXT,
        container   TEXT,
        metadata    TEXT,            -- JSON: what the container itself carries
        error_code  TEXT,            -- an embkit.errors code when the file could not be read
        error       TEXT,
        scanned_at  REAL NOT NULL
    );
    CREATE INDEX files_sha256 ON files(sha256);
    CREATE TABLE embeddings (
        id           INTEGER PRIMARY KEY,
        file_id      INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        member       TEXT NOT NULL DEFAULT '',   -- which one, in files holding several
        name         TEXT NOT NULL,              -- the trigger word
        stored_name  TEXT,                       -- the name written inside the file
        family       TEXT NOT NULL,
        families     TEXT NOT NULL,              -- every family the slots fit, comma-separated
        num_vectors  INTEGER NOT NULL,
        vectors_hash TEXT NOT NULL,              -- sha256 over every slot's float32 vectors
        metadata     TEXT NOT NULL,              -- JSON
        warnings     TEXT NOT NULL               -- JSON list of strings
    );
    CREATE INDEX embeddings_file ON embeddings(file_id);
    CREATE INDEX embeddings_name ON embeddings(name COLLATE NOCASE);
    CREATE INDEX embeddings_vectors ON embeddings(vectors_hash);
    CREATE TABLE slots (
        embedding_id INTEGER NOT NULL REFERENCES embeddings(id) ON DELETE CASCADE,
        slot         TEXT NOT NULL,
        vectors      INTEGER NOT NULL,
        width        INTEGER NOT NULL,
        dtype        TEXT NOT NULL,
        vectors_hash TEXT NOT NULL,
        norm_min     REAL,
        norm_mean    REAL,
        norm_max     REAL,
        PRIMARY KEY (embedding_id, slot)
    ) WITHOUT ROWID;
    """,
    # 1 -> 2: user tags, keyed by content (file sha256 + member) so they survive moves and rescans.
    """
    CREATE TABLE tags (
        sha256  TEXT NOT NULL,
        member  TEXT NOT NULL DEFAULT '',
        tag     TEXT NOT NULL,
        PRIMARY KEY (sha256, member, tag)
    ) WITHOUT ROWID;
    CREATE INDEX tags_tag ON tags(tag);
    """,
    # 2 -> 3: sidecars (Civitai Helper, A1111, Lora Manager, previews): what they say, the base
    # model and trained words they name (searchable), and a key of their names, sizes and mtimes
    # (and of an SDXL pair's second file) so that a rescan rereads a file whose sidecars changed.
    # Rows of older versions get NULL, read as "no sidecars": a rescan fills in the files that have some.
    """
    ALTER TABLE files ADD COLUMN sidecars TEXT;      -- JSON: embkit.schema.Sidecars.to_dict() plus "files" and "warnings"
    ALTER TABLE files ADD COLUMN base_model TEXT;
    ALTER TABLE files ADD COLUMN sidecar_key TEXT;
    CREATE INDEX files_base_model ON files(base_model COLLATE NOCASE);
    CREATE TABLE trained_words (
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        word    TEXT NOT NULL,
        PRIMARY KEY (file_id, word)
    ) WITHOUT ROWID;
    CREATE INDEX trained_words_word ON trained_words(word COLLATE NOCASE);
    """,
    # 3 -> 4: the preview of each file (and of each member of a file holding several: embkit's
    # <stem>.<member>.preview.png), as the sidecar rules find it (embkit.formats.sidecars), with what
    # its header says. Keyed by the file's row, so a file's previews go with it (no trigger: the
    # schema check refuses them). A version-3 row whose sidecars named a preview forgets its sidecar
    # key, so the next scan reads it again and records the picture.
    """
    CREATE TABLE previews (
        file_id     INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        member      TEXT NOT NULL DEFAULT '',     -- '' for the file's own preview
        path        TEXT NOT NULL,                -- the picture
        size        INTEGER NOT NULL,
        mtime_ns    INTEGER NOT NULL,
        format      TEXT,                         -- what Pillow reads: PNG, JPEG, WEBP, GIF (NULL: unreadable)
        width       INTEGER,
        height      INTEGER,
        parameters  TEXT,                         -- its 'parameters' text chunk (A1111 infotext)
        embkit      INTEGER NOT NULL DEFAULT 0,   -- 1 when embkit rendered it
        PRIMARY KEY (file_id, member)
    ) WITHOUT ROWID;
    UPDATE files SET sidecar_key = NULL WHERE sidecars LIKE '%"preview": "%';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """``$EMBKIT_LIBRARY``, else ``library.sqlite`` in the platform's user data folder."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("embkit")) / "library.sqlite"


#: A single query may run this long before it is interrupted (a database from elsewhere must not
#: hang a command; embkit's own queries take milliseconds).
QUERY_SECONDS = 30.0


class _QueryClock:
    """SQLite's progress handler as a time limit: it is called every few thousand VM steps while a
    statement runs; a pause between calls means a new statement began."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.began = self.last = time.monotonic()

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self.last > 0.25:
            self.began = now
        self.last = now
        return 1 if now - self.began > self.limit else 0


def _check_files(path: Path) -> None:
    """The database and its journal files must be regular files (a FIFO blocks the open)."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LibraryError(f"cannot open the library database ({exc})", path=path) from None
        if not stat.S_ISREG(st.st_mode):
            raise LibraryError(f"{p.name} is not a regular file; refusing to open it as a database", path=path)


_EXPECTED: dict[int, set[tuple]] = {}


def _expected_schema(version: int) -> set[tuple]:
    """``sqlite_master`` rows of embkit's own database at ``version`` (built in memory once)."""
    if version not in _EXPECTED:
        mem = sqlite3.connect(":memory:", isolation_level=None)
        try:
            migrate(mem, upto=version)
            _EXPECTED[version] = set(mem.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        finally:
            mem.close()
    return _EXPECTED[version]


def check_schema(conn: sqlite3.Connection, path: str | os.PathLike = "") -> None:
    """Refuse a database whose schema is not embkit's own at its version: triggers and views (they
    run arbitrary SQL on every insert or read: an endless recursive query hung ``library scan``),
    foreign tables or indexes, attached databases. SQLite's own tables (``sqlite_*``) are allowed."""
    current = version(conn)
    if current > SCHEMA_VERSION:
        return  # migrate() refuses it with the upgrade message
    expected = _expected_schema(current)
    for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"):
        if kind in ("trigger", "view"):
            raise LibraryError(f"holds a {kind} ({name!r:.40}), which embkit's library never has; refusing to use it", path=path or None)
        if (kind, name, table, sql) not in expected and not str(name).startswith("sqlite_"):
            raise LibraryError(f"holds a {kind} {name!r:.40} that is not embkit's at schema version {current}; refusing to use it", path=path or None)
    attached = [row[1] for row in conn.execute("PRAGMA database_list") if row[1] not in ("main", "temp")]
    if attached:
        raise LibraryError(f"has attached databases ({', '.join(attached)}); refusing to use it", path=path or None)


def connect(path: str | os.PathLike, *, upto: int | None = None) -> sqlite3.Connection:
    """Open (creating when needed) and migrate the database; autocommit mode, WAL, foreign keys.
    A database that is not embkit's (:func:`check_schema`) is refused before it is used, and every
    query runs under a time limit (:data:`QUERY_SECONDS`).

    ``upto`` stops migrating at that version (tests use it to build an old database).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_files(path)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise LibraryError(f"cannot open the library database ({exc})", path=path) from None
    try:
        conn.set_progress_handler(_QueryClock(QUERY_SECONDS), 10_000)
        conn.execute("PRAGMA trusted_schema=OFF")  # no SQL functions with side effects from the schema
        check_schema(conn, path)
        _set_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint every ~32 MB of WAL instead of SQLite's 4 MB: a scan writing thousands of rows
        # then syncs the database a few times, not dozens (closing checkpoints the rest).
        conn.execute("PRAGMA wal_autocheckpoint=8000")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn, path, upto=SCHEMA_VERSION if upto is None else upto)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "interrupted" in str(exc):
            raise LibraryError(f"a query ran past {QUERY_SECONDS:g} s and was stopped", path=path) from None
        raise LibraryError(f"is not a usable library database ({exc})", path=path) from None
    except LibraryError:
        conn.close()
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching a fresh file to WAL needs a moment of exclusive access; a concurrent opener may
    # hold it, and the busy handler does not cover every path of this pragma, so retry briefly.
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.01 * min(attempt + 1, 20))
    conn.execute("PRAGMA journal_mode=WAL")


def version(conn: sqlite3.Connection) -> int:
    """The database's schema version (``PRAGMA user_version``)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: str | os.PathLike = "", *, upto: int = SCHEMA_VERSION) -> int:
    """Apply the missing migrations up to ``upto``, each step in its own transaction; returns the
    version reached. A database newer than this embkit is refused, not touched."""
    current = version(conn)
    if current > SCHEMA_VERSION:
        raise LibraryError(
            f"library schema version {current} is newer than this embkit understands ({SCHEMA_VERSION}); upgrade embkit",
            path=path or None,
        )
    while current < upto:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = version(conn)  # another process may have migrated while we waited
            if current >= upto:
                conn.execute("COMMIT")
                break
            for statement in _statements(MIGRATIONS[current]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current += 1
    return current


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction first; run the statements one by one instead.
    out, buf = [], []
    for line in script.splitlines():
        line = line.split("--", 1)[0].rstrip()
        if not line:
            continue
        buf.append(line)
        if line.endswith(";"):
            out.append("\n".join(buf))
            buf = []
    if buf:
        out.append("\n".join(buf))
    return out

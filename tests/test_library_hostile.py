"""A library database from elsewhere: its schema is checked against embkit's own before use
(triggers, views and foreign tables refused), every query runs under a time limit, and the paths it
lists are read only when they are regular files. Each case runs the real CLI on a real SQLite file
built the way an attacker would, and must end quickly with the library error (exit 13).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

import embkit
from embkit.errors import LibraryError
from embkit.library import schema

import makers
from conftest import run_embkit

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def _library(path: Path, folder: Path) -> Path:
    with embkit.Library(path) as lib:
        lib.scan([folder], jobs=1)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    f = tmp_path / "emb"
    f.mkdir()
    makers.kohya_file(f / "a.safetensors", makers.vectors(1, 768, seed=1))
    return f


@pytest.mark.parametrize("attack", [
    f"CREATE TRIGGER t AFTER INSERT ON files BEGIN SELECT ({ENDLESS}); END",
    f"CREATE VIEW v AS {ENDLESS}",
    "CREATE TABLE extra (x)",
    "CREATE INDEX files_extra ON files(error)",
])
def test_a_database_that_is_not_embkits_is_refused_before_use(attack: str, folder: Path, tmp_path: Path):
    db = _library(tmp_path / "lib.sqlite", folder)
    conn = sqlite3.connect(db)
    conn.execute(attack)
    conn.commit()
    conn.close()
    t0 = time.monotonic()
    proc = run_embkit("library", "--db", str(db), "scan", str(folder), timeout=60)
    assert proc.returncode == 13, proc.stderr
    assert "refusing to use it" in proc.stderr
    assert time.monotonic() - t0 < 30
    with pytest.raises(LibraryError, match="refusing to use it"):
        embkit.Library(db)


def test_a_fifo_as_the_database_or_its_journal_is_refused(tmp_path: Path, folder: Path):
    os.mkfifo(tmp_path / "fifo.sqlite")
    proc = run_embkit("library", "--db", str(tmp_path / "fifo.sqlite"), "list", timeout=60)
    assert proc.returncode == 13 and "not a regular file" in proc.stderr
    db = _library(tmp_path / "lib.sqlite", folder)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        if side.exists():
            side.unlink()
    os.mkfifo(f"{db}-wal")
    with pytest.raises(LibraryError, match="not a regular file"):
        embkit.Library(db)


def test_a_fifo_listed_in_the_database_is_not_opened(tmp_path: Path, folder: Path):
    db = _library(tmp_path / "lib.sqlite", folder)
    os.mkfifo(tmp_path / "pipe.safetensors")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE files SET path = ?", (str(tmp_path / "pipe.safetensors"),))
    conn.commit()
    conn.close()
    proc = run_embkit("library", "--db", str(db), "check", "--model", "sd1", "--json", timeout=60)
    results = json.loads(proc.stdout)
    entry = results[0] if isinstance(results, list) else results["results"][0]
    assert entry["loads"] is False and "not a regular file" in json.dumps(entry["findings"])


def test_every_query_runs_under_a_time_limit(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(schema, "QUERY_SECONDS", 0.5)
    conn = schema.connect(tmp_path / "lib.sqlite")
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        conn.execute(ENDLESS).fetchall()
    assert time.monotonic() - t0 < 5
    assert conn.execute("SELECT count(*) FROM files").fetchone() == (0,)  # the next query runs normally
    conn.close()


def test_embkits_own_databases_of_every_version_pass_the_check(tmp_path: Path):
    for version in range(schema.SCHEMA_VERSION + 1):
        conn = schema.connect(tmp_path / f"v{version}.sqlite", upto=version)
        schema.check_schema(conn)
        conn.close()
    with embkit.Library(tmp_path / "v0.sqlite") as lib:  # migrated on open, then checked again
        assert lib.schema_version == schema.SCHEMA_VERSION

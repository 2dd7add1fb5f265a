"""`embkit library …` in fresh processes, on real files and a real SQLite database, including two
scans of one tree running at the same time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import makers as mk
from conftest import run_embkit


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "embeddings"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    mk.a1111_pt(root / "a" / "badhand.pt", mk.vectors(2, 768, seed=1), name="badhandv3")
    mk.kohya_file(root / "a" / "neg.safetensors", mk.vectors(8, 768, seed=2))
    mk.kohya_file(root / "b" / "neg.pt", mk.vectors(8, 768, seed=2))  # same vectors, other format
    mk.multi_file(root / "b" / "Neg.safetensors", {"clip_l": mk.vectors(1, 768, seed=3), "clip_g": mk.vectors(1, 1280, seed=4)})
    (root / "b" / "junk.pt").write_bytes(b"PK\x03\x04junk")
    return root


def _json(*args: str, db: Path, code: int = 0) -> object:
    done = run_embkit("library", "--db", str(db), *args)
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def test_scan_then_query_with_json(tree, tmp_path):
    db = tmp_path / "lib.sqlite"
    # junk.pt is a damaged embedding: the scan exits with its code (3), the walk rule of every command
    report = _json("scan", "--json", str(tree), db=db, code=3)
    assert (report["seen"], report["added"]) == (5, 5)
    assert [e["code"] for e in report["errors"]] == ["broken-file"]

    entries = _json("list", "--json", db=db)
    assert sorted(e["name"] for e in entries) == ["Neg", "badhand", "neg", "neg"]
    assert [e["name"] for e in _json("list", "--json", "--family", "sdxl", "--slot", "clip_g", db=db)] == ["Neg"]
    assert [e["name"] for e in _json("list", "--json", "--vectors", "2-4", db=db)] == ["badhand"]
    assert [e["name"] for e in _json("search", "hand", "--json", db=db)] == ["badhand"]
    assert len(_json("search", "--json", "--format", "kohya", db=db)) == 2
    [shown] = _json("show", "badhand", "--json", db=db)
    assert shown["stored_name"] == "badhandv3" and shown["slots"][0]["width"] == 768
    assert [e["code"] for e in _json("list", "--errors", "--json", db=db)] == ["broken-file"]

    dupes = _json("dupes", "--json", db=db)
    assert [g["kind"] for g in dupes] == ["same-vectors"] and len(dupes[0]["entries"]) == 2
    kinds = {(g["kind"], g["key"]) for g in _json("conflicts", "--json", db=db)}
    assert {("same-trigger", "neg"), ("case", "neg"), ("stored-name", "badhand"), ("family-mix", "neg")} <= kinds
    only = _json("conflicts", "--json", "--kind", "case", db=db)
    assert {g["kind"] for g in only} == {"case"}


def test_human_output_tag_remove_export(tree, tmp_path):
    db = tmp_path / "lib.sqlite"
    env = {"EMBKIT_LIBRARY": str(db)}  # the environment variable names the database
    done = run_embkit("library", "scan", str(tree), env=env)
    assert done.returncode == 3, done.stderr  # junk.pt: a damaged embedding (the walk rule)
    assert "5 files: 5 added" in done.stdout and "broken-file" in done.stderr
    listing = run_embkit("library", "list", env=env)
    assert "badhand" in listing.stdout and "4 embeddings" in listing.stdout
    shown = run_embkit("library", "show", "badhand", env=env)
    assert "badhandv3" in shown.stdout and "clip_l" in shown.stdout

    tagged = run_embkit("library", "tag", "badhand", "hands", "negative", env=env)
    assert tagged.returncode == 0 and "hands, negative" in tagged.stdout
    [row] = _json("tag", "badhand", "hands", "--json", db=db)  # --json on every command (issue 19)
    assert row["name"] == "badhand" and row["tags"] == ["hands", "negative"]
    assert [e["name"] for e in _json("list", "--json", "--tag", "hands", db=db)] == ["badhand"]

    out = tmp_path / "manifest.json"
    done = run_embkit("library", "export", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(out.read_text())
    assert len(manifest["entries"]) == 4 and manifest["entries"][0]["tags"] in ([], ["hands", "negative"])

    gone = run_embkit("library", "remove", "badhand", "--json", env=env)
    assert gone.returncode == 0 and json.loads(gone.stdout) == {"forgot": 1}
    missing = run_embkit("library", "show", "badhand", env=env)
    assert missing.returncode == 13 and "no embedding in the library matches" in missing.stderr
    assert run_embkit("library", "remove", env=env).returncode == 2  # nothing named: usage error


def test_bad_vectors_filter_is_a_usage_error(tmp_path):
    done = run_embkit("library", "--db", str(tmp_path / "x.sqlite"), "list", "--vectors", "lots")
    assert done.returncode == 2 and "--vectors" in done.stderr


def test_two_concurrent_scans_end_consistent(tmp_path):
    """Two processes scan the same tree into the same new database at once: both succeed, no
    'database is locked', and the result is the same as one scan."""
    from safetensors.numpy import save_file

    root = tmp_path / "many"
    for i in range(400):
        folder = root / f"f{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"emb_params": mk.vectors(1 + i % 3, 768, seed=i)}, str(folder / f"e{i:03d}.safetensors"))
    db = tmp_path / "shared.sqlite"
    cmd = [sys.executable, "-m", "embkit", "library", "--db", str(db), "scan", "--json", "--jobs", "2", str(root)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "locked" not in err
        rep = json.loads(out)
        assert rep["seen"] == 400 and not rep["errors"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*), count(DISTINCT path) FROM files").fetchone() == (400, 400)
    assert conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 400
    assert conn.execute("SELECT count(*) FROM slots").fetchone()[0] == 400
    assert conn.execute("SELECT count(*) FROM embeddings e LEFT JOIN files f ON f.id = e.file_id WHERE f.id IS NULL").fetchone()[0] == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert (again["unchanged"], again["added"], again["updated"]) == (400, 0, 0)
    os.remove(root / "f0" / "e000.safetensors")
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert again["removed"] == 1


def test_list_errors_counts_pictures_apart(tmp_path):
    """Regression: `list --errors` listed a preview picture as `broken-file … no sd-ti-embedding
    text`, though `scan` counts it as a picture."""
    from PIL import Image

    root = tmp_path / "embeddings"
    root.mkdir()
    mk.kohya_file(root / "thing.safetensors", mk.vectors(1, 768, seed=1))
    Image.new("RGB", (16, 16)).save(root / "thing.png")
    Image.new("RGB", (16, 16)).save(root / "other.png")
    (root / "junk.pt").write_bytes(b"PK\x03\x04junk")
    db = tmp_path / "lib.sqlite"
    report = _json("scan", "--json", str(root), db=db, code=3)
    assert report["pictures"] == 2 and [Path(e["path"]).name for e in report["errors"]] == ["junk.pt"]
    assert sorted(Path(s["path"]).name for s in report["skipped"]) == ["other.png", "thing.png"]
    # a rescan says the same of the unchanged files (the exit status too)
    again = _json("scan", "--json", str(root), db=db, code=3)
    assert [Path(e["path"]).name for e in again["errors"]] == ["junk.pt"] and again["pictures"] == 2
    assert [Path(e["path"]).name for e in _json("list", "--errors", "--json", db=db)] == ["junk.pt"]
    human = run_embkit("library", "--db", str(db), "list", "--errors")
    assert human.returncode == 0, human.stderr
    assert "junk.pt" in human.stdout and "thing.png" not in human.stdout and "sd-ti-embedding" not in human.stdout
    assert "1 unreadable file (and 2 pictures without an embedding, not errors)" in human.stdout
    (root / "junk.pt").unlink()
    _json("scan", "--json", str(root), db=db)
    human = run_embkit("library", "--db", str(db), "list", "--errors")
    assert "no unreadable files (and 2 pictures without an embedding, not errors)" in human.stdout


def test_stored_name_conflict_is_for_a1111_files_only(tmp_path):
    """Regression: a kohya file keeping a stored_name in its metadata was reported as triggered
    by that name in diffusers."""
    root = tmp_path / "embeddings"
    root.mkdir()
    mk.a1111_pt(root / "badhand.pt", mk.vectors(2, 768, seed=1), name="badhandv3")
    mk.kohya_file(root / "small.safetensors", mk.vectors(1, 768, seed=2), metadata={"stored_name": "EasyNegative"})
    db = tmp_path / "lib.sqlite"
    _json("scan", "--json", str(root), db=db)
    groups = _json("conflicts", "--json", "--kind", "stored-name", db=db)
    assert [(g["key"], g["entries"][0]["format"]) for g in groups] == [("badhand", "a1111")]
    assert "triggered as 'badhand' by A1111 but as 'badhandv3' by diffusers" in groups[0]["message"]
    human = run_embkit("library", "--db", str(db), "conflicts", "--kind", "stored-name")
    assert human.returncode == 0 and "stored-name" in human.stdout and "EasyNegative" not in human.stdout
    [shown] = _json("show", "small", "--json", db=db)
    assert shown["stored_name"] == "EasyNegative"  # still stored and shown, just not a conflict

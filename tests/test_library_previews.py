"""The library and previews (issue 17): scan records the picture beside a file (and embkit's render
parameters), ``library previews`` renders the missing ones, ``library gallery`` writes the site."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest
from safetensors.numpy import save_file

import embkit
import makers as mk
from conftest import run_embkit
from embkit.diffusers.infotext import text as infotext
from embkit.errors import TargetExistsError
from embkit.library import schema


def _kohya(path, seed=0, rows=1):
    save_file({"emb_params": mk.vectors(rows, 768, seed, 0.3)}, str(path))
    return path


def _picture(path, *, parameters=None, fmt="PNG", colour=(90, 30, 160)):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = None
    if parameters is not None:
        info = PngInfo()
        info.add_text("parameters", parameters)
    Image.new("RGB", (48, 32), colour).save(path, format=fmt, **({"pnginfo": info} if info else {}))
    return path


EMBKIT_PARAMS = infotext(prompt="a photo of made", negative_prompt="", steps=4, sampler="Euler", guidance=7.5, seeds=(0,), width=64, height=64,
                         model="built-in tiny sd1", version="0.1.0")


def _shelf(root):
    root.mkdir(parents=True, exist_ok=True)
    _kohya(root / "made.safetensors", 1)
    _picture(root / "made.preview.png", parameters=EMBKIT_PARAMS)
    _kohya(root / "civitai.safetensors", 2)
    _picture(root / "civitai.preview.png", fmt="JPEG")  # Civitai Helper saves JPEG bytes under .png
    _kohya(root / "bare.safetensors", 3)
    save_file({"<one>": mk.vectors(1, 768, 4), "<two>": mk.vectors(1, 768, 5)}, str(root / "pair.safetensors"))
    _picture(root / "pair._two_.preview.png", colour=(1, 2, 3))  # the member <two>'s own preview
    _kohya(root / "webp.safetensors", 6)
    _picture(root / "webp.preview.webp", fmt="WEBP")
    return root


def test_scan_records_previews_beside_files(tmp_path):
    root = _shelf(tmp_path / "emb")
    with embkit.Library(tmp_path / "lib.sqlite") as lib:
        report = lib.scan([root], jobs=1)
        assert report.previews == 4 and report.pictures == 0 and not report.errors
        got = {e.name: e.preview for e in lib.search()}
        assert got["bare"] is None and got["<one>"] is None
        made = got["made"]
        assert (made.path, made.format, made.width, made.height, made.embkit) == (str(root / "made.preview.png"), "PNG", 48, 32, True)
        assert made.parameters == EMBKIT_PARAMS
        assert (got["civitai"].format, got["civitai"].embkit, got["civitai"].parameters) == ("JPEG", False, None)
        assert got["<two>"].path.endswith("pair._two_.preview.png")
        assert got["webp"].format == "WEBP"
        rows = dict(lib.show("made")[0].rows())
        assert rows["preview"].startswith(str(root / "made.preview.png")) and "rendered by embkit" in rows["preview"]
        assert rows["preview parameters"] == EMBKIT_PARAMS

        # incremental: a preview that goes, one that changes, one that appears (the files are
        # unchanged, their sidecars not: those three are read again, the other two not)
        assert lib.scan([root], jobs=1).unchanged == 5
        os.unlink(root / "civitai.preview.png")
        _picture(root / "made.preview.png", colour=(5, 5, 5))
        os.utime(root / "made.preview.png", ns=(1, 1))
        _picture(root / "bare.preview.png")
        report = lib.scan([root], jobs=1)
        assert (report.updated, report.unchanged, report.previews) == (3, 2, 4)
        got = {e.name: e.preview for e in lib.search()}
        assert got["civitai"] is None and got["made"].embkit is False and got["bare"].format == "PNG"

        # a file's previews go with it: deleted from disk, or forgotten
        os.unlink(root / "bare.safetensors")
        lib.scan([root], jobs=1)
        lib.remove("made")
        left = {r[0] for r in lib._conn.execute("SELECT f.path FROM previews p JOIN files f ON f.id = p.file_id")}
        assert left == {str(root / "pair.safetensors"), str(root / "webp.safetensors")}
        assert lib._conn.execute("SELECT count(*) FROM previews").fetchone() == (2,)  # none left of a forgotten file


def test_scan_of_a_single_file_finds_its_preview(tmp_path):
    root = _shelf(tmp_path / "emb")
    with embkit.Library(tmp_path / "lib.sqlite") as lib:
        lib.scan([root / "made.safetensors"], jobs=1)
        assert lib.show("made")[0].preview.embkit is True
        shown = run_embkit("library", "show", "made", "--json", "--db", str(tmp_path / "lib.sqlite"))
        assert json.loads(shown.stdout)[0]["preview"]["parameters"] == EMBKIT_PARAMS


@pytest.mark.parametrize("version", [2, 3])
def test_old_databases_migrate_to_previews(tmp_path, version):
    """A version-2 (no sidecars) or version-3 (sidecars, previews only as a path in them) library
    learns its previews at the next scan; the schema holds no trigger (a --db is refused for one)."""
    root = _shelf(tmp_path / "emb")
    path = tmp_path / "old.sqlite"
    conn = schema.connect(path, upto=version)
    conn.execute("INSERT INTO tags (sha256, member, tag) VALUES ('abc', '', 'kept')")
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'previews'").fetchall()
    if version == 3:  # what embkit with sidecars (and no previews table) stored for one file
        side = json.dumps({"preview": str(root / "made.preview.png"), "files": {"preview": str(root / "made.preview.png")}}, sort_keys=True)
        st = os.stat(root / "made.safetensors")
        key = f"made.preview.png:{os.stat(root / 'made.preview.png').st_size}:{os.stat(root / 'made.preview.png').st_mtime_ns}"
        conn.execute("INSERT INTO files (path, size, mtime_ns, scanned_at, sha256, sidecars, sidecar_key) VALUES (?,?,?,0,'x',?,?)",
                     (str(root / "made.safetensors"), st.st_size, st.st_mtime_ns, side, key))
    conn.close()
    with embkit.Library(path) as lib:
        assert lib.schema_version == schema.SCHEMA_VERSION == 4
        assert lib._conn.execute("SELECT tag FROM tags").fetchall() == [("kept",)]
        assert lib._conn.execute("SELECT count(*) FROM previews").fetchone() == (0,)
        assert not lib._conn.execute("SELECT name FROM sqlite_master WHERE type IN ('trigger', 'view')").fetchall()
        if version == 3:  # its key was forgotten: the scan reads it again and records its preview
            assert lib._conn.execute("SELECT sidecar_key FROM files").fetchone() == (None,)
        report = lib.scan([root], jobs=1)
        assert report.previews == 4 and lib.show("made")[0].preview.embkit is True
    # and the database passes embkit's own schema check when opened as a --db
    assert run_embkit("library", "--db", str(path), "list", "--json").returncode == 0


# -- the gallery ----------------------------------------------------------------------------------

HOSTILE = '<script>alert("x")<script>'


def hostile_library(tmp_path):
    """A library whose names, tags and metadata try to break out of HTML, with a duplicate, a
    conflict, a negative, a broken preview, and SD1 and SDXL entries."""
    root = tmp_path / "emb"
    root.mkdir()
    _kohya(root / "calm-style.safetensors", 1, rows=2)
    _picture(root / "calm-style.preview.png", parameters=EMBKIT_PARAMS)
    _kohya(root / "copy-of-calm.safetensors", 1, rows=2)  # same vectors: a duplicate
    _kohya(root / f"{HOSTILE}.safetensors", 2)
    _picture(root / f"{HOSTILE}.preview.png", colour=(200, 0, 0))
    _kohya(root / "bidi\u202egnp.exe.safetensors", 3)
    mk.a1111_pt(root / "EasyNegative.pt", mk.vectors(2, 768, 4, 0.3), name="EasyNeg-stored")
    (root / "EasyNegative.preview.png").write_bytes(b"\x89PNG\r\n\x1a\n broken beyond repair")
    (root / "sub").mkdir()
    _kohya(root / "sub" / "calm-style.safetensors", 5)  # the same trigger in two files: a conflict
    mk.multi_file(root / "xl-dream.safetensors", {"clip_l": mk.vectors(2, 768, 6), "clip_g": mk.vectors(2, 1280, 7)},
                  metadata={"description": f"</td></table>{HOSTILE}", "trainedWords": "dreamy, soft"})
    db = tmp_path / "lib.sqlite"
    with embkit.Library(db) as lib:
        lib.scan([root], jobs=1)
        lib.tag("xl-dream", "landscape", '"><img src=x onerror=alert(1)>')
        lib.tag("calm-style", "landscape")
    return db, root


def test_gallery_escapes_every_string_and_shows_the_facts(tmp_path):
    db, root = hostile_library(tmp_path)
    out = tmp_path / "site"
    with embkit.Library(db) as lib:
        report = lib.gallery(out)
        entries = lib.search()
    assert (report.entries, report.thumbnails, report.without_preview) == (7, 2, 4)  # the broken preview gets no thumbnail
    assert sorted(os.listdir(out)) == ["index.html", "thumbs"] and sorted(os.listdir(out / "thumbs")) == ["1.png", "2.png"]
    page = (out / "index.html").read_text("utf-8")
    assert page.count("<script") == 1 and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;script&gt;" in page
    assert "\u202e" not in page and "\\u{202e}" in page
    assert "</td></table><script" not in page
    for e in entries:
        assert f'id="c-{e.id}"' in page and f'id="e-{e.id}"' in page and e.sha256 in page
    assert "EasyNeg-stored" in page  # the diffusers trigger of an A1111 file with another stored name
    assert "dreamy, soft" in page and "conflict: same-trigger" in page and "duplicate" in page and "badge negative" in page
    assert "http://" not in page and "https://" not in page

    # a re-run replaces its own gallery; another folder is refused, and kept
    with embkit.Library(db) as lib:
        lib.gallery(out)
        other = tmp_path / "mine"
        other.mkdir()
        (other / "notes.txt").write_text("mine")
        with pytest.raises(TargetExistsError):
            lib.gallery(other)
        with pytest.raises(TargetExistsError):
            lib.gallery(other, overwrite=True)
        # a gallery's thumbs/ is replaced only while it holds nothing but files
        (out / "thumbs" / "mine").mkdir()
        with pytest.raises(TargetExistsError, match="thumbs"):
            lib.gallery(out)
    assert (other / "notes.txt").read_text() == "mine" and (out / "thumbs" / "mine").is_dir()


def test_gallery_cli(tmp_path):
    db, _root = hostile_library(tmp_path)
    done = run_embkit("library", "gallery", "-o", str(tmp_path / "site"), "--db", str(db), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["entries"] == 7
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "index.html").write_text("<p>my own page</p>")
    refused = run_embkit("library", "gallery", "-o", str(tmp_path / "taken"), "--db", str(db))
    assert refused.returncode == 9 and "my own page" in (tmp_path / "taken" / "index.html").read_text()


@pytest.mark.slow
def test_library_previews_renders_the_missing_ones(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    root = _shelf(tmp_path / "emb")
    db = str(tmp_path / "lib.sqlite")
    assert run_embkit("library", "scan", "--db", db, str(root)).returncode == 0
    done = run_embkit("library", "previews", "--db", db, "--device", "cpu", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    written = sorted(os.path.basename(p["preview"]) for p in doc["previews"] if p["status"] == "written")
    assert written == ["bare.preview.png", "pair._one_.preview.png"]
    assert {os.path.basename(p["path"]) for p in doc["previews"] if p["status"] == "kept"} == {"pair.safetensors"}
    with embkit.Library(db) as lib:
        got = {e.name: e.preview for e in lib.search()}
    assert got["bare"].embkit and got["<one>"].embkit and got["<two>"].path.endswith("pair._two_.preview.png")
    assert not got["civitai"].embkit  # kept: it had one
    again = run_embkit("library", "previews", "--db", db, "--device", "cpu")
    assert again.returncode == 0 and "every entry has a preview" in again.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM previews WHERE embkit = 1").fetchone()[0] == 3


def test_thumbnails_are_pillow_pngs(tmp_path):
    db, _root = hostile_library(tmp_path)
    with embkit.Library(db) as lib:
        lib.gallery(tmp_path / "site")
    from PIL import Image

    for name in os.listdir(tmp_path / "site" / "thumbs"):
        with Image.open(tmp_path / "site" / "thumbs" / name) as im:
            assert im.format == "PNG" and max(im.size) <= 256
            assert np.asarray(im).shape[2] == 3

"""The library (embkit.Library) on real SQLite files and real embedding files written with torch
and safetensors."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import embkit
import makers as mk
from embkit.errors import LibraryError
from embkit.library import schema


def _evil_pt(path: Path) -> Path:
    """A torch-style zip whose pickle names a global outside the allow-list (os.getcwd)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": os.getcwd}, protocol=2))
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A small embeddings folder with every situation the library must notice."""
    root = tmp_path / "embeddings"
    (root / "sd1").mkdir(parents=True)
    (root / "sdxl").mkdir()
    (root / "copies").mkdir()
    (root / "bad").mkdir()
    mk.a1111_pt(root / "sd1" / "badhand.pt", mk.vectors(2, 768, seed=1), name="badhandv3")
    mk.kohya_file(root / "sd1" / "Style.safetensors", mk.vectors(4, 768, seed=2), metadata={"modelspec.title": "Style"})
    mk.multi_file(root / "sdxl" / "style.safetensors", {"clip_l": mk.vectors(3, 768, seed=3), "clip_g": mk.vectors(3, 1280, seed=4)})
    easy = mk.vectors(8, 768, seed=5)
    mk.kohya_file(root / "sd1" / "EasyNeg.pt", easy)
    shutil.copyfile(root / "sd1" / "EasyNeg.pt", root / "copies" / "EasyNeg.pt")  # same file, second folder
    mk.kohya_file(root / "copies" / "easyneg_conv.safetensors", easy)  # same vectors, other format
    mk.kohya_file(root / "sd1" / "cat.safetensors", mk.vectors(1, 768, seed=6), dtype="float16")
    mk.kohya_file(root / "sd1" / "cat_toy.safetensors", mk.vectors(1, 768, seed=7))
    mk.diffusers_file(root / "sd1" / "tokens.bin", "<dog>", mk.vectors(1, 768, seed=8))
    mk.lora_bundle(root / "sdxl" / "lora_with_embs.safetensors", {"hero": {"clip_l": mk.vectors(2, 768, seed=9), "clip_g": mk.vectors(2, 1280, seed=10)}})
    (root / "bad" / "broken.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    _evil_pt(root / "bad" / "evil.pt")
    (root / "bad" / "empty.safetensors").write_bytes(b"")
    (root / "sd1" / "notes.txt").write_text("not an embedding")
    return root


@pytest.fixture()
def lib(tmp_path: Path):
    with embkit.Library(tmp_path / "lib.sqlite") as library:
        yield library


def _one(lib, name):
    found = [e for e in lib.search() if e.name == name]
    assert len(found) == 1, [e.name for e in lib.search()]
    return found[0]


def test_scan_records_every_field(lib, tree):
    before = time.time()
    report = lib.scan([tree])
    assert report.seen == 13 and report.added == 13 and report.unchanged == 0
    e = _one(lib, "badhand")
    path = tree / "sd1" / "badhand.pt"
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    st = os.stat(path)
    assert (e.path, e.size, e.mtime_ns) == (str(path), st.st_size, st.st_mtime_ns)
    assert (e.sha256, e.autov2, e.autov3) == (sha, sha[:10], None)
    assert (e.format, e.container, e.family, e.stored_name, e.num_vectors) == ("a1111", "pickle", "sd1", "badhandv3", 2)
    assert e.metadata["step"] == 100 and e.metadata["sd_checkpoint"] == "7ab762a7"
    assert before - 1 <= e.scanned_at <= time.time() + 1
    [slot] = e.slots
    vecs = mk.vectors(2, 768, seed=1)
    norms = np.linalg.norm(vecs.astype(np.float64), axis=1)
    assert (slot.slot, slot.vectors, slot.width, slot.dtype) == ("clip_l", 2, 768, "float32")
    assert slot.norm_min == pytest.approx(norms.min(), rel=1e-5) and slot.norm_max == pytest.approx(norms.max(), rel=1e-5)
    assert slot.norm_mean == pytest.approx(norms.mean(), rel=1e-5)
    assert any("differs from the file name" in w for w in e.warnings)

    xl = _one(lib, "style")
    assert xl.family == "sdxl" and [s.slot for s in xl.slots] == ["clip_l", "clip_g"]
    assert xl.autov3 == embkit.hashes.autov3((tree / "sdxl" / "style.safetensors").read_bytes())
    cat = _one(lib, "cat")
    assert cat.slots[0].dtype == "float16"
    st_meta = _one(lib, "Style").metadata
    assert st_meta["modelspec.title"] == "Style"


def test_several_embeddings_in_one_file_are_separate_entries(lib, tree):
    lib.scan([tree])
    hero = _one(lib, "hero")
    assert hero.format == "lora-bundle" and hero.member and hero.family == "sdxl"
    assert _one(lib, "<dog>").format == "diffusers"


def test_unreadable_and_unsafe_files_are_recorded_not_fatal(lib, tree):
    report = lib.scan([tree])
    errors = {Path(e.path).name: e for e in lib.errors()}
    assert set(errors) == {"broken.pt", "evil.pt", "empty.safetensors"}
    assert errors["evil.pt"].code == "unsafe-file" and "getcwd" in errors["evil.pt"].message
    assert errors["broken.pt"].code == "broken-file"
    assert errors["empty.safetensors"].code == "broken-file" and "empty" in errors["empty.safetensors"].message
    assert {Path(p).name for p, _, _ in report.errors} == set(errors)
    assert len(lib.search()) == 10  # every readable embedding is there


def test_rescan_is_incremental_and_notices_changes_and_deletions(lib, tree):
    lib.scan([tree])
    ids = {e.name: e.id for e in lib.search()}
    again = lib.scan([tree])
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 13)

    # touched: mtime changes, bytes do not -> hashed, not re-parsed (the entry keeps its id)
    cat = tree / "sd1" / "cat.safetensors"
    os.utime(cat, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    # changed: new vectors under the same name
    mk.kohya_file(tree / "sd1" / "cat_toy.safetensors", mk.vectors(3, 768, seed=70))
    os.utime(tree / "sd1" / "cat_toy.safetensors", ns=(time.time_ns(), time.time_ns() + 7_000_000_000))
    (tree / "sd1" / "Style.safetensors").unlink()
    mk.kohya_file(tree / "sd1" / "new_one.safetensors", mk.vectors(1, 768, seed=71))

    r = lib.scan([tree])
    assert (r.added, r.updated, r.removed) == (1, 1, 1)
    assert r.unchanged == 11  # 10 untouched + the touched one
    after = {e.name: e for e in lib.search()}
    assert "Style" not in after and "new_one" in after
    assert after["cat"].id == ids["cat"] and after["cat"].mtime_ns == os.stat(cat).st_mtime_ns
    assert after["cat_toy"].num_vectors == 3 and after["cat_toy"].id != ids["cat_toy"]


def test_scanning_one_folder_leaves_its_siblings_alone(lib, tmp_path):
    a, b = tmp_path / "emb", tmp_path / "emb2"  # "emb2" sorts right after "emb/"'s prefix range
    a.mkdir(), b.mkdir()
    mk.kohya_file(a / "x.safetensors", mk.vectors(1, 768, seed=1))
    mk.kohya_file(b / "y.safetensors", mk.vectors(1, 768, seed=2))
    lib.scan([a, b])
    (a / "x.safetensors").unlink()
    r = lib.scan([a])
    assert r.removed == 1
    assert [e.name for e in lib.search()] == ["y"]


def test_progress_callback_reaches_the_total(lib, tree):
    calls = []
    lib.scan([tree], progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 13) and calls[-1] == (13, 13)


def test_search_filters(lib, tree):
    lib.scan([tree])
    names = lambda **kw: sorted(e.name for e in lib.search(**kw))  # noqa: E731
    assert names(family="sdxl", slot="clip_g") == ["hero", "style"]
    assert "Style" not in names(family="sdxl")  # family is exact
    assert "Style" in names(fits="sdxl")  # an SD1 embedding fits SDXL's CLIP-L slot
    assert names(fits="sdxl", slot="clip_g") == ["hero", "style"]
    assert names(name="STYLE") == ["Style", "style"]
    assert names(name="cat*") == ["cat", "cat_toy"]
    assert names(vectors=8) == ["EasyNeg", "EasyNeg", "easyneg_conv"]
    assert names(vectors=(3, 4)) == ["Style", "style"]
    assert names(vectors=(None, 1)) == ["<dog>", "cat", "cat_toy"]
    assert names(format="a1111") == ["badhand"]
    assert names(format="kohya", name="*neg*") == ["EasyNeg", "EasyNeg", "easyneg_conv"]
    assert lib.list(format="multi")[0].name == "style"


def test_show_by_name_hash_and_path(lib, tree):
    lib.scan([tree])
    e = _one(lib, "cat")
    assert [x.id for x in lib.show("CAT")] == [e.id]
    assert [x.id for x in lib.show(e.autov2)] == [e.id]
    assert [x.id for x in lib.show(e.sha256[:8])] == [e.id]
    assert [x.id for x in lib.show(e.autov3)] == [e.id]
    assert [x.id for x in lib.show(e.path)] == [e.id]
    assert [x.name for x in lib.show(_one(lib, "style").vectors_hash[:12])] == ["style"]
    with pytest.raises(LibraryError, match="no embedding in the library matches 'nope'"):
        lib.show("nope")


def test_dupes_same_bytes_and_same_vectors(lib, tree):
    lib.scan([tree])
    groups = {g.kind: g for g in lib.dupes()}
    assert set(groups) == {"same-file", "same-vectors"}
    assert sorted(Path(e.path).name for e in groups["same-file"].entries) == ["EasyNeg.pt", "EasyNeg.pt"]
    assert sorted(Path(e.path).name for e in groups["same-vectors"].entries) == ["EasyNeg.pt", "EasyNeg.pt", "easyneg_conv.safetensors"]
    assert "kohya" in groups["same-vectors"].message


def test_conflicts(lib, tree):
    lib.scan([tree])
    got = {(g.kind, g.key) for g in lib.conflicts()}
    assert ("same-trigger", "EasyNeg") in got
    assert ("case", "style") in got
    assert ("prefix", "cat") in got
    assert ("stored-name", "badhand") in got
    assert ("family-mix", "style") in got  # SD1 'Style' and SDXL 'style'
    assert ("prefix", "easyneg") in got  # 'easyneg' starts 'easyneg_conv'
    assert not any(k == "same-trigger" and key == "cat" for k, key in got)


def test_tags_follow_content_across_moves(lib, tree):
    lib.scan([tree])
    tagged = lib.tag("cat", "animal", "tiny")
    assert tagged[0].tags == ("animal", "tiny")
    assert [e.name for e in lib.search(tag="animal")] == ["cat"]
    (tree / "sdxl" / "moved").mkdir()
    shutil.move(tree / "sd1" / "cat.safetensors", tree / "sdxl" / "moved" / "cat.safetensors")
    lib.scan([tree])
    assert lib.show("cat")[0].tags == ("animal", "tiny")
    lib.tag("cat", "tiny", remove=True)
    assert lib.show("cat")[0].tags == ("animal",)
    with pytest.raises(LibraryError):
        lib.tag("cat")


def test_tags_follow_a_file_edited_in_place(lib, tree):
    lib.scan([tree])
    lib.tag("cat", "animal")
    path = tree / "sd1" / "cat.safetensors"
    old_sha = lib.show("cat")[0].sha256
    mk.kohya_file(path, mk.vectors(3, 768, seed=99))  # new content under the same path
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    lib.scan([tree])
    entry = lib.show("cat")[0]
    assert entry.sha256 != old_sha and entry.tags == ("animal",)


def test_remove_forgets_records_not_files(lib, tree):
    lib.scan([tree])
    assert lib.remove("cat_toy") == 1
    assert "cat_toy" not in {e.name for e in lib.search()}
    assert (tree / "sd1" / "cat_toy.safetensors").exists()
    (tree / "sd1" / "cat.safetensors").unlink()
    assert lib.remove(missing=True) == 1
    assert "cat" not in {e.name for e in lib.search()}


def test_export_is_a_json_manifest(lib, tree):
    lib.scan([tree])
    manifest = json.loads(json.dumps(lib.export()))
    assert manifest["embkit_library"] == schema.SCHEMA_VERSION
    assert len(manifest["entries"]) == 10 and len(manifest["errors"]) == 3
    first = manifest["entries"][0]
    assert {"name", "path", "sha256", "autov2", "slots", "metadata", "vectors_hash"} <= set(first)


def test_parallel_scan_matches_serial_scan(tmp_path):
    from safetensors.numpy import save_file

    root = tmp_path / "many"
    root.mkdir()
    for i in range(150):
        save_file({"emb_params": mk.vectors(1 + i % 4, 768, seed=i)}, str(root / f"e{i:03d}.safetensors"))
    strip = lambda m: [{k: v for k, v in e.items() if k not in ("id", "scanned_at")} for e in m["entries"]]  # noqa: E731
    with embkit.Library(tmp_path / "serial.sqlite") as one, embkit.Library(tmp_path / "parallel.sqlite") as two:
        one.scan([root], jobs=1)
        r = two.scan([root], jobs=2)
        assert r.added == 150
        assert strip(one.export()) == strip(two.export())


def test_schema_migrates_an_old_database(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = schema.connect(path, upto=1)
    assert schema.version(conn) == 1
    conn.execute("INSERT INTO files (path, size, mtime_ns, scanned_at, error_code, error) VALUES ('/x.pt', 1, 1, 0, 'broken-file', 'x')")
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'tags'").fetchall()
    conn.close()
    with embkit.Library(path) as lib:
        assert lib.schema_version == schema.SCHEMA_VERSION == 4  # 3: sidecars (issue 15), 4: previews (issue 17)
        assert [e.path for e in lib.errors()] == ["/x.pt"]
        assert lib._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_or_foreign_database_is_refused(tmp_path):
    newer = tmp_path / "newer.sqlite"
    sqlite3.connect(newer).execute("PRAGMA user_version=99").connection.close()
    with pytest.raises(LibraryError, match="newer than this embkit"):
        embkit.Library(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match="not a usable library database"):
        embkit.Library(junk)


def test_default_location_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBKIT_LIBRARY", str(tmp_path / "env" / "lib.sqlite"))
    with embkit.Library() as lib:
        assert lib.path == tmp_path / "env" / "lib.sqlite" and lib.path.exists()
    monkeypatch.delenv("EMBKIT_LIBRARY")
    import platformdirs

    assert schema.default_path() == Path(platformdirs.user_data_dir("embkit")) / "library.sqlite"


def test_corpus_files(lib, corpus):
    lib.scan([corpus])
    by_name = {e.name: e for e in lib.search()}
    assert set(by_name) == {"bad-hands-5", "EasyNegative", "<styled-image>", "<detail-schemas>", "rick"}
    assert by_name["bad-hands-5"].sha256 == "aa7651be154c46a2f4868788ef84a92b3083b0c0c5c46f5012a56698bfd2a1ba"
    assert (by_name["EasyNegative"].format, by_name["EasyNegative"].num_vectors) == ("kohya", 8)
    assert by_name["rick"].format == "a1111-image" and by_name["rick"].num_vectors == 8
    assert by_name["<styled-image>"].slots[0].vectors == 1
    assert by_name["<detail-schemas>"].autov3 is not None and not lib.errors()


def test_scanning_and_querying_never_import_torch(tmp_path, tree):
    code = (
        "import sys, embkit\n"
        f"lib = embkit.Library({str(tmp_path / 'torchfree.sqlite')!r})\n"
        f"lib.scan([{str(tree)!r}], jobs=1)\n"
        "lib.search(); lib.dupes(); lib.conflicts(); lib.export(); lib.show('cat')\n"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_missing_root_is_an_error_not_a_purge(lib, tree):
    lib.scan([tree])
    with pytest.raises(LibraryError, match="no such file or folder"):
        lib.scan([tree / "typo"])
    assert len(lib.search()) == 10


def test_symlinked_folders_inside_are_followed_once_and_links_out_never(lib, tmp_path):
    root = tmp_path / "linked"
    (root / "real").mkdir(parents=True)
    mk.kohya_file(root / "real" / "x.safetensors", mk.vectors(1, 768, seed=1))
    (root / "real" / "loop").symlink_to(root, target_is_directory=True)  # a cycle
    report = lib.scan([root])
    assert report.seen == 1  # the link leads back to the scanned folder, so it is not entered again
    other = tmp_path / "elsewhere"
    other.mkdir()
    mk.kohya_file(other / "y.safetensors", mk.vectors(1, 768, seed=2))
    (root / "real" / "more").symlink_to(other, target_is_directory=True)
    # a link to a folder outside the scanned one is not followed (a link to /usr read 4,956 files)
    assert lib.scan([root]).seen == 1
    assert lib.scan([other]).seen == 1  # named directly, it is scanned


def test_a_scan_waits_for_another_writer_instead_of_failing(lib, tree):
    import threading

    other = sqlite3.connect(lib.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of its write batch
    committed = []
    release = threading.Timer(1.0, lambda: (committed.append(True), other.execute("COMMIT")))
    release.start()
    try:
        report = lib.scan([tree])  # would raise "database is locked" without the busy timeout
        assert committed, "the scan finished while the other writer still held the lock"
    finally:
        release.join()
        other.close()
    assert report.added == 13 and len(lib.search()) == 10


def test_pictures_without_an_embedding_are_not_reported_as_errors(lib, tmp_path):
    from PIL import Image

    root = tmp_path / "with_previews"
    root.mkdir()
    mk.kohya_file(root / "thing.safetensors", mk.vectors(1, 768, seed=1))
    Image.new("RGB", (32, 32), (1, 2, 3)).save(root / "thing.png")  # a Civitai-style preview
    mk.image_card_text_only(root / "card.png", mk.vectors(2, 768, seed=2), name="cardname")
    report = lib.scan([root])
    assert report.pictures == 1 and report.errors == []
    assert sorted(e.name for e in lib.search()) == ["cardname", "thing"]
    assert lib.errors() == []  # the same rule as the scan report
    [picture] = lib.pictures()  # still recorded, with its reason
    assert Path(picture.path).name == "thing.png" and picture.code == "broken-file"
    again = lib.scan([root])  # and not re-read next time: nothing added or updated, the picture still skipped
    assert (again.added, again.updated, again.unchanged, len(again.skipped)) == (0, 0, 2, 1)


def test_pictures_and_errors_agree_everywhere(lib, tmp_path):
    """Regression: plain pictures were counted as pictures by the scan report but listed as
    unreadable by Library.errors() (and so by `list --errors`, `check` and the export)."""
    from PIL import Image

    root = tmp_path / "mixed"
    root.mkdir()
    mk.kohya_file(root / "thing.safetensors", mk.vectors(1, 768, seed=1))
    Image.new("RGB", (16, 16)).save(root / "thing.png")
    Image.new("RGB", (16, 16)).save(root / "other.webp")
    (root / "fake.png").write_bytes(b"not a png at all")  # an image name whatever the bytes: a picture too
    (root / "broken.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    _evil_pt(root / "evil.pt")
    report = lib.scan([root])
    errors = sorted(Path(e.path).name for e in lib.errors())
    pictures = sorted(Path(e.path).name for e in lib.pictures())
    assert errors == ["broken.pt", "evil.pt"] == sorted(Path(p).name for p, _, _ in report.errors)
    assert pictures == ["fake.png", "other.webp", "thing.png"] and report.pictures == 3
    manifest = lib.export()
    assert sorted(Path(e["path"]).name for e in manifest["errors"]) == errors
    assert sorted(Path(p).name for p in manifest["pictures"]) == pictures
    again = lib.scan([root])  # pictures are recorded, so a rescan does not re-read them (nor count them as embeddings)
    assert (again.added, again.updated, again.unchanged, len(again.skipped)) == (0, 0, 3, 3)


def test_the_picture_rule_lives_in_one_place():
    from embkit.library.scan import is_picture

    assert is_picture("/x/Preview.PNG", "broken-file") and is_picture("/x/a.webp", "unknown-format")
    assert not is_picture("/x/a.png", "unsafe-file")  # a hostile image is still reported
    assert not is_picture("/x/a.png", "too-large")
    assert not is_picture("/x/a.pt", "broken-file")
    assert not is_picture("/x/a.png", None)


def test_stored_name_conflicts_only_where_a_host_uses_the_stored_name(lib, tmp_path):
    """Regression: kohya and multi files that keep a stored_name in their metadata (written by
    embkit under another file name) were reported as triggered by that name in diffusers."""
    root = tmp_path / "renamed"
    root.mkdir()
    mk.a1111_pt(root / "badhand.pt", mk.vectors(2, 768, seed=1), name="badhandv3")
    mk.a1111_pt(root / "same.pt", mk.vectors(1, 768, seed=2), name="same")
    mk.kohya_file(root / "small.safetensors", mk.vectors(1, 768, seed=3), metadata={"stored_name": "EasyNegative"})
    both = {"clip_l": mk.vectors(1, 768, seed=4), "clip_g": mk.vectors(1, 1280, seed=5)}
    mk.multi_file(root / "xl.safetensors", both, metadata={"stored_name": "EasyNegativeXL"})
    lib.scan([root])
    # the column still holds each stored name: `show` prints it
    assert (_one(lib, "small").format, _one(lib, "small").stored_name) == ("kohya", "EasyNegative")
    assert (_one(lib, "xl").format, _one(lib, "xl").stored_name) == ("multi", "EasyNegativeXL")
    [group] = [g for g in lib.conflicts() if g.kind == "stored-name"]
    assert group.key == "badhand" and [e.format for e in group.entries] == ["a1111"]
    assert "by A1111 but as 'badhandv3' by diffusers" in group.message



def _entry(name: str, i: int, family: str = "sd1", stored: str | None = None):
    from embkit.library import Entry

    return Entry(
        id=i, name=name, stored_name=stored, member="", path=f"/x/{i}.pt", format="kohya", container="pickle", family=family,
        families=(family,), num_vectors=1, slots=(), size=1, mtime_ns=1, sha256=f"{i:064x}", autov2="", autov3=None,
        vectors_hash=f"{i:064x}", metadata={}, warnings=(), scanned_at=0.0,
    )


def test_prefix_conflicts_match_a_brute_force_check():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from embkit.library.conflicts import conflicts

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(alphabet="abAB_", min_size=1, max_size=4), min_size=1, max_size=12))
    def check(names):
        # the embkit host triggers by these names (A1111 would use the file stems "/x/0.pt" …, and
        # digits are single CLIP tokens, so "1" starts "10" there: a real conflict, not this test's)
        groups = conflicts([_entry(n, i) for i, n in enumerate(names)], hosts=["embkit"])
        got = {(g.key, e.name.lower()) for g in groups if g.kind == "prefix" for e in g.entries if e.name.lower() != g.key}
        lows = {n.lower() for n in names}
        want = {(a, b) for a in lows for b in lows if a != b and b.startswith(a)}
        assert got == want
        cases = {g.key for g in groups if g.kind == "case"}
        assert cases == {low for low in lows if len({n for n in names if n.lower() == low}) > 1}

    check()

"""Never leave the user's folders, never hang on a file-system trick.

Links out of a walked tree (to a secret, to /usr), FIFOs named like embeddings, a tree 1,100
folders deep, an output folder with a linked sub-folder, a user's folder named like a file a
concept folder owns, concept-folder text files linking to secrets: each command (inspect, scan,
verify, convert, library scan, ingest, pull's walk) is run on them, and the test asserts that nothing
outside the tree was read or written and that every command ended.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import embkit
from embkit.errors import TargetExistsError
from embkit.scan import scan_paths

import makers
from conftest import run_embkit

SECRET = "SECRET-TOKEN-9f3c"


def _embedding(path: Path, seed: int = 1) -> Path:
    return makers.kohya_file(path, makers.vectors(1, 768, seed=seed))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the one walked: an embedding and a secret that must never be read."""
    out = tmp_path / "outside"
    out.mkdir()
    _embedding(out / "outside_embedding.safetensors", seed=9)
    (out / "secret.txt").write_text(SECRET)
    return out


@pytest.fixture
def tree(tmp_path: Path, outside: Path) -> Path:
    """A user's folder: one embedding, a link to a folder outside, a link to a file outside, a
    FIFO named like an embedding, and a link to a file inside (followed)."""
    root = tmp_path / "embeddings"
    root.mkdir()
    _embedding(root / "mine.safetensors")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "linked_out.safetensors").symlink_to(outside / "outside_embedding.safetensors")
    (root / "sub").mkdir()
    (root / "sub" / "alias.safetensors").symlink_to(root / "mine.safetensors")
    os.mkfifo(root / "pipe.pt")
    return root


def _names(paths) -> set[str]:
    return {Path(p).name for p in paths}


def test_walk_takes_regular_files_inside_the_tree_only(tree: Path):
    from embkit.walk import walk

    found = list(walk([tree]))
    assert _names(e.path for e in found) == {"mine.safetensors", "alias.safetensors", "pipe.pt"} - {"pipe.pt"}
    assert all(e.walked for e in found)
    assert [e.rel for e in found] == ["mine.safetensors", "sub/alias.safetensors"]  # sorted, folders after files
    assert _names(e.path for e in walk([tree], links="never")) == {"mine.safetensors"}


@pytest.mark.parametrize("command", [["inspect", "--json"], ["scan", "--json"], ["verify", "--json", "-m", "sd1"]])
def test_commands_stay_in_the_tree_and_skip_fifos(tree: Path, command: list[str]):
    proc = run_embkit(*command, str(tree), timeout=60)  # a FIFO opened would block until the timeout
    entries = json.loads(proc.stdout)
    listed = json.dumps(entries)
    assert "outside_embedding" not in listed and "mine.safetensors" in listed and SECRET not in listed
    # what the walk passes by is listed as skipped, with the reason, so nothing vanishes unsaid
    passed = {Path(o["path"]).name: o.get("skipped") or o.get("reason") for o in _objects(entries) if Path(str(o.get("path"))).name in PASSED}
    assert set(passed) == set(PASSED), passed
    for name, why in PASSED.items():
        assert why in passed[name], (name, passed[name])


#: what the walk of ``tree`` passes by, and a word of the reason it gives
PASSED = {"elsewhere": "link out of the folder", "linked_out.safetensors": "link out of the folder", "pipe.pt": "FIFO"}


def _objects(doc):
    """Every JSON object in ``doc`` that has a path."""
    if isinstance(doc, dict):
        if "path" in doc:
            yield doc
        for value in doc.values():
            yield from _objects(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _objects(value)


def test_ingest_lists_what_the_walk_passes_by_and_reads_nothing_outside(tree: Path, tmp_path: Path, outside: Path):
    # ingest's manifest accounts for every upload named like an embedding (a skipped row with the
    # walk's reason, never opened); the rest is listed as skipped, as every other walk lists it
    from embkit.ingest.manifest import read_manifest

    out = tmp_path / "ingested"
    proc = run_embkit("ingest", str(tree), "-o", str(out), "--json", "-j", "1", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]  # what the walk passes by is no failure
    summary, rows = json.loads(proc.stdout), read_manifest(str(out))
    why = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "skipped"}
    why.update({Path(o["path"]).name: o["skipped"] for o in summary["ignored"]})
    assert set(why) == set(PASSED), why
    for name, word in PASSED.items():
        assert word in why[name], (name, why[name])
    assert {Path(r["path"]).name for r in rows if r["status"] == "ok"} == {"mine.safetensors", "alias.safetensors"}
    assert SECRET not in proc.stdout + (out / "manifest.jsonl").read_text()


def test_scan_api_does_not_open_a_fifo(tree: Path):
    results = list(scan_paths([tree]))
    assert _names(r.path for r in results if r.skipped is None) == {"mine.safetensors", "alias.safetensors"}
    assert {Path(r.path).name: r.verdict for r in results if r.skipped is not None} == dict.fromkeys(PASSED, "unknown")


def test_convert_reads_only_the_tree(tree: Path, tmp_path: Path, outside: Path):
    before = sorted(p.name for p in outside.iterdir())
    out = tmp_path / "converted"
    proc = run_embkit("convert", str(tree), "-o", str(out), "--to", "kohya", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["mine.safetensors", "sub/alias.safetensors"]
    assert sorted(p.name for p in outside.iterdir()) == before


def test_library_scan_of_a_folder_linking_to_usr_reads_nothing_outside(tmp_path: Path):
    root = tmp_path / "lib-root"
    root.mkdir()
    _embedding(root / "mine.safetensors")
    (root / "usr").symlink_to("/usr", target_is_directory=True)
    os.mkfifo(root / "pipe.safetensors")
    with embkit.Library(tmp_path / "lib.sqlite") as lib:
        report = lib.scan([root], jobs=1)
    assert report.seen == 1 and report.errors == []


def _deep(root: Path, depth: int) -> Path:
    folder = root
    for _ in range(depth):  # os.makedirs recurses once per missing folder
        folder = folder / "d"
        folder.mkdir()
    return folder


def _remove_deep(root: Path) -> None:
    """Remove a deep tree bottom-up without recursion (shutil.rmtree, and so pytest's own clean-up
    of its temporary folders, recurse once per level)."""
    folders = [root]
    while True:
        subs = [p for p in folders[-1].iterdir() if p.is_dir() and not p.is_symlink()]
        if not subs:
            break
        folders.extend(subs[:1])
    for folder in reversed(folders):
        for p in folder.iterdir():
            if not p.is_dir() or p.is_symlink():
                p.unlink()
        folder.rmdir()


@pytest.mark.slow
def test_a_tree_1100_folders_deep(tmp_path: Path):
    root, out = tmp_path / "deep", tmp_path / "out"
    root.mkdir()
    try:
        bottom = _deep(root, 1100)
        _embedding(bottom / "deep.safetensors")
        for command in (["inspect", "--json"], ["scan", "--json"], ["verify", "--json", "-m", "sd1"]):
            proc = run_embkit(*command, str(root), timeout=60)
            assert "RecursionError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-500:]
            assert "deep.safetensors" in proc.stdout, command
        proc = run_embkit("convert", str(root), "-o", str(out), "--to", "kohya", "--json", timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-500:]
        from embkit.walk import walk_tree

        assert [e.rel.count("/") for e in walk_tree(str(out))] == [1100]
        from embkit.hub.download import find_embeddings

        assert [rel.count("/") for rel, _local in find_embeddings(str(root))] == [1100]
    finally:
        for folder in (root, out):
            if folder.exists():
                _remove_deep(folder)


def test_convert_does_not_write_through_a_linked_output_folder(tmp_path: Path, outside: Path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    _embedding(src / "sub" / "x.safetensors")
    _embedding(src / "top.safetensors", seed=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    before = sorted(p.name for p in outside.iterdir())
    proc = run_embkit("convert", str(src), "-o", str(out), "--to", "kohya", "--json")
    report = json.loads(proc.stdout)
    failed = [r for r in report["files"] if r["status"] == "failed"]
    assert [Path(r["input"]).name for r in failed] == ["x.safetensors"]
    assert "outside the output folder" in failed[0]["reason"]
    assert (out / "top.safetensors").is_file()
    assert sorted(p.name for p in outside.iterdir()) == before


def _users_folder_named_like_an_owned_file(concept: Path) -> Path:
    concept.mkdir()
    users = concept / "learned_embeds.bin"
    users.mkdir()
    (users / "thesis.txt").write_text("years of work")
    (concept / "token_identifier.txt").write_text("<x>")
    return users


def test_overwrite_never_empties_a_users_folder_named_learned_embeds_bin_api(tmp_path: Path):
    users = _users_folder_named_like_an_owned_file(tmp_path / "concept")
    emb = embkit.Embedding("<x>", {"clip_l": makers.vectors(1, 768)})
    with pytest.raises(TargetExistsError):
        embkit.write(emb, tmp_path / "concept", "concept-folder", overwrite=True)
    assert (users / "thesis.txt").read_text() == "years of work"


def test_overwrite_never_empties_a_users_folder_named_learned_embeds_bin_cli(tmp_path: Path):
    (tmp_path / "out").mkdir()
    users = _users_folder_named_like_an_owned_file(tmp_path / "out" / "x")
    src = _embedding(tmp_path / "x.safetensors")
    proc = run_embkit("convert", str(src), "-o", str(tmp_path / "out"), "--to", "concept-folder", "--overwrite", "--json")
    (entry,) = json.loads(proc.stdout)["files"]
    assert entry["error"]["code"] == "exists" and "learned_embeds.bin is not a file" in entry["reason"], entry
    assert (users / "thesis.txt").read_text() == "years of work"


def test_concept_folder_text_files_linking_out_are_not_read(tmp_path: Path, outside: Path):
    folder = makers.concept_folder(tmp_path / "concept", "<cat>", makers.vectors(1, 768))
    (folder / "token_identifier.txt").unlink()
    (folder / "token_identifier.txt").symlink_to(outside / "secret.txt")
    emb = embkit.read(folder)
    assert SECRET not in emb.name and SECRET not in json.dumps(dict(emb.metadata))
    inspected = run_embkit("inspect", "--json", str(folder)).stdout
    assert SECRET not in inspected
    out = tmp_path / "converted.safetensors"
    embkit.write(emb, out, "kohya")
    assert SECRET.encode() not in out.read_bytes()
    from embkit.hub.card import model_card

    # what push does with a concept folder: the card of the safetensors file it uploads
    upload = tmp_path / "upload.safetensors"
    embkit.write(emb, upload, "diffusers")
    card = model_card(embkit.read_all(upload), "upload.safetensors", upload.read_bytes(), source=str(folder))
    assert SECRET not in str(card)


def test_concept_folder_text_file_that_is_a_fifo_or_too_long(tmp_path: Path):
    folder = makers.concept_folder(tmp_path / "concept", "<cat>", makers.vectors(1, 768))
    (folder / "type_of_concept.txt").unlink()
    os.mkfifo(folder / "type_of_concept.txt")
    assert "type_of_concept" not in embkit.read(folder).metadata  # not opened: a FIFO would block
    (folder / "token_identifier.txt").write_text("x" * 5000)
    with pytest.raises(embkit.BrokenFileError, match="longer than"):
        embkit.read(folder)


def test_embeds_file_linking_out_of_a_concept_folder_is_not_read(tmp_path: Path, outside: Path):
    folder = tmp_path / "concept"
    folder.mkdir()
    (folder / "learned_embeds.safetensors").symlink_to(outside / "outside_embedding.safetensors")
    (folder / "token_identifier.txt").write_text("<x>")
    with pytest.raises(embkit.EmbkitError):
        embkit.read(folder)


def test_a_hugging_face_snapshot_is_walked_through_its_blob_links(tmp_path: Path, outside: Path):
    """The cache keeps every file of a snapshot as a link into the repo's blobs/: inside the tree."""
    from embkit.walk import walk

    repo = tmp_path / "hub" / "models--someone--emb"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    blob = _embedding(repo / "blobs" / "0123abcd.safetensors")
    (snapshot / "emb.safetensors").symlink_to(Path("../../blobs") / blob.name)
    (snapshot / "escape.safetensors").symlink_to(outside / "outside_embedding.safetensors")
    assert _names(e.path for e in walk([snapshot])) == {"emb.safetensors"}

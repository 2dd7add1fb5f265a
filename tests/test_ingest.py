"""embkit ingest on one machine: every stage on a generated upload tree (every layout, unsafe,
broken, duplicate files, links), the manifest (JSONL and Parquet), resuming after a kill, manifests
of paths, the library it fills, and the CLI. The Ray runs are in test_ingest_ray.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import embkit
from embkit.ingest import steps
from embkit.ingest.manifest import COLUMN_NAMES, COLUMNS, from_table, read_manifest
from embkit.ingest.shards import shard_files
from ingest_tree import build_tree, canary_untouched

from conftest import ROOT, run_embkit


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("ingest")
    root = base / "uploads"
    return root, build_tree(root, 40, outside=base / "outside")


@pytest.fixture(scope="module")
def run(tree, tmp_path_factory):
    root, _ = tree
    return embkit.ingest([root], tmp_path_factory.mktemp("out") / "dir", jobs=2)


def _strip(rows: list[dict], *keys: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in keys} for r in rows]


def test_every_file_becomes_one_row_with_the_status_its_content_calls_for(tree, run):
    root, expect = tree
    got = {r["path"]: r for r in run.rows}
    assert len(got) == len(run.rows) == len(expect)  # one row per file, none twice
    assert {p: r["status"] for p, r in got.items()} == expect
    assert [r["path"] for r in run.rows] == sorted(got)
    assert canary_untouched(root.parent / "outside")
    from embkit.hosts import HOST_IDS

    for row in run.rows:
        # per-host verdicts for every file read as an embedding; none for the others
        assert set(row["hosts"]) == (set(HOST_IDS) if row["status"] in ("ok", "unconverted") else set())
        if row["status"] == "unsafe":
            assert not row["converted"] and (row["scan_verdict"] == "unsafe" or row["error_code"] in ("unsafe-file", "too-large"))
        # the scan names the rules that fired exactly when its verdict is unsafe
        assert bool(row["scan_rules"]) == (row["scan_verdict"] == "unsafe")
        if row["status"] in ("ok", "unconverted"):
            assert row["scan_verdict"] == "safe" and row["embeddings"] and row["sha256"]
    unconverted = [r for r in run.rows if r["status"] == "unconverted"]
    assert unconverted and all("trigger" in r["convert_error"] for r in unconverted)
    assert run.duplicates >= 20 and run.counts["ok"] == sum(1 for s in expect.values() if s == "ok")


def test_each_file_has_the_verdicts_of_every_host_from_the_hosts_table(tree, run):
    from embkit import hosts

    rows = {r["path"]: r for r in run.rows}
    xl = next(r for p, r in sorted(rows.items()) if os.path.basename(p).startswith("xl_") and r["status"] == "ok")
    stem = Path(xl["path"]).stem
    a1111 = xl["hosts"]["a1111"]
    # an SDXL file: A1111 loads it on SDXL under its file stem, and skips it on SD1
    assert a1111["family"] == "sdxl" and a1111["loads"] and a1111["trigger"] == stem and a1111["reasons"] == []
    assert a1111["families"]["sdxl"] == "loads" and a1111["families"]["sd1"] == "skipped"
    assert xl["hosts"]["comfyui"]["trigger"] == f"embedding:{stem}"
    # the row says what embkit.hosts says of the file itself, on every family
    for host in hosts.HOST_IDS:
        for family, status in xl["hosts"][host]["families"].items():
            assert hosts.verdict(xl["path"], host, family).status == status, (host, family)
        v = hosts.verdict(xl["path"], host, "sdxl")
        assert xl["hosts"][host]["loads"] == v.loads and xl["hosts"][host]["reasons"] == list(v.reasons)
    sd1 = next(r for p, r in sorted(rows.items()) if os.path.basename(p).startswith("kohya_") and r["status"] == "ok")
    assert sd1["hosts"]["a1111"]["family"] == "sd1" and sd1["hosts"]["a1111"]["families"]["sd1"] == "loads"
    assert sd1["hosts"]["a1111"]["families"]["sdxl"] != "loads"  # a CLIP-L-only file reaches half of SDXL at most


def test_companions_are_part_of_their_file_not_uploads_of_their_own(tree, run):
    rows = {r["path"]: r for r in run.rows}
    assert not any(p.endswith(("_2.safetensors", ".preview.png")) for p in rows)
    pair = next(r for p, r in sorted(rows.items()) if "/pair_" in p and r["status"] == "ok")
    (emb,) = pair["embeddings"]
    assert [s["slot"] for s in emb["slots"]] == ["clip_l", "clip_g"] and emb["family"] == "sdxl"
    (conv,) = pair["converted"]
    back = embkit.read(Path(run.out) / conv["path"])
    assert back.slots == ("clip_l", "clip_g") and back.same_vectors(embkit.read(pair["path"]))
    assert pair["sidecar_key"] and "learned_embeds_2.safetensors" in pair["sidecar_key"]
    side = next(r for p, r in sorted(rows.items()) if "/side_" in p)
    n = int(Path(side["path"]).stem.split("_")[1])
    assert side["trained_words"] == [f"word{n}", "shiny style"] and side["base_model"] == "SD 1.5"
    assert json.loads(side["sidecars"])["civitai_info"]["modelId"] == 98765
    (picture,) = side["sidecar_previews"]
    assert picture["path"].endswith(".preview.png") and picture["format"] == "PNG" and picture["embkit"] is False


def test_converted_files_are_loss_free_and_named_by_their_hash(run):
    checked = 0
    for row in run.rows:
        if row["status"] != "ok":
            continue
        sources = {(e.source.member or "", e.name): e for e in embkit.read_all(row["path"])}
        assert len(row["converted"]) == len(sources)
        for conv in row["converted"]:
            obj = Path(run.out) / conv["path"]
            data = obj.read_bytes()
            assert hashlib.sha256(data).hexdigest() == conv["sha256"] == obj.stem and conv["path"].startswith(f"objects/{conv['sha256'][:2]}/")
            src = sources[(conv["member"], conv["name"])]
            back = embkit.read(obj)
            assert back.same_vectors(src) and back.dtypes == src.dtypes
            checked += 1
    assert checked > 40


def test_the_converted_file_keeps_the_trigger_under_its_published_name(run, tmp_path):
    row = next(r for r in run.rows if r["format"] == "diffusers" and r["status"] == "ok")
    conv = row["converted"][0]
    published = tmp_path / conv["filename"]
    shutil.copyfile(Path(run.out) / conv["path"], published)
    assert embkit.read(published).name == conv["name"] == row["embeddings"][0]["name"]


def test_the_record_is_the_one_library_scan_makes(tree, run, tmp_path):
    root, _ = tree
    scanned, ingested = tmp_path / "scanned.sqlite", tmp_path / "ingested.sqlite"
    with embkit.Library(scanned) as lib:
        lib.scan([root], jobs=1)
    again = embkit.ingest([root], run.out, library=ingested)  # every file reused: the library is filled from the rows
    assert again.reused == sum(1 for r in run.rows if r["sha256"]) and again.library["added"] > 100

    def tables(db: Path) -> dict:
        import sqlite3

        con = sqlite3.connect(db)
        files = {r[0]: r[1:] for r in con.execute(
            "SELECT path, size, mtime_ns, sha256, autov2, autov3, format, container, metadata, error_code, error, sidecars, base_model, sidecar_key FROM files")}
        embs = sorted(con.execute("SELECT f.path, e.member, e.name, e.stored_name, e.family, e.families, e.num_vectors, e.vectors_hash, e.metadata, e.warnings FROM embeddings e JOIN files f ON f.id = e.file_id"))
        slots = sorted(con.execute("SELECT f.path, e.member, s.slot, s.vectors, s.width, s.dtype, s.vectors_hash, s.norm_min, s.norm_mean, s.norm_max FROM slots s JOIN embeddings e ON e.id = s.embedding_id JOIN files f ON f.id = e.file_id"))
        words = sorted(con.execute("SELECT f.path, w.word FROM trained_words w JOIN files f ON f.id = w.file_id"))
        previews = sorted(con.execute("SELECT f.path, p.member, p.path, p.size, p.mtime_ns, p.format, p.width, p.height, p.parameters, p.embkit FROM previews p JOIN files f ON f.id = p.file_id"))
        con.close()
        return {"files": files, "embeddings": embs, "slots": slots, "trained_words": words, "previews": previews}

    a, b = tables(scanned), tables(ingested)
    # the same walk: the same files (the link out of the tree and its companions in neither), and
    # the same record of each, in every table
    assert len(a["files"]) > 100 and a["files"] == b["files"]
    for table in ("embeddings", "slots", "trained_words", "previews"):
        assert a[table] == b[table], table
    assert a["trained_words"] and a["previews"]  # the tree has sidecars


def test_jsonl_and_parquet_hold_the_same_rows_in_the_documented_schema(run):
    import pyarrow.parquet as pq

    table = pq.read_table(Path(run.out) / "manifest.parquet")
    assert tuple(table.schema.names) == COLUMN_NAMES
    assert [f.nullable for f in table.schema] == [c[2] for c in COLUMNS]
    assert from_table(table) == read_manifest(run.out) == run.rows
    docs = (ROOT / "docs" / "ingest.md").read_text()
    for name, typ, _ in COLUMNS:
        assert f"`{name}`" in docs, f"docs/ingest.md does not describe column {name}"
    from embkit.ingest.manifest import CONVERTED_FIELDS, EMBEDDING_FIELDS, HOST_FIELDS, PREVIEW_FIELDS, SIDECAR_PREVIEW_FIELDS, SLOT_FIELDS

    for group in (CONVERTED_FIELDS, EMBEDDING_FIELDS, HOST_FIELDS, PREVIEW_FIELDS, SIDECAR_PREVIEW_FIELDS, SLOT_FIELDS):
        for name, _ in group:
            assert f"`{name}`" in docs, f"docs/ingest.md does not describe field {name}"


def test_links_never_lead_out(tree, run):
    root, _ = tree
    outside = root.parent / "outside"
    rows = {r["path"]: r for r in run.rows}
    leak = rows[str(root / "uploads" / "leak.safetensors")]
    assert leak["status"] == "skipped" and leak["error_code"] == "link-outside" and leak["sha256"] is None
    secret = hashlib.sha256((outside / "secret.safetensors").read_bytes()).hexdigest()
    assert secret not in {r["sha256"] for r in run.rows}
    assert "link out of the folder" in leak["error"]  # the walk's reason (embkit.walk.Entry.passed)
    assert not any("linked_folder" in p for p in rows) and run.links_skipped == 1
    # the link to a folder outside is listed with the files skipped, as every walk lists it
    ignored = dict(run.ignored)
    assert "link out of the folder" in ignored[str(root / "uploads" / "linked_folder")]
    assert rows[str(root / "uploads" / "alias.safetensors")]["status"] == "ok"


def test_an_output_folder_overlapping_what_is_read_is_refused_before_anything_is_read(tree, tmp_path):
    root, _ = tree
    src = tmp_path / "src"
    shutil.copytree(root / "set00", src)
    # DIR inside SOURCE, SOURCE inside DIR, DIR the SOURCE itself: refused, nothing made
    for sources, out in (([src], src / "ingested"), ([src], src), ([src], tmp_path)):
        before = sorted(p.name for p in src.rglob("*"))
        with pytest.raises(embkit.WriteError, match="overlaps the input folder"):
            embkit.ingest(sources, out, jobs=1)
        assert sorted(p.name for p in src.rglob("*")) == before and not (src / "ingested").exists()
    # a folder a manifest lists is checked too, before DIR is made
    listing = tmp_path / "list.txt"
    listing.write_text(f"{src}\n")
    with pytest.raises(embkit.WriteError, match="overlaps the input folder"):
        embkit.ingest([listing], src / "out", jobs=1)
    assert not (src / "out").exists()
    # a SOURCE file inside DIR (its own manifest given back as a list of paths) would be replaced
    out = tmp_path / "out"
    first = embkit.ingest([src], out, jobs=1)
    (out / "list.txt").write_text(f"{src}\n")
    for named in (out / "list.txt", out / "manifest.jsonl"):
        kept = named.read_bytes()
        with pytest.raises(embkit.WriteError, match="holds the input file"):
            embkit.ingest([named], out, jobs=1)
        assert named.read_bytes() == kept
    assert read_manifest(out) == first.rows


def test_the_folder_rule_a_file_that_is_no_embedding_is_skipped_in_a_folder_and_broken_when_named(tree, run, tmp_path):
    root, _ = tree
    rows = {r["path"]: r for r in run.rows}
    photo, weights = root / "broken" / "photo_0000.png", root / "broken" / "weights_0000.safetensors"
    for path in (photo, weights):
        row = rows[str(path)]
        # read (hashed, scanned, recorded with its error), then skipped as no embedding, with the reason
        assert row["status"] == "skipped" and row["sha256"] and row["error_code"] in ("broken-file", "unknown-format")
    ignored = dict(run.ignored)
    assert ignored[str(photo)] == "a picture without an embedding card" and ignored[str(weights)].startswith("not an embedding")
    # the companions and sidecars are listed with their reason too (their file's row holds them)
    side = next(p for p in rows if "/side_" in p)
    assert ignored[side[: -len(".safetensors")] + ".preview.png"] == "a preview picture"
    assert ignored[side[: -len(".safetensors")] + ".civitai.info"] == "a sidecar (Civitai Helper's model information)"
    # named (on the command line, or in a manifest of paths), a file is always read: an error
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photo}\n")
    for sources in ([photo], [listing]):
        named = embkit.ingest(sources, tmp_path / f"out{len(list(tmp_path.iterdir()))}", jobs=1)
        assert [r["status"] for r in named.rows] == ["broken"] and named.ignored == [] and named.exit_code == 3
    assert run.exit_code == 5  # the tree holds unsafe files: 5, whatever else failed


def test_pipes_and_other_non_files_are_never_opened(tmp_path):
    fifo = tmp_path / "src" / "pipe.pt"
    fifo.parent.mkdir()
    os.mkfifo(fifo)  # opening it for reading would block forever
    listing = tmp_path / "list.txt"
    listing.write_text(f"{fifo}\n")
    # in a folder the walk passes it by (the one walk: regular files only) and says why ...
    walked = embkit.ingest([fifo.parent], tmp_path / "out-folder", jobs=1)
    (row,) = walked.rows
    assert row["status"] == "skipped" and row["error_code"] == "not-a-file" and "FIFO" in row["error"]
    assert walked.exit_code == 4  # no embedding found; the pipe passed by is no failure
    # ... named in a list of paths, it is a row that says why it was not read
    (row,) = embkit.ingest([listing], tmp_path / "out-list", jobs=1).rows
    assert row["status"] == "skipped" and row["error_code"] == "not-a-file"
    # a file swapped for a pipe after it was found is refused by the read step itself
    data, fields = steps.read_step({"path": str(fifo), "open": str(fifo), "skip_code": None})
    assert data is None and fields["error_code"] == "not-a-file"


def test_a_manifest_of_paths_gives_the_same_rows_as_the_folder(tree, run, tmp_path):
    root, _ = tree
    import pyarrow as pa
    import pyarrow.parquet as pq

    picked = [r for r in run.rows if r["status"] != "skipped"][::7]
    rel = [os.path.relpath(r["path"], tmp_path) for r in picked]
    (tmp_path / "list.txt").write_text("# uploads of the day\n" + "\n".join(rel) + "\n\n")
    (tmp_path / "list.jsonl").write_text("".join(json.dumps({"path": r["path"], "user": "x"}) + "\n" for r in picked))
    pq.write_table(pa.table({"path": [r["path"] for r in picked]}), tmp_path / "list.parquet")
    want = _strip(picked, "source")
    for name in ("list.txt", "list.jsonl", "list.parquet"):
        got = embkit.ingest([tmp_path / name], tmp_path / f"out-{name}", jobs=1)
        assert _strip(got.rows, "source") == want, name
        assert {r["source"] for r in got.rows} == {str(tmp_path / name)}
    # a listed link is not followed: a manifest names files, not what links point to
    (tmp_path / "links.txt").write_text(str(root / "uploads" / "alias.safetensors") + "\n")
    (row,) = embkit.ingest([tmp_path / "links.txt"], tmp_path / "out-links", jobs=1).rows
    assert row["status"] == "skipped" and row["error_code"] == "link"


def test_a_rerun_skips_what_is_done_and_notices_changes(tree, tmp_path):
    root, _ = tree
    src = tmp_path / "src"
    shutil.copytree(root / "set01", src, symlinks=True)
    out = tmp_path / "out"
    first = embkit.ingest([src], out, jobs=1)
    changed = next(r for r in first.rows if r["status"] == "ok" and r["path"].endswith(".safetensors"))
    import makers

    makers.kohya_file(Path(changed["path"]), makers.vectors(3, 768, seed=12345))
    gone = next(r for r in first.rows if r["path"] != changed["path"] and r["status"] == "ok")
    os.remove(gone["path"])
    second = embkit.ingest([src], out, jobs=1)
    rows = {r["path"]: r for r in second.rows}
    assert gone["path"] not in rows and len(rows) == first.files - 1
    assert rows[changed["path"]]["sha256"] != changed["sha256"] and rows[changed["path"]]["status"] == "ok"
    assert second.reused == sum(1 for r in first.rows if r["sha256"]) - 2
    unchanged = [r for r in first.rows if r["path"] not in (changed["path"], gone["path"])]
    assert [rows[r["path"]] for r in unchanged] == unchanged
    assert len(shard_files(str(out))) == 1  # compacted
    # a converted file deleted from DIR is made again; its row stays the same
    obj = out / unchanged[0]["converted"][0]["path"]
    obj.unlink()
    third = embkit.ingest([src], out, jobs=1)
    assert obj.exists() and third.rows == second.rows and third.reused == second.reused + 1  # + the changed file


def test_a_killed_run_resumes_with_no_row_missing_or_twice(tree, run, tmp_path):
    root, expect = tree
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "embkit", "ingest", str(root), "-o", str(out), "-j", "1", "--batch-size", "1", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(shard_files(str(out))) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "manifest.jsonl").exists()
    committed = sum(len(open(f).readlines()) for f in shard_files(str(out)))
    assert committed >= 10
    resumed = embkit.ingest([root], out, jobs=2)
    assert resumed.reused >= committed
    assert resumed.rows == run.rows  # every file once, as a clean run has it
    assert read_manifest(out) == run.rows


def test_the_cli_reports_and_prints_json_and_exits_by_the_walk_rule(tree, run, tmp_path):
    root, _ = tree
    done = run_embkit("ingest", str(root / "broken"), str(root / "uploads" / "evil"), "-o", str(tmp_path / "o"), "--json")
    assert done.returncode == 5, done.stderr  # unsafe files: 5, whatever else failed
    doc = json.loads(done.stdout)
    assert doc["files"] == doc["counts"]["broken"] + doc["counts"]["unsafe"] + doc["counts"]["skipped"] and doc["counts"]["unsafe"] > 30
    assert doc["exit_code"] == 5 and set(doc["manifest"]) == {"jsonl", "parquet"}
    assert {e["skipped"] for e in doc["ignored"]} >= {"a picture without an embedding card"}
    assert all(set(e) == {"path", "skipped"} for e in doc["ignored"])
    # damaged files only: their own exit status (3); the photos and weights beside them are skipped
    text = run_embkit("ingest", str(root / "broken"), "-o", str(tmp_path / "o2"))
    assert text.returncode == 3, text.stderr
    assert "broken" in text.stdout and "manifest (jsonl)" in text.stdout and "8 files that are no embedding" in text.stdout
    assert "photo_0000.png" not in text.stdout  # counted, not listed, without -v
    verbose = run_embkit("ingest", str(root / "broken"), "-o", str(tmp_path / "o2"), "-v")
    assert verbose.returncode == 3 and "photo_0000.png: a picture without an embedding card" in " ".join(verbose.stdout.split())
    quiet = run_embkit("ingest", str(root / "broken"), "-o", str(tmp_path / "o2"), "-q", env={"COLUMNS": "500"})  # no cell wrapped
    assert quiet.returncode == 3 and "manifest (jsonl)" not in quiet.stdout and "photo_0000" not in quiet.stdout
    assert "truncated_0000.pt" in quiet.stdout  # the failures are what -q prints
    # nothing but files that are no embedding: 4, as every walk
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(root / "broken" / "photo_0000.png", photos / "photo.png")
    (photos / "notes.txt").write_text("x")
    none = run_embkit("ingest", str(photos), "-o", str(tmp_path / "o5"))
    assert none.returncode == 4 and "no embedding files found" in none.stderr
    assert run_embkit("ingest", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o3")).returncode == 1
    assert run_embkit("ingest", str(root / "broken"), "-o", str(tmp_path / "o4"), "--seed", "3").returncode == 2
    assert run_embkit("ingest", str(root / "broken")).returncode == 2  # -o is required
    assert run_embkit("ingest", str(root / "broken"), "-o", "-").returncode == 2
    assert run_embkit("ingest", "-", "-o", str(tmp_path / "o6")).returncode == 2


def test_out_is_the_old_spelling_of_output(tree, tmp_path):
    root, _ = tree
    done = run_embkit("ingest", str(root / "set02"), "--out", str(tmp_path / "o"), "--json")
    assert done.returncode == 0, done.stderr
    assert "--out is now --output" in " ".join(done.stderr.split()) and json.loads(done.stdout)["files"] > 0
    assert (tmp_path / "o" / "manifest.jsonl").is_file()


def _blocked(tmp_path: Path, module: str) -> dict:
    """An environment in which ``import module`` fails as if it were not installed."""
    block = tmp_path / f"block-{module}"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        f"    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r} or name.startswith({module + '.'!r}):\n"
        f"            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return {"PYTHONPATH": os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")])}


def test_ray_missing_is_a_missing_dependency_with_the_pip_line(tree, tmp_path):
    root, _ = tree
    done = run_embkit("ingest", str(root / "broken"), "-o", str(tmp_path / "o"), "--ray", "auto", "--json", env=_blocked(tmp_path, "ray"))
    assert done.returncode == 11, done.stderr
    assert "pip install 'embkit-ti[ray]'" in " ".join(done.stderr.split())
    assert json.loads(done.stdout)["error"]["code"] == "missing-dependency"


def test_without_pyarrow_the_manifest_is_jsonl_only(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "o"
    done = run_embkit("ingest", str(root / "set02"), "-o", str(out), "--json", env=_blocked(tmp_path, "pyarrow"))
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["manifest"]) == {"jsonl"}
    assert (out / "manifest.jsonl").exists() and not (out / "manifest.parquet").exists()
    with_arrow = embkit.ingest([root / "set02"], tmp_path / "o2", jobs=1)
    assert read_manifest(out) == with_arrow.rows


def test_the_python_api_is_embkit_ingest():
    import embkit.ingest.shards  # noqa: F401  binding a submodule leaves embkit.ingest callable

    assert callable(embkit.ingest) and embkit.ingest.ingest.__name__ == "ingest"
    assert "ingest" in dir(embkit) and "ingest" in embkit.__all__


def test_each_stage_is_one_function(tree, tmp_path):
    root, _ = tree
    path = next(p for p, s in tree[1].items() if s == "ok" and p.endswith(".pt") and "a1111" in p)
    item = {"path": path, "source": str(root), "open": path, "skip_code": None, "size": 0, "mtime_ns": 0}
    data, fields = steps.read_step(item)
    assert data == Path(path).read_bytes() and fields["size"] == len(data)
    scanned = steps.scan_step(data, path)
    assert scanned["scan_verdict"] == "safe" and scanned["scan_rules"] == [] and "torch._utils._rebuild_tensor_v2" in scanned["scan_globals"]
    record = steps.record_step(path, len(data), 0, data)
    assert record["format"] == "a1111" and record["sha256"] == hashlib.sha256(data).hexdigest()
    loaded, why = steps.open_step(path, data)
    assert why is None and loaded.data == data
    converted, files = steps.convert_step(loaded, str(tmp_path))
    assert converted["convert_error"] is None and [f for f, _ in files] == [str(tmp_path / converted["converted"][0]["path"])]
    verdicts = steps.hosts_step(steps.host_facts(loaded, data))
    # torch.save of torch 2.13 writes zip members A1111's safe loader refuses; Forge loads it plainly
    a1111, forge = verdicts["a1111"], verdicts["forge"]
    assert a1111["trigger"] == forge["trigger"] == Path(path).stem and a1111["family"] == "sd1"
    assert not a1111["loads"] and ".format_version" in a1111["reasons"][0] and forge["loads"] and forge["families"]["sd1"] == "loads"
    assert not list(tmp_path.iterdir())  # the stages write nothing: the batch commits


@pytest.mark.slow
def test_previews_are_rendered_once_and_kept(tree, tmp_path):
    root, _ = tree
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted((root / "set03").glob("*.safetensors"))[:3]:
        shutil.copyfile(p, src / p.name)
    first = embkit.ingest([src], tmp_path / "out", previews=True, jobs=1)
    made = [p for r in first.rows for p in r["previews"]]
    assert made and all(p["path"] for p in made) and first.previews == len(made)
    from PIL import Image

    for p in made:
        png = tmp_path / "out" / p["path"]
        assert hashlib.sha256(png.read_bytes()).hexdigest() == p["sha256"]
        # the trigger of the published file (<name>.safetensors), not of the object named by its hash
        assert p["trigger"] == p["name"] and p["negative"] is False
        with Image.open(png) as im:
            assert np.asarray(im).shape == (64, 64, 3) and f"a photo of {p['name']}" in im.info["parameters"]
    stamps = {p["path"]: (tmp_path / "out" / p["path"]).stat().st_mtime_ns for p in made}
    again = embkit.ingest([src], tmp_path / "out", previews=True, jobs=1)
    assert again.rows == first.rows and again.reused == len(first.rows)
    assert {p: (tmp_path / "out" / p).stat().st_mtime_ns for p in stamps} == stamps


def test_preview_actors_hold_a_gpu_by_default_only_where_the_cluster_has_one():
    """``--gpus-per-actor`` unset: one GPU each on a GPU cluster (unless --device cpu), none on a
    CPU cluster; a number given is used as it is."""
    from embkit.ingest.ray_run import actor_gpus

    assert actor_gpus(None, "auto", {"CPU": 16.0, "GPU": 8.0}) == 1.0
    assert actor_gpus(None, "cuda", {"CPU": 16.0, "GPU": 1.0}) == 1.0
    assert actor_gpus(None, "cpu", {"CPU": 16.0, "GPU": 8.0}) == 0.0
    assert actor_gpus(None, "auto", {"CPU": 16.0}) == 0.0
    assert actor_gpus(0.5, "auto", {"CPU": 16.0}) == 0.5 and actor_gpus(0, "auto", {"GPU": 8.0}) == 0.0

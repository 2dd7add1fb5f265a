"""Sidecars and SDXL pairs in the library (real SQLite), in convert and in pull (the local fake Hub)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

import embkit
import makers
from conftest import run_embkit
from embkit.library import schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import HubServer  # noqa: E402


def civitai(folder: Path, stem: str, words: list[str], base: str) -> None:
    makers.civitai_info(folder / f"{stem}.civitai.info", makers.civitai_version(words, base=base))


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "embeddings"
    root.mkdir()
    makers.kohya_file(root / "alpha.safetensors", makers.vectors(1, 768, 1))
    civitai(root, "alpha", ["alphaword", "shiny style"], "SD 1.5")
    makers.png_picture(root / "alpha.preview.png")
    makers.a1111_pt(root / "beta.pt", makers.vectors(2, 768, 2))
    makers.lora_manager_metadata(root / "beta.metadata.json", {"base_model": "SDXL 1.0", "trainedWords": ["betaword"]})
    makers.a1111_pt(root / "gamma.pt", makers.vectors(2, 768, 3))  # no sidecars
    makers.diffusers_sdxl_pair(root / "xl", "<xl>", makers.vectors(1, 768, 4), makers.vectors(1, 1280, 5))
    return root


def names(entries) -> list[str]:
    return sorted(e.name for e in entries)


def test_library_stores_and_searches_sidecars(folder, tmp_path):
    with embkit.Library(tmp_path / "lib.sqlite") as lib:
        report = lib.scan([folder], jobs=1)
        assert report.errors == [] and report.pictures == 0  # the preview is a sidecar, not a picture to record
        entries = {e.name: e for e in lib.search()}
        assert set(entries) == {"alpha", "beta", "gamma", "<xl>"}  # the pair once, its _2 file not on its own
        alpha = entries["alpha"]
        assert alpha.trained_words == ("alphaword", "shiny style") and alpha.base_model == "SD 1.5"
        assert alpha.sidecars["civitai_info"]["modelId"] == 98765 and "preview" not in alpha.sidecars  # recorded once, in the previews table
        assert alpha.preview.path.endswith("alpha.preview.png") and alpha.preview.format == "PNG"
        assert entries["beta"].base_model == "SDXL 1.0" and entries["beta"].trained_words == ("betaword",)
        assert entries["gamma"].sidecars == {} and entries["gamma"].trained_words == ()
        assert entries["<xl>"].family == "sdxl"
        assert names(lib.search(pattern="*shiny*")) == ["alpha"]  # a trained word
        assert names(lib.search(pattern="*word")) == ["alpha", "beta"]  # "alphaword", "betaword": no name ends so
        assert names(lib.search(pattern="gam*")) == ["gamma"]  # and still by name
        assert names(lib.search(word="betaword")) == ["beta"]
        assert names(lib.search(base_model="sdxl*")) == ["beta"]
        assert names(lib.search(base_model="SD 1.5")) == ["alpha"]
        assert entries["alpha"].to_dict()["trained_words"] == ["alphaword", "shiny style"]
        rows = lib._conn.execute("SELECT f.path, w.word FROM trained_words w JOIN files f ON f.id = w.file_id ORDER BY w.word").fetchall()
        assert [w for _p, w in rows] == ["alphaword", "betaword", "shiny style"]


def test_library_cli_search_and_list_by_base_model(folder, tmp_path):
    db = str(tmp_path / "cli.sqlite")
    assert run_embkit("library", "--db", db, "scan", str(folder), "--quiet").returncode == 0
    found = json.loads(run_embkit("library", "--db", db, "search", "shiny", "--json").stdout)
    assert [e["name"] for e in found] == ["alpha"]
    listed = json.loads(run_embkit("library", "--db", db, "list", "--base-model", "SDXL*", "--json").stdout)
    assert [e["name"] for e in listed] == ["beta"] and listed[0]["base_model"] == "SDXL 1.0"
    shown = run_embkit("library", "--db", db, "show", "alpha").stdout
    assert "alphaword, shiny style" in shown and "SD 1.5" in shown


def test_rescan_rereads_a_file_whose_sidecars_changed(folder, tmp_path):
    with embkit.Library(tmp_path / "lib.sqlite") as lib:
        lib.scan([folder], jobs=1)
        again = lib.scan([folder], jobs=1)
        assert again.updated == 0 and again.unchanged == 4
        civitai(folder, "gamma", ["gammaword"], "Pony")  # the embedding itself is unchanged
        third = lib.scan([folder], jobs=1)
        assert third.updated == 1
        assert lib.show("gamma")[0].base_model == "Pony" and lib.search(word="gammaword")
        os.remove(folder / "gamma.civitai.info")
        lib.scan([folder], jobs=1)
        assert lib.show("gamma")[0].base_model is None and not lib.search(word="gammaword")


def test_a_version_2_database_keeps_working_and_learns_sidecars(folder, tmp_path):
    path = tmp_path / "old.sqlite"
    conn = schema.connect(path, upto=2)
    conn.close()
    with embkit.Library(path) as lib:  # what the old embkit would have: files scanned without sidecars
        lib.scan([folder], jobs=1)
    conn = sqlite3.connect(path)  # forget the sidecars as a version-2 database never had them
    conn.execute("UPDATE files SET sidecars = NULL, base_model = NULL, sidecar_key = NULL")
    conn.execute("DELETE FROM trained_words")
    conn.commit()
    conn.close()
    with embkit.Library(path) as lib:
        assert lib.schema_version == schema.SCHEMA_VERSION
        assert lib.show("gamma")[0].sidecars == {}
        rescan = lib.scan([folder], jobs=1)
        assert rescan.updated == 3 and rescan.unchanged == 1  # the files with sidecars (and the pair) are read again
        assert lib.show("alpha")[0].base_model == "SD 1.5"


def test_convert_carries_sidecars_renamed_to_the_output(folder, tmp_path):
    out = tmp_path / "out"
    proc = run_embkit("convert", str(folder), "-o", str(out), "--to", "multi", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == sorted([
        "alpha.safetensors", "alpha.civitai.info", "alpha.preview.png",
        "beta.safetensors", "beta.metadata.json", "gamma.safetensors", "xl.safetensors",  # the pair folder, as one
    ])
    assert (out / "alpha.civitai.info").read_bytes() == (folder / "alpha.civitai.info").read_bytes()
    assert embkit.read(out / "xl.safetensors").family == "sdxl"  # the pair, converted once
    alpha = next(f for f in report["files"] if f["input"].endswith("alpha.safetensors"))
    assert sorted(Path(p).name for p in alpha["sidecars"]) == ["alpha.civitai.info", "alpha.preview.png"]
    # one file to a new name: the sidecars take the new stem
    proc = run_embkit("convert", str(folder / "alpha.safetensors"), "-o", str(tmp_path / "renamed.pt"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "renamed.civitai.info").is_file() and (tmp_path / "renamed.preview.png").is_file()
    assert embkit.read(tmp_path / "renamed.pt").sidecars.trained_words == ("alphaword", "shiny style")
    # run again: the existing sidecars are targets like the output (skipped, not replaced)
    again = json.loads(run_embkit("convert", str(folder), "-o", str(out), "--to", "multi", "--json").stdout)
    assert sum(1 for f in again["files"] if f["status"] == "skipped" and not f.get("not_embedding")) == 4
    # the sidecars and the preview themselves are listed as skipped files that are no embedding (issue 19)
    assert sorted(Path(f["input"]).name for f in again["files"] if f.get("not_embedding")) == [
        "alpha.civitai.info", "alpha.preview.png", "beta.metadata.json"]


@pytest.fixture(scope="module")
def hub():
    srv = HubServer().start()
    yield srv
    srv.stop()


def run_pull(hub: HubServer, home: Path, *args: str):
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "EMBKIT_LIBRARY": str(home / "library.db")})
    return subprocess.run([sys.executable, "-m", "embkit", "pull", *args, "--json"], capture_output=True, text=True, env=env, cwd=home, timeout=120)


def test_pull_downloads_and_carries_sidecars_and_pairs(hub, tmp_path):
    from safetensors.numpy import save

    info = json.dumps(makers.civitai_version(["pullword"], base="SDXL 1.0"), indent=4).encode()
    l, g = makers.vectors(1, 768, 1), makers.vectors(1, 1280, 2)
    hub.add_repo("tester/wild", {
        "style.safetensors": save({"emb_params": makers.vectors(1, 768, 3)}),
        "style.civitai.info": info,
        "style.json": json.dumps({"description": "a style", "notes": ""}, indent=4).encode(),
        "style.preview.png": (makers.png_picture(tmp_path / "p.png")).read_bytes(),
        "unrelated.json": b'{"not": "a sidecar of anything pulled"}',
        "xl/learned_embeds.safetensors": save({"<xl>": l}, metadata={"format": "pt"}),
        "xl/learned_embeds_2.safetensors": save({"<xl>": g}, metadata={"format": "pt"}),
    })
    proc = run_pull(hub, tmp_path, "tester/wild", "-o", str(tmp_path / "out"), "--library")
    assert proc.returncode == 0, proc.stderr
    results = {r["filename"]: r for r in json.loads(proc.stdout)}
    assert set(results) == {"style.safetensors", "xl"}  # a folder holding learned_embeds.* is one concept folder
    out = tmp_path / "out"
    for name in ("style.civitai.info", "style.json", "style.preview.png", "xl/learned_embeds_2.safetensors"):
        assert (out / name).is_file(), name
    assert not (out / "unrelated.json").exists()
    assert sorted(Path(p).name for p in results["style.safetensors"]["sidecars"]) == ["style.civitai.info", "style.json", "style.preview.png"]
    assert results["xl"]["embeddings"][0]["family"] == "sdxl"
    assert embkit.read(out / "xl").family == "sdxl"  # the second file came along
    emb = embkit.read(out / "style.safetensors")
    assert emb.sidecars.trained_words == ("pullword",) and emb.sidecars.a1111_json["description"] == "a style"
    with embkit.Library(tmp_path / "library.db") as lib:
        assert names(lib.search(word="pullword")) == ["style"]
        assert [e.family for e in lib.search(name="<xl>")] == ["sdxl"]
    # converting renames the sidecars to the converted file's stem
    proc = run_pull(hub, tmp_path, "tester/wild", "--file", "style.safetensors", "-o", str(tmp_path / "conv"), "--convert")
    assert proc.returncode == 0, proc.stderr
    [res] = json.loads(proc.stdout)
    assert sorted(os.listdir(tmp_path / "conv")) == ["style.civitai.info", "style.json", "style.preview.png", "style.safetensors"]
    assert embkit.read(tmp_path / "conv" / "style.safetensors").sidecars.base_model == "SDXL 1.0"


def test_push_sends_an_sdxl_pair_as_one_file(hub, tmp_path):
    import subprocess

    from hub_server import WRITE_TOKEN

    l, g = makers.vectors(2, 768, 1), makers.vectors(2, 1280, 2)
    first = makers.diffusers_sdxl_pair(tmp_path / "pair", "<xl>", l, g, g_dtype="float32")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": WRITE_TOKEN})
    proc = subprocess.run([sys.executable, "-m", "embkit", "push", str(first), "tester/xl-pair"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = hub.files("tester/xl-pair")
    assert "learned_embeds.safetensors" not in files  # not the CLIP-L half alone: one encoder-keyed file, named by the token
    back = tmp_path / "back.safetensors"
    back.write_bytes(files["xl.safetensors"])
    emb = embkit.read(back)
    assert emb.slots == ("clip_l", "clip_g") and np.array_equal(emb.vectors["clip_g"], g)

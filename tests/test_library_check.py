"""Library compatibility checks (through embkit.validate) and load_into on a real tiny diffusers
pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import embkit
import makers as mk
from conftest import run_embkit


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("check")
    root = tmp / "embeddings"
    root.mkdir()
    mk.kohya_file(root / "zqxone.safetensors", mk.vectors(1, 768, seed=1))
    mk.a1111_pt(root / "zqxtwo.pt", mk.vectors(2, 768, seed=2))
    mk.multi_file(root / "zqxlarge.safetensors", {"clip_l": mk.vectors(2, 768, seed=3), "clip_g": mk.vectors(2, 1280, seed=4)})
    mk.kohya_file(root / "zqxwide.safetensors", mk.vectors(1, 1024, seed=5))  # SD2
    (root / "dup").mkdir()
    mk.kohya_file(root / "dup" / "ZQXONE.safetensors", mk.vectors(1, 768, seed=6))  # same trigger to a tokenizer
    db = tmp / "lib.sqlite"
    with embkit.Library(db) as lib:
        lib.scan([root], jobs=1)
    return db, root


def _by_name(results):
    return {(r.entry.name, Path(r.entry.path).parent.name): r for r in results}


def test_check_by_family(library):
    db, _ = library
    with embkit.Library(db) as lib:
        sd1 = {r.entry.name: r for r in lib.check("sd1") if r.entry.name != "ZQXONE"}
        assert {n for n, r in sd1.items() if r.loads} == {"zqxone", "zqxtwo", "zqxlarge"}
        assert any(f["code"] == "extra-slot" and f["severity"] == "warning" for f in sd1["zqxlarge"].findings)
        assert not sd1["zqxwide"].loads
        assert any(f["code"] == "width-mismatch" and f["severity"] == "error" for f in sd1["zqxwide"].findings)
        sdxl = {r.entry.name: r for r in lib.check("sdxl", names=["zqxlarge", "zqxone"])}
        assert set(sdxl) == {"zqxlarge", "zqxone", "ZQXONE"}  # a name matches case-insensitively
        assert sdxl["zqxlarge"].loads
        assert not sdxl["zqxone"].loads and any(f["code"] == "missing-slot" for f in sdxl["zqxone"].findings)


def test_check_notices_a_file_gone_since_the_scan(library, tmp_path):
    db, root = library
    with embkit.Library(tmp_path / "stale.sqlite") as lib:
        victim = tmp_path / "gone.safetensors"
        mk.kohya_file(victim, mk.vectors(1, 768, seed=9))
        lib.scan([victim])
        victim.unlink()
        [r] = lib.check("sd1")
        assert not r.loads and r.findings[0]["severity"] == "error" and "gone.safetensors" in r.findings[0]["message"]


def test_check_cli_json(library):
    db, _ = library
    done = run_embkit("library", "--db", str(db), "check", "--model", "sdxl", "--json")
    # exits like verify: 7 when something would be skipped (zqxtwo is)
    assert done.returncode == 7, done.stderr
    got = {r["name"]: r for r in json.loads(done.stdout)}
    assert got["zqxlarge"]["loads"] is True and got["zqxtwo"]["loads"] is False
    human = run_embkit("library", "--db", str(db), "check", "--model", "sd1")
    assert "would load" in human.stdout and "skip" in human.stdout
    bad = run_embkit("library", "--db", str(db), "check", "--model", "no-such-family")
    assert bad.returncode == 6, bad.stderr  # TargetError


@pytest.fixture(scope="module")
def sd1_pipe():
    pytest.importorskip("diffusers")
    from embkit.diffusers.tiny import tiny_pipeline

    return tiny_pipeline("sd1")


def test_load_into_applies_every_compatible_embedding_at_once(library, sd1_pipe):
    db, root = library
    pipe = sd1_pipe
    rows_before = pipe.text_encoder.get_input_embeddings().weight.shape[0]
    with embkit.Library(db) as lib:
        report = lib.load_into(pipe)
    try:
        assert sorted(report.loaded) == ["ZQXONE", "zqxtwo"] or sorted(report.loaded) == ["zqxone", "zqxtwo"]
        skipped = dict(report.skipped)
        assert set(skipped) >= {"zqxlarge", "zqxwide"}
        assert "has clip_g vectors the pipeline has no encoder for" in skipped["zqxlarge"][0]
        loser = "ZQXONE" if "zqxone" in report.loaded else "zqxone"
        assert "already taken" in skipped[loser][0]
        weight = pipe.text_encoder.get_input_embeddings().weight.detach().numpy()
        assert weight.shape[0] == rows_before + 3  # zqxone (1 vector) + zqxtwo (2), in one resize
        tok = pipe.tokenizer
        got = weight[tok.convert_tokens_to_ids("zqxtwo_1")]
        np.testing.assert_array_equal(got, mk.vectors(2, 768, seed=2)[1])
    finally:
        from embkit.diffusers import unload

        unload(pipe)
    assert pipe.text_encoder.get_input_embeddings().weight.shape[0] == rows_before
    with embkit.Library(db) as lib:
        again = lib.load_into(pipe, names=["zqxtwo"])
    try:
        assert again.loaded == ["zqxtwo"] and not again.skipped
        assert again.applied.triggers == {"zqxtwo": "zqxtwo"}
        with embkit.Library(db) as lib:
            third = lib.load_into(pipe, names=["zqxtwo"])  # already applied: skipped, pipeline untouched
        assert third.loaded == [] and "already has a token" in third.skipped[0][1][0]
    finally:
        unload(pipe)


def test_diffusers_uses_the_stored_name_of_an_a1111_file_only(sd1_pipe, tmp_path):
    """What the library's stored-name conflict rests on, with diffusers' own loader: an A1111 .pt
    is triggered by its stored name, a kohya file by its tensor key, never by a stored_name kept in
    its metadata; so the library reports the first and not the second."""
    mk.a1111_pt(tmp_path / "badhand.pt", mk.vectors(1, 768, seed=1), name="badhandv3")
    mk.kohya_file(tmp_path / "small.safetensors", mk.vectors(1, 768, seed=2), metadata={"stored_name": "EasyNegative"})
    pipe = sd1_pipe
    try:
        pipe.load_textual_inversion(str(tmp_path / "badhand.pt"))
        pipe.load_textual_inversion(str(tmp_path / "small.safetensors"))
        vocab = pipe.tokenizer.get_vocab()
        assert "badhandv3" in vocab and "badhand" not in vocab
        assert "emb_params" in vocab and "EasyNegative" not in vocab and "easynegative" not in vocab
    finally:
        pipe.unload_textual_inversion()
    with embkit.Library(tmp_path / "lib.sqlite") as lib:
        lib.scan([tmp_path], jobs=1)
        assert [(g.kind, g.key) for g in lib.conflicts() if g.kind == "stored-name"] == [("stored-name", "badhand")]


def test_check_does_not_count_pictures_as_unreadable(tmp_path):
    """Regression: `check` said "N unreadable files were not checked" counting preview pictures."""
    from PIL import Image

    root = tmp_path / "embeddings"
    root.mkdir()
    mk.kohya_file(root / "zqxpic.safetensors", mk.vectors(1, 768, seed=1))
    Image.new("RGB", (16, 16)).save(root / "zqxpic.png")
    Image.new("RGB", (16, 16)).save(root / "zqxpic2.webp")
    db = tmp_path / "lib.sqlite"
    with embkit.Library(db) as lib:
        lib.scan([root], jobs=1)
    done = run_embkit("library", "--db", str(db), "check", "--model", "sd1")
    assert done.returncode == 0, done.stderr
    assert "1 would load, 0 would be skipped on sd1" in done.stdout
    assert "unreadable" not in done.stdout + done.stderr
    (root / "broken.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    with embkit.Library(db) as lib:
        lib.scan([root], jobs=1)
    done = run_embkit("library", "--db", str(db), "check", "--model", "sd1")
    assert "1 unreadable files were not checked" in done.stderr

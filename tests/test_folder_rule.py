"""One rule for what a folder holds (issue 19): the same mixed folder given to every command that
walks folders (ingest included) gets the same classification and the exit status of the one
documented rule (embkit.folder.walk_exit_code, docs/cli.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file

import embkit
from conftest import run_embkit
from embkit.folder import classify, error_reason, name_reason, walk_exit_code


def _vec(n, width, seed=0):
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32) * 0.02


@pytest.fixture()
def mixed(tmp_path) -> Path:
    """What users keep in an embeddings folder: embeddings (as each tool writes them), photos, a
    text file, a random .ckpt, sidecars, a preview, a model's weights, subfolders."""
    root = tmp_path / "embeddings"
    (root / "sub" / "deeper").mkdir(parents=True)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.from_numpy(_vec(2, 768))}, "name": "bad-hands"}, root / "bad-hands.pt")
    save_file({"emb_params": _vec(4, 768, 1)}, str(root / "neg.safetensors"))
    save_file({"clip_l": _vec(2, 768, 2), "clip_g": _vec(2, 1280, 3)}, str(root / "sub" / "xl.safetensors"))
    save_file({"<tok>": _vec(1, 768, 4)}, str(root / "sub" / "deeper" / "tok.safetensors"))
    Image.new("RGB", (16, 16), (200, 10, 10)).save(root / "holiday.jpg")
    Image.new("RGB", (16, 16), (10, 200, 10)).save(root / "sub" / "cat.png")  # a photo saved as PNG: no card
    Image.new("RGB", (16, 16)).save(root / "neg.preview.png")
    (root / "neg.civitai.info").write_text('{"trainedWords": ["neg"]}')
    (root / "bad-hands.json").write_text('{"description": "hands"}')
    (root / "README.txt").write_text("my embeddings")
    (root / "model.ckpt").write_bytes(os.urandom(4096))
    save_file({"model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4), np.float32)}, str(root / "sub" / "unet.safetensors"))
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


READ = {"bad-hands.pt", "neg.safetensors", "sub/xl.safetensors", "sub/deeper/tok.safetensors"}
SKIPPED = {
    "holiday.jpg": "a picture",
    "sub/cat.png": "a picture without an embedding card",
    "neg.preview.png": "a preview picture",
    "neg.civitai.info": "a sidecar (Civitai Helper's model information)",
    "bad-hands.json": "a sidecar (A1111's user metadata)",
    "README.txt": "a text file",
    "model.ckpt": "a model checkpoint, not an embedding",
    "sub/unet.safetensors": "not an embedding",
}


def _rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def _reason(text: str) -> str:
    return text.split(":", 1)[0] if text.startswith(("a model checkpoint", "not an embedding")) else text


def classified(root: Path, command: str, tmp_path: Path) -> tuple[int, dict[str, str]]:
    """(exit status, {relative path: 'read' | 'error' | skip reason}) as one command reports the folder."""
    out: dict[str, str] = {}
    if command == "inspect":
        done = run_embkit("inspect", str(root), "--json")
        for e in json.loads(done.stdout):
            out[_rel(root, e["path"])] = _reason(e["skipped"]) if "skipped" in e else "error" if "error" in e else "read"
    elif command == "verify":
        done = run_embkit("verify", str(root), "--json")
        doc = json.loads(done.stdout)
        for f in doc["files"]:
            out[_rel(root, f["path"])] = "error" if "error" in f else "read"
        for i in doc["summary"]["ignored"]:
            out[_rel(root, i["path"])] = _reason(i["reason"])
    elif command == "convert":
        done = run_embkit("convert", str(root), "-o", str(tmp_path / "converted"), "--to", "multi", "--json")
        for r in json.loads(done.stdout)["files"]:
            out[_rel(root, r["input"])] = _reason(r["reason"]) if r["status"] == "skipped" else "error" if r["status"] == "failed" else "read"
    elif command == "scan":
        done = run_embkit("scan", str(root), "--json")
        for r in json.loads(done.stdout):
            out[_rel(root, r["path"])] = _reason(r["skipped"]) if "skipped" in r else "read" if r["verdict"] == "safe" else "error"
    elif command == "library scan":
        db = str(tmp_path / f"lib{len(list(tmp_path.glob('lib*')))}.sqlite")
        done = run_embkit("library", "--db", db, "scan", str(root), "--json")
        doc = json.loads(done.stdout)
        for item in doc["skipped"]:
            out[_rel(root, item["path"])] = _reason(item["reason"])
        for e in doc["errors"]:
            out[_rel(root, e["path"])] = "error"
        for e in json.loads(run_embkit("library", "--db", db, "list", "--json").stdout):
            out[_rel(root, e["path"])] = "read"
    elif command == "previews":
        # rendered on the built-in tiny SD1 pipeline, under a folder of their own (never into the folder)
        done = run_embkit("previews", str(root), "-o", str(tmp_path / "previews"), "-m", "sd1", "--device", "cpu", "--json", timeout=300)
        doc = json.loads(done.stdout)
        for r in doc["previews"]:
            out[_rel(root, r["path"])] = "error" if r["status"] == "error" else "read"
        for item in doc["ignored"]:
            out[_rel(root, item["path"])] = _reason(item["skipped"])
    elif command == "ingest":
        # the manifest has a row per file of embkit's extensions; the summary lists what is no embedding
        done = run_embkit("ingest", str(root), "-o", str(tmp_path / f"ingested{len(list(tmp_path.glob('ingested*')))}"), "--json")
        doc = json.loads(done.stdout)
        for row in _manifest(doc["manifest"]["jsonl"]):
            if row["status"] != "skipped":  # a skipped row is listed with its reason below
                out[_rel(root, row["path"])] = "read" if row["status"] in ("ok", "unconverted") else "error"
        for item in doc["ignored"]:
            out[_rel(root, item["path"])] = _reason(item["skipped"])
    else:
        raise AssertionError(command)
    return done.returncode, out


def _manifest(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


COMMANDS = ("inspect", "verify", "convert", "scan", "library scan", "previews", "ingest")


@pytest.mark.slow  # previews renders on the tiny pipeline
def test_every_walking_command_classifies_the_mixed_folder_alike(mixed, tmp_path):
    expected = {p: "read" for p in READ} | {p: _reason(r) for p, r in SKIPPED.items()}
    for command in COMMANDS:
        code, got = classified(mixed, command, tmp_path)
        assert got == expected, command
        assert code == 0, command  # skipped files are never failures


@pytest.mark.slow  # previews renders on the tiny pipeline
def test_a_broken_embedding_is_an_error_everywhere_with_its_code(mixed, tmp_path):
    (mixed / "sub" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for command in COMMANDS:
        code, got = classified(mixed, command, tmp_path)
        assert got["sub/broken.safetensors"] == "error", command
        assert code == 3, command  # the broken file's own exit code, in every command
    # a second kind of failure: the codes differ, so the walk exits 1
    (mixed / "junk.pt").write_bytes(b"\x80\x04\x95" + b"\x00" * 40)  # an unknown pickle layout
    codes = {command: classified(mixed, command, tmp_path)[0] for command in ("inspect", "verify", "convert")}
    assert set(codes.values()) <= {1, 3}, codes


@pytest.mark.slow  # previews renders on the tiny pipeline
def test_an_unsafe_file_exits_5_whatever_else_failed(mixed, tmp_path):
    import pickle

    (mixed / "sub" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    (mixed / "evil.pt").write_bytes(pickle.dumps({"string_to_param": Evil()}, protocol=2))
    for command in COMMANDS:
        code, got = classified(mixed, command, tmp_path)
        assert got["evil.pt"] == "error" and code == 5, command


def test_nothing_found_exits_4_everywhere(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (8, 8)).save(root / "a.jpg")
    (root / "notes.txt").write_text("x")
    for command in COMMANDS:
        code, got = classified(root, command, tmp_path)
        assert got == {"a.jpg": "a picture", "notes.txt": "a text file"} and code == 4, command


def test_named_files_are_never_skipped(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    assert run_embkit("inspect", str(photo)).returncode == 3
    assert run_embkit("verify", str(photo)).returncode == 3
    assert classify(str(photo), embkit.BrokenFileError("x"), walked=False)[0] == "error"


def test_the_rule_as_functions():
    assert name_reason("a/x.jpg") == "a picture" and name_reason("a/x.safetensors") is None
    assert name_reason("a/x.weird") == "not a kind of file embkit reads (.weird)"
    assert error_reason("a/x.png", "broken-file") == "a picture without an embedding card"
    assert error_reason("a/x.pt", "broken-file") is None  # looks like an embedding: an error
    assert error_reason("a/x.pt", "unsafe-file") is None
    assert walk_exit_code([], 3) == 0 and walk_exit_code([], 0) == 4
    assert walk_exit_code([3, 3], 5) == 3 and walk_exit_code([3, 7], 5) == 1 and walk_exit_code([3, 5, 7], 5) == 5


def test_library_scan_counts_embeddings_and_skipped_files_once(mixed, tmp_path):
    """Regression: a random .ckpt, a photo saved as PNG and a model's weights were read, recorded
    (so a rescan skips them) and then counted both as added files and as skipped ones."""
    db = str(tmp_path / "lib.sqlite")
    for first in (True, False):
        done = run_embkit("library", "--db", db, "scan", str(mixed))
        assert done.returncode == 0, done.stderr
        counts = "4 added, 0 updated, 0 unchanged" if first else "0 added, 0 updated, 4 unchanged"
        assert f"4 files: {counts}" in done.stdout and "8 skipped (no embedding)" in done.stdout, done.stdout

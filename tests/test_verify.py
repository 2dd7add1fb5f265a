"""``embkit verify``: tables, --json, folder walking and summary, exit codes, --strict, --render hand-off."""

from __future__ import annotations

import json
from pathlib import Path
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors.numpy import save_file

from conftest import run_embkit
from embkit.cli.main import cli as embkit_cli
from embkit.errors import TargetError, ValidationFailed
from validate_fixtures import SDXL_KEYS, write_sparse_checkpoint

rng = np.random.default_rng(1)


def vecs(n, width, norm=0.5):
    a = rng.standard_normal((n, width)).astype(np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True) * norm


@pytest.fixture()
def folder(tmp_path):
    """sd1 kohya file, an SDXL multi file, a concept folder, a plain PNG and a text file."""
    root = tmp_path / "embeddings"
    (root / "sub").mkdir(parents=True)
    save_file({"emb_params": vecs(2, 768)}, str(root / "goodsd1.safetensors"))
    save_file({"clip_l": vecs(2, 768), "clip_g": vecs(2, 1280)}, str(root / "sub" / "xlstyle.safetensors"))
    concept = root / "concept"
    concept.mkdir()
    save_file({"<concepttok>": vecs(1, 768)}, str(concept / "learned_embeds.safetensors"))
    (concept / "token_identifier.txt").write_text("<concepttok>")
    Image.new("RGB", (8, 8)).save(root / "preview.png")
    (root / "notes.txt").write_text("not an embedding")
    return root


def invoke(*args):
    return CliRunner().invoke(embkit_cli, ["verify", *map(str, args)], catch_exceptions=False)


def test_folder_against_sd1_walks_and_summarises(folder):
    res = invoke(folder, "--model", "sd1")
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "3 would load, 0 would be skipped" in flat
    # files that are no embedding are listed as skipped, with the reason (embkit.folder), never failed
    assert "preview.png: a picture without an embedding card" in flat and "notes.txt: a text file" in flat
    assert "extra-slot" in res.output and "goodsd1" in res.output and "<concepttok>" in res.output


def test_folder_against_sdxl_skips_sd1_files_with_the_reason(folder):
    res = invoke(folder, "--model", "sdxl")
    assert res.exit_code == ValidationFailed.exit_code == 7
    flat = " ".join(res.output.split())
    assert "1 would load, 2 would be skipped" in flat
    assert "skipped goodsd1: missing-slot (clip_g) - fix: embkit edit" in flat and "--port sdxl" in flat


def test_json_output(folder):
    res = invoke(folder, "--model", "sdxl", "--json")
    data = json.loads(res.output)
    assert res.exit_code == 7 and data["ok"] is False
    assert data["target"]["family"] == "sdxl" and data["target"]["slots"]["clip_g"]["width"] == 1280
    assert [s["name"] for s in data["summary"]["load"]] == ["xlstyle"]
    assert {s["name"] for s in data["summary"]["skipped"]} == {"goodsd1", "<concepttok>"}
    ignored = {Path(i["path"]).name: i["reason"] for i in data["summary"]["ignored"]}
    assert ignored["preview.png"] == "a picture without an embedding card" and ignored["notes.txt"] == "a text file"
    reports = {r["name"]: r for f in data["files"] for r in f["reports"]}
    assert [f["code"] for f in reports["goodsd1"]["findings"] if f["severity"] == "error"] == ["missing-slot"]


def test_default_target_is_each_embeddings_own_family(folder):
    res = invoke(folder, "--json")
    data = json.loads(res.output)
    assert res.exit_code == 0 and data["target"] is None
    targets = {r["name"]: r["target"] for f in data["files"] for r in f["reports"]}
    assert targets["xlstyle"].startswith("SDXL") and targets["goodsd1"].startswith("SD1")


def test_strict_fails_on_warnings(tmp_path):
    path = tmp_path / "long.safetensors"
    save_file({"emb_params": vecs(40, 768)}, str(path))  # 40 of 75 tokens: a prompt-budget warning
    assert invoke(path).exit_code == 0
    res = invoke(path, "--strict")
    assert res.exit_code == 7 and "prompt-budget" in res.output
    # the summary says why it failed: every embedding "would load", so without this line it did not
    flat = " ".join(res.output.split())
    assert "1 would load, 0 would be skipped failed under --strict: 1 warning (long)" in flat
    data = json.loads(invoke(path, "--strict", "--json").output)
    assert data["ok"] is False and data["summary"]["strict_failed"] == [{"name": "long", "path": str(path), "warnings": 1}]
    relaxed = invoke(path, "--json")
    assert json.loads(relaxed.output)["summary"]["strict_failed"] == [] and "--strict" not in invoke(path).output


def test_family_target_header_names_the_family_once(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"clip_l": vecs(1, 768), "clip_g": vecs(1, 1280)}, str(path))
    res = invoke(path, "--model", "sdxl")
    assert res.exit_code == 0
    assert res.output.splitlines()[0] == "target SDXL (clip_l 768, clip_g 1280) (family sdxl)"


def test_checkpoint_target_and_unreadable_file(tmp_path):
    ckpt = write_sparse_checkpoint(tmp_path / "sd_xl_base.safetensors", SDXL_KEYS)
    good = tmp_path / "pair.safetensors"
    save_file({"clip_l": vecs(1, 768), "clip_g": vecs(1, 1280)}, str(good))
    assert invoke(good, "--model", ckpt).exit_code == 0
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    res = invoke(good, broken, "--model", ckpt, "--json")
    data = json.loads(res.output)
    # the walk rule (docs/cli.md): the unreadable file's own code (3, a broken file), not 7
    assert res.exit_code == 3
    assert [f["error"]["code"] for f in data["files"] if "error" in f] == ["broken-file"] and data["summary"]["load"][0]["name"] == "pair"


def test_bad_model_exits_with_the_target_error_code(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"emb_params": vecs(1, 768)}, str(path))
    proc = run_embkit("verify", str(path), "--model", "not-a-model")
    assert proc.returncode == TargetError.exit_code == 6
    assert "cannot use 'not-a-model' as a target" in proc.stderr


def test_nan_file_fails_through_the_real_entry_point(tmp_path):
    v = vecs(2, 768)
    v[0, 0] = np.nan
    path = tmp_path / "nan.safetensors"
    save_file({"emb_params": v}, str(path))
    proc = run_embkit("verify", str(path))
    assert proc.returncode == 7 and "nan-inf" in proc.stdout


def test_render_hands_over_with_the_documented_call(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("embkit.cli.render")
    fake.run = lambda **kw: calls.append(kw) or 3
    fake.preflight = lambda paths, output, overwrite, json_out, per_file: calls.append(("preflight", output, overwrite, per_file)) or 0
    monkeypatch.setitem(sys.modules, "embkit.cli.render", fake)
    import embkit.cli

    monkeypatch.setattr(embkit.cli, "render", fake, raising=False)
    path = tmp_path / "a.safetensors"
    save_file({"emb_params": vecs(1, 768)}, str(path))
    res = invoke(path, "--render", "--model", "sd1", "--prompt", "a cat", "--negative", "blurry", "--as-negative", "--seed", "1", "--seed", "2",
                 "--steps", "3", "--size", "96x64", "--guidance", "5", "--device", "cpu", "--dtype", "bfloat16", "--prediction", "v",
                 "--tokenizer", "tok", "--host-dir", "a", "--host-dir", "b", "-o", tmp_path / "sheet.png", "--overwrite")
    assert res.exit_code == 3, res.output
    assert calls == [("preflight", str(tmp_path / "sheet.png"), True, False),
                     dict(paths=[str(path)], model="sd1", prompt="a cat", negative="blurry", as_negative=True, seeds=[1, 2], steps=3,
                          size=(96, 64), width=None, height=None, guidance=5.0, device="cpu", dtype="bfloat16", prediction="v",
                          tokenizer="tok", host_dirs=["a", "b"], output=str(tmp_path / "sheet.png"), sheet_per_file=False,
                          json_out=False, strict=False, overwrite=True)]


def test_render_checks_the_sheet_before_validating_or_rendering(tmp_path, monkeypatch):
    """A sheet that cannot be written is reported first, as the writers report it (exit 9), and
    nothing is validated, printed or rendered; torch is never imported for it."""
    from embkit.cli import render as cli_render

    monkeypatch.setattr(cli_render, "run", lambda **kw: pytest.fail("rendered although the sheet cannot be written"))
    path = tmp_path / "a.safetensors"
    save_file({"emb_params": vecs(1, 768)}, str(path))
    res = invoke(path, "--render", "-o", tmp_path / "nodir" / "s.png")
    assert res.exit_code == 9
    assert "".join(res.output.split()) == "".join(f"error[write-failed]: {tmp_path / 'nodir' / 's.png'}: its folder does not exist".split())
    keep = tmp_path / "keep.png"
    keep.write_text("precious")
    res = invoke(path, "--render", "-o", keep, "--json")
    assert res.exit_code == 9 and json.loads(res.output)["error"]["code"] == "exists"
    assert "--overwrite" in json.loads(res.output)["error"]["message"] and keep.read_text() == "precious"
    res = invoke(path, "--render", "--json", "-o", tmp_path)
    assert res.exit_code == 9 and "is a folder" in json.loads(res.output)["error"]["message"]


def test_a_folder_without_embeddings_says_so(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.png")
    res = CliRunner().invoke(embkit_cli, ["verify", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 4 and "no embedding files found" in res.output

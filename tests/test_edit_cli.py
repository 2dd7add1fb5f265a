"""`embkit edit` as a user runs it: each flag on real files, steps recorded, refusals with exit codes."""

from __future__ import annotations

import json

import makers as mk
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_embkit
from test_port import make_sdxl_folder

import embkit
from embkit.cli.main import cli
from embkit.formats.base import narrow_bf16, widen_bf16


def invoke(*args):
    result = CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_select_trims_prompt_budget(tmp_path, corpus):
    out = tmp_path / "EasyNegative4.safetensors"
    invoke("edit", corpus / "EasyNegative.pt", "--select", "0:4", "-o", out)
    src, got = embkit.read(corpus / "EasyNegative.pt"), embkit.read(out)
    assert np.array_equal(got.vectors["clip_l"], src.vectors["clip_l"][:4])
    (entry,) = got.metadata["provenance"]
    assert entry["operation"] == "select" and entry["params"] == {"which": "0:4"}
    assert entry["inputs"][0]["sha256"] == "66a7279a88dd0cb17afbc88560540c638336d5783fd6b191c53c0d654e25b9db"


def test_steps_in_documented_order(tmp_path):
    src = mk.multi_file(tmp_path / "xl.safetensors", {"clip_l": np.array([[1, 0], [0, 0], [3, 4]], np.float32).repeat(384, 1), "clip_g": np.array([[2, 0], [0, 0], [6, 8]], np.float32).repeat(640, 1)})
    out = tmp_path / "out.safetensors"
    invoke("edit", src, "--drop-zero", "--scale", "2", "--scale-slot", "clip_g=0.5", "--rename", "new", "--dtype", "bf16", "-o", out, "--format", "multi")
    got = embkit.read(out)
    assert [p["operation"] for p in got.metadata["provenance"]] == ["drop_zero", "scale", "scale", "cast", "rename"]
    assert got.vectors["clip_l"][:, 0].tolist() == [2, 6] and got.vectors["clip_l"][:, -1].tolist() == [0, 8]
    assert got.vectors["clip_g"][:, 0].tolist() == [2, 6] and got.vectors["clip_g"][:, -1].tolist() == [0, 8]
    assert got.dtypes == {"clip_l": "bfloat16", "clip_g": "bfloat16"}
    assert got.metadata["provenance"][-1]["params"] == {"old": "xl", "new": "new"}


def test_norm_and_dtype_exact(tmp_path):
    src = mk.kohya_file(tmp_path / "k.safetensors", np.array([[0.3, 0.4] + [0] * 766, [0, 1.0] + [0] * 766], np.float32))
    out = tmp_path / "n.safetensors"
    invoke("edit", src, "--norm", "1.5", "--dtype", "fp16", "-o", out)
    got = embkit.read(out)
    # mean norm 0.75 → factor 2
    assert got.vectors["clip_l"][:, :2].tolist() == [[np.float16(0.6), np.float16(0.8)], [0, 2]]
    assert got.dtypes["clip_l"] == "float16"


def test_bf16_cast_round_trips_exactly(tmp_path, corpus):
    out = tmp_path / "b.safetensors"
    invoke("edit", corpus / "bad-hands-5.pt", "--dtype", "bf16", "-o", out)
    src, got = embkit.read(corpus / "bad-hands-5.pt"), embkit.read(out)
    assert got.dtypes["clip_l"] == "bfloat16"
    assert np.array_equal(got.vectors["clip_l"], widen_bf16(narrow_bf16(src.vectors["clip_l"])))


def test_port_zero_half_warns_and_via_transfers(tmp_path):
    vocab_l, vocab_g = make_sdxl_folder(tmp_path / "model")
    src = mk.a1111_pt(tmp_path / "style.pt", (2 * vocab_l[[4, 9]]).astype(np.float32))
    weak = run_embkit("edit", str(src), "--port", "sdxl", "-o", str(tmp_path / "weak.safetensors"))
    assert weak.returncode == 0, weak.stderr
    assert "CLIP-G half is all zeros" in weak.stderr
    got = embkit.read(tmp_path / "weak.safetensors")
    assert got.family == "sdxl" and not got.vectors["clip_g"].any()
    r = invoke("edit", src, "--port", "sdxl", "--via", tmp_path / "model", "-o", tmp_path / "xl.safetensors", "--json")
    assert json.loads(r.output)["warnings"] == []
    xl = embkit.read(tmp_path / "xl.safetensors")
    assert np.array_equal(xl.vectors["clip_g"], vocab_g[[4, 9]])
    (ported,) = [p for p in xl.metadata["provenance"] if p["operation"] == "port"]
    assert ported["params"]["method"] == "nearest-token"
    assert ported["params"]["token_ids"] == [4, 9]
    back = tmp_path / "back.safetensors"
    invoke("edit", tmp_path / "xl.safetensors", "--port", "sd1", "-o", back)
    assert np.array_equal(embkit.read(back).vectors["clip_l"], embkit.read(src).vectors["clip_l"])
    assert [p["params"]["method"] for p in embkit.read(back).metadata["provenance"]] == ["nearest-token", "take-clip-l"]


def test_slot_option_and_output_slots_untouched(tmp_path):
    src = mk.multi_file(tmp_path / "o.safetensors", {"clip_l": np.ones((2, 768), np.float32), "clip_l_out": np.ones((1, 768), np.float32)})
    invoke("edit", src, "--scale", "3", "-o", tmp_path / "a.safetensors")
    a = embkit.read(tmp_path / "a.safetensors")
    assert a.vectors["clip_l"][0, 0] == 3 and a.vectors["clip_l_out"][0, 0] == 1
    invoke("edit", src, "--scale", "3", "--slot", "clip_l_out", "-o", tmp_path / "b.safetensors")
    b = embkit.read(tmp_path / "b.safetensors")
    assert b.vectors["clip_l"][0, 0] == 1 and b.vectors["clip_l_out"][0, 0] == 3


def test_edit_refusals(tmp_path, corpus):
    easy = str(corpus / "EasyNegative.pt")
    r = CliRunner().invoke(cli, ["edit", easy, "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "nothing to do" in r.output
    r = CliRunner().invoke(cli, ["edit", easy, "--scale-slot", "clip_g", "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "SLOT=FACTOR" in r.output
    r = CliRunner().invoke(cli, ["edit", easy, "--via", str(tmp_path), "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "--port sdxl" in r.output
    proc = run_embkit("edit", easy, "--select", "9", "-o", str(tmp_path / "x.safetensors"))
    assert proc.returncode == 10 and "does not exist" in proc.stderr
    proc = run_embkit("edit", easy, "--scale-slot", "clip_g=0.5", "-o", str(tmp_path / "x.safetensors"))
    assert proc.returncode == 10 and "no slot 'clip_g'" in proc.stderr
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("flag, value, expected_rows", [("--select", "-2:", [6, 7]), ("--reorder", "7,6,5,4,3,2,1,0", list(range(7, -1, -1)))])
def test_select_and_reorder_rows(tmp_path, corpus, flag, value, expected_rows):
    out = tmp_path / "r.safetensors"
    invoke("edit", corpus / "EasyNegative.pt", flag, value, "-o", out)
    src = embkit.read(corpus / "EasyNegative.pt").vectors["clip_l"]
    assert np.array_equal(embkit.read(out).vectors["clip_l"], src[expected_rows])


def test_pad_to(tmp_path, corpus):
    out = tmp_path / "p.safetensors"
    invoke("edit", corpus / "bad-hands-5.pt", "--pad-to", "4", "-o", out)
    v = embkit.read(out).vectors["clip_l"]
    assert v.shape == (4, 768) and not v[2:].any()


def test_recipes_from_docs_run(tmp_path, corpus):
    """The corpus-based commands in docs/recipes.md work as written."""
    bad, easy = str(corpus / "bad-hands-5.pt"), str(corpus / "EasyNegative.pt")
    o = lambda name: str(tmp_path / name)  # noqa: E731
    invoke("merge", bad, easy, "-o", o("negs.safetensors"))
    invoke("merge", bad, easy, "--mode", "mean", "--pad", "--weights", "0.4,0.6", "-o", o("negblend.safetensors"))
    invoke("merge", bad, easy, "--pad", "--expr", "0.4*a + 0.6*EasyNegative", "-o", o("negblend2.safetensors"), "--overwrite")
    assert np.array_equal(embkit.read(o("negblend.safetensors")).vectors["clip_l"], embkit.read(o("negblend2.safetensors")).vectors["clip_l"])
    invoke("edit", easy, "--select", "0:4", "--scale", "1.2", "-o", o("EasyNegative4.safetensors"))
    invoke("edit", easy, "--select", "0,1,5", "-o", o("EasyNegative3.safetensors"))
    invoke("edit", easy, "--select", "0:4", "--norm", "0.45", "-o", o("EasyNegative4n.safetensors"))
    norms = np.linalg.norm(embkit.read(o("EasyNegative4n.safetensors")).vectors["clip_l"].astype(np.float64), axis=1)
    assert abs(norms.mean() - 0.45) < 1e-6
    invoke("edit", o("negs.safetensors"), "--port", "sdxl", "-o", o("negs_xl.safetensors"))
    invoke("edit", o("negs_xl.safetensors"), "--scale-slot", "clip_g=0.7", "-o", o("negs_xl_soft.safetensors"))
    invoke("edit", o("negs_xl.safetensors"), "--port", "sd1", "-o", o("negs_sd1.safetensors"))
    invoke("edit", o("negs.safetensors"), "--dtype", "fp16", "-o", o("small.safetensors"))
    assert (tmp_path / "small.safetensors").stat().st_size < (tmp_path / "negs.safetensors").stat().st_size


def test_result_is_named_after_out_for_file_name_triggered_formats(tmp_path):
    # the trigger of a kohya file is its name: edit names the result so, and --strict passes
    src = tmp_path / "EasyNeg.safetensors"
    embkit.write(embkit.Embedding(name="EasyNeg", vectors={"clip_l": np.ones((6, 768), np.float32)}), src)
    out = tmp_path / "short.safetensors"
    done = run_embkit("edit", str(src), "--select", "0:4", "-o", str(out), "--strict")
    assert done.returncode == 0, done.stderr
    assert "triggered by their file name" not in done.stderr
    assert embkit.read(out).name == "short"
    # a diffusers file stores its token: the name is kept
    done = run_embkit("edit", str(src), "--select", "0:4", "-o", str(tmp_path / "learned_embeds.safetensors"), "--format", "diffusers")
    assert done.returncode == 0, done.stderr
    assert embkit.read(tmp_path / "learned_embeds.safetensors").name == "EasyNeg"


def test_scaling_an_all_zero_slot_says_it_changes_nothing(tmp_path):
    src = tmp_path / "xl.safetensors"
    embkit.write(embkit.Embedding(name="xl", vectors={"clip_l": np.ones((2, 768), np.float32), "clip_g": np.zeros((2, 1280), np.float32)}), src)
    done = run_embkit("edit", str(src), "--scale-slot", "clip_g=0.7", "-o", str(tmp_path / "soft.safetensors"))
    assert done.returncode == 0, done.stderr
    assert "clip_g is all zeros" in " ".join(done.stderr.split())

"""`embkit merge` as a user runs it: real files in, real files out, provenance read back."""

from __future__ import annotations

import hashlib
import json

import makers as mk
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_embkit

import embkit
from embkit.cli.main import cli


def invoke(*args):
    result = CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture()
def pair(tmp_path):
    a = mk.kohya_file(tmp_path / "a.safetensors", np.array([[1, 2], [3, 4]], dtype=np.float32).repeat(384, axis=1))
    b = mk.a1111_pt(tmp_path / "b.pt", np.array([[10, 20], [30, 40]], dtype=np.float32).repeat(384, axis=1))
    return a, b


def test_concat_default_and_provenance_round_trip(tmp_path, corpus):
    out = tmp_path / "negs.safetensors"
    invoke("merge", corpus / "bad-hands-5.pt", corpus / "EasyNegative.pt", "-o", out)
    e = embkit.read(out)
    bad, easy = embkit.read(corpus / "bad-hands-5.pt"), embkit.read(corpus / "EasyNegative.pt")
    assert e.name == "negs"
    assert np.array_equal(e.vectors["clip_l"], np.concatenate([bad.vectors["clip_l"], easy.vectors["clip_l"]]))
    (entry,) = e.metadata["provenance"]
    assert entry["operation"] == "merge.concat"
    assert [i["sha256"] for i in entry["inputs"]] == [
        hashlib.sha256((corpus / "bad-hands-5.pt").read_bytes()).hexdigest(),
        "66a7279a88dd0cb17afbc88560540c638336d5783fd6b191c53c0d654e25b9db",
    ]
    assert [i["path"] for i in entry["inputs"]] == ["bad-hands-5.pt", "EasyNegative.pt"]


def test_weights_mean_exact(tmp_path, pair):
    out = tmp_path / "m.safetensors"
    invoke("merge", *pair, "--mode", "mean", "--weights", "3,1", "-o", out)
    v = embkit.read(out).vectors["clip_l"]
    assert v[:, 0].tolist() == [0.75 * 1 + 0.25 * 10, 0.75 * 3 + 0.25 * 30]
    assert v[:, -1].tolist() == [0.75 * 2 + 0.25 * 20, 0.75 * 4 + 0.25 * 40]
    inputs = embkit.read(out).metadata["provenance"][0]["inputs"]
    assert [i["weight"] for i in inputs] == [0.75, 0.25]


def test_expression_by_letter_and_stem(tmp_path, pair):
    out1, out2 = tmp_path / "x1.safetensors", tmp_path / "x2.safetensors"
    invoke("merge", *pair, "--expr", "0.7*a + 0.3*b", "-o", out1)
    invoke("merge", *pair, "--expr", "0.3*b + 0.7*a", "-o", out2)
    v1, v2 = embkit.read(out1).vectors["clip_l"], embkit.read(out2).vectors["clip_l"]
    expected = (0.7 * np.array([1, 3.0]) + 0.3 * np.array([10, 30.0])).astype(np.float32)
    assert v1[:, 0].tolist() == expected.tolist()
    assert np.array_equal(v1, v2)
    assert embkit.read(out1).metadata["provenance"][0]["operation"] == "merge.sum"


def test_slerp_cli_matches_library(tmp_path, pair):
    out = tmp_path / "s.safetensors"
    invoke("merge", *pair, "--mode", "slerp", "--weights", "0.3", "--name", "half", "-o", out)
    a, b = (embkit.read(p) for p in pair)
    got = embkit.read(out)
    assert np.array_equal(got.vectors["clip_l"], embkit.ops.slerp(a, b, 0.3).vectors["clip_l"])
    assert got.metadata["provenance"][0]["params"] == {"mode": "slerp", "t": 0.3}


def test_json_summary(tmp_path, pair):
    result = invoke("merge", *pair, "--mode", "sum", "-o", tmp_path / "j.safetensors", "--json")
    summary = json.loads(result.output)
    assert summary["slots"] == {"clip_l": [2, 768]} and summary["family"] == "sd1"
    assert summary["losses"] == [] and summary["provenance"][0]["operation"] == "merge.sum"


def test_refusals_and_exit_codes(tmp_path, pair, corpus):
    xl = mk.multi_file(tmp_path / "xl.safetensors", {"clip_l": mk.vectors(2, 768), "clip_g": mk.vectors(2, 1280)})
    proc = run_embkit("merge", str(pair[0]), str(xl), "-o", str(tmp_path / "bad.safetensors"))
    assert proc.returncode == 10, proc.stderr
    assert "different model families" in proc.stderr and "sdxl" in proc.stderr
    proc = run_embkit("merge", str(corpus / "bad-hands-5.pt"), str(corpus / "EasyNegative.pt"), "--mode", "sum", "-o", str(tmp_path / "u.safetensors"))
    assert proc.returncode == 10 and "--pad" in proc.stderr
    assert not (tmp_path / "u.safetensors").exists() and not (tmp_path / "bad.safetensors").exists()
    # an existing output is not replaced without --overwrite
    out = tmp_path / "keep.safetensors"
    out.write_bytes(b"precious")
    proc = run_embkit("merge", *map(str, pair), "-o", str(out))
    assert proc.returncode == 9 and out.read_bytes() == b"precious"
    invoke("merge", *pair, "-o", out, "--overwrite")
    assert embkit.read(out).vectors["clip_l"].shape == (4, 768)


def test_usage_errors(tmp_path, pair):
    runner = CliRunner()
    r = runner.invoke(cli, ["merge", *map(str, pair), "--expr", "a+b", "--weights", "1,2", "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 2 and "use one" in r.output
    r = runner.invoke(cli, ["merge", *map(str, pair), "--weights", "1,x", "-o", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 2 and "numbers" in r.output
    r = runner.invoke(cli, ["merge", *map(str, pair), "--expr", "a", "-o", str(tmp_path / "o.safetensors")])
    assert "does not use input" in str(r.exception)
    r = runner.invoke(cli, ["merge", *map(str, pair), "--expr", "a*b", "-o", str(tmp_path / "o.safetensors")])
    assert "multiplies two embeddings" in str(r.exception)


def test_pad_and_strict(tmp_path, corpus):
    out = tmp_path / "p.safetensors"
    invoke("merge", corpus / "bad-hands-5.pt", corpus / "EasyNegative.pt", "--mode", "mean", "--pad", "-o", out)
    v = embkit.read(out).vectors["clip_l"]
    easy = embkit.read(corpus / "EasyNegative.pt").vectors["clip_l"].astype(np.float64)
    assert v.shape == (8, 768)
    assert np.array_equal(v[5], (easy[5] / 2).astype(np.float32))
    # an A1111 .pt cannot hold the provenance: a warning, and with --strict a failure (exit 8)
    proc = run_embkit("merge", str(corpus / "bad-hands-5.pt"), str(corpus / "EasyNegative.pt"), "-o", str(tmp_path / "s.pt"), "--strict")
    assert proc.returncode == 8 and "provenance" in proc.stderr and not (tmp_path / "s.pt").exists()
    r = invoke("merge", corpus / "bad-hands-5.pt", corpus / "EasyNegative.pt", "-o", tmp_path / "s.pt")
    assert "provenance" in r.output
    assert embkit.read(tmp_path / "s.pt").vectors["clip_l"].shape == (10, 768)


def test_member_of_multi_embedding_file(tmp_path, pair):
    bundle = mk.lora_bundle(tmp_path / "lora.safetensors", {"x": {"clip_l": mk.vectors(1, 768, seed=1)}, "y": {"clip_l": mk.vectors(1, 768, seed=2)}})
    out = tmp_path / "xy.safetensors"
    invoke("merge", f"{bundle}::x", f"{bundle}::y", "-o", out)
    assert np.array_equal(embkit.read(out).vectors["clip_l"], np.concatenate([mk.vectors(1, 768, seed=1), mk.vectors(1, 768, seed=2)]))


TORCH_FREE = r"""
import json, sys
from embkit.cli.main import main
a, b, model, out = sys.argv[1:]
for args in (["merge", a, b, "--mode", "slerp", "-o", out + "1.safetensors"],
             ["merge", a, b, "--expr", "0.5*a + 0.5*b", "-o", out + "2.safetensors"],
             ["edit", a, "--select", "0:1", "--port", "sdxl", "--via", model, "--dtype", "fp16", "-o", out + "3.safetensors"]):
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "transformers"))
sys.stderr.write("HEAVY=" + json.dumps(heavy) + "\n")
"""


def test_merge_edit_port_never_import_torch(tmp_path, pair):
    import subprocess
    import sys

    from test_port import make_sdxl_folder

    make_sdxl_folder(tmp_path / "model")
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, *map(str, pair), str(tmp_path / "model"), str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert line, proc.stderr
    assert json.loads(line[0][6:]) == []
    assert embkit.read(tmp_path / "out3.safetensors").family == "sdxl"


def test_merge_slot_only(tmp_path):
    a = mk.multi_file(tmp_path / "a.safetensors", {"clip_l": np.ones((1, 768), np.float32), "clip_g": np.ones((1, 1280), np.float32)})
    b = mk.multi_file(tmp_path / "b.safetensors", {"clip_l": np.full((1, 768), 3, np.float32), "clip_g": np.full((1, 1280), 3, np.float32)})
    invoke("merge", a, b, "--mode", "mean", "--slot", "clip_g", "-o", tmp_path / "g.safetensors")
    got = embkit.read(tmp_path / "g.safetensors")
    assert got.vectors["clip_l"][0, 0] == 1 and got.vectors["clip_g"][0, 0] == 2

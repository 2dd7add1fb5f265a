"""The hosts in the commands: verify --host (views, --strict, the matrix, --json), library
conflicts/check per host, inspect's hosts field; on real files in fresh processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import makers as mk
from conftest import run_embkit
from host_files import as_torch

pytest.importorskip("torch")


def test_easynegative_passes_strict_for_a1111(corpus):
    """The mixed-case finding is diffusers' and embkit's: A1111 users are not told to rename."""
    done = run_embkit("verify", str(corpus / "EasyNegative.pt"), "--model", "sd1", "--host", "a1111", "--strict")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trigger-mixed-case" not in done.stdout and "A1111: loads as EasyNegative" in done.stdout
    # embkit's own view (the default) keeps it: its apply sees the file as EasyNegative
    default = run_embkit("verify", str(corpus / "EasyNegative.pt"), "--model", "sd1", "--strict")
    assert default.returncode == 7 and "trigger-mixed-case" in default.stdout
    # EasyNegative.pt is a kohya {emb_params} .pt: diffusers types emb_params, which has no capitals
    diffusers = run_embkit("verify", str(corpus / "EasyNegative.pt"), "--model", "sd1", "--host", "diffusers", "--json")
    assert json.loads(diffusers.stdout)["files"][0]["hosts"]["diffusers"]["trigger"] == "emb_params"
    # and the corpus's torch 2.1 file: fine in A1111 1.10, refused before
    old = run_embkit("verify", str(corpus / "rummd"), "--host", "a1111", "--strict")
    assert old.returncode == 7 and "host-old-release" in old.stdout


def test_verify_json_has_every_host_and_the_matrix(tmp_path):
    xl = mk.multi_file(tmp_path / "xl.safetensors", {"clip_l": mk.vectors(2, 768, seed=1), "clip_g": mk.vectors(2, 1280, seed=2)})
    done = run_embkit("verify", str(xl), "--model", "sd1", "--json")
    out = json.loads(done.stdout)
    [f] = out["files"]
    assert set(f["hosts"]) == {"a1111", "forge", "comfyui", "invokeai", "diffusers", "sdnext", "embkit"}
    assert f["hosts"]["a1111"]["loads"] is False and f["hosts"]["a1111"]["trigger"] == "xl" and f["hosts"]["a1111"]["reasons"]
    assert f["hosts"]["comfyui"]["loads"] is True and f["hosts"]["comfyui"]["applied"] == ["clip_l"]  # its CLIP-L half
    human = run_embkit("verify", str(xl), "--model", "sd1")
    assert "what each host does on SD1" in human.stdout and "ComfyUI" in human.stdout
    asked = json.loads(run_embkit("verify", str(xl), "--model", "sd1", "--host", "comfyui", "--host", "a1111", "--json").stdout)
    assert set(asked["files"][0]["hosts"]) == {"comfyui", "a1111"}
    codes = {(x["code"], tuple(x["hosts"])) for x in asked["files"][0]["reports"][0]["findings"]}
    assert ("host-skips", ("a1111",)) in codes and ("host-partial", ("comfyui",)) in codes
    bad = run_embkit("verify", str(xl), "--host", "photoshop")
    assert bad.returncode == 2 and "known hosts" in bad.stderr


def test_a_file_embkit_cannot_read_still_gets_host_answers(tmp_path):
    from safetensors.torch import save_file

    import torch

    path = tmp_path / "ot.safetensors"  # OneTrainer with output vectors: ComfyUI takes the first value
    save_file({"emp_params": torch.ones(2, 768), "emp_params_out": torch.ones(2, 768)}, str(path))
    done = run_embkit("verify", str(path), "--model", "sd1", "--host", "comfyui", "--json")
    f = json.loads(done.stdout)["files"][0]
    assert f["hosts"]["comfyui"]["loads"] is True
    a1111 = json.loads(run_embkit("verify", str(path), "--model", "sd1", "--host", "a1111", "--json").stdout)["files"][0]
    assert a1111["hosts"]["a1111"]["status"] == "error" and "multiple terms" in a1111["hosts"]["a1111"]["reasons"][0]


@pytest.fixture()
def trio(tmp_path) -> Path:
    root = tmp_path / "embeddings"
    for sub, tok in (("a", "<cat>"), ("b", "<dog>")):
        (root / sub).mkdir(parents=True)
        as_torch(mk.diffusers_file(root / sub / "learned_embeds.bin", tok, mk.vectors(1, 768, seed=len(tok))), "2.1")
    as_torch(mk.a1111_pt(root / "learned_embeds.pt", mk.vectors(2, 768, seed=3), name="stylish"), "1.x")
    mk.kohya_file(root / "whatever-200.safetensors", mk.vectors(1, 768, seed=4))
    mk.multi_file(root / "whatever-2000.safetensors", {"clip_l": mk.vectors(1, 768, seed=5), "clip_g": mk.vectors(1, 1280, seed=6)})
    return root


def _json(*args: str, db: Path):
    done = run_embkit("library", "--db", str(db), *args)
    return done, json.loads(done.stdout)


def test_library_conflicts_per_host(trio, tmp_path):
    db = tmp_path / "lib.sqlite"
    run_embkit("library", "--db", str(db), "scan", "-q", str(trio))
    _, groups = _json("conflicts", "--json", db=db)
    same = [g for g in groups if g["kind"] == "same-trigger" and g["key"] == "learned_embeds"]
    hosts = {h for g in same for h in g["hosts"]}
    assert {"a1111", "forge", "invokeai"} <= hosts and "diffusers" not in hosts  # diffusers sees <cat>, <dog>, stylish
    assert all(len(g["entries"]) == 3 for g in same)
    for host in ("a1111", "forge", "invokeai"):
        _, only = _json("conflicts", "--json", "--host", host, db=db)
        assert any(g["kind"] == "same-trigger" and g["key"] == "learned_embeds" for g in only), host
        assert all(g["hosts"] == [host] for g in only)
    _, a1111 = _json("conflicts", "--json", "--host", "a1111", "--kind", "prefix", db=db)
    assert [g["key"] for g in a1111] == ["whatever-200"] and "CLIP tokens" in a1111[0]["message"]
    _, comfy = _json("conflicts", "--json", "--host", "comfyui", "--kind", "prefix", db=db)
    assert comfy == []  # ComfyUI types whole names
    human = run_embkit("library", "--db", str(db), "conflicts", "--host", "a1111")
    assert human.returncode == 0 and "(a1111)" in human.stdout


def test_library_check_per_host_exits_like_verify(trio, tmp_path):
    db = tmp_path / "lib.sqlite"
    run_embkit("library", "--db", str(db), "scan", "-q", str(trio))
    done, results = _json("check", "--model", "sd1", "--host", "a1111", "--json", db=db)
    assert done.returncode == 7  # the SDXL whatever-2000 is skipped by A1111 on SD1
    by_path = {Path(r["path"]).name + ("/" + Path(r["path"]).parent.name if Path(r["path"]).name == "learned_embeds.bin" else ""): r for r in results}
    assert by_path["whatever-2000.safetensors"]["loads"] is False
    assert by_path["learned_embeds.bin/a"]["hosts"]["a1111"]["trigger"] == "learned_embeds"
    assert by_path["learned_embeds.pt"]["loads"] is True
    ok, _ = _json("check", "--model", "sd1", "--host", "a1111", "--name", "whatever-200", "--json", db=db)
    assert ok.returncode == 0


def test_inspect_json_says_where_each_host_applies_it(tmp_path):
    path = mk.kohya_file(tmp_path / "neg.safetensors", mk.vectors(2, 768, seed=1))
    done = run_embkit("inspect", str(path), "--json")
    [rep] = json.loads(done.stdout)
    assert rep["families"] == ["sd1", "sdxl", "flux", "sd3"]  # the contract is unchanged
    assert rep["hosts"]["a1111"]["families"]["sd1"]["status"] == "loads" and rep["hosts"]["a1111"]["families"]["sdxl"]["status"] == "skipped"
    assert rep["hosts"]["comfyui"]["families"]["sdxl"] == {"status": "partial", "applied": ["clip_l"]}
    assert rep["hosts"]["diffusers"]["trigger"] == "emb_params" and rep["embeddings"][0]["hosts"] == rep["hosts"]
    human = run_embkit("inspect", str(path))
    assert "fits:" not in human.stdout and "ComfyUI:" in human.stdout and "SDXL's CLIP-L" in human.stdout


def test_convert_for_refuses_with_to(tmp_path):
    src = mk.kohya_file(tmp_path / "x.safetensors", mk.vectors(1, 768, seed=1))
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "y.pt"), "--to", "a1111", "--for", "comfyui")
    assert done.returncode == 2 and "not both" in done.stderr
    one = run_embkit("convert", str(src), "-o", str(tmp_path / "y.pt"), "--for", "a1111", "--json")
    assert one.returncode == 0, one.stderr
    [f] = json.loads(one.stdout)["files"]
    assert f["hosts"][0]["trigger"] == "y" and f["hosts"][0]["status"] == "loads"

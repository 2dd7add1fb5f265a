"""``embkit verify --render`` as a user runs it: several embeddings as rows of one sheet or one
sheet per file, progress reported through the callback, a Hub model fetched one weight variant at
a time, and the missing-dependency exit (11) when torch and diffusers cannot be imported."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

DEMO = ROOT / "fixtures" / "sd1-demo.safetensors"


def _embedding(path: Path, seed: int, rows: int = 2) -> Path:
    from safetensors.numpy import save_file

    save_file({"emb_params": (np.random.default_rng(seed).standard_normal((rows, 768)) * 0.4).astype(np.float32)}, str(path))
    return path


def test_missing_torch_and_diffusers_exit_11_with_the_install_line(tmp_path):
    """The imports are blocked in a fresh interpreter (None in sys.modules), as on an install without them."""
    sheet = tmp_path / "s.png"
    code = ("import sys\nfor m in ('torch', 'diffusers', 'transformers', 'accelerate'):\n    sys.modules[m] = None\n"
            "from embkit.cli.main import main\nmain(sys.argv[1:])\n")
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-c", code, "verify", str(DEMO), "--render", "-o", str(sheet), *extra],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 11, proc.stderr
        assert "Traceback" not in proc.stderr and not sheet.exists()
        if extra:
            doc = json.loads(proc.stdout)
            assert doc["exit_code"] == 11 and doc["error"]["code"] == "missing-dependency"
            assert "pip install 'embkit[diffusers]'" in doc["error"]["message"]
        else:
            err = " ".join(proc.stderr.split())
            assert "error[missing-dependency]: rendering needs torch, transformers, diffusers" in err
            assert "pip install 'embkit[diffusers]'" in err and "would load" in proc.stdout  # validation ran first, torch-free


torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from embkit.cli import render as cli_render  # noqa: E402
from embkit.diffusers import infotext, render, sheet as sheets  # noqa: E402


def test_several_embeddings_are_rows_of_one_sheet_or_one_sheet_each(tmp_path, capsys):
    a, b = _embedding(tmp_path / "alpha.safetensors", 1), _embedding(tmp_path / "beta.safetensors", 2)
    sheet = tmp_path / "both.png"
    code = cli_render.run(paths=[str(a), str(b)], seeds=(1, 2), steps=1, device="cpu", output=str(sheet), json_out=True,
                          negative="blurry", size=(64, 48), guidance=3.0)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc
    assert [r["name"] for r in doc["rows"]] == ["alpha", "beta"] and doc["sheet"] == str(sheet)
    assert (doc["width"], doc["height"], doc["guidance"], doc["negative_prompt"]) == (64, 48, 3.0, "blurry")
    assert set(doc["timings"]) == {"import", "build", "render", "sheet"}
    fields = infotext.parse(sheets.read_parameters(sheet))
    assert (fields["Embeddings"], fields["Embedding 2"], fields["Size"], fields["CFG scale"], fields["Seeds"]) == ("2", "beta", "64x48", "3", "1, 2")
    assert fields["Prompt"] == "a photo, alpha" and fields["Prompt 2"] == "a photo, beta" and fields["Negative prompt"] == "blurry"
    hashes = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in (a, b)}
    assert fields["TI hashes"] == f"alpha: {hashes['alpha']}, beta: {hashes['beta']}"

    out = tmp_path / "sheets"
    out.mkdir()
    code = cli_render.run(paths=[str(a), str(b)], seeds=(1,), steps=1, device="cpu", output=str(out), json_out=True, sheet_per_file=True)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["sheets"] == [str(out / "alpha.render.png"), str(out / "beta.render.png")]
    for name in ("alpha", "beta"):
        fields = infotext.parse(sheets.read_parameters(out / f"{name}.render.png"))
        assert (fields["Embeddings"], fields["Embedding 1"]) == ("1", name)
    code = cli_render.run(paths=[str(a)], device="cpu", output=str(out / "nodir"), json_out=True, sheet_per_file=True)
    assert code == 9 and "with --sheet-per-file, -o names the folder" in json.loads(capsys.readouterr().out)["error"]["message"]


def test_progress_is_reported_per_image_and_step():
    from embkit.diffusers.tiny import tiny_pipeline

    pipe = tiny_pipeline("sd1")
    events = []
    comparison = render.compare(pipe, [str(DEMO)], seeds=(0, 1), steps=3, progress=events.append)
    assert comparison.changed
    starts = [e for e in events if e.step == 0]
    assert [e.image for e in starts] == [1, 2, 3, 4] and {e.images for e in events} == {4}
    assert [e.label for e in starts] == ["sd1-demo · seed 0 · before", "sd1-demo · seed 1 · before", "sd1-demo · seed 0 · after", "sd1-demo · seed 1 · after"]
    assert [e.step for e in events if e.image == 3] == [0, 1, 2, 3] and {e.steps for e in events} == {3}


def _hub_files(tmp_path: Path) -> dict[str, bytes]:
    """A tiny SD1 diffusers repo as the Hub holds SD1.5: plain and fp16 weights, a non-EMA UNet, a
    safety checker, a feature extractor and a root single-file checkpoint. The text encoder has no
    fp16 file, so an fp16 render must fall back to its plain weights for it."""
    from safetensors.numpy import save_file

    from embkit.diffusers.tiny import tiny_pipeline

    pipe = tiny_pipeline("sd1")
    pipe.save_pretrained(str(tmp_path / "fp32"))
    pipe.to(dtype=torch.float16).save_pretrained(str(tmp_path / "fp16"), variant="fp16")
    files = {str(p.relative_to(tmp_path / "fp32")): p.read_bytes() for p in (tmp_path / "fp32").rglob("*") if p.is_file()}
    files.update({str(p.relative_to(tmp_path / "fp16")): p.read_bytes() for p in (tmp_path / "fp16").rglob("*.fp16.safetensors")})
    files.pop("text_encoder/model.fp16.safetensors")
    index = json.loads(files["model_index.json"])
    index.update(safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"], feature_extractor=["transformers", "CLIPImageProcessor"])
    files["model_index.json"] = json.dumps(index).encode()
    save_file({"w": np.zeros((8, 8), np.float32)}, str(tmp_path / "small.safetensors"))
    small = (tmp_path / "small.safetensors").read_bytes()
    files.update({"safety_checker/config.json": b"{}", "safety_checker/model.safetensors": small, "feature_extractor/preprocessor_config.json": b"{}",
                  "unet/diffusion_pytorch_model.non_ema.safetensors": files["unet/diffusion_pytorch_model.safetensors"],
                  "v1-5-pruned-emaonly.safetensors": small})
    return files


@pytest.mark.slow
def test_a_hub_model_downloads_only_what_the_render_needs_in_one_variant(tmp_path):
    from hub_server import HubServer

    hub = HubServer().start()
    try:
        hub.add_repo("someorg/tiny-sd", _hub_files(tmp_path / "repo"))
        plain = {"unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"}
        half = {"unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors", "text_encoder/model.safetensors"}
        for dtype, weights in (("float32", plain), ("float16", half)):
            home = tmp_path / dtype
            home.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
            env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(home / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
            before = len(hub.state.log)
            proc = subprocess.run([sys.executable, "-m", "embkit", "verify", str(DEMO), "--render", "--model", "someorg/tiny-sd", "--device", "cpu",
                                   "--dtype", dtype, "--steps", "1", "--size", "64", "-o", str(home / "s.png"), "--json"],
                                  capture_output=True, text=True, env=env, cwd=home, timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
            doc = json.loads(proc.stdout)
            assert doc["dtype"] == dtype and doc["model"] == "someorg/tiny-sd" and doc["rows"][0]["changed"]
            fetched = {r["path"].split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.state.log[before:] if "/resolve/" in r["path"]}
            assert {f for f in fetched if f.endswith(".safetensors")} == weights
            assert not any(f.startswith(("safety_checker/", "feature_extractor/")) for f in fetched), fetched
            assert "model_index.json" in fetched and "tokenizer/tokenizer.json" in fetched
    finally:
        hub.stop()

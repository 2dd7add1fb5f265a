"""The user's own model, full size: an SD1.5-architecture single-file checkpoint (seeded random fp16
weights, 2.1 GB, in the key layout A1111 saves: ``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.text_model.*``) rendered offline (``HF_HUB_OFFLINE=1``, an empty
``HF_HOME``) by ``embkit verify --render`` at 64 pixels and 2 steps, and its sheet checked.

The checkpoint is built once per session in a temporary folder and deleted afterwards. The render
runs in bfloat16 (half the memory of float32: about 4.6 GB at peak) on one CPU thread: on a shared
two-core machine two threads wait on each other and take several times longer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import ROOT  # noqa: E402
from embkit.diffusers import infotext, sheet as sheets  # noqa: E402
from embkit.diffusers.comparison import Comparison, Row, SeedRender  # noqa: E402
from singlefile_fixtures import full_size_keys, write_clip_vocab, write_random_checkpoint  # noqa: E402

DEMO = ROOT / "fixtures" / "sd1-demo.safetensors"


@pytest.fixture(scope="session")
def sd15_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd15")
    keys = full_size_keys("v1")
    assert len(keys) == 1130 and keys["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)
    path = write_random_checkpoint(folder / "sd15-random.safetensors", keys, seed=0)
    yield path
    shutil.rmtree(folder, ignore_errors=True)  # 2.1 GB: not left for pytest's rotation of old temporary folders


@pytest.mark.slow
def test_full_size_sd15_single_file_renders_offline_and_the_sheet_says_so(sd15_checkpoint, tmp_path):
    host = tmp_path / "ComfyUI"  # the tokenizer comes from a host install, as ComfyUI ships it (model_max_length 8192)
    write_clip_vocab(host / "comfy" / "sd1_tokenizer", 49408, config={"model_max_length": 8192, "tokenizer_class": "CLIPTokenizer"})
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    sheet = tmp_path / "sheet.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hf_home), HOME=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "embkit", "verify", str(DEMO), "--render", "--model", str(sd15_checkpoint), "--host-dir", str(host),
                           "--size", "64", "--steps", "2", "--seed", "5", "--dtype", "bfloat16", "--device", "cpu", "-o", str(sheet), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["model"] == "sd15-random.safetensors" and (doc["device"], doc["dtype"], doc["width"], doc["steps"]) == ("cpu", "bfloat16", 64, 2)
    assert doc["notes"] == [f"SD1 (v1), epsilon (default); tokenizer: ComfyUI install --host-dir {host}"]
    row = doc["rows"][0]
    assert row["name"] == "sd1-demo" and row["changed"] and row["conditioning_cosine_distance"] > 1e-3
    assert not any(files for _, _, files in os.walk(hf_home))  # nothing fetched, nothing cached

    fields = infotext.parse(sheets.read_parameters(sheet))
    digest = hashlib.sha256(DEMO.read_bytes()).hexdigest()[:12]
    assert {k: fields[k] for k in ("Prompt", "Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "TI hashes", "Dtype", "Device", "Embeddings")} == {
        "Prompt": "a photo, sd1-demo", "Steps": "2", "Sampler": "Euler", "CFG scale": "7.5", "Seed": "5", "Size": "64x64",
        "Model": "sd15-random.safetensors", "TI hashes": f"sd1-demo: {digest}", "Dtype": "bfloat16", "Device": "cpu", "Embeddings": "1"}

    from PIL import Image

    blank = np.zeros((64, 64, 3), np.uint8)
    same = Comparison(**{k: doc[k] for k in ("model", "device", "dtype", "prompt", "negative_prompt", "as_negative", "steps", "width", "height",
                                             "guidance", "sampler", "seeds")},
                      rows=[Row(row["name"], row["trigger"], row["prompt"], row["negative_prompt"], [SeedRender(5, blank, blank, 0.0)], 0.0)],
                      version=doc["embkit_version"])
    box = sheets.layout(same)
    with Image.open(sheet) as im:
        assert im.size == (box.width, box.height)
        pixels = np.asarray(im.convert("RGB")).astype(int)
    (bx, by), (ax, ay), (hx, hy) = box.tiles[0][0]
    before, after, heat = (pixels[y : y + 128, x : x + 128] for x, y in ((bx, by), (ax, ay), (hx, hy)))
    assert before.std() > 5 and np.abs(after - before).mean() > 0.5  # real pictures, and the embedding moved them
    assert (heat.sum(axis=2) > 0).mean() > 0.1  # the heat map shows where


@pytest.mark.slow
def test_previews_render_with_a_full_size_single_file_offline(sd15_checkpoint, tmp_path):
    """``embkit previews --model file.safetensors`` builds the pipeline with verify --render's loader:
    offline, the tokenizer from --tokenizer, the checkpoint's own defaults unless told."""
    tokenizer = write_clip_vocab(tmp_path / "tokenizer", 49408)
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    emb = tmp_path / "emb"
    emb.mkdir()
    shutil.copy(DEMO, emb / "sd1-demo.safetensors")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hf_home), HOME=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "embkit", "previews", str(emb), "--model", str(sd15_checkpoint), "--tokenizer", str(tokenizer),
                           "--size", "64", "--steps", "2", "--dtype", "bfloat16", "--device", "cpu", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["model"].endswith("sd15-random.safetensors") and doc["written"] == 1
    assert not any(files for _, _, files in os.walk(hf_home))  # nothing fetched, nothing cached
    from PIL import Image

    with Image.open(emb / "sd1-demo.preview.png") as im:
        assert im.size == (64, 64)
        fields = infotext.parse(im.info["parameters"])
        assert np.asarray(im.convert("RGB")).std() > 5  # a real picture
    digest = hashlib.sha256(DEMO.read_bytes()).hexdigest()[:12]
    assert {k: fields[k] for k in ("Prompt", "Steps", "CFG scale", "Size", "Model", "TI hashes")} == {
        "Prompt": "a photo of sd1-demo", "Steps": "2", "CFG scale": "7.5", "Size": "64x64", "Model": "sd15-random.safetensors",
        "TI hashes": f"sd1-demo: {digest}"}

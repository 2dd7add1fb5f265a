"""``embkit push`` and ``embkit.hub.model_folder`` against the local fake Hub (tests/hub_server.py),
through the real huggingface_hub client in a fresh process."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save as st_save

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import WRITE_TOKEN, HubServer, run_client  # noqa: E402
from test_hub import a1111_pt, run  # noqa: E402

RNG = np.random.default_rng(19)


@pytest.fixture(scope="module")
def hub():
    srv = HubServer().start()
    yield srv
    srv.stop()


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_push_creates_the_repo_and_commits_the_file_and_a_card(hub, tmp_path):
    data = st_save({"clip_l": RNG.standard_normal((3, 768)).astype(np.float32),
                    "clip_g": RNG.standard_normal((3, 1280)).astype(np.float32)})
    src = tmp_path / "neon-style.safetensors"
    src.write_bytes(data)
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(png_bytes())
    proc = run(hub, tmp_path, "push", str(src), "tester/neon-style", "--sheet", str(sheet), "-m", "first upload",
               HF_TOKEN=WRITE_TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert f"{hub.endpoint}/tester/neon-style" in proc.stdout
    files = hub.files("tester/neon-style")
    assert files["neon-style.safetensors"] == data
    assert files["contact_sheet.png"] == sheet.read_bytes()
    card = files["README.md"].decode()
    sha = hashlib.sha256(data).hexdigest()
    for needle in ("library_name: diffusers", "stable-diffusion-xl", "Trigger word: `neon-style`", "| clip_g | 3 | 1280 | float32 |",
                   sha, sha[:10], "![embkit verify contact sheet](contact_sheet.png)",
                   "state_dict = load_file(hf_hub_download('tester/neon-style', 'neon-style.safetensors'))",
                   "ed.apply(pipe, hf_hub_download('tester/neon-style', 'neon-style.safetensors'))"):
        assert needle in card, needle
    assert hub.state.repos["tester/neon-style"].messages[-1] == "first upload"
    create = [r for r in hub.requests("POST", "/api/repos/create")]
    assert create and all(r["auth"] == f"Bearer {WRITE_TOKEN}" for r in create)


def test_push_converts_other_formats_to_safetensors(hub, tmp_path):
    pytest.importorskip("embkit.writing")
    values = RNG.standard_normal((2, 768)).astype(np.float32)
    src = tmp_path / "bad-hands.pt"
    src.write_bytes(a1111_pt("bad-hands", values))
    proc = run(hub, tmp_path, "push", str(src), "tester/bad-hands", "--private", HF_TOKEN=WRITE_TOKEN)
    assert proc.returncode == 0, proc.stderr
    files = hub.files("tester/bad-hands")
    assert "bad-hands.pt" not in files
    out = tmp_path / "back.safetensors"
    out.write_bytes(files["bad-hands.safetensors"])
    import embkit

    emb = embkit.read(out)
    assert np.array_equal(emb.vectors["clip_l"], values)
    assert "converted by embkit from `bad-hands.pt`" in files["README.md"].decode()
    assert hub.state.repos["tester/bad-hands"].private is True


def test_push_to_an_existing_repo_adds_a_commit(hub, tmp_path):
    src = tmp_path / "twice.safetensors"
    src.write_bytes(st_save({"emb_params": RNG.standard_normal((1, 768)).astype(np.float32)}))
    for _ in range(2):
        assert run(hub, tmp_path, "push", str(src), "tester/twice", HF_TOKEN=WRITE_TOKEN).returncode == 0
    src.write_bytes(st_save({"emb_params": RNG.standard_normal((2, 768)).astype(np.float32)}))
    assert run(hub, tmp_path, "push", str(src), "tester/twice", HF_TOKEN=WRITE_TOKEN).returncode == 0
    assert hub.files("tester/twice")["twice.safetensors"] == src.read_bytes()


def test_push_without_a_write_token_is_a_hub_error(hub, tmp_path):
    src = tmp_path / "x.safetensors"
    src.write_bytes(st_save({"emb_params": RNG.standard_normal((1, 768)).astype(np.float32)}))
    proc = run(hub, tmp_path, "push", str(src), "tester/nope")
    assert proc.returncode == 12
    assert "tester/nope" in proc.stderr and "401" in proc.stderr
    assert "tester/nope" not in hub.state.repos


def test_pushed_file_pulls_back(hub, tmp_path):
    values = RNG.standard_normal((4, 768)).astype(np.float32)
    src = tmp_path / "roundtrip.safetensors"
    src.write_bytes(st_save({"emb_params": values}))
    assert run(hub, tmp_path, "push", str(src), "tester/roundtrip", HF_TOKEN=WRITE_TOKEN).returncode == 0
    proc = run(hub, tmp_path, "pull", "tester/roundtrip", "-o", str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    [res] = json.loads(proc.stdout)
    assert res["embeddings"][0]["name"] == "roundtrip"
    assert (tmp_path / "o" / "roundtrip.safetensors").read_bytes() == src.read_bytes()


def sheet_png() -> bytes:
    """A contact sheet as embkit writes it: a PNG carrying embkit.diffusers.render's sheet marker."""
    from PIL.PngImagePlugin import PngInfo

    from embkit.diffusers.sheet import SHEET_KEY, SHEET_VALUE

    info = PngInfo()
    info.add_text(SHEET_KEY, SHEET_VALUE)
    buf = io.BytesIO()
    Image.new("RGB", (32, 16), (10, 200, 30)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def test_a_repo_pushed_with_a_sheet_pulls_cleanly(hub, tmp_path):
    """Regression: the uploaded contact_sheet.png was read as an embedding card and failed the pull
    (exit 3, broken-file). A picture holding no embedding is left out, like inspect leaves it out."""
    from embkit.diffusers.sheet import is_sheet

    src = tmp_path / "bh.safetensors"
    src.write_bytes(st_save({"emb_params": RNG.standard_normal((2, 768)).astype(np.float32)}))
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(sheet_png())
    assert is_sheet(sheet)
    assert run(hub, tmp_path, "push", str(src), "tester/my-style", "--sheet", str(sheet), HF_TOKEN=WRITE_TOKEN).returncode == 0
    assert "contact_sheet.png" in hub.files("tester/my-style")
    out = tmp_path / "pushed"
    proc = run(hub, tmp_path, "pull", "tester/my-style", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    [res] = json.loads(proc.stdout)
    assert (res["filename"], res["embeddings"][0]["name"]) == ("bh.safetensors", "bh")
    assert sorted(p.name for p in out.iterdir()) == ["bh.safetensors"], "the sheet stays out of -o"
    human = run(hub, tmp_path, "pull", "tester/my-style", "-o", str(out))
    assert human.returncode == 0 and "contact_sheet" not in human.stdout + human.stderr
    # named with --file, a picture is still reported for what it is
    named = run(hub, tmp_path, "pull", "tester/my-style", "--file", "contact_sheet.png")
    assert named.returncode == 3 and "broken-file" in named.stderr


def test_a_repo_of_pictures_only_holds_no_embeddings(hub, tmp_path):
    hub.add_repo("tester/samples", {"sample.png": png_bytes(), "README.md": b"samples\n"})
    proc = run(hub, tmp_path, "pull", "tester/samples")
    assert proc.returncode == 12
    assert "no embedding files" in proc.stderr


def test_preview_pictures_come_along_but_are_not_embeddings(hub, tmp_path):
    """Issue 15: pull fetches a preview with its embedding (it used to skip them) and copies it
    beside the output; the preview itself is not reported as a file that holds no embedding."""
    hub.add_repo("tester/with-preview", {"style.safetensors": st_save({"emb_params": RNG.standard_normal((1, 768)).astype(np.float32)}),
                                         "style.preview.png": png_bytes(), "unrelated.preview.png": png_bytes()})
    [res] = json.loads(run(hub, tmp_path, "pull", "tester/with-preview", "-o", tmp_path / "out", "--json").stdout)
    assert res["filename"] == "style.safetensors"
    heads = {r["path"].rsplit("/", 1)[-1] for r in hub.requests("HEAD", "/tester/with-preview/resolve/")}
    assert {"style.safetensors", "style.preview.png"} <= heads
    assert (tmp_path / "out" / "style.preview.png").read_bytes() == png_bytes()
    assert res["sidecars"] == [str(tmp_path / "out" / "style.preview.png")]


def card_code(card: str, after: str) -> str:
    """The first ```python block of ``card`` after the line starting with ``after``."""
    rest = card[card.index(after):]
    return rest.split("```python\n", 1)[1].split("```", 1)[0]


#: Run in the snippets' process: the pipeline's own __call__ with one step at 64 px (a tiny
#: pipeline's defaults render 50 steps at 512 px), so a snippet's ``pipe(prompt)`` line runs as written.
FAST_CALL = (
    "import functools\n"
    "def fast(pipe):\n"
    "    cls = type(pipe)\n"
    "    pipe.__class__ = type(cls.__name__, (cls,), {'__call__': functools.partialmethod(cls.__call__, num_inference_steps=1, height=64, width=64)})\n"
    "    return pipe\n"
)


@pytest.mark.slow
def test_card_snippets_load_an_sdxl_file_into_a_diffusers_pipeline(hub, tmp_path):
    """Regression: the card told diffusers users to load an SDXL (clip_l + clip_g) file with one
    load_textual_inversion call, which diffusers refuses. Both of the card's snippets run here as
    written, against the pushed repo on the fake Hub and embkit's tiny SDXL pipeline."""
    pytest.importorskip("diffusers")
    pytest.importorskip("embkit.diffusers.tiny")
    clip_l = RNG.standard_normal((2, 768)).astype(np.float32) * 0.02
    clip_g = RNG.standard_normal((2, 1280)).astype(np.float32) * 0.02
    src = tmp_path / "sdxl-demo.safetensors"
    src.write_bytes(st_save({"clip_l": clip_l, "clip_g": clip_g}))
    assert run(hub, tmp_path, "push", str(src), "tester/xl", HF_TOKEN=WRITE_TOKEN).returncode == 0
    card = hub.files("tester/xl")["README.md"].decode()
    (tmp_path / "diffusers_snippet.py").write_text(card_code(card, "### diffusers"))
    (tmp_path / "embkit_snippet.py").write_text(card_code(card, "### embkit"))
    assert "load_textual_inversion" in (tmp_path / "diffusers_snippet.py").read_text()
    code = FAST_CALL + (
        "import json, runpy, numpy as np\n"
        "from embkit.diffusers.tiny import tiny_pipeline\n"
        "out = {}\n"
        "for name in ('diffusers_snippet.py', 'embkit_snippet.py'):\n"
        "    pipe = fast(tiny_pipeline('sdxl'))\n"
        "    runpy.run_path(name, init_globals={'pipe': pipe})\n"
        "    rows = {}\n"
        "    for enc, tok in (('text_encoder', 'tokenizer'), ('text_encoder_2', 'tokenizer_2')):\n"
        "        ids = getattr(pipe, tok).convert_tokens_to_ids(['sdxl-demo', 'sdxl-demo_1'])\n"
        "        rows[enc] = getattr(pipe, enc).get_input_embeddings().weight[ids].detach().float().numpy().tolist()\n"
        "    out[name] = rows\n"
        "print(json.dumps(out))\n"
    )
    proc = run_client(hub, code, tmp_path / "hf", cwd=tmp_path, timeout=300)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, rows in out.items():
        assert np.allclose(rows["text_encoder"], clip_l, atol=1e-6), name
        assert np.allclose(rows["text_encoder_2"], clip_g, atol=1e-6), name


def test_model_folder_fetches_configs_and_tokenizers_only(hub, tmp_path):
    files = {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline"}).encode(),
        "text_encoder/config.json": json.dumps({"hidden_size": 768}).encode(),
        "text_encoder/model.safetensors": st_save({"w": np.zeros((4, 4), np.float32)}),
        "tokenizer/vocab.json": b"{}",
        "tokenizer/merges.txt": b"#version: 0.2\n",
        "unet/config.json": b"{}",
        "unet/diffusion_pytorch_model.safetensors": st_save({"w": np.zeros((64, 64), np.float32)}),
        "v1-5-pruned.safetensors": st_save({"w": np.zeros((64, 64), np.float32)}),
    }
    hub.add_repo("someorg/tiny-sd", files)
    hub.add_repo("someone/not-a-model", {"x.safetensors": st_save({"emb_params": np.zeros((1, 768), np.float32)})})
    code = ("import json, os, sys, embkit.hub as h\n"
            "out = {}\n"
            "for inc in ('config', 'text_encoders', 'all'):\n"
            "    f = h.model_folder('someorg/tiny-sd', include=inc)\n"
            "    out[inc] = sorted(os.path.relpath(os.path.join(r, n), f) for r, _, ns in os.walk(f) for n in ns)\n"
            "try:\n    h.model_folder('someone/not-a-model')\nexcept Exception as e:\n    out['err'] = [type(e).__name__, str(e)]\n"
            "out['torch'] = 'torch' in sys.modules\n"
            "print(json.dumps(out))\n")
    proc = run_client(hub, code, tmp_path)
    out = json.loads(proc.stdout)
    assert out["config"] == ["model_index.json", "text_encoder/config.json", "tokenizer/merges.txt", "tokenizer/vocab.json", "unet/config.json"]
    assert "text_encoder/model.safetensors" in out["text_encoders"]
    assert "unet/diffusion_pytorch_model.safetensors" not in out["text_encoders"]
    assert "unet/diffusion_pytorch_model.safetensors" in out["all"]
    assert "v1-5-pruned.safetensors" not in out["all"]
    assert out["err"][0] == "HubError" and "someone/not-a-model" in out["err"][1]
    assert out["torch"] is False


def test_verify_model_accepts_a_hub_id(hub, tmp_path):
    """embkit.validate resolves ``org/name`` through hub.model_folder (the verify --model HUB_ID path)."""
    pytest.importorskip("embkit.check.validate")
    files = {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline"}).encode(),
        "text_encoder/config.json": json.dumps({"hidden_size": 768, "max_position_embeddings": 77, "vocab_size": 49408,
                                                "architectures": ["CLIPTextModel"], "model_type": "clip_text_model"}).encode(),
    }
    hub.add_repo("someorg/verify-target", files)
    src = tmp_path / "e.safetensors"
    src.write_bytes(st_save({"emb_params": RNG.standard_normal((2, 1280)).astype(np.float32) * 0.02}))
    code = ("import embkit, json\n"
            "r = embkit.validate(embkit.read('e.safetensors'), 'someorg/verify-target')\n"
            "print(json.dumps(r.codes()))\n")
    proc = run_client(hub, code, tmp_path, cwd=tmp_path)
    assert "width-mismatch" in json.loads(proc.stdout)


def test_verify_cli_with_a_hub_model(hub, tmp_path):
    """``embkit verify --model ORG/NAME`` fetches the model's configs through the Hub client."""
    pytest.importorskip("embkit.cli.verify")
    files = {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionXLPipeline"}).encode(),
        "text_encoder/config.json": json.dumps({"hidden_size": 768, "max_position_embeddings": 77, "vocab_size": 49408,
                                                "model_type": "clip_text_model"}).encode(),
        "text_encoder_2/config.json": json.dumps({"hidden_size": 1280, "projection_dim": 1280, "max_position_embeddings": 77,
                                                  "vocab_size": 49408, "model_type": "clip_text_model"}).encode(),
    }
    hub.add_repo("someorg/xl-target", files)
    src = tmp_path / "sd1.safetensors"
    src.write_bytes(st_save({"emb_params": RNG.standard_normal((2, 768)).astype(np.float32) * 0.02}))
    proc = run(hub, tmp_path, "verify", str(src), "--model", "someorg/xl-target", "--json")
    assert proc.returncode != 0, proc.stdout
    assert "missing-slot" in proc.stdout and "clip_g" in proc.stdout
    assert any("/someorg/xl-target/resolve/" in r["path"] for r in hub.requests("HEAD"))

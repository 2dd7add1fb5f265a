"""Finding CLIP's tokenizer offline (embkit.model.tokenizers): an explicit folder, host installs
(ComfyUI, Forge, A1111's open_clip vocabulary), the Hugging Face cache, the usual install places;
the 49,408-token check; the error that lists every place looked at."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

import embkit
from embkit.model import tokenizers
from singlefile_fixtures import write_clip_vocab


@pytest.fixture(autouse=True)
def empty_home(tmp_path, monkeypatch):
    """No real ~/ComfyUI or HF cache of the machine running the tests may answer."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A CLIP-shaped vocabulary of the real size (49,408 tokens), written as vocab.json + merges.txt."""
    return write_clip_vocab(tmp_path_factory.mktemp("clip") / "full", 49408)


def _copy(src, dst, config=None):
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        (dst / name).write_bytes((src / name).read_bytes())
    if config is not None:
        (dst / "tokenizer_config.json").write_text(json.dumps(config))
    return dst


def test_explicit_folder_and_its_size_check(full, tmp_path):
    found = tokenizers.find_clip_tokenizer(tokenizer=str(full))
    assert (found.path, found.kind, found.where) == (str(full), "folder", f"--tokenizer {full}")
    small = write_clip_vocab(tmp_path / "small", 1190)
    with pytest.raises(embkit.TargetError, match=r"1190 tokens, not CLIP's 49408") as info:
        tokenizers.find_clip_tokenizer(tokenizer=str(small))
    assert "--host-dir" in str(info.value) and "hf download openai/clip-vit-large-patch14" in str(info.value)
    assert tokenizers.find_clip_tokenizer(tokenizer=str(small), expected_size=None).path == str(small)
    model = tmp_path / "model"  # a diffusers model folder: its tokenizer/ is used
    _copy(full, model / "tokenizer")
    assert tokenizers.find_clip_tokenizer(tokenizer=str(model)).path == str(model / "tokenizer")


def test_a_folder_without_the_files_is_refused_not_a_two_token_tokenizer(tmp_path):
    """transformers builds a 2-token CLIPTokenizer from a folder holding only tokenizer_config.json."""
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    with pytest.raises(embkit.TargetError, match="no vocab.json \\+ merges.txt or tokenizer.json"):
        tokenizers.find_clip_tokenizer(tokenizer=str(bare))
    CLIPTokenizer = pytest.importorskip("transformers").CLIPTokenizer
    assert len(CLIPTokenizer.from_pretrained(str(bare))) == 2  # the trap the check is for


def test_host_installs_comfyui_forge_a1111(full, tmp_path):
    comfy = tmp_path / "ComfyUI"
    _copy(full, comfy / "comfy" / "sd1_tokenizer", {"model_max_length": 8192, "tokenizer_class": "CLIPTokenizer"})
    found = tokenizers.find_clip_tokenizer(host_dirs=[str(comfy)], search=False)
    assert found.path == str(comfy / "comfy" / "sd1_tokenizer") and found.where == f"ComfyUI install --host-dir {comfy}"
    pytest.importorskip("transformers")
    from embkit.diffusers.pipelines import clip_tokenizer

    tok = clip_tokenizer(found, "<|endoftext|>")
    assert tok.model_max_length == 77 and len(tok) == 49408  # ComfyUI's copy says 8192: diffusers would pad to it
    assert clip_tokenizer(found, "!").pad_token_id == 0 and tok.pad_token_id == 49407

    forge = tmp_path / "stable-diffusion-webui-forge"
    _copy(full, forge / "backend" / "huggingface" / "stabilityai" / "stable-diffusion-xl-base-1.0" / "tokenizer")
    assert tokenizers.find_clip_tokenizer(host_dirs=[str(forge)], search=False).where.startswith("Forge install")

    a1111 = tmp_path / "stable-diffusion-webui"
    site = a1111 / "venv" / "lib" / "python3.10" / "site-packages" / "open_clip"
    site.mkdir(parents=True)
    vocab = json.loads((full / "vocab.json").read_text())
    merges = (full / "merges.txt").read_text().splitlines()[1:]
    # open_clip's file: a header line, then many more merges than CLIP uses (it reads the first 48,894)
    (site / tokenizers.BPE_GZ).write_bytes(gzip.compress(("bpe_simple_vocab_16e6.txt#version: 0.2\n" + "\n".join(merges + ["z z"] * 50) + "\n").encode()))
    found = tokenizers.find_clip_tokenizer(host_dirs=[str(a1111)], search=False)
    assert found.kind == "bpe-gz" and found.where.startswith("A1111 install")
    built, pairs = tokenizers.read_bpe_gz(found.path)
    assert built == vocab and len(pairs) == 48894
    from_gz, from_files = clip_tokenizer(found, "!"), clip_tokenizer(tokenizers.find_clip_tokenizer(tokenizer=str(full)), "!")
    text = "a photo of an astronaut riding a horse, masterpiece"
    assert from_gz(text).input_ids == from_files(text).input_ids and len(from_gz(text).input_ids) > 8


def test_usual_install_places_under_home(full, empty_home):
    _copy(full, empty_home / "ComfyUI" / "comfy" / "sd1_tokenizer")
    found = tokenizers.find_clip_tokenizer()
    assert found.where == "ComfyUI install ~/ComfyUI"


def test_nothing_found_lists_every_place_looked(tmp_path):
    with pytest.raises(embkit.TargetError) as info:
        tokenizers.find_clip_tokenizer(host_dirs=[str(tmp_path / "nowhere")])
    text = str(info.value)
    assert "no CLIP tokenizer found" in text and "vocab.json + merges.txt" in text
    assert f"ComfyUI install --host-dir {tmp_path / 'nowhere'}: {tmp_path / 'nowhere' / 'comfy' / 'sd1_tokenizer'}: not found" in text
    assert "Hugging Face cache" in text and "openai/clip-vit-large-patch14" in text
    assert "~/ComfyUI: no such install" in text and "~/stable-diffusion-webui: no such install" in text


def test_the_hugging_face_cache_is_searched_offline(full, tmp_path):
    """A snapshot as huggingface_hub lays it out (refs/main → snapshots/<sha>), found through its cache API."""
    cache = tmp_path / "hf" / "hub" / "models--openai--clip-vit-large-patch14"
    sha = "a" * 40
    _copy(full, cache / "snapshots" / sha)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(sha)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HOME=str(tmp_path / "home"))
    code = "from embkit.model.tokenizers import find_clip_tokenizer as f; s = f(); print(s.where); print(s.path)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    where, path = proc.stdout.split("\n")[:2]
    assert where == "Hugging Face cache (openai/clip-vit-large-patch14)" and path == str(cache / "snapshots" / sha)

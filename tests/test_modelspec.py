"""ModelSpec: from a family, a tiny diffusers folder, a header-only checkpoint, a live pipeline, and
resolve_target; the torch-free CLIP vocabulary; no torch import for files and families."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from embkit.model.resolve import resolve_target
from embkit.model.slots import SlotSpec
from embkit.model.spec import ModelSpec
from embkit.errors import EmbkitError, TargetError
from embkit.model.vocab import Vocab, clip_words, read_tokenizer_folder
from validate_fixtures import SD1_KEYS, SD2_KEYS, SDXL_KEYS, build_model_folder, write_sparse_checkpoint, write_vocab_files


@pytest.fixture(scope="session")
def sd1_folder(tmp_path_factory):
    return build_model_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def sdxl_folder(tmp_path_factory):
    return build_model_folder(tmp_path_factory.mktemp("models"), sdxl=True)


# -- families -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, slots",
    [("sd1", {"clip_l": 768}), ("sd2", {"clip_h": 1024}), ("sdxl", {"clip_l": 768, "clip_g": 1280}),
     ("sd3", {"clip_l": 768, "clip_g": 1280, "t5": 4096}), ("flux", {"clip_l": 768, "t5": 4096})],
)
def test_from_family_slots_and_widths(name, slots):
    spec = ModelSpec.from_family(name)
    assert spec.family == name
    assert {s: v.width for s, v in spec.slots.items()} == slots
    assert all(v.vocab is None for v in spec.slots.values())
    assert all(v.token_limit == 75 for s, v in spec.slots.items() if s != "t5")


def test_family_t5_limits_and_aliases():
    assert ModelSpec.from_family("flux").slots["t5"].token_limit == 512
    assert ModelSpec.from_family("sd3").slots["t5"].token_limit == 256
    assert ModelSpec.from_family("SD1.5").family == "sd1"
    assert ModelSpec.from_family("xl").family == "sdxl"
    assert ModelSpec.from_family("sdxl").slots["clip_g"].component == "text_encoder_2"


def test_unknown_family_names_the_known_ones():
    with pytest.raises(TargetError, match="sd1, sd2, sdxl, sd3, flux"):
        ModelSpec.from_family("sd9")


def test_modelspec_is_frozen():
    spec = ModelSpec.from_family("sd1")
    with pytest.raises(Exception):
        spec.family = "sd2"
    with pytest.raises(TypeError):
        spec.slots["clip_g"] = SlotSpec(1280)


# -- vocabulary -------------------------------------------------------------------------------------
def test_clip_words_cut_like_clip():
    assert clip_words("bad-hands-5") == ["bad", "-", "hands", "-", "5"]
    assert clip_words("<My Style>") == ["<", "my", "style", ">"]
    assert clip_words("easynegative") == ["easynegative"]
    assert clip_words("a_b") == ["a", "_", "b"]


def test_vocab_json_and_merges_tokenize_like_transformers(tmp_path):
    from transformers import CLIPTokenizer

    write_vocab_files(tmp_path)
    vocab = read_tokenizer_folder(str(tmp_path))
    assert vocab is not None and vocab.can_tokenize
    ref = CLIPTokenizer.from_pretrained(str(tmp_path))
    for text in ["cat", "a cat style", "bad-hands-5", "Photo of SKS", "catstyle", "<tok>", "naïve café"]:
        assert vocab.tokenize(text) == ref.tokenize(text), text
    assert vocab.has_word("Cat") and not vocab.has_word("dog")


def test_tokenizer_json_is_read(tmp_path, sd1_folder):
    vocab = read_tokenizer_folder(str(sd1_folder / "tokenizer"))
    assert os.listdir(sd1_folder / "tokenizer") and not (sd1_folder / "tokenizer" / "vocab.json").exists()
    assert "cat</w>" in vocab and vocab.tokenize("cat style") == ["cat</w>", "style</w>"]


def test_unigram_tokenizer_json_gives_a_vocab_without_tokenize(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram", "vocab": [["▁cat", -1.0], ["▁dog", -2.0]]}, "added_tokens": [{"content": "<pad>"}]}))
    vocab = read_tokenizer_folder(str(tmp_path))
    assert "▁cat" in vocab and "<pad>" in vocab and not vocab.can_tokenize
    with pytest.raises(TargetError):
        vocab.tokenize("cat")


# -- folders ----------------------------------------------------------------------------------------
def test_from_folder_sd1_reads_config_vocab_and_real_norms(sd1_folder):
    import torch
    from transformers import CLIPTextModel

    spec = ModelSpec.from_folder(sd1_folder)
    assert spec.family == "sd1" and spec.kind == "folder" and list(spec.slots) == ["clip_l"]
    slot = spec.slots["clip_l"]
    assert slot.width == 768 and slot.token_limit == 75 and slot.component == "text_encoder"
    assert "cat</w>" in slot.vocab and "style</w>" in slot.vocab
    model = CLIPTextModel.from_pretrained(str(sd1_folder / "text_encoder"))
    norms = torch.linalg.vector_norm(model.get_input_embeddings().weight.detach().double(), dim=1).numpy()
    assert slot.token_norms.source == "matrix"
    assert slot.token_norms.count == norms.shape[0]
    assert slot.token_norms.median == pytest.approx(float(np.median(norms)), rel=1e-6)
    assert slot.token_norms.max == pytest.approx(float(norms.max()), rel=1e-6)


def test_from_folder_sdxl_second_encoder_without_weights_uses_prior(sdxl_folder):
    spec = ModelSpec.from_folder(str(sdxl_folder))
    assert spec.family == "sdxl"
    assert spec.slots["clip_g"].width == 1280 and spec.slots["clip_g"].component == "text_encoder_2"
    assert spec.slots["clip_g"].token_norms.source == "prior"
    assert spec.slots["clip_l"].token_norms.source == "matrix"
    assert any("text_encoder_2" in n and "prior" in n for n in spec.notes)


def test_from_folder_reads_norms_from_a_sharded_encoder(tmp_path, sd1_folder):
    import shutil

    folder = tmp_path / "sharded"
    shutil.copytree(sd1_folder, folder)
    enc = folder / "text_encoder"
    (enc / "model.safetensors").rename(enc / "model-00001-of-00001.safetensors")
    from embkit.model.headers import read_st_header

    keys = read_st_header(str(enc / "model-00001-of-00001.safetensors"))[0]
    (enc / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: "model-00001-of-00001.safetensors" for k in keys}}))
    sharded = ModelSpec.from_folder(folder).slots["clip_l"].token_norms
    assert sharded.source == "matrix"
    assert sharded == ModelSpec.from_folder(sd1_folder).slots["clip_l"].token_norms


def test_from_folder_refuses_a_huge_declared_token_matrix(tmp_path, sd1_folder):
    import shutil

    folder = tmp_path / "huge"
    shutil.copytree(sd1_folder / "text_encoder", folder / "text_encoder")
    write_sparse_checkpoint(folder / "text_encoder" / "model.safetensors", {"text_model.embeddings.token_embedding.weight": ("F16", [400_000, 768])})
    with pytest.raises(TargetError, match="past the cap"):
        ModelSpec.from_folder(folder)


def test_from_folder_rejects_a_folder_without_text_encoder(tmp_path):
    with pytest.raises(TargetError, match="text_encoder"):
        ModelSpec.from_folder(tmp_path)


# -- checkpoints ------------------------------------------------------------------------------------
OLD_SD1_KEYS = {"cond_stage_model.transformer.embeddings.token_embedding.weight": ("F32", [49408, 768])}  # transformers < 4.x naming


@pytest.mark.parametrize(
    "keys, family, slots",
    [(SD1_KEYS, "sd1", {"clip_l": 768}), (OLD_SD1_KEYS, "sd1", {"clip_l": 768}), (SD2_KEYS, "sd2", {"clip_h": 1024}),
     (SDXL_KEYS, "sdxl", {"clip_l": 768, "clip_g": 1280})],
)
def test_from_checkpoint_reads_the_family_from_token_embedding_shapes(tmp_path, keys, family, slots):
    path = write_sparse_checkpoint(tmp_path / "model.safetensors", keys)
    assert os.path.getsize(path) > 49408 * 768 * 2  # declared data really is there (sparse)
    t0 = time.perf_counter()
    spec = ModelSpec.from_checkpoint(path)
    assert time.perf_counter() - t0 < 2.0  # header only: never reads the declared data
    assert spec.family == family and spec.kind == "checkpoint"
    assert {s: v.width for s, v in spec.slots.items()} == slots
    assert all(v.token_limit == 75 for v in spec.slots.values())
    assert all(v.token_norms.source == "prior" for v in spec.slots.values())


def test_checkpoint_sd3_and_flux_text_encoders(tmp_path):
    sd3 = write_sparse_checkpoint(tmp_path / "sd3.safetensors", {
        "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": ("F16", [4, 4]),
        "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": ("F16", [49408, 768]),
        "text_encoders.clip_g.transformer.text_model.embeddings.token_embedding.weight": ("F16", [49408, 1280]),
        "text_encoders.t5xxl.transformer.shared.weight": ("F16", [32128, 4096]),
    })
    spec = ModelSpec.from_checkpoint(sd3)
    assert spec.family == "sd3" and spec.slots["t5"].width == 4096 and not spec.notes
    flux = write_sparse_checkpoint(tmp_path / "flux-unet.safetensors", {"double_blocks.0.img_attn.qkv.weight": ("BF16", [4, 4])})
    spec = ModelSpec.from_checkpoint(flux)
    assert spec.family == "flux" and set(spec.slots) == {"clip_l", "t5"}
    assert any("not in the file" in n for n in spec.notes)


def test_checkpoint_unet_only_family_from_cross_attention_width(tmp_path):
    path = write_sparse_checkpoint(tmp_path / "unet.safetensors", {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", [320, 1024])})
    assert ModelSpec.from_checkpoint(path).family == "sd2"
    meta = write_sparse_checkpoint(tmp_path / "meta.safetensors", {"x": ("F32", [1])}, {"modelspec.architecture": "stable-diffusion-xl-v1-base"})
    assert ModelSpec.from_checkpoint(meta).family == "sdxl"


def test_checkpoint_errors(tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"PK\x03\x04")  # a .ckpt is read by the allow-list unpickler: this one is damaged
    with pytest.raises(TargetError, match="cannot read as a torch checkpoint"):
        ModelSpec.from_checkpoint(tmp_path / "model.ckpt")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(TargetError, match=r"not a single-file checkpoint \(.safetensors or .ckpt\)"):
        ModelSpec.from_checkpoint(tmp_path / "model.onnx")
    nothing = write_sparse_checkpoint(tmp_path / "lora.safetensors", {"lora_unet_down.weight": ("F16", [4, 4])})
    with pytest.raises(TargetError, match="no text-encoder"):
        ModelSpec.from_checkpoint(nothing)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(TargetError, match="header"):
        ModelSpec.from_checkpoint(bad)


# -- pipelines and resolve_target ------------------------------------------------------------------
def test_from_pipeline_reads_live_encoders_and_tokenizers():
    import torch

    from embkit.diffusers.tiny import tiny_pipeline

    pipe = tiny_pipeline("sdxl")
    spec = ModelSpec.from_pipeline(pipe)
    assert spec.family == "sdxl" and spec.kind == "pipeline"
    assert spec.slots["clip_l"].width == 768 and spec.slots["clip_g"].width == 1280
    weight = pipe.text_encoder_2.get_input_embeddings().weight.detach().double()
    assert spec.slots["clip_g"].token_norms.median == pytest.approx(float(torch.linalg.vector_norm(weight, dim=1).median()), rel=1e-3)
    assert spec.slots["clip_l"].vocab.tokenize("a photo") == pipe.tokenizer.tokenize("a photo")
    assert resolve_target(pipe).family == "sdxl"


def test_resolve_target_accepts_every_kind(tmp_path, sd1_folder):
    spec = ModelSpec.from_family("sd2")
    assert resolve_target(spec) is spec
    assert resolve_target("sdxl").family == "sdxl"
    assert resolve_target(sd1_folder).kind == "folder"
    ckpt = write_sparse_checkpoint(tmp_path / "m.safetensors", SD2_KEYS)
    assert resolve_target(str(ckpt)).family == "sd2"
    with pytest.raises(TargetError, match="not a family"):
        resolve_target("no such thing")
    with pytest.raises(TargetError):
        resolve_target(42)


def test_resolve_target_hub_missing_module_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "embkit.hubclient", None)  # what a missing module looks like to import
    with pytest.raises(TargetError, match="hub support is not available"):
        resolve_target("someone/some-model")


def test_resolve_target_hub_offline_is_an_embkit_error(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EmbkitError):
        resolve_target("someone/some-model")


def test_family_folder_and_checkpoint_import_no_torch(tmp_path, sd1_folder):
    ckpt = write_sparse_checkpoint(tmp_path / "sdxl.safetensors", SDXL_KEYS)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        import embkit
        from embkit.model.resolve import resolve_target
        emb = embkit.Embedding("tok", {{"clip_l": np.ones((2, 768), np.float32) * 0.02}})
        for target in ("sdxl", {str(sd1_folder)!r}, {str(ckpt)!r}):
            resolve_target(target)
            embkit.validate(emb, target, loaded=["tok2"])
        heavy = [m for m in ("torch", "transformers", "diffusers") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout

"""Every real file in the corpus is read correctly, checked against torch's own reading."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

import embkit

SHA = {
    "EasyNegative.pt": "66a7279a88dd0cb17afbc88560540c638336d5783fd6b191c53c0d654e25b9db",
    "bad-hands-5.pt": "aa7651be154c46a2f4868788ef84a92b3083b0c0c5c46f5012a56698bfd2a1ba",
    "test_embedding.png": "ceb3de4098040013be6ce7169b0c0e67c2de86a8cfb43d02b16013f6af2d352e",
    "rummd/learned_embeds.bin": "9c27e088e282e6a511439048330f5d081f5314bf7ea75823986822d826883816",
    "ttekcor/learned_embeds.safetensors": "0253097fd844015ce92a5217de2c811d8aca0a1d74700439055f04309ee09a31",
}


def torch_values(path):
    import torch

    return torch.load(path, weights_only=True, map_location="cpu")


def test_easynegative(corpus):
    emb = embkit.read(corpus / "EasyNegative.pt")
    assert emb.name == "EasyNegative"
    assert emb.source.format == "kohya" and emb.source.container == "pickle"
    assert emb.slots == ("clip_l",) and emb.vectors["clip_l"].shape == (8, 768)
    assert emb.dtypes["clip_l"] == "float32"
    ref = torch_values(corpus / "EasyNegative.pt")["emb_params"].numpy()
    assert np.array_equal(emb.vectors["clip_l"], ref)
    assert emb.family == "sd1" and set(emb.families) == {"sd1", "sdxl", "sd3", "flux"}


def test_bad_hands(corpus):
    emb = embkit.read(corpus / "bad-hands-5.pt")
    assert emb.name == "bad-hands-5"
    assert emb.source.format == "a1111"
    assert emb.vectors["clip_l"].shape == (2, 768)
    assert emb.metadata["step"] == 1364
    assert emb.metadata["sd_checkpoint"] == "7ab762a7"
    assert emb.metadata["sd_checkpoint_name"] == "blossom-extract"
    assert emb.metadata["stored_name"] == "bad-hands-5"
    ref = torch_values(corpus / "bad-hands-5.pt")["string_to_param"]["*"].detach().numpy()
    assert np.array_equal(emb.vectors["clip_l"], ref)


def test_rummd_old_style_1d(corpus):
    emb = embkit.read(corpus / "rummd" / "learned_embeds.bin")
    assert emb.name == "<styled-image>" and emb.source.format == "diffusers"
    assert emb.vectors["clip_l"].shape == (1, 768)
    ref = torch_values(corpus / "rummd" / "learned_embeds.bin")["<styled-image>"].numpy()
    assert np.array_equal(emb.vectors["clip_l"][0], ref)


def test_ttekcor_safetensors(corpus):
    from safetensors.numpy import load_file

    path = corpus / "ttekcor" / "learned_embeds.safetensors"
    emb = embkit.read(path)
    assert emb.name == "<detail-schemas>" and emb.source.container == "safetensors"
    assert emb.metadata["format"] == "pt"
    assert np.array_equal(emb.vectors["clip_l"], load_file(str(path))["<detail-schemas>"])


def test_image_card_text_chunk(corpus):
    import base64
    import json

    from PIL import Image

    emb = embkit.read(corpus / "test_embedding.png")
    assert emb.name == "rick" and emb.source.format == "a1111-image" and emb.source.container == "png"
    assert emb.metadata["step"] == 60
    assert emb.vectors["clip_l"].shape == (8, 768)
    data = json.loads(base64.b64decode(Image.open(corpus / "test_embedding.png").text["sd-ti-embedding"]))
    ref = np.array(data["string_to_param"]["*"]["TORCHTENSOR"], dtype=np.float32)
    assert np.array_equal(emb.vectors["clip_l"], ref)


@pytest.mark.parametrize("ext", ["png", "webp"])
def test_image_card_pixels_only(corpus, tmp_path, ext):
    """With the text chunk stripped (re-encoded image), the embedding comes from the pixels."""
    from PIL import Image

    src = Image.open(corpus / "test_embedding.png").convert("RGB")
    stripped = Image.new("RGB", src.size)
    stripped.paste(src)
    out = tmp_path / f"rick.{ext}"
    stripped.save(out, **({"lossless": True} if ext == "webp" else {}))
    assert "sd-ti-embedding" not in getattr(Image.open(out), "text", {})
    pixels = embkit.read(out)
    text = embkit.read(corpus / "test_embedding.png")
    assert pixels.name == "rick" and pixels.source.container == ext
    assert pixels.same_vectors(text)
    assert embkit.probe(out).embeddings[0].warnings == ("decoded from the pixels (no text chunk)",)


def test_concept_folder(corpus, tmp_path):
    folder = tmp_path / "styled-image"
    folder.mkdir()
    shutil.copy(corpus / "rummd" / "learned_embeds.bin", folder)
    (folder / "token_identifier.txt").write_text("<styled-image>\n")
    (folder / "type_of_concept.txt").write_text("style")
    emb = embkit.read(folder)
    assert emb.source.format == "concept-folder" and emb.source.container == "folder"
    assert emb.name == "<styled-image>" and emb.metadata["type_of_concept"] == "style"


@pytest.mark.parametrize("rel", sorted(SHA))
def test_hashes(corpus, rel):
    path = corpus / rel
    info = embkit.probe(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha == SHA[rel]
    assert info.hashes["sha256"] == sha
    assert info.hashes["autov2"] == sha[:10]
    assert info.hashes["a1111"] == sha[:12]
    assert ("autov3" in info.hashes) == rel.endswith(".safetensors")


def test_autov3_is_hash_after_header(corpus):
    import struct

    data = (corpus / "ttekcor" / "learned_embeds.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert embkit.probe(corpus / "ttekcor" / "learned_embeds.safetensors").hashes["autov3"] == hashlib.sha256(data[8 + n :]).hexdigest()


def test_probe_matches_read(corpus):
    for rel in SHA:
        info = embkit.probe(corpus / rel)
        emb = embkit.read(corpus / rel)
        (pe,) = info.embeddings
        assert pe.name == emb.name
        assert {s: (i.vectors, i.dim) for s, i in pe.slots.items()} == {s: a.shape for s, a in emb.vectors.items()}

"""Porting between SD1 and SDXL: the CLIP-L half, a zero CLIP-G half, nearest-token transfer through a
(tiny, real safetensors) SDXL model folder."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import embkit
from embkit import ops
from embkit.errors import OperationError, TargetError
from embkit.edit.port import ZERO_WARNING, nearest_tokens, port, port_warning, to_sd1, to_sdxl
from embkit.schema import Embedding

VOCAB = 50


def make_sdxl_folder(root, *, dtype=np.float32, file="model.safetensors", name="text_model.embeddings.token_embedding.weight"):
    """A diffusers-shaped folder whose two text encoders hold seeded 50-token vocabularies (plus the
    position embedding a real CLIPTextModel file has next to them)."""
    rng = np.random.default_rng(1)
    vocab_l = rng.standard_normal((VOCAB, 768)).astype(dtype)
    vocab_g = rng.standard_normal((VOCAB, 1280)).astype(dtype)
    for enc, vocab in (("text_encoder", vocab_l), ("text_encoder_2", vocab_g)):
        (root / enc).mkdir(parents=True)
        tensors = {
            "text_model.embeddings.position_embedding.weight": np.zeros((77, vocab.shape[1]), dtype=dtype),
            name: vocab,
            "text_model.final_layer_norm.weight": np.ones(vocab.shape[1], dtype=dtype),
        }
        save_file(tensors, str(root / enc / file))
    return vocab_l, vocab_g


@pytest.fixture()
def sdxl_folder(tmp_path):
    vocab_l, vocab_g = make_sdxl_folder(tmp_path / "sdxl")
    return tmp_path / "sdxl", vocab_l, vocab_g


def sd1(rows, name="tok"):
    return Embedding(name=name, vectors={"clip_l": np.asarray(rows, dtype=np.float32)})


def test_sdxl_to_sd1_keeps_clip_l_exactly():
    rng = np.random.default_rng(0)
    xl = Embedding("x", {"clip_l": rng.normal(size=(3, 768)), "clip_g": rng.normal(size=(3, 1280)), "clip_l_out": rng.normal(size=(1, 768)), "clip_g_out": rng.normal(size=(1, 1280))})
    out = port(xl, "sd1")
    assert out.slots == ("clip_l",) and out.family == "sd1"
    assert np.array_equal(out.vectors["clip_l"], xl.vectors["clip_l"])
    assert set(out.vectors) == {"clip_l", "clip_l_out"}
    entry = out.metadata["provenance"][-1]
    assert entry["params"] == {"to": "sd1", "method": "take-clip-l", "dropped": ["clip_g", "clip_g_out"]}
    assert port_warning(out) is None


def test_sd1_to_sdxl_zero_half_warns():
    e = sd1(np.arange(2 * 768).reshape(2, 768) / 1000)
    out = to_sdxl(e)
    assert out.family == "sdxl"
    assert np.array_equal(out.vectors["clip_l"], e.vectors["clip_l"])
    assert out.vectors["clip_g"].shape == (2, 1280) and not out.vectors["clip_g"].any()
    assert out.metadata["provenance"][-1]["params"]["method"] == "zero-clip-g"
    assert port_warning(out) == ZERO_WARNING


def test_nearest_token_transfer_exact_rows(sdxl_folder):
    folder, vocab_l, vocab_g = sdxl_folder
    rng = np.random.default_rng(5)
    # each vector: a scaled, slightly perturbed copy of a known vocabulary row
    picks = [7, 0, 49, 7]
    rows = np.stack([3.0 * vocab_l[i] + 0.01 * rng.standard_normal(768) for i in picks])
    out = port(sd1(rows), "sdxl", via=folder)
    assert out.family == "sdxl"
    assert np.array_equal(out.vectors["clip_g"], vocab_g[picks])
    assert np.array_equal(out.vectors["clip_l"], sd1(rows).vectors["clip_l"])
    params = out.metadata["provenance"][-1]["params"]
    assert params["method"] == "nearest-token" and params["via"] == "sdxl"
    assert params["token_ids"] == picks
    assert all(c > 0.99 for c in params["cosines"])
    assert port_warning(out) is None


def test_nearest_token_against_brute_force(sdxl_folder):
    folder, vocab_l, vocab_g = sdxl_folder
    rows = np.random.default_rng(9).standard_normal((6, 768)).astype(np.float32)
    out = to_sdxl(sd1(rows), folder)
    for r, g in zip(rows.astype(np.float64), out.vectors["clip_g"]):
        cos = [float(r @ v / (np.linalg.norm(r) * np.linalg.norm(v))) for v in vocab_l.astype(np.float64)]
        assert np.array_equal(g, vocab_g[int(np.argmax(cos))])


def test_nearest_token_fp16_model_file(tmp_path):
    vocab_l, vocab_g = make_sdxl_folder(tmp_path / "m", dtype=np.float16, file="model.fp16.safetensors", name="token_embedding.weight")
    out = to_sdxl(sd1(vocab_l[[3, 4]].astype(np.float32) * 2), tmp_path / "m")
    assert out.vectors["clip_g"].dtype == np.float32
    assert np.array_equal(out.vectors["clip_g"], vocab_g[[3, 4]].astype(np.float32))


def test_nearest_tokens_zero_row():
    ids, cos = nearest_tokens(np.zeros((1, 4)), np.eye(4))
    assert ids.tolist() == [0] and cos.tolist() == [0.0]


def test_port_refusals(tmp_path, sdxl_folder):
    folder, _, _ = sdxl_folder
    with pytest.raises(OperationError, match="already sd1"):
        port(sd1(np.ones((1, 768))), "sd1")
    with pytest.raises(OperationError, match="only sd1"):
        to_sdxl(Embedding("h", {"clip_h": np.ones((1, 1024))}))
    with pytest.raises(OperationError, match="between sd1 and sdxl"):
        port(sd1(np.ones((1, 768))), "flux")
    with pytest.raises(TargetError, match="no model.safetensors"):
        to_sdxl(sd1(np.ones((1, 768))), tmp_path)
    # a folder whose encoders disagree on the vocabulary
    (tmp_path / "bad" / "text_encoder").mkdir(parents=True)
    (tmp_path / "bad" / "text_encoder_2").mkdir(parents=True)
    save_file({"text_model.embeddings.token_embedding.weight": np.ones((5, 768), np.float32)}, str(tmp_path / "bad/text_encoder/model.safetensors"))
    save_file({"text_model.embeddings.token_embedding.weight": np.ones((6, 1280), np.float32)}, str(tmp_path / "bad/text_encoder_2/model.safetensors"))
    with pytest.raises(TargetError, match="share a vocabulary"):
        to_sdxl(sd1(np.ones((1, 768))), tmp_path / "bad")
    save_file({"other.weight": np.ones((6, 1280), np.float32)}, str(tmp_path / "bad/text_encoder_2/model.safetensors"))
    with pytest.raises(TargetError, match="no token_embedding"):
        to_sdxl(sd1(np.ones((1, 768))), tmp_path / "bad")


def test_ported_then_merged_with_sdxl(sdxl_folder):
    folder, vocab_l, vocab_g = sdxl_folder
    xl = to_sdxl(sd1(vocab_l[[1, 2]] * 1.0), folder)
    native = Embedding("n", {"clip_l": np.zeros((2, 768), np.float32), "clip_g": np.zeros((2, 1280), np.float32)})
    mixed = ops.mean([xl, native])
    assert np.array_equal(mixed.vectors["clip_g"], (vocab_g[[1, 2]].astype(np.float64) / 2).astype(np.float32))
    with pytest.raises(OperationError, match="different model families"):
        embkit.merge([sd1(vocab_l[[1, 2]]), native], "mean")


def test_port_real_corpus_file(corpus):
    e = embkit.read(corpus / "bad-hands-5.pt")
    xl = port(e, "sdxl")
    back = port(xl, "sd1")
    assert back.same_vectors(e)
    assert [p["operation"] for p in back.metadata["provenance"]] == ["port", "port"]
    assert xl.metadata["provenance"][0]["inputs"][0]["sha256"].startswith("aa7651be")


def test_bf16_model_rows_match_whole_matrix(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    from embkit.edit.port import TokenMatrix

    rng = np.random.default_rng(3)
    for enc, width in (("text_encoder", 768), ("text_encoder_2", 1280)):
        (tmp_path / enc).mkdir()
        t = torch.from_numpy(rng.standard_normal((VOCAB, width)).astype(np.float32)).to(torch.bfloat16)
        save_torch({"text_model.embeddings.token_embedding.weight": t}, str(tmp_path / enc / "model.safetensors"))
    tm = TokenMatrix.from_folder(tmp_path, "text_encoder_2", 1280)
    try:
        whole = tm.matrix()
        assert tm.dtype == "bfloat16" and whole.shape == (VOCAB, 1280)
        assert np.array_equal(tm.rows([5, 0, 49]), whole[[5, 0, 49]])
        expected = t.float().numpy()  # torch's own bf16 → float32 widening
        assert np.array_equal(whole, expected)
    finally:
        tm.close()
    vocab_l = TokenMatrix.from_folder(tmp_path, "text_encoder", 768)
    try:
        rows = vocab_l.matrix()[[8, 2]] * 2
    finally:
        vocab_l.close()
    out = to_sdxl(sd1(rows), tmp_path)
    assert np.array_equal(out.vectors["clip_g"], expected[[8, 2]])

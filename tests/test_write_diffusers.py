"""Files embkit writes load through diffusers' own ``load_textual_inversion``.

A tiny StableDiffusionPipeline is built from configs (seeded random weights, one-layer CLIP text
encoders of width 768, and 1280 for the SDXL CLIP-G half, a CLIPTokenizer from a vocab written
here). Nothing is downloaded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import embkit
from embkit import Embedding
from embkit.model.vocab import byte_encoder

import makers

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    chars = list(byte_encoder().values())
    vocab = {}
    for tok in chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab[tok] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def _tokenizer(folder):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def _text_encoder(width: int, vocab: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32,
    )
    return CLIPTextModel(config).eval()


@pytest.fixture(scope="session")
def pipeline(tokenizer_dir):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    tok = _tokenizer(tokenizer_dir)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=_text_encoder(768, len(tok)), tokenizer=tok, unet=unet, scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _fresh(pipeline, tokenizer_dir):
    """A pipeline whose text side is new (loading resizes the embedding matrix in place)."""
    tok = _tokenizer(tokenizer_dir)
    pipeline.tokenizer, pipeline.text_encoder = tok, _text_encoder(768, len(tok))
    return pipeline


def _rows(pipe_tok, encoder, tokens):
    ids = pipe_tok.convert_tokens_to_ids(tokens)
    assert pipe_tok.unk_token_id not in ids or pipe_tok.unk_token in tokens
    return encoder.get_input_embeddings().weight[ids].detach().float().numpy()


def _expanded(token: str, n: int) -> list[str]:
    return [token] + [f"{token}_{i}" for i in range(1, n)]


@pytest.mark.parametrize(
    "case", ["diffusers-safetensors-multi", "diffusers-bin-single", "a1111-pt-multi", "kohya-safetensors", "concept-folder"]
)
def test_load_textual_inversion(pipeline, tokenizer_dir, tmp_path, case):
    pipe = _fresh(pipeline, tokenizer_dir)
    n = 1 if case.endswith("single") else 3
    emb = Embedding("<emb>" if not case.startswith(("a1111", "kohya")) else "embname", {"clip_l": makers.vectors(n, 768, seed=4, scale=0.3)})
    token = emb.name
    if case == "diffusers-safetensors-multi":
        out = tmp_path / "learned_embeds.safetensors"
        embkit.write(emb, out, "diffusers")
        pipe.load_textual_inversion(str(out))
    elif case == "diffusers-bin-single":
        out = tmp_path / "learned_embeds.bin"
        embkit.write(emb, out, "diffusers")
        pipe.load_textual_inversion(str(out))
    elif case == "a1111-pt-multi":
        out = tmp_path / "embname.pt"
        embkit.write(emb, out, "a1111")
        pipe.load_textual_inversion(str(out))  # diffusers takes the token from the stored name
    elif case == "kohya-safetensors":
        out = tmp_path / "embname.safetensors"
        embkit.write(emb, out, "kohya")
        pipe.load_textual_inversion(str(out), token=token)
    else:
        out = tmp_path / "concept"
        embkit.write(emb, out, "concept-folder")
        pipe.load_textual_inversion(str(out), weight_name="learned_embeds.bin")
    got = _rows(pipe.tokenizer, pipe.text_encoder, _expanded(token, n))
    assert np.array_equal(got, emb.vectors["clip_l"])
    prompt = pipe.maybe_convert_prompt(f"a photo of {token}", pipe.tokenizer)
    assert prompt.split()[-n:] == _expanded(token, n)
    ids = pipe.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
    assert hidden.shape[-1] == 768 and torch.isfinite(hidden).all()


@pytest.mark.parametrize("n", [1, 2])
def test_sdxl_pair_each_half(pipeline, tokenizer_dir, tmp_path, n):
    """diffusers' SDXL recipe: load the CLIP-L file into encoder 1 and the CLIP-G file into encoder 2."""
    pipe = _fresh(pipeline, tokenizer_dir)
    emb = Embedding("<xl>", {"clip_l": makers.vectors(n, 768, seed=5, scale=0.3), "clip_g": makers.vectors(n, 1280, seed=6, scale=0.3)})
    out = tmp_path / "learned_embeds.safetensors"
    assert embkit.write(emb, out, "diffusers", sdxl_two_files=True) == []
    tok2 = _tokenizer(tokenizer_dir)
    enc2 = _text_encoder(1280, len(tok2))
    pipe.load_textual_inversion(str(out), token="<xl>")
    pipe.load_textual_inversion(str(tmp_path / "learned_embeds_2.safetensors"), token="<xl>", text_encoder=enc2, tokenizer=tok2)
    assert np.array_equal(_rows(pipe.tokenizer, pipe.text_encoder, _expanded("<xl>", n)), emb.vectors["clip_l"])
    assert np.array_equal(_rows(tok2, enc2, _expanded("<xl>", n)), emb.vectors["clip_g"])


def test_multi_file_halves_load_as_state_dicts(pipeline, tokenizer_dir, tmp_path):
    """diffusers' documented way for kohya/OneTrainer SDXL files: pass each half as a tensor."""
    from safetensors.torch import load_file

    pipe = _fresh(pipeline, tokenizer_dir)
    emb = Embedding("xlmulti", {"clip_l": makers.vectors(2, 768, seed=7, scale=0.3), "clip_g": makers.vectors(2, 1280, seed=8, scale=0.3)})
    out = tmp_path / "xlmulti.safetensors"
    embkit.write(emb, out)
    state = load_file(str(out))
    tok2 = _tokenizer(tokenizer_dir)
    enc2 = _text_encoder(1280, len(tok2))
    pipe.load_textual_inversion(state["clip_l"], token="xlmulti", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token="xlmulti", text_encoder=enc2, tokenizer=tok2)
    assert np.array_equal(_rows(pipe.tokenizer, pipe.text_encoder, _expanded("xlmulti", 2)), emb.vectors["clip_l"])
    assert np.array_equal(_rows(tok2, enc2, _expanded("xlmulti", 2)), emb.vectors["clip_g"])

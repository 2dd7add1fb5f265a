"""Merged, edited and ported files load in diffusers itself (``load_textual_inversion``) on embkit's tiny
pipelines, and nearest-token porting works through a real (tiny) SDXL model folder that diffusers
saved with ``save_pretrained``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import embkit  # noqa: E402
from embkit import ops  # noqa: E402
from embkit.edit.port import to_sdxl  # noqa: E402
from embkit.diffusers.tiny import tiny_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def sd1_pipe():
    return tiny_pipeline("sd1", seed=0)


@pytest.fixture(scope="module")
def sdxl_saved(tmp_path_factory):
    """A tiny SDXL pipeline and the folder it was saved to (diffusers layout, real safetensors)."""
    pipe = tiny_pipeline("sdxl", seed=0)
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    pipe.save_pretrained(folder)
    return pipe, folder


def _prompt_embeds(pipe, prompt):
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def test_merged_file_loads_in_diffusers_and_changes_the_prompt(tmp_path, sd1_pipe, corpus):
    merged = ops.crop(embkit.merge([embkit.read(corpus / "bad-hands-5.pt"), embkit.read(corpus / "EasyNegative.pt")], "mean", pad=True, name="negblend"), 3)
    path = tmp_path / "learned_embeds.safetensors"
    embkit.write(merged, path, "diffusers")
    pipe = sd1_pipe
    before = _prompt_embeds(pipe, "a photo of negblend")
    size = pipe.text_encoder.get_input_embeddings().weight.shape[0]
    pipe.load_textual_inversion(str(path))
    try:
        ids = pipe.tokenizer.convert_tokens_to_ids(["negblend", "negblend_1", "negblend_2"])
        rows = pipe.text_encoder.get_input_embeddings().weight[ids].detach().numpy()
        assert np.array_equal(rows, merged.vectors["clip_l"])
        prompt = pipe.maybe_convert_prompt("a photo of negblend", pipe.tokenizer)
        assert prompt == "a photo of negblend negblend_1 negblend_2"
        after = _prompt_embeds(pipe, prompt)
        assert after.shape == before.shape and not torch.allclose(after, before)
        image = pipe(prompt, num_inference_steps=1, height=64, width=64, output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
        assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    finally:
        pipe.unload_textual_inversion()
    assert pipe.text_encoder.get_input_embeddings().weight.shape[0] == size


def test_edited_fp16_kohya_file_loads_in_diffusers(tmp_path, sd1_pipe, corpus):
    edited = ops.cast(ops.select(embkit.read(corpus / "EasyNegative.pt"), "0:2"), "fp16")
    path = tmp_path / "easy2.safetensors"
    embkit.write(edited, path)
    pipe = sd1_pipe
    pipe.load_textual_inversion(str(path), token="easy2")
    try:
        ids = pipe.tokenizer.convert_tokens_to_ids(["easy2", "easy2_1"])
        rows = pipe.text_encoder.get_input_embeddings().weight[ids].detach().numpy()
        assert np.array_equal(rows, edited.vectors["clip_l"].astype(np.float32))
    finally:
        pipe.unload_textual_inversion()


def test_nearest_token_port_through_saved_sdxl_folder_loads_in_sdxl(tmp_path, sdxl_saved, corpus):
    pipe, folder = sdxl_saved
    sd1 = embkit.read(corpus / "bad-hands-5.pt")
    xl = to_sdxl(sd1, folder)
    vocab_l = pipe.text_encoder.get_input_embeddings().weight.detach().numpy()
    vocab_g = pipe.text_encoder_2.get_input_embeddings().weight.detach().numpy()
    # brute force with torch's own weights: nearest CLIP-L token by cosine, then its CLIP-G row
    v = sd1.vectors["clip_l"].astype(np.float64)
    cos = (v / np.linalg.norm(v, axis=1, keepdims=True)) @ (vocab_l / np.linalg.norm(vocab_l, axis=1, keepdims=True)).T.astype(np.float64)
    expected_ids = cos.argmax(axis=1)
    assert xl.metadata["provenance"][-1]["params"]["token_ids"] == expected_ids.tolist()
    assert np.array_equal(xl.vectors["clip_g"], vocab_g[expected_ids])

    path = tmp_path / "bad-hands-xl.safetensors"
    embkit.write(xl, path)
    from safetensors.torch import load_file

    state = load_file(str(path))
    pipe.load_textual_inversion(state["clip_l"], token="bhxl", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token="bhxl", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    try:
        ids2 = pipe.tokenizer_2.convert_tokens_to_ids(["bhxl", "bhxl_1"])
        rows = pipe.text_encoder_2.get_input_embeddings().weight[ids2].detach().numpy()
        assert np.array_equal(rows, vocab_g[expected_ids])
        with torch.no_grad():
            embeds, _, pooled, _ = pipe.encode_prompt("a photo of bhxl", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
        assert embeds.shape[-1] == 768 + 1280 and torch.isfinite(embeds).all() and torch.isfinite(pooled).all()
    finally:
        pipe.unload_textual_inversion("bhxl", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
        pipe.unload_textual_inversion("bhxl", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)

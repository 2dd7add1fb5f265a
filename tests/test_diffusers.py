"""embkit.diffusers.apply / unload on real tiny diffusers pipelines (built once per session)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import embkit  # noqa: E402
from embkit import diffusers as ed  # noqa: E402
from embkit.errors import ValidationFailed  # noqa: E402
from embkit.schema import Embedding  # noqa: E402
from test_diffusers_helpers import assert_same_state, encode, pipeline, render, state, synthetic  # noqa: E402


@pytest.fixture
def sd1():
    pipe = pipeline("sd1")
    yield pipe
    ed.unload(pipe)


@pytest.fixture
def sdxl():
    pipe = pipeline("sdxl")
    yield pipe
    ed.unload(pipe)


def _rows(pipe, applied, encoder="text_encoder"):
    weight = getattr(pipe, encoder).get_input_embeddings().weight.detach()
    return weight[list(applied.ids[encoder])].float().numpy()


def test_corpus_files_apply_and_unload_exactly(sd1, corpus):
    before = state(sd1)
    paths = [corpus / "EasyNegative.pt", corpus / "bad-hands-5.pt", corpus / "rummd/learned_embeds.bin", corpus / "ttekcor/learned_embeds.safetensors", corpus / "test_embedding.png"]
    applied = ed.apply(sd1, paths)
    assert applied.triggers == {"EasyNegative": "EasyNegative", "bad-hands-5": "bad-hands-5", "<styled-image>": "<styled-image>", "<detail-schemas>": "<detail-schemas>", "rick": "rick"}
    assert applied.counts["tokenizer"] == {"EasyNegative": 8, "bad-hands-5": 2, "<styled-image>": 1, "<detail-schemas>": 1, "rick": 8}
    assert len(sd1.tokenizer) == before["text_encoder"]["len"] + 20
    assert sd1.text_encoder.config.vocab_size == sd1.text_encoder.get_input_embeddings().weight.shape[0] == len(sd1.tokenizer)
    expected = np.concatenate([e.vectors["clip_l"] for p in paths for e in embkit.read_all(p)])
    assert np.array_equal(_rows(sd1, applied), expected.astype(np.float32))
    # the original rows are untouched
    assert torch.equal(sd1.text_encoder.get_input_embeddings().weight[: before["text_encoder"]["len"]], before["text_encoder"]["weight"])
    assert sorted(ed.unload(sd1)) == sorted(applied.triggers.values())
    assert_same_state(state(sd1), before)


def test_apply_render_unload_round_trip_sd1(sd1, corpus):
    prompt = "a photo, EasyNegative"
    plain = render(sd1, prompt)
    ed.apply(sd1, [corpus / "EasyNegative.pt"])
    with_emb = render(sd1, prompt)
    assert np.abs(with_emb.astype(int) - plain.astype(int)).mean() > 0.5
    ed.unload(sd1)
    assert np.array_equal(render(sd1, prompt), plain)


def test_sdxl_two_slots_round_trip(sdxl):
    before = state(sdxl)
    emb = synthetic("<xl-style>", rows=3, slots=("clip_l", "clip_g"), seed=3)
    prompt = "a <xl-style> house"
    plain = render(sdxl, prompt)
    applied = ed.apply(sdxl, emb)
    assert applied.tokens == {"text_encoder": ("<xl-style>", "<xl-style>_1", "<xl-style>_2"), "text_encoder_2": ("<xl-style>", "<xl-style>_1", "<xl-style>_2")}
    assert np.array_equal(_rows(sdxl, applied, "text_encoder"), emb.vectors["clip_l"])
    assert np.array_equal(_rows(sdxl, applied, "text_encoder_2"), emb.vectors["clip_g"])
    assert not np.array_equal(render(sdxl, prompt), plain)
    ed.unload(sdxl, applied)
    assert_same_state(state(sdxl), before)
    assert np.array_equal(render(sdxl, prompt), plain)


def test_sd1_file_on_sdxl_is_refused_and_nothing_changes(sdxl, corpus):
    before = state(sdxl)
    with pytest.raises(ValidationFailed, match="clip_g"):
        ed.apply(sdxl, [synthetic("fine", slots=("clip_l", "clip_g")), corpus / "bad-hands-5.pt"])
    assert_same_state(state(sdxl), before)
    assert ed.applied(sdxl) == []


def test_sdxl_file_on_sd1_applies_its_clip_l_half_with_a_warning(sd1):
    # validation calls the CLIP-G half an extra slot that "would be ignored"; apply agrees
    before = state(sd1)
    emb = synthetic("<xl-on-sd1>", rows=2, slots=("clip_l", "clip_g"), seed=5)
    applied = ed.apply(sd1, emb)
    assert applied.tokens == {"text_encoder": ("<xl-on-sd1>", "<xl-on-sd1>_1")}
    assert np.array_equal(_rows(sd1, applied, "text_encoder"), emb.vectors["clip_l"])
    assert any("clip_g vectors ignored" in w for w in applied.warnings)
    ed.unload(sd1, applied)
    assert_same_state(state(sd1), before)
    # a file none of whose slots fit is still refused
    with pytest.raises(ValidationFailed, match="clip_h"):
        ed.apply(sd1, synthetic("<sd2-only>", slots=("clip_h",)))


def test_one_bad_embedding_in_a_batch_applies_nothing(sd1):
    before = state(sd1)
    wide = Embedding("wide", {"clip_h": np.zeros((1, 1024), np.float32)})
    nan = Embedding("nan", {"clip_l": np.full((1, 768), np.nan, np.float32)})
    with pytest.raises(ValidationFailed) as info:
        ed.apply(sd1, [synthetic("ok1"), wide, nan, synthetic("ok2")])
    assert "clip_h" in str(info.value) and "NaN" in str(info.value)
    assert_same_state(state(sd1), before)


def test_duplicate_and_already_loaded_triggers_are_refused(sd1):
    with pytest.raises(ValidationFailed, match="twice"):
        ed.apply(sd1, [synthetic("same"), synthetic("SAME", seed=1)])
    ed.apply(sd1, synthetic("once"))
    with pytest.raises(ValidationFailed, match="already in tokenizer"):
        ed.apply(sd1, synthetic("once"))
    # tokens= picks another trigger
    applied = ed.apply(sd1, synthetic("once"), tokens="twice")
    assert applied.triggers == {"once": "twice"}


def test_diffusers_own_prompt_conversion_still_works(sd1):
    emb = synthetic("<cat-toy>", rows=4, seed=5)
    applied = ed.apply(sd1, emb)
    # diffusers' maybe_convert_prompt, unchanged, expands a lower-case trigger into our tok_1 … names
    converted = sd1.maybe_convert_prompt("a <cat-toy> backpack", sd1.tokenizer)
    assert converted == "a <cat-toy> <cat-toy>_1 <cat-toy>_2 <cat-toy>_3 backpack"
    ids = sd1.tokenizer(converted).input_ids
    assert ids[2:6] == list(applied.ids["text_encoder"])


def test_mixed_case_trigger_gets_every_vector_with_embkit_expansion(sd1, corpus):
    applied = ed.apply(sd1, [corpus / "EasyNegative.pt"])
    # diffusers alone: the tokenizer lower-cases, str.replace finds nothing, only 1 of 8 vectors is used
    assert sd1.maybe_convert_prompt("a photo, EasyNegative", sd1.tokenizer) == "a photo, EasyNegative"
    expanded = applied.expand("a photo, EasyNegative")
    ids = sd1.tokenizer(expanded).input_ids
    assert [i for i in ids if i in applied.ids["text_encoder"]] == list(applied.ids["text_encoder"])
    with ed.expanded_prompts(sd1):
        assert sd1.maybe_convert_prompt("a photo, EasyNegative", sd1.tokenizer) == expanded
    assert "maybe_convert_prompt" not in sd1.__dict__  # only inside the block


def test_prefix_triggers_do_not_corrupt_each_other(sd1):
    a = ed.apply(sd1, [synthetic("tok", rows=2, seed=1), synthetic("tok2", rows=3, seed=2)])
    expanded = ed.expand_prompt(sd1, "tok and tok2, concatok")
    assert expanded == "tok tok_1 and tok2 tok2_1 tok2_2, concatok"
    tokens = sd1.tokenizer.tokenize(expanded)
    # "tok" inside "concatok" is not a trigger (single-word tokens), as in the expansion
    assert tokens[:2] == ["tok", "tok_1"] and tokens.count("tok") == 1
    start = tokens.index("tok2")
    assert tokens[start : start + 3] == ["tok2", "tok2_1", "tok2_2"]
    ids = sd1.tokenizer(expanded).input_ids
    assert [i for i in ids if i in a.ids["text_encoder"]] == list(a.ids["text_encoder"])


def test_many_embeddings_in_one_apply_and_partial_unload(sd1):
    before = state(sd1)
    embs = [synthetic(f"<e{i}>", rows=1 + i % 4, seed=i) for i in range(40)]
    applied = ed.apply(sd1, embs)
    total = sum(1 + i % 4 for i in range(40))
    assert len(applied.ids["text_encoder"]) == total == len(sd1.tokenizer) - before["text_encoder"]["len"]
    gone = [f"<e{i}>" for i in range(0, 40, 3)]
    assert sorted(ed.unload(sd1, gone)) == sorted(gone)
    keep = [e for e in embs if e.name not in gone]
    (again,) = ed.applied(sd1)
    assert again.key == applied.key and set(again.triggers) == {e.name for e in keep}
    # every kept trigger still maps to its own vectors, with compact ids after the base vocabulary
    assert np.array_equal(_rows(sd1, again), np.concatenate([e.vectors["clip_l"] for e in keep]))
    assert list(again.ids["text_encoder"]) == list(range(before["text_encoder"]["len"], len(sd1.tokenizer)))
    for name in gone:
        assert name not in sd1.tokenizer.get_vocab()
    ed.unload(sd1, applied)  # the caller's Applied still names what is left
    assert_same_state(state(sd1), before)


def test_unload_an_earlier_apply_keeps_the_later_one(sd1):
    before = state(sd1)
    first = ed.apply(sd1, synthetic("first", rows=2, seed=1))
    second = ed.apply(sd1, synthetic("second", rows=3, seed=2))
    out_second = encode(sd1, second.expand("a second"))
    ed.unload(sd1, first)
    assert "first" not in sd1.tokenizer.get_vocab()
    assert torch.allclose(encode(sd1, second.expand("a second")), out_second)
    assert np.array_equal(_rows(sd1, second), synthetic("second", rows=3, seed=2).vectors["clip_l"])
    ed.unload(sd1, second)
    assert_same_state(state(sd1), before)


def test_fp16_embedding_into_fp32_encoder(sd1):
    emb = synthetic("half", rows=2, dtype=np.float16)
    applied = ed.apply(sd1, emb)
    assert sd1.text_encoder.get_input_embeddings().weight.dtype == torch.float32
    assert np.array_equal(_rows(sd1, applied), emb.vectors["clip_l"].astype(np.float32))


def test_fp32_embedding_into_fp16_encoder_and_back():
    from embkit.diffusers.tiny import tiny_pipeline

    pipe = tiny_pipeline("sd1", dtype=torch.float16)
    before = state(pipe)
    emb = synthetic("full", rows=3, dtype=np.float32)
    applied = ed.apply(pipe, emb)
    weight = pipe.text_encoder.get_input_embeddings().weight
    assert weight.dtype == torch.float16 and weight.device.type == "cpu"
    assert torch.equal(weight[list(applied.ids["text_encoder"])], torch.from_numpy(np.array(emb.vectors["clip_l"])).half())
    ed.unload(pipe)
    assert_same_state(state(pipe), before)


def test_same_conditioning_as_diffusers_load_textual_inversion(sd1):
    from embkit.diffusers.tiny import tiny_pipeline

    emb = synthetic("<same>", rows=3, seed=9)
    reference = tiny_pipeline("sd1", seed=0)
    reference.load_textual_inversion({"<same>": torch.from_numpy(np.array(emb.vectors["clip_l"]))})
    ed.apply(sd1, emb)
    prompt = "a <same> photo"
    theirs = encode(reference, reference.maybe_convert_prompt(prompt, reference.tokenizer))
    ours = encode(sd1, sd1.maybe_convert_prompt(prompt, sd1.tokenizer))
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_output_vectors_are_reported_not_applied(sd1):
    emb = Embedding("withOut", {"clip_l": np.zeros((1, 768), np.float32) + 0.01, "clip_l_out": np.ones((1, 768), np.float32)})
    applied = ed.apply(sd1, emb)
    assert applied.tokens["text_encoder"] == ("withOut",)
    assert any("clip_l_out" in w for w in applied.warnings)


def test_unload_with_nothing_applied_is_a_no_op(sd1):
    before = state(sd1)
    assert ed.unload(sd1) == []
    assert_same_state(state(sd1), before)
    with pytest.raises(embkit.EmbkitError, match="no embedding applied"):
        ed.apply(sd1, synthetic("x1")) and ed.unload(sd1, "not-there")


def test_encoder_slots_by_family(sd1, sdxl):
    assert [(s.slot, s.encoder) for s in ed.encoder_slots(sd1)] == [("clip_l", "text_encoder")]
    assert [(s.slot, s.encoder, s.width) for s in ed.encoder_slots(sdxl)] == [("clip_l", "text_encoder", 768), ("clip_g", "text_encoder_2", 1280)]


class _FluxLike:
    """A Flux-shaped host (CLIP-L as text_encoder, T5 as text_encoder_2), without the transformer:
    enough for apply/unload, which only touch encoders and tokenizers."""

    def __init__(self):
        from transformers import CLIPTextModel, T5Config, T5EncoderModel, T5Tokenizer

        from embkit.diffusers.tiny import clip_text_config, clip_tokenizer

        torch.manual_seed(0)
        self.tokenizer = clip_tokenizer()
        self.text_encoder = CLIPTextModel(clip_text_config(768, len(self.tokenizer)))
        pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in "abcdefghijklmnopqrstuvwxyz"] + [("▁" + c, -1.5) for c in "abcdefghijklmnopqrstuvwxyz"] + [("▁", -2.0)]
        self.tokenizer_2 = T5Tokenizer(vocab=pieces, extra_ids=4)
        # T5 pads its matrix past the vocabulary (32128 rows for 32100 tokens): so does this one
        self.text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(self.tokenizer_2) + 8, d_model=4096, d_kv=8, d_ff=16, num_layers=1, num_heads=2))


def test_flux_like_clip_l_and_t5_with_padded_matrix():
    host = _FluxLike()
    assert [(s.slot, s.encoder) for s in ed.encoder_slots(host)] == [("clip_l", "text_encoder"), ("t5", "text_encoder_2")]
    before = state(host)
    t5_rows = host.text_encoder_2.get_input_embeddings().weight.shape[0]
    emb = synthetic("<flux-style>", rows=2, slots=("clip_l", "t5"), seed=4)
    applied = ed.apply(host, emb)
    ids = applied.ids["text_encoder_2"]
    assert max(ids) < t5_rows  # the new tokens landed inside T5's padding rows: no resize needed
    assert host.text_encoder_2.get_input_embeddings().weight.shape[0] == t5_rows
    assert np.array_equal(_rows(host, applied, "text_encoder_2"), emb.vectors["t5"])
    assert np.array_equal(_rows(host, applied, "text_encoder"), emb.vectors["clip_l"])
    ed.unload(host)
    assert_same_state(state(host), before)  # the padding rows it wrote over are back


def test_t5_is_optional_but_clip_is_not_on_flux_like():
    host = _FluxLike()
    applied = ed.apply(host, synthetic("<clip-only>", slots=("clip_l",)))
    assert set(applied.tokens) == {"text_encoder"}
    ed.unload(host)


class _SD3Like(_FluxLike):
    """An SD3-shaped host: CLIP-L, CLIP-G (with projection) and T5 as text_encoder, _2 and _3."""

    def __init__(self):
        from transformers import CLIPTextModelWithProjection

        from embkit.diffusers.tiny import clip_text_config, clip_tokenizer

        super().__init__()
        self.tokenizer_3, self.text_encoder_3 = self.tokenizer_2, self.text_encoder_2
        self.tokenizer_2 = clip_tokenizer()
        self.text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(1280, len(self.tokenizer_2)))


def test_sd3_like_all_three_encoders():
    host = _SD3Like()
    assert [(s.slot, s.encoder) for s in ed.encoder_slots(host)] == [
        ("clip_l", "text_encoder"), ("clip_g", "text_encoder_2"), ("t5", "text_encoder_3")
    ]
    before = state(host)
    emb = synthetic("<sd3-style>", rows=2, slots=("clip_l", "clip_g", "t5"), seed=5)
    applied = ed.apply(host, emb)
    assert set(applied.tokens) == {"text_encoder", "text_encoder_2", "text_encoder_3"}
    for attr, slot in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g"), ("text_encoder_3", "t5")):
        assert np.array_equal(_rows(host, applied, attr), emb.vectors[slot])
    ed.unload(host)
    assert_same_state(state(host), before)


def test_legacy_clip_eos_id_is_corrected_while_applied(sdxl):
    # SDXL's real CLIP-G config says eos_token_id=2: pooling then picks input_ids.argmax(), which is
    # an added token's position once embeddings are loaded (diffusers' own loader has this bug)
    enc = sdxl.text_encoder_2
    saved = (enc.text_model.eos_token_id, enc.config.eos_token_id)
    enc.text_model.eos_token_id = enc.config.eos_token_id = 2
    try:
        emb = synthetic("<pool>", rows=2, slots=("clip_l", "clip_g"), seed=8)
        applied = ed.apply(sdxl, emb)
        assert enc.text_model.eos_token_id == sdxl.tokenizer_2.eos_token_id
        ids = sdxl.tokenizer_2(applied.expand("a <pool>", "tokenizer_2"), padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            out = enc(ids)
        eos_at = int((ids[0] == sdxl.tokenizer_2.eos_token_id).nonzero()[0])
        assert torch.allclose(out.text_embeds[0], enc.text_projection(out.last_hidden_state[0, eos_at]), atol=1e-5)
        ed.unload(sdxl)
        assert (enc.text_model.eos_token_id, enc.config.eos_token_id) == (2, 2)
    finally:
        enc.text_model.eos_token_id, enc.config.eos_token_id = saved

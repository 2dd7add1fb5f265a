"""embkit.diffusers.load_textual_inversion called the way diffusers' docs and tests call it, on tiny
SD1 and SDXL pipelines, checked against diffusers' own loader's prompt embeddings (bit for bit)
where diffusers handles the case; patch(pipe) and the mixin make diffusers-style code use embkit.

Files are written the way the tools write them: torch.save for A1111 ``.pt`` and diffusers ``.bin``
files, safetensors for the rest. Repo ids are served by the fake Hub in test_dropin_hub.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from safetensors.torch import save_file  # noqa: E402

import embkit  # noqa: E402
from embkit import diffusers as ed  # noqa: E402
from test_diffusers_helpers import assert_same_state, pipeline, state  # noqa: E402

RNG = np.random.default_rng(20)


def vectors(n: int, width: int = 768) -> "torch.Tensor":
    return torch.from_numpy((RNG.standard_normal((n, width)) * 0.05).astype(np.float32))


_theirs: dict = {}


def theirs(family: str):
    """A second tiny pipeline of ``family`` (same seed, same weights) for diffusers' own loader."""
    from embkit.diffusers.tiny import tiny_pipeline

    if family not in _theirs:
        _theirs[family] = tiny_pipeline(family, seed=0)
    return _theirs[family]


def clean(pipe) -> None:
    """Unload everything, whoever loaded it, with diffusers' own unload on every encoder."""
    ed.unload(pipe)
    type(pipe).unload_textual_inversion(pipe)
    if getattr(pipe, "text_encoder_2", None) is not None:
        type(pipe).unload_textual_inversion(pipe, tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2)


@pytest.fixture(params=["sd1", "sdxl"])
def pair(request):
    ours, ref = pipeline(request.param), theirs(request.param)
    before = state(ours)
    yield ours, ref
    ed.unpatch(ours)
    clean(ours)
    clean(ref)
    assert_same_state(state(ours), before)


@pytest.fixture
def sd1():
    pipe = pipeline("sd1")
    before = state(pipe)
    yield pipe
    ed.unpatch(pipe)
    clean(pipe)
    assert_same_state(state(pipe), before)


def embeds(pipe, prompt: str) -> list:
    """Every prompt embedding the pipeline makes (SDXL: both encoders' hidden states and the
    pooled one), through the pipeline's own encode_prompt (and so its maybe_convert_prompt)."""
    with torch.no_grad():
        out = pipe.encode_prompt(prompt=prompt, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=False)
    return [t for t in out if t is not None]


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# -- diffusers' call shapes, against diffusers ------------------------------------------------------


def test_folder_with_weight_name(pair, tmp_path):
    ours, ref = pair
    save_file({"<folder-tok>": vectors(2)}, str(tmp_path / "text_inv.safetensors"))
    ref.load_textual_inversion(str(tmp_path), weight_name="text_inv.safetensors")
    applied = ed.load_textual_inversion(ours, str(tmp_path), weight_name="text_inv.safetensors")
    assert applied.tokens["text_encoder"] == ("<folder-tok>", "<folder-tok>_1")
    prompt = "a <folder-tok> photo"
    assert same(embeds(ours, prompt), embeds(ref, prompt))
    assert not same(embeds(ours, prompt), embeds(ours, "a photo"))


def test_folder_default_names_fall_back_to_the_bin(sd1, tmp_path):
    # a sd-concepts-library folder: learned_embeds.bin written by torch.save, no safetensors
    torch.save({"<concept>": vectors(1)[0]}, tmp_path / "learned_embeds.bin")
    ref = theirs("sd1")
    ref.load_textual_inversion(str(tmp_path))
    ed.load_textual_inversion(sd1, str(tmp_path))
    assert same(embeds(sd1, "a <concept> toy"), embeds(ref, "a <concept> toy"))
    clean(ref)


def test_folder_subfolder(sd1, tmp_path):
    (tmp_path / "embeddings").mkdir()
    save_file({"<sub>": vectors(1)}, str(tmp_path / "embeddings" / "learned_embeds.safetensors"))
    applied = ed.load_textual_inversion(sd1, str(tmp_path), subfolder="embeddings")
    assert applied.triggers == {"<sub>": "<sub>"}


def test_a1111_file_uses_the_stored_name_like_diffusers(pair, tmp_path):
    ours, ref = pair
    path = tmp_path / "charturner.pt"  # the stem differs from the stored name, as often
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors(3)}, "name": "charturnerv2", "step": 100,
                "sd_checkpoint": None, "sd_checkpoint_name": None}, path)
    ref.load_textual_inversion(str(path))
    ed.load_textual_inversion(ours, str(path))
    prompt = "charturnerv2, a character turnaround"
    assert same(embeds(ours, prompt), embeds(ref, prompt))


def test_file_with_token(pair, tmp_path):
    ours, ref = pair
    path = tmp_path / "x.pt"
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors(2)}, "name": "x", "step": 1,
                "sd_checkpoint": None, "sd_checkpoint_name": None}, path)
    ref.load_textual_inversion(str(path), token="charturnerv2")
    ed.load_textual_inversion(ours, str(path), token="charturnerv2")
    assert same(embeds(ours, "charturnerv2 woman"), embeds(ref, "charturnerv2 woman"))


def test_list_of_files_with_tokens_grows_the_matrix_once(pair, tmp_path):
    ours, ref = pair
    paths = []
    for i, n in enumerate((1, 3, 2)):
        p = tmp_path / f"e{i}.safetensors"
        save_file({f"orig{i}": vectors(n)}, str(p))
        paths.append(str(p))
    tokens = ["<one>", "<three>", "<two>"]
    ref.load_textual_inversion(paths, token=tokens)
    applied = ed.load_textual_inversion(ours, paths, token=tokens)
    assert len(ed.applied(ours)) == 1 and len(applied.tokens["text_encoder"]) == 6
    prompt = "<two> and <three>, <one>"
    assert same(embeds(ours, prompt), embeds(ref, prompt))


def test_state_dict(pair):
    ours, ref = pair
    sd = {"<sd-tok>": vectors(4)}
    ref.load_textual_inversion(sd)
    ed.load_textual_inversion(ours, sd)
    assert same(embeds(ours, "a <sd-tok>"), embeds(ref, "a <sd-tok>"))


def test_tensor_with_token_and_one_token_per_row(pair):
    ours, ref = pair
    t, rows = vectors(3), vectors(2)
    ref.load_textual_inversion(t, token="<tensor>")
    ref.load_textual_inversion(rows, token=["<s0>", "<s1>"])  # diffusers: one token per row
    ed.load_textual_inversion(ours, t, token="<tensor>")
    applied = ed.load_textual_inversion(ours, rows, token=["<s0>", "<s1>"])
    assert applied.tokens["text_encoder"] == ("<s0>", "<s1>")
    prompt = "<tensor> <s1> <s0>"
    assert same(embeds(ours, prompt), embeds(ref, prompt))


def test_sdxl_pair_in_two_calls_like_the_training_script(tmp_path):
    ours, ref = pipeline("sdxl"), theirs("sdxl")
    before = state(ours)
    save_file({"<xl>": vectors(2)}, str(tmp_path / "learned_embeds.safetensors"))
    save_file({"<xl>": vectors(2, 1280)}, str(tmp_path / "learned_embeds_2.safetensors"))
    try:
        for pipe, load in ((ref, ref.load_textual_inversion), (ours, lambda *a, **k: ed.load_textual_inversion(ours, *a, **k))):
            load(str(tmp_path), weight_name="learned_embeds.safetensors")
            load(str(tmp_path), weight_name="learned_embeds_2.safetensors", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
        assert same(embeds(ours, "a <xl> house"), embeds(ref, "a <xl> house"))
        # the pair loaded as two calls; unloading the default pair leaves the second encoder's
        assert ed.unload_textual_inversion(ours, tokenizer=ours.tokenizer, text_encoder=ours.text_encoder) == ["<xl>", "<xl>_1"]
        assert "<xl>" in ours.tokenizer_2.get_vocab() and "<xl>" not in ours.tokenizer.get_vocab()
    finally:
        clean(ours)
        clean(ref)
    assert_same_state(state(ours), before)


def test_sdxl_multi_file_in_one_call_matches_diffusers_two_calls(tmp_path):
    # diffusers cannot load {clip_l, clip_g}; its docs load each half with text_encoder= (and token=)
    ours, ref = pipeline("sdxl"), theirs("sdxl")
    before = state(ours)
    halves = {"clip_l": vectors(2), "clip_g": vectors(2, 1280)}
    save_file(halves, str(tmp_path / "web_y2k.safetensors"))
    try:
        ref.load_textual_inversion(halves["clip_l"], token="<s>", text_encoder=ref.text_encoder, tokenizer=ref.tokenizer)
        ref.load_textual_inversion(halves["clip_g"], token="<s>", text_encoder=ref.text_encoder_2, tokenizer=ref.tokenizer_2)
        applied = ed.load_textual_inversion(ours, str(tmp_path / "web_y2k.safetensors"), token="<s>")
        assert set(applied.tokens) == {"text_encoder", "text_encoder_2"}
        assert same(embeds(ours, "a <s> poster"), embeds(ref, "a <s> poster"))
        # and the file name is the trigger without token=, where diffusers has none
        ed.unload(ours)
        assert ed.load_textual_inversion(ours, str(tmp_path / "web_y2k.safetensors")).triggers == {"web_y2k": "web_y2k"}
    finally:
        clean(ours)
        clean(ref)
    assert_same_state(state(ours), before)


def test_sd1_file_on_sdxl_goes_into_the_first_encoder_like_diffusers():
    ours, ref = pipeline("sdxl"), theirs("sdxl")
    sd = {"<l-only>": vectors(2)}
    try:
        ref.load_textual_inversion(sd)
        applied = ed.load_textual_inversion(ours, sd)
        assert set(applied.tokens) == {"text_encoder"}
        assert any("clip_g" in w for w in applied.warnings)  # said, not silent
        assert same(embeds(ours, "<l-only> cat"), embeds(ref, "<l-only> cat"))
    finally:
        clean(ours)
        clean(ref)


# -- what embkit adds or refuses ------------------------------------------------------------------------


def test_pickles_are_not_torch_loaded(sd1, tmp_path):
    # a pickle that would run code under torch.load(weights_only=False) is refused by embkit's reader
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "learned_embeds.bin"
    path.write_bytes(pickle.dumps({"<x>": Evil()}))
    with pytest.raises(embkit.UnsafeFileError):
        ed.load_textual_inversion(sd1, str(tmp_path))


def test_unknown_keyword_is_an_error_not_ignored(sd1):
    with pytest.raises(TypeError, match="did you mean token="):
        ed.load_textual_inversion(sd1, vectors(2), tokens=["<a>", "<b>"])  # diffusers' own docstring typo


def test_tensor_without_token_and_token_already_in_vocab(sd1):
    with pytest.raises(embkit.EmbkitError, match="token="):
        ed.load_textual_inversion(sd1, vectors(2))
    with pytest.raises(embkit.ValidationFailed, match="already in tokenizer's vocabulary"):
        ed.load_textual_inversion(sd1, {"ab": vectors(1)})  # a BPE piece of the tiny vocabulary


def test_use_safetensors_refuses_a_pickle(sd1, tmp_path):
    torch.save({"<p>": vectors(1)}, tmp_path / "x.safetensors.bin")
    with pytest.raises(embkit.EmbkitError, match="not a safetensors file"):
        ed.load_textual_inversion(sd1, str(tmp_path / "x.safetensors.bin"), use_safetensors=True)


def test_missing_file_names_the_path(sd1, tmp_path):
    with pytest.raises(embkit.EmbkitError, match="no such file"):
        ed.load_textual_inversion(sd1, str(tmp_path / "missing.pt"))
    with pytest.raises(embkit.EmbkitError, match="pass weight_name="):
        ed.load_textual_inversion(sd1, str(tmp_path))


def test_mixed_case_trigger_gets_every_vector(sd1):
    # diffusers' maybe_convert_prompt misses "<MyTok>" (the tokenizer lower-cases it) and uses one of 3 vectors
    ed.patch(sd1)
    sd1.load_textual_inversion({"<MyTok>": vectors(3)})
    assert sd1.maybe_convert_prompt("a <MyTok> photo", sd1.tokenizer) == "a <MyTok> <MyTok>_1 <MyTok>_2 photo"
    assert same(embeds(sd1, "a <MyTok> photo"), embeds(sd1, "a <MyTok> <MyTok>_1 <MyTok>_2 photo"))


def test_apply_takes_state_dicts_and_tensors(sd1):
    applied = ed.apply(sd1, [{"<from-dict>": vectors(2)}, vectors(1)], tokens=["<from-dict>", "<from-tensor>"])
    assert applied.tokens["text_encoder"] == ("<from-dict>", "<from-dict>_1", "<from-tensor>")
    with pytest.raises(embkit.EmbkitError, match="tokens="):
        ed.apply(sd1, vectors(1))


# -- patch and the mixin ----------------------------------------------------------------------------------


def test_patch_makes_diffusers_style_code_use_embkit(sd1, tmp_path):
    paths = []
    for i in range(3):
        save_file({f"<p{i}>": vectors(i + 1)}, str(tmp_path / f"p{i}.safetensors"))
        paths.append(str(tmp_path / f"p{i}.safetensors"))
    before = state(sd1)
    assert ed.patch(sd1) is sd1
    # the diffusers user's code, unchanged:
    sd1.load_textual_inversion(paths)
    image_prompt = "a photo of <p2>, <p0>"
    out = embeds(sd1, image_prompt)
    # embkit's loader ran: one apply (one resize for the three), whole-word tokens
    (record,) = ed.applied(sd1)
    assert record.tokens["text_encoder"] == ("<p0>", "<p1>", "<p1>_1", "<p2>", "<p2>_1", "<p2>_2")
    assert all(t.single_word for t in sd1.tokenizer.added_tokens_decoder.values() if not t.special)
    assert sd1.text_encoder.get_input_embeddings().weight.shape[0] == len(sd1.tokenizer)
    ref = theirs("sd1")
    ref.load_textual_inversion(paths)
    assert same(out, embeds(ref, image_prompt))
    clean(ref)
    sd1.unload_textual_inversion("<p2>")  # all three tokens of <p2>, not just the first
    assert "<p2>_1" not in sd1.tokenizer.get_vocab()
    sd1.unload_textual_inversion()
    assert_same_state(state(sd1), before)
    ed.unpatch(sd1)
    assert sd1.load_textual_inversion.__func__ is type(sd1).load_textual_inversion


def test_mixin():
    from diffusers import StableDiffusionPipeline

    class Pipe(ed.TextualInversionMixin, StableDiffusionPipeline):
        pass

    base = pipeline("sd1")
    pipe = Pipe(**base.components, requires_safety_checker=False)
    pipe.load_textual_inversion({"<mix>": vectors(2)})
    assert [a.triggers for a in ed.applied(pipe)] == [{"<mix>": "<mix>"}]
    assert pipe.maybe_convert_prompt("<mix>", pipe.tokenizer) == "<mix> <mix>_1"
    assert pipe.unload_textual_inversion() == ["<mix>", "<mix>_1"]
    assert len(base.tokenizer) == base.text_encoder.get_input_embeddings().weight.shape[0]

"""embkit's apply/unload mixed with diffusers' own load_textual_inversion/unload_textual_inversion in
every order, and under accelerate's CPU offload. After everything is unloaded the prompt embeddings
must equal, bit for bit, those of a pipeline that never had an embedding (the same seed), and the
tokenizer must always agree with the embedding matrix.

The bug this guards (issue 16): diffusers load → embkit apply → pipe.unload_textual_inversion() →
embkit unload left a tokenizer of 1192 entries over a matrix of 1190 rows, and the next prompt
raised IndexError.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from embkit import diffusers as ed  # noqa: E402
from embkit.schema import Embedding  # noqa: E402
from test_diffusers_helpers import pipeline, synthetic  # noqa: E402

RNG = np.random.default_rng(16)
THEIRS = {"<d>": torch.from_numpy((RNG.standard_normal((3, 768)) * 0.05).astype(np.float32))}
OURS = synthetic("<e>", rows=2, seed=16)
PROMPT = "a <d> and <e> photo"
OPS = {
    "diffusers load": lambda p: type(p).load_textual_inversion(p, THEIRS),
    "embkit apply": lambda p: ed.apply(p, OURS),
    "diffusers unload": lambda p: type(p).unload_textual_inversion(p),
    "embkit unload": lambda p: ed.unload(p),
}
#: every order in which each loader's load comes before its unload
INTERLEAVINGS = [o for o in itertools.permutations(OPS) if o.index("diffusers load") < o.index("diffusers unload")
                 and o.index("embkit apply") < o.index("embkit unload")]


def embeds(pipe, prompt: str = PROMPT):
    with torch.no_grad():
        return pipe.encode_prompt(prompt=prompt, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=False)[0]


def consistent(pipe, enc: str = "text_encoder", tok: str = "tokenizer") -> bool:
    return len(getattr(pipe, tok)) == getattr(pipe, enc).get_input_embeddings().weight.shape[0]


@pytest.fixture(scope="module")
def never():
    """The prompt embeddings of a pipeline that never had an embedding."""
    from embkit.diffusers.tiny import tiny_pipeline

    return embeds(tiny_pipeline("sd1", seed=0))


@pytest.fixture
def sd1():
    pipe = pipeline("sd1")
    yield pipe
    ed.unload(pipe)
    type(pipe).unload_textual_inversion(pipe)


def test_there_are_six_interleavings():
    assert len(INTERLEAVINGS) == 6 and ("diffusers load", "embkit apply", "diffusers unload", "embkit unload") in INTERLEAVINGS


@pytest.mark.parametrize("order", INTERLEAVINGS, ids=lambda o: " > ".join(o))
def test_interleaved_with_diffusers_loader(sd1, never, order):
    for step in order:
        OPS[step](sd1)
        assert consistent(sd1), step
        embeds(sd1)  # every intermediate state tokenizes and encodes (no IndexError)
    assert torch.equal(embeds(sd1), never)
    assert ed.applied(sd1) == []


@pytest.mark.parametrize("order", [o for o in itertools.permutations(OPS) if o not in INTERLEAVINGS], ids=lambda o: " > ".join(o))
def test_any_other_order_stays_consistent_and_keeps_what_is_loaded(sd1, never, order):
    # an unload before its load: whatever was loaded last stays loaded and works
    for step in order:
        OPS[step](sd1)
        assert consistent(sd1), step
    loaded = {t.content for t in sd1.tokenizer.added_tokens_decoder.values() if not t.special}
    expected = set()
    if order.index("diffusers load") > order.index("diffusers unload"):
        # diffusers' unload takes every added token, embkit's too, if they were there then
        expected |= {"<d>", "<d>_1", "<d>_2"}
    if order.index("embkit apply") > order.index("embkit unload") and not (
            order.index("embkit apply") < order.index("diffusers unload")):
        expected |= {"<e>", "<e>_1"}
    assert loaded == expected
    ed.unload(sd1)
    type(sd1).unload_textual_inversion(sd1)
    assert torch.equal(embeds(sd1), never)


def test_embkit_applies_around_a_diffusers_load_unload_in_any_order(sd1, never):
    # embkit A, diffusers D, embkit B: taking A out first renumbers D and B; everything still maps
    a, b = synthetic("<a>", rows=2, seed=1), synthetic("<b>", rows=3, seed=2)
    ed.apply(sd1, a)
    type(sd1).load_textual_inversion(sd1, THEIRS)
    applied_b = ed.apply(sd1, b)
    with_b = embeds(sd1, "x <b> y")
    with_d = embeds(sd1, "x <d> y")
    ed.unload(sd1, "<a>")
    assert consistent(sd1) and "<a>" not in sd1.tokenizer.get_vocab()
    assert torch.equal(embeds(sd1, "x <b> y"), with_b) and torch.equal(embeds(sd1, "x <d> y"), with_d)
    rows = sd1.text_encoder.get_input_embeddings().weight[list(applied_b.ids["text_encoder"])]
    assert torch.equal(rows, torch.from_numpy(np.array(b.vectors["clip_l"])))  # ids were kept current
    ed.unload(sd1)
    assert "<d>" in sd1.tokenizer.get_vocab() and consistent(sd1)
    type(sd1).unload_textual_inversion(sd1)
    assert torch.equal(embeds(sd1), never)


def test_diffusers_unloading_one_token_of_embkits(sd1, never):
    # diffusers' unload of named tokens renumbers the rest; embkit's records follow
    ed.apply(sd1, [synthetic("<x>", rows=2, seed=3), synthetic("<y>", rows=1, seed=4)])
    type(sd1).unload_textual_inversion(sd1, ["<x>", "<x>_1"])
    (record,) = ed.applied(sd1)
    assert record.triggers == {"<y>": "<y>"} and record.ids["text_encoder"] == (len(sd1.tokenizer) - 1,)
    assert ed.unload(sd1) == ["<y>"]
    assert consistent(sd1) and torch.equal(embeds(sd1), never)


def test_sdxl_second_encoder_interleaved(never):
    pipe = pipeline("sdxl")
    base = [t.clone() for t in _sdxl(pipe)]
    g = {"<g>": torch.from_numpy((RNG.standard_normal((2, 1280)) * 0.05).astype(np.float32))}
    try:
        type(pipe).load_textual_inversion(pipe, g, tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2)
        ed.apply(pipe, synthetic("<both>", rows=2, slots=("clip_l", "clip_g"), seed=5))
        type(pipe).unload_textual_inversion(pipe, tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2)
        assert consistent(pipe, "text_encoder_2", "tokenizer_2")
        assert "<both>" in pipe.tokenizer.get_vocab()  # diffusers' unload touched the second pair only
        ed.unload(pipe)
        assert consistent(pipe) and consistent(pipe, "text_encoder_2", "tokenizer_2")
        assert all(torch.equal(x, y) for x, y in zip(_sdxl(pipe), base))
    finally:
        ed.unload(pipe)
        type(pipe).unload_textual_inversion(pipe, tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2)


def _sdxl(pipe, prompt: str = "a <both> and <g> photo"):
    with torch.no_grad():
        out = pipe.encode_prompt(prompt=prompt, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=False)
    return [t for t in out if t is not None]


# -- offload ------------------------------------------------------------------------------------------------


def _fresh():
    from embkit.diffusers.tiny import tiny_pipeline

    return tiny_pipeline("sd1", seed=0)


def _expected():
    """The prompt embeddings with OURS applied to a pipeline without offload (unloaded after)."""
    reference = pipeline("sd1")
    ed.apply(reference, OURS)
    try:
        return embeds(reference)
    finally:
        ed.unload(reference)


def _unload_then_diffusers_calls(pipe, expected, never):
    """Unload gives back the embeddings of a pipeline that never had any; then the diffusers-style
    calls too, and mixing with diffusers' unload (which does not know the hooks)."""
    ed.unload(pipe)
    assert torch.equal(embeds(pipe), never) and consistent(pipe)
    ed.load_textual_inversion(pipe, {"<e>": torch.from_numpy(np.array(OURS.vectors["clip_l"]))})
    assert torch.equal(embeds(pipe), expected)
    ed.unload_textual_inversion(pipe)
    assert torch.equal(embeds(pipe), never)


def test_model_cpu_offload(never):
    pipe = _fresh()
    pipe.enable_model_cpu_offload(device="cpu")
    hook = pipe.text_encoder._hf_hook
    expected = _expected()
    ed.apply(pipe, OURS)
    assert pipe.text_encoder._hf_hook is hook  # model offload hooks move the new matrix too: kept
    assert torch.equal(embeds(pipe), expected)
    _unload_then_diffusers_calls(pipe, expected, never)
    assert pipe._execution_device == torch.device("cpu:0") and pipe.text_encoder._hf_hook is hook


def _sequential(pipe):
    """What enable_sequential_cpu_offload() does per component, with the device "cpu": diffusers
    itself passes "cpu:0", and in torch 2.13 a Parameter moved to "cpu:0" becomes a plain tensor,
    which breaks the first forward pass on a machine without a GPU (research/singlefile.md §4)."""
    from accelerate import cpu_offload

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            cpu_offload(component, torch.device("cpu"), offload_buffers=len(component._parameters) > 0)
    return pipe


def test_sequential_cpu_offload(never):
    pipe = _sequential(_fresh())
    assert pipe.text_encoder.get_input_embeddings().weight.device.type == "meta"
    expected = _expected()
    applied = ed.apply(pipe, OURS)  # "Cannot copy out of meta tensor" before
    embedding = pipe.text_encoder.get_input_embeddings()
    assert embedding.weight.device.type == "meta" and embedding._hf_hook.execution_device == torch.device("cpu")
    stored = embedding._hf_hook.weights_map["weight"]
    assert torch.equal(stored[list(applied.ids["text_encoder"])], torch.from_numpy(np.array(OURS.vectors["clip_l"])))
    assert torch.equal(embeds(pipe), expected)
    _unload_then_diffusers_calls(pipe, expected, never)
    assert pipe.text_encoder.get_input_embeddings().weight.device.type == "meta"


def test_sequential_offload_keeps_the_pipelines_device():
    # diffusers' own enable_sequential_cpu_offload(device="cpu") hooks execute on "cpu:0"; embkit
    # offloads again on the device the hooks had, not on the encoder's current device (diffusers
    # 0.42 passes text_encoder.device: the CPU under offload, so on a GPU box it would stay on the CPU)
    pipe = _fresh()
    pipe.enable_sequential_cpu_offload(device="cpu")
    device = pipe.text_encoder.get_input_embeddings()._hf_hook.execution_device
    assert device == pipe._offload_device == torch.device("cpu:0")
    ed.apply(pipe, OURS)
    for module in (pipe.text_encoder.get_input_embeddings(), pipe.text_encoder.encoder.layers[0].mlp.fc1):
        assert module._hf_hook.execution_device == device and module.weight.device.type == "meta"
    ed.unload(pipe)
    weights = pipe.text_encoder.get_input_embeddings()._hf_hook.weights_map["weight"]
    assert weights.shape[0] == len(pipe.tokenizer)


def test_hooks_come_back_when_apply_fails():
    pipe = _sequential(_fresh())
    with pytest.raises(Exception):
        ed.apply(pipe, Embedding("ab", {"clip_l": np.zeros((1, 768), np.float32) + 0.01}))  # a BPE piece: refused
    assert pipe.text_encoder.get_input_embeddings().weight.device.type == "meta"
    assert pipe.text_encoder.get_input_embeddings()._hf_hook.offload

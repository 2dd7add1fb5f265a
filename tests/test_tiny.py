"""The built-in tiny pipelines: real widths, seeded weights, a local tokenizer that takes any text."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from embkit.errors import TargetError  # noqa: E402
from embkit.diffusers.tiny import clip_tokenizer, clip_vocab, is_tiny, tiny_pipeline  # noqa: E402
from test_diffusers_helpers import pipeline  # noqa: E402


def test_vocab_has_clip_shape():
    vocab, merges = clip_vocab(49408)
    assert len(vocab) == 49408 and len(set(vocab.values())) == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["!"] == 0 and "a</w>" in vocab and len(merges) == 49408 - 512 - 2


@pytest.mark.parametrize("text", ["a photo of a cat", "ÜNÏCÖDÉ 日本語 🙂", "<cat-toy> (EasyNegative:1.2), x9", "\t tabs\nand  spaces "])
def test_any_text_tokenizes_without_unknown_tokens(text):
    tok = clip_tokenizer()
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids[1:-1]
    # byte-level BPE round-trips the text (CLIP's decoder puts a space after each word piece)
    assert "".join(tok.decode(ids, skip_special_tokens=True).split()) == "".join(text.lower().split())


def test_families_have_real_widths():
    sd1, sdxl = pipeline("sd1"), pipeline("sdxl")
    assert sd1.text_encoder.get_input_embeddings().weight.shape[1] == 768
    assert sdxl.text_encoder.get_input_embeddings().weight.shape[1] == 768
    assert sdxl.text_encoder_2.get_input_embeddings().weight.shape[1] == 1280
    assert sd1.unet.config.cross_attention_dim == 768 and sdxl.unet.config.cross_attention_dim == 2048
    assert sd1.safety_checker is None and is_tiny(sd1) and is_tiny(sdxl)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = tiny_pipeline("sd2", seed=1), tiny_pipeline("sd2", seed=1), tiny_pipeline("sd2", seed=2)
    assert a.text_encoder.get_input_embeddings().weight.shape[1] == 1024
    for name in ("text_encoder", "unet", "vae"):
        pa, pb, pc = (dict(getattr(p, name).named_parameters()) for p in (a, b, c))
        assert all(torch.equal(pa[k], pb[k]) for k in pa), name
        assert not all(torch.equal(pa[k], pc[k]) for k in pa), name


def test_building_does_not_disturb_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_pipeline("sd1", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_family_is_a_target_error():
    with pytest.raises(TargetError, match="flux"):
        tiny_pipeline("flux")

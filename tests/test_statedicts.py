"""State dicts: embkit.to_state_dict / embkit.statedicts give the dict a host's loader takes, key for
key what torch.load returns from the file embkit would write; from_state_dict reads them back
(numpy or torch); arrays are writable, so torch.from_numpy takes them without a warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import embkit
from embkit.errors import LossError, OperationError, UnknownFormatError
from embkit.schema import Embedding
from embkit.statedicts import from_state_dict, state_dict

RNG = np.random.default_rng(7)
SD1 = Embedding("my-style", {"clip_l": (RNG.standard_normal((3, 768)) * 0.05).astype(np.float16)}, metadata={"step": 1200, "sd_checkpoint": "abc123"})
SDXL = Embedding("xl", {"clip_l": (RNG.standard_normal((2, 768)) * 0.05).astype(np.float32),
                        "clip_g": (RNG.standard_normal((2, 1280)) * 0.05).astype(np.float32)})


def _same_tree(a, b) -> None:
    import torch

    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same_tree(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("layout, emb, ext", [("a1111", SD1, ".pt"), ("diffusers", SD1, ".bin"), ("kohya", SD1, ".pt"), ("multi", SDXL, ".pt")])
def test_torch_state_dict_is_what_torch_load_gives_from_the_written_file(tmp_path, layout, emb, ext):
    torch = pytest.importorskip("torch")
    path = tmp_path / f"{emb.name}{ext}"
    embkit.write(emb, path, layout)
    on_disk = torch.load(path, weights_only=True)
    _same_tree(embkit.to_state_dict(emb, layout, framework="torch"), on_disk)


def test_a1111_layout_keys_and_values():
    sd = state_dict(SD1, "a1111")
    assert list(sd) == ["string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"]
    assert sd["name"] == "my-style" and sd["step"] == 1200 and sd["string_to_token"] == {"*": 265}
    assert np.array_equal(sd["string_to_param"]["*"], SD1.vectors["clip_l"]) and sd["string_to_param"]["*"].dtype == np.float16


def test_arrays_are_writable_copies_and_torch_takes_them_without_a_warning():
    torch = pytest.importorskip("torch")
    with pytest.warns(UserWarning, match="not writable"):
        torch.from_numpy(SD1.vectors["clip_l"])  # the complaint: an Embedding's arrays are read-only
    sd = state_dict(SD1, "diffusers")
    arr = sd["my-style"]
    assert arr.flags.writeable and arr.flags.owndata
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = torch.from_numpy(arr)
    tensor += 1  # a copy: the embedding does not change
    assert not np.array_equal(SD1.vectors["clip_l"], arr)
    t = embkit.to_state_dict(SD1, "kohya", framework="torch")["emb_params"]
    t.mul_(2)  # writable, and owned
    assert t.dtype == torch.float16


def test_diffusers_own_loader_takes_it():
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from embkit import diffusers as ed
    from embkit.diffusers.tiny import tiny_pipeline

    theirs, ours = tiny_pipeline("sd1", seed=0), tiny_pipeline("sd1", seed=0)
    theirs.load_textual_inversion(embkit.to_state_dict(SD1, framework="torch"))
    ed.apply(ours, SD1)
    rows_theirs = theirs.text_encoder.get_input_embeddings().weight[-3:]
    rows_ours = ours.text_encoder.get_input_embeddings().weight[-3:]
    assert torch.equal(rows_theirs, rows_ours)
    assert theirs.tokenizer.convert_tokens_to_ids("my-style_2") == ours.tokenizer.convert_tokens_to_ids("my-style_2")


def test_bf16_stays_bf16_in_torch_and_is_exact_in_numpy():
    torch = pytest.importorskip("torch")
    values = torch.randn(2, 768).bfloat16()
    emb = Embedding("b", {"clip_l": values.float().numpy()}, dtypes={"clip_l": "bfloat16"})
    t = embkit.to_state_dict(emb, "diffusers", framework="torch")["b"]
    assert t.dtype == torch.bfloat16 and torch.equal(t, values)
    assert np.array_equal(state_dict(emb, "diffusers")["b"], values.float().numpy())
    (back,) = from_state_dict({"b": t})
    assert back.dtypes["clip_l"] == "bfloat16" and back.same_vectors(emb)


def test_losses_and_choices():
    sd = state_dict(SDXL, "diffusers", slot="clip_g")
    assert list(sd) == ["xl"] and sd["xl"].shape == (2, 1280)
    with pytest.raises(LossError, match="clip_g"):
        state_dict(SDXL, "diffusers", strict=True)  # one encoder's layout: clip_g would be dropped
    assert state_dict(SD1, "kohya", dtype="fp32")["emb_params"].dtype == np.float32
    with pytest.raises(OperationError, match="not pickled"):
        state_dict(SD1, "a1111-image")
    with pytest.raises(OperationError, match="slot='clip_l'"):
        state_dict(SDXL, "diffusers", sdxl_two_files=True)
    with pytest.raises(UnknownFormatError):
        state_dict(SD1, "nope")
    with pytest.raises(OperationError, match="framework"):
        embkit.to_state_dict(SD1, framework="jax")


def test_from_state_dict_names_like_diffusers():
    torch = pytest.importorskip("torch")
    a1111 = embkit.to_state_dict(SD1, "a1111", framework="torch")
    (emb,) = from_state_dict(a1111)
    assert emb.name == "my-style" and emb.same_vectors(SD1) and emb.metadata["step"] == 1200
    (kohya,) = from_state_dict({"emb_params": torch.ones(2, 768)})
    assert kohya.name == "emb_params"  # diffusers' rule for a one-key dict
    (named,) = from_state_dict({"emb_params": torch.ones(2, 768)}, name="mine")
    assert named.name == "mine"
    with pytest.raises(embkit.EmbkitError, match="name="):
        from_state_dict(state_dict(SDXL, "multi"))
    (multi,) = from_state_dict(state_dict(SDXL, "multi"), name="xl")
    assert multi.same_vectors(SDXL)
    two = from_state_dict({"<a>": np.ones((1, 768), np.float32), "<b>": torch.zeros(768)})
    assert [e.name for e in two] == ["<a>", "<b>"]
    with pytest.raises(UnknownFormatError):
        from_state_dict({"model.weight": torch.ones(2, 768), "other.bias": torch.ones(2)})
    with pytest.raises(embkit.EmbkitError, match="non-empty dict"):
        from_state_dict({})


def test_from_state_dict_on_a_gpu_like_tensor_with_grad():
    torch = pytest.importorskip("torch")
    t = torch.randn(2, 768, requires_grad=True)
    (emb,) = from_state_dict({"<g>": t})
    assert np.array_equal(emb.vectors["clip_l"], t.detach().numpy())

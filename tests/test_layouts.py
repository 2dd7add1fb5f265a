"""One small file per layout × container, written the way the other tools write them."""

from __future__ import annotations

import numpy as np
import pytest

import embkit
from embkit.errors import BrokenFileError, EmbkitError, UnknownFormatError

import makers as mk


def bf16_round(arr: np.ndarray) -> np.ndarray:
    import torch

    return torch.from_numpy(arr).to(torch.bfloat16).float().numpy()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("legacy", [False, True])
def test_a1111_pt(tmp_path, dtype, legacy):
    arr = mk.vectors(3, 768, seed=1)
    path = mk.a1111_pt(tmp_path / "my-style.pt", arr, name="my-style-v2", step=500, dtype=dtype, legacy=legacy)
    emb = embkit.read(path)
    assert emb.name == "my-style" and emb.metadata["stored_name"] == "my-style-v2"
    assert emb.metadata["step"] == 500 and emb.metadata["sd_checkpoint"] == "7ab762a7"
    assert emb.dtypes["clip_l"] == dtype
    expected = {"float32": arr, "float16": arr.astype(np.float16), "bfloat16": bf16_round(arr)}[dtype]
    assert np.array_equal(emb.vectors["clip_l"], expected)
    warnings = embkit.probe(path).embeddings[0].warnings
    assert any("stored name 'my-style-v2' differs from the file name 'my-style'" in w for w in warnings)


def test_original_ti_parameterdict_several_keys(tmp_path):
    a, b = mk.vectors(1, 768, seed=2), mk.vectors(2, 768, seed=3)
    path = mk.original_ti_pt(tmp_path / "ti.pt", {"*": a, "@": b})
    embs = embkit.read_all(path)
    assert [e.name for e in embs] == ["ti_0", "ti_1"]
    assert [e.metadata["placeholder"] for e in embs] == ["*", "@"]
    assert np.array_equal(embs[0].vectors["clip_l"], a) and np.array_equal(embs[1].vectors["clip_l"], b)
    with pytest.raises(EmbkitError, match="holds 2 embeddings"):
        embkit.read(path)
    assert embkit.read(path, member="@").same_vectors(embs[1])


def test_original_ti_parameterdict_single(tmp_path):
    a = mk.vectors(4, 1024, seed=4)
    emb = embkit.read(mk.original_ti_pt(tmp_path / "sd2thing.pt", {"*": a}))
    assert emb.slots == ("clip_h",) and emb.family == "sd2" and np.array_equal(emb.vectors["clip_h"], a)


@pytest.mark.parametrize("ext", [".bin", ".safetensors"])
@pytest.mark.parametrize("one_d", [True, False])
def test_diffusers(tmp_path, ext, one_d):
    arr = mk.vectors(1 if one_d else 4, 768, seed=5)
    emb = embkit.read(mk.diffusers_file(tmp_path / f"learned_embeds{ext}", "<cat-toy>", arr, one_d=one_d))
    assert emb.name == "<cat-toy>" and emb.source.format == "diffusers"
    assert np.array_equal(emb.vectors["clip_l"], arr)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_diffusers_sdxl_half_safetensors(tmp_path, dtype):
    arr = mk.vectors(2, 1280, seed=6)
    emb = embkit.read(mk.diffusers_file(tmp_path / "learned_embeds_2.safetensors", "<s0>", arr, dtype=dtype))
    assert emb.slots == ("clip_g",) and emb.dtypes["clip_g"] == dtype
    assert emb.family == "unknown" and emb.families == ("sdxl", "sd3")
    expected = arr.astype(np.float16) if dtype == "float16" else bf16_round(arr)
    assert np.array_equal(emb.vectors["clip_g"], expected)


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
@pytest.mark.parametrize("key", ["emb_params", "emp_params"])
def test_kohya(tmp_path, ext, key):
    arr = mk.vectors(6, 768, seed=7)
    meta = {"modelspec.architecture": "stable-diffusion-v1/textual-inversion", "modelspec.title": "Thing"} if ext == ".safetensors" else None
    emb = embkit.read(mk.kohya_file(tmp_path / f"thing{ext}", arr, key=key, metadata=meta))
    assert emb.name == "thing" and emb.source.format == "kohya"
    assert np.array_equal(emb.vectors["clip_l"], arr)
    if meta:
        assert emb.metadata["modelspec.title"] == "Thing"


@pytest.mark.parametrize(
    "family,keys",
    [
        ("sdxl", {"clip_l": 768, "clip_g": 1280}),
        ("sdxl", {"clip_l": 768, "clip_g": 1280, "clip_l_out": 768, "clip_g_out": 1280}),
        ("sd3", {"clip_l": 768, "clip_g": 1280, "t5": 4096}),
        ("sd3", {"clip_l": 768, "clip_g": 1280, "t5": 4096, "t5_out": 4096}),
        ("flux", {"clip_l": 768, "t5": 4096}),
        ("flux", {"clip_l": 768, "t5xxl": 4096}),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_multi(tmp_path, family, keys, dtype):
    slots = {k: mk.vectors(2, w, seed=i) for i, (k, w) in enumerate(keys.items())}
    emb = embkit.read(mk.multi_file(tmp_path / "person.safetensors", slots, dtype=dtype))
    assert emb.name == "person" and emb.source.format == "multi" and emb.family == family
    assert set(emb.output_slots) == {k.replace("t5xxl", "t5") for k in keys if k.endswith("_out")}
    assert set(emb.slots) == {k.replace("t5xxl", "t5") for k in keys if not k.endswith("_out")}
    for k, arr in slots.items():
        slot = k.replace("t5xxl", "t5")
        expected = arr if dtype == "float32" else bf16_round(arr)
        assert np.array_equal(emb.vectors[slot], expected)
    assert emb.num_vectors == 2


def test_multi_pickle(tmp_path):
    slots = {"clip_l": mk.vectors(1, 768), "clip_g": mk.vectors(1, 1280)}
    emb = embkit.read(mk.multi_file(tmp_path / "x.pt", slots))
    assert emb.source.container == "pickle" and emb.family == "sdxl"


def test_lora_bundle(tmp_path):
    a = mk.vectors(2, 768, seed=1)
    g_l, g_g = mk.vectors(3, 768, seed=2), mk.vectors(3, 1280, seed=3)
    path = mk.lora_bundle(tmp_path / "lora.safetensors", {"hero": {"string_to_param.*": a}, "villain": {"clip_l": g_l, "clip_g": g_g}})
    embs = embkit.read_all(path)
    assert [e.name for e in embs] == ["hero", "villain"]
    assert embs[0].source.format == "lora-bundle" and embs[0].family == "sd1" and embs[1].family == "sdxl"
    assert np.array_equal(embs[1].vectors["clip_g"], g_g)
    assert embkit.read(path, member="hero").same_vectors(embs[0])


def test_concept_folder_generated(tmp_path):
    arr = mk.vectors(1, 768)
    folder = mk.concept_folder(tmp_path / "cat-toy", "<cat-toy>", arr)
    emb = embkit.read(folder)
    assert emb.name == "<cat-toy>" and emb.metadata["type_of_concept"] == "object"
    assert embkit.probe(folder).format == "concept-folder"


def test_image_card_generated(tmp_path):
    arr = mk.vectors(3, 768)
    emb = embkit.read(mk.image_card_text_only(tmp_path / "card.png", arr, name="sparkle"))
    assert emb.name == "sparkle" and emb.source.format == "a1111-image"
    assert np.array_equal(emb.vectors["clip_l"], arr)


def test_forced_format(tmp_path):
    path = mk.kohya_file(tmp_path / "k.safetensors", mk.vectors(1, 768))
    assert embkit.read(path, format="kohya").name == "k"
    with pytest.raises(UnknownFormatError, match="is not in the a1111 layout|is not in the diffusers layout"):
        embkit.read(path, format="diffusers")
    with pytest.raises(UnknownFormatError, match="unknown format"):
        embkit.read(path, format="nope")


# -- broken files: clear errors naming the file and the problem ----------------------------------


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    with pytest.raises(BrokenFileError, match=r"empty\.pt: file is empty"):
        embkit.read(p)


def test_truncated_zip(tmp_path):
    src = mk.a1111_pt(tmp_path / "full.pt", mk.vectors(2, 768))
    p = tmp_path / "cut.pt"
    p.write_bytes(src.read_bytes()[:300])
    with pytest.raises(BrokenFileError, match="cut.pt"):
        embkit.read(p)


def test_truncated_safetensors(tmp_path):
    src = mk.kohya_file(tmp_path / "full.safetensors", mk.vectors(2, 768))
    p = tmp_path / "cut.safetensors"
    p.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(BrokenFileError, match="cut.safetensors: .*(offset|not fully covered)"):
        embkit.read(p)


def test_empty_dict(tmp_path):
    from safetensors.numpy import save_file

    import torch

    torch.save({}, tmp_path / "e.pt")
    with pytest.raises(BrokenFileError, match="empty dict"):
        embkit.read(tmp_path / "e.pt")
    save_file({}, str(tmp_path / "e.safetensors"))
    with pytest.raises(BrokenFileError, match="empty dict"):
        embkit.read(tmp_path / "e.safetensors")


def test_unknown_layout(tmp_path):
    import torch

    torch.save({"weights": [1, 2, 3]}, tmp_path / "model.pt")
    with pytest.raises(UnknownFormatError, match=r"model\.pt: .*no known embedding layout.*'weights'"):
        embkit.read(tmp_path / "model.pt")


def test_not_an_embedding(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(UnknownFormatError, match="notes.txt"):
        embkit.read(p)
    q = tmp_path / "fake.pt"
    q.write_text("hello there, not a pickle")
    with pytest.raises(BrokenFileError, match=r"fake.pt: does not start like a torch file \(first bytes"):
        embkit.read(q)


def test_int_tensor_is_rejected(tmp_path):
    from safetensors.numpy import save_file

    save_file({"emb_params": np.ones((2, 768), dtype=np.int32)}, str(tmp_path / "ints.safetensors"))
    with pytest.raises(BrokenFileError, match="dtype int32"):
        embkit.read(tmp_path / "ints.safetensors")


def test_three_d_tensor_is_rejected(tmp_path):
    from safetensors.numpy import save_file

    save_file({"emb_params": np.ones((2, 2, 768), dtype=np.float32)}, str(tmp_path / "cube.safetensors"))
    with pytest.raises(BrokenFileError, match=r"shape \[2, 2, 768\]"):
        embkit.read(tmp_path / "cube.safetensors")


def test_unknown_width(tmp_path):
    from safetensors.numpy import save_file

    save_file({"emb_params": np.ones((2, 500), dtype=np.float32)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(BrokenFileError, match="500 wide"):
        embkit.read(tmp_path / "odd.safetensors")


def test_missing_file(tmp_path):
    with pytest.raises(EmbkitError, match="no such file"):
        embkit.read(tmp_path / "nope.pt")


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_model_weights_are_not_embeddings(tmp_path, ext):
    # A checkpoint (or its token table alone) beside embeddings: a model, named as such, never a
    # 49,408-vector "diffusers embedding" and never a "damaged" one.
    import torch
    from safetensors.torch import save_file

    table = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
    cases = {
        "token-table": {table: torch.zeros(49408, 768)},
        "checkpoint": {"first_stage_model.decoder.conv_in.weight": torch.zeros(4, 4, 3, 3), "model.diffusion_model.out.0.bias": torch.zeros(4)},
    }
    for name, tensors in cases.items():
        path = tmp_path / f"{name}{ext}"
        if ext == ".pt":
            torch.save(tensors, path)
        else:
            save_file(tensors, path)
        with pytest.raises(UnknownFormatError, match="holds model weights"):
            embkit.read_all(path)
        with pytest.raises(UnknownFormatError, match="holds model weights"):
            embkit.probe(path)


def test_dotted_tokens_are_still_tokens(tmp_path):
    # only dotted names ending in a parameter name count as weights
    path = mk.diffusers_file(tmp_path / "x.safetensors", "<my.style>", np.ones((2, 768), np.float32))
    assert embkit.read(path).name == "<my.style>"

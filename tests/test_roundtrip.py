"""Round-trip harness: every readable format x every writable format (and container).

Sources are files written the way other tools write them (tests/makers.py, real torch and
safetensors), the real-world corpus, and embeddings generated in memory in every dtype. Each is
written with embkit.write, read back with embkit.read and loaded by the other tools' own readers
(torch.load(weights_only=True), safetensors.torch.load_file). The expectations below (what each
target holds) are written out here, not taken from the writers:

* vectors bit-identical, dtype kept (an embedding card stores float32 numbers);
* names and metadata kept where the target can hold them;
* a loss warning exactly where it cannot: nothing more, nothing less.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import embkit
from embkit import Embedding
from embkit.scan import scan_file
from embkit.writing import VECTOR_LOSSES

import makers

CORPUS_FILES = ["bad-hands-5.pt", "EasyNegative.pt", "test_embedding.png", "rummd", "ttekcor/learned_embeds.safetensors"]

#: target id → (format, file suffix or "" for a folder, write options)
TARGETS = {
    "a1111.pt": ("a1111", ".pt", {}),
    "a1111-image.png": ("a1111-image", ".png", {}),
    "kohya.safetensors": ("kohya", ".safetensors", {}),
    "kohya.pt": ("kohya", ".pt", {}),
    "multi.safetensors": ("multi", ".safetensors", {}),
    "multi.pt": ("multi", ".pt", {}),
    "diffusers.safetensors": ("diffusers", ".safetensors", {}),
    "diffusers.bin": ("diffusers", ".bin", {}),
    "concept-folder": ("concept-folder", "", {}),
    "concept-folder-st": ("concept-folder", "", {"embeds": "safetensors"}),
}
#: what each target can hold (written out independently of the writers)
SINGLE_SLOT = {"a1111", "a1111-image", "kohya", "diffusers", "concept-folder"}
STEM_TRIGGERED = {"a1111", "kohya", "multi"}
A1111_META = {"step", "sd_checkpoint", "sd_checkpoint_name"}
#: metadata keys that describe the source file's layout, not the embedding
LAYOUT = {"string_to_token", "stored_name", "placeholder", "key", "t5_key", "format", "token_identifier", "lora_tensors"}


def held_metadata(target: str) -> set[str] | None:
    """Metadata keys a target keeps; None: all of them."""
    fmt, suffix, opts = TARGETS[target]
    if suffix == ".safetensors" or opts.get("embeds") == "safetensors":
        return None
    if fmt in ("a1111", "a1111-image"):
        return A1111_META
    if fmt == "concept-folder":
        return {"type_of_concept"}
    return set()


def rows(n, d, seed, dtype="float32"):
    v = makers.vectors(n, d, seed=seed, scale=0.3)
    if dtype == "bfloat16":
        v = ((v.view(np.uint32) + 0x8000) & 0xFFFF0000).view(np.float32)  # representable in bf16
        return v
    if dtype == "float64":
        return v.astype(np.float64) * (1 + 1e-9)  # values float32 cannot hold
    return v.astype(dtype)


GENERATED = {
    "gen-sd1-fp32": lambda: Embedding("gen_sd1", {"clip_l": rows(3, 768, 1)}, metadata={"step": 7, "note": "hello"}),
    "gen-sd1-fp16": lambda: Embedding("gen_fp16", {"clip_l": rows(2, 768, 2, "float16")}),
    "gen-sd1-bf16": lambda: Embedding("gen_bf16", {"clip_l": rows(2, 768, 3, "bfloat16")}, dtypes={"clip_l": "bfloat16"}),
    "gen-sd1-fp64": lambda: Embedding("gen_fp64", {"clip_l": rows(1, 768, 4, "float64")}),
    "gen-sd2": lambda: Embedding("gen_sd2", {"clip_h": rows(4, 1024, 5)}, metadata={"sd_checkpoint": "abc123", "provenance": [{"operation": "x"}]}),
    "gen-sdxl": lambda: Embedding("gen_sdxl", {"clip_l": rows(2, 768, 6), "clip_g": rows(2, 1280, 7)}, metadata={"modelspec.title": "t"}),
    "gen-sd3-out": lambda: Embedding(
        "gen_sd3", {"clip_l": rows(1, 768, 8), "clip_g": rows(1, 1280, 9), "t5": rows(1, 4096, 10), "clip_l_out": rows(1, 768, 11)}
    ),
    "gen-odd-name": lambda: Embedding("<my token>", {"clip_l": rows(2, 768, 12)}),
}


def make_sources(folder: Path) -> dict[str, Path]:
    """Files in every readable format, as the tools that write them do."""
    v = makers.vectors
    f = folder
    return {
        "a1111": makers.a1111_pt(f / "a1111.pt", v(2, 768, 1)),
        "a1111-fp16": makers.a1111_pt(f / "a1111_h.pt", v(2, 768, 2), dtype="float16", name="other-name"),
        "a1111-bf16": makers.a1111_pt(f / "a1111_b.pt", v(3, 1024, 3), dtype="bfloat16"),
        "a1111-legacy": makers.a1111_pt(f / "legacy.pt", v(2, 768, 4), legacy=True),
        "original-ti": makers.original_ti_pt(f / "orig.pt", {"*": v(2, 768, 5)}),
        "a1111-image": makers.image_card_text_only(f / "card.png", v(2, 768, 6), name="cardname", step=12),
        "kohya-st": makers.kohya_file(f / "kohya.safetensors", v(4, 768, 7), metadata={"modelspec.title": "K", "ss_x": "1"}),
        "kohya-pt": makers.kohya_file(f / "kohya.pt", v(4, 1280, 8)),
        "onetrainer-emp": makers.kohya_file(f / "emp.safetensors", v(2, 768, 9), key="emp_params"),
        "multi-sdxl": makers.multi_file(f / "sdxl.safetensors", {"clip_l": v(2, 768, 10), "clip_g": v(2, 1280, 11)}),
        "multi-sd3-t5xxl-out": makers.multi_file(
            f / "sd3.safetensors", {"clip_l": v(1, 768, 12), "clip_g": v(1, 1280, 13), "t5xxl": v(1, 4096, 14), "clip_g_out": v(1, 1280, 15)}
        ),
        "multi-pt-fp16": makers.multi_file(f / "flux.pt", {"clip_l": v(2, 768, 16), "t5": v(2, 4096, 17)}, dtype="float16"),
        "diffusers-bin-1d": makers.diffusers_file(f / "learned_embeds.bin", "<tok>", v(1, 768, 18), one_d=True),
        "diffusers-st": makers.diffusers_file(f / "d.safetensors", "tok", v(3, 768, 19)),
        "concept-folder": makers.concept_folder(f / "concept", "<cat-toy>", v(2, 768, 20), kind="style"),
        "lora-bundle": makers.lora_bundle(f / "lora.safetensors", {"emb": {"clip_l": v(2, 768, 21), "clip_g": v(2, 1280, 22)}}),
        "onetrainer-emp-out": makers.onetrainer_output_embedding(f / "ot_out.safetensors", v(2, 1024, 23)),
        "diffusers-sdxl-pair": makers.diffusers_sdxl_pair(f / "pair", "xltok", v(2, 768, 24), v(2, 1280, 25), g_dtype="float16"),
        "advanced-sdxl-emb": makers.advanced_sdxl_emb(f / "adv_emb.safetensors", v(2, 768, 26), v(2, 1280, 27)),
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    return make_sources(tmp_path_factory.mktemp("sources"))


def safe_stem(name: str) -> str:
    return name if re.fullmatch(r"[\w.-]+", name) else "renamed"


def expected_losses(emb: Embedding, target: str, stem: str) -> set[str]:
    fmt, suffix, opts = TARGETS[target]
    codes = set()
    if fmt in SINGLE_SLOT and len(emb.slots) > 1:
        codes.add("slot-dropped")
    if fmt != "multi" and emb.output_slots:
        codes.add("output-vectors-dropped")
    held = held_metadata(target)
    derived = {"modelspec.sai_model_spec", "modelspec.architecture", "modelspec.implementation"}  # kohya writes them
    title_is_name = emb.metadata.get("modelspec.title") in (emb.name, emb.metadata.get("stored_name"))
    droppable = [k for k, v in emb.metadata.items() if k not in LAYOUT and k not in derived and v is not None]
    droppable = [k for k in droppable if not (k == "modelspec.title" and title_is_name)]
    if held is not None and any(k not in held for k in droppable):
        codes.add("metadata-dropped")
    if fmt in STEM_TRIGGERED and stem != emb.name:
        codes.add("trigger-renamed")
    if fmt == "a1111-image":
        kept = emb.slots[0]
        if emb.dtypes[kept] != "float32":
            codes.add("dtype-changed")
        if emb.dtypes[kept] == "float64":
            codes.add("precision-lost")
    return codes


def check_roundtrip(emb: Embedding, target: str, folder: Path) -> None:
    fmt, suffix, opts = TARGETS[target]
    stem = safe_stem(emb.name)
    out = folder / f"{stem}{suffix}"
    expected = expected_losses(emb, target, stem)
    if expected & VECTOR_LOSSES:
        # dropping vectors is refused unless allowed (issue 19), before anything is written
        with pytest.raises(embkit.LossError, match="would drop vectors"):
            embkit.write(emb, out, fmt, **opts)
        assert not out.exists()
    losses = embkit.write(emb, out, fmt, allow_loss=True, **opts)
    codes = [x.code for x in losses]
    assert set(codes) == expected, [str(x) for x in losses]
    dropped = [x.slot for x in losses if x.code == "slot-dropped"]
    assert sorted(dropped) == sorted(set(emb.slots) - {emb.slots[0]} if fmt in SINGLE_SLOT else []), "one loss per dropped slot"
    assert [x.slot for x in losses if x.code == "output-vectors-dropped"] == ([] if fmt == "multi" else list(emb.output_slots))
    assert all(codes.count(c) == 1 for c in codes if c not in ("slot-dropped", "output-vectors-dropped")), codes
    back = embkit.read(out)
    assert back.source.format == fmt
    for written in [out] if out.is_file() else sorted(out.iterdir()):  # read accepts it: scan says safe
        if written.name.startswith("learned_embeds") or written == out:
            assert scan_file(written).verdict == "safe", scan_file(written).to_dict()
    kept = [emb.slots[0]] if fmt in SINGLE_SLOT else list(emb.vectors)
    assert list(back.vectors) == kept
    for slot in kept:
        if fmt == "a1111-image":
            assert back.dtypes[slot] == "float32"
            assert np.array_equal(back.vectors[slot], emb.vectors[slot].astype(np.float32))
        else:
            assert back.dtypes[slot] == emb.dtypes[slot], slot
            assert back.vectors[slot].dtype == emb.vectors[slot].dtype
            assert np.array_equal(back.vectors[slot], emb.vectors[slot]), f"{slot} changed"
    # the trigger: kept by name-carrying targets; the file stem for the others
    if fmt in STEM_TRIGGERED:
        assert back.name == stem
    else:
        assert back.name == emb.name
    if fmt == "a1111":
        assert back.metadata["stored_name"] == emb.metadata.get("stored_name", emb.name)
    held = held_metadata(target)
    for key, value in emb.metadata.items():
        if key in LAYOUT or value is None:
            continue
        if held is None or key in held:
            assert back.metadata.get(key) == value, f"metadata {key} not kept"
    load_with_other_tools(out, back, fmt)


def load_with_other_tools(out: Path, back: Embedding, fmt: str) -> None:
    """torch.load(weights_only=True) and safetensors.torch.load_file see the same vectors."""
    files = [out] if out.is_file() else [p for p in out.iterdir() if p.name.startswith("learned_embeds")]
    for path in files:
        if path.suffix in (".pt", ".bin"):
            import torch

            data = torch.load(path, weights_only=True)
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            continue
        tensors = data["string_to_param"] if "string_to_param" in data else data
        assert len(tensors) == len(back.vectors)
        for t in tensors.values():
            arr = t.float().numpy()
            assert any(v.size == arr.size and np.array_equal(arr.reshape(v.shape), v.astype(np.float32)) for v in back.vectors.values())


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("source", list(GENERATED))
def test_generated(source, target, tmp_path):
    check_roundtrip(GENERATED[source](), target, tmp_path)


SOURCE_IDS = [
    "a1111", "a1111-fp16", "a1111-bf16", "a1111-legacy", "original-ti", "a1111-image", "kohya-st", "kohya-pt",
    "onetrainer-emp", "multi-sdxl", "multi-sd3-t5xxl-out", "multi-pt-fp16", "diffusers-bin-1d", "diffusers-st",
    "concept-folder", "lora-bundle", "onetrainer-emp-out", "diffusers-sdxl-pair", "advanced-sdxl-emb",
]


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("source", SOURCE_IDS)
def test_files(source, target, sources, tmp_path):
    for emb in embkit.read_all(sources[source]):
        check_roundtrip(emb, target, tmp_path)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus(name, target, corpus, tmp_path):
    check_roundtrip(embkit.read(corpus / name), target, tmp_path)


def test_same_format_same_vectors_bytes(sources, tmp_path):
    """a1111 → a1111 keeps the tensor bytes: torch sees the identical tensor and dict."""
    import torch

    emb = embkit.read(sources["a1111"])
    out = tmp_path / "a1111.pt"
    assert embkit.write(emb, out) == []
    mine, theirs = torch.load(out, weights_only=True), torch.load(sources["a1111"], weights_only=True)
    assert list(mine) == list(theirs)
    assert torch.equal(mine["string_to_param"]["*"], theirs["string_to_param"]["*"])
    assert {k: v for k, v in mine.items() if k != "string_to_param"} == {k: v for k, v in theirs.items() if k != "string_to_param"}


# -- diffusers SDXL pairs as a target (issue 15) ----------------------------------------------------------

PAIR_SOURCES = ["multi-sdxl", "multi-sd3-t5xxl-out", "lora-bundle", "diffusers-sdxl-pair", "advanced-sdxl-emb"]


@pytest.mark.parametrize("source", PAIR_SOURCES)
def test_sdxl_pair_target(source, sources, tmp_path):
    """``sdxl_two_files=True`` writes the two files diffusers' SDXL script writes; reading the first
    gives back one SDXL embedding: both slots bit-identical, dtypes and metadata kept, the token as
    the name, a loss only for what a pair cannot hold (other slots, output vectors)."""
    from safetensors.torch import load_file

    for emb in embkit.read_all(sources[source]):
        out = tmp_path / f"{safe_stem(emb.name)}.safetensors"
        want = {"slot-dropped"} if set(emb.slots) - {"clip_l", "clip_g"} else set()
        want |= {"output-vectors-dropped"} if emb.output_slots else set()
        losses = embkit.write(emb, out, "diffusers", sdxl_two_files=True, overwrite=True, allow_loss=bool(want))
        assert {x.code for x in losses} == want, [str(x) for x in losses]
        back = embkit.read(out)
        assert back.source.pair == str(out.with_name(out.stem + "_2.safetensors"))
        assert back.name == emb.name and back.slots == ("clip_l", "clip_g")
        for slot in back.slots:
            assert back.dtypes[slot] == emb.dtypes[slot] and np.array_equal(back.vectors[slot], emb.vectors[slot])
        for key, value in emb.metadata.items():
            if key not in LAYOUT and value is not None:
                assert back.metadata.get(key) == value, key
        for path, slot in ((out, "clip_l"), (out.with_name(out.stem + "_2.safetensors"), "clip_g")):
            [(token, tensor)] = load_file(str(path)).items()  # what diffusers' load_textual_inversion sees
            assert token == emb.name and np.array_equal(tensor.float().numpy(), emb.vectors[slot].astype(np.float32))


# -- bytes and file objects read like the file on disk (issue 15) -----------------------------------------


def same_reading(on_disk: list[Embedding], in_memory: list[Embedding]) -> None:
    assert len(on_disk) == len(in_memory)
    for a, b in zip(on_disk, in_memory):
        assert (a.name, dict(a.metadata), dict(a.dtypes)) == (b.name, dict(b.metadata), dict(b.dtypes))
        assert a.same_vectors(b)
        assert (a.source.format, a.source.container, a.source.member) == (b.source.format, b.source.container, b.source.member)
        assert b.source.in_memory and not a.source.in_memory


@pytest.mark.parametrize("source", [s for s in SOURCE_IDS if s not in ("concept-folder", "diffusers-sdxl-pair")])
def test_bytes_and_file_objects_read_like_the_file(source, sources):
    import io

    path = sources[source]
    disk = embkit.read_all(path)
    same_reading(disk, embkit.read_all(path.read_bytes(), name=path.name))
    same_reading(disk, embkit.read_all(bytearray(path.read_bytes()), name=path.name))
    with open(path, "rb") as fh:  # a file object names itself
        same_reading(disk, embkit.read_all(fh))
    same_reading(disk, embkit.read_all(io.BytesIO(path.read_bytes()), name=path.name))
    p, m = embkit.probe(path), embkit.probe(memoryview(path.read_bytes()), name=path.name)
    assert (p.format, p.container, p.hashes, p.size) == (m.format, m.container, m.hashes, m.size)
    assert [e.slots for e in p.embeddings] == [e.slots for e in m.embeddings]


def test_an_sdxl_pair_from_bytes_reads_like_the_pair_on_disk(sources):
    first = sources["diffusers-sdxl-pair"]
    second = first.with_name("learned_embeds_2.safetensors")
    same_reading(embkit.read_all(first), embkit.read_all([first.read_bytes(), second.read_bytes()]))


@pytest.mark.parametrize("target", [t for t, (_f, suffix, _o) in TARGETS.items() if suffix])
def test_every_written_layout_reads_the_same_from_bytes(target, tmp_path):
    fmt, suffix, opts = TARGETS[target]
    for make in GENERATED.values():
        emb = make()
        out = tmp_path / f"{safe_stem(emb.name)}{suffix}"
        embkit.write(emb, out, fmt, overwrite=True, allow_loss=True, **opts)
        same_reading(embkit.read_all(out), embkit.read_all(out.read_bytes(), name=out.name))

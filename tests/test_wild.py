"""Files as they are found in the wild (issue 15): diffusers SDXL pairs, the advanced script's
``_emb`` file, OneTrainer's output embeddings, kohya XTI, and the sidecars other tools write.

Every file is written the way its own tool writes it (tests/makers.py: torch.save, safetensors'
save_file, json.dumps with each tool's settings); the assertions are on what embkit reads and on
the ``inspect --json`` contract.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import embkit
import makers
from conftest import run_embkit
from embkit.errors import UnsupportedLayoutError
from embkit.formats import sidecars as sc


def inspect_json(*args) -> tuple[int, list]:
    proc = run_embkit("inspect", "--json", *map(str, args))
    return proc.returncode, json.loads(proc.stdout)


# -- diffusers SDXL pairs -----------------------------------------------------------------------------


@pytest.fixture()
def pair(tmp_path):
    l, g = makers.vectors(2, 768, 1), makers.vectors(2, 1280, 2)
    g = ((g.view(np.uint32) + 0x8000) & 0xFFFF0000).view(np.float32)  # exact in bf16
    first = makers.diffusers_sdxl_pair(tmp_path / "out", "<xl-tok>", l, g)
    return first, l, g


def test_pair_reads_as_one_sdxl_embedding_from_the_folder_either_file_or_both(pair):
    first, l, g = pair
    second = first.with_name("learned_embeds_2.safetensors")
    for source in (first, second, first.parent, [first, second], [second, first], [first.read_bytes(), second.read_bytes()]):
        emb = embkit.read(source)
        assert emb.name == "<xl-tok>" and emb.slots == ("clip_l", "clip_g") and emb.family == "sdxl"
        assert np.array_equal(emb.vectors["clip_l"], l) and np.array_equal(emb.vectors["clip_g"], g)
        assert emb.dtypes == {"clip_l": "float32", "clip_g": "bfloat16"}  # mixed precision, as the script saves it
        if not isinstance(source, Path) or source.is_file():
            assert emb.metadata["format"] == "pt"
    assert embkit.read(first).source.pair == str(second)
    assert embkit.read(second).source.path == str(first)  # the pair is known by its first file
    assert embkit.read(first.parent).source.format == "concept-folder"


def test_pair_checkpoints_pair_by_step(tmp_path):
    l, g = makers.vectors(1, 768, 3), makers.vectors(1, 1280, 4)
    first = makers.diffusers_sdxl_pair(tmp_path, "tok", l, g, g_dtype="float16", steps=500)
    assert first.name == "learned_embeds-steps-500.safetensors"
    emb = embkit.read(first)
    assert emb.slots == ("clip_l", "clip_g") and emb.source.pair.endswith("learned_embeds_2-steps-500.safetensors")


def test_pair_round_trips_what_embkit_writes(tmp_path):
    emb = embkit.Embedding("rt", {"clip_l": makers.vectors(3, 768, 5), "clip_g": makers.vectors(3, 1280, 6)}, metadata={"note": "x"})
    assert embkit.write(emb, tmp_path / "rt.safetensors", "diffusers", sdxl_two_files=True) == []
    back = embkit.read(tmp_path / "rt.safetensors")
    assert back.same_vectors(emb) and back.name == "rt" and back.metadata["note"] == "x"
    assert back.source.pair == str(tmp_path / "rt_2.safetensors")
    bin_pair = tmp_path / "bin"
    bin_pair.mkdir()
    embkit.write(emb, bin_pair / "learned_embeds.bin", "diffusers", sdxl_two_files=True)
    assert embkit.read(bin_pair / "learned_embeds.bin").same_vectors(emb)


def test_files_that_only_look_like_a_pair_are_read_alone(tmp_path):
    makers.diffusers_file(tmp_path / "style.safetensors", "style", makers.vectors(1, 768, 1))
    makers.diffusers_file(tmp_path / "style_2.safetensors", "style", makers.vectors(1, 768, 2))  # a second version, 768 wide
    makers.a1111_pt(tmp_path / "neg.pt", makers.vectors(1, 768, 3))
    makers.a1111_pt(tmp_path / "neg_2.pt", makers.vectors(1, 1024, 4))
    makers.diffusers_file(tmp_path / "a.safetensors", "a", makers.vectors(1, 768, 5))
    makers.diffusers_file(tmp_path / "a_2.safetensors", "other", makers.vectors(1, 1280, 6))  # another token
    for name in ("style", "style_2", "neg", "neg_2", "a"):
        path = next(tmp_path.glob(f"{name}.*"))
        assert len(embkit.read(path).slots) == 1, name
    lone_g = embkit.read_all(tmp_path / "a_2.safetensors")
    assert [e.slots for e in lone_g] == [("clip_g",)]
    code, reports = inspect_json(tmp_path)
    assert code == 0 and len(reports) == 6  # nothing left out, nothing merged
    with pytest.raises(embkit.UnknownFormatError, match="not the two files of a diffusers SDXL pair"):
        embkit.read([tmp_path / "style.safetensors", tmp_path / "style_2.safetensors"])


def test_a_second_file_alone_says_what_it_is_and_a_broken_partner_is_a_warning(tmp_path):
    makers.diffusers_sdxl_pair(tmp_path, "tok", makers.vectors(1, 768, 1), makers.vectors(1, 1280, 2))
    os.remove(tmp_path / "learned_embeds.safetensors")
    [rep] = inspect_json(tmp_path / "learned_embeds_2.safetensors")[1]
    assert rep["family"] != "sdxl" and any("CLIP-G half of a diffusers SDXL pair" in w for w in rep["warnings"])
    makers.diffusers_file(tmp_path / "learned_embeds.safetensors", "tok", makers.vectors(1, 768, 1))
    (tmp_path / "learned_embeds_2.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}    ")
    emb = embkit.read(tmp_path / "learned_embeds.safetensors")
    assert emb.slots == ("clip_l",)
    code, [rep] = inspect_json(tmp_path / "learned_embeds.safetensors")
    assert any("learned_embeds_2.safetensors beside it could not be read (broken-file)" in w for w in rep["warnings"])


def test_inspect_reports_a_pair_once_with_both_files(pair):
    first, _l, _g = pair
    for args in ([first.parent / ".."], [first, first.with_name("learned_embeds_2.safetensors")]):
        code, reports = inspect_json(*args)
        assert code == 0 and len(reports) == 1, reports
        rep = reports[0]
        assert rep["family"] == "sdxl" and set(rep["slots"]) == {"clip_l", "clip_g"}
        assert rep["slots"]["clip_g"]["dtype"] == "bfloat16"
        assert rep["pair"]["clip_l"]["path"].endswith("learned_embeds.safetensors")
        assert rep["pair"]["clip_g"]["path"].endswith("learned_embeds_2.safetensors")
        assert len(rep["pair"]["clip_g"]["sha256"]) == 64


@pytest.mark.slow
def test_pair_applies_to_a_tiny_sdxl_pipeline(tmp_path):
    pytest.importorskip("torch")
    from embkit.diffusers import apply
    from embkit.diffusers.tiny import tiny_pipeline

    pipe = tiny_pipeline("sdxl")
    first = makers.diffusers_sdxl_pair(tmp_path, "<pairtok>", makers.vectors(2, 768, 7), makers.vectors(2, 1280, 8), g_dtype="float32")
    emb = embkit.read(first)
    apply(pipe, [emb])
    for tok, enc, slot in ((pipe.tokenizer, pipe.text_encoder, "clip_l"), (pipe.tokenizer_2, pipe.text_encoder_2, "clip_g")):
        ids = tok.convert_tokens_to_ids(["<pairtok>", "<pairtok>_1"])
        rows = enc.get_input_embeddings().weight[ids].detach().float().numpy()
        assert np.allclose(rows, emb.vectors[slot]), slot


def test_advanced_script_emb_file_reads_as_multi(tmp_path):
    path = makers.advanced_sdxl_emb(tmp_path / "y2k_emb.safetensors", makers.vectors(2, 768, 1), makers.vectors(2, 1280, 2))
    emb = embkit.read(path)
    assert emb.source.format == "multi" and emb.name == "y2k_emb" and emb.family == "sdxl" and emb.metadata == {}


# -- OneTrainer output embeddings ----------------------------------------------------------------------


@pytest.mark.parametrize("width,slot", [(768, "clip_l"), (1024, "clip_h")])
def test_onetrainer_output_embedding_reads_its_out_vectors(tmp_path, width, slot):
    out = makers.vectors(3, width, 9)
    path = makers.onetrainer_output_embedding(tmp_path / "ot.safetensors", out)
    emb = embkit.read(path)
    assert emb.source.format == "kohya" and emb.name == "ot"
    assert set(emb.vectors) == {slot, slot + "_out"} and emb.output_slots == (slot + "_out",)
    assert np.array_equal(emb.vectors[slot + "_out"], out) and not emb.vectors[slot].any()
    code, [rep] = inspect_json(tmp_path)  # a folder walk reports it (it used to leave it out)
    assert code == 0 and rep["format"] == "kohya" and set(rep["slots"]) == {slot, slot + "_out"}
    assert any("all zeros and the trained vectors are in " + slot + "_out" in w and "ComfyUI" in w for w in rep["warnings"])
    # writing it where output vectors cannot go is refused unless the loss is allowed, then reported
    with pytest.raises(embkit.LossError, match="output vectors"):
        embkit.write(emb, tmp_path / "ot.pt", "a1111")
    losses = embkit.write(emb, tmp_path / "ot.pt", "a1111", allow_loss=True)
    assert [x.code for x in losses] == ["output-vectors-dropped"]


# -- kohya XTI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_xti_is_recognised_and_refused_with_what_it_is(tmp_path, suffix):
    path = makers.kohya_xti(tmp_path / f"style-xti{suffix}", n=2)
    for fn in (embkit.read, embkit.read_all, embkit.probe):
        with pytest.raises(UnsupportedLayoutError) as info:
            fn(path)
        msg = str(info.value)
        assert info.value.code == "unsupported-layout" and info.value.exit_code == 4
        assert "kohya XTI" in msg and "16 embeddings, one per UNet cross-attention block (IN01 … OUT11), each 2x768" in msg
        assert "do not apply it as a textual inversion" in msg
    makers.kohya_file(tmp_path / "plain.safetensors", makers.vectors(1, 768, 1))
    code, reports = inspect_json(tmp_path)
    # in a folder walk it is one file, skipped with what it is (issue 19: a file of a known kind that
    # is no textual inversion is not a failure of the walk); named directly, it is an error (exit 4)
    assert code == 0 and len(reports) == 2
    xti = next(r for r in reports if "skipped" in r)
    assert xti["skipped"].startswith("not an embedding: is a kohya XTI")
    assert run_embkit("inspect", str(path)).returncode == 4


def test_formats_table_lists_xti():
    proc = run_embkit("formats", "--json")
    rows = {r["id"]: r for r in json.loads(proc.stdout)["formats"]}
    assert rows["kohya-xti"]["write"] == [] and "XTI" in rows["kohya-xti"]["title"]


# -- sidecars -----------------------------------------------------------------------------------------


@pytest.fixture()
def with_sidecars(tmp_path):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    path = makers.kohya_file(folder / "myconcept.safetensors", makers.vectors(2, 768, 1))
    makers.civitai_info(folder / "myconcept.civitai.info", makers.civitai_version(["myconcept", "mc style"], base="SD 1.5", name="Café Concept"))
    makers.a1111_user_metadata(folder / "myconcept.json", {"description": "un café", "notes": "n", "sd version": "SD1",
                                                           "activation text": "myconcept, extra word", "preferred weight": 0})
    makers.lora_manager_metadata(folder / "myconcept.metadata.json", {"file_name": "myconcept", "model_name": "myconcept", "base_model": "Unknown",
                                                                     "trainedWords": ["lm word"], "civitai": {"trainedWords": ["myconcept"]}})
    makers.jpeg_bytes_as_png(folder / "myconcept.preview.png")
    return path


def test_sidecars_are_read_into_their_own_part(with_sidecars):
    emb = embkit.read(with_sidecars)
    side = emb.sidecars
    assert side.civitai_info["model"]["name"] == "Café Concept"  # written \\u-escaped by Civitai Helper
    assert side.a1111_json["description"] == "un café"
    assert side.metadata_json["model_name"] == "myconcept"
    assert side.preview == str(with_sidecars.with_name("myconcept.preview.png"))  # JPEG bytes under .png: still a preview
    assert side.trained_words == ("myconcept", "mc style", "lm word", "extra word")
    assert side.base_model == "SD 1.5"  # Civitai's first; Lora Manager's "Unknown" is skipped
    assert "civitai_info" not in emb.metadata and emb.metadata.get("modelspec.title") is None  # apart from the file's own
    again = pickle.loads(pickle.dumps(emb))
    assert again.sidecars == side and again.sidecars.civitai_info["id"] == 123456
    assert emb.replace(name="other").sidecars == side
    assert embkit.probe(with_sidecars).sidecars == side
    with pytest.raises(TypeError):
        side.civitai_info["id"] = 1  # frozen


def test_inspect_json_and_table_show_sidecars(with_sidecars):
    code, [rep] = inspect_json(with_sidecars)
    assert code == 0
    assert set(rep["sidecars"]) == {"civitai_info", "a1111_json", "metadata_json", "preview"}
    assert rep["sidecars"]["civitai_info"]["modelId"] == 98765
    assert rep["sidecars"]["preview"].endswith("myconcept.preview.png")
    assert rep["trained_words"] == ["myconcept", "mc style", "lm word", "extra word"] and rep["base_model"] == "SD 1.5"
    proc = run_embkit("inspect", str(with_sidecars))
    assert "trained words: myconcept, mc style" in proc.stdout and "base model: SD 1.5" in proc.stdout
    assert "civitai: Café Concept / v1.0" in proc.stdout


def test_no_sidecars_gives_nulls_and_no_words(tmp_path):
    path = makers.kohya_file(tmp_path / "bare.safetensors", makers.vectors(1, 768, 1))
    code, [rep] = inspect_json(path)
    assert rep["sidecars"] == {"civitai_info": None, "a1111_json": None, "metadata_json": None, "preview": None}
    assert "trained_words" not in rep and "base_model" not in rep


def test_broken_sidecar_json_is_a_warning_naming_the_file(with_sidecars):
    with_sidecars.with_name("myconcept.civitai.info").write_text('{"trainedWords": ["x"')
    with_sidecars.with_name("myconcept.metadata.json").write_text("[1, 2]")
    emb = embkit.read(with_sidecars)
    assert emb.sidecars.civitai_info is None and emb.sidecars.metadata_json is None
    warnings = " | ".join(emb.sidecars.warnings)
    assert "myconcept.civitai.info is not valid JSON" in warnings and "myconcept.metadata.json holds a JSON list" in warnings
    code, [rep] = inspect_json(with_sidecars)
    assert code == 0 and rep["sidecars"]["civitai_info"] is None
    assert any("myconcept.civitai.info is not valid JSON" in w for w in rep["warnings"])
    assert rep["base_model"] == "SD1"  # A1111's sd version, now the only one naming it


def test_sidecars_only_from_regular_files_inside_the_folder(tmp_path, with_sidecars):
    folder = with_sidecars.parent
    secret = tmp_path / "secret.json"
    secret.write_text('{"activation text": "leaked"}')
    os.remove(folder / "myconcept.json")
    os.symlink(secret, folder / "myconcept.json")  # a link out of the folder
    big = folder / "myconcept.metadata.json"
    big.write_text('{"trainedWords": ["' + "x" * sc.MAX_SIDECAR_BYTES + '"]}')
    side = embkit.read(with_sidecars).sidecars
    assert side.a1111_json is None and "leaked" not in side.trained_words
    assert any("myconcept.json links out of the embedding's folder" in w for w in side.warnings)
    assert any(f"past the cap of {sc.MAX_SIDECAR_BYTES}" in w for w in side.warnings)
    os.remove(folder / "myconcept.json")
    inner = folder / "notes"
    inner.mkdir()
    (inner / "meta.json").write_text('{"activation text": "inside"}')
    os.symlink(inner / "meta.json", folder / "myconcept.json")  # a link that stays inside
    assert "inside" in embkit.read(with_sidecars).sidecars.trained_words
    if hasattr(os, "mkfifo"):
        os.remove(folder / "myconcept.json")
        os.mkfifo(folder / "myconcept.json")  # reading it would block
        side = embkit.read(with_sidecars).sidecars
        assert any("myconcept.json is not a regular file" in w for w in side.warnings)


def test_plain_png_is_a_preview_unless_it_is_an_embedding_card(tmp_path):
    makers.a1111_pt(tmp_path / "a.pt", makers.vectors(1, 768, 1))
    makers.png_picture(tmp_path / "a.png")
    assert embkit.read(tmp_path / "a.pt").sidecars.preview == str(tmp_path / "a.png")
    makers.a1111_pt(tmp_path / "b.pt", makers.vectors(1, 768, 2))
    makers.image_card_text_only(tmp_path / "b.png", makers.vectors(1, 768, 3), name="b")
    assert embkit.read(tmp_path / "b.pt").sidecars.preview is None
    makers.png_picture(tmp_path / "b.preview.png")
    assert embkit.read(tmp_path / "b.pt").sidecars.preview == str(tmp_path / "b.preview.png")
    assert embkit.read(tmp_path / "b.png").sidecars.preview == str(tmp_path / "b.preview.png")  # a card's own preview
    (tmp_path / "c.preview.png").write_text("not a picture")
    makers.a1111_pt(tmp_path / "c.pt", makers.vectors(1, 768, 4))
    side = embkit.read(tmp_path / "c.pt").sidecars
    assert side.preview is None and any("c.preview.png is not a picture" in w for w in side.warnings)


def test_bytes_never_look_beside_a_name(with_sidecars, tmp_path):
    emb = embkit.read(with_sidecars.read_bytes(), name=str(with_sidecars))
    assert not emb.sidecars and emb.source.in_memory and emb.source.sidecars is None


def test_odd_numbers_in_a_sidecar_keep_the_report_valid_json(tmp_path):
    path = makers.kohya_file(tmp_path / "odd.safetensors", makers.vectors(1, 768, 1))
    (tmp_path / "odd.civitai.info").write_text('{"a": NaN, "b": 1e999, "c": -Infinity, "trainedWords": ["w"]}')
    code, [rep] = inspect_json(path)
    assert code == 0 and rep["sidecars"]["civitai_info"] == {"a": "NaN", "b": "1e999", "c": "-Infinity", "trainedWords": ["w"]}


def test_skeleton_and_empty_civitai_info(tmp_path):
    path = makers.kohya_file(tmp_path / "local.safetensors", makers.vectors(1, 768, 1))
    skeleton = {"id": "", "modelId": "", "name": "", "trainedWords": [], "baseModel": "Unknown", "description": "",
                "model": {"name": "local.safetensors", "type": "ti", "nsfw": "", "poi": ""}, "skeleton_file": True}
    makers.civitai_info(tmp_path / "local.civitai.info", skeleton)
    side = embkit.read(path).sidecars
    assert side.civitai_info["skeleton_file"] is True and side.trained_words == () and side.base_model is None
    makers.civitai_info(tmp_path / "local.civitai.info", {})  # the original fork's "not on Civitai"
    side = embkit.read(path).sidecars
    assert side.civitai_info == {} and side.files["civitai_info"].endswith("local.civitai.info")

"""The contact sheet: its layout (decoded with Pillow), its ``parameters`` chunk in A1111's infotext
style (read back field by field, and by A1111's own parsing rules), and the "replace only a previous
sheet" rule. No torch: a Comparison is plain data."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import embkit
from embkit.diffusers import infotext, sheet as sheets
from embkit.diffusers.comparison import Comparison, Row, SeedRender
from embkit.schema import Embedding


def _row(name: str, trigger: str, seeds, rng, *, shift: int = 40, same: bool = False, hash_: str | None = None, negative=None) -> Row:
    renders = []
    for seed in seeds:
        before = rng.integers(0, 200, (64, 64, 3), dtype=np.uint8)
        after = before.copy()
        if not same:
            after[16:32, 16:48] += np.uint8(shift)  # a block that moved: the heat map must show exactly it
        diff = float(np.abs(after.astype(np.int16) - before).mean())
        renders.append(SeedRender(seed, before, after, diff))
    return Row(name, trigger, f"a photo, {trigger}", negative, renders, 0.0 if same else 0.125, f"/e/{name}.pt", hash_)


def comparison(rows: int = 2, seeds=(0, 7), *, same_last: bool = False, **kw) -> Comparison:
    rng = np.random.default_rng(0)
    made = [_row(f"emb{i}", f"trig{i}", seeds, rng, shift=40 + 10 * i, hash_=f"{i:012x}", same=same_last and i == rows - 1) for i in range(rows)]
    fields = dict(model="v1-5-pruned-emaonly", device="cpu", dtype="float32", prompt="a photo", negative_prompt="blurry, lowres",
                  as_negative=False, steps=4, width=64, height=64, guidance=7.5, sampler="Euler", seeds=list(seeds), rows=made,
                  seconds=1.0, seconds_per_image=0.25, version="0.1.0")
    fields.update(kw)
    return Comparison(**fields)


def test_parameters_chunk_carries_every_fact_in_a1111_infotext(tmp_path):
    comp = comparison()
    comp.rows[1].negative_prompt = "blurry, lowres"
    comp.rows[0].negative_prompt = "blurry, lowres"
    path = sheets.save_sheet(comp, tmp_path / "s.png")
    text = sheets.read_parameters(path)
    with Image.open(path) as im:  # what A1111's modules/images.py image_data reads: image.text["parameters"]
        assert im.text["parameters"] == text and im.text["Software"] == "embkit contact sheet"
    lines = text.split("\n")
    assert lines[0] == "a photo, trig0" and lines[1] == "Negative prompt: blurry, lowres"
    fields = infotext.parse(text)
    assert fields == {
        "Prompt": "a photo, trig0",
        "Negative prompt": "blurry, lowres",
        "Steps": "4",
        "Sampler": "Euler",
        "CFG scale": "7.5",
        "Seed": "0",
        "Size": "64x64",
        "Model": "v1-5-pruned-emaonly",
        "TI hashes": "emb0: 000000000000, emb1: 000000000001",
        "Seeds": "0, 7",
        "Device": "cpu",
        "Dtype": "float32",
        "Trigger placement": "positive",
        "Embeddings": "2",
        "Embedding 1": "emb0",
        "Trigger 1": "trig0",
        "Cosine distance 1": "0.125",
        "Pixel difference 1": ", ".join(f"{r.pixel_difference:.2f}" for r in comp.rows[0].renders),
        "Embedding 2": "emb1",
        "Trigger 2": "trig1",
        "Cosine distance 2": "0.125",
        "Pixel difference 2": ", ".join(f"{r.pixel_difference:.2f}" for r in comp.rows[1].renders),
        "Prompt 2": "a photo, trig1",
        "Version": "embkit 0.1.0",
    }


def _a1111_parse(text: str) -> dict:
    """A1111's parse_generation_parameters (modules/infotext_utils.py @036500223de0…), the parts that
    read the text: prompt lines, ``Negative prompt:``, the last line by ``re_param_code``, json
    unquoting, ``Size`` split into ``Size-1``/``Size-2``. Written from the source, independently
    of embkit.diffusers.infotext.parse."""
    re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
    res, prompt, negative, done = {}, "", "", False
    *lines, last = text.strip().split("\n")
    if len(re_param.findall(last)) < 3:
        lines.append(last)
        last = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done = True
            line = line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative
    for k, v in re_param.findall(last):
        if v[0] == '"' and v[-1] == '"':
            v = json.loads(v)
        m = re.match(r"^(\d+)x(\d+)$", v)
        if m:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res


def test_a1111_reads_the_generation_settings_of_the_sheet(tmp_path):
    """What A1111 takes from PNG Info: prompt, negative, steps, sampler, CFG, seed, size, model, TI hashes."""
    comp = comparison(rows=1, seeds=(3,), as_negative=True, negative_prompt="lowres")
    comp.rows[0].prompt, comp.rows[0].negative_prompt = "a photo", "lowres, trig0"
    text = sheets.read_parameters(sheets.save_sheet(comp, tmp_path / "s.png"))
    got = _a1111_parse(text)
    assert (got["Prompt"], got["Negative prompt"], got["Steps"], got["Sampler"], got["CFG scale"], got["Seed"]) == \
           ("a photo", "lowres, trig0", "4", "Euler", "7.5", "3")
    assert (got["Size-1"], got["Size-2"], got["Model"], got["TI hashes"], got["Trigger placement"]) == \
           ("64", "64", "v1-5-pruned-emaonly", "emb0: 000000000000", "negative")
    assert {k: v for k, v in infotext.parse(text).items() if k != "Size"} == {k: v for k, v in got.items() if not k.startswith("Size")}


def test_values_with_commas_colons_and_newlines_are_quoted_as_a1111_quotes_them():
    comp = comparison(rows=1, model='my: model, "v2"')
    comp.rows[0].name = "a,b:c"
    text = infotext.parameters(comp)
    assert 'Model: "my: model, \\"v2\\""' in text
    assert "TI hashes: \"ab c: 000000000000\"" not in text and "TI hashes: \"abc: 000000000000\"" in text  # A1111 drops : and , from names
    assert infotext.parse(text)["Model"] == 'my: model, "v2"' and infotext.parse(text)["Embedding 1"] == "a,b:c"


def test_layout_rows_header_and_tiles_by_real_decode(tmp_path):
    comp = comparison(rows=3, seeds=(0, 7), same_last=True)
    box = sheets.layout(comp)
    path = sheets.save_sheet(comp, tmp_path / "s.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (box.width, box.height)
        pixels = np.asarray(im.convert("RGB"))
    assert box.tile_w == 128 and box.tile_h == 128  # 64-pixel renders shown 2x
    assert box.height == box.header + 3 * box.row_h + sheets.PAD and len(box.tiles) == 3 and all(len(r) == 2 for r in box.tiles)
    header = pixels[: box.header]
    assert (np.abs(header.astype(int) - sheets.BACKGROUND).sum(axis=2) > 200).sum() > 2000  # text was drawn in the header
    assert any(line.startswith("prompt: a photo") for line in box.header_lines)
    assert any("negative prompt: blurry, lowres" in line for line in box.header_lines)
    assert any("seeds 0, 7 · 4 steps · 64x64 · CFG 7.5 · Euler · cpu float32 · embkit 0.1.0" in line for line in box.header_lines)
    scale = sheets.heat_scale(comp)
    for r, row in enumerate(comp.rows):
        top = box.header + r * box.row_h
        label = pixels[top : top + box.row_h, sheets.PAD : sheets.LABEL_W]
        assert (np.abs(label.astype(int) - sheets.BACKGROUND).sum(axis=2) > 200).sum() > 300, f"row {r} has no label"
        for render, ((bx, by), (ax, ay), (hx, hy)) in zip(row.renders, box.tiles[r]):
            up = lambda a: np.asarray(Image.fromarray(a).resize((128, 128), Image.NEAREST))  # noqa: E731
            assert np.array_equal(pixels[by : by + 128, bx : bx + 128], up(render.before))
            assert np.array_equal(pixels[ay : ay + 128, ax : ax + 128], up(render.after))
            heat = pixels[hy : hy + 128, hx : hx + 128]
            assert np.array_equal(heat, up(sheets.heat_map(render.before, render.after, scale)))
            moved = np.zeros((128, 128), bool)
            if row.changed:
                moved[32:64, 32:96] = True  # the block that moved, 2x
            assert (heat.sum(axis=2) > 0).tolist() == moved.tolist()  # black exactly where nothing changed
    # the row that changed nothing says so in red
    top = box.header + 2 * box.row_h
    red = pixels[top : top + box.row_h, : sheets.LABEL_W]
    assert ((red[..., 0] > 200) & (red[..., 1] < 150)).sum() > 20


def test_heat_map_scale_is_the_sheets_largest_difference():
    comp = comparison(rows=2)
    assert sheets.heat_scale(comp) == 50.0  # the second row's block moved by 50
    lut = sheets.heat_lut()
    assert lut.shape == (256, 3) and tuple(lut[0]) == (0, 0, 0) and tuple(lut[-1]) == sheets.HEAT_ANCHORS[-1]
    row = comp.rows[1].renders[0]
    assert tuple(sheets.heat_map(row.before, row.after, 50.0)[20, 20]) == tuple(lut[255])
    assert tuple(sheets.heat_map(comp.rows[0].renders[0].before, comp.rows[0].renders[0].after, 50.0)[20, 20]) == tuple(lut[204])


def test_long_prompts_wrap_inside_the_sheet():
    comp = comparison(rows=1, seeds=(0,), prompt="masterpiece, " * 40 + "x" * 300)
    box = sheets.layout(comp)
    font = sheets._font(13)
    assert len(box.header_lines) > 5
    assert all(font.getlength(line) <= box.width - 2 * sheets.PAD for line in box.header_lines)
    assert "".join(box.header_lines).replace(" ", "").count("x") >= 300  # nothing cut off


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_save_sheet_marks_the_sheet_and_uses_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = sheets.save_sheet(comparison(), tmp_path / "s.png")
    finally:
        os.umask(old)
    assert path == str(tmp_path / "s.png") and sheets.is_sheet(path)
    assert _mode(path) == 0o640  # like every embkit output, not mkstemp's 0600
    assert os.listdir(tmp_path) == ["s.png"]  # no temporary left behind


def test_save_sheet_replaces_a_previous_sheet_and_nothing_else(tmp_path):
    sheet = tmp_path / "s.png"
    sheets.save_sheet(comparison(rows=1), sheet)
    first = sheet.read_bytes()
    sheets.save_sheet(comparison(rows=2), sheet)  # a re-run refreshes its own sheet
    assert sheet.read_bytes() != first and sheets.is_sheet(sheet)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)  # a PNG, but not a sheet
    text = tmp_path / "notes.png"
    text.write_text("precious")
    for keep in (photo, text):
        before = keep.read_bytes()
        with pytest.raises(embkit.TargetExistsError, match="not an embkit contact sheet; pass overwrite=True") as info:
            sheets.save_sheet(comparison(), keep)
        assert info.value.exit_code == 9 and keep.read_bytes() == before
    link = tmp_path / "link.png"
    link.symlink_to(sheet)  # replacing a link would replace the link, not the sheet: refused
    with pytest.raises(embkit.TargetExistsError):
        sheets.save_sheet(comparison(), link)
    os.chmod(text, 0o600)
    sheets.save_sheet(comparison(), text, overwrite=True)
    assert sheets.is_sheet(text) and _mode(text) == 0o644 & ~_umask()  # the writers' mode


def test_save_sheet_refuses_a_missing_folder_like_the_writers(tmp_path):
    target = tmp_path / "nodir" / "s.png"
    with pytest.raises(embkit.WriteError) as info:
        sheets.save_sheet(comparison(), target)
    assert str(info.value) == f"{target}: its folder does not exist"
    assert (info.value.code, info.value.exit_code) == ("write-failed", 9)
    assert not (tmp_path / "nodir").exists()  # refused, not created (as embkit.write and merge do)
    with pytest.raises(embkit.WriteError) as written:
        embkit.write(Embedding("t", {"clip_l": np.zeros((1, 768), np.float32)}), tmp_path / "nodir" / "t.safetensors")
    assert str(written.value).endswith(": its folder does not exist")


def test_comparison_json_and_subsets():
    comp = comparison(rows=3, same_last=True)
    doc = comp.to_dict()
    assert [r["name"] for r in doc["rows"]] == ["emb0", "emb1", "emb2"] and doc["changed"] is False
    assert doc["rows"][2]["changed"] is False and doc["rows"][0]["short_hash"] == "000000000000"
    assert doc["seeds"] == [0, 7] and doc["width"] == 64 and doc["embkit_version"] == "0.1.0"
    assert [r.name for r in comp.unchanged] == ["emb2"]
    part = comp.subset(comp.rows[:1])
    assert part.changed and part.triggers == ["trig0"] and comp.triggers == ["trig0", "trig1", "trig2"]

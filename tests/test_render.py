"""Before/after renders, the contact sheet and ``embkit verify --render`` (embkit.cli.render.run)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import embkit  # noqa: E402
from embkit import diffusers as ed  # noqa: E402
from embkit.diffusers import render, sheet as sheets  # noqa: E402
from embkit.schema import Embedding  # noqa: E402
from test_diffusers_helpers import assert_same_state, pipeline, state  # noqa: E402


@pytest.fixture
def sd1():
    pipe = pipeline("sd1")
    yield pipe
    ed.unload(pipe)


def _plain_word_embedding(pipe, trigger: str) -> Embedding:
    """An embedding whose vectors are exactly the rows the tokenizer gives its trigger as plain
    text: applying it changes nothing, the "appears to do nothing" case."""
    ids = pipe.tokenizer(trigger, add_special_tokens=False).input_ids
    rows = pipe.text_encoder.get_input_embeddings().weight[ids].detach().numpy().copy()
    return Embedding(trigger, {"clip_l": rows})


def test_compare_shows_a_real_embedding_changes_the_render(sd1, corpus):
    before = state(sd1)
    comparison = render.compare(sd1, [corpus / "EasyNegative.pt"], seeds=(0,))
    assert comparison.prompt == "a photo, EasyNegative" and comparison.negative_prompt is None
    assert comparison.steps == 4 and comparison.renders[0].before.shape == (64, 64, 3)
    assert comparison.conditioning_distance > 0.01
    assert comparison.pixel_difference > render.NO_EFFECT_PIXELS
    assert comparison.changed
    assert not np.array_equal(comparison.renders[0].before, comparison.renders[0].after)
    assert_same_state(state(sd1), before)  # compare leaves the pipeline as it found it


def test_compare_as_negative_puts_triggers_in_the_negative_prompt(sd1, corpus):
    comparison = render.compare(sd1, [corpus / "bad-hands-5.pt"], as_negative=True, prompt="a hand", steps=2)
    assert (comparison.prompt, comparison.negative_prompt) == ("a hand", "bad-hands-5")
    assert comparison.changed and comparison.conditioning_distance > 0


def test_embedding_equal_to_its_plain_words_changes_nothing(sd1):
    comparison = render.compare(sd1, [_plain_word_embedding(sd1, "x9")], steps=2)
    assert comparison.conditioning_distance < render.NO_EFFECT_COSINE
    assert comparison.pixel_difference == 0.0
    assert not comparison.changed


def test_prompts_for_appends_missing_triggers():
    assert render.prompts_for(["tok"], None, False) == ("a photo, tok", None, [])
    positive, negative, warnings = render.prompts_for(["tok", "b"], "a TOK here", False)
    assert positive == "a TOK here, b" and negative is None and "b" in warnings[0]
    assert render.prompts_for(["tok", "b"], None, True) == ("a photo", "tok, b", [])


def _comparison(seed: int = 0) -> render.Comparison:
    """A Comparison of random 64x64 images (two seeds), as compare would return, without rendering."""
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    return render.Comparison("m", "cpu", "float32", "p", None, False, ["t"], 2,
                             [render.SeedRender(0, imgs[0], imgs[1], 1.0), render.SeedRender(7, imgs[2], imgs[3], 2.0)], 0.1, 1.0, 0.25)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_contact_sheet_lays_out_before_and_after_per_seed():
    from PIL import Image

    comp = _comparison()
    imgs = [comp.renders[1].before, comp.renders[1].after]
    sheet = sheets.contact_sheet(comp, tile=128)
    assert sheet.size == (6 + 2 * 134, 22 + 2 * (18 + 128 + 6) + 6)
    # the "after" tile of seed 7 is image 3 scaled up 2x (nearest)
    x, y = 6 + 134, 22 + 18 + 128 + 6 + 18
    tile = np.asarray(sheet.crop((x, y, x + 128, y + 128)))
    assert np.array_equal(tile, np.asarray(Image.fromarray(imgs[1]).resize((128, 128), Image.NEAREST)))


def test_save_sheet_marks_the_sheet_and_uses_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = sheets.save_sheet(_comparison(), tmp_path / "s.png")
    finally:
        os.umask(old)
    assert path == str(tmp_path / "s.png") and sheets.is_sheet(path)
    assert _mode(path) == 0o640  # like every embkit output, not mkstemp's 0600
    assert [n for n in os.listdir(tmp_path)] == ["s.png"]  # no temporary left behind


def test_save_sheet_replaces_a_previous_sheet_and_nothing_else(tmp_path):
    sheet = tmp_path / "s.png"
    sheets.save_sheet(_comparison(0), sheet)
    first = sheet.read_bytes()
    sheets.save_sheet(_comparison(1), sheet)  # a re-run refreshes its own sheet
    assert sheet.read_bytes() != first and sheets.is_sheet(sheet)

    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)  # a PNG, but not a sheet
    text = tmp_path / "notes.png"
    text.write_text("precious")
    for keep in (photo, text):
        before = keep.read_bytes()
        with pytest.raises(embkit.TargetExistsError, match="not an embkit contact sheet; pass overwrite=True") as info:
            sheets.save_sheet(_comparison(), keep)
        assert info.value.exit_code == 9 and keep.read_bytes() == before
    link = tmp_path / "link.png"
    link.symlink_to(sheet)  # replacing a link would replace the link, not the sheet: refused
    with pytest.raises(embkit.TargetExistsError):
        sheets.save_sheet(_comparison(), link)
    os.chmod(text, 0o600)
    sheets.save_sheet(_comparison(), text, overwrite=True)
    assert sheets.is_sheet(text) and _mode(text) == 0o644 & ~_umask()  # the writers' mode


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_save_sheet_refuses_a_missing_folder_like_the_writers(tmp_path):
    target = tmp_path / "nodir" / "s.png"
    with pytest.raises(embkit.WriteError) as info:
        sheets.save_sheet(_comparison(), target)
    assert str(info.value) == f"{target}: its folder does not exist"
    assert (info.value.code, info.value.exit_code) == ("write-failed", 9)
    assert not (tmp_path / "nodir").exists()  # refused, not created (as embkit.write and merge do)
    # embkit.write words the same failure the same way
    with pytest.raises(embkit.WriteError) as written:
        embkit.write(Embedding("t", {"clip_l": np.zeros((1, 768), np.float32)}), tmp_path / "nodir" / "t.safetensors")
    assert str(written.value).endswith(": its folder does not exist")


def test_run_checks_the_sheet_before_building_the_pipeline(tmp_path, corpus, monkeypatch, capsys):
    from embkit.cli import render as cli_render

    monkeypatch.setattr(render, "load_pipeline", lambda *a, **kw: pytest.fail("built a pipeline for a sheet it cannot write"))
    code = cli_render.run(paths=[str(corpus / "bad-hands-5.pt")], device="cpu", output=str(tmp_path / "nodir" / "s.png"), json_out=True)
    report = json.loads(capsys.readouterr().out)
    assert code == 9 and report["error"]["code"] == "write-failed" and "its folder does not exist" in report["error"]["message"]


def test_run_writes_sheet_and_json(tmp_path, corpus, capsys):
    from embkit.cli import render as cli_render

    sheet = tmp_path / "sheet.png"
    sheets.save_sheet(_comparison(), sheet)  # the sheet of an earlier run is replaced, not refused
    earlier = sheet.read_bytes()
    code = cli_render.run(paths=[str(corpus / "bad-hands-5.pt")], model=None, prompt=None, as_negative=True, seeds=(1, 2), steps=2,
                          device="cpu", output=str(sheet), json_out=True, strict=False)
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["exit_code"] == 0
    assert sheet.read_bytes() != earlier and sheets.is_sheet(sheet)
    assert report["model"] == "built-in tiny sd1" and report["seeds"] == [1, 2]
    assert report["conditioning_cosine_distance"] > 0 and report["pixel_difference_max"] > 0
    from PIL import Image

    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.size[0] > 2 * 256


def test_run_exits_no_effect_when_nothing_changes(tmp_path, sd1, capsys):
    from safetensors.numpy import save_file

    from embkit.cli import render as cli_render

    path = tmp_path / "x9.safetensors"
    save_file({"x9": np.array(_plain_word_embedding(sd1, "x9").vectors["clip_l"])}, str(path))
    code = cli_render.run(paths=[str(path)], model="sd1", prompt="a x9", as_negative=False, seeds=(0,), steps=1,
                          device="cpu", output=str(tmp_path / "s.png"), json_out=False, strict=False)
    assert code == render.EXIT_NO_EFFECT == 14
    assert "appears to do nothing" in capsys.readouterr().err.replace("\n", " ")


def test_run_refuses_an_sd1_file_on_the_sdxl_pipeline(tmp_path, corpus, capsys):
    from embkit.cli import render as cli_render

    code = cli_render.run(paths=[str(corpus / "bad-hands-5.pt")], model="sdxl", prompt=None, as_negative=False, seeds=(0,), steps=1,
                          device="cpu", output=str(tmp_path / "s.png"), json_out=True, strict=False)
    report = json.loads(capsys.readouterr().out)
    assert code == embkit.ValidationFailed.exit_code and report["exit_code"] == code
    assert not (tmp_path / "s.png").exists()


def test_local_pipeline_folder_renders(tmp_path, corpus, sd1, capsys):
    from embkit.cli import render as cli_render

    folder = tmp_path / "model"
    sd1.save_pretrained(str(folder))
    code = cli_render.run(paths=[str(corpus / "ttekcor/learned_embeds.safetensors")], model=str(folder), prompt="a <detail-schemas> cat",
                          as_negative=False, seeds=(0,), steps=1, device="cpu", output=str(tmp_path / "s.png"), json_out=True, strict=False)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["model"] == str(folder) and report["prompt"] == "a <detail-schemas> cat"
    assert os.path.getsize(tmp_path / "s.png") > 0


def test_verify_render_command_end_to_end(tmp_path, corpus):
    from conftest import run_embkit

    sheet = tmp_path / "easy.png"
    result = run_embkit("verify", str(corpus / "EasyNegative.pt"), "--render", "--steps", "1", "--device", "cpu", "-o", str(sheet), "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["changed"] is True
    assert sheet.exists()


def test_verify_render_overwrite_replaces_a_file_that_is_not_a_sheet(tmp_path, corpus):
    from click.testing import CliRunner

    from embkit.cli.main import cli as embkit_cli

    keep = tmp_path / "keep.png"
    keep.write_text("precious")
    os.chmod(keep, 0o600)
    res = CliRunner().invoke(embkit_cli, ["verify", str(corpus / "bad-hands-5.pt"), "--render", "--steps", "1", "--device", "cpu",
                                          "-o", str(keep), "--overwrite"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert sheets.is_sheet(keep) and _mode(keep) == 0o644 & ~_umask()


def test_model_names_and_refusals(corpus, tmp_path):
    emb = embkit.read(corpus / "bad-hands-5.pt")
    pipe, description, tiny = render.load_pipeline("SD15", [emb], "cpu")
    assert description == "built-in tiny sd1" and tiny and pipe.text_encoder.get_input_embeddings().weight.shape[1] == 768
    with pytest.raises(embkit.TargetError, match="no built-in tiny pipeline"):
        render.load_pipeline("flux", [emb], "cpu")
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"x")
    with pytest.raises(embkit.TargetError, match="not a single file"):
        render.load_pipeline(str(single), [emb], "cpu")
    with pytest.raises(embkit.TargetError, match="no built-in pipeline fits"):
        render.family_of([Embedding("t", {"t5": np.zeros((1, 4096), np.float32)})])


def test_strict_with_validation_warnings_stops_before_rendering(tmp_path, corpus, capsys, monkeypatch):
    # EasyNegative's mixed-case multi-vector trigger is a warning: under --strict it is an error,
    # so nothing is rendered and no sheet is written
    from embkit.diffusers import render as render_mod
    from embkit.cli import render as cli_render

    def no_render(*a, **k):
        raise AssertionError("rendered despite --strict warnings")

    monkeypatch.setattr(render_mod, "compare", no_render)
    code = cli_render.run(paths=[str(corpus / "EasyNegative.pt")], model="sd1", prompt=None, as_negative=False, seeds=(0,), steps=1,
                          device="cpu", output=str(tmp_path / "s.png"), json_out=False, strict=True)
    assert code == embkit.ValidationFailed.exit_code
    assert "not rendered" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()

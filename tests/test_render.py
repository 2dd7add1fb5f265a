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
    row = comparison.rows[0]
    assert (row.prompt, row.negative_prompt, row.name, row.trigger) == ("a photo, EasyNegative", None, "EasyNegative", "EasyNegative")
    assert comparison.steps == 4 and (comparison.width, comparison.height, comparison.guidance) == (64, 64, 7.5)
    assert comparison.renders[0].before.shape == (64, 64, 3) and comparison.sampler == "Euler"
    assert row.short_hash == "66a7279a88dd"  # A1111's short hash of the file, as A1111 images in the wild show it (TI hashes)
    assert comparison.conditioning_distance > 0.01
    assert comparison.pixel_difference > render.NO_EFFECT_PIXELS
    assert comparison.changed
    assert not np.array_equal(comparison.renders[0].before, comparison.renders[0].after)
    assert_same_state(state(sd1), before)  # compare leaves the pipeline as it found it


def test_compare_as_negative_puts_triggers_in_the_negative_prompt(sd1, corpus):
    comparison = render.compare(sd1, [corpus / "bad-hands-5.pt"], as_negative=True, prompt="a hand", negative="blurry", steps=2)
    assert (comparison.rows[0].prompt, comparison.rows[0].negative_prompt) == ("a hand", "blurry, bad-hands-5")
    assert (comparison.prompt, comparison.negative_prompt) == ("a hand", "blurry")
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
    assert render.prompts_for(["tok"], None, True, "ugly, TOK") == ("a photo", "ugly, TOK", [])  # already named
    assert render.prompts_for(["tok"], "x", False, "ugly") == ("x, tok", "ugly", ["the prompt does not name tok; appended"])


def test_run_checks_the_sheet_before_building_the_pipeline(tmp_path, corpus, monkeypatch, capsys):
    from embkit.cli import render as cli_render

    from embkit.diffusers import pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **kw: pytest.fail("built a pipeline for a sheet it cannot write"))
    code = cli_render.run(paths=[str(corpus / "bad-hands-5.pt")], device="cpu", output=str(tmp_path / "nodir" / "s.png"), json_out=True)
    report = json.loads(capsys.readouterr().out)
    assert code == 9 and report["error"]["code"] == "write-failed" and "its folder does not exist" in report["error"]["message"]


def test_run_writes_sheet_and_json(tmp_path, corpus, capsys):
    from embkit.cli import render as cli_render

    from test_sheet import comparison as made_comparison

    sheet = tmp_path / "sheet.png"
    sheets.save_sheet(made_comparison(), sheet)  # the sheet of an earlier run is replaced, not refused
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
    doc = json.loads(result.stdout)
    assert doc["changed"] is True
    assert sheet.exists()
    # regression: the sheet said "embkit unknown" (it asked for a distribution named "embkit")
    from PIL import Image

    assert doc["embkit_version"] == embkit.__version__
    assert f"embkit {embkit.__version__}" in Image.open(sheet).text["parameters"]


def test_verify_render_overwrite_replaces_a_file_that_is_not_a_sheet(tmp_path, corpus):
    from click.testing import CliRunner

    from embkit.cli.main import cli as embkit_cli

    keep = tmp_path / "keep.png"
    keep.write_text("precious")
    os.chmod(keep, 0o600)
    res = CliRunner().invoke(embkit_cli, ["verify", str(corpus / "bad-hands-5.pt"), "--render", "--steps", "1", "--device", "cpu",
                                          "-o", str(keep), "--overwrite"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    from test_sheet import _mode, _umask

    assert sheets.is_sheet(keep) and _mode(keep) == 0o644 & ~_umask()


def test_model_names_and_refusals(corpus, tmp_path):
    emb = embkit.read(corpus / "bad-hands-5.pt")
    loaded = render.load_pipeline("SD15", [emb], "cpu")
    assert loaded.description == "built-in tiny sd1" and loaded.tiny and loaded.pipe.text_encoder.get_input_embeddings().weight.shape[1] == 768
    assert (loaded.defaults.size, loaded.defaults.steps) == (64, 4)
    with pytest.raises(embkit.TargetError, match="no built-in tiny pipeline"):
        render.load_pipeline("flux", [emb], "cpu")
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"x")
    with pytest.raises(embkit.TargetError, match="too short to be safetensors"):
        render.load_pipeline(str(single), [emb], "cpu")
    with pytest.raises(embkit.TargetError, match="unknown device 'tpu'"):
        render.load_pipeline("sd1", [emb], "tpu")
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

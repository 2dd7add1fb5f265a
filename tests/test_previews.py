"""Previews (issue 17): ``embkit previews``, the batched renderer, its PNG chunk and its rules."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import makers as mk  # noqa: E402
from conftest import run_embkit  # noqa: E402
from embkit.diffusers.infotext import parse as parse_parameters  # noqa: E402
from embkit.diffusers.infotext import text as infotext  # noqa: E402
from embkit.diffusers.preview_rules import preview_path, trigger_word, triggers  # noqa: E402
from embkit.diffusers.preview_run import make_previews  # noqa: E402
from embkit.diffusers.preview_plan import Item, plan  # noqa: E402
from embkit.diffusers.previews import PreviewRenderer, PreviewSettings, is_negative  # noqa: E402
from embkit.hashes import a1111_short  # noqa: E402
from embkit.schema import Embedding  # noqa: E402
from test_diffusers_helpers import pipeline, synthetic  # noqa: E402

#: the folder of the big test: file → (kind, negative)
POSITIVE_SD1 = ["style-a.pt", "style-b.safetensors", "sub/learned_embeds.bin", "portrait.safetensors", "card.png"]
NEGATIVE_SD1 = ["EasyNegative.pt", "bad-hands-5.safetensors", "ng_deepnegative_v1_75t.pt"]
POSITIVE_SDXL = ["xl-style.safetensors", "xl-landscape.safetensors"]
NEGATIVE_SDXL = ["unaestheticXL_v1.safetensors"]
MISFIT = "t5-only.safetensors"
KEPT = "kept-style.safetensors"


def _folder(root):
    """13 embedding files written the way their tools write them, a plain picture, and a preview
    the user already has."""
    (root / "sub").mkdir(parents=True)
    mk.a1111_pt(root / "style-a.pt", mk.vectors(3, 768, 1, 0.3))
    mk.kohya_file(root / "style-b.safetensors", mk.vectors(2, 768, 2, 0.3))
    mk.diffusers_file(root / "sub" / "learned_embeds.bin", "<concept>", mk.vectors(1, 768, 3, 0.3))
    mk.kohya_file(root / "portrait.safetensors", mk.vectors(1, 768, 4, 0.3))
    mk.image_card_text_only(root / "card.png", mk.vectors(2, 768, 5, 0.3), "cardstyle")
    mk.a1111_pt(root / "EasyNegative.pt", mk.vectors(4, 768, 6, 0.3))
    mk.kohya_file(root / "bad-hands-5.safetensors", mk.vectors(2, 768, 7, 0.3))
    mk.a1111_pt(root / "ng_deepnegative_v1_75t.pt", mk.vectors(3, 768, 8, 0.3))
    for i, name in enumerate(POSITIVE_SDXL + NEGATIVE_SDXL):
        mk.multi_file(root / name, {"clip_l": mk.vectors(2, 768, 10 + i, 0.3), "clip_g": mk.vectors(2, 1280, 20 + i, 0.3)})
    mk.multi_file(root / MISFIT, {"t5": mk.vectors(2, 4096, 30)})
    mk.kohya_file(root / KEPT, mk.vectors(1, 768, 31, 0.3))
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "kept-style.preview.png")
    Image.new("RGB", (8, 8), (10, 200, 10)).save(root / "holiday.png")  # a picture, not an embedding
    return root


def _digests(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def renderer():
    """One renderer for the module (its tiny pipelines are built once)."""
    return PreviewRenderer(device="cpu")


@pytest.mark.slow
def test_previews_for_a_mixed_folder(tmp_path, renderer):
    root = _folder(tmp_path / "emb")
    before = _digests(root)
    run = make_previews([root], renderer=renderer)
    by_file = {os.path.relpath(r.path, root): r for r in run.results}
    assert len(by_file) == 13 and run.ok
    rendered = POSITIVE_SD1 + NEGATIVE_SD1 + POSITIVE_SDXL + NEGATIVE_SDXL
    assert {f for f, r in by_file.items() if r.status == "written"} == set(rendered)
    assert by_file[KEPT].status == "kept" and by_file[MISFIT].status == "skipped"
    assert "no built-in tiny pipeline" in by_file[MISFIT].reason
    # the inputs and the user's own preview are untouched; no temporary file is left behind
    after = _digests(root)
    assert {p: d for p, d in after.items() if p in before} == before
    assert not [p for p in root.rglob("*") if ".embkit-tmp" in p.name]
    new = sorted(os.path.relpath(p, root) for p in after if p not in before)
    assert new == sorted(os.path.relpath(preview_path(root / f), root) for f in rendered)
    assert not (root / "t5-only.preview.png").exists() and not (root / "holiday.preview.png").exists()

    from PIL import Image

    for f in rendered:
        result = by_file[f]
        negative = f in NEGATIVE_SD1 + NEGATIVE_SDXL
        assert result.negative is negative, f
        with Image.open(result.preview) as im:
            assert (im.format, im.size) == ("PNG", (64, 64))
            params = parse_parameters(im.info["parameters"])
        trigger = "cardstyle" if f == "card.png" else os.path.splitext(os.path.basename(f))[0]
        assert result.trigger == trigger
        if negative:
            assert (params["Prompt"], params["Negative prompt"]) == ("a photo", trigger)
        else:
            assert (params["Prompt"], params["Negative prompt"]) == (f"a photo of {trigger}", "")
        sha = hashlib.sha256((root / f).read_bytes()).hexdigest()
        assert params["TI hashes"] == f"{trigger}: {a1111_short(sha)}"
        assert (params["Steps"], params["Seed"], params["Size"], params["Sampler"]) == ("4", "0", "64x64", "Euler")
        assert params["CFG scale"] == "7.5" and params["Version"].startswith("embkit ")  # the tiny pipelines' default, as verify --render
        assert params["Model"] == ("built-in tiny sdxl" if "xl" in f.lower() else "built-in tiny sd1")

    # a second run keeps every preview and renders nothing
    again = make_previews([root], renderer=renderer)
    assert again.count("written") == 0 and again.count("kept") == 12 and again.count("skipped") == 1
    assert _digests(root) == after


@pytest.mark.slow
def test_overwrite_and_out_folder(tmp_path, renderer):
    root = tmp_path / "emb"
    (root / "deep").mkdir(parents=True)
    mk.kohya_file(root / "one.safetensors", mk.vectors(1, 768, 1, 0.3))
    mk.kohya_file(root / "deep" / "two.safetensors", mk.vectors(2, 768, 2, 0.3))
    (root / "one.preview.png").write_bytes(b"not even a picture")
    kept = make_previews([root], renderer=renderer)
    assert [(os.path.basename(r.path), r.status) for r in kept.results] == [("one.safetensors", "kept"), ("two.safetensors", "written")]
    assert (root / "one.preview.png").read_bytes() == b"not even a picture"
    replaced = make_previews([root / "one.safetensors"], renderer=renderer, overwrite=True)
    assert replaced.results[0].status == "written" and (root / "one.preview.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "previews"
    elsewhere = make_previews([root], renderer=renderer, out=out)
    assert sorted(os.path.relpath(p, out) for p in out.rglob("*.png")) == ["deep/two.preview.png", "one.preview.png"]
    assert elsewhere.count("written") == 2


@pytest.mark.slow
def test_the_walk_stays_in_the_folder_and_writes_stay_inside(tmp_path, renderer):
    """The one walk (embkit.walk): a link out of the folder is not followed, a FIFO not opened, a
    pair's second file and a preview are no embeddings of their own; a preview is written only
    inside the embedding's folder or --out, never through a link out of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    mk.kohya_file(outside / "elsewhere.safetensors", mk.vectors(1, 768, 1, 0.3))
    root = tmp_path / "emb"
    root.mkdir()
    mk.kohya_file(root / "mine.safetensors", mk.vectors(1, 768, 2, 0.3))
    os.symlink(outside / "elsewhere.safetensors", root / "linked.safetensors")
    os.symlink(outside, root / "linked-folder")
    os.mkfifo(root / "pipe.safetensors")
    mk.diffusers_sdxl_pair(root / "xl", "<xl>", mk.vectors(1, 768, 3, 0.3), mk.vectors(1, 1280, 4, 0.3))
    run = make_previews([root], renderer=renderer)
    # the pair once, under its first file (where A1111 and the library look for its preview)
    assert sorted(os.path.relpath(r.path, root) for r in run.results) == ["mine.safetensors", "xl/learned_embeds.safetensors"]
    assert run.ok and sorted(os.listdir(outside)) == ["elsewhere.safetensors"]
    assert (root / "mine.preview.png").is_file() and sorted(os.listdir(root / "xl")) == [
        "learned_embeds.preview.png", "learned_embeds.safetensors", "learned_embeds_2.safetensors"]

    # --out: a folder inside it that links out of it is not written through
    out = tmp_path / "out"
    (root / "deep").mkdir()
    mk.kohya_file(root / "deep" / "two.safetensors", mk.vectors(1, 768, 5, 0.3))
    out.mkdir()
    os.symlink(outside, out / "deep")
    elsewhere = make_previews([root], renderer=renderer, out=out)
    two = next(r for r in elsewhere.results if r.path.endswith("two.safetensors"))
    assert two.status == "error" and "outside the output folder" in two.reason
    assert sorted(os.listdir(outside)) == ["elsewhere.safetensors"] and (out / "mine.preview.png").is_file()


def test_a_picture_the_sidecar_rules_call_the_preview_is_kept(tmp_path, renderer):
    """Civitai Helper's JPEG preview (<stem>.preview.jpg) or a plain <stem>.png picture counts as
    the file's preview, as A1111 shows it: kept, not rendered beside it."""
    from PIL import Image

    mk.kohya_file(tmp_path / "civitai.safetensors", mk.vectors(1, 768, 1, 0.3))
    Image.new("RGB", (8, 8)).save(tmp_path / "civitai.preview.jpg", format="JPEG")
    mk.kohya_file(tmp_path / "plain.safetensors", mk.vectors(1, 768, 2, 0.3))
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    run = make_previews([tmp_path], renderer=renderer)
    assert {os.path.basename(r.path): (r.status, os.path.basename(r.preview)) for r in run.results} == {
        "civitai.safetensors": ("kept", "civitai.preview.jpg"), "plain.safetensors": ("kept", "plain.png")}
    assert not (tmp_path / "civitai.preview.png").exists() and not (tmp_path / "plain.preview.png").exists()


def _images(previews):
    return {p.name: p.image for p in previews}


def _with(renderer, **settings):
    """The module's renderer (its pipelines already built) with other settings."""
    renderer.settings = PreviewSettings(**settings)
    return renderer


@pytest.mark.slow
def test_batched_previews_match_one_at_a_time(renderer):
    embs = [synthetic(f"look{i}x", rows=1 + i % 3, seed=i, scale=0.3) for i in range(4)]
    embs += [synthetic("EasyNegative", rows=2, seed=9, scale=0.3), synthetic("xlpiece", slots=("clip_l", "clip_g"), seed=4, scale=0.3)]
    try:
        batched = _with(renderer, batch_size=4, steps=2).render(embs)
        shuffled = _with(renderer, batch_size=3, steps=2).render(embs[::-1])
        single = _with(renderer, batch_size=1, steps=2).render(embs)
    finally:
        renderer.settings = PreviewSettings()
    assert all(p.ok for p in batched) and [p.name for p in batched] == [e.name for e in embs]
    assert [p.negative for p in batched] == [False] * 4 + [True, False]
    a, b, c = _images(batched), _images(shuffled), _images(single)
    for name in a:
        for other in (b[name], c[name]):
            diff = np.abs(a[name].astype(np.int16) - other.astype(np.int16))
            # the same noise per (embedding, seed); only float rounding of batched kernels differs
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, name
    # and the pictures differ between embeddings: each shows its own embedding
    assert np.abs(a["look0x"].astype(np.int16) - a["look1x"]).mean() > 1


def test_preview_equals_a_plain_diffusers_render(renderer):
    from embkit.diffusers import apply, expanded_prompts, unload

    emb = synthetic("plainlook", rows=2, seed=3, scale=0.3)
    preview = renderer.render([emb])[0]
    pipe = pipeline("sd1")
    applied = apply(pipe, [emb])
    try:
        with expanded_prompts(pipe), torch.inference_mode():
            image = pipe(prompt="a photo of plainlook", negative_prompt="", num_inference_steps=4, guidance_scale=7.5, height=64, width=64,
                         generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    finally:
        unload(pipe, applied)
    ours = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    assert np.abs(preview.image.astype(np.int16) - ours).max() <= 1


def test_colliding_triggers_render_in_separate_rounds(tmp_path, renderer):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mk.kohya_file(tmp_path / "a" / "twin.safetensors", mk.vectors(2, 768, 1, 0.3))
    mk.kohya_file(tmp_path / "b" / "twin.safetensors", mk.vectors(2, 768, 2, 0.3))
    mk.kohya_file(tmp_path / "Style.safetensors", mk.vectors(1, 768, 3, 0.3))
    mk.kohya_file(tmp_path / "style.safetensors", mk.vectors(1, 768, 4, 0.3))
    mk.kohya_file(tmp_path / "ab.safetensors", mk.vectors(1, 768, 5, 0.3))  # "ab" is a word of the tiny vocabulary
    mk.kohya_file(tmp_path / "photo.safetensors", mk.vectors(1, 768, 6, 0.3))  # a word of the prompt itself
    import embkit

    names = ["Style", "ab", "photo", "style", "a/twin", "b/twin"]
    embs = [embkit.read(tmp_path / f"{n}.safetensors") for n in names]
    items = [Item(i, e, trigger_word(e, "a1111"), False) for i, e in enumerate(embs)]
    rounds, skipped = plan(pipeline("sd1"), items, PreviewSettings().fixed_text())
    assert not skipped and len(rounds) == 2  # twin and twin, Style and style: one of each pair waits
    for members in rounds:
        assert len({m.token.casefold() for m in members}) == len(members)
    tokens = {m.word: m.token for r in rounds for m in r}
    assert tokens["ab"].startswith("<embkit-preview-") and tokens["photo"].startswith("<embkit-preview-")
    try:
        previews = _with(renderer, steps=2).render(embs)
        assert all(p.ok for p in previews)
        for i in (1, 2, 5):  # ab (a stand-in), photo (a stand-in), a twin: the same alone as together
            solo = renderer.render([embs[i]])[0]
            assert np.abs(previews[i].image.astype(np.int16) - solo.image.astype(np.int16)).max() <= 1
    finally:
        renderer.settings = PreviewSettings()
    assert [p.trigger for p in previews] == ["Style", "ab", "photo", "style", "twin", "twin"]
    twins = [p for p in previews if p.trigger == "twin"]
    assert np.abs(twins[0].image.astype(np.int16) - twins[1].image.astype(np.int16)).mean() > 1
    assert parse_parameters(previews[[p.trigger for p in previews].index("photo")].parameters)["Prompt"] == "a photo of photo"


def test_told_positive_and_overwrite(tmp_path, renderer):
    path = mk.a1111_pt(tmp_path / "EasyNegative.pt", mk.vectors(2, 768, 2, 0.3))
    make_previews([path], renderer=renderer)
    run = make_previews([path], renderer=renderer, negative=False, overwrite=True)
    assert run.results[0].status == "written" and run.results[0].negative is False
    from PIL import Image

    with Image.open(tmp_path / "EasyNegative.preview.png") as im:
        assert parse_parameters(im.info["parameters"])["Prompt"] == "a photo of EasyNegative"


def test_a_trigger_inside_another_waits_for_the_next_round():
    embs = [synthetic(n, seed=i) for i, n in enumerate(["bad-hands-5", "bad", "hands-5x", "<cat-toy>", "toy", "calm"])]
    rounds, skipped = plan(pipeline("sd1"), [Item(i, e, e.name, False) for i, e in enumerate(embs)], PreviewSettings().fixed_text())
    assert not skipped
    assert [[m.word for m in r] for r in rounds] == [["bad-hands-5", "hands-5x", "<cat-toy>", "calm"], ["bad", "toy"]]


def test_host_picks_the_trigger_word(tmp_path, renderer):
    path = mk.a1111_pt(tmp_path / "file-name.pt", mk.vectors(2, 768, 1, 0.3), name="stored-name")
    import embkit

    emb = embkit.read(path)
    # the hosts table's triggers (embkit.hosts): what is typed, and the word inside it
    assert triggers(emb)["a1111"] == "file-name" and triggers(emb)["diffusers"] == "stored-name"
    assert triggers(emb)["comfyui"] == "embedding:file-name" and trigger_word(emb, "comfyui") == "file-name"
    assert triggers(emb)["invokeai"] == "<file-name>" and trigger_word(emb, "invokeai") == "file-name"
    settings = PreviewSettings(host="diffusers", prompt="portrait, {trigger}, detailed", seeds=(3, 4))
    preview = PreviewRenderer("sd1", device="cpu", settings=settings).render([emb])[0]
    params = parse_parameters(preview.parameters)
    assert params["Prompt"] == "portrait, stored-name, detailed" and params["Seed"] == "3" and params["Seeds"] == "3, 4"
    assert preview.image.shape == (64, 128, 3)  # one image per seed, side by side


def test_misfits_are_skipped_with_the_reason(renderer):
    sdxl = synthetic("onlyxl", slots=("clip_l", "clip_g"), seed=1)
    nan = Embedding("broken", {"clip_l": np.full((1, 768), np.nan, np.float32)})
    got = PreviewRenderer("sd1", device="cpu").render([sdxl, nan, synthetic("fine", seed=2)])
    assert [p.ok for p in got] == [False, False, True]
    assert "clip_g" in got[0].skipped and "NaN" in got[1].skipped


def test_progress_goes_to_the_callback_and_nothing_prints(capsys):
    calls = []
    embs = [synthetic(f"prog{i}x", seed=i) for i in range(3)] + [synthetic("t5x", slots=("t5",))]
    PreviewRenderer(device="cpu", settings=PreviewSettings(batch_size=2), progress=lambda d, t: calls.append((d, t))).render(embs)
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "name, negative",
    [("EasyNegative", True), ("ng_deepnegative_v1_75t", True), ("bad-hands-5", True), ("badhandv4", True), ("verybadimagenegative_v1.3", True),
     ("unaestheticXL_v1", True), ("FastNegativeV2", True), ("BadDream", True), ("my-neg", True), ("negXL", True), ("bad_prompt_version2", True),
     ("style-a", False), ("neon-city", False), ("kneeling", False), ("badger", False), ("portrait", False)],
)
def test_is_negative_by_name(name, negative):
    assert is_negative(Embedding(name, {"clip_l": np.zeros((1, 768), np.float32)})) is negative


def test_is_negative_by_metadata():
    vec = {"clip_l": np.zeros((1, 768), np.float32)}
    assert is_negative(Embedding("plainname", vec, metadata={"description": "A Negative embedding for hands"}))
    assert is_negative(Embedding("plainname", vec, metadata={"tags": ["style", "negative"]}))
    assert not is_negative(Embedding("plainname", vec, metadata={"sd_checkpoint_name": "negative-model"}))  # not a descriptive key


def test_parameters_text_reads_back():
    """Previews and contact sheets write their parameters with one function (infotext.text)."""
    text = infotext(prompt="a photo of x, y", negative_prompt="bad: \"things\"", steps=20, sampler="Euler a", guidance=7.5, seeds=(1, 2),
                    width=512, height=768, model="my, model: v2", ti_hashes={"x": "abcdef123456"}, version="0.1.0")
    lines = text.split("\n")
    assert lines[0] == "a photo of x, y" and lines[1] == 'Negative prompt: bad: "things"'
    back = parse_parameters(text)
    assert back["Prompt"] == "a photo of x, y" and back["Negative prompt"] == 'bad: "things"'
    assert back["Model"] == "my, model: v2" and back["TI hashes"] == "x: abcdef123456"
    assert (back["Steps"], back["Sampler"], back["CFG scale"], back["Seed"], back["Seeds"], back["Size"]) == ("20", "Euler a", "7.5", "1", "1, 2", "512x768")
    assert back["Version"] == "embkit 0.1.0"
    assert parse_parameters("just a prompt: with a colon")["Prompt"] == "just a prompt: with a colon"


def test_settings_are_checked():
    from embkit.errors import OperationError

    for bad in (dict(host="nope"), dict(seeds=()), dict(steps=0), dict(size=60), dict(batch_size=0), dict(guidance=-1)):
        with pytest.raises(OperationError):
            PreviewSettings(**bad)
    assert PreviewSettings(prompt="no trigger here").prompts("tok", False) == ("no trigger here, tok", "")
    assert PreviewSettings(negative_prompt="blurry").prompts("neg", True) == ("a photo", "neg, blurry")


@pytest.mark.slow
def test_cli_previews_json_and_summary(tmp_path):
    root = tmp_path / "emb"
    root.mkdir()
    mk.kohya_file(root / "one.safetensors", mk.vectors(1, 768, 1, 0.3))
    mk.a1111_pt(root / "EasyNegative.pt", mk.vectors(2, 768, 2, 0.3))
    mk.multi_file(root / "t5.safetensors", {"t5": mk.vectors(1, 4096, 3)})
    done = run_embkit("previews", str(root), "--json", "--seed", "5", "--batch-size", "2", "--device", "cpu", timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["written"], doc["kept"], doc["skipped"], doc["error"], doc["seeds"]) == (2, 0, 1, 0, [5])
    negative = next(p for p in doc["previews"] if p["name"] == "EasyNegative")
    assert negative["negative"] is True and "Negative prompt: EasyNegative" in negative["parameters"]
    missing = run_embkit("previews", str(tmp_path / "nope.pt"), "--device", "cpu")
    assert missing.returncode == 1 and "nope.pt" in missing.stderr


@pytest.mark.slow
def test_cli_previews_from_stdin_and_the_shared_vocabulary(tmp_path):
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    src = mk.a1111_pt(tmp_path / "in" / "somefile.pt", mk.vectors(2, 768, 1, 0.3), name="my-style")
    out = tmp_path / "out"
    # '-' reads one file from standard input; its preview goes under -o, named after the name it stored
    done = subprocess.run([sys.executable, "-m", "embkit", "previews", "-", "-o", str(out), "-m", "SD1", "--device", "cpu",
                           "--host", "ComfyUI", "--dtype", "fp32", "--json"], input=src.read_bytes(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)["previews"]
    assert (row["path"], row["status"], row["trigger"]) == ("<stdin>", "written", "my-style")
    assert os.listdir(out) == ["my-style.preview.png"]
    assert "TI hashes" not in parse_parameters(row["parameters"])  # no file on disk to hash
    # '-' without -o has no folder to write beside; -o - is no folder
    assert run_embkit("previews", "-").returncode == 2
    assert run_embkit("previews", str(src), "-o", "-").returncode == 2
    # one host: 'all' names seven
    assert run_embkit("previews", str(src), "--host", "all").returncode == 2
    # the old spelling --out works for one release, with a note; -q prints no summary, --summary no line per preview
    done = run_embkit("previews", str(src), "--out", str(out), "-m", "sd1", "--device", "cpu", "-q")
    assert done.returncode == 0 and "--out is now --output" in " ".join(done.stderr.split())
    assert (out / "somefile.preview.png").is_file() and "written" not in done.stdout
    done = run_embkit("previews", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "-m", "sd1", "--device", "cpu", "--summary")
    assert done.returncode == 0 and "wrote" not in done.stdout and "1 written" in done.stdout
    # a folder holding no embedding: the walk rule's 4, with the files skipped and their reasons
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("x")
    done = run_embkit("previews", str(tmp_path / "photos"), "-v")
    assert done.returncode == 4 and "notes.txt: a text file" in done.stdout

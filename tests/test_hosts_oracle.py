"""embkit.hosts against each host's loader re-implemented from its source (tests/host_oracles.py),
on a generated set of files covering every layout (tests/host_files.py), written the way each
tool writes them: for every file, host and model family, the same status and the same word to
type. And every ``.pt`` an embkit writer produces passes both A1111 safe-loader rules and loads in
torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import embkit
from embkit import hosts
from host_files import make_all
from host_oracles import BEFORE_1_10, FAMILIES, FROM_1_10, ORACLES, a1111_safe

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    return make_all(tmp_path_factory.mktemp("hostfiles"))


def test_the_set_covers_every_layout(files):
    """At least 40 files; every embkit layout, plus the layouts embkit does not read (OneTrainer
    with output vectors, XTI), pictures, an empty file and a LoRA."""
    assert len(files) >= 40
    formats = set()
    for p in files:
        try:
            formats.update(e.source.format for e in embkit.read_all(p))
        except embkit.EmbkitError:
            formats.add("unread")
    assert {"a1111", "a1111-image", "kohya", "multi", "diffusers", "concept-folder", "lora-bundle", "unread"} <= formats


@pytest.mark.slow
@pytest.mark.parametrize("host", sorted(ORACLES))
def test_verdicts_agree_with_the_host_oracle(files, host):
    oracle = ORACLES[host]
    disagree = []
    checked = 0
    for path in files:
        for family in FAMILIES[host]:
            want_status, want_trigger = oracle(str(path), family)
            got = hosts.verdict(path, host, family)
            checked += 1
            if got.status != want_status or (got.loads and got.trigger and hosts.get_host(host).bare(got.trigger) != hosts.get_host(host).bare(want_trigger)):
                disagree.append((path.name, family, (want_status, want_trigger), (got.status, got.trigger, got.reasons)))
    assert disagree == [], "\n".join(map(str, disagree))
    assert checked >= 40 * len(FAMILIES[host])


def test_a1111_releases_agree_with_its_safe_loader(files):
    """The per-release verdicts (A1111 before 1.10 and from 1.10) are the regexes and the
    unpickler of modules/safe.py, run on each pickle file."""
    for path in files:
        if path.is_dir() or path.suffix not in (".pt", ".bin") or path.stat().st_size == 0:
            continue
        v = hosts.verdict(path, "a1111", "sd1")
        old, new = a1111_safe(str(path), BEFORE_1_10), a1111_safe(str(path), FROM_1_10)
        assert v.releases == {"1.10+": new, "before 1.10": old}, path.name
        if new and not old:
            assert any("before 1.10" in n for n in v.notes), path.name


def test_triggers_for_the_examples_the_issue_names(files, tmp_path):
    root = files[0].parent
    t = hosts.triggers(root / "diffusers-2d.safetensors")
    assert t["a1111"] == t["forge"] == t["sdnext"] == "diffusers-2d" and t["diffusers"] == "<st2>" and t["comfyui"] == "embedding:diffusers-2d"
    assert hosts.triggers(root / "kohya.safetensors")["diffusers"] == "emb_params"
    assert hosts.triggers(root / "cat-toy")["a1111"] == "learned_embeds" and hosts.triggers(root / "cat-toy")["invokeai"] == "<cat-toy>"
    assert hosts.triggers(root / "lora-dotted.safetensors")["a1111"] == "style"  # before the second dot
    assert hosts.triggers(root / "card.png")["a1111"] == "cardname"
    # an SDXL file: skipped by A1111 on SD1, partly applied by ComfyUI on SD1 (its CLIP-L half)
    sdxl = root / "sdxl.safetensors"
    assert hosts.verdict(sdxl, "a1111", "sd1").status == "skipped"
    comfy = hosts.verdict(sdxl, "comfyui", "sd1")
    assert comfy.loads and comfy.applied == ("clip_l",)
    sd1 = hosts.verdict(root / "kohya.safetensors", "comfyui", "sdxl")
    assert sd1.status == "partial" and sd1.partial_slots == ("clip_l",) and sd1.missed == ("clip_g",)


def test_an_embedding_in_memory_answers_without_a_file():
    emb = embkit.Embedding("mytok", {"clip_l": np.ones((2, 768), np.float32)})
    assert set(hosts.triggers(emb).values()) <= {"mytok", "embedding:mytok", "<mytok>"}
    v = hosts.verdict(emb, "a1111", "sd1")
    assert v.loads and v.trigger == "mytok"


# -- writers every host accepts -------------------------------------------------------------------


def _pt_outputs(tmp_path: Path) -> list[Path]:
    from embkit.formats import FORMATS

    one = embkit.Embedding("w", {"clip_l": np.linspace(-1, 1, 3 * 768, dtype=np.float32).reshape(3, 768)})
    two = embkit.Embedding("w", {"clip_l": np.ones((2, 768), np.float32), "clip_g": np.ones((2, 1280), np.float32), "clip_g_out": np.ones((2, 1280), np.float32)})
    out = []
    for fmt in FORMATS:
        if "pickle" not in fmt.write_containers:
            continue
        for dtype in ("fp32", "fp16", "bf16"):
            for emb in (one, two):
                if fmt.slots == "one" and len(emb.vectors) > 1:
                    continue
                path = tmp_path / f"{fmt.id}-{dtype}-{len(emb.vectors)}.{'bin' if fmt.id == 'diffusers' else 'pt'}"
                embkit.write(emb, path, fmt.id, dtype=dtype)
                out.append(path)
    folder = tmp_path / "concept"
    embkit.write(one, folder, "concept-folder")
    out.append(folder / "learned_embeds.bin")
    return out


def test_every_pt_embkit_writes_passes_both_a1111_safe_loaders_and_loads_in_torch(tmp_path):
    import torch

    written = _pt_outputs(tmp_path)
    assert len(written) >= 10
    for path in written:
        assert a1111_safe(str(path), BEFORE_1_10), path.name
        assert a1111_safe(str(path), FROM_1_10), path.name
        loaded = torch.load(path, weights_only=True)
        back = embkit.read_all(path if path.name != "learned_embeds.bin" else path.parent)
        for emb in back:
            for slot, arr in emb.vectors.items():
                assert np.isfinite(arr).all()
        assert loaded  # a dict torch could rebuild
        assert hosts.verdict(path, "a1111", "sd1").releases == {"1.10+": True, "before 1.10": True}


def test_default_layout_every_host_same_word(tmp_path):
    """The layout written when none is asked for is triggered by the file stem in every host that
    loads it (the stem is stored as the token): for one encoder in .safetensors and .pt, and SDXL."""
    one = embkit.Embedding("mytok", {"clip_l": np.ones((2, 768), np.float32)})
    xl = embkit.Embedding("mytok", {"clip_l": np.ones((2, 768), np.float32), "clip_g": np.ones((2, 1280), np.float32)})
    for emb, name in ((one, "mytok.safetensors"), (one, "mytok.pt"), (xl, "mytok.safetensors"), (one, "other.safetensors")):
        path = tmp_path / name
        embkit.write(emb, path, overwrite=True)
        stem = path.stem
        loading = 0
        for h in hosts.HOST_IDS:
            v = hosts.verdict(path, h, emb.family)
            if v.loads:
                loading += 1
                assert hosts.get_host(h).bare(v.trigger) == stem, (name, h, v.trigger)
        assert loading >= 5, name
    # the old default, kohya's emb_params, is what diffusers would have typed
    embkit.write(one, tmp_path / "k.safetensors", "kohya")
    assert hosts.verdict(tmp_path / "k.safetensors", "diffusers", "sd1").trigger == "emb_params"


@pytest.mark.parametrize("host", ["a1111", "forge", "comfyui", "invokeai", "diffusers", "sdnext"])
def test_convert_for_host_writes_what_the_oracle_loads(tmp_path, host):
    from conftest import run_embkit

    src = tmp_path / "src.pt"
    embkit.write(embkit.Embedding("mytok", {"clip_l": np.ones((2, 768), np.float32)}), src, "a1111")
    xl = tmp_path / "xl.safetensors"
    embkit.write(embkit.Embedding("xl", {"clip_l": np.ones((2, 768), np.float32), "clip_g": np.ones((2, 1280), np.float32)}), xl)
    out = tmp_path / "out"
    done = run_embkit("convert", str(src), str(xl), "-o", str(out), "--for", host)
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted(p for p in out.iterdir())
    assert written
    for path in written:
        family = "sdxl" if path.stem.startswith("xl") else "sd1"
        status, trigger = ORACLES[host](str(path), family)
        assert status in ("loads", "partial"), (host, path.name, status)


@pytest.mark.slow
def test_record_views_agree_with_file_views(files):
    """The library's conflicts answer from its rows (``facts_from_record``, through
    ``facts_from_embedding``), without the file: for every embedding embkit reads and every host,
    the word to type is the one the file itself gives. (Whether it loads is not asked of a row: a
    row cannot know a safe loader's verdict or a tensor stored 1-D; ``library check`` reads files.)"""
    from embkit.hosts.facts import facts_from_embedding, facts_of

    disagree = []
    for path in files:
        try:
            embs = embkit.read_all(path, alone=True)  # hosts load each file on its own
        except embkit.EmbkitError:
            continue
        if len(embs) != 1:
            continue  # a row is one embedding; a file of several is answered per file
        from_file = facts_of(path)
        from_row = facts_from_embedding(embs[0])
        for host in ORACLES:
            a, b = hosts.triggers(from_file).get(host), hosts.triggers(from_row).get(host)
            if a != b:
                disagree.append((path.name, host, a, b))
    assert disagree == [], "\n".join(map(str, disagree))

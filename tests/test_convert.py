"""``embkit convert``: folders keep their tree, losses per file, exit codes, dry runs, re-runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import embkit
from embkit import Embedding

import makers
from conftest import run_embkit


def sd1(name, seed=0, n=2):
    return Embedding(name, {"clip_l": makers.vectors(n, 768, seed=seed, scale=0.3)}, metadata={"step": seed})


def sdxl(name):
    return Embedding(name, {"clip_l": makers.vectors(2, 768, seed=1), "clip_g": makers.vectors(2, 1280, seed=2)})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def tree(tmp_path) -> Path:
    """src/ with nested A1111 files, an SDXL file, a concept folder and files that are not embeddings."""
    src = tmp_path / "src"
    for i in range(10):
        sub = src / ("a" if i < 5 else "b/deep")
        sub.mkdir(parents=True, exist_ok=True)
        embkit.write(sd1(f"e{i}", seed=i), sub / f"e{i}.pt")
    embkit.write(sdxl("xl"), src / "xl.safetensors")
    makers.concept_folder(src / "concepts" / "cat", "<cat>", makers.vectors(1, 768, seed=3))
    (src / "notes.txt").write_text("not an embedding")
    (src / ".hidden.pt").write_bytes(b"junk")
    return src


def convert(*args, cwd=None):
    proc = run_embkit("convert", *map(str, args), cwd=cwd)
    return proc


def test_folder_keeps_tree_in_parallel(tree, tmp_path):
    before = {p: digest(p) for p in tree.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    # the SDXL file would lose its CLIP-G half in kohya: refused (exit 8) unless the loss is allowed
    refused = convert(tree, "-o", tmp_path / "refused", "--to", "kohya", "--jobs", "2", "--json")
    assert refused.returncode == 8, refused.stderr
    report = json.loads(refused.stdout)
    assert report["counts"] == {"converted": 11, "failed": 1, "skipped": 1}
    xl = [r for r in report["files"] if r["input"].endswith("xl.safetensors")][0]
    assert xl["error"]["code"] == "lossy" and "--to multi" in xl["reason"] and not (tmp_path / "refused" / "xl.safetensors").exists()
    proc = convert(tree, "-o", out, "--to", "kohya", "--jobs", "2", "--json", "--allow-loss")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # notes.txt is listed as skipped (a text file), never failed; the hidden file is not listed
    assert report["counts"] == {"converted": 12, "skipped": 1}
    assert [r["reason"] for r in report["files"] if r["status"] == "skipped"] == ["a text file"]
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    expected = sorted([f"a/e{i}.safetensors" for i in range(5)] + [f"b/deep/e{i}.safetensors" for i in range(5, 10)] + ["xl.safetensors", "concepts/cat.safetensors"])
    assert made == expected
    for i in range(10):
        sub = "a" if i < 5 else "b/deep"
        back = embkit.read(out / sub / f"e{i}.safetensors")
        assert back.name == f"e{i}" and back.metadata["step"] == i
        assert back.same_vectors(sd1(f"e{i}", seed=i))
    # every loss is reported, per file
    by_input = {Path(r["input"]).name: r for r in report["files"]}
    assert [(x["code"], x["slot"]) for x in by_input["xl.safetensors"]["losses"]] == [("slot-dropped", "clip_g")]
    assert {x["code"] for x in by_input["cat"]["losses"]} == {"trigger-renamed"}
    assert by_input["e3.pt"]["losses"] == []
    # inputs untouched
    assert {p: digest(p) for p in tree.rglob("*") if p.is_file()} == before


def test_rerun_skips_existing_and_overwrite_replaces(tree, tmp_path):
    out = tmp_path / "out"
    assert convert(tree / "a", "-o", out, "--to", "diffusers").returncode == 0
    proc = convert(tree / "a", "-o", out, "--to", "diffusers", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["counts"] == {"skipped": 5}
    proc = convert(tree / "a", "-o", out, "--to", "diffusers", "--overwrite", "--dtype", "fp16", "--json")
    assert json.loads(proc.stdout)["counts"] == {"converted": 5}
    assert embkit.read(out / "e0.safetensors").dtypes["clip_l"] == "float16"


def test_single_file(tmp_path):
    src = tmp_path / "bad.pt"
    embkit.write(sd1("bad"), src)
    out = tmp_path / "bad.safetensors"
    proc = convert(src, "-o", out)
    assert proc.returncode == 0, proc.stderr
    # the default one-slot safetensors layout: diffusers keyed by the stem (every host types "bad")
    assert (embkit.read(out).source.format, embkit.read(out).name) == ("diffusers", "bad")
    assert "converted 1" in proc.stdout
    proc = convert(src, "-o", out)
    assert proc.returncode == 9  # a single existing target is an error
    assert "exists" in proc.stdout + proc.stderr
    assert "skipped 0, failed 1" in proc.stdout  # the summary agrees with the exit status
    assert convert(src, "-o", out, "--overwrite", "--to", "multi").returncode == 0
    assert embkit.read(out).source.format == "multi"


def test_strict_fails_lossy_files_only(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    embkit.write(sdxl("xl"), src / "xl.safetensors")
    embkit.write(sd1("one"), src / "one.safetensors")
    out = tmp_path / "out"
    proc = convert(src, "-o", out, "--to", "a1111", "--strict", "--json")
    assert proc.returncode == 8, proc.stderr
    report = json.loads(proc.stdout)
    assert report["counts"] == {"converted": 1, "failed": 1}
    failed = [r for r in report["files"] if r["status"] == "failed"][0]
    assert failed["error"]["code"] == "lossy" and "clip_g" in failed["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["one.pt"]


def test_dry_run_writes_nothing(tree, tmp_path):
    out = tmp_path / "out"
    assert convert(tree, "-o", out, "--to", "a1111", "--dry-run", "--json").returncode == 8  # the dry run says the loss is refused
    proc = convert(tree, "-o", out, "--to", "a1111", "--dry-run", "--json", "--allow-loss")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["counts"] == {"dry-run": 12, "skipped": 1}
    assert not out.exists()
    xl = [r for r in report["files"] if r["input"].endswith("xl.safetensors")][0]
    assert xl["outputs"] == [str(out / "xl.pt")] and xl["losses"][0]["code"] == "slot-dropped"


def test_name_and_dtype(tmp_path):
    src = tmp_path / "orig.pt"
    embkit.write(sd1("orig"), src)
    out = tmp_path / "outdir"
    out.mkdir()
    proc = convert(src, "-o", out, "--to", "a1111", "--name", "newtok", "--dtype", "bf16", "--json")
    assert proc.returncode == 0, proc.stderr
    back = embkit.read(out / "newtok.pt")
    assert back.name == "newtok" and back.metadata["stored_name"] == "newtok" and back.dtypes["clip_l"] == "bfloat16"
    codes = [x["code"] for x in json.loads(proc.stdout)["files"][0]["losses"]]
    assert codes == ["precision-lost"]


def test_broken_file_fails_others_convert(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.pt").write_bytes(b"PK\x03\x04 not really a zip")
    embkit.write(sd1("fine"), src / "fine.pt")
    proc = convert(src, "-o", tmp_path / "out", "--to", "kohya", "--json")
    assert proc.returncode == 3
    report = json.loads(proc.stdout)
    assert report["counts"] == {"converted": 1, "failed": 1}
    assert (tmp_path / "out" / "fine.safetensors").is_file()
    assert not (tmp_path / "out" / "broken.safetensors").exists()


def test_several_embeddings_in_one_file(tmp_path):
    lora = makers.lora_bundle(tmp_path / "lora.safetensors", {"one": {"clip_l": makers.vectors(1, 768)}, "two": {"clip_l": makers.vectors(2, 768, seed=1)}})
    out = tmp_path / "out"
    proc = convert(lora, "-o", f"{out}/", "--to", "diffusers")  # a folder: named with a trailing '/'
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["lora-one.safetensors", "lora-two.safetensors"]
    assert embkit.read(out / "lora-two.safetensors").name == "two"
    assert convert(lora, "-o", tmp_path / "x.safetensors", "--to", "diffusers").returncode == 1


def test_table_output_and_choices(tree, tmp_path):
    proc = convert(tree, "-o", tmp_path / "out", "--to", "a1111", "--allow-loss")
    assert proc.returncode == 0
    assert "slot-dropped" in proc.stdout and "converted 12, skipped 0, failed 0" in proc.stdout
    assert f"skipped {tree / 'notes.txt'}: a text file" in proc.stdout
    help_text = run_embkit("convert", "--help").stdout
    for fmt in embkit.formats.writable_ids():
        assert fmt in help_text
    bad = run_embkit("convert", str(tree), "-o", str(tmp_path / "o2"), "--to", "lora-bundle")
    assert bad.returncode == 2
    assert run_embkit("convert", str(tree), "-o", str(tmp_path / "o3")).returncode == 2  # a folder needs --to


def test_sdxl_two_files_and_card_options(tmp_path):
    src = tmp_path / "xl.safetensors"
    embkit.write(sdxl("xl"), src)
    proc = convert(src, "-o", tmp_path / "learned_embeds.safetensors", "--to", "diffusers", "--sdxl-two-files", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"][0]["outputs"] == [str(tmp_path / "learned_embeds.safetensors"), str(tmp_path / "learned_embeds_2.safetensors")]
    # the pair reads back as one SDXL embedding, from either file (issue 15)
    for name in ("learned_embeds.safetensors", "learned_embeds_2.safetensors"):
        back = embkit.read(tmp_path / name)
        assert back.slots == ("clip_l", "clip_g") and back.source.pair == str(tmp_path / "learned_embeds_2.safetensors")
    from PIL import Image

    Image.new("RGB", (20, 20), (9, 99, 199)).save(tmp_path / "pic.png")
    proc = convert(tmp_path / "learned_embeds.safetensors", "-o", tmp_path / "card.png", "--picture", tmp_path / "pic.png", "--allow-loss")
    assert proc.returncode == 0, proc.stderr
    back = embkit.read(tmp_path / "card.png")
    assert back.name == "xl" and np.array_equal(back.vectors["clip_l"], sdxl("xl").vectors["clip_l"])


def test_convert_does_not_import_torch(tree, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from embkit.cli.main import main\n"
        "try:\n"
        f"    main(['convert', {str(tree)!r}, '-o', {str(tmp_path / 'out')!r}, '--to', 'a1111-image', '--jobs', '1', '--json', '--allow-loss'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").rglob("*.png"))) == 12


@pytest.mark.parametrize("to", ["multi", "a1111", "diffusers"])
def test_corpus_folder(corpus, tmp_path, to):
    proc = convert(corpus, "-o", tmp_path / "out", "--to", to, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["counts"] == {"converted": 5, "skipped": 1}  # SOURCES.md: a text file, skipped (issue 19)
    for r in report["files"]:
        if r["status"] == "skipped":
            assert r["reason"] == "a text file"
            continue
        (out,) = r["outputs"]
        original = embkit.read(r["input"])
        back = embkit.read(out)
        assert back.same_vectors(original)
        if to == "diffusers":
            assert back.name == original.name


def test_one_file_into_a_folder_needs_to_and_says_so(tmp_path):
    import torch

    src = tmp_path / "a.pt"
    torch.save({"string_to_param": {"*": torch.ones(2, 768)}, "name": "a"}, src)
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "outdir") + "/")
    assert done.returncode == 2, done.stderr
    assert "--to FORMAT is needed" in done.stderr and "Traceback" not in done.stderr
    # a name without an extension never silently becomes a folder, even with --to (issue 19)
    for extra in ((), ("--to", "kohya")):
        done = run_embkit("convert", str(src), "-o", str(tmp_path / "noext"), *extra)
        assert done.returncode == 2, done.stderr
        assert "has no extension" in done.stderr and "end it with '/'" in done.stderr
        assert not (tmp_path / "noext").exists()


def test_missing_input_is_exit_1_like_the_other_commands(tmp_path):
    done = run_embkit("convert", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "m.safetensors"))
    assert done.returncode == 1
    assert "missing.pt: no such file or folder" in " ".join(done.stderr.split())


def test_a_checkpoint_in_a_walked_folder_is_skipped_not_failed(tmp_path):
    import torch
    from safetensors.torch import save_file

    src = tmp_path / "src"
    src.mkdir()
    torch.save({"string_to_param": {"*": torch.ones(2, 768)}, "name": "a"}, src / "a.pt")
    save_file({"first_stage_model.decoder.conv_in.weight": torch.zeros(4, 4, 3, 3), "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(8, 768)}, str(src / "model.safetensors"))
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "out"), "--to", "kohya", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {Path(r["input"]).name: r for r in json.loads(done.stdout)["files"]}
    assert rows["a.pt"]["status"] == "converted"
    assert rows["model.safetensors"]["status"] == "skipped" and "model weights" in rows["model.safetensors"]["reason"]


def test_an_a1111_file_written_under_a_new_name_says_where_the_hosts_part(tmp_path):
    """``convert bad-hands-5.pt -o bh2.pt --to a1111`` keeps the stored name (diffusers' trigger,
    as the source had it) and says so per host; ``--rename bh2`` makes every host type bh2."""
    from embkit.hosts.verdict import triggers

    src = tmp_path / "bad-hands-5.pt"
    embkit.write(sd1("bad-hands-5"), src)
    proc = convert(src, "-o", tmp_path / "out" / "bh2.pt", "--to", "a1111", "--json")
    assert proc.returncode == 0, proc.stderr
    (loss,) = [x for x in json.loads(proc.stdout)["files"][0]["losses"] if x["code"] == "trigger-renamed"]
    assert "'bh2', not 'bad-hands-5'" in loss["message"] and "diffusers types its stored name 'bad-hands-5'" in loss["message"]
    words = triggers(str(tmp_path / "out" / "bh2.pt"))
    assert (words["a1111"], words["diffusers"]) == ("bh2", "bad-hands-5")
    proc = convert(src, "-o", tmp_path / "renamed" / "bh2.pt", "--to", "a1111", "--rename", "bh2", "--json")
    assert proc.returncode == 0, proc.stderr
    words = triggers(str(tmp_path / "renamed" / "bh2.pt"))
    assert words["a1111"] == words["diffusers"] == "bh2", words

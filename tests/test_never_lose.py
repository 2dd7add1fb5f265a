"""Never lose a user's data (issue 19): inputs are never modified unless named as the output with
--in-place, an output tree overlapping an input tree is refused before anything is written (convert,
previews, ingest), and vectors are never dropped silently. Real files, real commands in fresh
processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import embkit
from conftest import run_embkit


def _vec(n, width, seed=0):
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32) * 0.02


def sdxl(path: Path, name="xl", seed=0) -> Path:
    embkit.write(embkit.Embedding(name=name, vectors={"clip_l": _vec(2, 768, seed), "clip_g": _vec(2, 1280, seed + 1)}), path)
    return path


def sd1(path: Path, name="one", seed=0, n=2) -> Path:
    embkit.write(embkit.Embedding(name=name, vectors={"clip_l": _vec(n, 768, seed)}), path)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) and the sha256 of its bytes."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for f in files:
            p = Path(folder, f)
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def inputs(tmp_path) -> Path:
    ip = tmp_path / "ip"
    (ip / "sub").mkdir(parents=True)
    sdxl(ip / "xl.safetensors")
    sd1(ip / "one.pt")
    sd1(ip / "sub" / "deep.safetensors", "deep", seed=3)
    (ip / "one.civitai.info").write_text('{"trainedWords": ["one"]}')
    return ip


# -- overlapping trees --------------------------------------------------------------------------------


def test_converting_a_folder_into_itself_is_refused_and_inputs_stay_byte_identical(inputs, tmp_path):
    before = snapshot(inputs)
    os.symlink(inputs, tmp_path / "link-to-ip")
    for out in (inputs, inputs / "sub", inputs / "new", tmp_path / "link-to-ip", tmp_path / "link-to-ip" / "x"):
        done = run_embkit("convert", str(inputs), "-o", str(out), "--to", "kohya", "--overwrite", "--allow-loss")
        assert done.returncode == 9, (out, done.stdout, done.stderr)
        assert "overlaps the input folder" in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
        assert snapshot(inputs) == before, out
    assert not (inputs / "new").exists()
    # an input folder inside the output folder overlaps it too
    done = run_embkit("convert", str(inputs / "sub"), "-o", str(inputs), "--to", "kohya", "--overwrite")
    assert done.returncode == 9 and snapshot(inputs) == before
    # library side: refused before anything is planned
    with pytest.raises(embkit.WriteError, match="overlaps the input folder"):
        from embkit.convert import plan_jobs

        plan_jobs((str(inputs),), str(inputs), "kohya")


def test_a_file_is_never_written_over_unless_in_place(tmp_path):
    src = sdxl(tmp_path / "xl.safetensors")
    original = src.read_bytes()
    for cmd in (("convert", str(src), "-o", str(src), "--to", "multi", "--overwrite"),
                ("edit", str(src), "--scale", "2", "-o", str(src), "--overwrite"),
                ("merge", str(src), str(src), "-o", str(src), "--overwrite")):
        done = run_embkit(*cmd)
        assert done.returncode == 9, (cmd, done.stderr)
        assert "is the input itself" in " ".join(done.stderr.split()) and "--in-place" in done.stderr
        assert src.read_bytes() == original
    # a hard link to the input is the input too
    os.link(src, tmp_path / "hard.safetensors")
    assert run_embkit("edit", str(src), "--scale", "2", "-o", str(tmp_path / "hard.safetensors"), "--overwrite").returncode == 9
    assert src.read_bytes() == original


def test_in_place_replaces_the_input_atomically(tmp_path):
    src = sdxl(tmp_path / "xl.safetensors")
    before = embkit.read(src)
    inode = os.stat(src).st_ino
    done = run_embkit("edit", str(src), "--scale", "2", "--in-place")
    assert done.returncode == 0, done.stderr
    after = embkit.read(src)
    assert np.allclose(after.vectors["clip_g"], before.vectors["clip_g"] * 2)
    # a new file renamed over the old one (atomic), not the old one rewritten
    assert os.stat(src).st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["xl.safetensors"]  # no temporary left
    # convert names the one file as its own output
    done = run_embkit("convert", str(src), "-o", str(src), "--to", "multi", "--in-place")
    assert done.returncode == 0, done.stderr
    assert embkit.probe(src).format == "multi"
    # --in-place on something that is not the input says so
    done = run_embkit("edit", str(src), "--scale", "2", "-o", str(tmp_path / "other.safetensors"), "--in-place")
    assert done.returncode == 2 and "must name the input itself" in done.stderr


def test_a_file_converted_into_the_folder_holding_it_keeps_the_input(tmp_path):
    src = sd1(tmp_path / "one.safetensors")
    original = src.read_bytes()
    other = sd1(tmp_path / "two.pt", "two")
    done = run_embkit("convert", str(src), str(other), "-o", str(tmp_path), "--to", "diffusers", "--overwrite", "--json")
    assert done.returncode == 9, done.stderr  # one file refused, the batch says so
    rows = {Path(r["input"]).name: r for r in json.loads(done.stdout)["files"]}
    assert rows["one.safetensors"]["status"] == "failed" and "is the input itself" in rows["one.safetensors"]["reason"]
    assert rows["two.pt"]["status"] == "converted" and (tmp_path / "two.safetensors").is_file()
    assert src.read_bytes() == original


def test_previews_out_overlapping_an_input_folder_is_refused_before_anything_is_read(inputs, tmp_path):
    before = snapshot(inputs)
    os.symlink(inputs, tmp_path / "link-to-ip")
    for out in (inputs, inputs / "previews", tmp_path / "link-to-ip" / "p"):
        done = run_embkit("previews", str(inputs), "-o", str(out), "-m", "sd1", "--device", "cpu")
        text = " ".join(done.stderr.split())
        assert done.returncode == 9, (out, done.stderr)
        assert "overlaps the input folder" in text and "leave out -o" in text and "Traceback" not in done.stderr
        assert snapshot(inputs) == before, out
    assert not (inputs / "previews").exists()
    # an input folder inside the output folder overlaps it too; -o naming an input file is no folder
    assert run_embkit("previews", str(inputs / "sub"), "-o", str(inputs), "-m", "sd1").returncode == 9
    done = run_embkit("previews", str(inputs / "one.pt"), "-o", str(inputs / "one.pt"), "-m", "sd1")
    assert done.returncode == 2 and "is a file" in done.stderr
    assert snapshot(inputs) == before
    from embkit.diffusers.preview_run import make_previews

    with pytest.raises(embkit.WriteError, match="overlaps the input folder"):
        make_previews([inputs], out=inputs / "sub")


def test_ingest_output_overlapping_an_input_is_refused_before_anything_is_read(inputs, tmp_path):
    before = snapshot(inputs)
    os.symlink(inputs, tmp_path / "link-to-ip")
    for out in (inputs, inputs / "ingested", tmp_path / "link-to-ip" / "x"):
        done = run_embkit("ingest", str(inputs), "-o", str(out), "--json")
        text = " ".join(done.stderr.split())
        assert done.returncode == 9, (out, done.stderr)
        assert "overlaps the input folder" in text and "Traceback" not in done.stderr
        assert json.loads(done.stdout)["error"]["code"] == "write-failed"
        assert snapshot(inputs) == before, out
    assert not (inputs / "ingested").exists() and not (inputs / "x").exists()
    # an input folder inside the output folder overlaps it too, and so does a folder a manifest lists
    assert run_embkit("ingest", str(inputs / "sub"), "-o", str(inputs)).returncode == 9
    (tmp_path / "list.txt").write_text(f"{inputs}\n")
    assert run_embkit("ingest", str(tmp_path / "list.txt"), "-o", str(inputs / "new")).returncode == 9
    assert snapshot(inputs) == before and not (inputs / "new").exists()
    # an input file inside the output folder: ingest writes its manifest and objects there
    done = run_embkit("ingest", str(inputs / "one.pt"), "-o", str(inputs))
    assert done.returncode == 9 and "holds the input file" in " ".join(done.stderr.split())
    assert snapshot(inputs) == before
    with pytest.raises(embkit.WriteError, match="overlaps the input folder"):
        embkit.ingest([inputs], inputs / "sub")
    # outside every input: written, and the inputs stay byte-identical
    done = run_embkit("ingest", str(inputs), "-o", str(tmp_path / "ingested"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["ok"] == 3 and snapshot(inputs) == before


@pytest.mark.slow  # renders one preview on the built-in tiny pipeline
def test_a_preview_never_lands_on_an_input_file(tmp_path):
    import makers as mk

    one = sd1(tmp_path / "one.pt")
    card = mk.image_card_text_only(tmp_path / "one.preview.png", _vec(1, 768, 5), "card")  # an embedding card under a preview's name
    before = snapshot(tmp_path)
    # (--host embkit: A1111 takes a .preview.png for a picture, never an embedding, and has no trigger for it)
    done = run_embkit("previews", str(one), str(card), "-m", "sd1", "--device", "cpu", "--steps", "1", "--host", "embkit", "--json", timeout=300)
    assert done.returncode == 9, done.stderr  # a preview refused is a failure of the batch
    rows = {Path(r["path"]).name: r for r in json.loads(done.stdout)["previews"]}
    assert rows["one.pt"]["status"] == "error" and rows["one.pt"]["code"] == "write-failed"
    assert "input embedding file" in rows["one.pt"]["reason"]
    assert rows["one.preview.png"]["status"] == "written"  # the card's own preview: one.preview.preview.png
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.preview.png", "one.preview.preview.png", "one.pt"]


# -- vectors are never dropped silently -----------------------------------------------------------------


def test_dropping_a_half_is_refused_with_the_lossless_choice(tmp_path):
    src = sdxl(tmp_path / "xl.safetensors")
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "k.safetensors"), "--to", "kohya")
    assert done.returncode == 8, done.stdout + done.stderr
    flat = " ".join(done.stdout.split())
    assert "would drop vectors" in flat and "clip_g" in flat and "--to multi" in flat and "--allow-loss" in flat
    assert not (tmp_path / "k.safetensors").exists()
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "k.safetensors"), "--to", "kohya", "--allow-loss", "--json")
    assert done.returncode == 0, done.stderr
    assert [x["code"] for x in json.loads(done.stdout)["files"][0]["losses"]] == ["slot-dropped", "trigger-renamed"]
    assert list(load_file(str(tmp_path / "k.safetensors"))) == ["emb_params"]
    # the lossless choice keeps both halves
    assert run_embkit("convert", str(src), "-o", str(tmp_path / "m.safetensors"), "--to", "multi").returncode == 0
    assert embkit.read(tmp_path / "m.safetensors").same_vectors(embkit.read(src))


def test_a_batch_exits_non_zero_when_a_file_was_refused(inputs, tmp_path):
    done = run_embkit("convert", str(inputs), "-o", str(tmp_path / "out"), "--to", "a1111", "--json")
    assert done.returncode == 8
    report = json.loads(done.stdout)
    assert report["counts"] == {"converted": 2, "failed": 1, "skipped": 1}  # the sidecar is skipped, not failed
    [refused] = [r for r in report["files"] if r["status"] == "failed"]
    assert refused["input"].endswith("xl.safetensors") and refused["error"]["code"] == "lossy"


def test_output_vectors_are_refused_too_and_precision_asked_for_is_a_report(tmp_path):
    src = tmp_path / "ot.safetensors"
    save_file({"clip_l": _vec(2, 768), "clip_l_out": _vec(2, 768, 1)}, str(src))
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "a.pt"), "--to", "a1111")
    assert done.returncode == 8 and "output vectors" in done.stdout
    # a dtype asked for loses precision: reported, not refused; --strict refuses it
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "h.safetensors"), "--to", "multi", "--dtype", "half", "--json")
    assert done.returncode == 0 and "precision-lost" in {x["code"] for x in json.loads(done.stdout)["files"][0]["losses"]}
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "s.safetensors"), "--to", "multi", "--dtype", "fp16", "--strict")
    assert done.returncode == 8 and not (tmp_path / "s.safetensors").exists()


def test_the_rule_is_the_librarys(tmp_path):
    emb = embkit.read(sdxl(tmp_path / "xl.safetensors"))
    with pytest.raises(embkit.LossError) as refused:
        embkit.write(emb, tmp_path / "k.safetensors", "kohya")
    assert refused.value.exit_code == 8 and "multi keeps every slot" in str(refused.value)
    assert not (tmp_path / "k.safetensors").exists()
    assert [x.code for x in embkit.write(emb, tmp_path / "k.safetensors", "kohya", allow_loss=True)] == ["slot-dropped", "trigger-renamed"]
    assert embkit.writing.VECTOR_LOSSES == {"slot-dropped", "output-vectors-dropped"}


def test_merge_and_edit_refuse_dropping_through_the_layout(tmp_path):
    src = sdxl(tmp_path / "xl.safetensors")
    for cmd in (("edit", str(src), "--scale", "2", "-o", str(tmp_path / "e.pt"), "--to", "a1111"),
                ("merge", str(src), str(src), "-o", str(tmp_path / "m.safetensors"), "--to", "kohya")):
        done = run_embkit(*cmd)
        assert done.returncode == 8 and "--allow-loss" in done.stderr, done.stderr
        assert run_embkit(*cmd, "--allow-loss").returncode == 0


# -- edit: what verify would reject, renames, metadata that stops being true ----------------------------


def test_edit_warns_about_halves_of_different_lengths_and_strict_refuses(tmp_path):
    src = sdxl(tmp_path / "xl.safetensors")
    done = run_embkit("edit", str(src), "--slot", "clip_g", "--select", "0:1", "-o", str(tmp_path / "y.safetensors"))
    assert done.returncode == 0
    assert "would fail `embkit verify`" in done.stderr and "vector-count-mismatch" in done.stderr
    assert run_embkit("verify", str(tmp_path / "y.safetensors")).returncode == 7  # what the warning said
    done = run_embkit("edit", str(src), "--slot", "clip_g", "--select", "0:1", "-o", str(tmp_path / "z.safetensors"), "--strict")
    assert done.returncode == 7 and not (tmp_path / "z.safetensors").exists()


def test_edit_rename_of_a_file_name_triggered_layout_says_so_and_stores_the_name(tmp_path):
    src = sd1(tmp_path / "one.pt")
    done = run_embkit("edit", str(src), "--rename", "newname", "-o", str(tmp_path / "out.pt"))
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stderr.split())
    assert "the trigger of" in flat and "is its file name in A1111" in flat and "-o newname.pt" in flat
    back = embkit.read(tmp_path / "out.pt")
    assert back.metadata["stored_name"] == "newname"  # what diffusers reads: renamed where it can be
    from embkit.hosts.verdict import triggers

    assert triggers(str(tmp_path / "out.pt"))["diffusers"] == "newname"


def test_a_port_does_not_keep_the_old_architecture(tmp_path):
    src = tmp_path / "xl.safetensors"
    save_file({"clip_l": _vec(2, 768), "clip_g": _vec(2, 1280, 1)}, str(src),
              metadata={"format": "pt", "modelspec.architecture": "stable-diffusion-xl-v1-base/textual-inversion", "modelspec.sai_model_spec": "1.0.0"})
    done = run_embkit("edit", str(src), "--port", "sd1", "-o", str(tmp_path / "sd1.safetensors"), "--to", "multi")
    assert done.returncode == 0, done.stderr
    meta = embkit.read(tmp_path / "sd1.safetensors").metadata
    assert "modelspec.architecture" not in meta  # no longer true, and multi has no slot-derived one
    done = run_embkit("edit", str(src), "--port", "sd1", "-o", str(tmp_path / "k.safetensors"), "--to", "kohya")
    assert done.returncode == 0, done.stderr
    assert embkit.read(tmp_path / "k.safetensors").metadata["modelspec.architecture"] == "stable-diffusion-v1/textual-inversion"
    # the library sees no family mix between the two files' metadata and their slots
    db = str(tmp_path / "lib.sqlite")
    run_embkit("library", "--db", db, "scan", str(tmp_path / "k.safetensors"), str(tmp_path / "sd1.safetensors"))
    assert "family-mix" not in run_embkit("library", "--db", db, "conflicts").stdout


def test_a_name_without_an_extension_is_never_silently_a_folder(tmp_path):
    src = sd1(tmp_path / "one.safetensors")
    for cmd in (("edit", str(src), "--scale", "2", "-o", str(tmp_path / "noext")),
                ("merge", str(src), str(src), "-o", str(tmp_path / "noext"))):
        done = run_embkit(*cmd)
        assert done.returncode == 2 and "has no extension" in done.stderr
        assert not (tmp_path / "noext").exists()
    # asked for explicitly, a concept folder is written
    done = run_embkit("edit", str(src), "--scale", "2", "-o", str(tmp_path / "concept"), "--to", "concept-folder")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "concept" / "learned_embeds.bin").is_file()


# -- standard input and output ---------------------------------------------------------------------------


def _pipe(args: list[str], data: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embkit", *args], input=data, capture_output=True, timeout=120)


def test_cat_file_into_inspect_dash(tmp_path):
    src = sd1(tmp_path / "one.safetensors")
    done = subprocess.run(f"cat {src} | {sys.executable} -m embkit inspect - --json", shell=True, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert report["path"] == "<stdin>" and report["slots"]["clip_l"]["vectors"] == 2


def test_convert_from_stdin_to_stdout_round_trips(tmp_path):
    src = sdxl(tmp_path / "xl.safetensors")
    done = _pipe(["convert", "-", "-o", "-", "--to", "multi"], src.read_bytes())
    assert done.returncode == 0, done.stderr
    (tmp_path / "back.safetensors").write_bytes(done.stdout)
    assert embkit.read(tmp_path / "back.safetensors").same_vectors(embkit.read(src))
    # the loss rule holds on a pipe too
    done = _pipe(["convert", "-", "-o", "-", "--to", "kohya"], src.read_bytes())
    assert done.returncode == 8 and done.stdout == b""
    # stdin through edit and scan and verify
    done = _pipe(["edit", "-", "--scale", "2", "-o", str(tmp_path / "e.safetensors")], src.read_bytes())
    assert done.returncode == 0, done.stderr
    assert _pipe(["scan", "-", "--json"], src.read_bytes()).returncode == 0
    assert _pipe(["verify", "-"], src.read_bytes()).returncode == 0


def test_json_lines_parse_line_by_line(inputs, tmp_path):
    (inputs / "notes.txt").write_text("x")
    db = str(tmp_path / "lib.sqlite")
    assert run_embkit("library", "--db", db, "scan", str(inputs)).returncode == 0
    for args in (("inspect", str(inputs)), ("verify", str(inputs)), ("scan", str(inputs)), ("library", "--db", db, "list")):
        done = run_embkit(*args, "--json-lines")
        assert done.returncode == 0, (args, done.stderr)
        lines = done.stdout.splitlines()
        objs = [json.loads(line) for line in lines]  # each line is one document
        assert len(objs) >= 3 and all(isinstance(o, dict) for o in objs)
        if args[0] != "library":
            by_name = {Path(o["path"]).name: o for o in objs}
            assert by_name["notes.txt"]["skipped"] == "a text file"
            assert "skipped" not in by_name["xl.safetensors"]

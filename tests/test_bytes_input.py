"""``embkit.read``/``read_all``/``probe`` on bytes and binary file objects, and ``embkit inspect -``:
the same caps and refusals as for a path (every malicious case of tests/fuzz/malicious.py), nothing
looked up on disk, and errors that name what was read."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embkit
import makers
from fuzz.malicious import CASES, Canary, Case


def _bytes(case: Case, folder: Path) -> tuple[bytes, Canary]:
    folder.mkdir(parents=True, exist_ok=True)
    canary = Canary(created=str(folder / "canary.created"), keep=str(folder / "canary.keep"))
    Path(canary.keep).write_text("keep")
    return case.build(canary), canary


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_file_is_refused_from_bytes_as_from_disk(case: Case, tmp_path: Path):
    data, canary = _bytes(case, tmp_path)
    path = tmp_path / case.filename
    path.write_bytes(data)
    with pytest.raises(embkit.EmbkitError) as on_disk:
        embkit.read(path)
    for fn in (embkit.read, embkit.read_all, embkit.probe):
        for source in (data, io.BytesIO(data)):
            with pytest.raises(embkit.EmbkitError) as info:
                fn(source, name=case.filename)
            assert info.value.code == case.expect == on_disk.value.code, str(info.value)
            assert str(info.value).startswith(case.filename + ": ")  # names what was read
    assert not Path(canary.created).exists() and Path(canary.keep).read_text() == "keep"


def test_in_memory_names_and_what_is_refused(tmp_path):
    data = makers.kohya_file(tmp_path / "neg.safetensors", makers.vectors(1, 768, 1)).read_bytes()
    assert embkit.read(data).name == "<bytes>"  # kohya files are triggered by the file stem
    assert embkit.read(data, name="EasyNeg.safetensors").name == "EasyNeg"
    emb = embkit.read(io.BytesIO(data), name="x.safetensors")
    assert emb.source.path == "x.safetensors" and emb.source.in_memory
    with pytest.raises(embkit.BrokenFileError, match="<bytes>: file is empty"):
        embkit.read(b"")
    with pytest.raises(TypeError, match="binary mode"):
        with open(tmp_path / "neg.safetensors", encoding="latin-1") as text:
            embkit.read(text)
    with pytest.raises(TypeError, match="name= is for bytes"):
        embkit.read(tmp_path / "neg.safetensors", name="other.pt")
    with pytest.raises(TypeError, match="cannot read a int"):
        embkit.read(42)


def test_a_file_object_is_capped_like_a_pipe(monkeypatch, tmp_path):
    from embkit import io as eio

    data = makers.kohya_file(tmp_path / "a.safetensors", makers.vectors(4, 768, 1)).read_bytes()
    monkeypatch.setattr(eio, "MAX_STREAM_BYTES", len(data) - 1)
    with pytest.raises(embkit.TooLargeError, match="file object gives more than"):
        embkit.read(io.BytesIO(data))
    assert embkit.read(data).slots == ("clip_l",)  # bytes already in memory are not a stream


def test_inspect_dash_reads_standard_input(tmp_path):
    data = makers.a1111_pt(tmp_path / "a.pt", makers.vectors(2, 768, 3)).read_bytes()
    proc = subprocess.run([sys.executable, "-m", "embkit", "inspect", "-", "--json"], input=data, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [rep] = json.loads(proc.stdout)
    assert rep["path"] == "<stdin>" and rep["format"] == "a1111" and rep["slots"]["clip_l"]["vectors"] == 2
    assert rep["hashes"]["sha256"] == json.loads(subprocess.run([sys.executable, "-m", "embkit", "inspect", str(tmp_path / "a.pt"), "--json"],
                                                                capture_output=True, timeout=120).stdout)[0]["hashes"]["sha256"]
    bad = subprocess.run([sys.executable, "-m", "embkit", "inspect", "-"], input=b"\x80\x02cposix\nsystem\n", capture_output=True, timeout=120)
    assert bad.returncode == 5 and b"<stdin>" in bad.stderr


def test_token_ending_in_out_is_a_diffusers_token(tmp_path):
    """Regression (found by the bytes harness): ``{"fade_out": T}`` was refused as no layout, since
    every key ending in ``_out`` was taken for an output-vector key."""
    path = makers.diffusers_file(tmp_path / "fade.safetensors", "fade_out", makers.vectors(1, 768, 4))
    emb = embkit.read(path)
    assert emb.source.format == "diffusers" and emb.name == "fade_out"
    with pytest.raises(embkit.UnknownFormatError):
        embkit.read(makers.diffusers_file(tmp_path / "x.safetensors", "clip_l_out", np.ones((1, 768), np.float32)))

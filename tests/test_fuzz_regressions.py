"""Regression tests for the crashes fuzzing and the hostile-file work found (each was a bare Python
exception, a hang or an unbounded allocation before its fix; each must now be an EmbkitError)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import embkit
from fuzz.pickles import EMPTY_TUPLE, NEWOBJ, dict_, g, pickle_of, s, torch_zip


def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("dtype", [[1], {"x": 1}, ["F32"]])
def test_safetensors_unhashable_dtype(tmp_path: Path, dtype):
    """Was TypeError (unhashable type) from the dtype table lookup."""
    path = _safetensors(tmp_path / "x.safetensors", {"emb_params": {"dtype": dtype, "shape": [1, 768], "data_offsets": [0, 3072]}}, bytes(3072))
    for fn in (embkit.read, embkit.probe):
        with pytest.raises(embkit.BrokenFileError):
            fn(path)


def test_safetensors_overlapping_tensors_are_refused(tmp_path: Path):
    """Overlapping offsets let a 1 MB file read as 400 MB of tensors (400 tokens on one range)."""
    header = {f"<t{k}>": {"dtype": "F32", "shape": [4, 768], "data_offsets": [0, 4 * 768 * 4]} for k in range(3)}
    path = _safetensors(tmp_path / "x.safetensors", header, bytes(4 * 768 * 4))
    with pytest.raises(embkit.BrokenFileError, match="overlap"):
        embkit.read_all(path)


def test_safetensors_adjacent_and_empty_tensors_still_read(tmp_path: Path):
    header = {
        "<a>": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, 3072]},
        "<b>": {"dtype": "F32", "shape": [1, 768], "data_offsets": [3072, 6144]},
    }
    path = _safetensors(tmp_path / "x.safetensors", header, bytes(6144))
    assert [e.name for e in embkit.read_all(path)] == ["<a>", "<b>"]


def test_parameter_dict_without_build_is_broken_not_attribute_error(tmp_path: Path):
    """NEWOBJ of ParameterDict with no BUILD after it left the stand-in without ``state``
    (AttributeError while wrapping the tree)."""
    pd = g("torch.nn.modules.container", "ParameterDict") + EMPTY_TUPLE + NEWOBJ
    path = tmp_path / "x.pt"
    path.write_bytes(torch_zip(pickle_of(dict_((s("string_to_param"), pd)))))
    with pytest.raises(embkit.BrokenFileError, match="empty"):
        embkit.read(path)


def test_memo_index_far_past_the_stream_reads_cleanly(tmp_path: Path):
    """LONG_BINPUT 2**30 made the C unpickler allocate and zero an 8 GB memo (a hang in fuzzing)."""
    from fuzz.pickles import kohya_body

    path = tmp_path / "x.pt"
    path.write_bytes(torch_zip(pickle_of(kohya_body() + b"r" + struct.pack("<I", 2**30))))
    assert embkit.read(path).vectors["clip_l"].shape == (1, 768)


def test_bytearray8_is_refused_before_allocating(tmp_path: Path):
    """BYTEARRAY8 declaring ~1 GB made the unpickler allocate and zero it before reading (found by
    atheris: 1 GB peak, 1.9 s, from a mutated bad-hands-5.pt)."""
    from fuzz.pickles import kohya_body

    path = tmp_path / "x.pt"
    path.write_bytes(torch_zip(pickle_of(b"\x96" + struct.pack("<Q", 989_855_745) + b"abc" + kohya_body(), 5)))
    with pytest.raises(embkit.BrokenFileError, match="bytearray"):
        embkit.read(path)


@pytest.mark.parametrize("meta_json, expect", [('{"x": NaN, "y": [Infinity]}', {"x": "NaN", "y": ["Infinity"]}), ("[" * 100_000 + "]" * 100_000, None)])
def test_embkit_metadata_json_is_sanitised(tmp_path: Path, meta_json: str, expect):
    """NaN in the embkit.metadata JSON crashed `inspect --json`; deep nesting raised RecursionError."""
    header = {"__metadata__": {"embkit.metadata": meta_json}, "emb_params": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, 3072]}}
    path = _safetensors(tmp_path / "x.safetensors", header, bytes(3072))
    if expect is None:
        with pytest.raises(embkit.BrokenFileError):
            embkit.read(path)
        return
    emb = embkit.read(path)
    assert {k: emb.metadata[k] for k in expect} == expect
    json.dumps(dict(emb.metadata), allow_nan=False)


@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/data/0"])
def test_zip_member_flagged_encrypted(tmp_path: Path, member: str):
    """A zip member with the "encrypted" flag bit: zipfile raised RuntimeError (found by atheris);
    now the strict zip parser refuses the flag before any reading."""
    from fuzz.pickles import benign_zip

    data = bytearray(benign_zip())
    name = member.encode()
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        pos = data.find(sig)
        while pos != -1:
            if data[pos + name_at : pos + name_at + len(name)] == name:
                data[pos + flag_at] |= 1
            pos = data.find(sig, pos + 4)
    path = tmp_path / "x.pt"
    path.write_bytes(bytes(data))
    # zipfile and torch both refuse an encrypted member; embkit refuses the flag itself (rule zip-flags)
    with pytest.raises(embkit.UnsafeFileError, match="zip-flags"):
        embkit.read(path)
    from embkit.scan import scan_file

    assert scan_file(path).rules == ("zip-flags",)

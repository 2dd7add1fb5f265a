"""Hostile files found in the second review (session 2), each answered by a typed error (or read
correctly) instead of a hang, a crash, a bare exception or gigabytes of memory.

The memory-heavy ones run through tests/test_limits.py's bounded subprocess; the rest run here.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import embkit
from embkit.errors import BrokenFileError, EmbkitError, TooLargeError
from embkit.library.extract import examine
from embkit.report import describe_file, inspect_paths
from embkit.scan import scan_file
from test_limits import _measure


def _zip(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_shared_tuple_dag_as_dict_key_is_refused_fast(tmp_path):
    # t_i = (t_(i-1), t_(i-1)) forty times through the memo, then {t_40: 1}: hashing the key
    # walked 2**40 elements (about 1.7 hours)
    body = b")q\x000"
    for i in range(1, 41):
        body += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]) + b"0"
    path = tmp_path / "dag.pt"
    path.write_bytes(_zip({"archive/data.pkl": b"\x80\x02}" + body + b"h\x28K\x01s."}))
    result = _measure(path)
    assert result["code"] == "too-large" and result["seconds"] < 5, result


def test_damaged_compressed_member_is_a_broken_file(tmp_path):
    raw = bytearray(_zip({"archive/data.pkl": b"\x80\x02}." * 200}, zipfile.ZIP_DEFLATED))
    start = raw.index(b"archive/data.pkl") + len("archive/data.pkl")
    raw[start + 2 : start + 12] = b"\xff" * 10  # garbage inside the deflate stream
    path = tmp_path / "bad.pt"
    path.write_bytes(bytes(raw))
    with pytest.raises(EmbkitError):  # broken-file, never zlib.error
        embkit.read_all(path)
    assert scan_file(path).verdict in ("unknown", "unsafe")
    # the damaged stream inflates to other bytes than its CRC (torch, which skips CRCs, would load them)
    assert examine(str(path), path.stat().st_size, 0)[1][9] in ("broken-file", "unsafe-file")


def test_kohya_key_holding_a_string_beside_the_other_key():
    import torch

    buf = io.BytesIO()
    torch.save({"emb_params": "text", "emp_params": torch.ones(1, 768)}, buf)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"kohya-mixed-{os.getpid()}.pt"
    path.write_bytes(buf.getvalue())
    try:
        (emb,) = embkit.read_all(path)
        assert emb.vectors["clip_l"].shape == (1, 768)
    finally:
        path.unlink()


def _kohya_with_meta(path: Path, meta_json: str) -> Path:
    save_file({"emb_params": np.ones((1, 768), np.float32)}, str(path), metadata={"embkit.metadata": meta_json})
    return path


def test_overflowing_number_in_metadata_keeps_inspect_json_valid(tmp_path):
    path = _kohya_with_meta(tmp_path / "inf.safetensors", '{"x": 1e999, "y": 2.5}')
    report = describe_file(path)
    json.dumps(report, allow_nan=False)  # what `inspect --json` prints
    assert report["embeddings"][0]["metadata"]["x"] == "1e999"


@pytest.mark.parametrize("value", ["5", '["x"]', '[{"operation": [1]}]'])
def test_odd_provenance_neither_breaks_inspect_nor_operations(tmp_path, value):
    path = _kohya_with_meta(tmp_path / "prov.safetensors", f'{{"provenance": {value}}}')
    emb = embkit.read(path)
    scaled = embkit.ops.scale(emb, 2.0)
    assert scaled.provenance[-1]["operation"] == "scale"
    done = subprocess.run([sys.executable, "-m", "embkit", "inspect", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_json_made_of_empty_containers_is_refused_before_parsing(tmp_path):
    meta = "[" + "[]," * 300_000 + "[]]"
    path = _kohya_with_meta(tmp_path / "amp.safetensors", meta)
    with pytest.raises(TooLargeError, match="JSON objects and arrays"):
        embkit.probe(path)
    header = b'{"emb_params": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, 3072]}, "pad": [' + b"{}," * 300_000 + b"{}]}"
    header += b" " * (-len(header) % 8)
    path = tmp_path / "hdr.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(3072))
    with pytest.raises(TooLargeError, match="JSON objects and arrays"):
        embkit.probe(path)


def test_pickle_metadata_keys_of_mixed_types_index_like_they_read(tmp_path):
    import torch

    path = tmp_path / "mixed.pt"
    torch.save({"string_to_param": {"*": torch.ones(1, 768)}, "name": "mixed", 1: "one", "a": "b"}, path)
    (emb,) = embkit.read_all(path)
    row = examine(str(path), path.stat().st_size, 0)
    assert row[1][9] is None, row  # no error row
    assert json.loads(row[2][0][7])["1"] == "one"
    assert emb.metadata["1"] == "one"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_a_walked_folder_is_not_opened(tmp_path):
    folder = tmp_path / "emb"
    folder.mkdir()
    save_file({"emb_params": np.ones((1, 768), np.float32)}, str(folder / "good.safetensors"))
    os.mkfifo(folder / "pipe.pt")  # opening it would block forever
    assert [Path(r["path"]).name for r in inspect_paths([folder])] == ["good.safetensors"]
    from embkit.library.scan import walk

    assert [Path(p).name for p, _s, _m in walk(str(folder), (".pt", ".safetensors"))] == ["good.safetensors"]


def test_an_endless_device_is_refused_not_read_forever(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    link = tmp_path / "zero.pt"
    link.symlink_to("/dev/zero")
    with pytest.raises(TooLargeError, match="not a regular file"):
        embkit.read_all(link)


def test_warnings_are_not_raised_by_hostile_values(tmp_path):
    # float64 values near 1e308 overflowed numpy sums (RuntimeWarning); under -W error that was an exception
    path = tmp_path / "huge.safetensors"
    save_file({"emb_params": np.full((2, 768), 1e308)}, str(path))
    code = f"import embkit.report as r, json; json.dumps(r.describe_file({str(path)!r}), allow_nan=False); print('ok')"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_scan_of_many_pickle_members_is_bounded(tmp_path):
    members = {f"archive/m{i}.pkl": b"\x80\x02" + b"N0" * 400_000 + b"N." for i in range(12)}
    path = tmp_path / "many.pt"
    path.write_bytes(_zip(members, zipfile.ZIP_DEFLATED))
    result = scan_file(path)
    # no data.pkl: not a torch file, nothing hostile named; one opcode budget covers every member
    assert result.verdict == "unknown" and result.read_error["code"] == "unknown-format"
    assert any("opcodes in the file; stopped scanning" in r for r in result.reasons)


def test_broken_file_error_is_still_the_class_for_a_truncated_zip(tmp_path):
    # guard: the new except clauses did not swallow the ordinary damaged-archive error
    path = tmp_path / "t.pt"
    path.write_bytes(_zip({"archive/data.pkl": b"\x80\x02}."})[:-30])
    with pytest.raises((BrokenFileError, EmbkitError)):
        embkit.read_all(path)

"""safetensors validity judged exactly as the safetensors library judges it.

Each odd file (gaps, trailing bytes, overlaps, offsets past the end, unsorted offsets, bad dtypes,
JSON the Rust parser reads differently from Python's) is given to the library (``deserialize`` on
the bytes and ``safe_open`` on the file) and to embkit's own header check, and the two must agree
on every one. A few hundred mutated headers are checked the same way.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest
from safetensors import SafetensorError, deserialize, safe_open

import embkit
from embkit.errors import BrokenFileError, EmbkitError
from embkit.formats.safetensors_file import confirm_with_library, read_header
from fuzz.mutate import _json_mutation


def st(header: bytes | str | dict, data: bytes = b"", n: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header)).encode("utf-8")
    return struct.pack("<Q", len(raw) if n is None else n) + raw + data


def entry(dtype="F32", shape=(2,), offs=(0, 8), **extra):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs), **extra}


CASES: dict[str, bytes] = {
    "valid": st({"a": entry()}, bytes(8)),
    "empty header, no data": st({}),
    "unsorted entries": st({"b": entry(offs=(8, 16)), "a": entry()}, bytes(16)),
    "scalar": st({"a": entry(shape=(), offs=(0, 4))}, bytes(4)),
    "zero-size tensor": st({"a": entry(shape=(0, 768), offs=(0, 0))}),
    "zero-size then tensor": st({"z": entry(shape=(0,), offs=(0, 0)), "a": entry()}, bytes(8)),
    "header length not a multiple of 8": st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', bytes(8)),
    "trailing spaces": st(json.dumps({"a": entry()}) + "      ", bytes(8)),
    "leading whitespace": st("\n\t " + json.dumps({"a": entry()}), bytes(8)),
    "extra field in a tensor entry": st({"a": entry(note={"x": [1, 2]})}, bytes(8)),
    "metadata null": st({"__metadata__": None, "a": entry()}, bytes(8)),
    "metadata strings": st({"__metadata__": {"format": "pt"}, "a": entry()}, bytes(8)),
    "identical duplicate tensor": st('{"a":' + json.dumps(entry()) + ',"a":' + json.dumps(entry()) + "}", bytes(8)),
    "duplicate tensor, different offsets": st('{"a":' + json.dumps(entry(offs=(8, 16))) + ',"a":' + json.dumps(entry()) + "}", bytes(8)),
    "duplicate tensor, first invalid": st('{"a":' + json.dumps(entry(dtype="X")) + ',"a":' + json.dumps(entry()) + "}", bytes(8)),
    "duplicate metadata key": st('{"__metadata__":{"k":"1","k":"2"},"a":' + json.dumps(entry()) + "}", bytes(8)),
    "empty-string name": st({"": entry()}, bytes(8)),
    "F4 even count": st({"a": entry(dtype="F4", shape=(4,), offs=(0, 2))}, bytes(2)),
    "F8 dtype": st({"a": entry(dtype="F8_E4M3", shape=(3,), offs=(0, 3))}, bytes(3)),
    "C64": st({"a": entry(dtype="C64", shape=(1,), offs=(0, 8))}, bytes(8)),
    # refused by the library
    "trailing byte": st({"a": entry()}, bytes(9)),
    "data shorter than the offsets": st({"a": entry()}, bytes(7)),
    "gap before the first tensor": st({"a": entry(offs=(1, 9))}, bytes(9)),
    "gap between tensors": st({"a": entry(), "b": entry(offs=(12, 20))}, bytes(20)),
    "overlap": st({"a": entry(), "b": entry(offs=(4, 12))}, bytes(12)),
    "reversed offsets": st({"a": entry(offs=(8, 0))}, bytes(8)),
    "offsets past the end": st({"a": entry(shape=(4,), offs=(0, 16))}, bytes(8)),
    "shape does not match the span": st({"a": entry(shape=(3,))}, bytes(8)),
    "F4 odd count (misaligned)": st({"a": entry(dtype="F4", shape=(3,), offs=(0, 2))}, bytes(2)),
    "element count overflows": st({"a": entry(shape=(2**40, 2**40, 0), offs=(0, 0))}),
    "bit count overflows": st({"a": entry(shape=(2**62,), offs=(0, 0))}),
    "unknown dtype": st({"a": entry(dtype="F128")}, bytes(8)),
    "lower-case dtype": st({"a": entry(dtype="f32")}, bytes(8)),
    "dtype not a string": st({"a": entry(dtype=["F32"])}, bytes(8)),
    "negative shape": st({"a": entry(shape=(-2,))}, bytes(8)),
    "float shape": st('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', bytes(8)),
    "minus zero in a shape": st('{"a":{"dtype":"F32","shape":[2,-0],"data_offsets":[0,0]}}'),
    "shape past u64": st('{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,0]}}'),
    "three offsets": st({"a": entry(offs=(0, 8, 8))}, bytes(8)),
    "missing offsets": st({"a": {"dtype": "F32", "shape": [2]}}, bytes(8)),
    "repeated dtype field": st('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', bytes(8)),
    "NUL padding": st(json.dumps({"a": entry()}).encode() + b"\0\0\0", bytes(8)),
    "UTF-8 BOM": st(b"\xef\xbb\xbf" + json.dumps({"a": entry()}).encode(), bytes(8)),
    "invalid UTF-8": st(b'{"a\xff": ' + json.dumps(entry()).encode() + b"}", bytes(8)),
    "not JSON": st(b"{not json}"),
    "top-level array": st(b"[]"),
    "non-string metadata value": st({"__metadata__": {"step": 5}, "a": entry()}, bytes(8)),
    "nested metadata value": st({"__metadata__": {"k": {"x": "y"}}, "a": entry()}, bytes(8)),
    "top-level format key": st({"format": "pt", "a": entry()}, bytes(8)),
    "duplicate __metadata__": st('{"__metadata__":{},"__metadata__":{},"a":' + json.dumps(entry()) + "}", bytes(8)),
    "NaN in an extra field": st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":NaN}}', bytes(8)),
    "1e400 in an extra field": st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1e400}}', bytes(8)),
    "lone surrogate in a name": st('{"\\ud800":' + json.dumps(entry()) + "}", bytes(8)),
    "surrogate pair in a name": st('{"\\ud83d\\ude00":' + json.dumps(entry()) + "}", bytes(8)),
    "nested 127 deep in an extra field": st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":' + "[" * 125 + "]" * 125 + "}}", bytes(8)),
    "nested 128 deep in an extra field": st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":' + "[" * 127 + "]" * 127 + "}}", bytes(8)),
    "nested 129 deep in an extra field": st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":' + "[" * 128 + "]" * 128 + "}}", bytes(8)),
    "header length past the file": st({"a": entry()}, bytes(8), n=4096),
    "header over 100,000,000 bytes": st(b"{}", n=100_000_001),
    "under 8 bytes": b"\x02\x00\x00",
}


def library_accepts(data: bytes, path: Path) -> bool:
    """The library's answer on the bytes; the file-based answer must be the same."""
    try:
        deserialize(data)
        ok = True
    except SafetensorError:
        ok = False
    path.write_bytes(data)
    try:
        with safe_open(str(path), framework="numpy"):
            on_file = True
    except SafetensorError:
        on_file = False
    assert ok == on_file, "the library's two paths disagree"
    return ok


def embkit_accepts(data: bytes) -> bool:
    try:
        read_header(data, "x.safetensors")
        return True
    except EmbkitError:
        return False


#: cases whose dtype the safetensors library learnt after embkit's floor (0.3.1), and the release
#: that first accepts it: below it, the library refuses the file, and so does embkit's reader,
#: which asks the installed library (``confirm_with_library``); its own header parser follows
#: the current library
NEWER_DTYPES = {"F8 dtype": (0, 4, 1), "F4 even count": (0, 6, 1), "C64": (0, 7, 0)}


@pytest.mark.parametrize("name", list(CASES))
def test_embkit_agrees_with_the_safetensors_library(name: str, tmp_path: Path):
    import safetensors

    data = CASES[name]
    since = NEWER_DTYPES.get(name)
    installed = tuple(int(x) for x in safetensors.__version__.split(".")[:3])
    if since is not None and installed < since:
        assert not library_accepts(data, tmp_path / "x.safetensors")  # the floor refuses it, as said above
        with pytest.raises(embkit.EmbkitError):
            confirm_with_library(data, str(tmp_path / "y.safetensors"))
        pytest.skip(f"safetensors {safetensors.__version__} predates this dtype ({'.'.join(map(str, since))})")
    assert embkit_accepts(data) == library_accepts(data, tmp_path / "x.safetensors"), name


def test_the_cases_cover_both_answers(tmp_path: Path):
    answers = [library_accepts(d, tmp_path / "x.safetensors") for d in CASES.values()]
    assert sum(answers) >= 15 and len(answers) - sum(answers) >= 30


def test_mutated_headers_agree(tmp_path: Path):
    """The fuzzer's JSON mutation (a value replaced or deleted deep in the header), 600 times."""
    base = {"__metadata__": {"format": "pt"}, "a": entry(shape=(2, 2), offs=(0, 16)), "b": entry(dtype="F16", shape=(4,), offs=(16, 24))}
    raw = json.dumps(base).encode()
    rng = random.Random(7)
    both = 0
    for _ in range(600):
        header = _json_mutation(raw, rng.getrandbits(31), rng.getrandbits(31), rng.getrandbits(8))
        data = st(header, bytes(24 + rng.choice((0, 0, 0, 1, -1))) if rng.random() < 0.9 else bytes(24))
        ours = embkit_accepts(data)
        assert ours == library_accepts(data, tmp_path / "m.safetensors"), header
        both += ours
    assert 10 < both < 590  # both answers occur


def test_read_refuses_what_the_library_refuses(tmp_path: Path):
    """Through the whole reader: a gap and trailing bytes (read as "ok" before) are broken files."""
    for name in ("trailing byte", "gap before the first tensor"):
        path = tmp_path / "x.safetensors"
        path.write_bytes(st({"emb_params": entry(shape=(1, 768), offs=(0 if name == "trailing byte" else 4, 3072 + (0 if name == "trailing byte" else 4)))},
                            bytes(3072 + 4)))
        with pytest.raises(BrokenFileError, match="safetensors library refuses"):
            embkit.read(path)
        assert embkit.scan.scan_file(path).verdict == "unknown"

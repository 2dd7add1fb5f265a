"""Resource caps: files that declare or expand to huge sizes are refused quickly, in bounded memory.

Each case is read in a fresh Python process that reports its own peak RSS (``VmHWM``) and the
seconds the read took; the test asserts the error code, peak RSS under 300 MB and time under 5 s.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from fuzz.pickles import (
    EMPTY_LIST, MARK, call, dict_, g, i, kohya_body, legacy_stream, pickle_of, s, storage, tensor, torch_zip, tup, zeros,
)

MAX_RSS_MB = 300
MAX_SECONDS = 5.0

_PROBE = r"""
import resource, sys, time, json
import embkit
fn = getattr(embkit, sys.argv[2])
t0 = time.perf_counter()
try:
    fn(sys.argv[1])
    code = "ok"
except embkit.EmbkitError as exc:
    code = exc.code
elapsed = time.perf_counter() - t0
# VmHWM is this process image's own peak; ru_maxrss would include the parent's pages before exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"code": code, "seconds": elapsed, "rss_mb": rss}))
"""


def _measure(path: Path, fn: str = "read_all") -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(path), fn], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the hostile files --------------------------------------------------------------------------


def safetensors_huge_header() -> bytes:
    """A header length of 5 GB, then a few bytes."""
    return struct.pack("<Q", 5 * 1024**3) + b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'


def safetensors_billion_elements() -> bytes:
    header = json.dumps({"emb_params": {"dtype": "F32", "shape": [1_000_000_000], "data_offsets": [0, 4_000_000_000]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(16)


def safetensors_deep_json() -> bytes:
    header = b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    return struct.pack("<Q", len(header)) + header


def safetensors_overlapping() -> bytes:
    """400 tokens all pointing at the same 1 MB of data: 400 MB of tensors from a 1 MB file."""
    n = 341 * 768 * 4
    header = json.dumps({f"<t{k}>": {"dtype": "F32", "shape": [341, 768], "data_offsets": [0, n]} for k in range(400)}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(n)


def zip_member_huge_declared() -> bytes:
    data = bytearray(torch_zip(pickle_of(kohya_body())))
    off = data.find(b"PK\x01\x02")  # central directory entry of data.pkl: uncompressed size at +24
    data[off + 24 : off + 28] = struct.pack("<I", 0xFFFFFFF0)
    return bytes(data)


def zip_storage_bomb() -> bytes:
    """A deflated storage member of 256 MB of zeros (about 250 KB on disk), declared as 64 Mi floats."""
    numel = 64 * 1024 * 1024
    body = kohya_body(tensor(storage(numel=numel)))
    return torch_zip(pickle_of(body), storages={"0": bytes(numel * 4)}, compress=8)


def zero_stride_expansion() -> bytes:
    """A one-element storage viewed as 200 diffusers tokens of 1024 x 768 floats (stride 0): 600 MB."""
    pairs = [(s(f"<t{n}>"), tensor(storage(numel=1), shape=(1024, 768), stride=(0, 0))) for n in range(200)]
    return torch_zip(pickle_of(dict_(*pairs)), storages={"0": zeros(1)})


def pickle_deep_nesting() -> bytes:
    depth = 500_000
    nested = EMPTY_LIST * depth + b"a" * (depth - 1)  # APPEND each list into the one below
    return torch_zip(pickle_of(dict_((s("emb_params"), tensor()), (s("deep"), nested))))


def pickle_object_bomb() -> bytes:
    """A compressed data.pkl of 8 MB of EMPTY_SET opcodes (each makes a 200-byte set)."""
    body = MARK + b"\x8f" * (8 * 1024 * 1024) + b"t"
    return torch_zip(pickle_of(body, 4), compress=8)


def pickle_huge_bytes() -> bytes:
    """BINBYTES8 declaring 4 GB, with a few bytes behind it."""
    return torch_zip(pickle_of(b"\x8e" + struct.pack("<Q", 4 * 1024**3) + b"abc", 4))


def pickle_memo_bomb() -> bytes:
    """A valid file whose pickle memoises its dict at index 2**30 (LONG_BINPUT): the C unpickler
    sized its memo array by that index, allocating gigabytes (found by fuzzing)."""
    return torch_zip(pickle_of(kohya_body() + b"r" + struct.pack("<I", 2**30)))


def pickle_bytearray_bomb() -> bytes:
    """BYTEARRAY8 declaring 1 GB (the unpickler allocated it before reading; found by atheris)."""
    return torch_zip(pickle_of(b"\x96" + struct.pack("<Q", 1024**3) + b"abc", 5))


def pickle_deep_tuple_key() -> bytes:
    """A dict keyed by 200,000 nested 1-tuples: Python hashes nested tuples recursively in C with
    no depth check, so storing the key crashed the interpreter (SIGSEGV; found in review)."""
    return torch_zip(pickle_of(b"}" + b"K\x00" + b"\x85" * 200_000 + b"Ns"))


def pickle_ordered_dict_copies() -> bytes:
    """A 2,000-key dict memoised once, then OrderedDict(d) 2,000 times (4 bytes each): a 20 KB
    file that built 500 MB of copies (found in review)."""
    return torch_zip(pickle_of(_od_copies_body(2000, 2000)))


def _od_copies_body(keys: int, copies: int) -> bytes:
    # {n: None for n in range(keys)} memoised as 0, OrderedDict as 2, then a list of copies
    out = b"}q\x00(" + b"".join(b"J" + struct.pack("<i", n) + b"N" for n in range(keys)) + b"u"
    out += b"0" + b"]q\x01" + b"ccollections\nOrderedDict\nq\x02" + b"0" + b"h\x01("
    out += b"h\x02h\x00\x85R" * copies + b"e"
    return out


def pickle_shared_tuple_tower() -> bytes:
    """``t = (t, t)`` forty times (7 bytes a level): walking it as a tree takes 2**40 steps."""
    body = b"K\x00q\x00" + b"h\x00h\x00\x86q\x00" * 40
    return torch_zip(pickle_of(body))


def pickle_billion_element_tensor() -> bytes:
    return torch_zip(pickle_of(kohya_body(tensor(storage(numel=1_000_000_000), shape=(1_000_000_000,), stride=(1,)))))


def legacy_billion_element_storage() -> bytes:
    body = kohya_body(tensor(storage(numel=1_000_000_000, legacy=True), shape=(1, 768)))
    return legacy_stream(pickle_of(body))


def png_bomb_header() -> bytes:
    """A PNG whose IHDR claims 100000 x 100000 pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png_bomb_pixels() -> bytes:
    """A real 6000 x 6000 black PNG (about 100 KB compressed, 108 MB decoded), no text chunk."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (6000, 6000)).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def png_under_the_cap() -> bytes:
    """2800 x 2800 noise (just under the 8 Mpx cap), no text: every pixel is decoded and searched."""
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(1, 255, (2800, 2800, 3), dtype=np.uint8)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def png_bomb_text() -> bytes:
    """A card whose base64 text chunk is a JSON nested 300000 deep."""
    import base64

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(b"[" * 300_000 + b"]" * 300_000).decode())
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


CASES = {
    "safetensors header claiming 5 GB": (".safetensors", safetensors_huge_header, {"too-large"}),
    "safetensors tensor of a billion elements": (".safetensors", safetensors_billion_elements, {"too-large", "broken-file"}),
    "safetensors header nested 200000 deep": (".safetensors", safetensors_deep_json, {"broken-file", "too-large"}),
    "safetensors 400 tensors sharing 1 MB": (".safetensors", safetensors_overlapping, {"broken-file"}),
    # a stored member declaring more bytes than it stores is refused by the strict zip parser (zip-sizes)
    "zip member declaring 4 GB": (".pt", zip_member_huge_declared, {"too-large", "unsafe-file"}),
    "zip storage bomb (256 MB of deflated zeros)": (".pt", zip_storage_bomb, {"too-large"}),
    "zero-stride expansion of a 1-element storage": (".pt", zero_stride_expansion, {"too-large"}),
    "pickle nested 500000 deep": (".pt", pickle_deep_nesting, {"too-large", "broken-file"}),
    "pickle of 8 M empty sets (compressed)": (".pt", pickle_object_bomb, {"too-large"}),
    "pickle BINBYTES8 declaring 4 GB": (".pt", pickle_huge_bytes, {"too-large", "broken-file"}),
    "pickle memo index 2**30 (LONG_BINPUT)": (".pt", pickle_memo_bomb, {"ok"}),
    "pickle BYTEARRAY8 declaring 1 GB": (".pt", pickle_bytearray_bomb, {"broken-file"}),
    "pickle tensor of a billion elements": (".pt", pickle_billion_element_tensor, {"too-large"}),
    "pickle dict key of 200000 nested tuples": (".pt", pickle_deep_tuple_key, {"too-large"}),
    "pickle copying a 2000-key dict 2000 times": (".pt", pickle_ordered_dict_copies, {"too-large"}),
    "pickle tuple tower t = (t, t) 40 deep": (".pt", pickle_shared_tuple_tower, {"unknown-format", "broken-file", "too-large"}),
    "legacy storage of a billion elements": (".pt", legacy_billion_element_storage, {"too-large"}),
    "PNG header claiming 10^10 pixels": (".png", png_bomb_header, {"too-large"}),
    "PNG decompression bomb (6000x6000, no text)": (".png", png_bomb_pixels, {"too-large"}),
    "PNG just under the pixel cap, no text": (".png", png_under_the_cap, {"broken-file"}),
    "PNG text chunk JSON nested 300000 deep": (".png", png_bomb_text, {"broken-file", "too-large"}),
}


_BUILT: dict[tuple[int, str], bytes] = {}


def write_case(cases: dict, name: str, folder: Path) -> Path:
    """The hostile file ``cases[name]`` (``(extension, build, codes)``) written into ``folder``;
    each is built once per run (some take a second: a 6000x6000 PNG), probe reuses them."""
    ext, build, _codes = cases[name]
    key = (id(cases), name)
    if key not in _BUILT:
        _BUILT[key] = build()
    path = folder / f"hostile{ext}"
    path.write_bytes(_BUILT[key])
    return path


def _write(name: str, folder: Path) -> Path:
    return write_case(CASES, name, folder)


@pytest.mark.parametrize("name", list(CASES))
def test_refused_quickly_in_bounded_memory(name: str, tmp_path: Path):
    _ext, _build, codes = CASES[name]
    path = _write(name, tmp_path)
    result = _measure(path, "read_all")
    assert result["code"] in codes, result
    assert result["rss_mb"] < MAX_RSS_MB, result
    assert result["seconds"] < MAX_SECONDS, result


@pytest.mark.parametrize("name", ["zip storage bomb (256 MB of deflated zeros)", "PNG decompression bomb (6000x6000, no text)"])
def test_probe_is_bounded_too(name: str, tmp_path: Path):
    codes = CASES[name][2]
    path = _write(name, tmp_path)
    result = _measure(path, "probe")
    assert result["code"] in codes | {"ok"}, result
    assert result["rss_mb"] < MAX_RSS_MB and result["seconds"] < MAX_SECONDS, result

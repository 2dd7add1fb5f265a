"""Per-file budgets for the hostile files of the third review: each is read (``read_all``, ``probe``)
and run through ``embkit inspect --json`` and ``embkit scan --json`` in a fresh process whose peak
RSS and wall time are measured; every one must end with an embkit answer under 5 s and 300 MB.

The files: a 5 KB pickle whose allowed ``set`` (or dict keys, or a metadata list) holds tuples
sharing one nested structure; a 3,000-frame APNG on an 8 Mpx canvas; card pixels inflating to
32 MB of JSON; a safetensors metadata list bomb; a zip with a million central-directory entries;
a pickle of a million GLOBAL opcodes; a legacy file whose five pickles add up past the opcode cap.
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

from fuzz.pickles import MARK, dict_, g, kohya_body, legacy_stream, pickle_of, s, tensor, torch_zip
from test_limits import _measure, write_case

MAX_RSS_MB = 300
MAX_SECONDS = 5.0
#: each test runs two fresh processes (a few seconds); CI runs them all
pytestmark = pytest.mark.slow

_CLI = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run([sys.executable, "-m", "embkit", *sys.argv[1:]], capture_output=True)
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"rc": proc.returncode, "seconds": seconds, "rss_mb": rss, "traceback": b"Traceback" in proc.stderr}))
"""


def _cli(*args: str) -> dict:
    """One ``embkit`` command in its own process: exit status, wall time, that process's peak RSS."""
    proc = subprocess.run([sys.executable, "-c", _CLI, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the files -----------------------------------------------------------------------------------------


def _tower(levels: int = 16) -> bytes:
    """``t = (t, t)`` ``levels`` times, memoised at slot 0: 2**16 elements through shared parts,
    under the 100,000 a single tuple may hold."""
    return b"K\x00q\x00" + b"h\x00h\x00\x86q\x00" * levels + b"0"


def set_of_shared_tuples() -> bytes:
    """set([(T, 0), (T, 1), …]): hashing each item walks all of T (found in review: 28-87 s, GBs)."""
    items = b"".join(b"h\x00K" + bytes([n % 256]) + b"\x86" for n in range(700))
    body = _tower() + dict_((s("emb_params"), tensor()), (s("x"), g("builtins", "set") + MARK + b"]" + MARK + items + b"etR"))
    return torch_zip(pickle_of(body))


def dict_keyed_by_shared_tuples() -> bytes:
    pairs = b"".join(b"h\x00K" + bytes([n % 256]) + b"\x86N" for n in range(700))
    return torch_zip(pickle_of(_tower() + dict_((s("emb_params"), tensor()), (s("x"), b"}" + MARK + pairs + b"u"))))


def list_of_shared_tuples() -> bytes:
    """No hashing: a metadata list of the same tuples, which inspect would walk element by element."""
    items = b"".join(b"h\x00K" + bytes([n % 256]) + b"\x86" for n in range(700))
    return torch_zip(pickle_of(_tower() + dict_((s("emb_params"), tensor()), (s("x"), b"]" + MARK + items + b"e"))))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def apng_3000_frames(text: bool) -> bytes:
    """A 2828 x 2828 (8 Mpx) APNG of 3,000 frames (each later one a 1-pixel patch), optionally with
    an embedding card's text chunk after the frames, where Pillow's ``text`` decodes every frame."""
    w = h = 2828
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    out += _chunk(b"acTL", struct.pack(">II", 3000, 0))
    seq = 0

    def fctl(fw, fh):
        nonlocal seq
        seq += 1
        return _chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq - 1, fw, fh, 0, 0, 1, 100, 0, 0))

    out += fctl(w, h) + _chunk(b"IDAT", zlib.compress(bytes((1 + 3 * w) * h), 9))
    pixel = zlib.compress(b"\x00\xff\x00\x00")
    for _ in range(2999):
        frame = fctl(1, 1)
        out += frame + _chunk(b"fdAT", struct.pack(">I", seq) + pixel)
        seq += 1
    if text:
        import base64

        card = {"string_to_param": {"*": {"TORCHTENSOR": [[0.01] * 768]}}, "name": "apng", "step": 1}
        out += _chunk(b"tEXt", b"sd-ti-embedding\0" + base64.b64encode(json.dumps(card).encode()))
    return out + _chunk(b"IEND", b"")


def card_pixels(payload: bytes) -> bytes:
    """A card without a text chunk whose pixel blocks hold ``payload`` (A1111's layout)."""
    import numpy as np
    from PIL import Image

    from embkit.formats.imagecard import insert_data

    card = insert_data(Image.new("RGB", (64, 64), (90, 90, 90)), payload, np.ones(768))
    buf = io.BytesIO()
    card.save(buf, "PNG")
    return buf.getvalue()


def card_numbers_32mb() -> bytes:
    return card_pixels(b'{"name": "x", "string_to_param": {"*": [' + b"0," * (16 * 1024 * 1024 - 16) + b'0]}}')


def card_string_32mb() -> bytes:
    return card_pixels(b'{"name": "' + b"a" * (32 * 1024 * 1024 - 200) + b'", "string_to_param": {"*": {"TORCHTENSOR": [[0.5]]}}}')


def safetensors_metadata_list(values: int) -> bytes:
    meta = json.dumps({"x": [0] * values}, separators=(",", ":"))
    header = json.dumps({"__metadata__": {"embkit.metadata": meta}, "emb_params": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, 3072]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes(3072)


def zip_million_entries() -> bytes:
    """One real member, and a central directory of a million entries pointing at it (zip64)."""
    data = pickle_of(kohya_body())
    name = b"a"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data), 1, 0) + name + data
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data), 1, 0, 0, 0, 0, 0, 0) + name
    n = 1_000_000
    cd = entry * n
    at = len(local)
    z64 = struct.pack("<4sQ2H2I4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(cd), at)
    loc = struct.pack("<4sIQI", b"PK\x06\x07", 0, at + len(cd), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local + cd + z64 + loc + end


def pickle_million_globals() -> bytes:
    return b"\x80\x02" + b"cos\nsystem\n0" * 1_000_000 + b"N."


def torch_million_allowed_globals() -> bytes:
    return torch_zip(pickle_of(b"ccollections\nOrderedDict\n0" * 1_000_000 + kohya_body()))


def legacy_five_big_pickles() -> bytes:
    """A 5 MB legacy file: sys info and the object each hold ~300,000 opcodes (every pickle used to
    get a budget of its own, so together they passed)."""
    filler = b"]" + (b"K\x01a" * 300_000)
    sys_info = pickle_of(dict_((s("pad"), filler)))
    obj = pickle_of(dict_((s("emb_params"), tensor(storage_legacy())), (s("pad"), filler)))
    return legacy_stream(obj, sys_pkl=sys_info)


def storage_legacy() -> bytes:
    from fuzz.pickles import storage

    return storage(legacy=True)


CASES = {
    "set of tuples sharing a nested tuple": (".pt", set_of_shared_tuples, {"too-large"}),
    "dict keyed by tuples sharing a nested tuple": (".pt", dict_keyed_by_shared_tuples, {"too-large"}),
    "metadata list of tuples sharing a nested tuple": (".pt", list_of_shared_tuples, {"too-large"}),
    "APNG of 3,000 frames, text chunk after them": (".png", lambda: apng_3000_frames(True), {"ok"}),
    "APNG of 3,000 frames, no text": (".png", lambda: apng_3000_frames(False), {"broken-file"}),
    "card pixels inflating to 32 MB of numbers": (".png", card_numbers_32mb, {"too-large"}),
    "card pixels inflating to a 32 MB string": (".png", card_string_32mb, {"too-large", "broken-file", "ok"}),
    "safetensors metadata list past the value cap": (".safetensors", lambda: safetensors_metadata_list(12_000_000), {"too-large"}),
    "safetensors metadata list just under the cap": (".safetensors", lambda: safetensors_metadata_list(500_000), {"ok"}),
    "zip with a million central-directory entries": (".pt", zip_million_entries, {"too-large"}),
    "plain pickle of a million GLOBAL opcodes": (".pt", pickle_million_globals, {"unsafe-file"}),
    "torch zip of a million allowed GLOBAL opcodes": (".pt", torch_million_allowed_globals, {"too-large"}),
    "legacy file of five pickles past the opcode cap together": (".pt", legacy_five_big_pickles, {"too-large"}),
}

def _write(name: str, folder: Path) -> Path:
    return write_case(CASES, name, folder)


@pytest.mark.parametrize("name", list(CASES))
def test_read_and_probe_within_budget(name: str, tmp_path: Path):
    path = _write(name, tmp_path)
    for fn in ("read_all", "probe"):
        result = _measure(path, fn)
        assert result["code"] in CASES[name][2] | ({"ok"} if fn == "probe" else set()), (fn, result)
        assert result["rss_mb"] < MAX_RSS_MB and result["seconds"] < MAX_SECONDS, (fn, result)


@pytest.mark.parametrize("name", list(CASES))
def test_inspect_and_scan_within_budget(name: str, tmp_path: Path):
    path = _write(name, tmp_path)
    for command in ("inspect", "scan"):
        result = _cli(command, "--json", str(path))
        assert not result["traceback"], (command, result)
        assert result["rss_mb"] < MAX_RSS_MB and result["seconds"] < MAX_SECONDS, (command, result)

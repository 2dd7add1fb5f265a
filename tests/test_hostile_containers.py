"""The container differentials: for each ambiguous-container trick (tests/fuzz/containers.py), two
readers read different things out of the same bytes, and embkit refuses the file naming the rule.

Readers: Python's ``zipfile`` and ``tarfile`` (in this process), a streaming reader that walks local
headers from byte 0 (as streaming unzippers do), ``pickletools`` over the pickle torch would run,
and ``torch.load`` itself in a subprocess (where torch is installed), with the harmless canary
payload (``builtins.open(<canary>, 'w')``), only to show the differential. embkit's ``read``,
``probe`` and ``scan`` never create a canary.
"""

from __future__ import annotations

import io
import json
import pickletools
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import embkit
from embkit.scan import scan_file
from fuzz.containers import ARCHIVE, CASES, Case

ROOT = Path(__file__).resolve().parent.parent


def _classify(raw: bytes, canary: str) -> str:
    return "canary" if canary.encode() in raw else "benign"


def read_zipfile(data: bytes, canary: str) -> str:
    try:
        return _classify(zipfile.ZipFile(io.BytesIO(data)).read(f"{ARCHIVE}/data.pkl"), canary)
    except Exception:  # noqa: BLE001  any refusal of zipfile's is the outcome "error"
        return "error"


def read_stream(data: bytes, canary: str) -> str:
    """The first local record whose name ends (in any case) with data.pkl, read front to back."""
    pos = 0
    while data[pos : pos + 4] == b"PK\x03\x04":
        _sig, _v, flags, method, _t, _d, _crc, csize, _usize, nlen, xlen = struct.unpack_from("<4s5H3L2H", data, pos)
        name = data[pos + 30 : pos + 30 + nlen].decode("latin-1").replace("\\", "/")
        start = pos + 30 + nlen + xlen
        if flags & 1 or method:
            return "error"  # encrypted (as far as the local header says), or compressed: not this reader
        if flags & 8:  # sizes in the descriptor: find it, and believe it
            end = data.find(b"PK\x07\x08", start)
            if end < 0 or struct.unpack_from("<I", data, end + 8)[0] != end - start:
                return "error"
            csize, after = end - start, end + 16
        else:
            after = start + csize
        if name.lower().endswith("data.pkl"):
            return _classify(data[start : start + csize], canary)
        pos = after
    return "error"


def read_tarfile(data: bytes, canary: str) -> str:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            return _classify(tar.extractfile("storages").read(), canary)
    except Exception:  # noqa: BLE001
        return "error"


def _torch_pickle(data: bytes) -> bytes:
    try:
        return zipfile.ZipFile(io.BytesIO(data)).read(f"{ARCHIVE}/data.pkl")
    except zipfile.BadZipFile:
        return data


def read_pickletools(data: bytes, canary: str) -> str:
    """Globals pickletools sees in the pickle torch runs (the first stream)."""
    try:
        names = [arg for op, arg, _ in pickletools.genops(_torch_pickle(data)) if op.name == "GLOBAL"]
    except Exception:  # noqa: BLE001
        return "error"
    return "canary" if any("open" in str(n) for n in names) else "benign"


LOCAL_READERS = {"zipfile": read_zipfile, "stream": read_stream, "tarfile": read_tarfile, "pickletools": read_pickletools}

_TORCH = r"""
import io, json, os, sys, warnings
warnings.simplefilter("ignore")
import torch
out = {}
for path, canary, mode in json.loads(sys.argv[1]):
    try:
        if mode == "torch":
            obj = torch.load(path, weights_only=False)
        else:
            obj = torch.load(io.BytesIO(open(path, "rb").read()), weights_only=False)
        result = "canary" if canary in repr(obj) else "benign"
    except BaseException:
        result = "error"
    out[path + "|" + mode] = "canary" if os.path.exists(canary) else result
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("containers")
    out = {}
    for n, case in enumerate(CASES):
        sub = folder / f"c{n}"
        sub.mkdir()
        canary = str(sub / "canary.created")
        path = sub / case.filename
        path.write_bytes(case.build(canary))
        out[case.id] = (path, canary)
    return out


@pytest.fixture(scope="module")
def torch_readings(built, tmp_path_factory) -> dict[str, str]:
    """torch.load of every case in one subprocess, each reading with its own file and canary (torch
    runs the canaries there; embkit never does). Keys: ``<case id>|<reader>``."""
    pytest.importorskip("torch")
    jobs, keys = [], []
    for case in CASES:
        path, _canary = built[case.id]
        for mode in ("torch", "torch_bytes"):
            if mode in case.expect:
                folder = path.parent / mode
                folder.mkdir(exist_ok=True)
                canary = str(folder / "canary.created")
                (folder / case.filename).write_bytes(case.build(canary))
                jobs.append((str(folder / case.filename), canary, mode))
                keys.append(f"{case.id}|{mode}")
    proc = subprocess.run([sys.executable, "-c", _TORCH, json.dumps(jobs)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path_factory.mktemp("cwd"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {key: got[f"{path}|{mode}"] for key, (path, _c, mode) in zip(keys, jobs)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_embkit_refuses_and_names_the_rule(case: Case, built):
    path, canary = built[case.id]
    for fn in (embkit.read_all, embkit.probe):
        with pytest.raises(embkit.UnsafeFileError) as info:
            fn(path)
        assert info.value.rule == case.rule, str(info.value)
        assert f"[{case.rule}]" in str(info.value) and str(path) in str(info.value)
    result = scan_file(path)
    assert result.verdict == "unsafe" and case.rule in result.rules, result.to_dict()
    assert not Path(canary).exists(), "embkit ran the payload"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_two_readers_read_different_files(case: Case, built, request):
    """What each reader makes of the bytes is what the case says, and they disagree."""
    path, canary = built[case.id]
    data = path.read_bytes()
    for reader, expected in case.expect.items():
        if reader in LOCAL_READERS:
            assert LOCAL_READERS[reader](data, canary) == expected, reader
        else:
            torch = request.getfixturevalue("torch_readings")
            assert torch[f"{case.id}|{reader}"] == expected, reader
    if case.id.startswith("C7b"):
        return  # a comment is refused for strictness (PyPI's rule), not for a differential today
    assert len(set(case.expect.values())) >= 2, case.expect


def test_every_zip_rule_has_a_case():
    from embkit.formats.rules import RULES

    covered = {c.rule for c in CASES}
    assert {r for r in RULES if r.startswith(("zip", "tar"))} <= covered | {"zip-flags", "zip-polyglot"}

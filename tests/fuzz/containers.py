"""Ambiguous containers: files that two parsers read differently, built byte by byte.

Each case is one class of the research notes (/work/research/hostile.md §7, C1-C19): a torch zip
whose members miniz (torch) and Python's zipfile resolve differently, a legacy stream that is also a
tar archive, a pickle whose FRAME lengths mislead pickletools, and so on. The payload is always the
harmless canary ``builtins.open(<canary>, 'w')``: it only creates an empty file.

A case declares the refusal rule embkit must name and what each reader it concerns makes of the
file (``expect``): Python's ``zipfile`` reading ``<archive>/data.pkl``, a ``stream`` reader walking
local headers from byte 0 (as streaming unzippers and uv do), ``tarfile`` reading the ``storages``
member, and ``torch.load(path, weights_only=False)``. Outcomes: ``canary`` (the bytes read hold the
payload, or it ran), ``benign``, ``error``. tests/test_hostile_containers.py checks each, torch in
a subprocess, and that the readers disagree: the same bytes are two files.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

from .pickles import LEGACY_PREFIX, benign_legacy, dict_, g, i, kohya_body, legacy_stream, pickle_of, s, tensor, zeros

ARCHIVE = "archive"


def canary(path: str) -> bytes:
    """A protocol-2 pickle that runs ``builtins.open(path, 'w')``."""
    return pickle_of(g("builtins", "open") + b"(" + s(path) + s("w") + b"tR")


def benign_pkl() -> bytes:
    return pickle_of(kohya_body())


# -- a zip writer that lets every field lie --------------------------------------------------------


class E:
    """One member: central name and data, and every field that may be made to disagree."""

    def __init__(self, name: str, data: bytes, *, lname: str | None = None, flags_l: int = 0, flags_c: int = 0,
                 crc: int | None = None, usize: int | None = None, descriptor: bytes | None = None):
        self.name, self.data = name.encode("latin-1"), data
        self.lname = (lname if lname is not None else name).encode("latin-1")
        self.fl, self.fc = flags_l, flags_c
        self.crc = zlib.crc32(data) if crc is None else crc
        self.usize = len(data) if usize is None else usize
        self.descriptor = descriptor
        self.ofs = 0


def _local(e: E) -> bytes:
    crc, cs, us = (0, 0, 0) if e.fl & 8 else (e.crc, len(e.data), e.usize)
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, e.fl, 0, 0, 0x21, crc, cs, us, len(e.lname), 0) + e.lname


def _central(e: E, delta: int = 0) -> bytes:
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, e.fc, 0, 0, 0x21, e.crc, len(e.data), e.usize, len(e.name),
                       0, 0, 0, 0, 0, e.ofs + delta) + e.name


def eocd(n: int, size: int, ofs: int, comment: bytes = b"") -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, size, ofs, len(comment)) + comment


def body(entries: list[E], base: int = 0) -> bytes:
    out = b""
    for e in entries:
        e.ofs = base + len(out)
        out += _local(e) + e.data + (e.descriptor or b"")
    return out


def build(entries: list[E], prefix: bytes = b"") -> bytes:
    b = body(entries, len(prefix))
    cd = b"".join(_central(e) for e in entries)
    return prefix + b + cd + eocd(len(entries), len(cd), len(prefix) + len(b))


def z64_record(n: int, size: int, ofs: int) -> bytes:
    return struct.pack("<4sQ2H2I4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, size, ofs)


def z64_locator(at: int) -> bytes:
    return struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)


def torch_entries(pkl: bytes) -> list[E]:
    """The members a minimal torch archive needs: data.pkl, byteorder, one storage, version."""
    return [E(f"{ARCHIVE}/data.pkl", pkl), E(f"{ARCHIVE}/byteorder", b"little"), E(f"{ARCHIVE}/data/0", zeros()),
            E(f"{ARCHIVE}/version", b"3\n")]


# -- the cases ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    rule: str
    build: Callable[[str], bytes]  # canary path -> file bytes
    expect: dict  # reader -> canary | benign | error
    filename: str = "evil.pt"


CASES: list[Case] = []


def case(id: str, rule: str, *, filename: str = "evil.pt", **expect: str):
    def register(fn):
        CASES.append(Case(id, rule, fn, expect, filename))
        return fn

    return register


@case("C1 duplicate data.pkl (canary first)", "zip-duplicate-name", zipfile="benign", stream="canary", torch="canary")
def _(c):
    return build([E(f"{ARCHIVE}/data.pkl", canary(c)), *torch_entries(benign_pkl())])


@case("C2 case-variant DATA.PKL beside data.pkl", "zip-case-collision", zipfile="benign", torch="canary")
def _(c):
    entries = torch_entries(benign_pkl())
    entries.insert(3, E(f"{ARCHIVE}/DATA.PKL", canary(c)))  # where miniz's case-blind binary search lands on it
    return build(entries)


@case("C2b only a case-variant data.PKL", "zip-extra-pickle", zipfile="error", torch="canary")
def _(c):
    entries = torch_entries(canary(c))
    entries[0] = E(f"{ARCHIVE}/data.PKL", canary(c))
    return build(entries)


def _two_bodies(c: str) -> tuple[list[E], list[E]]:
    return torch_entries(canary(c)), torch_entries(benign_pkl())


@case("C3 end record offset desync (concatenation arithmetic)", "zip-layout", zipfile="benign", torch="canary")
def _(c):
    a, b = _two_bodies(c)
    body_a = body(a)
    body_b = body(b, len(body_a))
    cd_a = b"".join(_central(e) for e in a)
    cd_b_at = len(body_a) + len(body_b) + len(cd_a)
    concat = cd_b_at - (len(body_a) + len(body_b))  # what zipfile adds to every offset
    cd_b = b"".join(_central(e, -concat) for e in b)
    return body_a + body_b + cd_a + cd_b + eocd(len(b), len(cd_b), len(body_a) + len(body_b))


@case("C4 zip64 locator pointing at another record", "zip64-mismatch", zipfile="benign", torch="canary")
def _(c):
    a, b = _two_bodies(c)
    body_a = body(a)
    body_b = body(b, len(body_a))
    at = len(body_a) + len(body_b)
    cd_a = b"".join(_central(e) for e in a)
    rec_a = z64_record(len(a), len(cd_a), at)
    cd_b_at = at + len(cd_a) + len(rec_a)
    cd_b = b"".join(_central(e) for e in b)
    rec_b = z64_record(len(b), len(cd_b), cd_b_at)
    return body_a + body_b + cd_a + rec_a + cd_b + rec_b + z64_locator(at + len(cd_a)) + eocd(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


@case("C5 legacy stream that is also a tar archive", "tar-polyglot", tarfile="canary", torch="canary", torch_bytes="benign")
def _(c):
    return tar_polyglot(c)


@case("C6 canary pickle in front of a benign zip", "global", zipfile="benign", torch="canary")
def _(c):
    return canary(c) + build(torch_entries(benign_pkl()))


@case("C7 a second archive appended (offsets relative to its start)", "zip-layout", zipfile="benign", stream="canary", torch="error")
def _(c):
    return build(torch_entries(canary(c))) + build(torch_entries(benign_pkl()))


@case("C7b a comment on the end record", "zip-end-record", zipfile="canary", torch="canary")
def _(c):
    return build(torch_entries(canary(c)))[:-2] + struct.pack("<H", 4) + b"note"


@case("C8 local name differs from the central name", "zip-header-mismatch", zipfile="error", torch="canary")
def _(c):
    entries = torch_entries(canary(c))
    entries[0] = E(f"{ARCHIVE}/data.pkl", canary(c), lname=f"{ARCHIVE}/datap.kl")
    return build(entries)


@case("C9 bad CRC", "zip-crc", zipfile="error", torch="canary")
def _(c):
    entries = torch_entries(canary(c))
    entries[0] = E(f"{ARCHIVE}/data.pkl", canary(c), crc=0xDEADBEEF)
    return build(entries)


@case("C10 encryption flag in the local header only", "zip-header-mismatch", zipfile="canary", stream="error", torch="canary")
def _(c):
    entries = torch_entries(canary(c))
    entries[0] = E(f"{ARCHIVE}/data.pkl", canary(c), flags_l=0x1)
    return build(entries)


@case("C11 stored member declaring another unpacked size", "zip-sizes", zipfile="canary", torch="error")
def _(c):
    entries = torch_entries(canary(c))
    entries[0] = E(f"{ARCHIVE}/data.pkl", canary(c), usize=len(canary(c)) + 7)
    return build(entries)


@case("C11b data descriptor with mismatched sizes", "zip-header-mismatch", zipfile="canary", stream="error", torch="canary")
def _(c):
    pkl = canary(c)
    entries = torch_entries(pkl)
    entries[0] = E(f"{ARCHIVE}/data.pkl", pkl, flags_l=8, flags_c=8,
                   descriptor=struct.pack("<4s3I", b"PK\x07\x08", zlib.crc32(pkl), len(pkl) + 100, len(pkl) + 100))
    return build(entries)


@case("C12 NUL in a member name", "zip-name", zipfile="canary", torch="error")
def _(c):
    entries = torch_entries(benign_pkl())
    entries[0] = E(f"{ARCHIVE}/data.pkl\0.txt", canary(c))
    return build(entries)


@case("C12b backslash separators", "zip-name", stream="canary", torch="error")
def _(c):
    return build([E(n.replace("/", "\\"), e.data) for n, e in ((e.name.decode(), e) for e in torch_entries(canary(c)))])


@case("C12c member outside the archive's folder", "zip-prefix", zipfile="canary", torch="error")
def _(c):
    return build(torch_entries(canary(c)) + [E("other/data.pkl", canary(c))])


@case("C13 TorchScript constants.pkl", "zip-extra-pickle", zipfile="benign", torch="error")
def _(c):
    return build(torch_entries(benign_pkl()) + [E(f"{ARCHIVE}/constants.pkl", canary(c))])


@case("C14 a canary pickle after data.pkl's STOP", "global", zipfile="canary", torch="benign")
def _(c):
    return build(torch_entries(benign_pkl() + canary(c)))


@case("C14b a benign pickle after data.pkl's STOP", "pickle-trailing-data", zipfile="canary", torch="benign")
def _(c):
    return build(torch_entries(benign_pkl() + pickle_of(dict_((s("emb_params"), tensor()), (s("note"), s(c))))))


@case("C15 opcode across a FRAME's end", "pickle-frame", pickletools="benign", torch="canary")
def _(c):
    return build(torch_entries(frame_divergence(c)))


@case("C16 orphan local record before the archive", "zip-layout", zipfile="benign", stream="canary", torch="benign")
def _(c):
    orphan = E(f"{ARCHIVE}/data.pkl", canary(c))
    lead = _local(orphan) + orphan.data
    return build(torch_entries(benign_pkl()), prefix=lead)


@case("C17 protocol-0 pickle named .pt", "global", zipfile="error", torch="canary")
def _(c):
    return b"cbuiltins\nopen\n(V" + c.encode() + b"\nVw\ntR."


@case("C18 torch zip named .safetensors", "extension-mismatch", zipfile="canary", torch="error", filename="evil.safetensors")
def _(c):
    return build(torch_entries(canary(c)))


@case("C19 zip64 record disagreeing with the end record", "zip64-mismatch", zipfile="error", torch="canary")
def _(c):
    entries = torch_entries(canary(c))
    data = body(entries)
    cd = b"".join(_central(e) for e in entries)
    rec = z64_record(len(entries), len(cd) + 1, len(data))
    return data + cd + rec + z64_locator(len(data) + len(cd)) + eocd(len(entries), len(cd), len(data))


def frame_divergence(c: str) -> bytes:
    """fickling's FRAME-boundary case (cpython #154848): a frame that claims 2 bytes, a BINBYTES
    inside it that reads 0x107; the C unpickler runs the GLOBAL the bytes hide, pickletools sees
    a byte string."""
    hidden = g("builtins", "open") + b"V" + c.encode() + b"\nVw\n\x86R"
    return (b"\x80\x05N" + b"V" + b"a" * (8192 * 16 - 17) + b"\n0(" + b"\x95" + struct.pack("<Q", 2) + b"B\x07\x01\x00\x00\x00\x00"
            + (hidden + b"(").ljust(256 + 5, b"N") + b"1.")


def tar_polyglot(c: str) -> bytes:
    """A legacy torch stream whose first 512 bytes are also a valid tar header: the sys-info pickle
    is a BINBYTES holding the rest of a tar archive (whose ``storages`` member is the canary) and is
    then dropped (``POP``, ``{}``); the real embedding follows."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("x", b""), ("storages", canary(c)), ("tensors", pickle_of(i(0))), ("pickle", pickle_of(i(0)))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = bytearray(buf.getvalue())
    head = LEGACY_PREFIX + b"." + pickle_of(b"M\xe9\x03") + b"\x80\x02B" + struct.pack("<I", len(tar_bytes) - 28)
    assert len(head) == 28
    tar_bytes[0:100] = head + bytes(72)
    tar_bytes[148:156] = b"        "
    tar_bytes[148:156] = b"%06o\0 " % sum(tar_bytes[:512])
    legacy = benign_legacy()
    rest = legacy[len(LEGACY_PREFIX) + 1 + len(pickle_of(i(1001))) + len(pickle_of(b"}")):]  # object, keys, storages
    return bytes(tar_bytes) + b"0}." + rest


__all__ = ["CASES", "Case", "canary", "build", "E", "torch_entries", "legacy_stream", "dict_", "tensor"]

"""Zip archives read the way torch reads them, refusing every layout two parsers could disagree on.

torch opens its zip files with miniz: the end record's offsets are taken as absolute, a zip64
locator is followed to wherever it points, names are looked up ignoring ASCII case by a binary
search that lands on any of several equal names, and CRCs are not checked. Python's
:mod:`zipfile` (what scanners use) corrects offsets for prepended data, takes the zip64 record
just before the locator, keeps the last of two equal names and checks CRCs. The experiments in
docs/safety.md show files on which the two read different members: a scanner (or embkit, had it
fallen back to zipfile) approves one pickle while ``torch.load`` runs another.

So :func:`parse_zip` accepts only the layout on which every reader agrees: local records laid end
to end from byte 0, each local header equal to its central entry (a data descriptor, as torch
writes one, must repeat the central sizes and CRC), then one central directory, an optional zip64
record with its locator right before the end record and agreeing with it, and an end record with
no comment at the very end. Names are plain (no escapes, no control characters, UTF-8 only when
flagged) and distinct even ignoring case. Anything else is refused with the rule it breaks
(:mod:`embkit.formats.rules`); there is no fallback to :mod:`zipfile`.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import BrokenFileError
from .rules import refuse, too_large

MAX_ZIP_MEMBERS = 100_000
#: zipfile refuses archives that need a newer version than this (``zipfile.MAX_EXTRACT_VERSION``).
MAX_VERSION = 63

_EOCD = struct.Struct("<4s4H2IH")  # end of central directory, 22 bytes
_Z64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_Z64_EOCD = struct.Struct("<4sQ2H2I4Q")  # 56 bytes
_CENTRAL = struct.Struct("<4s6H3I5H2I")  # 46 bytes
_LOCAL = struct.Struct("<4s5H3I2H")  # 30 bytes
_DESCRIPTOR_SIG = b"PK\x07\x08"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: a leading "/", a backslash, an empty, "." or ".." part, or a part starting or ending with a space
_ODD_NAME = re.compile(r"^/|\\|(^|/)\.{0,2}(/|$)|(^|/) | (/|$)")
_U32, _U16 = 0xFFFFFFFF, 0xFFFF


@dataclass(frozen=True)
class Member:
    """One member: its name, sizes, method, CRC and where its data lies in the file."""

    filename: str
    file_size: int
    compress_size: int
    method: int
    crc: int
    start: int
    header: int


class ZipArchive:
    """A checked archive (see :func:`parse_zip`); members are looked up by exact name."""

    def __init__(self, data: bytes | memoryview, members: list[Member]):
        self._data = data
        self._list = members
        self._by_name = {m.filename: m for m in members}

    def infolist(self) -> list[Member]:
        return list(self._list)

    def getinfo(self, name: str) -> Member:
        return self._by_name[name]

    def head(self, info: Member, n: int = 2) -> bytes:
        """The member's first ``n`` bytes, without reading (or inflating) the rest."""
        raw = bytes(self._data[info.start : info.start + min(info.compress_size, n if info.method == 0 else 64 + 4 * n)])
        if info.method == 0:
            return raw
        try:
            return zlib.decompressobj(-15).decompress(raw, n)
        except zlib.error:
            return b""

    def read(self, info: Member, cap: int | None = None, path: str | None = None) -> bytes:
        """The member's bytes (inflated when deflated), CRC checked; ``cap``: most bytes allowed."""
        cap = info.file_size if cap is None else cap
        if info.file_size > cap:
            raise too_large(f"zip member {info.filename} declares {info.file_size} bytes, past the cap of {cap}", path)
        raw = bytes(self._data[info.start : info.start + info.compress_size])
        if info.method == 8:
            inflater = zlib.decompressobj(-15)
            try:
                out = inflater.decompress(raw, info.file_size + 1)
            except zlib.error as exc:
                raise BrokenFileError(f"zip member {info.filename} is damaged ({exc})", path=path) from None
            if len(out) != info.file_size or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
                raise refuse("zip-sizes", f"zip member {info.filename} inflates to another size than it declares", path)
        else:
            out = raw
        if zlib.crc32(out) != info.crc:
            raise refuse("zip-crc", f"zip member {info.filename} fails its CRC-32 check (torch loads it anyway, zipfile refuses it)", path)
        return out


def _extras(extra: bytes, where: str, path: str | None) -> dict[int, bytes]:
    """An extra field's records by id; malformed or repeated records, and Info-ZIP Unicode paths
    (zipfile renames the member by them, miniz does not), are refused."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + 4 > len(extra):
            raise refuse("zip-header-mismatch", f"{where} has a malformed extra field", path)
        kind, size = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + size > len(extra):
            raise refuse("zip-header-mismatch", f"{where} has a malformed extra field", path)
        if kind in out:
            raise refuse("zip-header-mismatch", f"{where} repeats extra record 0x{kind:04x}", path)
        if kind == 0x7075:
            raise refuse("zip-name", f"{where} carries a Unicode-path extra record that renames it for zipfile only", path)
        out[kind] = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return out


def _zip64_values(extra: dict[int, bytes], wanted: list[bool], where: str, path: str | None) -> list[int | None]:
    """The zip64 extra's 8-byte values for the fields whose 32-bit value is the sentinel."""
    raw = extra.get(0x0001, b"")
    values: list[int | None] = []
    pos = 0
    for need in wanted:
        if not need:
            values.append(None)
            continue
        if pos + 8 > len(raw):
            raise BrokenFileError(f"{where} lacks the zip64 sizes its header calls for", path=path)
        values.append(struct.unpack_from("<Q", raw, pos)[0])
        pos += 8
    return values


def _check_name(raw: bytes, flags: int, path: str | None) -> str:
    where = f"zip member name {raw[:80]!r}"
    if flags & 0x800:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise refuse("zip-name", f"{where} is flagged UTF-8 but is not", path) from None
    elif raw.isascii():
        name = raw.decode("ascii")
    else:
        raise refuse("zip-name", f"{where} is not ASCII and not flagged UTF-8 (zipfile reads it as cp437, miniz as bytes)", path)
    if _CONTROL.search(name):
        raise refuse("zip-name", f"{where} holds control characters", path)
    if _ODD_NAME.search(name) or ":" in name.split("/", 1)[0]:
        raise refuse("zip-name", f"{where} escapes the archive or has empty, dot or space-padded parts", path)
    return name


def _end_record(data: bytes | memoryview, path: str | None) -> tuple[int, int, int, int]:
    """``(count, cd_size, cd_offset, cd_end)`` from the end record (and its zip64 record)."""
    n = len(data)
    eocd = n - _EOCD.size
    if eocd < 0 or bytes(data[eocd : eocd + 4]) != b"PK\x05\x06":
        tail = bytes(data[max(0, n - 65557) :])
        if b"PK\x05\x06" in tail:
            raise refuse("zip-end-record", "bytes follow the zip end record (a comment or appended data)", path)
        raise BrokenFileError("damaged zip archive (no end record)", path=path)
    _sig, disk, cd_disk, count_disk, count, cd_size, cd_offset, comment = _EOCD.unpack_from(data, eocd)
    if comment or disk or cd_disk or count_disk != count:
        raise refuse("zip-end-record", "zip end record has a comment, several disks or counts that disagree", path)
    loc = eocd - _Z64_LOCATOR.size
    if loc >= 0 and bytes(data[loc : loc + 4]) == b"PK\x06\x07":
        _sig, z64_disk, z64_at, disks = _Z64_LOCATOR.unpack_from(data, loc)
        if z64_disk or disks != 1 or z64_at != loc - _Z64_EOCD.size:
            raise refuse("zip64-mismatch", f"zip64 locator points to byte {z64_at}, not to the record right before it", path)
        sig, size, _made, _need, d1, d2, c1, c2, size64, off64 = _Z64_EOCD.unpack_from(data, z64_at)
        if sig != b"PK\x06\x06" or size != _Z64_EOCD.size - 12 or d1 or d2 or c1 != c2:
            raise refuse("zip64-mismatch", "zip64 end record is damaged, spans disks or carries extensible data", path)
        for v32, v64, sentinel in ((count, c2, _U16), (cd_size, size64, _U32), (cd_offset, off64, _U32)):
            if v32 not in (v64, sentinel):
                raise refuse("zip64-mismatch", f"zip64 end record says {v64} where the end record says {v32}", path)
        return c2, size64, off64, z64_at
    if count == _U16 or _U32 in (cd_size, cd_offset):
        raise refuse("zip64-mismatch", "zip end record holds zip64 sentinels but no zip64 record follows", path)
    return count, cd_size, cd_offset, eocd


def parse_zip(data: bytes | memoryview, path: str | None = None) -> ZipArchive:
    """Parse and check a zip archive (see the module docstring); refusals name their rule."""
    count, cd_size, cd_offset, cd_end = _end_record(data, path)
    if count > MAX_ZIP_MEMBERS:
        raise too_large(f"zip holds {count} members, past the cap of {MAX_ZIP_MEMBERS}", path)
    if cd_offset + cd_size != cd_end:
        raise refuse("zip-layout", f"zip central directory is not where the end record puts it (bytes {cd_offset}+{cd_size}, "
                     f"the directory ends at {cd_end}): data before or inside the archive", path)
    members: list[Member] = []
    names: dict[bytes, str] = {}
    pos = cd_offset
    for k in range(count):
        if pos + _CENTRAL.size > cd_end:
            raise refuse("zip-end-record", f"zip end record counts {count} members, the directory holds {k}", path)
        (sig, _made, need, flags, method, _t, _d, crc, csize, usize, nlen, xlen, clen, disk, _ia, _ea, at) = _CENTRAL.unpack_from(data, pos)
        if sig != b"PK\x01\x02":
            raise BrokenFileError(f"damaged zip archive (central entry {k} has no signature)", path=path)
        raw_name = bytes(data[pos + 46 : pos + 46 + nlen])
        where = f"zip member {raw_name[:80]!r}"
        extra = _extras(bytes(data[pos + 46 + nlen : pos + 46 + nlen + xlen]), where, path) if xlen else {}
        pos += 46 + nlen + xlen + clen
        if pos > cd_end:
            raise BrokenFileError("damaged zip archive (central directory overruns)", path=path)
        if clen or disk:
            raise refuse("zip-end-record", f"{where} has a comment or starts on another disk", path)
        if need & 0xFF > MAX_VERSION or flags & ~0x808:
            raise refuse("zip-flags", f"{where} sets flags 0x{flags:04x} or needs zip version {need / 10:.1f}", path)
        if method not in (0, 8):
            raise BrokenFileError(f"{where} uses compression method {method}; torch reads stored and deflated members only", path=path)
        if _U32 in (usize, csize, at):
            usize, csize, at = (v if v is not None else d for v, d in zip(
                _zip64_values(extra, [usize == _U32, csize == _U32, at == _U32], where, path), (usize, csize, at)))
        if method == 0 and csize != usize:
            raise refuse("zip-sizes", f"{where} is stored but declares {csize} bytes stored and {usize} bytes unpacked", path)
        name = _check_name(raw_name, flags, path)
        folded = raw_name.lower()  # miniz compares names with ASCII tolower
        if folded in names:
            if names[folded] == name:
                raise refuse("zip-duplicate-name", f"zip holds two members named {name!r}", path)
            raise refuse("zip-case-collision", f"zip members {names[folded]!r} and {name!r} differ only in case", path)
        names[folded] = name
        start = _check_local(data, at, raw_name, flags, method, crc, csize, usize, cd_offset, where, path)
        members.append(Member(name, usize, csize, method, crc, start, at))
    if pos != cd_end:
        raise refuse("zip-end-record", "zip central directory holds more than the end record counts", path)
    _check_layout(data, members, cd_offset, path)
    return ZipArchive(data, members)


def _check_local(data, at: int, raw_name: bytes, flags: int, method: int, crc: int, csize: int, usize: int,
                 cd_offset: int, where: str, path: str | None) -> int:
    """Check the local header at ``at`` against its central entry; the offset of the data."""
    if at + _LOCAL.size > cd_offset:
        raise refuse("zip-layout", f"{where}: its local header lies outside the archive's records", path)
    (sig, _need, lflags, lmethod, _t, _d, lcrc, lcsize, lusize, lnlen, lxlen) = _LOCAL.unpack_from(data, at)
    if sig != b"PK\x03\x04":
        raise refuse("zip-layout", f"{where}: no local header at byte {at}", path)
    if lflags != flags or lmethod != method or bytes(data[at + 30 : at + 30 + lnlen]) != raw_name:
        raise refuse("zip-header-mismatch", f"{where}: local header gives another name, flags or method", path)
    lextra = _extras(bytes(data[at + 30 + lnlen : at + 30 + lnlen + lxlen]), where + " (local header)", path) if lxlen else {}
    if _U32 in (lusize, lcsize):
        lusize, lcsize = (v if v is not None else d for v, d in zip(
            _zip64_values(lextra, [lusize == _U32, lcsize == _U32], where, path), (lusize, lcsize)))
    if not (flags & 0x8 and (lcrc, lcsize, lusize) == (0, 0, 0)) and (lcrc, lcsize, lusize) != (crc, csize, usize):
        raise refuse("zip-header-mismatch", f"{where}: local header gives another CRC or size than the central directory", path)
    return at + 30 + lnlen + lxlen


def _descriptor_length(data, end: int, m: Member, wide: bool, path: str | None) -> int:
    """Bytes of the data descriptor after ``m``'s data (it must repeat the central values)."""
    sig = 4 if bytes(data[end : end + 4]) == _DESCRIPTOR_SIG else 0
    for fmt in (("<IQQ",) if wide else ("<III", "<IQQ")):
        size = struct.calcsize(fmt)
        if end + sig + size <= len(data) and struct.unpack_from(fmt, data, end + sig) == (m.crc, m.compress_size, m.file_size):
            return sig + size
    raise refuse("zip-header-mismatch", f"zip member {m.filename}: its data descriptor disagrees with the central directory", path)


def _check_layout(data, members: list[Member], cd_offset: int, path: str | None) -> None:
    """Records laid end to end from byte 0 up to the central directory: no prepended data, no
    gaps, no overlaps, no orphan or shared local headers."""
    expect = 0
    for m in sorted(members, key=lambda m: m.header):
        if m.header != expect:
            what = "data before the first record" if expect == 0 else f"a gap or overlap before byte {m.header}"
            raise refuse("zip-layout", f"zip member {m.filename}: {what} (records must follow one another)", path)
        end = m.start + m.compress_size
        if end > cd_offset:
            raise refuse("zip-sizes", f"zip member {m.filename} runs into the central directory", path)
        flags = struct.unpack_from("<H", data, m.header + 6)[0]
        if flags & 0x8:
            wide = m.compress_size >= _U32 or m.file_size >= _U32
            end += _descriptor_length(data, end, m, wide, path)
        expect = end
    if expect != cd_offset:
        raise refuse("zip-layout", f"zip holds {cd_offset - expect} bytes between its last record and its central directory", path)


def local_members(data: bytes | memoryview, limit: int = 256, max_bytes: int = 64 * 1024 * 1024) -> list[tuple[str, bytes]]:
    """Best effort, for naming what an archive that :func:`parse_zip` refused would hold: every
    local header found anywhere in the bytes, with its name and data (stored, or inflated up to
    ``max_bytes``), whatever any directory says."""
    out: list[tuple[str, bytes]] = []
    spent = 0
    # bytes and memory maps search in place; anything else is copied (bounded)
    view = data if hasattr(data, "find") else bytes(data[: 4 * max_bytes])
    at = view.find(b"PK\x03\x04")
    while at >= 0 and len(out) < limit and spent < max_bytes:
        if at + 30 <= len(view):
            (_s, _n, flags, method, _t, _d, _c, csize, _u, nlen, xlen) = _LOCAL.unpack_from(view, at)
            name = bytes(view[at + 30 : at + 30 + nlen]).decode("utf-8", "replace")
            start = at + 30 + nlen + xlen
            if csize in (0, _U32) or flags & 0x8:  # sizes in a descriptor: up to the descriptor that fits, else the next header
                csize = _described_size(view, start)
            chunk = bytes(view[start : start + min(csize, max_bytes - spent)])
            if method == 8:
                try:
                    chunk = zlib.decompressobj(-15).decompress(chunk, max_bytes - spent)
                except zlib.error:
                    chunk = b""
            spent += len(chunk)
            out.append((name, chunk))
        at = view.find(b"PK\x03\x04", at + 4)
    return out


def _described_size(view: Any, start: int) -> int:
    """The size of a member whose sizes follow its data (flag bit 3: torch's writer sets it): up to
    the first data descriptor (``PK\x07\x08``, CRC, sizes) whose compressed size is the distance
    to it, else up to the next local header (or the end). Without this, the descriptor, and after
    the last member the whole central directory, were read as part of the member."""
    nxt = view.find(b"PK\x03\x04", start)
    end = nxt if nxt >= 0 else len(view)
    at = view.find(b"PK\x07\x08", start, end)
    while at >= 0:
        if at + 16 <= len(view) and int.from_bytes(bytes(view[at + 8 : at + 12]), "little") == at - start:
            return at - start
        at = view.find(b"PK\x07\x08", at + 4, end)
    return end - start


__all__ = ["MAX_ZIP_MEMBERS", "Member", "ZipArchive", "parse_zip", "local_members"]

"""The zip layout torch writes (stored members, zip64 records), read straight from the bytes.

Parsing a small archive with :mod:`zipfile` costs more than the rest of reading a small embedding,
so the plain case is read here and anything else is left to :mod:`zipfile` (see
:func:`_parse_stored_zip`).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass

MAX_ZIP_MEMBERS = 100_000

@dataclass(frozen=True)
class _Member:
    filename: str
    file_size: int
    start: int
    crc: int


class _StoredZip:
    """The zip layout torch itself writes, read straight from the bytes (parsing it with
    :mod:`zipfile` costs more than the rest of reading a small embedding). Only the plain case
    is taken: one disk, no comment, no prepended data, ASCII names, members stored (not
    compressed, not encrypted), sizes that fit 32 bits, every member's local header agreeing
    with the central directory, members in order without overlap. :func:`_parse_stored_zip`
    returns None for anything else and :mod:`zipfile` reads it as before. CRCs are checked."""

    def __init__(self, data: bytes | memoryview, members: dict[str, _Member]):
        self._data = data
        self._members = members

    def infolist(self) -> list[_Member]:
        return list(self._members.values())

    def getinfo(self, name: str) -> _Member:
        return self._members[name]

    def read(self, info: _Member) -> bytes:
        chunk = bytes(self._data[info.start : info.start + info.file_size])
        if zlib.crc32(chunk) != info.crc:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        return chunk


_EOCD = struct.Struct("<4s4H2IH")  # end of central directory, 22 bytes
_Z64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_Z64_EOCD = struct.Struct("<4sQ2H2I4Q")  # 56 bytes
# central (46 bytes) and local (30 bytes) headers, unpacking only the fields checked (pad bytes
# skip the rest: fewer values to build per member)
_CENTRAL_FIELDS = struct.Struct("<4s2x3H4x3I4H6xI")  # sig, need, flags, method, crc, csize, size, nlen, xlen, clen, disk, offset
_LOCAL_FIELDS = struct.Struct("<4s2x2H16x2H")  # sig, flags, method, nlen, xlen


def _plain_extra(extra: bytes) -> bool:
    """True when an extra field is well formed and holds nothing zipfile would act on (padding,
    timestamps); zip64 (0x0001) and Unicode-path (0x7075) records are left to zipfile."""
    while len(extra) >= 4:
        kind, size = struct.unpack_from("<HH", extra)
        if size + 4 > len(extra) or kind in (0x0001, 0x7075):
            return False
        extra = extra[size + 4 :]
    return True


def _parse_stored_zip(data: bytes | memoryview) -> _StoredZip | None:
    """A :class:`_StoredZip` for torch's plain layout, or None (then :mod:`zipfile` decides)."""
    n = len(data)
    eocd = n - _EOCD.size
    if eocd < 0 or bytes(data[eocd : eocd + 4]) != b"PK\x05\x06":
        return None  # a comment, or not a zip at all
    _sig, disk, cd_disk, count_disk, count, cd_size, cd_offset, comment = _EOCD.unpack_from(data, eocd)
    if disk or cd_disk or comment or count_disk != count or count > MAX_ZIP_MEMBERS or 0xFFFF in (count,) or 0xFFFFFFFF in (cd_size, cd_offset):
        return None
    cd_end = eocd
    loc = eocd - _Z64_LOCATOR.size
    if loc >= 0 and bytes(data[loc : loc + 4]) == b"PK\x06\x07":  # torch always writes zip64 records
        _sig, z64_disk, z64_at, disks = _Z64_LOCATOR.unpack_from(data, loc)
        if z64_disk != 0 or disks != 1 or z64_at != loc - _Z64_EOCD.size:
            return None
        sig, rec_size, _made, _need, d1, d2, c1, c2, size64, off64 = _Z64_EOCD.unpack_from(data, z64_at)
        if sig != b"PK\x06\x06" or rec_size != _Z64_EOCD.size - 12 or d1 or d2 or (c1, c2, size64, off64) != (count, count, cd_size, cd_offset):
            return None
        cd_end = z64_at
    if cd_offset + cd_size != cd_end:
        return None  # prepended data or a gap: zipfile's business
    members: dict[str, _Member] = {}
    pos, last_end = cd_offset, 0
    central, local = _CENTRAL_FIELDS.unpack_from, _LOCAL_FIELDS.unpack_from
    for _ in range(count):
        if pos + 46 > cd_end:
            return None
        (sig, need, flags, method, crc, csize, size, nlen, xlen, clen, disk_start, at) = central(data, pos)
        if sig != b"PK\x01\x02" or need > zipfile.MAX_EXTRACT_VERSION or method or flags & ~0x808 or csize != size or clen or disk_start:
            return None  # compressed, encrypted, comments: zipfile's business
        name_at = pos + 46
        raw_name = bytes(data[name_at : name_at + nlen])
        if xlen and not _plain_extra(bytes(data[name_at + nlen : name_at + nlen + xlen])):
            return None
        pos = name_at + nlen + xlen
        if not raw_name.isascii() or at < last_end or at + 30 > cd_offset:
            return None
        (lsig, lflags, lmethod, lnlen, lxlen) = local(data, at)
        start = at + 30 + lnlen + lxlen
        if lsig != b"PK\x03\x04" or lflags != flags or lmethod or lnlen != nlen or bytes(data[at + 30 : at + 30 + nlen]) != raw_name:
            return None
        last_end = start + size
        if last_end > cd_offset:
            return None
        name = raw_name.decode("ascii")
        if name in members:
            return None  # zipfile keeps both; _open_zip refuses the file
        members[name] = _Member(name, size, start, crc)
    if pos != cd_end:
        return None
    return _StoredZip(data, members)

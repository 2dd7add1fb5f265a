"""Files that are two containers at once: refused, because another loader opens the other one.

* **tar** (rule ``tar-polyglot``): ``torch.load`` of a *path* tries :mod:`tarfile` before anything
  else (the pre-1.6 legacy tar format). A file whose first 512 bytes are a valid tar header is
  unpickled from the tar's ``pickle`` member by torch, while embkit (and ``torch.load`` of the same
  bytes in memory) reads the pickle stream: two files in one.
* **zip** (rule ``zip-polyglot``): :func:`zipfile.is_zipfile` looks for an end record anywhere in
  the last 64 KB. A pickle followed by a zip is scanned as the zip by scanners that ask zipfile
  first, while torch unpickles the pickle in front.

Both checks read at most the first block and the last 64 KB, so they cost nothing on big files.
"""

from __future__ import annotations

import struct
import tarfile

from .rules import refuse

_EOCD = struct.Struct("<4s4H2IH")
_TAIL = 65536 + 22


def tar_header_at_start(data: bytes | memoryview) -> bool:
    """Whether :mod:`tarfile` would accept the first block as a member header (its checksum is
    valid), which is all ``tarfile.open(mode="r:")`` needs to succeed."""
    block = bytes(data[:512])
    if len(block) < 512 or block.count(0) == 512:
        return False
    try:
        chksum = tarfile.nti(block[148:156])
    except (tarfile.HeaderError, ValueError):
        return False
    return chksum in tarfile.calc_chksums(block)


def zip_end_in_tail(data: bytes | memoryview) -> int:
    """Offset of an end record zipfile would open (searched in the last 64 KB as zipfile does,
    and pointing at a central directory or an empty archive), or -1."""
    n = len(data)
    start = max(0, n - _TAIL)
    tail = bytes(data[start:])
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:
        if at + 22 <= len(tail):
            _sig, _d, _cd, _n1, count, cd_size, _off, _c = _EOCD.unpack_from(tail, at)
            pos = start + at
            # zipfile seeks to "end record - directory size" (minus the zip64 records when present)
            candidates = (pos - cd_size, pos - cd_size - 76)
            if (count == 0 and cd_size == 0) or any(c >= 0 and bytes(data[c : c + 4]) == b"PK\x01\x02" for c in candidates):
                return pos
        at = tail.rfind(b"PK\x05\x06", 0, at)
    return -1


def check(data: bytes | memoryview, path: str | None, container: str) -> None:
    """Refuse a non-zip file (``container`` names what embkit reads it as) that tarfile or
    zipfile would also open."""
    # "other": a file of no kind embkit knows (scan) has no name to put in the sentence
    known = container != "other"
    if tar_header_at_start(data):
        raise refuse("tar-polyglot", (f"is a {container} file whose first block" if known else "is no tar archive, yet its first block")
                     + " is also a valid tar header (torch.load of the path would open it as a legacy tar archive)", path)
    at = zip_end_in_tail(data)
    if at >= 0:
        raise refuse("zip-polyglot", (f"is a {container} file that also holds" if known else "is no zip archive, yet holds")
                     + f" a zip end record at byte {at} (zipfile, and scanners using it, would read a zip archive instead)", path)


__all__ = ["check", "tar_header_at_start", "zip_end_in_tail"]

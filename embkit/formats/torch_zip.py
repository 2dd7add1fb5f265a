"""What a torch zip may hold: one top folder, one ``<top>/data.pkl``, raw storages, a few small
records; and the search for pickles hidden in any other member.

torch looks its members up ignoring case and hands any archive holding ``constants.pkl`` to
``torch.jit.load``, so a second pickle member (``DATA.PKL`` beside ``data.pkl``, TorchScript code)
is a second reading of the same file and is refused. Every member that is not a storage is walked
for pickle opcodes (picklescan scans members by their first bytes, whatever their name), and a
storage is walked when its bytes start like a pickle; one opcode budget covers the whole file.
Both the reader and ``embkit scan`` call :func:`member_scans`, so they look at the same bytes.
"""

from __future__ import annotations

import re

from ..errors import NotMine
from .pickle_walk import OpBudget, PickleScan, looks_like_pickle, walk_pickle, walk_streams
from .rules import refuse, too_large
from .stored_zip import Member, ZipArchive, parse_zip

#: Non-storage members walked at most this far (torch's records are a few bytes).
MAX_RECORD_BYTES = 1 << 20
#: The opcodes that name a global (GLOBAL, INST, STACK_GLOBAL, EXT1/2/4): bytes without any of
#: them cannot import anything.
_GLOBAL_OPCODES = re.compile(b"[ci\x93\x82-\x84]")
#: Pickles inside data.pkl walked after the first one (torch reads only the first).
MAX_TRAILING_PICKLES = 16


def open_torch_zip(data: bytes | memoryview, path: str) -> tuple[ZipArchive, str]:
    """Parse the archive strictly and check that it has the shape torch writes: ``(archive, top
    folder)``. :class:`NotMine` for a zip holding no ``data.pkl`` in any case (not a torch file)."""
    archive = parse_zip(data, path)
    infos = archive.infolist()
    lowered = [m.filename.lower() for m in infos]
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in lowered):
        raise NotMine(path)
    top = infos[0].filename.split("/")[0]
    pkl = f"{top}/data.pkl"
    for m, low in zip(infos, lowered):
        parts = m.filename.split("/")
        if len(parts) < 2 or parts[0] != top:
            raise refuse("zip-prefix", f"zip member {m.filename!r} lies outside the archive's top folder {top!r}", path)
        if m.filename != pkl and (low.endswith((".pkl", ".debug_pkl")) or "code" in parts[1:-1] or parts[1] == "code"):
            raise refuse("zip-extra-pickle", f"zip member {m.filename!r} is a second pickle or TorchScript code beside {pkl}", path)
    if pkl not in {m.filename for m in infos}:
        raise refuse("zip-extra-pickle", f"zip holds no {pkl}, only a name torch matches ignoring case", path)
    return archive, top


def is_storage(member: Member, top: str) -> bool:
    """A raw storage member ``<top>/data/<key>``."""
    name = member.filename
    return name.count("/") == 2 and name.startswith(top) and name[len(top) : len(top) + 6] == "/data/"


def member_scans(archive: ZipArchive, top: str, path: str, budget: OpBudget | None = None, *, pkl: bytes | None = None,
                 everything: bool = True) -> list[PickleScan]:
    """Pickle walks of every member that may hold one: ``data.pkl`` (each pickle in it), every
    record that is not a storage, every storage whose bytes start like a pickle. ``pkl`` passes
    data.pkl's bytes when the caller has read them already; ``everything=False`` leaves data.pkl
    out (the reader runs it itself)."""
    budget = budget or OpBudget()
    out: list[PickleScan] = []
    for m in archive.infolist():
        name = m.filename
        if name == f"{top}/data.pkl":
            if everything:
                raw = pkl if pkl is not None else archive.read(m, m.file_size, path)
                out.extend(walk_streams(raw, 0, where=name, budget=budget, max_streams=1 + MAX_TRAILING_PICKLES))
            continue
        if is_storage(m, top) and not looks_like_pickle(archive.head(m)):
            continue
        if m.file_size <= MAX_RECORD_BYTES or looks_like_pickle(archive.head(m)):
            raw = archive.read(m, m.file_size, path)
            if _GLOBAL_OPCODES.search(raw):  # no byte that names a global ("3\n", "little"): nothing to walk
                out.append(walk_pickle(raw, 0, name, budget))
    return out


def check_members(archive: ZipArchive, top: str, path: str, pkl: bytes, used: int) -> None:
    """The reader's refusals for what lies outside the pickle it ran (``used``: the bytes of
    data.pkl it read): a pickle naming a refused global, or any pickle with a protocol header, in
    another member; bytes after data.pkl's STOP; an opcode running across a FRAME's end."""
    budget = OpBudget()
    scans = member_scans(archive, top, path, budget, everything=False)
    if used < len(pkl) or (len(pkl) > 1 and pkl[0] == 0x80 and pkl[1] >= 4):  # frames exist from protocol 4
        scans += walk_streams(pkl, 0, where=f"{top}/data.pkl", budget=budget, max_streams=1 + MAX_TRAILING_PICKLES)
    if budget.left < 0:  # members stuffed with opcodes to hide one more pickle past the walk
        raise too_large(f"zip members hold more than {budget.total} pickle opcodes", path)
    for scan in scans:
        if scan.refused:
            raise refuse("global", f"{scan.where} names {', '.join(scan.refused[:5])} (not on embkit's allow-list); nothing was executed", path)
        if scan.rules:
            raise refuse(scan.rules[0], f"{scan.where}: {scan.problems[0] if scan.problems else 'damaged frames'}", path)
    if used < len(pkl):
        raise refuse("pickle-trailing-data", f"{top}/data.pkl holds {len(pkl) - used} bytes after its pickle's STOP "
                     "(torch reads only the first pickle, scanners read them all)", path)
    for m in archive.infolist():
        if m.filename != f"{top}/data.pkl" and not is_storage(m, top) and looks_like_pickle(archive.head(m)):
            raise refuse("zip-extra-pickle", f"zip member {m.filename} holds a pickle beside {top}/data.pkl", path)


__all__ = ["open_torch_zip", "member_scans", "check_members", "is_storage"]

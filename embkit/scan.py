"""``embkit scan``: would embkit read this file, and would every other loader see the same thing?

Nothing is imported or executed: the file is read as bytes. A scan does two things and the verdict
needs both:

1. **it runs embkit's own reading path** (:func:`embkit.read_all`: the allow-list unpickler, the
   strict zip parser, the safetensors and image readers, every refusal rule of
   :mod:`embkit.formats.rules`), so ``safe`` means exactly "``embkit.read`` accepts it";
2. **it walks every pickle stream it can find** with :mod:`embkit.formats.pickle_walk`, to name
   every global: each stream of a multi-pickle file (protocol 0 to 5), every zip member whatever
   its name or case, the pickles after a legacy stream's storages, an ``.npy`` object array, the
   members of a tar or zip hiding in a file of another kind, and the members of an archive the
   strict parser refused (found by their local headers).

A verdict per file, with the rules that fired (``rules``) and the reasons:

* ``safe``: the reader accepts the file and no rule fired;
* ``unsafe``: a global outside the allow-list anywhere, an allowed global used in a way the reader
  refuses, a container another parser could read differently, a size past a cap;
* ``unknown``: the reader refuses the file for another reason (damaged, not an embedding, a file
  embkit does not read), and nothing hostile was found.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .errors import BrokenFileError, EmbkitError, NotMine, UnknownFormatError, UnsafeFileError
from .formats import extensions, polyglot, torchfile
from .formats.pickle_walk import (  # noqa: F401  (walk_pickle and friends: embkit.scan's public names)
    GlobalRef, OpBudget, PickleScan, hidden_globals, is_plain_pickle, looks_like_pickle, walk_pickle, walk_streams,
)
from .formats.rules import refuse, rule_of
from .formats.stored_zip import ZipArchive, local_members, parse_zip
from .formats.torch_zip import member_scans, open_torch_zip

SAFE, UNSAFE, UNKNOWN = "safe", "unsafe", "unknown"
MAX_SCAN_BYTES = torchfile.MAX_PICKLE_BYTES
#: Besides embkit's own extensions, names that hold pickles (numpy's and joblib's among them).
PICKLE_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".npy", ".npz", ".zip", ".pth", ".dat", ".data")
NPY_MAGIC = b"\x93NUMPY"
_LEGACY_NAMES = ("magic number", "protocol", "sys info", "object", "storage keys")


@dataclass(frozen=True)
class ScanResult:
    """The scan of one file: its container, every pickle found in it, the verdict, the rules that
    fired, the reasons, and the reader's own error (``read_error``) when it refuses the file."""

    path: str
    container: str
    verdict: str
    pickles: tuple[PickleScan, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)
    rules: tuple[str, ...] = ()
    read_error: dict | None = None
    #: why a file met in a folder counts as no embedding (embkit.folder): not a failure of the walk
    skipped: str | None = None
    #: the exit status the reader's refusal carries (0: read, or nothing to refuse)
    exit_code: int = 0

    @property
    def globals(self) -> list[str]:
        """Every distinct global named anywhere in the file, in order of first appearance."""
        return list(dict.fromkeys(g.name for p in self.pickles for g in p.globals))

    @property
    def refused(self) -> list[str]:
        """The globals embkit's allow-list refuses."""
        return list(dict.fromkeys(g.name for p in self.pickles for g in p.globals if not g.allowed))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``embkit scan --json`` prints for this file."""
        return {
            "path": self.path,
            "container": self.container,
            "verdict": self.verdict,
            "rules": list(self.rules),
            "globals": self.globals,
            "refused": self.refused,
            "reasons": list(self.reasons),
            "read_error": self.read_error,
            "pickles": [p.to_dict() for p in self.pickles],
            **({"skipped": self.skipped} if self.skipped is not None else {}),
        }


class _Scan:
    """What one scan gathers before the verdict."""

    def __init__(self) -> None:
        self.pickles: list[PickleScan] = []
        self.rules: list[str] = []
        self.reasons: list[str] = []
        self.budget = OpBudget()

    def refusal(self, exc: UnsafeFileError) -> None:
        self.rules.append(rule_of(exc))
        self.reasons.append(exc.detail)

    def walk(self, data: bytes, where: str) -> None:
        if data.startswith(NPY_MAGIC):
            data, where = _npy_payload(data), f"{where} (numpy object array)"
            if not data:
                return
        self.pickles.extend(walk_streams(data, 0, where=where, budget=self.budget, max_streams=16))


def _npy_payload(data: bytes) -> bytes:
    """The pickle after an ``.npy`` header (numpy pickles object arrays), or ``b""``."""
    if len(data) < 10:
        return b""
    major = data[6]
    size, at = (int.from_bytes(data[8:10], "little"), 10) if major == 1 else (int.from_bytes(data[8:12], "little"), 12)
    rest = data[at + size :]
    return rest if looks_like_pickle(rest[:2]) else b""


def _kind(prefix: bytes) -> str:
    if prefix.startswith(torchfile.ZIP_MAGIC):
        return "zip"
    if prefix.startswith(torchfile.LEGACY_PREFIX):
        return "legacy"
    if prefix.startswith(NPY_MAGIC):
        return "npy"
    from .formats import sniff_container

    container = sniff_container(prefix)
    return container.id if container is not None else "other"


def scan_bytes(data: bytes | Any, path: str = "<bytes>") -> ScanResult:
    """Scan a file's bytes (see :func:`scan_file`); ``path`` names it (its extension and stem
    count, as they do for the reader)."""
    prefix = bytes(data[:32])
    kind = _kind(prefix)
    s = _Scan()
    container = {"zip": "zip", "legacy": "pickle (legacy torch)", "npy": "numpy array"}.get(kind, kind)
    if kind == "zip":
        container = _scan_zip(data, path, s)
    elif kind in ("legacy", "npy") or (kind == "other" and is_plain_pickle(bytes(data[:1 << 20]))):
        head = bytes(data[:MAX_SCAN_BYTES])
        if kind == "npy":
            s.walk(head, "array")
        else:
            if kind == "other":
                container = "pickle (plain)"
            # a legacy stream's five pickles (what follows its storages is the reader's to refuse)
            s.pickles.extend(walk_streams(head, 0, _LEGACY_NAMES if kind == "legacy" else (), budget=s.budget, max_streams=5 if kind == "legacy" else 64))
    if kind != "zip":
        try:
            polyglot.check(data, path, container)
        except UnsafeFileError as exc:
            s.refusal(exc)
            _scan_polyglot(data, s)
    read_error = _read(data, path, kind, s)
    return _verdict(path, container, s, read_error)


def _scan_zip(data: Any, path: str, s: _Scan) -> str:
    """Walk a zip's members: through the strict parser when it accepts the archive, else every
    local header found in the bytes."""
    try:
        archive = parse_zip(data, path)
    except UnsafeFileError as exc:
        s.refusal(exc)
        _walk_local_headers(data, s)
        return "zip"
    except BrokenFileError as exc:
        s.reasons.append(exc.detail)
        _walk_local_headers(data, s)
        return "zip"
    try:
        archive, top = open_torch_zip(data, path)
    except NotMine:
        _walk_members(archive, path, s)
        return "zip"
    except UnsafeFileError as exc:
        s.refusal(exc)
        _walk_members(archive, path, s)
        return "pickle (torch zip)"
    try:
        s.pickles.extend(member_scans(archive, top, path, s.budget))
    except UnsafeFileError as exc:  # a member fails its CRC or sizes
        s.refusal(exc)
    except BrokenFileError as exc:
        s.reasons.append(exc.detail)
    return "pickle (torch zip)"


def _walk_members(archive: ZipArchive, path: str, s: _Scan) -> None:
    """Walk the members of an archive that is no (acceptable) torch file: every small member and
    every member that starts like a pickle or a numpy array, 64 MB in all at most."""
    left = MAX_SCAN_BYTES
    for m in archive.infolist()[:256]:
        head = archive.head(m, 8)
        if m.file_size > (1 << 20) and not (looks_like_pickle(head) or head.startswith(NPY_MAGIC)):
            continue  # a big member of raw data (a storage, an array): nothing any reader unpickles
        if m.file_size > left:
            s.reasons.append(f"members past {MAX_SCAN_BYTES} bytes in all were not walked")
            break
        left -= m.file_size
        try:
            s.walk(archive.read(m, m.file_size, path), m.filename)
        except EmbkitError as exc:
            s.reasons.append(exc.detail)


def _walk_local_headers(data: Any, s: _Scan) -> None:
    """Every member a local header names, in an archive the strict parser refused: a ``.pkl``
    member or one that starts like a pickle or a numpy array is walked as one; every member is
    searched for the globals a pickle could name. (A tensor's raw bytes walked as opcodes gave
    'damaged opcodes' lines that read as corruption.)"""
    for name, raw in local_members(data, max_bytes=MAX_SCAN_BYTES):
        head = bytes(raw[:8])
        if name.lower().endswith(".pkl") or looks_like_pickle(head) or head.startswith(NPY_MAGIC):
            s.walk(raw, f"{name} (local header)")
        s.pickles.append(hidden_globals(raw, f"{name} (pattern search)"))


def _scan_polyglot(data: Any, s: _Scan) -> None:
    """Name what the other reading of a polyglot would import: the tar's members, the zip's."""
    if polyglot.tar_header_at_start(data):
        import tarfile

        try:
            with tarfile.open(fileobj=io.BytesIO(bytes(data[:MAX_SCAN_BYTES])), mode="r:") as tar:
                for member in tar.getmembers()[:64]:
                    fh = tar.extractfile(member) if member.isfile() else None
                    if fh is not None:
                        name = member.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                        s.walk(fh.read(MAX_SCAN_BYTES), f"{name} (tar member)")
        except Exception:  # noqa: BLE001  a broken tar is refused all the same; nothing more to name
            pass
    if polyglot.zip_end_in_tail(data) >= 0:
        _walk_local_headers(data, s)


def _read(data: Any, path: str, kind: str, s: _Scan) -> EmbkitError | None:
    """Run embkit's reader on the bytes; its refusal, or None when it reads the file."""
    if kind in ("npy", "other"):
        # no container embkit reads: the reader refuses it by construction (a plain pickle is
        # named by the walk above, the rest is not an embedding file)
        refused = list(dict.fromkeys(n for p in s.pickles for n in p.refused))
        if refused:
            return refuse("global", f"is a plain pickle that asks for {', '.join(refused[:5])} (not on embkit's allow-list); nothing was executed", path)
        framed = [p for p in s.pickles if p.rules]
        if framed and kind == "other":
            return refuse(framed[0].rules[0], "is a plain pickle whose opcodes run across a frame's end", path)
        what = "is a plain pickle, not a torch file; embkit does not unpickle it" if s.pickles else "is not a file embkit reads"
        return BrokenFileError(what, path=path) if s.pickles else UnknownFormatError(what, path=path)
    from .io import embedding_of, open_file

    try:
        loaded = open_file(path, data=data, alone=True)  # the file itself: its sidecars and pair half do not change its verdict
        for part in loaded.parts:
            embedding_of(loaded, part)
    except UnsafeFileError as exc:
        s.refusal(exc)
        return exc
    except EmbkitError as exc:
        return exc
    return None


def _verdict(path: str, container: str, s: _Scan, read_error: EmbkitError | None) -> ScanResult:
    # a name computed at load time is refused too: no torch file needs one (picklescan: "dangerous")
    refused = list(dict.fromkeys(n for p in s.pickles for n in p.refused))
    for p in s.pickles:
        for rule in p.rules:
            s.rules.append(rule)
            s.reasons.append(f"{p.where}: {p.problems[0] if p.problems else rule}")
    if refused:
        s.rules.insert(0, "global")
        s.reasons.insert(0, f"refers to globals outside the allow-list: {', '.join(refused[:20])}")
    rules = tuple(dict.fromkeys(s.rules))
    reasons = list(dict.fromkeys(s.reasons))
    error = read_error.to_dict() if read_error is not None else None
    if rules:
        verdict = UNSAFE
    elif read_error is not None:
        verdict = UNKNOWN
        reasons.append(f"embkit's reader refuses it: {read_error.detail}")
    else:
        verdict = SAFE
        reasons.append("embkit's reader accepts it and every global is on the allow-list" if s.pickles else "embkit's reader accepts it; no pickle")
    problems = [f"{p.where}: {x}" for p in s.pickles for x in p.problems if verdict != SAFE]
    code = UnsafeFileError.exit_code if verdict == UNSAFE else read_error.exit_code if read_error is not None else 0
    return ScanResult(path, container, verdict, tuple(s.pickles), tuple(dict.fromkeys(reasons + problems)), rules, error, exit_code=code)


def scan_file(path: str | os.PathLike) -> ScanResult:
    """Scan one file without executing anything: its container, the globals every pickle in it
    names, the rules that fired, and a verdict (``safe``, ``unsafe``, ``unknown``) with the reasons."""
    from .io import _read_bytes

    path = os.fspath(path)
    return scan_bytes(_read_bytes(path), path)


def wanted(name: str) -> bool:
    """Whether a folder walk scans a file by its name: embkit's extensions and the names that
    hold pickles (:data:`PICKLE_EXTENSIONS`)."""
    return name.lower().endswith(extensions() + PICKLE_EXTENSIONS)


def scan_paths(paths: Iterable[str | os.PathLike]) -> Iterator[ScanResult]:
    """Scan files; folders are walked (:func:`embkit.folder.walk`: regular files only, no link out
    of the folder, hidden names left out). A file met in a folder is scanned when its name is
    :func:`wanted` or its first bytes are a pickle, a zip or a numpy array, whatever its name;
    the others are listed as skipped (verdict ``unknown``, ``skipped`` the reason, never opened
    past the first bytes). A scanned file of a folder that embkit refuses, that is no embedding and
    holds nothing hostile (a picture without a card, a model's weights) is ``unknown`` with
    ``skipped`` set: not a failure of the walk (:func:`embkit.folder.walk_exit_code`)."""
    from dataclasses import replace

    from .folder import error_reason, name_reason
    from .folder import walk as walk_found

    for found in walk_found(paths):
        # a concept folder is scanned file by file: each may hold a pickle
        entries = _unit_files(found) if found.unit else (found,)
        for entry in entries:
            if entry.passed or (entry.walked and not wanted(entry.path) and not _sniffed(entry.path)):
                reason = entry.skip or name_reason(entry.path) or "not a file embkit reads"
                yield ScanResult(entry.path, "", UNKNOWN, reasons=(reason,), skipped=reason)
                continue
            res = scan_file(entry.path)
            if entry.walked and res.verdict == UNKNOWN and res.read_error is not None:
                message = res.read_error["message"]
                detail = message[len(entry.path) + 2:] if message.startswith(entry.path + ": ") else message
                reason = entry.skip or error_reason(entry.path, res.read_error["code"], detail)
                if reason is not None:
                    res = replace(res, skipped=reason, exit_code=0)
            yield res


def _unit_files(found):
    """The files of a concept folder met in a walk, as walked entries (with their name reasons)."""
    from .folder import Found, name_reason
    from .walk import walk_tree

    for e in walk_tree(found.path, hidden=False):
        yield Found(e.path, e.rel, False, True, name_reason(e.path))


def _sniffed(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(16)
    except OSError:
        return False
    return looks_like_pickle(prefix) or prefix.startswith((torchfile.ZIP_MAGIC, torchfile.LEGACY_PREFIX, NPY_MAGIC))


__all__ = ["scan_file", "scan_paths", "scan_bytes", "walk_pickle", "ScanResult", "PickleScan", "GlobalRef", "SAFE", "UNSAFE", "UNKNOWN"]

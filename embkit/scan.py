"""``embkit scan``: which globals each pickle in a file refers to, found without running anything.

The pickle's opcodes are walked with :mod:`pickletools` and a small *symbolic* stack: strings are
tracked through the memo (PUT, BINPUT, MEMOIZE, GET…), so a ``STACK_GLOBAL`` built from memoised
strings resolves to the name the real unpickler would import (blocklist scanners that only look at
"the last two strings" were bypassed exactly that way: picklescan #14, #22). Nothing is imported or
executed; the file is read as bytes.

A verdict per file:

* ``safe``: every global is on embkit's allow-list (``torchfile.ALLOWED_GLOBALS``), or the
  container holds no pickle at all (safetensors, PNG, WebP);
* ``unsafe``: a global outside the allow-list, or an archive trick (two ``data.pkl``, a member name
  that escapes the archive, duplicate names);
* ``unknown``: the scan could not tell (damaged opcodes, a name computed at load time, a pickle too
  big to walk, not a file embkit knows).

``safe`` means "embkit's reader would not import anything"; the reader still checks the arguments
given to the allowed names and may refuse the file for them.
"""

from __future__ import annotations

import io
import lzma
import os
import pickletools
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .errors import BrokenFileError, EmbkitError, UnsafeFileError, read_error
from .formats import imagecard, safetensors_file, torchfile

SAFE, UNSAFE, UNKNOWN = "safe", "unsafe", "unknown"
#: Walking opcodes in Python costs about a microsecond each; real torch pickles have a few thousand.
MAX_SCAN_OPS = 1_000_000
#: Pickle members of one zip walked at most.
MAX_SCAN_PICKLES = 4
MAX_SCAN_BYTES = torchfile.MAX_PICKLE_BYTES
#: Extensions a folder walk picks up: embkit's own, plus bare pickles.
SCAN_EXTENSIONS = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".safetensors", ".png", ".webp")

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


@dataclass(frozen=True)
class GlobalRef:
    """One global a pickle names: ``module.name``, the opcode and byte offset, and whether embkit allows it."""

    name: str
    opcode: str
    pos: int
    allowed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "opcode": self.opcode, "pos": self.pos, "allowed": self.allowed}


@dataclass(frozen=True)
class PickleScan:
    """What one pickle stream refers to (``where``: the zip member or the stream's place in the file)."""

    where: str
    globals: tuple[GlobalRef, ...]
    problems: tuple[str, ...] = ()
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "globals": [g.to_dict() for g in self.globals], "problems": list(self.problems)}


@dataclass(frozen=True)
class ScanResult:
    """The scan of one file: its container, every pickle in it, and the verdict with its reasons."""

    path: str
    container: str
    verdict: str
    pickles: tuple[PickleScan, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)

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
            "globals": self.globals,
            "refused": self.refused,
            "reasons": list(self.reasons),
            "pickles": [p.to_dict() for p in self.pickles],
        }


def is_allowed(module: str, name: str) -> bool:
    """Whether the global ``module``/``name`` is on the reader's allow-list (exact match, as the reader)."""
    return (module, name) in torchfile.ALLOWED_GLOBALS


class _Mark:
    pass


_MARK = _Mark()


class _Unknown:
    pass


_UNKNOWN = _Unknown()


def walk_pickle(data: bytes, start: int = 0, where: str = "pickle", max_ops: int = MAX_SCAN_OPS) -> PickleScan:
    """Walk one pickle from ``start`` to its STOP (at most ``max_ops`` opcodes); every global it
    would import, and any problem."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    found: list[GlobalRef] = []
    problems: list[str] = []
    end = start

    def pop(n: int = 1) -> list[Any]:
        if len(stack) < n:
            raise _Underflow
        taken = stack[len(stack) - n :]
        del stack[len(stack) - n :]
        return taken

    def pop_mark() -> None:
        while stack:
            if stack.pop() is _MARK:
                return
        raise _Underflow

    def record(module: str, attr: str, op: str, pos: int) -> None:
        found.append(GlobalRef(f"{module}.{attr}", op, pos, is_allowed(module, attr)))

    stream = io.BytesIO(data)
    stream.seek(start)  # genops then reports absolute offsets
    count = 0
    try:
        for op, arg, pos in _quiet(pickletools.genops(stream)):
            pos = pos or 0
            count += 1
            if count > max_ops:
                problems.append(f"more than {max_ops} opcodes; stopped scanning")
                break
            name = op.name
            if name == "STOP":
                end = pos + 1
                break
            if name in _STRING_OPS:
                stack.append(arg if isinstance(arg, str) else _UNKNOWN)
            elif name in _PUT_OPS:
                if not stack:
                    raise _Underflow
                memo[int(arg)] = stack[-1]
            elif name == "MEMOIZE":
                if not stack:
                    raise _Underflow
                memo[len(memo)] = stack[-1]
            elif name in _GET_OPS:
                if int(arg) not in memo:
                    problems.append(f"opcode {name} at byte {pos} reads memo slot {arg}, which was never set")
                stack.append(memo.get(int(arg), _UNKNOWN))
            elif name == "DUP":
                if not stack:
                    raise _Underflow
                stack.append(stack[-1])
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                record(module, attr, name, pos)
                if name == "INST":
                    pop_mark()
                stack.append(_UNKNOWN)
            elif name == "STACK_GLOBAL":
                module, attr = pop(2)
                if isinstance(module, str) and isinstance(attr, str):
                    record(module, attr, name, pos)
                else:
                    found.append(GlobalRef("<computed>", name, pos, False))
                    problems.append(f"STACK_GLOBAL at byte {pos} takes a name that is not a plain string")
                stack.append(_UNKNOWN)
            elif name in ("EXT1", "EXT2", "EXT4"):
                problems.append(f"{name} at byte {pos} names a global through the copyreg extension registry (code {arg})")
                stack.append(_UNKNOWN)
            else:
                _generic(op, stack, pop, pop_mark)
        else:
            problems.append("pickle ends without a STOP opcode")
    except _Underflow:
        problems.append("pickle stack underflows: the stream is damaged or crafted")
    except (ValueError, TypeError, EOFError, UnicodeDecodeError) as exc:
        problems.append(f"damaged opcodes ({exc})")
    return PickleScan(where=where, globals=tuple(found), problems=tuple(problems), end=end)


class _Underflow(Exception):
    pass


def _quiet(ops: Iterator) -> Iterator:
    """genops, with the DeprecationWarning that odd STRING escapes raise kept quiet (a hostile file
    must not turn into a warning, or an exception under ``-W error``)."""
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                item = next(ops)
            except StopIteration:
                return
        yield item


def _generic(op, stack: list, pop, pop_mark) -> None:
    """Apply an opcode's documented stack effect with placeholder values."""
    before = op.stack_before
    if pickletools.markobject in before:
        pop_mark()
        plain = [x for x in before[: before.index(pickletools.markobject)]]
        pop(len(plain))
    else:
        pop(len([x for x in before if x is not pickletools.stackslice]))
    for item in op.stack_after:
        stack.append(_MARK if item is pickletools.markobject else _UNKNOWN)


# -- files --------------------------------------------------------------------------------------


def looks_like_pickle(prefix: bytes) -> bool:
    """A pickle with a PROTO header (protocol 2 to 5): what ``pickle.dumps`` writes."""
    return len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5


def scan_bytes(data: bytes, path: str = "<bytes>") -> ScanResult:
    """Scan a file's bytes (see :func:`scan_file`)."""
    prefix = bytes(data[:32])
    if prefix.startswith(torchfile.ZIP_MAGIC):
        return _scan_zip(data, path)
    if prefix.startswith(torchfile.LEGACY_PREFIX):
        return _verdict(path, "pickle (legacy torch)", _walk_stream(bytes(data[: MAX_SCAN_BYTES]), 5), [])
    if looks_like_pickle(prefix):
        return _verdict(path, "pickle (plain)", [walk_pickle(bytes(data[:MAX_SCAN_BYTES]))], ["a plain pickle, not a torch file"])
    if safetensors_file.accepts(prefix[:9]):
        return ScanResult(path, "safetensors", SAFE, reasons=("no pickle: safetensors holds only data",))
    if imagecard.accepts(prefix):
        return ScanResult(path, imagecard.container_of(prefix), SAFE, reasons=("no pickle: an image holds only data",))
    return ScanResult(path, "unknown", UNKNOWN, reasons=(f"not a file embkit knows (first bytes {prefix[:12]!r})",))


def scan_file(path: str | os.PathLike) -> ScanResult:
    """Scan one file without executing anything: its container, the globals every pickle in it
    names, and a verdict (``safe``, ``unsafe``, ``unknown``) with the reasons."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            # read only what the verdict needs: a zip's directory and pickles, a pickle stream's
            # first MAX_SCAN_BYTES, a safetensors or image file's first bytes
            prefix = fh.read(32)
            if prefix.startswith(torchfile.ZIP_MAGIC):
                return _scan_zip(fh, path)
            if prefix.startswith(torchfile.LEGACY_PREFIX) or looks_like_pickle(prefix):
                return scan_bytes(prefix + fh.read(MAX_SCAN_BYTES - len(prefix)), path)
            return scan_bytes(prefix, path)
    except OSError as exc:
        raise read_error(exc, path) from None


def scan_paths(paths: Iterable[str | os.PathLike]) -> Iterator[ScanResult]:
    """Scan files; folders are walked for :data:`SCAN_EXTENSIONS`."""
    for p in paths:
        p = os.fspath(p)
        if not os.path.isdir(p):
            yield scan_file(p)
            continue
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for f in sorted(files):
                if f.lower().endswith(SCAN_EXTENSIONS):
                    yield scan_file(os.path.join(root, f))


def unsafe_error(data: bytes, path: str) -> EmbkitError:
    """The error the reader raises for a file it will not unpickle (a plain pickle, not torch):
    :class:`UnsafeFileError` naming the refused globals when there are any, else BrokenFileError."""
    result = scan_bytes(data, path)
    if result.refused:
        return UnsafeFileError(
            f"is a plain pickle that asks for {', '.join(result.refused[:5])} (not on embkit's allow-list); nothing was executed",
            path=path,
        )
    return BrokenFileError("is a plain pickle, not a torch file; embkit does not unpickle it", path=path)


def _walk_stream(data: bytes, count: int) -> list[PickleScan]:
    """Up to ``count`` pickles one after another (the legacy torch stream)."""
    out, pos = [], 0
    names = ("magic number", "protocol", "sys info", "object", "storage keys")
    for n in range(count):
        where = names[n] if n < len(names) else f"pickle {n + 1}"
        scan = walk_pickle(data, pos, where)
        out.append(scan)
        if scan.problems or scan.end <= pos:
            break
        pos = scan.end
    return out


def _scan_zip(source: Any, path: str) -> ScanResult:
    """``source``: the file's bytes, or its open file (zipfile seeks to the directory itself)."""
    reasons: list[str] = []
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError, zlib.error, lzma.LZMAError) as exc:
        return ScanResult(path, "zip", UNKNOWN, reasons=(f"damaged zip archive ({exc})",))
    names: set[str] = set()
    pickles = []
    data_pkls = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or "\\" in name or ".." in name.split("/") or ":" in name.split("/")[0]:
            reasons.append(f"member name {name!r} escapes the archive")
        if name in names:
            reasons.append(f"two members are named {name!r}")
        names.add(name)
        if os.path.basename(name) == "data.pkl":
            data_pkls += 1
        if name.endswith(".pkl") or os.path.basename(name) == "data.pkl":
            pickles.append(info)
    if data_pkls > 1:
        reasons.append(f"{data_pkls} members are named data.pkl; a torch file has one")
    scans: list[PickleScan] = []
    unknown: list[str] = []
    if len(pickles) > MAX_SCAN_PICKLES:
        # each may take a second or more to walk: a small zip of many deflated pickles took minutes
        unknown.append(f"{len(pickles)} pickle members; scanned the first {MAX_SCAN_PICKLES} (a torch file has one)")
        pickles = pickles[:MAX_SCAN_PICKLES]
    for info in pickles:
        if info.file_size > MAX_SCAN_BYTES:
            unknown.append(f"{info.filename} declares {info.file_size} bytes, too big to scan")
            continue
        try:
            raw = zf.read(info)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError) as exc:
            unknown.append(f"{info.filename} cannot be read ({exc})")
            continue
        scans.append(walk_pickle(raw, 0, info.filename, MAX_SCAN_OPS // len(pickles)))  # one budget for the file
    if not pickles:
        unknown.append("zip archive without a pickle: not a torch file")
    result = _verdict(path, "pickle (torch zip)", scans, unknown)
    if reasons:
        return ScanResult(path, result.container, UNSAFE, result.pickles, tuple(reasons) + result.reasons)
    return result


def _verdict(path: str, container: str, scans: list[PickleScan], unknown: list[str]) -> ScanResult:
    refused = [g for s in scans for g in s.globals if not g.allowed and g.name != "<computed>"]
    problems = [f"{s.where}: {p}" for s in scans for p in s.problems] + list(unknown)
    if refused:
        names = ", ".join(dict.fromkeys(g.name for g in refused))
        return ScanResult(path, container, UNSAFE, tuple(scans), (f"refers to globals outside the allow-list: {names}", *problems))
    if problems:
        return ScanResult(path, container, UNKNOWN, tuple(scans), tuple(problems))
    return ScanResult(path, container, SAFE, tuple(scans), ("every global is on the allow-list",))


__all__ = ["scan_file", "scan_paths", "scan_bytes", "walk_pickle", "ScanResult", "PickleScan", "GlobalRef", "SAFE", "UNSAFE", "UNKNOWN"]

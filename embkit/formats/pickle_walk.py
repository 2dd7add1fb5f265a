"""Which globals a pickle names, found by walking its opcodes without running anything.

The opcodes are walked with :mod:`pickletools` and a small *symbolic* stack: strings are tracked
through the memo (PUT, BINPUT, MEMOIZE, GET…), so a ``STACK_GLOBAL`` built from memoised strings
resolves to the name the real unpickler would import (blocklist scanners that only look at "the
last two strings" were bypassed exactly that way: picklescan #14, #22). Protocol-4 ``FRAME``
lengths are tracked too: an opcode that runs across the end of its frame is read one way by the C
unpickler and another by :mod:`pickletools` (cpython #154848), so the walk flags it and names any
global hidden in the bytes it spans.

Both the reader (a plain pickle is refused naming what it asks for; hidden pickles in archive
members are looked for) and ``embkit scan`` use this walk. One :class:`OpBudget` is shared by every
pickle of a file, so a file of many pickles gets one budget, not one each.
"""

from __future__ import annotations

import io
import pickletools
import re
import warnings
from dataclasses import dataclass
from typing import Any

from .pickle_globals import ALLOWED_GLOBALS

#: Opcodes walked per file (all its pickles together): about a second of Python, and as many as
#: the reader runs (``pickle_allow.MAX_PICKLE_OPS``).
MAX_SCAN_OPS = 500_000
#: Distinct globals recorded per pickle (a million GLOBAL opcodes must not become a million records).
MAX_GLOBAL_REFS = 1000

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
#: a GLOBAL or INST opcode in raw bytes (used only on bytes another reader would see as opcodes)
_GLOBAL_BYTES = re.compile(rb"[ci]([A-Za-z_][\w.]{0,127})\n([A-Za-z_][\w.]{0,127})\n")


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
    """What one pickle stream refers to (``where``: the zip member or the stream's place in the
    file); ``end`` is the offset just past its STOP (0 when it has none); ``rules`` the refusal
    rules its opcodes broke (``pickle-frame``)."""

    where: str
    globals: tuple[GlobalRef, ...]
    problems: tuple[str, ...] = ()
    end: int = 0
    rules: tuple[str, ...] = ()

    @property
    def refused(self) -> list[str]:
        """Names of the globals embkit's allow-list refuses."""
        return [g.name for g in self.globals if not g.allowed]

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "globals": [g.to_dict() for g in self.globals], "problems": list(self.problems)}


class OpBudget:
    """Opcodes left to walk for one file."""

    __slots__ = ("left", "total")

    def __init__(self, total: int = MAX_SCAN_OPS) -> None:
        self.left = self.total = total


def is_allowed(module: str, name: str) -> bool:
    """Whether the global ``module``/``name`` is on the reader's allow-list (exact match, as the reader)."""
    return (module, name) in ALLOWED_GLOBALS


def looks_like_pickle(prefix: bytes) -> bool:
    """A pickle with a PROTO header (protocol 2 to 5): what ``pickle.dumps`` writes."""
    return len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5


class _Mark:
    pass


class _Unknown:
    pass


_MARK, _UNKNOWN = _Mark(), _Unknown()


class _Underflow(Exception):
    pass


def walk_pickle(data: bytes, start: int = 0, where: str = "pickle", budget: OpBudget | None = None) -> PickleScan:
    """Walk one pickle from ``start`` to its STOP; every global it would import, and any problem."""
    budget = budget or OpBudget()
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    found: dict[tuple[str, str], GlobalRef] = {}
    problems: list[str] = []
    rules: list[str] = []
    ends = [0]

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

    def record(name: str, op: str, pos: int, allowed: bool) -> None:
        if (name, op) not in found and len(found) < MAX_GLOBAL_REFS:
            found[(name, op)] = GlobalRef(name, op, pos, allowed)

    stream = io.BytesIO(data)
    stream.seek(start)  # genops then reports absolute offsets
    try:
        # odd STRING escapes make genops warn: a hostile file must not turn into a warning (or, under
        # -W error, an exception)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _walk(stream, data, budget, stack, memo, problems, rules, record, pop, pop_mark, ends)
    except _Underflow:
        problems.append("pickle stack underflows: the stream is damaged or crafted")
    except (ValueError, TypeError, EOFError, UnicodeDecodeError, OverflowError) as exc:
        problems.append(f"damaged opcodes ({exc})")
    return PickleScan(where=where, globals=tuple(found.values()), problems=tuple(problems), end=ends[0], rules=tuple(dict.fromkeys(rules)))


def _walk(stream, data, budget, stack, memo, problems, rules, record, pop, pop_mark, ends) -> None:
    """The loop of :func:`walk_pickle` (its state passed in)."""
    frame_end = -1
    for op, arg, pos in pickletools.genops(stream):
        pos = pos or 0
        op_end = stream.tell()
        budget.left -= 1
        if budget.left < 0:
            problems.append(f"more than {budget.total} opcodes in the file; stopped scanning")
            return
        name = op.name
        if frame_end >= 0 and pos >= frame_end:
            frame_end = -1  # the frame was read to its end
        if frame_end >= 0 and (op_end > frame_end or name == "FRAME"):
            rules.append("pickle-frame")
            problems.append(f"opcode {name} at byte {pos} runs across the end of its frame (byte {frame_end})")
            for m in _GLOBAL_BYTES.finditer(data, pos, op_end):  # what a reader across the frame sees
                module, attr = m.group(1).decode(), m.group(2).decode()
                record(f"{module}.{attr}", "GLOBAL (across a frame)", m.start(), is_allowed(module, attr))
            frame_end = -1
        if name == "FRAME":
            frame_end = op_end + int(arg)
            if frame_end > len(data):
                rules.append("pickle-frame")
                problems.append(f"FRAME at byte {pos} runs past the end of the data")
        elif name == "STOP":
            ends[0] = op_end
            return
        elif name in _STRING_OPS:
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
            record(f"{module}.{attr}", name, pos, is_allowed(module, attr))
            if name == "INST":
                pop_mark()
            stack.append(_UNKNOWN)
        elif name == "STACK_GLOBAL":
            module, attr = pop(2)
            if isinstance(module, str) and isinstance(attr, str):
                record(f"{module}.{attr}", name, pos, is_allowed(module, attr))
            else:
                record("<computed>", name, pos, False)
                problems.append(f"STACK_GLOBAL at byte {pos} takes a name that is not a plain string")
            stack.append(_UNKNOWN)
        elif name in ("EXT1", "EXT2", "EXT4"):
            problems.append(f"{name} at byte {pos} names a global through the copyreg extension registry (code {arg})")
            stack.append(_UNKNOWN)
        else:
            # the opcode's documented stack effect, with placeholder values
            effect = _EFFECTS.get(op.code) or _effect(op)
            if effect[0]:
                pop_mark()
            if effect[1]:
                if len(stack) < effect[1]:
                    raise _Underflow
                del stack[len(stack) - effect[1] :]
            stack.extend(effect[2])
    problems.append("pickle ends without a STOP opcode")


_EFFECTS: dict[str, tuple[bool, int, tuple]] = {}


def _effect(op) -> tuple[bool, int, tuple]:
    """``(pops to a mark, items popped, items pushed)`` for an opcode, from pickletools' table."""
    before = op.stack_before
    if pickletools.markobject in before:
        effect = (True, len(before[: before.index(pickletools.markobject)]), ())
    else:
        effect = (False, len([x for x in before if x is not pickletools.stackslice]), ())
    effect = (effect[0], effect[1], tuple(_MARK if x is pickletools.markobject else _UNKNOWN for x in op.stack_after))
    _EFFECTS[op.code] = effect
    return effect


def walk_streams(data: bytes, start: int = 0, names: tuple[str, ...] = (), *, where: str = "pickle",
                 budget: OpBudget | None = None, max_streams: int = 64) -> list[PickleScan]:
    """Every pickle laid one after another from ``start`` (two pickles back to back, a legacy
    torch stream's five): walks on while each ends cleanly and bytes remain. ``names`` labels
    the first streams; later ones are ``<where> <n>``."""
    budget = budget or OpBudget()
    out: list[PickleScan] = []
    pos = start
    for n in range(max_streams):
        label = names[n] if n < len(names) else (where if n == 0 and not names else f"{where} {n + 1}")
        scan = walk_pickle(data, pos, label, budget)
        out.append(scan)
        if scan.problems or scan.end <= pos or scan.end >= len(data) or budget.left <= 0:
            break
        pos = scan.end
    return out


def is_plain_pickle(data: bytes) -> bool:
    """Whether ``data`` reads as a pickle of any protocol (0 and 1 have no header): it has a PROTO
    header, or its first stream names a global or ends at a STOP."""
    if looks_like_pickle(bytes(data[:2])):
        return True
    first = walk_pickle(bytes(data[: 1 << 20]), 0, budget=OpBudget(100_000))
    return bool(first.globals) or (first.end > 1 and not first.problems)


def plain_pickle_error(data: bytes | memoryview, path: str, limit: int = 64 * 1024 * 1024) -> Exception | None:
    """The error the reader raises for a file that is a plain pickle of any protocol (never
    unpickled: it is not a torch file): :class:`UnsafeFileError` naming the refused globals of every
    stream in it (rule ``global``), else :class:`BrokenFileError`; None when it is no pickle."""
    from ..errors import BrokenFileError
    from .rules import refuse

    head = bytes(data[:limit])  # scans at most the first 64 MB
    if not is_plain_pickle(head):
        return None
    scans = walk_streams(head)
    refused = list(dict.fromkeys(n for scan in scans for n in scan.refused))
    if refused:
        return refuse("global", f"is a plain pickle that asks for {', '.join(refused[:5])} (not on embkit's allow-list); nothing was executed", path)
    frames = [scan for scan in scans if scan.rules]
    if frames:
        return refuse(frames[0].rules[0], f"is a plain pickle whose opcodes run across a frame's end ({frames[0].problems[0]})", path)
    return BrokenFileError("is a plain pickle, not a torch file; embkit does not unpickle it", path=path)


def hidden_globals(data: bytes, where: str) -> PickleScan:
    """GLOBAL/INST opcodes found by pattern in bytes no walk can parse (a member another parser
    reads differently): used only to name what such bytes would import."""
    found: dict[str, GlobalRef] = {}
    for m in _GLOBAL_BYTES.finditer(data):
        module, attr = m.group(1).decode(), m.group(2).decode()
        name = f"{module}.{attr}"
        if name not in found and len(found) < MAX_GLOBAL_REFS:
            found[name] = GlobalRef(name, "GLOBAL (pattern)", m.start(), is_allowed(module, attr))
    return PickleScan(where, tuple(found.values()))


__all__ = ["GlobalRef", "PickleScan", "OpBudget", "walk_pickle", "walk_streams", "is_plain_pickle", "looks_like_pickle", "plain_pickle_error",
           "is_allowed", "hidden_globals", "MAX_SCAN_OPS"]

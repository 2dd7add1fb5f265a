"""A fast path for the small protocol-2 pickles torch writes (``data.pkl`` of an embedding).

:func:`load` interprets only the opcodes such pickles use (about a dozen kinds, 40 to 100 opcodes
per file), straight from the bytes, with the same meaning :mod:`pickle`'s own machine gives them.
Globals and persistent ids go through the caller's allow-list functions, exactly as in the full
unpickler, so this path can build nothing the full one cannot.

Anything else (another opcode, a truncated or inconsistent stream, any error at all, a refused
global included) makes it return ``None``, and the caller runs the full allow-list unpickler, which
then gives its usual answer or error message. So the fast path changes speed only: it never
accepts what the full one refuses, and never reports an error of its own. On an A1111 file's
``data.pkl`` (70 opcodes) it takes 15 µs where :class:`pickle._Unpickler` takes 26 µs: no stream
reads and no method call per opcode.
"""

from __future__ import annotations

from struct import unpack_from
from typing import Any, Callable

#: Longest GLOBAL line looked at (module or name); real ones are under 40 bytes.
_MAX_LINE = 256


def load(
    data: bytes,
    find_global: Callable[[str, str], Any],
    persistent_load: Callable[[Any], Any],
    max_tuple_depth: int,
    max_tuple_size: int,
    depths: dict | None = None,
) -> tuple[Any, int] | None:
    """Unpickle ``data``: ``(object, offset just past STOP)``, or ``None`` to say "use the full
    unpickler" (see the module docstring). Tuples past the limits of :func:`tuple_too_big` also
    send it there, where they are refused (hashing them overflows the C stack or never ends), and
    so does a tuple used as a dict key (the full unpickler charges its hashing). ``depths``: the
    table of nested tuples, shared with the caller's call budget."""
    try:
        return _run(data, find_global, persistent_load, max_tuple_depth, max_tuple_size, {} if depths is None else depths)
    except Exception:  # any problem: the full unpickler decides, with its own message
        return None


def tuple_too_big(t: tuple, table: dict[int, tuple[int, int, tuple]], max_depth: int, max_size: int) -> bool:
    """Whether ``t`` nests tuples deeper than ``max_depth`` or holds more than ``max_size``
    elements counted through its nested tuples, a shared tuple once per place (what hashing or
    printing it walks: ``t = (t, t)`` thirty times is 2**30). Measured from what is recorded for
    the tuples it holds; a tuple holding tuples is recorded with a reference, so ids are not reused
    while the table lives, and a tuple not in the table is flat. Both unpicklers keep such a table."""
    depth, size = 1, len(t)
    for x in t:
        if type(x) is tuple:
            seen = table.get(id(x))
            d, n = (seen[0], seen[1]) if seen is not None else (1, len(x))
            if d >= depth:
                depth = d + 1
            size += n
    if depth > 1:
        table[id(t)] = (depth, size, t)
    return depth > max_depth or size > max_size


def _run(data: bytes, find_global, persistent_load, max_depth: int, max_size: int, depths: dict) -> tuple[Any, int] | None:
    # Opcodes are literal numbers (pickle's names beside them): a constant compares faster than a
    # global, and this loop runs once per opcode.
    n = len(data)
    stack: list = []
    metastack: list = []
    memo: dict = {}
    i = 0
    while i < n:
        op = data[i]
        i += 1
        if op == 0x71:  # BINPUT
            memo[data[i]] = stack[-1]
            i += 1
        elif op == 0x58:  # BINUNICODE
            (size,) = unpack_from("<I", data, i)
            i += 4
            end = i + size
            if end > n:
                return None
            stack.append(data[i:end].decode("utf-8", "surrogatepass"))
            i = end
        elif op == 0x4B:  # BININT1
            stack.append(data[i])
            i += 1
        elif op == 0x4D:  # BININT2
            stack.append(data[i] | data[i + 1] << 8)
            i += 2
        elif op == 0x28:  # MARK
            metastack.append(stack)
            stack = []
        # tuples: the depth table is consulted only for a tuple holding a tuple (rare)
        elif op == 0x74:  # TUPLE
            items = stack
            stack = metastack.pop()
            t = tuple(items)
            stack.append(t)
            for x in t:
                if type(x) is tuple:
                    if tuple_too_big(t, depths, max_depth, max_size):
                        return None
                    break
        elif op == 0x86:  # TUPLE2
            b = stack.pop()
            a = stack[-1]
            stack[-1] = t = (a, b)
            if (type(a) is tuple or type(b) is tuple) and tuple_too_big(t, depths, max_depth, max_size):
                return None
        elif op == 0x85:  # TUPLE1
            a = stack[-1]
            stack[-1] = t = (a,)
            if type(a) is tuple and tuple_too_big(t, depths, max_depth, max_size):
                return None
        elif op == 0x87:  # TUPLE3
            c = stack.pop()
            b = stack.pop()
            a = stack[-1]
            stack[-1] = t = (a, b, c)
            if (type(a) is tuple or type(b) is tuple or type(c) is tuple) and tuple_too_big(t, depths, max_depth, max_size):
                return None
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
        elif op == 0x7D:  # EMPTY_DICT
            stack.append({})
        elif op == 0x63:  # GLOBAL
            nl = data.index(b"\n", i, i + _MAX_LINE)
            module = data[i:nl].decode("utf-8")
            i = nl + 1
            nl = data.index(b"\n", i, i + _MAX_LINE)
            name = data[i:nl].decode("utf-8")
            i = nl + 1
            stack.append(find_global(module, name))
        elif op == 0x52:  # REDUCE
            args = stack.pop()
            stack[-1] = stack[-1](*args)
        elif op == 0x51:  # BINPERSID
            stack[-1] = persistent_load(stack[-1])
        elif op == 0x73:  # SETITEM
            value = stack.pop()
            key = stack.pop()
            if type(key) is tuple:
                return None
            stack[-1][key] = value
        elif op == 0x75:  # SETITEMS
            items = stack
            stack = metastack.pop()
            target = stack[-1]
            for k in range(0, len(items), 2):
                if type(items[k]) is tuple:
                    return None
                target[items[k]] = items[k + 1]
        elif op == 0x68:  # BINGET
            stack.append(memo[data[i]])
            i += 1
        elif op == 0x6A:  # LONG_BINGET
            (idx,) = unpack_from("<I", data, i)
            stack.append(memo[idx])
            i += 4
        elif op == 0x72:  # LONG_BINPUT
            (idx,) = unpack_from("<I", data, i)
            memo[idx] = stack[-1]
            i += 4
        elif op == 0x4A:  # BININT
            (value,) = unpack_from("<i", data, i)
            stack.append(value)
            i += 4
        elif op == 0x8A:  # LONG1
            size = data[i]
            end = i + 1 + size
            if end > n:
                return None
            stack.append(int.from_bytes(data[i + 1 : end], "little", signed=True))
            i = end
        elif op == 0x89:  # NEWFALSE
            stack.append(False)
        elif op == 0x88:  # NEWTRUE
            stack.append(True)
        elif op == 0x4E:  # NONE
            stack.append(None)
        elif op == 0x5D:  # EMPTY_LIST
            stack.append([])
        elif op == 0x61:  # APPEND
            value = stack.pop()
            target = stack[-1]
            if type(target) is not list:
                return None  # pickle would call an ``append`` attribute: the full unpickler's job
            target.append(value)
        elif op == 0x65:  # APPENDS
            items = stack
            stack = metastack.pop()
            target = stack[-1]
            if type(target) is not list:
                return None
            target.extend(items)
        elif op == 0x47:  # BINFLOAT
            (value,) = unpack_from(">d", data, i)
            stack.append(value)
            i += 8
        elif op == 0x80:  # PROTO
            if not 0 <= data[i] <= 5:
                return None
            i += 1
        elif op == 0x2E:  # STOP
            return stack.pop(), i
        else:
            return None
    return None  # ran off the end without STOP

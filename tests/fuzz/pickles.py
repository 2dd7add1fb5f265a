"""Hand-assembled pickle opcodes and torch containers, for hostile-file tests and fuzz seeds.

Nothing here imports torch or unpickles anything: every byte is written by hand, so a test file can
hold exactly the opcode sequence an attacker would use (``torch.save`` could never produce them).
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

#: torch's legacy magic number, pickled with protocol 2 (what ``torch.save(..., legacy)`` writes first).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")

MARK, STOP, TUPLE, REDUCE, BUILD, POP = b"(", b".", b"t", b"R", b"b", b"0"
EMPTY_DICT, EMPTY_TUPLE, EMPTY_LIST, SETITEMS, APPENDS = b"}", b")", b"]", b"u", b"e"
NEWFALSE, NONE, STACK_GLOBAL, NEWOBJ, NEWOBJ_EX, OBJ = b"\x89", b"N", b"\x93", b"\x81", b"\x92", b"o"
BINPERSID, MEMOIZE = b"Q", b"\x94"


def proto(n: int = 2) -> bytes:
    return b"\x80" + bytes([n])


def s(text: str) -> bytes:
    """BINUNICODE: a str with a 4-byte length."""
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(value: int) -> bytes:
    """BININT: a signed 4-byte int (LONG1, any size, past 32 bits)."""
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def g(module: str, name: str) -> bytes:
    """GLOBAL: ``c<module>\\n<name>\\n`` (protocol 0-3)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL: two strings on the stack (protocol 4+)."""
    return s(module) + s(name) + STACK_GLOBAL


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def call(fn: bytes, *args: bytes) -> bytes:
    """``fn(*args)`` through REDUCE."""
    return fn + tup(*args) + REDUCE


def dict_(*pairs: tuple[bytes, bytes]) -> bytes:
    return EMPTY_DICT + (MARK + b"".join(k + v for k, v in pairs) + SETITEMS if pairs else b"")


def binput(n: int) -> bytes:
    return b"q" + bytes([n])


def binget(n: int) -> bytes:
    return b"h" + bytes([n])


def pickle_of(body: bytes, protocol: int = 2) -> bytes:
    """A whole pickle: protocol header, ``body`` (which leaves one object), STOP."""
    return proto(protocol) + body + STOP


# -- the pieces of a real tensor file -----------------------------------------------------------


def storage(key: str = "0", numel: int = 768, stype: bytes | None = None, legacy: bool = False) -> bytes:
    """A storage by persistent id: ``('storage', torch.FloatStorage, key, 'cpu', numel)``."""
    stype = g("torch", "FloatStorage") if stype is None else stype
    return tup(s("storage"), stype, s(key), s("cpu"), i(numel), *([NONE] if legacy else [])) + BINPERSID


def tensor(st: bytes | None = None, shape=(1, 768), stride=(768, 1), offset: int = 0, hooks: bytes | None = None) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    st = storage() if st is None else st
    hooks = call(g("collections", "OrderedDict")) if hooks is None else hooks
    return call(g("torch._utils", "_rebuild_tensor_v2"), st, i(offset), tup(*map(i, shape)), tup(*map(i, stride)), NEWFALSE, hooks)


def kohya_body(value: bytes | None = None) -> bytes:
    """``{'emb_params': <tensor>}``: the smallest real embedding."""
    return dict_((s("emb_params"), tensor() if value is None else value))


def zeros(numel: int = 768, itemsize: int = 4) -> bytes:
    return bytes(numel * itemsize)


def torch_zip(pkl: bytes, *, root: str = "archive", storages: dict[str, bytes] | None = None, extra=(), compress: int = zipfile.ZIP_STORED) -> bytes:
    """A torch zip archive as ``torch.save`` lays it out; ``extra`` adds ``(name, bytes)`` members."""
    storages = {"0": zeros()} if storages is None else storages
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of some tests
        with zipfile.ZipFile(buf, "w", compress) as zf:
            zf.writestr(f"{root}/data.pkl", pkl)
            zf.writestr(f"{root}/byteorder", b"little")
            for key, data in storages.items():
                zf.writestr(f"{root}/data/{key}", data)
            zf.writestr(f"{root}/version", b"3\n")
            for name, data in extra:
                zf.writestr(name, data)
    return buf.getvalue()


def legacy_stream(obj_pkl: bytes, *, keys=("0",), storages: dict[str, bytes] | None = None, protocol_pkl: bytes | None = None,
                  sys_pkl: bytes | None = None, keys_pkl: bytes | None = None) -> bytes:
    """A pre-1.6 torch file: magic, protocol, sys info, object and key-list pickles, then storages."""
    storages = {"0": zeros()} if storages is None else storages
    out = LEGACY_PREFIX + STOP
    out += protocol_pkl if protocol_pkl is not None else pickle_of(i(1001))
    out += sys_pkl if sys_pkl is not None else pickle_of(EMPTY_DICT)
    out += obj_pkl
    out += keys_pkl if keys_pkl is not None else pickle_of(EMPTY_LIST + MARK + b"".join(s(k) for k in keys) + APPENDS)
    for key in keys:
        data = storages.get(key, b"")
        out += struct.pack("<q", len(data) // 4) + data
    return out


def benign_zip() -> bytes:
    """A valid kohya-layout torch zip with one 1x768 fp32 tensor (all zeros)."""
    return torch_zip(pickle_of(kohya_body()))


def benign_legacy() -> bytes:
    """The same embedding in the legacy (pre-zip) form."""
    return legacy_stream(pickle_of(kohya_body(tensor(storage(legacy=True)))))

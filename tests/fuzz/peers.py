"""Payload shapes from the peer scanners' own test suites, built byte by byte.

picklescan (mmaitre314/picklescan ``tests/init_data_files.py``), modelscan (protectai/modelscan
``tests/test_modelscan.py``) and fickling (trailofbits/fickling ``test/test_bypasses.py``) each keep
a corpus of malicious pickles; the shapes below follow them (see /work/research/hostile.md §1.3,
§2, §3): every dangerous module of their lists, every opcode route (GLOBAL, STACK_GLOBAL fed by
memo or STRING opcodes, INST, OBJ, OBJ then POP, nested ``pickle.loads``), every protocol (0 to
5), several pickles in one file, numpy object arrays, zip members under any name, dotted names
through innocent modules, FRAME boundaries. Each payload would only create ``canary`` (or does
nothing harmful at all); ``refused`` is a global the scan must name.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import Callable

from .pickles import BUILD, EMPTY_DICT, MARK, MEMOIZE, NONE, OBJ, POP, REDUCE, STACK_GLOBAL, binget, binput, call, g, kohya_body, pickle_of, s, sg, torch_zip, tup


@dataclass(frozen=True)
class Peer:
    id: str
    filename: str
    build: Callable[[str], bytes]
    refused: str  # a global the scan must report as refused


PEERS: list[Peer] = []


def peer(id: str, refused: str, filename: str = "model.pt"):
    def register(fn):
        PEERS.append(Peer(id, filename, fn, refused))
        return fn

    return register


def sh(c: str) -> bytes:
    return s(f"touch {c}")


def p0(module: str, name: str, arg: str) -> bytes:
    """A protocol-0 pickle (text opcodes, no PROTO header): ``module.name(arg)``."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n(V" + arg.encode() + b"\ntR."


# -- picklescan's basic payloads, protocols 0 to 5 ---------------------------------------------------
for _proto in (0, 1, 2, 3, 4, 5):
    def _build(c, _p=_proto):
        if _p == 0:
            return p0("posix" if False else "os", "system", f"touch {c}")
        if _p == 1:
            return g("os", "system") + b"(" + sh(c) + b"tR."
        if _p >= 4:
            return pickle_of(sg("os", "system") + MEMOIZE + tup(sh(c)) + REDUCE, _p)
        return pickle_of(call(g("os", "system"), sh(c)), _p)

    PEERS.append(Peer(f"os.system protocol {_proto}", "model.pt", _build, "os.system"))


for _mod, _name, _file in (
    ("builtins", "eval", "eval.pkl"), ("__builtin__", "exec", "model.bin"), ("subprocess", "run", "model.pth"),
    ("subprocess", "Popen", "x.ckpt"), ("pip", "main", "model.pt"), ("pty", "spawn", "model.pt"),
    ("socket", "create_connection", "model.pt"), ("requests.api", "get", "model.pt"), ("aiohttp.client", "ClientSession", "model.pt"),
    ("http.client", "HTTPSConnection", "model.pt"), ("sys", "exit", "model.pt"), ("runpy", "_run_code", "model.pt"),
    ("bdb", "Bdb.run", "model.pt"), ("timeit", "timeit", "model.pt"), ("venv", "create", "model.pt"),
    ("pydoc", "pipepager", "model.pt"), ("functools", "partial", "model.pt"), ("numpy.testing._private.utils", "runstring", "model.pt"),
    ("cProfile", "run", "model.pt"), ("profile", "run", "model.pt"), ("trace", "Trace.run", "model.pt"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcode", "model.pt"), ("lib2to3.pgen2.pgen", "ParserGenerator.make_label", "model.pt"),
    ("doctest", "debug_script", "model.pt"), ("ensurepip", "_run_pip", "model.pt"),
    ("asyncio.unix_events", "_UnixSubprocessTransport._start", "model.pt"), ("distutils.file_util", "write_file", "model.pt"),
    ("ctypes", "CDLL", "model.pt"), ("pydoc", "locate", "model.pt"), ("operator", "methodcaller", "model.pt"),
    ("_operator", "attrgetter", "model.pt"), ("numpy.f2py.crackfortran", "getlincoef", "model.pt"), ("uuid", "_get_command_stdout", "model.pt"),
    ("_osx_support", "_read_output", "model.pt"), ("_aix_support", "_read_cmd_output", "model.pt"), ("imaplib", "IMAP4_stream", "model.pt"),
    ("io", "FileIO", "model.pt"), ("_io", "FileIO", "model.pt"), ("urllib.request", "urlopen", "model.pt"), ("types", "CodeType", "model.pt"),
    ("cloudpickle.cloudpickle", "subimport", "model.pt"), ("pkgutil", "resolve_name", "model.pt"), ("logging", "FileHandler", "model.pt"),
    ("webbrowser", "open", "model.pt"), ("shutil", "rmtree", "model.pt"), ("marshal", "loads", "model.pt"),
    ("_interpreters", "create", "model.pt"), ("multiprocessing.util", "spawnv_passfds", "model.pt"),
    ("torch._inductor.codecache", "compile_file", "model.pt"), ("torch.serialization", "load", "model.pt"),
    ("torch.utils.collect_env", "run", "model.pt"), ("torch.jit.unsupported_tensor_ops", "execWrapper", "model.pt"),
):
    PEERS.append(Peer(f"{_mod}.{_name}", _file, lambda c, m=_mod, n=_name: pickle_of(call(g(m, n), sh(c))), f"{_mod}.{_name}"))


# -- opcode routes and memo tricks -------------------------------------------------------------------


@peer("two pickles back to back (malicious6)", "requests.api.get")
def _(c):
    return pickle_of(b"]") + pickle_of(call(g("requests.api", "get"), s("http://127.0.0.1:9/")))


@peer("nested pickle.loads", "pickle.loads")
def _(c):
    inner = pickle_of(call(g("os", "system"), sh(c)))
    return pickle_of(call(g("pickle", "loads"), b"C" + bytes([len(inner)]) + inner), 3)


@peer("INST (malicious10)", "os.system")
def _(c):
    return b"(" + sh(c) + b"ios\nsystem\n."


@peer("memo index confusion (malicious11)", "os.system")
def _(c):
    body = s("torch") + binput(1) + s("LongStorage") + binput(0) + POP + POP + s("os") + binput(0) + s("system") + binput(1) + POP + POP
    return pickle_of(body + binget(0) + binget(1) + STACK_GLOBAL + tup(sh(c)) + REDUCE, 4)


@peer("memo key never set (keyerror exploit)", "<computed>")
def _(c):
    return pickle_of(s("os") + binput(0) + POP + binget(0) + binget(3) + STACK_GLOBAL + tup(sh(c)) + REDUCE, 4)


@peer("integer in the memo fed to STACK_GLOBAL (type confusion)", "<computed>")
def _(c):
    return pickle_of(b"K\x05" + binput(0) + POP + s("os") + binget(0) + STACK_GLOBAL + tup(sh(c)) + REDUCE, 4)


@peer("STACK_GLOBAL fed by STRING opcodes", "os.system")
def _(c):
    return pickle_of(b"S'os'\nS'system'\n" + STACK_GLOBAL + tup(sh(c)) + REDUCE, 4)


@peer("broken pickle after its global", "os.system")
def _(c):
    return b"\x80\x02" + g("os", "system") + b"\xff\xff"


@peer("dotted name eval.__call__ (modelscan malicious13)", "builtins.eval.__call__")
def _(c):
    return pickle_of(call(g("builtins", "eval.__call__"), s("1")))


@peer("dotted name through pathlib (GHSA-5j3x-jp52-966f)", "pathlib.os.system")
def _(c):
    return pickle_of(call(g("pathlib", "os.system"), sh(c)))


@peer("pty.spawn through a framed, memoised STACK_GLOBAL (fickling)", "pty.spawn")
def _(c):
    inner = s("pty") + MEMOIZE + s("spawn") + MEMOIZE + STACK_GLOBAL + MEMOIZE + tup(s("true")) + REDUCE
    return b"\x80\x04\x95" + struct.pack("<Q", len(inner) + 1) + inner + b"."


@peer("MARK GLOBAL OBJ (fickling)", "pty.spawn")
def _(c):
    return pickle_of(MARK + g("pty", "spawn") + s("true") + OBJ)


@peer("OBJ then POP: the call's result discarded (GHSA-mxhj-88fx-4pcv)", "os.system")
def _(c):
    return pickle_of(MARK + g("os", "system") + sh(c) + OBJ + POP + EMPTY_DICT)


@peer("__import__ and getattr through PUT/GET (fickling)", "builtins.__import__")
def _(c):
    imp = call(g("builtins", "__import__"), s("os")) + binput(0)
    return pickle_of(imp + POP + call(call(g("builtins", "getattr"), binget(0), s("system")), sh(c)))


@peer("marshal.loads and FunctionType (fickling)", "types.FunctionType")
def _(c):
    return pickle_of(call(g("types", "FunctionType"), call(g("marshal", "loads"), b"C\x01\xe3"), EMPTY_DICT))


@peer("BUILD with a __setstate__ global", "os.system")
def _(c):
    return pickle_of(EMPTY_DICT + tup(NONE, b"}" + s("__setstate__") + g("os", "system") + b"s") + BUILD)


@peer("magic number computed by a call (picklescan legacy magic bypass)", "builtins.int")
def _(c):
    magic = pickle_of(call(g("builtins", "int"), s("0x1950a86a20f9469cfc6c"), b"K\x10"))
    return magic + pickle_of(b"M\xe9\x03") + pickle_of(b"}") + pickle_of(call(g("os", "system"), sh(c)))


# -- frame boundaries (fickling's straddle variants) ---------------------------------------------------


def _framed(body: bytes, declared: int) -> bytes:
    return b"\x80\x05\x95" + struct.pack("<Q", declared) + body + b"."


for _name, _body, _len in (
    ("BINBYTES", b"B" + struct.pack("<I", 20) + b"A" * 20, 5),
    ("SHORT_BINUNICODE", b"\x8c\x14" + b"A" * 20, 3),
    ("GLOBAL module", b"cmacos\nsystem\n", 4),
    ("GLOBAL attr", b"cos\nsystem\n", 7),
    ("UNICODE", b"Vhello world\n", 5),
    ("BININT", b"J" + struct.pack("<i", 7), 2),
):
    PEERS.append(Peer(f"frame straddled by {_name}", "model.pt", lambda c, b=_body, n=_len: _framed(b, n), ""))


# -- containers: numpy, zips with pickles under any name ----------------------------------------------


def npy_object_array(payload: bytes) -> bytes:
    """An ``.npy`` file holding an object array: the header, then a pickle (what numpy.save writes)."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@peer("numpy object array (.npy)", "os.system", "array.npy")
def _(c):
    return npy_object_array(pickle_of(call(g("os", "system"), sh(c)), 3))


@peer("numpy object array in an .npz", "subprocess.run", "arrays.npz")
def _(c):
    return zip_of({"a.npy": npy_object_array(pickle_of(call(g("subprocess", "run"), sh(c)), 3))})


@peer("zip member with a non-pickle extension (data.txt)", "os.system", "bundle.zip")
def _(c):
    return zip_of({"model/data.txt": pickle_of(call(g("os", "system"), sh(c)))})


@peer("zip member model/config.pkl (picklescan's committed samples)", "os.system", "model.zip")
def _(c):
    return zip_of({"model/config.pkl": pickle_of(call(g("os", "system"), sh(c)))})


@peer("protocol-0 pickle in a zip member without extension", "os.system", "bundle.zip")
def _(c):
    return zip_of({"archive/blob": p0("os", "system", f"touch {c}")})


@peer("canary in a torch zip's version record", "os.system")
def _(c):
    return torch_zip(pickle_of(kohya_body()), extra=[("archive/.format_version", pickle_of(call(g("os", "system"), sh(c))))])


__all__ = ["PEERS", "Peer", "npy_object_array", "zip_of"]

"""The malicious-file suite: real files whose pickles try to run code, each built by hand.

Every payload, if it ever ran, would create the file ``canary.created`` and/or delete the file
``canary.keep`` (both in the test's tmp folder): tests assert the first never appears and the second
is untouched. ``expect`` is the error code embkit must answer with (``unsafe-file`` for all but one; ``broken-file`` for the
extension-registry opcode, which no torch file uses and the empty registry cannot resolve).

Sources of the "published bypass" cases: picklescan issues #14 (memo confusion) and #22 (memo
argument ignored), modelscan #85 (BUILD + dotted global names), picklescan GHSA-vvpj-8cmc-gx39
(``pkgutil.resolve_name``), picklescan PR #74 (``importlib``/``marshal``), JFrog's 2025 picklescan
zero-days (extension, ZIP CRC and submodule bypasses), fickling's "POPped call vanishes" report.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from .pickles import (
    BUILD, EMPTY_DICT, EMPTY_TUPLE, MARK, MEMOIZE, NEWOBJ, NEWOBJ_EX, NONE, OBJ, POP, REDUCE, STACK_GLOBAL,
    binget, binput, call, dict_, g, i, kohya_body, legacy_stream, pickle_of, proto, s, sg, storage, tensor,
    torch_zip, tup, zeros,
)


@dataclass(frozen=True)
class Canary:
    created: str  # must never exist
    keep: str  # must keep its content "keep"

    def sh(self) -> str:
        return f"touch {self.created}; rm -f {self.keep}"

    def py(self) -> str:
        return f"open({self.created!r}, 'w').write('pwned'); __import__('os').remove({self.keep!r})"


@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    build: Callable[[Canary], bytes]
    expect: str = "unsafe-file"


CASES: list[Case] = []


def case(id: str, filename: str = "evil.pt", expect: str = "unsafe-file"):
    def register(fn):
        CASES.append(Case(id, filename, fn, expect))
        return fn

    return register


def z(body: bytes, protocol: int = 2, **kw) -> bytes:
    """A torch zip whose data.pkl is ``body`` (wrapped in protocol header and STOP)."""
    return torch_zip(pickle_of(body, protocol), **kw)


def in_dict(value: bytes) -> bytes:
    """Hide a payload as a metadata value beside a real tensor."""
    return dict_((s("emb_params"), tensor()), (s("name"), value))


# -- the classic payloads, one per opcode route -----------------------------------------------


@case("posix.system GLOBAL+REDUCE")
def _(c):
    return z(call(g("posix", "system"), s(c.sh())))


@case("os.system GLOBAL+REDUCE in metadata")
def _(c):
    return z(in_dict(call(g("os", "system"), s(c.sh()))))


@case("os.system STACK_GLOBAL protocol 4", "evil.bin")
def _(c):
    return z(sg("os", "system") + MEMOIZE + tup(s(c.sh())) + REDUCE, protocol=4)


@case("os.system INST (protocol 0)")
def _(c):
    return z(MARK + s(c.sh()) + b"ios\nsystem\n", protocol=2)


@case("os.system OBJ")
def _(c):
    return z(MARK + g("os", "system") + s(c.sh()) + OBJ)


@case("subprocess.Popen NEWOBJ")
def _(c):
    return z(g("subprocess", "Popen") + tup(tup(s("sh"), s("-c"), s(c.sh()))) + NEWOBJ)


@case("subprocess.check_output NEWOBJ_EX", "evil.ckpt")
def _(c):
    return z(sg("subprocess", "check_output") + tup(tup(s("sh"), s("-c"), s(c.sh()))) + EMPTY_DICT + NEWOBJ_EX, protocol=4)


@case("subprocess.call REDUCE")
def _(c):
    return z(call(g("subprocess", "call"), s(c.sh()), NEWFALSE_TRUE()))


def NEWFALSE_TRUE() -> bytes:
    return b"\x88"  # NEWTRUE: shell=True positional is wrong for call, but it never gets that far


@case("builtins.eval")
def _(c):
    return z(call(g("builtins", "eval"), s(c.py().replace("; ", " or "))))


@case("builtins.exec")
def _(c):
    return z(call(g("builtins", "exec"), s(c.py())))


@case("__builtin__.eval (Python 2 name)")
def _(c):
    return z(call(g("__builtin__", "eval"), s(f"open({c.created!r}, 'w')")))


@case("builtins.getattr(__import__('os'), 'system')")
def _(c):
    imp = call(g("builtins", "__import__"), s("os"))
    return z(call(call(g("builtins", "getattr"), imp, s("system")), s(c.sh())))


@case("builtins.__import__ STACK_GLOBAL")
def _(c):
    return z(sg("builtins", "__import__") + tup(s("os")) + REDUCE, protocol=4)


@case("runpy.run_path")
def _(c):
    return z(call(g("runpy", "run_path"), s(c.created + ".py")))


@case("runpy._run_code")
def _(c):
    return z(call(g("runpy", "_run_code"), s(c.py()), EMPTY_DICT))


@case("importlib.import_module then getattr")
def _(c):
    mod = call(g("importlib", "import_module"), s("os"))
    return z(call(call(g("builtins", "getattr"), mod, s("system")), s(c.sh())))


@case("shutil.rmtree")
def _(c):
    return z(call(g("shutil", "rmtree"), s(c.keep)))


@case("os.remove in a nested list")
def _(c):
    return z(dict_((s("emb_params"), tensor()), (s("x"), b"]" + MARK + call(g("os", "remove"), s(c.keep)) + b"e")))


@case("webbrowser.open")
def _(c):
    return z(call(g("webbrowser", "open"), s("file://" + c.created)))


@case("pkgutil.resolve_name universal bypass")
def _(c):
    fn = call(g("pkgutil", "resolve_name"), s("os:system"))
    return z(call(fn, s(c.sh())))


@case("marshal.loads code object")
def _(c):
    return z(call(g("types", "FunctionType"), call(g("marshal", "loads"), b"C" + bytes([4]) + b"\xe3\x00\x00\x00"), EMPTY_DICT))


@case("asyncio submodule (blocklist prefix bypass)")
def _(c):
    return z(call(g("asyncio.unix_events", "_UnixSubprocessTransport"), s(c.sh())))


@case("BUILD __setstate__ = os.system on an OrderedDict")
def _(c):
    od = call(g("collections", "OrderedDict"))
    state = tup(NONE, dict_((s("__setstate__"), g("os", "system"))))
    return z(od + state + BUILD + s(c.sh()) + BUILD)


# -- published scanner bypasses -----------------------------------------------------------------


@case("memo confusion PUT/MEMOIZE (picklescan #14)")
def _(c):
    body = s("os") + binput(0) + s("system") + binput(1) + POP + POP
    body += s("torch._utils") + MEMOIZE + s("_rebuild_tensor_v2") + MEMOIZE + POP + POP
    body += binget(0) + binget(1) + STACK_GLOBAL + tup(s(c.sh())) + REDUCE
    return z(body, protocol=4)


@case("BUILD on an allowed global then a dotted name (modelscan #85)")
def _(c):
    target = g("torch._utils", "_rebuild_tensor_v2")
    body = target + tup(NONE, dict_((s("a"), s("os")), (s("b"), s("system")))) + BUILD + POP
    body += g("torch._utils", "_rebuild_tensor_v2.a") + binput(0) + g("torch._utils", "_rebuild_tensor_v2.b") + binput(1) + POP + POP
    body += binget(0) + binget(1) + STACK_GLOBAL + tup(s(c.sh())) + REDUCE
    return z(body, protocol=4)


@case("call result POPped away (fickling)")
def _(c):
    return z(call(g("posix", "system"), s(c.sh())) + POP + kohya_body())


@case("payload in a .bin that is a plain pickle (extension bypass)", "pytorch_model.bin")
def _(c):
    return pickle_of(call(g("os", "system"), s(c.sh())))


@case("plain protocol-4 pickle named .pt", "plain.pt")
def _(c):
    return pickle_of(sg("builtins", "exec") + tup(s(c.py())) + REDUCE, protocol=4)


@case("zip member with a bad CRC (JFrog picklescan bypass)")
def _(c):
    data = bytearray(z(call(g("os", "system"), s(c.sh()))))
    # the local header's CRC of the first member (data.pkl) sits at offset 14
    data[14:18] = b"\xde\xad\xbe\xef"
    first_cd = data.find(b"PK\x01\x02")  # ... and the central directory's at +16
    data[first_cd + 16 : first_cd + 20] = b"\xde\xad\xbe\xef"
    return bytes(data)


# -- payloads behind allowed names --------------------------------------------------------------


@case("_rebuild_tensor_v2 given a string instead of a storage")
def _(c):
    return z(kohya_body(tensor(st=s(c.sh()))))


@case("_rebuild_tensor_v2 given backward hooks")
def _(c):
    hooks = call(g("collections", "OrderedDict"), b"]" + MARK + tup(i(0), g("posix", "system")) + b"e")
    return z(kohya_body(tensor(hooks=hooks)))


@case("_rebuild_tensor_v2 given non-empty hooks of allowed objects")
def _(c):
    hooks = call(g("collections", "OrderedDict"), b"]" + MARK + tup(i(0), g("collections", "OrderedDict")) + b"e")
    return z(kohya_body(tensor(hooks=hooks)))


@case("_rebuild_tensor_v2 reaching past its storage")
def _(c):
    return z(kohya_body(tensor(shape=(4, 768))))


@case("OrderedDict given odd arguments")
def _(c):
    return z(in_dict(call(g("collections", "OrderedDict"), s("a"), s("b"), s("c"))))


@case("copyreg._reconstructor misused for OrderedDict")
def _(c):
    return z(in_dict(call(g("copyreg", "_reconstructor"), g("collections", "OrderedDict"), g("builtins", "object"), NONE)))


@case("copyreg._reconstructor of os.system")
def _(c):
    return z(in_dict(call(g("copyreg", "_reconstructor"), g("os", "system"), g("builtins", "object"), s(c.sh()))))


@case("_rebuild_from_type_v2 with OrderedDict as the function")
def _(c):
    fn = g("torch._tensor", "_rebuild_from_type_v2")
    return z(in_dict(call(fn, g("collections", "OrderedDict"), g("torch.nn.parameter", "Parameter"), EMPTY_TUPLE, NONE)))


@case("_rebuild_parameter given a dict")
def _(c):
    return z(kohya_body(call(g("torch._utils", "_rebuild_parameter"), EMPTY_DICT, NEWFALSE_TRUE(), NONE)))


@case("ParameterDict BUILD with a tuple state")
def _(c):
    pd = g("torch.nn.modules.container", "ParameterDict") + EMPTY_TUPLE + NEWOBJ
    state = tup(EMPTY_DICT, dict_((s("_parameters"), g("os", "system"))))
    return z(dict_((s("string_to_param"), pd + state + BUILD)))


@case("ParameterDict BUILD with a list state")
def _(c):
    pd = g("torch.nn.modules.container", "ParameterDict") + EMPTY_TUPLE + NEWOBJ
    return z(dict_((s("string_to_param"), pd + b"]" + BUILD)))


@case("BUILD overwrites an allow-listed storage type")
def _(c):
    poisoned = g("torch", "FloatStorage") + tup(NONE, dict_((s("dtype"), s("object")))) + BUILD + POP
    return z(poisoned + kohya_body())


@case("BUILD sets attributes on an allow-listed function")
def _(c):
    body = g("torch._utils", "_rebuild_tensor_v2") + dict_((s("__kwdefaults__"), dict_((s("requires_grad"), NONE)))) + BUILD + POP
    return z(body + kohya_body())


@case("BUILD on the allow-listed Parameter marker")
def _(c):
    return z(g("torch.nn.parameter", "Parameter") + tup(NONE, dict_((s("x"), i(1)))) + BUILD + POP + kohya_body())


@case("persistent id names a non-storage type")
def _(c):
    return z(kohya_body(tensor(st=storage(stype=g("collections", "OrderedDict")))))


@case("persistent id with a traversal storage key")
def _(c):
    return z(kohya_body(tensor(st=storage(key="../../../etc/passwd"))))


@case("persistent id is a string (PERSID)")
def _(c):
    return z(kohya_body(tensor(st=b"P" + c.sh().encode() + b"\n")))


@case("persistent id is an os.system call")
def _(c):
    return z(kohya_body(tensor(st=call(g("os", "system"), s(c.sh())) + b"Q")))


@case("memo GET of a refused global stored under an allowed name")
def _(c):
    body = g("collections", "OrderedDict") + binput(0) + POP + g("nt", "system") + binput(0) + POP
    return z(body + binget(0) + tup(s(c.sh())) + REDUCE)


# -- archive tricks -----------------------------------------------------------------------------


@case("two data.pkl, the second evil")
def _(c):
    evil = pickle_of(call(g("os", "system"), s(c.sh())))
    return z(kohya_body(), extra=[("other/data.pkl", evil)])


@case("duplicate data.pkl member name")
def _(c):
    evil = pickle_of(call(g("os", "system"), s(c.sh())))
    return z(kohya_body(), extra=[("archive/data.pkl", evil)])


@case("path-traversal member name")
def _(c):
    return z(kohya_body(), extra=[("../../evil.py", c.py().encode())])


@case("absolute member name")
def _(c):
    return z(kohya_body(), extra=[("/tmp/evil.pkl", b"x")])


@case("data.pkl declaring a huge size")
def _(c):
    data = bytearray(z(call(g("os", "system"), s(c.sh()))))
    off = data.find(b"PK\x01\x02")  # central directory entry of data.pkl: uncompressed size at +24
    data[off + 24 : off + 28] = struct.pack("<I", 0xFFFFFFF0)
    return bytes(data)


# -- legacy (pre-zip) streams -------------------------------------------------------------------


@case("legacy stream, payload in the object pickle")
def _(c):
    return legacy_stream(pickle_of(call(g("posix", "system"), s(c.sh()))))


@case("legacy stream, payload in the protocol pickle")
def _(c):
    return legacy_stream(pickle_of(kohya_body(tensor(storage(legacy=True)))), protocol_pkl=pickle_of(call(g("os", "system"), s(c.sh()))))


@case("legacy stream, payload in the sys-info pickle")
def _(c):
    return legacy_stream(pickle_of(kohya_body(tensor(storage(legacy=True)))), sys_pkl=pickle_of(call(g("builtins", "exec"), s(c.py()))))


@case("legacy stream, payload in the storage-key pickle")
def _(c):
    return legacy_stream(pickle_of(kohya_body(tensor(storage(legacy=True)))), keys_pkl=pickle_of(call(g("os", "system"), s(c.sh()))))


@case("extension-registry opcode EXT1", expect="broken-file")
def _(c):
    return z(b"\x82\x01" + tup(s(c.sh())) + REDUCE)



@case("BUILD rewrites a checked tensor's shape (out-of-bounds read)")
def _(c):
    t = tensor() + dict_((s("stride"), tup(i(0), i(1 << 22)))) + BUILD
    return z(kohya_body(t))


@case("BUILD rewrites a storage's element count")
def _(c):
    st = storage(numel=4) + dict_((s("numel"), i(1 << 24))) + BUILD
    return z(kohya_body(tensor(st=st)), storages={"0": zeros(4)})


CASE_IDS = [c.id for c in CASES]

"""Seeds and mutations for fuzzing embkit's readers, shared by the pytest run and long campaigns.

A *seed* is a real file (from the corpus, or generated here) plus, where it has one, an *inner*
payload and a function that rebuilds a valid container around a mutated inner payload: the pickle
inside a torch zip (so the CRC stays right and the unpickler, not zipfile, meets the damage), the
JSON header of a safetensors file, the JSON inside a PNG card's text chunk. Mutations are cheap
byte operations driven by a few integers, so hypothesis (or a plain RNG) only draws small tuples.

The oracle, :func:`check`: reading, probing and scanning a mutated file may raise embkit's own
errors and nothing else, must finish within :data:`HANG_SECONDS`, and ``scan`` must call the file
safe exactly when ``read_all`` accepts it. The ``zip`` mutation rewrites the fields of zip records
(offsets, sizes, counts, flags, name case), where zip parsers disagree.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import pickles as P

HANG_SECONDS = 10
KINDS = ("flip", "set", "interesting", "truncate", "insert", "delete", "duplicate", "shuffle", "json", "zip")
#: zip record signatures the "zip" mutation aims at (local, central, descriptor, zip64 end and
#: locator, end), and the size of each header whose fields it rewrites
_ZIP_RECORDS = ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46), (b"PK\x07\x08", 16), (b"PK\x06\x06", 56), (b"PK\x06\x07", 20), (b"PK\x05\x06", 22))
_ZIP_VALUES = (0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 8, 0x808, 0x20)
#: values the "json" mutation puts in place of a JSON value (a safetensors header, a card's JSON)
_JSON_VALUES = (None, True, -1, 0, 2**64, 1.5, "F32", "BF16", "I64", [], {}, [1, 2, 3], [[]], {"x": 1}, "x" * 40,
                [2**31, 2**31], [-1, 5], [0, 2**40], [768], [1, 768], [10**9], "TORCHTENSOR", [[0.5] * 3] * 2)
_INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\xff\xff\xff\x7f",
                b"\x00" * 8, b"\xff" * 8, b"\xff\xff\xff\xff\xff\xff\xff\x7f", b"(", b".", b"\x94", b"\x93", b"}", b"]",
                # pickle opcodes with a length or index behind them: BYTEARRAY8, BINBYTES8, BINUNICODE8, LONG_BINPUT, LONG4
                b"\x96\x00\x00\x00\x40", b"\x8e\x00\x00\x00\x40", b"\x8d\x00\x00\x00\x40", b"r\x00\x00\x00\x40", b"\x8b\x00\x00\x00\x40")


@dataclass(frozen=True)
class Seed:
    name: str
    ext: str
    data: bytes
    inner: bytes | None = None
    rebuild: Callable[[bytes], bytes] | None = None


def mutate(data: bytes, ops: list[tuple[str, int, int, int]]) -> bytes:
    """Apply ``(kind, a, b, c)`` operations; positions are taken modulo the current length."""
    buf = bytearray(data)
    for kind, a, b, c in ops:
        n = len(buf)
        if n == 0:
            buf = bytearray([c])
            continue
        pos = a % n
        if kind == "flip":
            buf[pos] ^= 1 << (c % 8)
        elif kind == "set":
            buf[pos] = c
        elif kind == "interesting":
            value = _INTERESTING[c % len(_INTERESTING)]
            buf[pos : pos + len(value)] = value
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            rng = random.Random(b)
            buf[pos:pos] = bytes(rng.getrandbits(8) for _ in range(1 + b % 16))
        elif kind == "delete":
            del buf[pos : pos + 1 + b % 64]
        elif kind == "duplicate":
            chunk = buf[pos : pos + 1 + b % 64]
            dest = c * 7919 % (n + 1)
            buf[dest:dest] = chunk
        elif kind == "json":
            buf = bytearray(_json_mutation(bytes(buf), a, b, c))
        elif kind == "zip":
            buf = bytearray(_zip_mutation(bytes(buf), a, b, c))
        elif kind == "shuffle":
            k = 2 + c % 6
            size = max(1, n // k)
            chunks = [buf[j : j + size] for j in range(0, n, size)]
            random.Random(b).shuffle(chunks)
            buf = bytearray(b"".join(chunks))
    return bytes(buf)


def _json_mutation(data: bytes, a: int, b: int, c: int) -> bytes:
    """Replace (or delete) one value deep inside a JSON document; other bytes are left alone."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return data
    slots: list[tuple[object, object]] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                slots.append((node, key))
                collect(value)
        elif isinstance(node, list):
            for k, value in enumerate(node[:8]):
                slots.append((node, k))
                collect(value)

    collect(doc)
    if not slots:
        return data
    parent, key = slots[a % len(slots)]
    if b % 5 == 0 and isinstance(parent, dict):
        del parent[key]
    else:
        parent[key] = _JSON_VALUES[c % len(_JSON_VALUES)]  # type: ignore[index]
    return json.dumps(doc).encode()


def _zip_mutation(data: bytes, a: int, b: int, c: int) -> bytes:
    """Rewrite one field of one zip record (an offset, a size, a count, flags, a CRC), flip the
    case of a member name, or shift a record by a few bytes: the layouts on which zip parsers
    disagree (docs/safety.md). Bytes without a zip record get a bit flip."""
    records = [(at, size) for sig, size in _ZIP_RECORDS for at in _find_all(data, sig)]
    if not records:
        return mutate(data, [("flip", a, b, c)])
    at, size = sorted(records)[a % len(records)]
    buf = bytearray(data)
    choice = c % 4
    if choice == 0:  # a 2- or 4-byte field set to a telling value
        field = at + 4 + (b % max(1, size - 6))
        width = 4 if b % 2 else 2
        value = _ZIP_VALUES[b % len(_ZIP_VALUES)] if b % 3 else int.from_bytes(buf[field : field + width], "little") + (1 if c & 16 else -1)
        buf[field : field + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    elif choice == 1 and size in (30, 46):  # the case of one letter of the member's name
        name = at + size + (b % 8)
        if name < len(buf) and chr(buf[name]).isalpha():
            buf[name] ^= 0x20
    elif choice == 2:  # the record moved by a few bytes (a gap, an overlap)
        delta = 1 + b % 8
        buf[at:at] = bytes(delta) if c & 32 else b""
        if not c & 32:
            del buf[at : at + delta]
    else:  # the record copied to the end (a second directory entry or end record)
        buf.extend(buf[at : at + size])
    return bytes(buf)


def _find_all(data: bytes, sig: bytes) -> list[int]:
    out, at = [], data.find(sig)
    while at >= 0 and len(out) < 4096:
        out.append(at)
        at = data.find(sig, at + 4)
    return out


def apply(seed: Seed, ops: list[tuple[str, int, int, int]], inner: bool) -> bytes:
    """Mutate the seed's inner payload (and rebuild its container) or its raw bytes."""
    if inner and seed.inner is not None and seed.rebuild is not None:
        return seed.rebuild(mutate(seed.inner, ops))
    return mutate(seed.data, ops)


# -- seeds --------------------------------------------------------------------------------------


def _zip_seed(name: str, pkl: bytes, **kw) -> Seed:
    return Seed(name, ".pt", P.torch_zip(pkl, **kw), pkl, lambda inner: P.torch_zip(inner, **kw))


def _safetensors(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _st_seed(name: str, header: dict, data: bytes) -> Seed:
    raw = json.dumps(header).encode()

    def rebuild(inner: bytes) -> bytes:
        return struct.pack("<Q", len(inner)) + inner + data

    return Seed(name, ".safetensors", rebuild(raw), raw, rebuild)


def _card(payload: bytes, size=(64, 64)) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(payload).decode("ascii"))
    buf = io.BytesIO()
    Image.new("RGB", size, (40, 80, 120)).save(buf, "PNG", pnginfo=info, compress_level=1)
    return buf.getvalue()


def generated_seeds() -> list[Seed]:
    """Valid files of every container and layout, built by hand (no torch needed)."""
    vec = struct.pack("<768f", *[(k % 7 - 3) / 100 for k in range(768)])
    two = vec * 2
    a1111 = P.dict_(
        (P.s("string_to_token"), P.dict_((P.s("*"), P.i(265)))),
        (P.s("string_to_param"), P.dict_((P.s("*"), P.tensor(P.storage(numel=1536), shape=(2, 768), stride=(768, 1))))),
        (P.s("name"), P.s("seed")),
        (P.s("step"), P.i(100)),
    )
    param = P.call(P.g("torch._utils", "_rebuild_parameter"), P.tensor(), b"\x89", P.call(P.g("collections", "OrderedDict")))
    multi = P.dict_(
        (P.s("clip_l"), P.tensor(P.storage("0", 768))),
        (P.s("clip_g"), P.tensor(P.storage("1", 1280), shape=(1, 1280), stride=(1280, 1))),
    )
    meta = {"__metadata__": {"format": "pt", "modelspec.title": "seed"}}
    seeds = [
        _zip_seed("kohya.pt", P.pickle_of(P.kohya_body())),
        _zip_seed("a1111.pt", P.pickle_of(a1111), storages={"0": two}),
        _zip_seed("parameter.pt", P.pickle_of(P.kohya_body(param)), storages={"0": vec}),
        _zip_seed("multi.pt", P.pickle_of(multi), storages={"0": vec, "1": bytes(1280 * 4)}),
        _zip_seed("proto4.pt", P.pickle_of(P.kohya_body(), 4)),
        Seed("legacy.pt", ".pt", P.benign_legacy(), P.pickle_of(P.kohya_body(P.tensor(P.storage(legacy=True)))), P.legacy_stream),
        _st_seed("kohya.safetensors", {**meta, "emb_params": {"dtype": "F32", "shape": [2, 768], "data_offsets": [0, 6144]}}, two),
        _st_seed(
            "multi.safetensors",
            {"clip_l": {"dtype": "F16", "shape": [1, 768], "data_offsets": [0, 1536]},
             "clip_g": {"dtype": "BF16", "shape": [1, 1280], "data_offsets": [1536, 4096]}},
            bytes(4096),
        ),
        _st_seed("bundle.safetensors", {"bundle_emb.foo.clip_l": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, 3072]},
                                        "lora_unet.alpha": {"dtype": "F32", "shape": [], "data_offsets": [3072, 3076]}}, vec + bytes(4)),
    ]
    seeds.append(Seed("torch-layout.pt", ".pt", torch_layout_zip(P.pickle_of(P.kohya_body()))))
    card_json = json.dumps({"string_to_param": {"*": {"TORCHTENSOR": [[0.01] * 768]}}, "name": "card", "step": 5}).encode()
    seeds.append(Seed("card.png", ".png", _card(card_json), card_json, _card))
    return seeds


def torch_layout_zip(pkl: bytes) -> bytes:
    """A zip laid out as torch.save writes it (read from its output, written here by hand so the
    seeds need no torch): flags 0x808 with CRC and sizes in a data descriptor after each member,
    "FB" padding extras aligning data to 64 bytes, then a zip64 end record and locator."""
    import zlib

    members = [("archive/data.pkl", pkl), ("archive/.format_version", b"1"), ("archive/byteorder", b"little"),
               ("archive/data/0", P.zeros()), ("archive/version", b"3\n")]
    out, central = b"", b""
    for name, data in members:
        at, raw = len(out), name.encode()
        pad = -(len(out) + 30 + len(raw) + 4) % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        crc = zlib.crc32(data)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0x808, 0, 0, 0x21, 0, 0, 0, len(raw), len(extra)) + raw + extra + data
        out += struct.pack("<4s3L", b"PK\x07\x08", crc, len(data), len(data))
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x31E, 45, 0x808, 0, 0, 0x21, crc, len(data), len(data), len(raw), 0, 0, 0, 0, 0, at) + raw
    cd_at, n = len(out), len(members)
    z64 = struct.pack("<4sQ2H2I4Q", b"PK\x06\x06", 44, 0x31E, 45, 0, 0, n, n, len(central), cd_at)
    loc = struct.pack("<4sIQI", b"PK\x06\x07", 0, cd_at + len(central), 1)
    return out + central + z64 + loc + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), cd_at, 0)


def corpus_seeds(corpus: Path | None) -> list[Seed]:
    """Every corpus file, raw; zips also with their data.pkl as the inner payload."""
    if corpus is None or not corpus.is_dir():
        return []
    out = []
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".pt", ".bin", ".safetensors", ".png")):
        data = path.read_bytes()
        name = str(path.relative_to(corpus))
        if data.startswith(b"PK"):
            out.append(_rezip_seed(name, path.suffix, data))
        elif path.suffix == ".png":
            out.append(Seed(name, path.suffix, data))
            out.append(_pixel_seed(name + " (text stripped)", data))
            out.append(_webp_seed(name + " (as lossless WebP)", data))
        else:
            out.append(Seed(name, path.suffix, data))
    return out


def _rezip_seed(name: str, ext: str, data: bytes) -> Seed:
    zf = zipfile.ZipFile(io.BytesIO(data))
    members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    pkl_name = next(n for n, _ in members if n.endswith("/data.pkl"))

    def rebuild(inner: bytes) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as out:
            for n, d in members:
                out.writestr(n, inner if n == pkl_name else d)
        return buf.getvalue()

    return Seed(name, ext, data, dict(members)[pkl_name], rebuild)


def _pixel_seed(name: str, data: bytes) -> Seed:
    """A card with its text chunk removed, so the pixels are decoded; inner: the raw RGB bytes."""
    import numpy as np
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    shape = (img.height, img.width, 3)

    def rebuild(inner: bytes) -> bytes:
        arr = np.frombuffer(inner[: shape[0] * shape[1] * 3].ljust(shape[0] * shape[1] * 3, b"\0"), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr.reshape(shape)).save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    raw = img.tobytes()
    return Seed(name, ".png", rebuild(raw), raw, rebuild)


def _webp_seed(name: str, data: bytes) -> Seed:
    """The card re-encoded as lossless WebP (read from its pixels); mutated raw only."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, "WEBP", lossless=True, quality=0, method=0)
    return Seed(name, ".webp", buf.getvalue())


def all_seeds(corpus: Path | None = None) -> list[Seed]:
    if corpus is None and os.environ.get("EMBKIT_CORPUS"):
        corpus = Path(os.environ["EMBKIT_CORPUS"])
    return generated_seeds() + corpus_seeds(corpus)


# -- the oracle ---------------------------------------------------------------------------------


class Hang(Exception):
    """A read took longer than HANG_SECONDS: a bug, like any non-embkit exception."""


def _alarm(signum, frame):
    raise Hang(f"no answer within {HANG_SECONDS} s")


def check(data: bytes, path: Path) -> str:
    """Write ``data`` to ``path`` and read, probe and scan it; returns the outcome (``ok`` or an
    error code). Raises anything that is not an EmbkitError (a crash) or :class:`Hang`."""
    import embkit
    from embkit.scan import scan_bytes

    path.write_bytes(data)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        outcome = "ok"
        try:
            for emb in embkit.read_all(path):
                assert emb.vectors, "an embedding without vectors"
                json.dumps(dict(emb.metadata), allow_nan=False)  # `inspect --json` prints it
        except embkit.EmbkitError as exc:
            outcome = exc.code
            assert str(exc), "an error without a message"
        try:
            for probed in embkit.probe(path).embeddings:
                json.dumps(probed.metadata, allow_nan=False)
        except embkit.EmbkitError:
            pass
        result = scan_bytes(data, str(path))
        assert result.verdict in ("safe", "unsafe", "unknown")
        # one verdict: scan says safe exactly when read accepts the file
        assert (result.verdict == "safe") == (outcome == "ok"), (outcome, result.to_dict())
        if result.verdict == "unsafe":
            assert result.rules, result.to_dict()
        return outcome
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)

"""A1111 "embedding card" container: an A1111 dict hidden in a PNG or WebP.

Two carriers, read in this order:

1. the text chunk ``sd-ti-embedding``: base64 of UTF-8 JSON, tensors as ``{"TORCHTENSOR": [[...]]}``;
2. the pixels, for re-encoded or stripped images: zlib-compressed JSON split into 4-bit halves, each
   tiled into a side block XOR-ed with a linear congruential generator, laid out as
   ``[low block | black column | picture | black column | high block]``.

The decoder follows A1111's ``extract_image_data_embed`` step for step, so that whatever A1111 can
read, embkit reads. Pillow opens the image; sizes are capped before pixels are decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import warnings
import zlib
from typing import Any

import numpy as np

from ..errors import BrokenFileError, NotMine, TooLargeError
from .base import Raw, Tensor, check_json_size
from .rules import too_large

TEXT_KEY = "sd-ti-embedding"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Cards are a few hundred pixels a side; decoding costs about 14 bytes a pixel at peak (RGB copies,
#: masks), so 8 Mpx keeps a hostile image near 120 MB.
MAX_PIXELS = 8_000_000
#: An embedding's JSON is a few hundred KB (8 x 768 floats is about 150 KB).
MAX_JSON_BYTES = 32 * 1024 * 1024


def accepts(prefix: bytes) -> bool:
    """PNG signature, or a RIFF/WEBP header."""
    return prefix.startswith(PNG_MAGIC) or (prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP")


def container_of(prefix: bytes) -> str:
    """``png`` or ``webp``."""
    return "png" if prefix.startswith(PNG_MAGIC) else "webp"


def lcg_block(n: int) -> np.ndarray:
    """The first ``n`` outputs of A1111's generator (seed 0), as uint8: 253, 242, 127, 44, 157, …"""
    out = np.empty(n, dtype=np.uint8)
    seed = 0
    for i in range(n):
        seed = (1664525 * seed + 1013904223) % 4294967296
        out[i] = seed % 255
    return out


_LCG_CACHE: dict[int, np.ndarray] = {}


def _lcg(n: int) -> np.ndarray:
    # a card's blocks are the same size for a given picture height; generating 100k values in
    # pure Python costs tens of ms, so keep the longest sequence made so far.
    best = max(_LCG_CACHE, default=0)
    if best < n:
        _LCG_CACHE.clear()
        _LCG_CACHE[n] = lcg_block(n)
        best = n
    return _LCG_CACHE[best][:n]


def xor_block(block: np.ndarray) -> np.ndarray:
    """XOR a block with the generator's low 4 bits, in C order (its own inverse)."""
    rand = _lcg(block.size).reshape(block.shape)
    return np.bitwise_xor(block.astype(np.uint8), rand & 0x0F)


def _decode_json(raw: bytes, path: str) -> Any:
    def hook(obj: dict) -> Any:
        if "TORCHTENSOR" in obj:
            arr = np.asarray(obj["TORCHTENSOR"], dtype=np.float64)
            if arr.dtype == object or arr.size == 0 and arr.ndim == 1 and obj["TORCHTENSOR"] != []:
                raise BrokenFileError("a TORCHTENSOR is not a rectangular list of numbers", path=path)
            arr32 = arr.astype(np.float32)
            return Tensor(shape=arr32.shape, dtype="float32", loader=lambda a=arr32: a)
        return obj

    check_json_size(raw, path, "embedded JSON")
    try:
        return json.loads(raw, object_hook=hook)
    except BrokenFileError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BrokenFileError(f"embedded JSON is damaged ({exc})", path=path) from None
    except RecursionError:
        raise BrokenFileError("embedded JSON nests too deeply", path=path) from None


def _crop_black(img: np.ndarray) -> np.ndarray:
    """A1111's ``crop_black``: cut rows and columns at the edges where no pixel is fully non-black."""
    mask = (img > 0).all(2)
    cols, rows = mask.any(0), mask.any(1)
    if not cols.any():
        return img[:0, :0]
    c0, c1 = cols.argmax(), mask.shape[1] - cols[::-1].argmax()
    r0, r1 = rows.argmax(), mask.shape[0] - rows[::-1].argmax()
    return img[r0:r1, c0:c1]


def decode_pixels(rgb: np.ndarray, path: str) -> bytes:
    """The JSON bytes hidden in the side blocks of an ``(h, w, 3)`` uint8 card image."""
    low4 = _crop_black(rgb) & 0x0F
    black = np.where(low4.sum(axis=(0, 2)) == 0)[0]
    if black.shape[0] < 2:
        raise BrokenFileError("image has no sd-ti-embedding text and no embedding in its pixels", path=path)
    lower = xor_block(low4[:, : black.min(), :])
    upper = xor_block(low4[:, black.max() + 1 :, :])
    if lower.shape != upper.shape or lower.size == 0:
        raise BrokenFileError("image's hidden data blocks are damaged (their sizes differ)", path=path)
    stream = ((upper << 4) | lower).astype(np.uint8).tobytes()
    try:
        inflater = zlib.decompressobj()
        out = inflater.decompress(stream, MAX_JSON_BYTES)
    except zlib.error as exc:
        raise BrokenFileError(f"image's hidden data does not decompress ({exc})", path=path) from None
    if inflater.unconsumed_tail:
        raise TooLargeError(f"image's hidden data inflates past {MAX_JSON_BYTES} bytes", path=path)
    if not inflater.eof:
        raise BrokenFileError("image's hidden data is truncated", path=path)
    return out


#: Chunks a PNG may have before embkit stops looking for its text (an APNG has two per frame).
MAX_PNG_CHUNKS = 100_000
#: Pillow's own cap on a compressed text chunk (``PngImagePlugin.MAX_TEXT_CHUNK``).
MAX_TEXT_CHUNK = 1024 * 1024


def png_text(data: bytes | memoryview, key: str, path: str) -> str | None:
    """The text chunk ``key`` (tEXt, zTXt or iTXt; the last one wins, as in Pillow's ``text``),
    read from the chunk list without decoding a pixel. Pillow's ``text`` loads the image to reach
    chunks after the pixels, and an animated PNG's every frame: 3,000 frames on an 8 Mpx canvas
    took 20 s (found in review)."""
    found = None
    pos, n, count = 8, len(data), 0
    want = key.encode("latin-1")
    while pos + 12 <= n:
        length, kind = struct.unpack(">I4s", bytes(data[pos : pos + 8]))
        end = pos + 12 + length
        if end > n:
            break  # truncated: what was read so far stands, as in Pillow
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise too_large(f"PNG holds more than {MAX_PNG_CHUNKS} chunks", path)
        if kind in (b"tEXt", b"zTXt", b"iTXt") and bytes(data[pos + 8 : pos + 8 + len(want) + 1]) == want + b"\0":
            body = bytes(data[pos + 8 : pos + 8 + length])
            if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack(">I", bytes(data[end - 4 : end]))[0]:
                raise BrokenFileError(f"the {key} text chunk fails its CRC", path=path)
            found = _text_value(kind, body[len(want) + 1 :], key, path)
        elif kind == b"IEND":
            break
        pos = end
    return found


def _text_value(kind: bytes, rest: bytes, key: str, path: str) -> str:
    if kind == b"tEXt":
        return rest.decode("latin-1", "replace")
    if kind == b"zTXt":
        if rest[:1] not in (b"", b"\0"):
            raise BrokenFileError(f"the {key} text chunk uses an unknown compression method", path=path)
        return _inflate(rest[1:], key, path).decode("latin-1", "replace")
    if len(rest) < 2:
        raise BrokenFileError(f"the {key} text chunk is damaged", path=path)
    flag, method, rest = rest[0], rest[1], rest[2:]
    parts = rest.split(b"\0", 2)
    if len(parts) < 3 or (flag and method):
        raise BrokenFileError(f"the {key} text chunk is damaged", path=path)
    value = _inflate(parts[2], key, path) if flag else parts[2]
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BrokenFileError(f"the {key} text chunk is not UTF-8", path=path) from None


def _inflate(raw: bytes, key: str, path: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, MAX_TEXT_CHUNK)
    except zlib.error as exc:
        raise BrokenFileError(f"the {key} text chunk does not decompress ({exc})", path=path) from None
    if inflater.unconsumed_tail:
        raise too_large(f"the {key} text chunk inflates past {MAX_TEXT_CHUNK} bytes", path)
    return out


def read_raw(data: bytes | memoryview, path: str) -> Raw:
    """Read an embedding card: the text chunk when present, else the pixels."""
    import io

    from PIL import Image, UnidentifiedImageError

    prefix = bytes(data[:16])
    if not accepts(prefix):
        raise NotMine(path)
    container = container_of(prefix)
    try:
        with warnings.catch_warnings():
            # Pillow warns of a decompression bomb on opening; embkit's own pixel cap refuses it
            # next, and a warning would be an exception for a caller running with -W error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise TooLargeError(f"image of {w}x{h} pixels is past the cap of {MAX_PIXELS}", path=path)
        text = png_text(data, TEXT_KEY, path) if container == "png" else None
        notes: list[str] = []
        if text is not None:
            if len(text) > MAX_JSON_BYTES // 3 * 4 + 4:
                raise too_large(f"the {TEXT_KEY} text chunk holds {len(text)} characters, past the cap of {MAX_JSON_BYTES} bytes of JSON", path)
            try:
                payload = base64.b64decode(text, validate=False)
            except (binascii.Error, ValueError) as exc:
                raise BrokenFileError(f"the {TEXT_KEY} text chunk is not base64 ({exc})", path=path) from None
            notes.append(f"read from the {TEXT_KEY} text chunk")
        else:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
            payload = decode_pixels(rgb, path)
            notes.append("decoded from the pixels (no text chunk)")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            raise TooLargeError(f"image is a decompression bomb ({exc})", path=path) from None
        raise BrokenFileError(f"image cannot be decoded ({exc})", path=path) from None
    tree = _decode_json(payload, path)
    if not isinstance(tree, dict):
        raise BrokenFileError("embedded data is not an A1111 embedding dict", path=path)
    return Raw(tree=tree, container=container, notes=notes)


# -- writing: A1111's insert_image_data_embed ------------------------------------------------------

#: side length of the picture generated when the caller gives none
GENERATED_SIZE = 256


def card_json(tree: dict) -> bytes:
    """The A1111 dict as A1111's ``EmbeddingEncoder`` writes it: arrays as ``{"TORCHTENSOR": [...]}``."""

    def default(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return {"TORCHTENSOR": value.tolist()}
        raise TypeError(f"cannot put a {type(value).__name__} in an embedding card")

    return json.dumps(tree, default=default).encode("utf-8")


def _style_block(block: np.ndarray, sequence: np.ndarray) -> np.ndarray:
    """A1111's ``style_block``: dots whose shades only touch the high 4 bits (decoration)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (block.shape[1], block.shape[0]))
    draw = ImageDraw.Draw(im)
    i = 0
    for x in range(-6, im.size[0], 8):
        for yi, y in enumerate(range(-6, im.size[1], 8)):
            offset = 4 if yi % 2 == 0 else 0
            shade = int(sequence[i % len(sequence)])
            i += 1
            draw.ellipse((x + offset, y, x + 6 + offset, y + 6), fill=(shade, shade, shade))
    fg = np.array(im).astype(np.uint8) & 0xF0
    return block ^ fg


def insert_data(picture, payload: bytes, first_row: np.ndarray):
    """The card image: ``[low block | black column | picture | black column | high block]``, the
    zlib-compressed ``payload`` split into 4-bit halves, each tiled to the picture's height and XOR-ed
    with A1111's generator; ``first_row`` (the first vector) shades the decoration."""
    from PIL import Image

    d = 3
    data = np.frombuffer(zlib.compress(payload, level=9), np.uint8).copy()
    high, low = data >> 4, data & 0x0F
    h = picture.size[1]
    size = low.shape[0] + (h - (low.shape[0] % h))
    size = size + ((h * d) - (size % (h * d)))
    low = np.resize(low, size).reshape((h, -1, d))
    high = np.resize(high, size).reshape((h, -1, d))
    edge = np.abs(np.asarray(first_row[:1024], dtype=np.float64))
    peak = edge.max() if edge.size and np.isfinite(edge).all() else 0.0
    edge = (edge / peak * 255).astype(np.uint8) if peak > 0 else np.zeros(max(1, edge.size), np.uint8)
    low = xor_block(_style_block(low, edge))
    high = xor_block(_style_block(high, edge[::-1]))
    im_low, im_high = Image.fromarray(low, mode="RGB"), Image.fromarray(high, mode="RGB")
    card = Image.new("RGB", (picture.size[0] + im_low.size[0] + im_high.size[0] + 2, h), (0, 0, 0))
    card.paste(im_low, (0, 0))
    card.paste(picture, (im_low.size[0] + 1, 0))
    card.paste(im_high, (im_low.size[0] + 1 + picture.size[0] + 1, 0))
    return card


def generated_picture(name: str, vectors: np.ndarray):
    """A plain picture for a card when the caller has none: the vectors as a colour field, the
    trigger name written on it."""
    from PIL import Image, ImageDraw

    n = GENERATED_SIZE
    flat = np.resize(np.asarray(vectors, dtype=np.float64).ravel(), 3 * 16 * 16)
    span = np.ptp(flat) or 1.0
    tiles = ((flat - flat.min()) / span * 160 + 60).astype(np.uint8).reshape(16, 16, 3)
    img = Image.fromarray(tiles, mode="RGB").resize((n, n), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, n - 28, n, n), fill=(24, 24, 24))
    draw.text((8, n - 22), name[:40], fill=(240, 240, 240))
    return img


def dumps_png(tree: dict, picture=None) -> bytes:
    """A PNG embedding card for an A1111 dict (tensors as numpy arrays): the ``sd-ti-embedding``
    text chunk and the pixel blocks, around ``picture`` (a PIL image or a path) or a generated one."""
    import io

    from PIL import Image, PngImagePlugin

    payload = card_json(tree)
    first = next(iter(tree["string_to_param"].values()))
    first = np.atleast_2d(first)
    if picture is None:
        picture = generated_picture(str(tree.get("name") or "embedding"), first)
    elif not isinstance(picture, Image.Image):
        with Image.open(picture) as opened:
            picture = opened.convert("RGB")
    picture = picture.convert("RGB")
    card = insert_data(picture, payload, first[0])
    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_KEY, base64.b64encode(payload).decode("ascii"))
    out = io.BytesIO()
    card.save(out, format="PNG", pnginfo=info)
    return out.getvalue()

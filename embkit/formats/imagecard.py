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
import zlib
from typing import Any

import numpy as np

from ..errors import BrokenFileError, NotMine, TooLargeError
from .base import Raw, Tensor

TEXT_KEY = "sd-ti-embedding"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 40_000_000
MAX_JSON_BYTES = 256 * 1024 * 1024


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

    try:
        return json.loads(raw, object_hook=hook)
    except BrokenFileError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BrokenFileError(f"embedded JSON is damaged ({exc})", path=path) from None


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


def read_raw(data: bytes | memoryview, path: str) -> Raw:
    """Read an embedding card: the text chunk when present, else the pixels."""
    import io

    from PIL import Image, UnidentifiedImageError

    prefix = bytes(data[:16])
    if not accepts(prefix):
        raise NotMine(path)
    container = container_of(prefix)
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise TooLargeError(f"image of {w}x{h} pixels is past the cap of {MAX_PIXELS}", path=path)
        text = getattr(img, "text", None) if container == "png" else None
        notes: list[str] = []
        if text and TEXT_KEY in text:
            try:
                payload = base64.b64decode(text[TEXT_KEY], validate=False)
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

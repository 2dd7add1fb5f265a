"""The hashes people look embeddings up by.

| name     | definition                                                         |
| sha256   | of the whole file                                                  |
| autov2   | first 10 hex of sha256 (Civitai)                                   |
| a1111    | first 12 hex of sha256 (A1111 writes it into infotext as TI hashes)|
| autov3   | safetensors only: sha256 of the bytes after the header             |
| crc32    | Civitai's byte-reversed CRC32 (``"hello world"`` → ``85114A0D``)   |
| blake3   | of the whole file, when the optional ``blake3`` package is present |
"""

from __future__ import annotations

import hashlib
import zlib


def sha256(data: bytes | memoryview) -> str:
    """Hex SHA-256 of the bytes."""
    return hashlib.sha256(data).hexdigest()


def autov2(sha: str) -> str:
    """Civitai's AutoV2: the first 10 hex digits of the file's SHA-256."""
    return sha[:10]


def a1111_short(sha: str) -> str:
    """A1111's short hash: the first 12 hex digits of the file's SHA-256."""
    return sha[:12]


def autov3(data: bytes | memoryview) -> str:
    """Civitai's AutoV3 of a safetensors file: SHA-256 of everything after the JSON header."""
    from .formats.safetensors_file import data_offset

    return hashlib.sha256(memoryview(data)[data_offset(data) :]).hexdigest()


def crc32(data: bytes | memoryview) -> str:
    """CRC32 as Civitai prints it: zlib's value with its bytes reversed, upper-case hex."""
    return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little").hex().upper()


def blake3(data: bytes | memoryview) -> str | None:
    """BLAKE3 of the bytes (InvokeAI's default), or ``None`` when ``blake3`` is not installed."""
    global _BLAKE3_MISSING
    if _BLAKE3_MISSING:  # a failed import is not cached by Python: retrying costs ~80 µs per file
        return None
    try:
        import blake3 as _b3
    except ImportError:
        _BLAKE3_MISSING = True
        return None
    return _b3.blake3(data).hexdigest()


_BLAKE3_MISSING = False


def file_hashes(data: bytes | memoryview, container: str) -> dict[str, str]:
    """Every hash that applies to a file's bytes, keyed as in ``embkit inspect --json``."""
    sha = sha256(data)
    out = {"sha256": sha, "autov2": autov2(sha), "a1111": a1111_short(sha), "crc32": crc32(data)}
    if container == "safetensors":
        out["autov3"] = autov3(data)
    b3 = blake3(data)
    if b3 is not None:
        out["blake3"] = b3
    return out

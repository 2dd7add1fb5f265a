"""``probe``: what a file holds, cheaply (shapes, dtypes, metadata, hashes, sidecars), without
copying tensor data. The file is opened and parsed by :mod:`embkit.io` as for reading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .formats.base import matrix_shape
from .inputs import FileSource
from .io import _open_source
from .schema import Sidecars


@dataclass(frozen=True)
class SlotInfo:
    """One slot of a probed embedding: vectors × width, stored dtype."""

    vectors: int
    dim: int
    dtype: str


@dataclass(frozen=True)
class ProbedEmbedding:
    """An embedding as probing sees it: shapes and metadata, no tensor data."""

    name: str
    slots: dict[str, SlotInfo]
    metadata: dict[str, Any]
    warnings: tuple[str, ...]
    member: str | None = None


@dataclass(frozen=True)
class Probe:
    """What :func:`probe` learns about a file without copying tensor data."""

    path: str
    format: str
    container: str
    embeddings: tuple[ProbedEmbedding, ...]
    hashes: dict[str, str]
    size: int
    #: the second file of a diffusers SDXL pair, when the embedding spans two files
    pair: str | None = None
    sidecars: Sidecars | None = None


def probe(source: FileSource, format: str | None = None, *, hashes: bool = True, name: str | None = None) -> Probe:
    """Describe a file cheaply: format, container, each embedding's slots (vectors × width, dtype),
    metadata and warnings, its hashes, and its sidecars. Reads the safetensors header or walks the
    pickle's structure; tensor data is not copied. ``source`` and ``name`` as for :func:`read`."""
    from .hashes import file_hashes

    loaded = _open_source(source, format, name)
    embs = []
    for part in loaded.parts:
        slots = {}
        for slot, t in part.tensors.items():
            n, d = matrix_shape(t, loaded.path, f"{part.name} {slot}")
            slots[slot] = SlotInfo(n, d, t.dtype)
        embs.append(
            ProbedEmbedding(name=part.name, slots=slots, metadata={**loaded.metadata, **part.metadata}, warnings=tuple(part.warnings), member=part.member)
        )
    return Probe(
        path=loaded.path,
        format=loaded.format.id,
        container=loaded.container,
        embeddings=tuple(embs),
        hashes=file_hashes(loaded.data, loaded.data_container) if hashes else {},
        size=len(loaded.data),
        pair=loaded.pair,
        sidecars=loaded.sidecars,
    )


__all__ = ["probe", "Probe", "ProbedEmbedding", "SlotInfo"]

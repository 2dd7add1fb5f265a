"""Loss-free conversion to safetensors for ingest: write in memory, read back, compare bit for bit.

:func:`convert_embeddings` plans each embedding of an opened file (an SDXL pair's two files as
one) as ``<name>.safetensors`` in the layout :func:`embkit.write` picks for that name (diffusers
keyed by the file stem for one encoder, multi for several: every host triggers it by the file
name, so the name is kept as the file name to publish under), refuses any loss the writer
reports, then parses the bytes it would write with embkit's own reader and compares name, slots,
stored dtypes and every vector's bits with the source. Only then does the object get its content
address. Nothing here touches the disk.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import LossError

#: Folder of converted files under DIR.
OBJECTS = "objects"
#: A name longer than this (in UTF-8 bytes) cannot be a file name on common file systems.
MAX_NAME_BYTES = 200


def file_stem(name: str) -> str:
    """The embedding's name when it can be a file name as it is, else a cleaned copy (the writer
    then reports the renamed trigger, and the conversion is refused as lossy)."""
    bad = name in ("", ".", "..") or any(c in name for c in "/\\\0") or len(name.encode("utf-8", "replace")) > MAX_NAME_BYTES
    if not bad:
        return name
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name).strip("._")[:MAX_NAME_BYTES]
    return cleaned or "embedding"


def convert_embeddings(loaded: Any, out: str) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]]]:
    """``(converted entries, [(object path, bytes)])`` for every embedding in a file
    :func:`embkit.io.open_file` opened; raises an :class:`~embkit.errors.EmbkitError` (a
    :class:`LossError` for a loss) when one cannot be kept whole. ``out`` is DIR: object paths lie
    under ``DIR/objects``."""
    from ..hashes import sha256
    from ..io import embedding_of
    from ..writing import choose_format, plan

    path = loaded.path
    converted: list[dict[str, Any]] = []
    files: list[tuple[str, bytes]] = []
    for part in loaded.parts:
        emb = embedding_of(loaded, part)
        filename = file_stem(emb.name) + ".safetensors"
        virtual = os.path.join(out, filename)  # names the file for the writer; never written
        fmt = choose_format(emb, virtual)
        planned = plan(emb, virtual)  # as embkit.write picks it: the trigger stored is the file stem
        if planned.losses:
            raise LossError("would lose: " + "; ".join(loss.message for loss in planned.losses), path=path)
        if len(planned.outputs) != 1 or planned.outputs[0].fill is not None:
            raise LossError(f"{fmt} does not write one safetensors file", path=path)
        blob = planned.outputs[0].data
        blob = blob if isinstance(blob, bytes) else b"".join(blob or [])
        _same_after_reading(emb, blob, virtual, path)
        sha = sha256(blob)
        rel = f"{OBJECTS}/{sha[:2]}/{sha}.safetensors"
        converted.append({"member": part.member or "", "name": emb.name, "format": fmt, "path": rel, "sha256": sha, "size": len(blob), "filename": filename})
        files.append((os.path.join(out, *rel.split("/")), blob))
    return converted, files


def _same_after_reading(emb, blob: bytes, virtual: str, path: str) -> None:
    """Read the converted bytes back with embkit's reader; refuse the conversion unless the name,
    slots, stored dtypes and vector bits all match."""
    from ..io import embedding_of, open_file

    back_file = open_file(virtual, data=blob, alone=True)  # the bytes alone: nothing lies beside a virtual path
    if len(back_file.parts) != 1:
        raise LossError(f"converted file reads back as {len(back_file.parts)} embeddings", path=path)
    back = embedding_of(back_file, back_file.parts[0])
    problems = []
    if back.name != emb.name:
        problems.append(f"name {back.name!r} instead of {emb.name!r}")
    if tuple(back.vectors) != tuple(emb.vectors) and sorted(back.vectors) != sorted(emb.vectors):
        problems.append(f"slots {', '.join(back.vectors)} instead of {', '.join(emb.vectors)}")
    else:
        for slot, values in emb.vectors.items():
            other = back.vectors[slot]
            if back.dtypes.get(slot) != emb.dtypes.get(slot):
                problems.append(f"{slot} stored as {back.dtypes.get(slot)} instead of {emb.dtypes.get(slot)}")
            elif other.shape != values.shape or other.dtype != values.dtype or other.tobytes() != values.tobytes():
                problems.append(f"{slot} values differ")
    if problems:
        raise LossError("converted file reads back with " + "; ".join(problems), path=path)


__all__ = ["convert_embeddings", "file_stem", "OBJECTS"]

"""read / read_all / probe: from a path to Embeddings or a cheap description of the file.

Detection is by content first: an explicit ``format`` wins; otherwise the first bytes pick the
container and the keys pick the layout; the extension is only the last hint (used to tell "damaged
torch file" from "not an embedding at all").
"""

from __future__ import annotations

import json
import math
import mmap
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from .errors import BrokenFileError, EmbkitError, NotMine, TooLargeError, UnknownFormatError, read_error
from .formats import FORMAT_IDS, FORMATS, Format, container_for_extension, get_format, sniff_container
from .formats import concept_folder
from .formats.base import Part, Raw, check_json_size, looks_like_weight_key, matrix_shape, tensor_matrix
from .schema import Embedding, Source

#: Files above this are memory-mapped rather than read whole (LoRA bundles can be large).
MMAP_ABOVE = 64 * 1024 * 1024
#: What a pipe or device named as a file may give before it is refused (``/dev/zero`` never ends).
MAX_STREAM_BYTES = 256 * 1024 * 1024
#: safetensors metadata keys embkit writes: ``embkit.metadata`` holds the JSON metadata dict.
META_JSON_KEY = "embkit.metadata"


@dataclass
class Loaded:
    """A file opened and parsed: its format, container, raw bytes and the parts found in it."""

    path: str
    format: Format
    container: str
    data: Any  # bytes or mmap of the file (the tensor file, for a concept folder)
    raw: Raw
    parts: list[Part]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: container of ``data`` itself (a concept folder's tensor file is pickle or safetensors)
    data_container: str = ""


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


def _read_bytes(path: str) -> Any:
    # One open, one fstat, the reads, one close: batches (convert, library scans) of thousands of
    # small files spend more time in system calls than in parsing, so no stat-then-open here.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(path)
            if stat.S_ISREG(st.st_mode) and st.st_size > MMAP_ABOVE:
                return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            parts = [os.read(fd, st.st_size + 1 if stat.S_ISREG(st.st_mode) else 1 << 20)]
            total = len(parts[0])
            while parts[-1]:  # the file grew meanwhile, or is not a regular file (a pipe, a device)
                parts.append(os.read(fd, 1 << 20))
                total += len(parts[-1])
                if total > MAX_STREAM_BYTES and not stat.S_ISREG(st.st_mode):
                    raise TooLargeError(f"is not a regular file and gives more than {MAX_STREAM_BYTES} bytes (a device?)", path=path)
        finally:
            os.close(fd)
        data = b"".join(parts)
        if not data:
            raise BrokenFileError("file is empty (0 bytes)", path=path)
        return data
    except IsADirectoryError:
        raise EmbkitError("is a directory", path=path) from None
    except OSError as exc:  # a missing file is also a FileNotFoundError, no permission a PermissionError
        raise read_error(exc, path) from None


def open_file(path: str | os.PathLike, format: str | None = None, *, data: Any = None) -> Loaded:
    """Open a file or concept folder, pick its container and layout, and parse it into parts.

    ``data`` may pass the file's bytes when the caller has them already (the library scan hashes
    and parses one read); ``path`` is then taken to be that file, not a folder.
    """
    path = os.path.expanduser(os.fspath(path))  # "~/sd/embeddings/x.pt" as a shell would read it
    try:
        return _open_file(path, format, data)
    except RecursionError:
        # the readers cap nesting where they build; this is the net for any path they missed
        raise TooLargeError("nests too deeply to read", path=path) from None
    except MemoryError:
        raise TooLargeError("needs more memory than embkit allows a file", path=path) from None


def _open_file(path: str, format: str | None, data: Any) -> Loaded:
    fmt_forced = None
    if format is not None:
        try:
            fmt_forced = get_format(format)
        except KeyError as exc:
            raise UnknownFormatError(str(exc.args[0]), path=path) from None
    if data is None and os.path.isdir(path):  # bytes given: the caller read a file
        inner = _concept_inner(path)
        data = _read_bytes(inner) if data is None else data
        raw = _read_container(inner, data)
        data_container = raw.container
        raw.container = "folder"
        raw.metadata.update(concept_folder.folder_metadata(path))
        container = "folder"
    else:
        data = _read_bytes(path) if data is None else data
        raw = _read_container(path, data)
        container = data_container = raw.container
    fmt = fmt_forced or _detect_layout(raw, path)
    if fmt_forced is not None:
        if container not in fmt.containers or not fmt.detect(raw):
            raise UnknownFormatError(f"is not in the {fmt.id} layout (found a {container} container with keys {_keys(raw)})", path=path)
    parts = fmt.parse(raw, path)
    if not parts:
        raise BrokenFileError(f"holds no embedding in {fmt.id} layout", path=path)
    return Loaded(path=path, format=fmt, container=container, data=data, raw=raw, parts=parts, metadata=_container_metadata(raw, path), data_container=data_container)


def _concept_inner(folder: str) -> str:
    try:
        return concept_folder.embeds_file(folder)
    except NotMine:
        raise UnknownFormatError(
            f"is a folder without {' or '.join(concept_folder.EMBED_FILES)}; pass files, or a concept folder", path=folder
        ) from None


def _read_container(path: str, data: Any) -> Raw:
    prefix = bytes(data[:32])
    container = sniff_container(prefix)
    if container is None:
        from .scan import looks_like_pickle, unsafe_error

        if looks_like_pickle(prefix):  # a bare pickle is never unpickled; name what it asks for
            raise unsafe_error(data, path)  # scans at most the first 64 MB
        hinted = container_for_extension(path)
        if hinted is not None:
            raise BrokenFileError(f"does not start like a {hinted.title} file (first bytes {prefix[:12]!r})", path=path)
        raise UnknownFormatError(f"is not an embedding file embkit knows (first bytes {prefix[:12]!r})", path=path)
    try:
        return container.read_raw(data, path)
    except NotMine:
        raise UnknownFormatError(f"looks like {container.title} but is not an embedding container", path=path) from None
    except EmbkitError as exc:
        if exc.path is None:
            exc.path = path
            exc.args = (f"{path}: {exc.detail}",)
        raise


def _keys(raw: Raw) -> str:
    if isinstance(raw.tree, dict):
        keys = [repr(k) for k in list(raw.tree)[:8]]
        return "{" + ", ".join(keys) + (", …" if len(raw.tree) > 8 else "") + "}"
    return type(raw.tree).__name__


def _detect_layout(raw: Raw, path: str) -> Format:
    if isinstance(raw.tree, dict) and not raw.tree:
        raise BrokenFileError(f"{raw.container} file holds an empty dict", path=path)
    for fmt in FORMATS:
        if raw.container in fmt.containers and fmt.detect(raw):
            return fmt
    if isinstance(raw.tree, dict):
        weight = next((k for k in raw.tree if looks_like_weight_key(k)), None)
        if weight is not None:
            raise UnknownFormatError(f"holds model weights (tensors such as {weight!r})", path=path)
    raise UnknownFormatError(f"{raw.container} file holds no known embedding layout (keys {_keys(raw)})", path=path)


def _container_metadata(raw: Raw, path: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in raw.metadata.items():
        if key == META_JSON_KEY:
            check_json_size(value, path, f"safetensors metadata {META_JSON_KEY}")
            try:
                # NaN/Infinity (and numbers too big for a float, 1e999) kept as strings: metadata
                # must stay valid JSON for `inspect --json`
                extra = json.loads(value, parse_constant=str, parse_float=_finite_or_text)
            except (ValueError, RecursionError):
                raise BrokenFileError(f"safetensors metadata {META_JSON_KEY} is not valid JSON", path=path) from None
            if isinstance(extra, dict):
                meta.update(extra)
        elif raw.container != "folder":
            meta[key] = value
    return meta


def _finite_or_text(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def embedding_of(loaded: Loaded, part: Part) -> Embedding:
    """Materialise one parsed part into an :class:`Embedding` (reads its tensor data)."""
    vectors = {slot: tensor_matrix(t, loaded.path, f"{part.name} {slot}") for slot, t in part.tensors.items()}
    dtypes = {slot: t.dtype for slot, t in part.tensors.items()}
    metadata = {**loaded.metadata, **part.metadata}
    try:
        return Embedding(
            name=part.name,
            vectors=vectors,
            dtypes=dtypes,
            metadata=metadata,
            source=Source(path=loaded.path, format=loaded.format.id, container=loaded.container, member=part.member),
        )
    except ValueError as exc:
        raise BrokenFileError(str(exc), path=loaded.path) from None


def read_all(path: str | os.PathLike, format: str | None = None) -> list[Embedding]:
    """Every embedding in a file (a LoRA bundle, an original-TI file with several placeholders,
    a diffusers dict with several tokens); a one-embedding file gives a list of one."""
    loaded = open_file(path, format)
    return [embedding_of(loaded, part) for part in loaded.parts]


def read(path: str | os.PathLike, format: str | None = None, *, member: str | None = None) -> Embedding:
    """Read one embedding from a file (any format in :data:`embkit.formats.FORMATS`).

    ``format`` forces a layout id (``a1111``, ``diffusers``, ``kohya``, ``multi``, ``a1111-image``,
    ``lora-bundle``, ``concept-folder``). For files that hold several embeddings, ``member`` picks
    one by name; without it such a file raises an error listing them (see :func:`read_all`).
    """
    loaded = open_file(path, format)
    parts = loaded.parts
    if member is not None:
        parts = [p for p in parts if member in (p.member, p.name)]
        if not parts:
            names = ", ".join(p.member or p.name for p in loaded.parts)
            raise EmbkitError(f"holds no embedding named {member!r} (it holds {names})", path=loaded.path)
    if len(parts) > 1:
        names = ", ".join(p.member or p.name for p in parts)
        raise EmbkitError(f"holds {len(parts)} embeddings ({names}); pick one with member= or use read_all()", path=loaded.path)
    return embedding_of(loaded, parts[0])


def probe(path: str | os.PathLike, format: str | None = None, *, hashes: bool = True) -> Probe:
    """Describe a file cheaply: format, container, each embedding's slots (vectors × width, dtype),
    metadata and warnings, and its hashes. Reads the safetensors header or walks the pickle's
    structure; tensor data is not copied."""
    from .hashes import file_hashes

    loaded = open_file(path, format)
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
    )


__all__ = ["read", "read_all", "probe", "open_file", "embedding_of", "Probe", "ProbedEmbedding", "SlotInfo", "Loaded", "FORMAT_IDS"]

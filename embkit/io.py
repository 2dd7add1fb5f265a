"""read / read_all / probe: from a path, bytes or a file object to Embeddings or a cheap description.

Detection is by content first: an explicit ``format`` wins; otherwise the first bytes pick the
container and the keys pick the layout; the extension is only the last hint (used to tell "damaged
torch file" from "not an embedding at all").

A file read from disk is read with what lies beside it: the other half of a diffusers SDXL pair
(:mod:`embkit.formats.sdxl_pair`) and the sidecars other tools keep
(:mod:`embkit.formats.sidecars`). Bytes and file objects are read alone, with the same caps.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import inputs
from .errors import (
    BrokenFileError,
    EmbkitError,
    NotMine,
    TooLargeError,
    UnknownFormatError,
    read_error,
)
from .formats import (
    FORMAT_IDS,
    FORMATS,
    Format,
    concept_folder,
    container_for_extension,
    get_format,
    sdxl_pair,
    sniff_container,
)
from .formats import pickle_walk, polyglot
from .formats.base import (
    Part,
    Raw,
    check_json_size,
    looks_like_weight_key,
    tensor_matrix,
)
from .formats.rules import refuse
from .formats.sidecars import is_preview_name, read_sidecars
from .inputs import FileSource
from .schema import Embedding, Sidecars, Source

#: Files above this are memory-mapped rather than read whole (LoRA bundles can be large).
MMAP_ABOVE = 64 * 1024 * 1024
#: What a pipe or device named as a file may give before it is refused (``/dev/zero`` never ends).
MAX_STREAM_BYTES = 256 * 1024 * 1024
#: safetensors metadata keys embkit writes: ``embkit.metadata`` holds the JSON metadata dict.
META_JSON_KEY = "embkit.metadata"
#: Characters of ``embkit.metadata`` parsed at most: an embedding's metadata is a few KB, and a
#: 99 MB list of zeros in it took 23 s and 3.4 GB to show (found in review).
MAX_META_JSON = 1024 * 1024


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
    #: the tensor file ``data`` came from (a concept folder's ``learned_embeds.*``; else ``path``)
    file: str = ""
    #: the second (CLIP-G) file of a diffusers SDXL pair read with this one, and its bytes
    pair: str | None = None
    pair_data: Any = None
    sidecars: Sidecars | None = None
    #: read from bytes or a file object: ``path`` is only a name
    in_memory: bool = False


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


def open_file(path: str | os.PathLike, format: str | None = None, *, data: Any = None, present: Iterable[str] | None = None,
              alone: bool = False) -> Loaded:
    """Open a file or concept folder, pick its container and layout, and parse it into parts, with
    the other half of an SDXL pair and the sidecars beside it (``alone``: the file by itself, as a
    host that loads each file on its own sees it).

    ``data`` may pass the file's bytes when the caller has them already (the library scan hashes
    and parses one read); ``path`` is then taken to be that file, not a folder. ``present``, when
    given, names the files beside it (all, or only its sidecars and pair file: a walk knows them),
    so that absent ones cost no system call.
    """
    path = os.path.expanduser(os.fspath(path))  # "~/sd/embeddings/x.pt" as a shell would read it
    if alone:
        return _guarded(path, lambda: _open_file(path, format, data))
    return _guarded(path, lambda: _on_disk(_open_file(path, format, data), present))


def open_data(data: Any, format: str | None = None, *, name: str | None = None) -> Loaded:
    """Open bytes or a binary file object as :func:`open_file` opens a file, with the same caps and
    checks, and nothing looked up on disk. ``name`` (a file name) gives file-stem layouts their
    trigger and error messages their subject; default ``<bytes>``, or a file object's own name."""
    label = inputs.label(data, name)
    raw = inputs.bytes_of(data, label, MAX_STREAM_BYTES)  # a text-mode file object is the caller's TypeError, not the file's
    loaded = _guarded(label, lambda: _open_file(label, format, raw))
    loaded.in_memory = True
    return loaded


def _guarded(label: str, fn) -> Loaded:
    with _hostile_net(label):
        return fn()


def _on_disk(loaded: Loaded, present: Iterable[str] | None) -> Loaded:
    """The pair and the sidecars beside a file read from disk."""
    loaded = sdxl_pair.pair_up(loaded, lambda p: _open_file(p, None, None), lambda p: _on_disk(_open_file(p, None, None), None), present)
    if loaded.sidecars is None:
        loaded.sidecars = read_sidecars(loaded.path if loaded.container == "folder" else loaded.file, present)
    return loaded


#: What a hostile file can make Python itself raise where a reader missed a check (a huge
#: stride overflowing a C integer, an attribute a pickle set to the wrong type): the net below
#: turns them into embkit errors with a code, never a traceback.
_NET = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, BufferError, struct.error)


class _hostile_net:
    """The net for any path the readers missed: RecursionError and MemoryError become too-large,
    the exceptions of :data:`_NET` broken-file; embkit's own errors pass through."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, _tb) -> bool:
        if exc is None or isinstance(exc, EmbkitError):
            return False
        if isinstance(exc, RecursionError):
            raise TooLargeError("nests too deeply to read", path=self.path) from None
        if isinstance(exc, MemoryError):
            raise TooLargeError("needs more memory than embkit allows a file", path=self.path) from None
        if isinstance(exc, _NET):
            raise BrokenFileError(f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})", path=self.path) from None
        return False


def _open_file(path: str, format: str | None, data: Any) -> Loaded:
    fmt_forced = None
    if format is not None:
        try:
            fmt_forced = get_format(format)
        except KeyError as exc:
            raise UnknownFormatError(str(exc.args[0]), path=path) from None
    file = path
    if data is None and os.path.isdir(path):  # bytes given: the caller read a file
        file = _concept_inner(path)
        data = _read_bytes(file)
        raw = _read_container(file, data)
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
    return Loaded(path=path, format=fmt, container=container, data=data, raw=raw, parts=parts, metadata=_container_metadata(raw, path),
                  data_container=data_container, file=file)


def is_companion(path: str) -> bool:
    """Whether a file met while walking a folder belongs to another embedding file and is no
    embedding of its own: a preview picture (``x.preview.png``), or the second (CLIP-G) file of a
    diffusers SDXL pair whose first file lies beside it (the pair is read, and reported, once,
    under its first file). Every walker (inspect, convert, the library, pull) asks this."""
    name = os.path.basename(path)
    if is_preview_name(name):
        return True
    first = sdxl_pair.first_path(path)
    if first is None or not os.path.isfile(first):
        return False
    try:
        a, b = _open_file(first, None, None), _open_file(path, None, None)
    except EmbkitError:
        return False
    return a.format.id == b.format.id == "diffusers" and sdxl_pair.join(a.parts, b.parts) is not None


def open_pair(first: Any, second: Any, format: str | None = None) -> Loaded:
    """Two files given together (paths, bytes or file objects, in either order) as one diffusers
    SDXL pair: each one embedding in diffusers layout under the same token, one 768 wide (CLIP-L),
    the other 1280 (CLIP-G). Anything else is refused with an error naming both."""
    halves = [_open_source(x, format, None, alone=True) for x in (first, second)]
    for a, b in (halves, halves[::-1]):
        joined = sdxl_pair.join(a.parts, b.parts)
        if joined is not None and a.format.id in ("diffusers", "concept-folder") and b.format.id == "diffusers":
            a.parts, a.pair, a.pair_data = [joined], b.path, b.data
            if not a.in_memory:
                a.sidecars = read_sidecars(a.path if a.container == "folder" else a.file)
            return a
    raise UnknownFormatError(
        f"and {halves[1].path} are not the two files of a diffusers SDXL pair (each must hold one diffusers embedding "
        "under the same token, one 768 wide for CLIP-L, the other 1280 wide for CLIP-G)",
        path=halves[0].path,
    )


def _open_source(source: FileSource, format: str | None, name: str | None, *, alone: bool = False) -> Loaded:
    """Open what ``read`` was given; ``alone``: a path without its pair or sidecars (a pair's half)."""
    if isinstance(source, (str, os.PathLike)):
        if name is not None:
            raise TypeError("name= is for bytes and file objects; a path is known by its own name")
        path = os.path.expanduser(os.fspath(source))
        return open_file(path, format, alone=alone)
    if isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        return open_data(source, format, name=name)
    if isinstance(source, (list, tuple)) and len(source) == 2 and not alone and name is None:
        return open_pair(source[0], source[1], format)
    raise TypeError(f"cannot read a {type(source).__name__}: pass a path, bytes, a binary file object, or the two files of an SDXL pair")


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
        plain = pickle_walk.plain_pickle_error(data, path)  # a bare pickle (any protocol) is never unpickled
        if plain is not None:
            raise plain
        hinted = container_for_extension(path)
        if hinted is not None:
            raise BrokenFileError(f"does not start like {hinted.noun} (first bytes {prefix[:12]!r})", path=path)
        raise UnknownFormatError(f"is not an embedding file embkit knows (first bytes {prefix[:12]!r})", path=path)
    if container.id == "pickle" and path.lower().endswith(".safetensors"):
        raise refuse("extension-mismatch", "is a torch pickle named .safetensors (torch.load and scanners would treat it as safetensors)", path)
    if not prefix.startswith(b"PK\x03\x04"):
        polyglot.check(data, path, container.id)  # a zip's own layout is checked by its reader
    try:
        return container.read_raw(data, path)
    except NotMine:
        raise UnknownFormatError(f"looks like {container.noun} but holds no embedding container embkit knows", path=path) from None
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
            if len(value) > MAX_META_JSON:
                raise TooLargeError(f"safetensors metadata {META_JSON_KEY} holds {len(value)} characters, past the cap of {MAX_META_JSON}", path=path)
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
    with _hostile_net(loaded.path):
        vectors = {slot: tensor_matrix(t, loaded.path, f"{part.name} {slot}") for slot, t in part.tensors.items()}
    dtypes = {slot: t.dtype for slot, t in part.tensors.items()}
    metadata = {**loaded.metadata, **part.metadata}
    source = Source(path=loaded.path, format=loaded.format.id, container=loaded.container, member=part.member, pair=loaded.pair,
                    sidecars=loaded.sidecars, in_memory=loaded.in_memory)
    try:
        return Embedding(name=part.name, vectors=vectors, dtypes=dtypes, metadata=metadata, source=source)
    except ValueError as exc:
        raise BrokenFileError(str(exc), path=loaded.path) from None


def read_all(source: FileSource, format: str | None = None, *, name: str | None = None, alone: bool = False) -> list[Embedding]:
    """Every embedding in a file (a LoRA bundle, an original-TI file with several placeholders,
    a diffusers dict with several tokens); a one-embedding file gives a list of one.

    ``source`` is a path, the file's bytes, a binary file object (``name=`` then gives the file
    name that file-stem layouts are triggered by), or the two files of a diffusers SDXL pair given
    together as a list. A path is read with the other half of its SDXL pair and its sidecars,
    unless ``alone`` (the file by itself, as diffusers' loader reads one file)."""
    loaded = _open_source(source, format, name, alone=alone)
    return [embedding_of(loaded, part) for part in loaded.parts]


def read(source: FileSource, format: str | None = None, *, member: str | None = None, name: str | None = None) -> Embedding:
    """Read one embedding from a file (any format in :data:`embkit.formats.FORMATS`).

    ``source`` is a path, the file's bytes or a binary file object (with ``name=``, the file name
    to trigger file-stem layouts by and to name in errors), or ``[first, second]``: the two files
    of a diffusers SDXL pair. ``format`` forces a layout id (``a1111``, ``diffusers``, ``kohya``,
    ``multi``, ``a1111-image``, ``lora-bundle``, ``concept-folder``). For files that hold several
    embeddings, ``member`` picks one by name; without it such a file raises an error listing them
    (see :func:`read_all`).
    """
    loaded = _open_source(source, format, name)
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


def read_container(path: str | os.PathLike) -> tuple[Raw, Any, str]:
    """The container of a file (or a concept folder's tensor file) without picking a layout:
    ``(raw tree, file bytes, container id)``. For questions about files embkit does not read as an
    embedding (what another host would make of them: :mod:`embkit.hosts`)."""
    path = os.path.expanduser(os.fspath(path))
    if os.path.isdir(path):
        inner = _concept_inner(path)
        data = _read_bytes(inner)
        return _read_container(inner, data), data, "folder"
    data = _read_bytes(path)
    raw = _read_container(path, data)
    return raw, data, raw.container


__all__ = ["read", "read_all", "open_file", "open_data", "open_pair", "read_container", "is_companion", "embedding_of", "Loaded", "FileSource", "FORMAT_IDS"]

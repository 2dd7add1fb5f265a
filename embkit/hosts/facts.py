"""What a host sees in a file: :class:`FileFacts`, torch-free.

The hosts do not read embkit's layouts; they branch on the dictionary a file holds (``'string_to_param'
in data``, ``len(data) == 1``, the first value …), on its extension, and their safe loaders look at
the zip member names and the globals the pickle names. So the facts are the file's own: top-level
keys in the order each reader returns them, tensor shapes (1-D or 2-D), the stored ``name``, the zip
members and pickle globals. They come from the file itself (:func:`facts_of`, one read), from an
already opened file (:func:`facts_from_loaded`), or, when only a record is at hand (a library row,
an :class:`~embkit.schema.Embedding` built in memory), are rebuilt from embkit's format and slots
(:func:`facts_from_record`): exact for triggers, and marked ``exact=False`` because the safe-loader
facts are then unknown.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..schema import Embedding

#: Where a single-tensor layout's tensor sits in a rebuilt record, by embkit format.
_KOHYA_KEYS = ("emb_params", "emp_params")
BUNDLE_PREFIX = "bundle_emb."


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a host sees it: its key, shape (1-D or 2-D as stored) and dtype."""

    key: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def width(self) -> int:
        return int(self.shape[-1]) if self.shape else 0

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if len(self.shape) == 2 else 1


@dataclass(frozen=True)
class FileFacts:
    """The facts about one file (or concept folder) that decide what each host does with it.

    ``tensors`` are the top-level tensors in the file's own order (a ``.pt``'s insertion order, a
    safetensors file's data order, which is the order ``safetensors.torch.load_file`` returns);
    ``keys`` every top-level key. ``params`` are the tensors under ``string_to_param`` (A1111
    layout). ``stored_name`` is the A1111 ``name`` field (a card's name). ``zip_members`` and
    ``pickle_globals`` are ``None`` when unknown (a rebuilt record, or not a zip).
    """

    path: str
    container: str
    keys: tuple[str, ...] = ()
    tensors: tuple[TensorInfo, ...] = ()
    params: tuple[TensorInfo, ...] = ()
    params_module: bool = False
    stored_name: str | None = None
    string_to_token: bool = False
    #: a concept folder's tensor file name (``learned_embeds.bin`` or ``.safetensors``)
    inner: str | None = None
    zip_members: tuple[str, ...] | None = None
    legacy_pickle: bool = False
    pickle_globals: tuple[str, ...] | None = None
    size: int | None = None
    #: embkit's own reading: (name, member, {slot: (rows, width)}) per embedding; empty when it fails
    embkit: tuple[tuple[str, str | None, Mapping[str, tuple[int, int]]], ...] = ()
    embkit_error: str | None = None
    embkit_format: str | None = None
    #: False when rebuilt from a record: safe-loader facts and 1-D shapes are then unknown
    exact: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    # -- names -------------------------------------------------------------------------------
    @property
    def filename(self) -> str:
        """The file (or folder) name, without its folder."""
        return os.path.basename(os.path.normpath(self.path))

    @property
    def stem(self) -> str:
        """``os.path.splitext`` of the file name: what A1111, Forge, InvokeAI and SD.Next call it."""
        return os.path.splitext(self.filename)[0] or self.filename

    @property
    def ext(self) -> str:
        """The extension, lower case with its dot (``.pt``); ``""`` for a folder."""
        return "" if self.container == "folder" else os.path.splitext(self.filename)[1].lower()

    @property
    def inner_stem(self) -> str | None:
        """A concept folder's tensor file stem (``learned_embeds``)."""
        return os.path.splitext(self.inner)[0] if self.inner else None

    @property
    def bundles(self) -> tuple[TensorInfo, ...]:
        """``bundle_emb.*`` tensors (a LoRA with embeddings)."""
        return tuple(t for t in self.tensors if t.key.startswith(BUNDLE_PREFIX))

    def tensor(self, key: str) -> TensorInfo | None:
        """The top-level tensor under ``key``, or ``None``."""
        return next((t for t in self.tensors if t.key == key), None)


# -- from a file ----------------------------------------------------------------------------------


def facts_of(path: str | os.PathLike) -> FileFacts:
    """Read ``path`` (a file or concept folder) once and gather its facts. A file embkit cannot
    read as an embedding still gets facts from its container (hosts may load it: ComfyUI takes
    the first tensor of any dict); a file no container reader accepts gets the bare minimum."""
    from ..errors import EmbkitError
    from ..io import open_file, read_container

    path = os.fspath(path)
    try:
        loaded = open_file(path, alone=True)  # hosts load each file on its own (no SDXL pairs)
    except EmbkitError as exc:
        try:
            raw, data, container = read_container(path)
        except EmbkitError:
            size = os.path.getsize(path) if os.path.isfile(path) else None
            return FileFacts(path=path, container=_container_by_ext(path), size=size, embkit_error=exc.detail)
        return _facts(path, raw.tree, container, data, raw.metadata, None, str(exc.detail), None)
    return facts_from_loaded(loaded)


def facts_from_loaded(loaded: Any, scanned: Any = None) -> FileFacts:
    """Facts of a file :func:`embkit.io.open_file` already opened (no second read). ``scanned``:
    the :class:`~embkit.scan.ScanResult` of the same bytes when the caller has it (``embkit
    ingest`` scans every file first): the globals its pickles name are taken from it, not scanned
    again."""
    from ..formats.base import matrix_shape

    parts = []
    error = None
    for part in loaded.parts:
        try:
            slots = {s: matrix_shape(t, loaded.path, s) for s, t in part.tensors.items()}
            parts.append((part.name, part.member, slots))
        except Exception as exc:  # noqa: BLE001  a damaged tensor: embkit would refuse the file
            error = str(exc)
    container = loaded.container
    inner = None
    if container == "folder":
        from ..formats.concept_folder import embeds_file

        inner = os.path.basename(embeds_file(loaded.path))
    return _facts(loaded.path, loaded.raw.tree, container, loaded.data, loaded.raw.metadata, tuple(parts), error, loaded.format.id, inner=inner,
                  data_container=loaded.data_container, scanned=scanned)


def _container_by_ext(path: str) -> str:
    from ..formats import container_for_extension

    if os.path.isdir(path):
        return "folder"
    found = container_for_extension(path)
    return found.id if found is not None else "other"


def _tensor_info(key: Any, value: Any) -> TensorInfo | None:
    from ..formats.base import Tensor

    if isinstance(value, Tensor):
        return TensorInfo(str(key), tuple(int(d) for d in value.shape), value.dtype)
    return None


def _facts(path, tree, container, data, meta, parts, error, fmt, *, inner=None, data_container=None, scanned=None) -> FileFacts:
    from ..formats.pickle_globals import ModuleStandIn

    keys: tuple[str, ...] = ()
    tensors: list[TensorInfo] = []
    params: list[TensorInfo] = []
    module = False
    stored = None
    if isinstance(tree, dict):
        keys = tuple(str(k) for k in tree)
        tensors = [t for k, v in tree.items() if (t := _tensor_info(k, v)) is not None]
        s2p = tree.get("string_to_param")
        if isinstance(s2p, ModuleStandIn):
            module = True
            s2p = s2p.state.get("_parameters", {})
        if isinstance(s2p, dict):
            params = [t for k, v in s2p.items() if (t := _tensor_info(k, v)) is not None]
        if isinstance(tree.get("name"), str):
            stored = tree["name"]
    file_container = data_container or container
    if file_container == "safetensors" and data is not None:
        tensors = _safetensors_order(data, path, tensors)
    members, legacy, globals_ = None, False, None
    if file_container == "pickle" and data is not None:
        members, legacy, globals_ = _pickle_facts(data, path, scanned)
    return FileFacts(
        path=path,
        container=container,
        keys=keys,
        tensors=tuple(tensors),
        params=tuple(params),
        params_module=module,
        stored_name=stored,
        string_to_token=isinstance(tree, dict) and "string_to_token" in tree,
        inner=inner,
        zip_members=members,
        legacy_pickle=legacy,
        pickle_globals=globals_,
        size=len(data) if data is not None else None,
        embkit=parts or (),
        embkit_error=error,
        embkit_format=fmt,
    )


def _safetensors_order(data: Any, path: str, tensors: list[TensorInfo]) -> list[TensorInfo]:
    """The tensors in data-offset order: the order ``safetensors.torch.load_file`` returns
    (ComfyUI takes the *first value* of that dict)."""
    from ..formats.safetensors_file import read_header

    try:
        header, _meta, _start = read_header(data, path)
    except Exception:  # noqa: BLE001  already read once; keep the header order
        return tensors
    offset = {k: v["data_offsets"][0] for k, v in header.items() if isinstance(v, dict)}
    return sorted(tensors, key=lambda t: (offset.get(t.key, 0), t.key))


def _pickle_facts(data: Any, path: str, scanned: Any = None) -> tuple[tuple[str, ...] | None, bool, tuple[str, ...] | None]:
    """(zip member names, legacy pickle?, globals the pickles name; from ``scanned``, the scan of
    the same bytes, when given)."""
    from ..scan import scan_bytes

    prefix = bytes(data[:4])
    members = None
    legacy = not prefix.startswith(b"PK\x03\x04")
    if not legacy:
        try:
            with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
                members = tuple(zf.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            members = None
    try:
        found = scanned if scanned is not None else scan_bytes(bytes(data), path)
        globals_ = tuple(found.globals)
    except Exception:  # noqa: BLE001  unknown: the safe-loader check says so
        globals_ = None
    return members, legacy, globals_


# -- from a record (a library row, an Embedding) ----------------------------------------------------


def facts_from_record(
    path: str,
    format: str,
    container: str,
    name: str,
    slots: Mapping[str, tuple[int, int]],
    *,
    stored_name: str | None = None,
    member: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> FileFacts:
    """Facts rebuilt from what embkit recorded about one embedding: its format, container, name,
    stored name, member and slot shapes. Triggers come out exactly; whether a safe loader
    accepts the file is unknown (``exact=False``), and tensors are taken to be 2-D."""
    meta = dict(metadata or {})
    inputs = {s: v for s, v in slots.items() if not s.endswith("_out")}
    first = next(iter(inputs.values()), (1, 768))
    tensors: list[TensorInfo] = []
    params: list[TensorInfo] = []
    keys: list[str] = []
    inner = None
    if format in ("a1111", "a1111-image"):
        params = [TensorInfo(str(meta.get("placeholder", "*")), tuple(first))]
        keys = ["string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"]
        if "string_to_token" not in meta and format == "a1111":
            keys.remove("string_to_token")
        stored_name = stored_name if format == "a1111" else name
    elif format == "kohya":
        key = meta.get("key") if meta.get("key") in _KOHYA_KEYS else "emb_params"
        tensors = [TensorInfo(key, tuple(first))]
        # OneTrainer's output vectors sit beside the input key as ``emp_params_out``
        tensors += [TensorInfo(f"{key}_out", tuple(shape)) for slot, shape in slots.items() if slot.endswith("_out")]
    elif format == "multi":
        t5 = meta.get("t5_key") or "t5"
        for slot, shape in slots.items():
            key = slot.replace("t5", str(t5).removesuffix("_out"), 1) if slot.startswith("t5") else slot
            tensors.append(TensorInfo(key, tuple(shape)))
    elif format == "lora-bundle":
        for slot, shape in slots.items():
            tensors.append(TensorInfo(f"{BUNDLE_PREFIX}{member or name}.{slot}", tuple(shape)))
    else:  # diffusers, concept-folder: the key is the token (a concept folder may name another)
        token = stored_name if format == "concept-folder" and stored_name else name
        tensors = [TensorInfo(token, tuple(first))]
        if format == "concept-folder":
            inner = next((f for f in ("learned_embeds.safetensors", "learned_embeds.bin") if os.path.isfile(os.path.join(path, f))), "learned_embeds.bin")
    keys = keys or [t.key for t in tensors]
    return FileFacts(
        path=path,
        container=container,
        keys=tuple(keys),
        tensors=tuple(tensors),
        params=tuple(params),
        stored_name=stored_name,
        string_to_token="string_to_token" in keys,
        inner=inner,
        embkit=((name, member, dict(slots)),),
        embkit_format=format,
        exact=False,
    )


def facts_from_embedding(emb: Embedding) -> FileFacts:
    """Facts of the file an embedding was read from, rebuilt from the embedding (no I/O). An
    embedding built in memory is taken as written in embkit's default layout, as ``<name>.safetensors``
    keyed by its name (every host triggers that by the name)."""
    slots = {s: (int(a.shape[0]), int(a.shape[1])) for s, a in emb.vectors.items()}
    meta = dict(emb.metadata)
    stored = meta.get("stored_name") if isinstance(meta.get("stored_name"), str) else None
    if emb.source is None:
        fmt = "diffusers" if len(emb.slots) == 1 and not emb.output_slots else "multi"
        return facts_from_record(f"{emb.name}.safetensors", fmt, "safetensors", emb.name, slots, metadata=meta)
    src = emb.source
    return facts_from_record(src.path, src.format, src.container, emb.name, slots, stored_name=stored, member=src.member, metadata=meta)


def facts_from_entry(entry: Any) -> FileFacts:
    """Facts rebuilt from a library :class:`~embkit.library.Entry` (or anything with its fields:
    ``path``, ``format``, ``container``, ``name``, ``stored_name``, ``member``, ``metadata`` and
    ``slots`` of ``slot``/``vectors``/``width``): :func:`facts_from_record` of its row."""
    return facts_from_record(
        entry.path, entry.format, entry.container, entry.name, {s.slot: (s.vectors, s.width) for s in entry.slots},
        stored_name=entry.stored_name, member=entry.member or None, metadata=entry.metadata,
    )

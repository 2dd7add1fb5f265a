"""The one schema every path goes through: :class:`Embedding`, and the tables it rests on.

The slot and family tables live here, at the ground floor, so that everything above (formats,
targets, validation) reads one copy and ``Embedding`` never reaches up for a family lookup. Families
are sets of slots. Width alone is ambiguous (768 is SD1 *or* the CLIP-L half of SDXL/Flux), so
detection reports every candidate and names a family only when the slots match one exactly.

An Embedding is frozen. Its vectors are read-only 2-D float numpy arrays, one per *slot* (a text
encoder: ``clip_l``, ``clip_h``, ``clip_g``, ``t5``), plus OneTrainer's *output* vectors under
``<slot>_out``, which are added to an encoder's output and are never token rows. Every operation
returns a new Embedding; invariants are checked once, here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, TypeAlias, Union

import numpy as np

#: A JSON value: what an embedding's metadata holds (it is checked by a JSON round trip).
JSON: TypeAlias = Union[str, int, float, bool, None, List["JSON"], Dict[str, "JSON"]]
#: An embedding's vectors in one slot: a read-only ``(n, width)`` array of float16, float32 or float64.
Vectors: TypeAlias = "np.ndarray[tuple[int, int], np.dtype[np.float16 | np.float32 | np.float64]]"

#: Input slots in canonical order, with the token width of each encoder.
SLOT_WIDTHS: Mapping[str, int] = types.MappingProxyType(
    {"clip_l": 768, "clip_h": 1024, "clip_g": 1280, "t5": 4096}
)
SLOTS: tuple[str, ...] = tuple(SLOT_WIDTHS)
OUT_SUFFIX = "_out"

#: dtypes an embedding may be stored in. ``bfloat16`` vectors are held as float32 arrays (numpy has
#: no bf16; widening is exact) and remembered as bf16 so writers can narrow them back bit-exactly.
DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")

#: family → the slots its text encoders fill, in canonical order.
FAMILIES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "sd1": ("clip_l",),
        "sd2": ("clip_h",),
        "sdxl": ("clip_l", "clip_g"),
        "sd3": ("clip_l", "clip_g", "t5"),
        "flux": ("clip_l", "t5"),
    }
)

#: ``modelspec.architecture`` prefixes (kohya's and SAI's metadata) → family.
ARCHITECTURES: tuple[tuple[str, str], ...] = (
    ("stable-diffusion-v1", "sd1"), ("stable-diffusion-v2", "sd2"), ("stable-diffusion-xl", "sdxl"), ("stable-diffusion-v3", "sd3"), ("flux", "flux"),
)


def architecture_family(architecture: object) -> str | None:
    """The family a ``modelspec.architecture`` value names (by its prefix), or ``None``."""
    arch = str(architecture).lower()
    for prefix, fam in ARCHITECTURES:
        if arch.startswith(prefix):
            return fam
    return None


#: width → slot, for layouts that store one tensor without saying which encoder it is for.
WIDTH_TO_SLOT: Mapping[int, str] = types.MappingProxyType({w: s for s, w in SLOT_WIDTHS.items()})

#: CLIP prompts hold 75 content tokens (77 with the start and end tokens).
CLIP_TOKEN_LIMIT = 75


def slot_base(slot: str) -> str:
    """``clip_g_out`` → ``clip_g``; an input slot is its own base."""
    return slot[: -len(OUT_SUFFIX)] if slot.endswith(OUT_SUFFIX) else slot


def is_output_slot(slot: str) -> bool:
    """True for OneTrainer's output-vector slots (``<slot>_out``)."""
    return slot.endswith(OUT_SUFFIX) and slot_base(slot) in SLOT_WIDTHS


def slot_order(slot: str) -> tuple[int, int]:
    """Sort key: input slots in canonical order, then output slots in the same order."""
    return (1 if is_output_slot(slot) else 0, SLOTS.index(slot_base(slot)))


def slot_for_width(width: int) -> str | None:
    """The slot whose encoder has this token width, or ``None``."""
    return WIDTH_TO_SLOT.get(int(width))


def families_for(slots: Iterable[str]) -> tuple[str, ...]:
    """Every family whose encoders include all these input slots; an exact match comes first,
    then the others from the fewest extra slots to the most."""
    return _families_for(frozenset(s for s in slots if s in SLOTS))


def family_for(slots: Iterable[str]) -> str:
    """The family whose slots are exactly these, else ``"unknown"`` (the candidates are
    :func:`families_for`)."""
    return _family_for(frozenset(s for s in slots if s in SLOTS))


# Cached on the slot set (a handful of distinct sets exist): a library scan asks once per file.
@functools.lru_cache(maxsize=64)
def _families_for(have: frozenset[str]) -> tuple[str, ...]:
    if not have:
        return ()
    fits = [f for f, fs in FAMILIES.items() if have <= set(fs)]
    return tuple(sorted(fits, key=lambda f: (len(FAMILIES[f]) - len(have), list(FAMILIES).index(f))))


@functools.lru_cache(maxsize=64)
def _family_for(have: frozenset[str]) -> str:
    for fam, fs in FAMILIES.items():
        if set(fs) == have:
            return fam
    return "unknown"


def _frozen_json(value: Any, what: str) -> Any:
    """A JSON-compatible deep copy of ``value`` (``ValueError`` naming ``what`` otherwise)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-compatible ({exc})") from None


@dataclass(frozen=True)
class Sidecars:
    """The files other tools keep beside an embedding, as read: Civitai Helper's
    ``<stem>.civitai.info``, A1111's user metadata ``<stem>.json``, ComfyUI-Lora-Manager's
    ``<stem>.metadata.json`` (each a read-only JSON object, or ``None`` when absent or unreadable)
    and the preview picture's path. ``trained_words`` and ``base_model`` are what those files
    say, normalised (see :mod:`embkit.formats.sidecars`); ``files`` maps each kind found to its
    path; ``warnings`` name the sidecars that could not be read. Kept apart from the file's own
    metadata: they are other tools' notes about the file, not part of it."""

    civitai_info: Mapping[str, JSON] | None = None
    a1111_json: Mapping[str, JSON] | None = None
    metadata_json: Mapping[str, JSON] | None = None
    preview: str | None = None
    trained_words: tuple[str, ...] = ()
    base_model: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    #: The JSON sidecar kinds, in the order their facts are trusted (see the module above).
    KINDS = ("civitai_info", "a1111_json", "metadata_json")

    def __post_init__(self) -> None:
        for kind in self.KINDS:
            value = getattr(self, kind)
            if value is not None:
                if not isinstance(value, Mapping):
                    raise ValueError(f"sidecar {kind} must be a JSON object, got {type(value).__name__}")
                object.__setattr__(self, kind, types.MappingProxyType(_frozen_json(dict(value), f"sidecar {kind}")))
        object.__setattr__(self, "files", types.MappingProxyType({str(k): str(v) for k, v in dict(self.files).items()}))
        object.__setattr__(self, "trained_words", tuple(str(w) for w in self.trained_words))
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings))

    def __bool__(self) -> bool:
        return bool(self.files)

    def __hash__(self) -> int:
        return hash(json.dumps([self.to_dict(), dict(self.files), self.warnings], sort_keys=True))

    def __reduce__(self):
        # the read-only mappings do not pickle: rebuild from plain values (frozen again)
        return (_rebuild_sidecars, (self.to_dict(), dict(self.files), self.warnings))

    def to_dict(self) -> dict[str, Any]:
        """``{"civitai_info", "a1111_json", "metadata_json", "preview", "trained_words",
        "base_model"}`` as plain JSON values (the ``sidecars`` object of ``inspect --json`` holds
        the first four)."""
        out: dict[str, Any] = {k: (None if getattr(self, k) is None else _frozen_json(dict(getattr(self, k)), k)) for k in self.KINDS}
        out["preview"] = self.preview
        out["trained_words"] = list(self.trained_words)
        out["base_model"] = self.base_model
        return out


def _rebuild_sidecars(values: dict, files: dict, warnings: tuple) -> Sidecars:
    """Unpickle :class:`Sidecars` (see ``Sidecars.__reduce__``)."""
    values = dict(values)
    values["trained_words"] = tuple(values.get("trained_words") or ())
    return Sidecars(**values, files=files, warnings=warnings)


@dataclass(frozen=True)
class Source:
    """Where an embedding was read from."""

    path: str
    format: str
    container: str
    #: For files that hold several embeddings, which one this is (bundle name, A1111 key).
    member: str | None = None
    #: The second file of a diffusers SDXL pair (``learned_embeds_2.safetensors``) when the
    #: embedding was read from two files; ``path`` is then the first (CLIP-L) file.
    pair: str | None = None
    #: What other tools keep beside the file (:class:`Sidecars`), ``None`` when nothing was looked
    #: for (bytes, file objects, embeddings built in memory).
    sidecars: Sidecars | None = None
    #: True when read from bytes or a file object: ``path`` is then only the name given (or
    #: ``<bytes>``), not a file on disk.
    in_memory: bool = False


@dataclass(frozen=True, eq=False)
class Embedding:
    """A textual-inversion embedding: a trigger name and token vectors per text-encoder slot.

    Attributes:
        name: the trigger word a user types in a prompt.
        vectors: slot → read-only ``(n, width)`` float array. Build with a plain dict; it is frozen
            into a read-only mapping.
        dtypes: slot → stored dtype name (one of :data:`DTYPES`); defaults to the array's dtype.
        metadata: JSON-compatible values the file carried (``step``, ``sd_checkpoint``,
            ``stored_name``, ``modelspec.*`` …) and ``provenance`` for results of operations.
        source: where it was read from, or ``None`` for an embedding built in memory.
    """

    name: str
    vectors: Mapping[str, Vectors]
    metadata: Mapping[str, JSON] = field(default_factory=dict)
    dtypes: Mapping[str, str] = field(default_factory=dict)
    source: Source | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("an embedding needs a non-empty name")
        if not self.vectors:
            raise ValueError(f"embedding {self.name!r} has no vectors")
        frozen: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        for slot in sorted(self.vectors, key=_slot_key):
            arr = np.asarray(self.vectors[slot])
            if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
                raise ValueError(f"embedding {self.name!r}: slot {slot} must be a non-empty 2-D array, got shape {arr.shape}")
            if arr.dtype.kind != "f" or arr.dtype.itemsize not in (2, 4, 8):
                raise ValueError(f"embedding {self.name!r}: slot {slot} must hold floats, got {arr.dtype}")
            stored = self.dtypes.get(slot, str(arr.dtype))
            if stored not in DTYPES:
                raise ValueError(f"embedding {self.name!r}: slot {slot} has unknown dtype {stored!r}")
            if stored == "bfloat16" and arr.dtype != np.float32:
                arr = arr.astype(np.float32)
            if arr.flags.writeable or not arr.flags.c_contiguous:
                # backed by immutable bytes: an array owning its memory could be made writeable again
                arr = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=arr.dtype).reshape(arr.shape)
            frozen[slot] = arr
            dtypes[slot] = stored
        try:
            meta = json.loads(json.dumps(dict(self.metadata)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"embedding {self.name!r}: metadata must be JSON-compatible ({exc})") from None
        object.__setattr__(self, "vectors", types.MappingProxyType(frozen))
        object.__setattr__(self, "dtypes", types.MappingProxyType(dtypes))
        object.__setattr__(self, "metadata", types.MappingProxyType(meta))

    def __reduce__(self):
        # pickle and copy.deepcopy (multiprocessing, node caches): the read-only mappings do not
        # pickle, so an embedding is rebuilt from plain dicts (and frozen again)
        return (_rebuild, (self.name, dict(self.vectors), dict(self.metadata), dict(self.dtypes), self.source))

    # -- views -----------------------------------------------------------------------------
    @property
    def slots(self) -> tuple[str, ...]:
        """Input slots present, in canonical order (``clip_l``, ``clip_h``, ``clip_g``, ``t5``)."""
        return tuple(s for s in self.vectors if not is_output_slot(s))

    @property
    def output_slots(self) -> tuple[str, ...]:
        """Output-vector slots present (``clip_l_out`` …)."""
        return tuple(s for s in self.vectors if is_output_slot(s))

    @property
    def num_vectors(self) -> int:
        """Token rows the embedding occupies in a prompt: the most rows of any input slot."""
        counts = [self.vectors[s].shape[0] for s in self.slots] or [0]
        return max(counts)

    @property
    def widths(self) -> dict[str, int]:
        """Slot → vector width."""
        return {s: int(a.shape[1]) for s, a in self.vectors.items()}

    @property
    def families(self) -> tuple[str, ...]:
        """Every model family this embedding's slots fit (see :func:`families_for`)."""
        return families_for(self.slots)

    @property
    def family(self) -> str:
        """The family whose slots match exactly, or ``"unknown"``."""
        return family_for(self.slots)

    def replace(self, **changes: Any) -> "Embedding":
        """A new Embedding with some fields changed (the original is untouched)."""
        if "vectors" in changes and "dtypes" not in changes:
            changes["dtypes"] = {k: v for k, v in self.dtypes.items() if k in changes["vectors"]}
        return dataclasses.replace(self, **changes)

    @property
    def sidecars(self) -> Sidecars:
        """What other tools keep beside the file this was read from (Civitai Helper, A1111,
        Lora Manager, the preview); empty for an embedding built in memory or from bytes."""
        found = self.source.sidecars if self.source is not None else None
        return found if found is not None else Sidecars()

    @property
    def provenance(self) -> list[dict[str, JSON]]:
        """The recorded operations (``metadata["provenance"]``), oldest first. A file may carry
        anything under that key; only the records (dicts) of a list count."""
        history = self.metadata.get("provenance")
        return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []

    def with_provenance(self, operation: str, inputs: list[dict], **params: Any) -> "Embedding":
        """A copy whose metadata records one more operation (its inputs, their hashes, parameters)."""
        meta = dict(self.metadata)
        history = self.provenance
        history.append({"operation": operation, "inputs": inputs, "params": params})
        meta["provenance"] = history
        return self.replace(metadata=meta)

    def same_vectors(self, other: "Embedding") -> bool:
        """True when both hold the same slots with bit-identical values."""
        return self.vectors.keys() == other.vectors.keys() and all(
            self.vectors[s].shape == other.vectors[s].shape and np.array_equal(self.vectors[s], other.vectors[s])
            for s in self.vectors
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{s}={a.shape[0]}x{a.shape[1]}" for s, a in self.vectors.items())
        return f"Embedding(name={self.name!r}, {shapes})"


def _slot_key(slot: str) -> tuple[int, int]:
    if slot_base(slot) not in SLOT_WIDTHS:
        raise ValueError(f"unknown slot {slot!r}; known slots are {', '.join(SLOTS)} and <slot>_out")
    return slot_order(slot)


def _rebuild(name: str, vectors: dict, metadata: dict, dtypes: dict, source: Source | None) -> Embedding:
    """Unpickle an :class:`Embedding` (see ``Embedding.__reduce__``)."""
    return Embedding(name=name, vectors=vectors, metadata=metadata, dtypes=dtypes, source=source)

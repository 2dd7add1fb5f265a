"""Shared pieces of the writers: typed loss warnings, the plan a writer returns, stored arrays.

A layout writer never touches the disk. It turns an :class:`~embkit.schema.Embedding` into a
:class:`Plan`: the bytes of each output file (or a function that fills a folder) and the list of
:class:`Loss` warnings saying what the target cannot hold. :func:`embkit.writing.write` checks the
losses (``strict``) and the targets before anything is written, then writes atomically.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import WriteError
from ..schema import SLOT_WIDTHS, Embedding, architecture_family, is_output_slot
from .base import narrow_bf16

#: Metadata keys that describe a source file's layout rather than the embedding: they are not
#: carried over and their absence in the target is not a loss.
LAYOUT_KEYS = frozenset({"string_to_token", "stored_name", "placeholder", "key", "t5_key", "format", "token_identifier", "lora_tensors"})
#: modelspec keys the kohya writer derives from the slots: not a loss where another format drops them
DERIVED_KEYS = frozenset({"modelspec.sai_model_spec", "modelspec.architecture", "modelspec.implementation"})
#: safetensors ``__metadata__`` key holding embkit's JSON metadata (read back by embkit.io).
META_JSON_KEY = "embkit.metadata"


@dataclass(frozen=True)
class Loss:
    """Something a conversion cannot carry into the target: a typed warning, returned as data.

    ``code`` is one of ``slot-dropped``, ``output-vectors-dropped``, ``metadata-dropped``,
    ``precision-lost``, ``dtype-changed``, ``trigger-renamed``; ``slot`` names the slot concerned.
    """

    code: str
    message: str
    slot: str | None = None

    def to_dict(self) -> dict:
        """``{"code", "message", "slot"}`` for JSON reports."""
        return {"code": self.code, "message": self.message, "slot": self.slot}

    def __str__(self) -> str:
        return self.message


@dataclass
class Output:
    """One thing to write: a file's bytes, or a folder filled by ``fill(tmp_folder)``; ``owns``
    names the files such a folder holds, the only ones an overwrite may replace."""

    path: str
    data: bytes | list[bytes] | None = None
    fill: Callable[[str], None] | None = None
    owns: tuple[str, ...] = ()
    #: the dict the file holds, before it becomes bytes (tensors as ``TensorData``, or as arrays
    #: in a card): what a host's loader gets back from the file, for :mod:`embkit.statedicts`
    tree: Any = None

    def __repr__(self) -> str:  # the bytes would fill a screen
        size = len(self.data) if isinstance(self.data, bytes) else sum(map(len, self.data)) if self.data else 0
        return f"Output(path={self.path!r}, {'folder' if self.fill else f'{size} bytes'})"


@dataclass
class Plan:
    """What a writer will write, and what it loses doing so."""

    outputs: list[Output]
    losses: list[Loss] = field(default_factory=list)
    #: the format id written (set by :func:`embkit.writing.plan`)
    format: str = ""


def stored_array(emb: Embedding, slot: str) -> tuple[str, np.ndarray]:
    """(dtype name, little-endian C-contiguous array of the bytes to store) for one slot.

    The embedding has already been cast by :func:`embkit.writing.write`, so these casts are exact;
    bf16 becomes its uint16 bit patterns.
    """
    dtype = emb.dtypes[slot]
    values = emb.vectors[slot]
    if dtype == "bfloat16":
        return dtype, narrow_bf16(values)
    return dtype, np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))


def pick_slot(emb: Embedding, fmt_id: str, options: dict, losses: list[Loss], *, path: str) -> str:
    """The one input slot a single-slot format stores (``slot=`` option, else the first), with a
    loss for every other slot and for output vectors."""
    wanted = options.get("slot")
    if wanted is not None:
        if wanted not in emb.vectors or is_output_slot(wanted):
            raise WriteError(f"slot={wanted!r}: {emb.name!r} has input slots {', '.join(emb.slots)}", path=path)
        slot = wanted
    else:
        slot = emb.slots[0] if emb.slots else None
        if slot is None:
            raise WriteError(f"{emb.name!r} holds only output vectors; {fmt_id} stores token vectors", path=path)
    for other in emb.slots:
        if other != slot:
            losses.append(Loss("slot-dropped", f"{fmt_id} holds one encoder: {other} ({_shape(emb, other)}) dropped, {slot} kept", other))
    output_losses(emb, fmt_id, losses)
    check_width(emb, slot, fmt_id, path)
    return slot


def output_losses(emb: Embedding, fmt_id: str, losses: list[Loss]) -> None:
    """A loss for each OneTrainer output-vector slot (only the multi layout keeps them)."""
    for out in emb.output_slots:
        losses.append(Loss("output-vectors-dropped", f"{fmt_id} cannot hold output vectors: {out} ({_shape(emb, out)}) dropped", out))


def check_width(emb: Embedding, slot: str, fmt_id: str, path: str) -> None:
    """Single-slot layouts are read back by width: refuse a width no encoder has."""
    width = emb.vectors[slot].shape[1]
    if width != SLOT_WIDTHS[slot]:
        raise WriteError(
            f"{slot} vectors of {emb.name!r} are {width} wide, not {SLOT_WIDTHS[slot]}; a {fmt_id} file could not be read back as {slot}",
            path=path,
        )


def metadata_losses(emb: Embedding, fmt_id: str, held: Iterable[str], losses: list[Loss]) -> None:
    """One ``metadata-dropped`` loss listing the keys the target cannot hold (``held="*"``: all)."""
    held = set(held)
    if "*" in held:
        return
    names = (emb.name, emb.metadata.get("stored_name"))
    dropped = [
        k
        for k, v in emb.metadata.items()
        if k not in held and k not in LAYOUT_KEYS and k not in DERIVED_KEYS and v is not None
        and not (k == "modelspec.title" and v in names)  # the title kohya files get is the name
    ]
    if dropped:
        losses.append(Loss("metadata-dropped", f"{fmt_id} file cannot hold metadata: {', '.join(sorted(dropped))}"))


def trigger_loss(emb: Embedding, stem: str, fmt_id: str, losses: list[Loss], stored: str | None = None) -> None:
    """Formats triggered by the file name: warn when the file name is not the embedding's name.
    ``stored``: the name the file stores (an A1111 file's ``name``, which diffusers triggers it by):
    when it is not the file name either, the message says that the hosts will disagree."""
    if stem != emb.name:
        split = (f"; diffusers types its stored name {stored!r} (--rename {stem} makes every host type {stem!r})"
                 if stored is not None and stored != stem else "")
        losses.append(
            Loss("trigger-renamed", f"{fmt_id} files are triggered by their file name: {stem!r}, not {emb.name!r}{split}")
        )


def safetensors_metadata(emb: Embedding, extra: dict[str, str] | None = None, *, all_json: bool = False) -> dict[str, str]:
    """``__metadata__`` for a safetensors file: ``format: pt``, string ``modelspec.*`` keys as
    themselves, everything else as JSON under :data:`META_JSON_KEY` (everything with
    ``all_json``: a concept folder's reader keeps only that key)."""
    meta: dict[str, str] = {"format": "pt"}
    rest: dict[str, Any] = {}
    stale = stale_keys(emb)
    for key, value in emb.metadata.items():
        if key == "format" or (key in LAYOUT_KEYS and key != "stored_name") or key in stale:
            continue
        if key.startswith("modelspec.") and isinstance(value, str) and not all_json:
            meta[key] = value
        else:
            rest[key] = value
    meta.update(extra or {})
    if rest:
        meta[META_JSON_KEY] = json.dumps(_strict_json(rest), ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return meta


def stale_keys(emb: Embedding) -> frozenset[str]:
    """Metadata that stopped being true of ``emb`` and is not written: a ``modelspec.architecture``
    naming another family than its slots (a port, a slot dropped), with the keys derived with it
    (kohya's writer then writes the true ones)."""
    stale: set[str] = set()
    fam = architecture_family(emb.metadata.get("modelspec.architecture", "")) if "modelspec.architecture" in emb.metadata else None
    if fam is not None and (fam != emb.family if emb.family != "unknown" else fam not in emb.families):
        stale |= DERIVED_KEYS
    return frozenset(stale)


def _strict_json(value: Any) -> Any:
    """NaN and infinities as the strings embkit's reader gives back (strict JSON for other tools)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def _shape(emb: Embedding, slot: str) -> str:
    n, d = emb.vectors[slot].shape
    return f"{n}x{d}"


#: accepted spellings of ``dtype=`` → stored dtype name
DTYPE_ALIASES = {
    "fp32": "float32", "float32": "float32", "f32": "float32", "float": "float32", "single": "float32",
    "fp16": "float16", "float16": "float16", "f16": "float16", "half": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp64": "float64", "float64": "float64", "f64": "float64",
}


def dtype_name(dtype: str) -> str:
    """``fp16`` → ``float16`` and so on; ``ValueError`` for anything else."""
    try:
        return DTYPE_ALIASES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use fp32, fp16, bf16 or fp64 (also float32, float16, half, bfloat16, float64)") from None


def _rounded(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (narrow_bf16(values).astype(np.uint32) << 16).view(np.float32)
    with np.errstate(over="ignore"):
        return values.astype(np.dtype(dtype))


def cast(emb: Embedding, dtype: str | None, losses: list[Loss], *, fmt_id: str = "") -> Embedding:
    """The embedding with every slot stored as ``dtype`` (``None``: each slot's own stored dtype),
    values rounded the way that dtype stores them; a ``precision-lost`` loss per slot whose
    values change (a narrower dtype, or values the stored dtype cannot hold exactly)."""
    vectors, dtypes = {}, {}
    changed_any = False
    for slot, values in emb.vectors.items():
        target = dtype_name(dtype) if dtype else emb.dtypes[slot]
        if target == values.dtype.name == emb.dtypes[slot]:
            vectors[slot], dtypes[slot] = values, target  # stored as held: nothing to round
            continue
        new = _rounded(values, target)
        wide_new, wide_old = new.astype(np.float64), values.astype(np.float64)
        same = np.equal(wide_new, wide_old) | (np.isnan(wide_new) & np.isnan(wide_old))
        if not same.all():
            bad = int((~same).sum())
            finite = np.isfinite(wide_new) & ~same
            err = float(np.abs(wide_new[finite] - wide_old[finite]).max()) if finite.any() else float("inf")
            why = f"{fmt_id} stores {target}" if fmt_id else f"stored as {target}, as asked"
            losses.append(
                Loss("precision-lost", f"{slot}: {why}: {bad} of {values.size} values change (largest change {err:.3g})", slot)
            )
        if target != emb.dtypes[slot] or new.dtype != values.dtype:
            changed_any = True
        vectors[slot], dtypes[slot] = new, target
    return emb.replace(vectors=vectors, dtypes=dtypes) if changed_any else emb

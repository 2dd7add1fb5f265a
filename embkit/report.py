"""The inspection report: one JSON-compatible dict per file, the contract of ``embkit inspect --json``.

Kept apart from the CLI so that other tools (and the library registry) build the same objects; the
field list is documented in ``docs/inspect-json.md`` and must stay stable.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .errors import EmbkitError
from .folder import Found, error_reason, skipped_entry
from .folder import walk as walk_found
from .hashes import file_hashes
from .io import Loaded, embedding_of, open_data, open_file
from .schema import CLIP_TOKEN_LIMIT, OUT_SUFFIX, Embedding

#: Version of the JSON report's shape; bumped only on incompatible changes.
REPORT_VERSION = 1


def slot_stats(values: np.ndarray, dtype: str) -> dict[str, Any]:
    """Vectors, width, dtype, per-vector L2 norms and min/max/mean/std of one slot."""
    # a hostile file's values (1e308, NaN) overflow the sums: the results say so (null), without
    # numpy warnings, which a caller running with -W error would get as exceptions
    with np.errstate(all="ignore"):
        v = values.astype(np.float64)
        ok = np.isfinite(v)
        finite = bool(ok.all())
        # a row holding NaN or infinity has no norm (null); the other rows keep theirs
        norms = np.linalg.norm(np.where(ok, v, 0.0), axis=1)
        norms = [None if not row_ok else _num(x) for x, row_ok in zip(norms, ok.all(axis=1))]
        values_ok = v[ok]  # the statistics cover the finite values only
        some = values_ok.size > 0
        stats = [_num(f()) if some else None for f in (values_ok.min, values_ok.max, values_ok.mean, values_ok.std)]
    return {
        "vectors": int(v.shape[0]),
        "dim": int(v.shape[1]),
        "dtype": dtype,
        "norms": norms,
        "min": stats[0],
        "max": stats[1],
        "mean": stats[2],
        "std": stats[3],
        "finite": finite,
    }


def _num(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if np.isfinite(x) else None


def describe_embedding(emb: Embedding, warnings: Iterable[str] = ()) -> dict[str, Any]:
    """The per-embedding part of a report: name, family, families, slots, metadata, warnings."""
    out_warnings = list(warnings)
    for slot, arr in emb.vectors.items():
        if not np.isfinite(arr).all():
            out_warnings.append(f"{slot} holds NaN or infinite values")
        zero = int((arr == 0).all(axis=1).sum())  # not a sum of |values|: that overflows on 1e308
        if zero == arr.shape[0] and slot + OUT_SUFFIX in emb.vectors:
            out_warnings.append(
                f"{slot} is all zeros and the trained vectors are in {slot}{OUT_SUFFIX}: OneTrainer's output-embedding option. Only "
                "OneTrainer applies output vectors; a host that reads the token rows (ComfyUI takes the first tensor) gets zeros"
            )
        elif zero:
            out_warnings.append(f"{slot} has {zero} all-zero vector(s)")
    if emb.num_vectors > CLIP_TOKEN_LIMIT:
        out_warnings.append(f"{emb.num_vectors} vectors exceed a CLIP prompt's {CLIP_TOKEN_LIMIT} tokens")
    return {
        "name": emb.name,
        "family": emb.family,
        "families": list(emb.families),
        "vectors": emb.num_vectors,
        "slots": {slot: slot_stats(arr, emb.dtypes[slot]) for slot, arr in emb.vectors.items()},
        "metadata": dict(emb.metadata),
        "warnings": out_warnings,
    }


#: ``slot_extra(embedding, slot) -> dict``: fields a caller adds to each slot of a report
#: (``inspect --nearest`` adds ``nearest``).
SlotExtra = Callable[[Embedding, str], dict]


def describe_file(path: str | os.PathLike, format: str | None = None, *, slot_extra: SlotExtra | None = None) -> dict[str, Any]:
    """The full report object for one file (raises :class:`EmbkitError` when it cannot be read).

    Top-level fields describe the file's first embedding; ``embeddings`` lists every embedding
    the file holds (one for most files, several for LoRA bundles and multi-token files).
    """
    return describe_loaded(open_file(path, format), os.fspath(path), slot_extra)


def describe_data(data: Any, format: str | None = None, *, name: str | None = None, slot_extra: SlotExtra | None = None) -> dict[str, Any]:
    """:func:`describe_file` for bytes or a binary file object (``embkit inspect -``)."""
    loaded = open_data(data, format, name=name)
    return describe_loaded(loaded, loaded.path, slot_extra)


def describe_loaded(loaded: Loaded, path: str, slot_extra: SlotExtra | None = None) -> dict[str, Any]:
    """The report object for a file already opened (``path``: as the caller named it)."""
    from .hosts import where
    from .hosts.facts import facts_from_loaded

    facts = facts_from_loaded(loaded)
    embs = []
    for part in loaded.parts:
        emb = embedding_of(loaded, part)
        e = describe_embedding(emb, part.warnings)
        if part.member is not None:
            e["member"] = part.member
        e["hosts"] = where(facts, embedding=emb)
        for slot, stats in e["slots"].items() if slot_extra is not None else ():
            stats.update(slot_extra(emb, slot))
        embs.append(e)
    first = embs[0]
    report = {
        "path": path,
        "format": loaded.format.id,
        "container": loaded.container,
        "name": first["name"],
        "family": first["family"],
        "families": first["families"],
        "vectors": first["vectors"],
        "slots": first["slots"],
        "hashes": file_hashes(loaded.data, loaded.data_container),
        "size": len(loaded.data),
        "metadata": first["metadata"],
        "warnings": first["warnings"],
        "hosts": first["hosts"],
        "embeddings": embs,
    }
    if loaded.pair is not None:
        report["pair"] = {
            "clip_l": {"path": loaded.file, "sha256": report["hashes"]["sha256"], "size": len(loaded.data)},
            "clip_g": {"path": loaded.pair, "sha256": file_hashes(loaded.pair_data, "")["sha256"], "size": len(loaded.pair_data)},
        }
    report.update(sidecar_fields(loaded.sidecars))
    if loaded.sidecars is not None:
        report["warnings"] = first["warnings"] = [*first["warnings"], *loaded.sidecars.warnings]
    return report


def sidecar_fields(sidecars: Any) -> dict[str, Any]:
    """``sidecars`` (each kind's JSON object or ``null``, the preview's path or ``null``), and
    ``trained_words`` / ``base_model`` when a sidecar names them: the report's sidecar fields."""
    if sidecars is None:
        return {"sidecars": {"civitai_info": None, "a1111_json": None, "metadata_json": None, "preview": None}}
    found = sidecars.to_dict()
    out: dict[str, Any] = {"sidecars": {k: found[k] for k in ("civitai_info", "a1111_json", "metadata_json", "preview")}}
    if sidecars.trained_words:
        out["trained_words"] = list(sidecars.trained_words)
    if sidecars.base_model:
        out["base_model"] = sidecars.base_model
    return out


def error_entry(path: str | os.PathLike, exc: EmbkitError) -> dict[str, Any]:
    """The report object for a file that could not be read."""
    return {"path": os.fspath(path), "error": exc.to_dict()}


def walk(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Expand folders into the embedding files (and concept folders) under them, sorted; files
    :mod:`embkit.folder` skips by name (pictures, sidecars, previews, text) are left out; plain
    files are passed through whatever their extension. The walk is :func:`embkit.walk.walk`:
    regular files only, no link out of the folder, no recursion."""
    for entry in walk_entries(paths):
        if entry.skip is None:
            yield entry.path


def walk_entries(paths: Iterable[str | os.PathLike]) -> Iterator[Found]:
    """Everything :func:`embkit.folder.walk` finds under ``paths``, each with why it is skipped by
    its name (``skip``), whether it was found in a folder (``walked``)."""
    return walk_found(paths)


def not_an_embedding(path: str, exc: EmbkitError) -> bool:
    """Whether a file met while walking a folder is simply not an embedding, not the user's
    problem (:func:`embkit.folder.error_reason`): a file that holds no embedding (a model, an XTI
    file), a picture without an embedding card, a model checkpoint. Every walking command skips
    such files, with the reason."""
    return error_reason(path, exc.code, exc.detail) is not None


def walk_marked(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, bool]]:
    """:func:`walk`, each path with whether it was found by walking a folder (a file met that way
    that is no embedding is skipped; one named directly is not)."""
    for entry in walk_entries(paths):
        if entry.skip is None:
            yield entry.path, entry.walked


def iter_reports(paths: Iterable[str | os.PathLike], format: str | None = None, *, stdin: Any = None,
                 slot_extra: SlotExtra | None = None) -> Iterator[tuple[dict[str, Any], EmbkitError | None]]:
    """``(entry, error)`` for every file under ``paths``, in order: a report and ``None`` for a
    file read; an error entry (:func:`error_entry`) and its error for a file that could not be read;
    a skipped entry (``{"path", "skipped": reason}``, :func:`embkit.folder.skipped_entry`) and
    ``None`` for a file in a walked folder that is no embedding (by its name, or after reading it:
    :func:`embkit.folder.error_reason`; a file named directly is always reported). With ``stdin``
    (a binary file object), the path ``-`` reads it; ``slot_extra`` adds fields to every slot (see
    :data:`SlotExtra`)."""
    paired: set[str] = set()  # both files of a pair named: one report
    for found in walk_entries(paths):
        p = found.path
        if found.skip is not None:
            yield skipped_entry(p, found.skip), None
            continue
        try:
            if p == "-" and stdin is not None:
                yield describe_data(stdin, format, name="<stdin>", slot_extra=slot_extra), None
                continue
            if os.path.realpath(p) in paired:
                continue
            report = describe_file(p, format, slot_extra=slot_extra)
            if "pair" in report:
                paired.update(os.path.realpath(report["pair"][s]["path"]) for s in ("clip_l", "clip_g"))
            yield report, None
        except EmbkitError as exc:
            reason = error_reason(p, exc.code, exc.detail) if found.walked else None
            if reason is not None:
                yield skipped_entry(p, reason), None
            else:
                yield error_entry(p, exc), exc


def inspect_paths(paths: Iterable[str | os.PathLike], format: str | None = None) -> list[dict[str, Any]]:
    """Reports (and error entries) for every file under ``paths`` (see :func:`iter_reports`);
    skipped files are left out."""
    return [rep for rep, _exc in iter_reports(paths, format) if "skipped" not in rep]

"""``embkit.ingest(sources, out, ...)``: find the files, skip what an earlier run finished, run the
stages (local pool or Ray), write the manifest, fill a library, and say what happened."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .manifest import MANIFEST_JSONL, MANIFEST_PARQUET, STATUSES, have_pyarrow, jsonl_bytes, no_embedding_reason, parquet_bytes, sorted_rows


@dataclass
class IngestSummary:
    """What a run did. ``counts``: rows by status; ``reused``: files whose SHA-256 matched their row
    from an earlier run on DIR (skipped, unless a converted file of theirs was gone and was made
    again); ``duplicates``: files whose bytes another file already has; ``manifest``: the files
    written (JSONL always, Parquet when pyarrow is there); ``ignored``: ``(path, reason)`` of the
    files met in SOURCE folders that are no embedding (the folder rule, :mod:`embkit.folder`: by
    their names, never opened, or read and ``skipped``); ``exit_code``: the walk rule over the rows."""

    out: str
    files: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    duplicates: int = 0
    converted: int = 0
    previews: int = 0
    links_skipped: int = 0
    bad_names: list[str] = field(default_factory=list)
    mode: str = "local"
    workers: int | None = 1
    manifest: dict[str, str] = field(default_factory=dict)
    library: dict | None = None
    seconds: float = 0.0
    ignored: list[tuple[str, str]] = field(default_factory=list)
    #: the rows, sorted by path (not part of :meth:`to_dict`: read the manifest for them)
    rows: list[dict] = field(default_factory=list, repr=False)

    @property
    def exit_code(self) -> int:
        """The exit status of every folder walk (:func:`embkit.folder.walk_exit_code`) over the
        rows (:func:`~embkit.ingest.manifest.row_exit_code`): 0 when every file was ingested or
        passed over; 5 when any is unsafe; else the failures' code when they share one (3 damaged,
        8 not converted loss-free …), 1 when they differ; 4 when no embedding file was found."""
        from ..folder import walk_exit_code
        from .manifest import SKIPPED, row_exit_code

        found = sum(1 for row in self.rows if row["status"] != SKIPPED)
        return walk_exit_code((row_exit_code(row) for row in self.rows), found)

    def to_dict(self) -> dict:
        """A JSON-ready dict (``embkit ingest --json``), without the rows."""
        from ..folder import skipped_entry

        return {
            "out": self.out,
            "files": self.files,
            "counts": self.counts,
            "reused": self.reused,
            "duplicates": self.duplicates,
            "converted": self.converted,
            "previews": self.previews,
            "links_skipped": self.links_skipped,
            "bad_names": self.bad_names,
            "mode": self.mode,
            "workers": self.workers,
            "manifest": self.manifest,
            "library": self.library,
            "ignored": [skipped_entry(p, r) for p, r in self.ignored],
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
        }


def ingest(
    sources: Iterable[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    ray: str | None = None,
    previews: Any = None,
    model: str | None = None,
    device: str = "auto",
    library: str | os.PathLike | None = None,
    jobs: int | None = None,
    batch_size: int = 256,
    actors: int = 1,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float = 1.0,
    progress: Callable[[str, int, int], None] | None = None,
    ray_progress: bool = False,
) -> IngestSummary:
    """Ingest every embedding file under ``sources`` into ``out`` (see docs/ingest.md).

    ``sources``: folders, files, or manifests of paths (``.txt``/``.lst``, ``.jsonl`` or
    ``.parquet`` with a ``path`` column). ``ray``: ``None`` runs a local process pool of ``jobs``
    workers; ``"auto"``, ``"local"`` or a cluster address runs a Ray Data pipeline
    (``embkit-ti[ray]``). ``previews``: ``True`` or a
    :class:`~embkit.diffusers.previews.PreviewSettings` to render previews with ``model`` (a
    family's built-in tiny pipeline when ``None``) on ``device``; on Ray, ``actors`` actors with
    ``gpus_per_actor`` GPUs each (default: one when the cluster has GPUs and ``device`` is not
    ``cpu``). ``library``: an embkit library database to record every file in.
    ``progress(stage, done, total)`` is called as batches finish (local runs).

    Re-running on the same sources and ``out`` skips every file whose SHA-256 matches its row
    from an earlier run (finished batches are committed as they end, so a killed run resumes).
    Unsafe and broken files become rows with their reason; they never stop the run (the summary's
    ``exit_code`` says what they mean for a script). Files in SOURCE folders that are no embedding
    are skipped with the reason (``ignored``; the folder rule). Inputs are never written: ``out``
    overlapping a SOURCE folder, or holding a SOURCE file, is refused before anything is read
    (:class:`~embkit.errors.WriteError`).
    """
    from .local import default_jobs, run_cpu, run_previews
    from .previews import preview_key
    from .shards import Lock, compact, load_done
    from .sources import check_output, discover
    from .steps import StepSettings

    start = time.perf_counter()
    if ray is not None:
        from .ray_run import import_ray

        import_ray()  # a missing extra is said before any work is done
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths = [os.fspath(s) for s in sources]
    out = os.path.abspath(os.path.expanduser(os.fspath(out)))
    check_output(out, paths)  # never into what is read: before anything is read or made
    found = discover(paths, out)  # (checks the paths of manifests too, before DIR is made)
    os.makedirs(out, exist_ok=True)
    settings = StepSettings(out=out)
    plan = _preview_plan(previews, model, device)
    key = preview_key(model, plan[2]) if plan else None
    workers = jobs or default_jobs()
    # a cluster's workers are the cluster's business; locally (and in a private Ray) they are ours
    summary = IngestSummary(out=out, mode="local" if ray is None else f"ray ({ray})", workers=workers if ray in (None, "local") else None)
    summary.links_skipped, summary.bad_names = found.links_skipped, found.bad_names
    with Lock(out):
        done = load_done(out, key)
        items = found.items
        for item in items:
            old = done.get(item["path"])
            item["prior"] = json.dumps(old, ensure_ascii=False) if old else None
        if ray is not None and items:
            from .ray_run import RayOptions, run_ray

            options = RayOptions(ray, jobs, batch_size, actors, gpus_per_actor, cpus_per_actor, ray_progress)
            rows = run_ray(items, settings, options, plan)
        else:
            rows = run_cpu(items, settings, workers, _Tick(progress, "read", len(items)) if progress else None, batch_size)
            if plan is not None:
                rows = run_previews(rows, out, plan[0], plan[1], plan[2], _Tick(progress, "preview", len(rows)) if progress else None)
            rows = sorted_rows(rows)
        summary.manifest = _write_manifests(out, rows, parquet_written=ray is not None and bool(items))
        compact(out, rows, done)
    by_path = {item["path"]: item for item in items}
    summary.reused = sum(1 for row in rows if _reused(by_path.get(row["path"], {}), row))
    _count(summary, rows)
    read_skips = [(row["path"], reason) for row in rows if row["status"] == "skipped" and (reason := no_embedding_reason(row))]
    summary.ignored = sorted(found.ignored + read_skips)
    if library is not None:
        summary.library = _fill_library(library, rows)
    summary.rows = rows
    summary.seconds = time.perf_counter() - start
    return summary


class _Tick:
    """Turns "n more done" into ``progress(stage, done, total)``."""

    def __init__(self, progress: Callable[[str, int, int], None], stage: str, total: int):
        self.progress, self.stage, self.total, self.done = progress, stage, total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        self.progress(self.stage, self.done, self.total)


def _preview_plan(previews: Any, model: str | None, device: str):
    """``(model, device, PreviewSettings)`` or ``None``."""
    if previews is None or previews is False:
        return None
    from ..diffusers.previews import PreviewSettings

    settings = previews if isinstance(previews, PreviewSettings) else PreviewSettings()
    return (model, device, settings)


def _reused(item: dict, row: dict) -> bool:
    if not item.get("prior") or not row.get("sha256"):
        return False
    return any(old.get("sha256") == row["sha256"] for old in json.loads(item["prior"]))


def _write_manifests(out: str, rows: list[dict], *, parquet_written: bool) -> dict[str, str]:
    """``DIR/manifest.jsonl`` always; ``DIR/manifest.parquet`` too when pyarrow is installed (a Ray
    run has written it already). Each is replaced whole, atomically."""
    from ..atomic import write_bytes

    written = {}
    if not parquet_written and have_pyarrow():
        write_bytes(os.path.join(out, MANIFEST_PARQUET), parquet_bytes(rows), overwrite=True)
    if parquet_written or have_pyarrow():
        written["parquet"] = os.path.join(out, MANIFEST_PARQUET)
    write_bytes(os.path.join(out, MANIFEST_JSONL), jsonl_bytes(rows), overwrite=True)
    written["jsonl"] = os.path.join(out, MANIFEST_JSONL)
    return written


def _count(summary: IngestSummary, rows: list[dict]) -> None:
    summary.files = len(rows)
    summary.counts = {s: 0 for s in STATUSES}
    seen: set[str] = set()
    for row in rows:
        summary.counts[row["status"]] = summary.counts.get(row["status"], 0) + 1
        sha = row.get("sha256")
        if sha:
            summary.duplicates += sha in seen
            seen.add(sha)
        summary.converted += len(row["converted"])
        summary.previews += sum(1 for p in row["previews"] or [] if p["path"])


def _fill_library(db: str | os.PathLike, rows: list[dict]) -> dict:
    """Record every file that was read in the library at ``db`` (no file is read again)."""
    from ..library import Library
    from .record import examine_result

    now = time.time()
    results = [r for r in (examine_result(row, now) for row in rows) if r is not None]
    with Library(db) as lib:
        report = lib.store(results)
    return report.to_dict()


__all__ = ["ingest", "IngestSummary"]

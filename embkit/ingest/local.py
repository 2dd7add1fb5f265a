"""The single-machine runner: the CPU stages in a local process pool, then previews in this process.

Batches of items go to :func:`embkit.ingest.steps.process_batch` in ``concurrent.futures``
worker processes (the same function a Ray task runs); each batch commits its own shard, so a
killed run keeps every finished batch. Previews follow, in batches, through one
:class:`~embkit.ingest.previews.PreviewStep` (one pipeline load for the whole run).
"""

from __future__ import annotations

import os
from typing import Callable

from .steps import StepSettings, process_batch

#: Items per batch: a batch is one shard and one durable commit (two syncfs, an fsync), which
#: costs about as much as reading, scanning, recording and converting 64 files here: big enough
#: to spread that, small enough that a crash loses little and the last batches end together.
BATCH = 256
#: Below this many items, worker processes cost more than they save.
PARALLEL_ABOVE = 32


def batches(items: list, size: int) -> list[list]:
    """``items`` cut into lists of at most ``size``."""
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_cpu(items: list[dict], settings: StepSettings, jobs: int, progress: Callable[[int], None] | None = None, batch_size: int = BATCH) -> list[dict]:
    """Run the CPU stages over ``items`` in ``jobs`` processes (:func:`embkit.pool.run_chunks`),
    at most ``batch_size`` items a batch (fewer when that keeps every worker busy to the end);
    rows in item order."""
    from ..pool import chunked, run_chunks

    inline = len(items) < PARALLEL_ABOVE
    if jobs > 1 and not inline:
        from .. import hosts, scan  # noqa: F401  imported once, before the workers fork
        from ..library import extract  # noqa: F401
        from . import convert_check, record  # noqa: F401
    return run_chunks(process_batch, chunked(items, jobs, batch_size), settings, jobs, inline=inline, on_done=progress)


def run_previews(rows: list[dict], out: str, model: str | None, device: str, settings, progress: Callable[[int], None] | None = None) -> list[dict]:
    """Previews for ``rows`` in this process, :data:`~embkit.ingest.previews.PREVIEW_ROWS` rows at
    a time, through one :class:`~embkit.ingest.previews.PreviewStep` (one model load)."""
    from .previews import PREVIEW_ROWS, PreviewStep, preview_key, wants_preview

    key = preview_key(model, settings)
    if not any(wants_preview(r, key, out) for r in rows):
        return rows
    step = PreviewStep(out, model, device, settings)
    done: list[dict] = []
    for chunk in batches(rows, PREVIEW_ROWS):
        done.extend(step(chunk))
        if progress:
            progress(len(chunk))
    return done


def default_jobs() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


__all__ = ["run_cpu", "run_previews", "batches", "default_jobs", "BATCH"]

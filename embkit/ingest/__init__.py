"""Hub-scale ingest: scan, record, convert, judge per host and preview every uploaded file.

    >>> import embkit
    >>> summary = embkit.ingest(["uploads/"], "ingested/")                # a local process pool
    >>> summary = embkit.ingest(["uploads/"], "ingested/", ray="auto")    # the same, on a Ray cluster
    >>> summary.counts
    {'ok': 9120, 'unconverted': 4, 'unsafe': 31, 'broken': 845, 'skipped': 0}

Modules: :mod:`.sources` (what to ingest: folders, manifests of paths, no link out),
:mod:`.steps` (one function per CPU stage: read, scan, record, convert, hosts; a batch of them),
:mod:`.convert_check` (loss-free conversion, read back and compared), :mod:`.record` (the library
record as manifest fields), :mod:`.previews` (the preview stage), :mod:`.shards` (durable progress,
resuming), :mod:`.manifest` (the columns; JSONL and Parquet), :mod:`.local` (the process pool),
:mod:`.ray_run` (the Ray Data pipeline), :mod:`.run` (:func:`ingest`). docs/ingest.md has the
manifest schema and how to run it.

``embkit.ingest`` is this package and is also callable: ``embkit.ingest(sources, out, ...)`` is
:func:`embkit.ingest.run.ingest`.
"""

from __future__ import annotations

import sys
import types

from .run import IngestSummary, ingest


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`ingest` (so ``embkit.ingest(...)`` works whether or not a
    submodule such as ``embkit.ingest.steps`` was imported first, which binds the package there)."""

    def __call__(self, *args, **kwargs) -> IngestSummary:
        return ingest(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["ingest", "IngestSummary"]

"""Previews for files and folders: read every embedding, decide where each preview goes, keep the
ones that exist, render the rest with one :class:`~.previews.PreviewRenderer`, and write them
atomically. ``embkit previews`` and ``embkit library previews`` both run this; neither input
embeddings nor existing previews (without ``overwrite``) are ever changed.

Folders are walked by the one walk (:func:`embkit.report.walk_entries`: regular files only, no
link out of the folder, previews and the second file of an SDXL pair not read as embeddings of
their own), and a preview is only written inside the embedding's folder or under ``out``
(:func:`embkit.walk.check_inside`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import EmbkitError
from .preview_rules import is_negative, preview_path, trigger_word
from .previews import PreviewRenderer, PreviewSettings, Progress

#: The statuses a result can have.
WRITTEN, KEPT, SKIPPED, ERROR = "written", "kept", "skipped", "error"


@dataclass
class PreviewResult:
    """What happened to one embedding: ``written`` (rendered, at ``preview``), ``kept`` (a
    preview was there already), ``skipped`` (it does not fit the model; ``reason``) or ``error``
    (unreadable file, failed write; ``reason``)."""

    path: str
    name: str | None
    status: str
    preview: str | None = None
    member: str | None = None
    trigger: str | None = None
    negative: bool | None = None
    reason: str | None = None
    parameters: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dict(self.__dict__)


@dataclass
class PreviewRun:
    """Every result of one run, in the order the embeddings were found."""

    model: str
    settings: PreviewSettings
    results: list[PreviewResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """How many results have ``status``."""
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when nothing failed (skipped embeddings are not failures)."""
        return self.count(ERROR) == 0

    def to_dict(self) -> dict:
        """JSON-ready: counts, settings and every result."""
        s = self.settings
        return {
            "ok": self.ok,
            "model": self.model,
            "host": s.host,
            "seeds": list(s.seeds),
            **{status: self.count(status) for status in (WRITTEN, KEPT, SKIPPED, ERROR)},
            "seconds": round(self.seconds, 3),
            "previews": [r.to_dict() for r in self.results],
        }


def read_embeddings(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[Any, str]], list[PreviewResult]]:
    """Every embedding under ``paths`` with the folder its preview path is relative to (for
    ``--out``), and an error result per file that cannot be read. Folders are walked as
    ``embkit inspect`` walks them: files that are no embedding (pictures, models) are left out."""
    from ..io import read_all
    from ..report import not_an_embedding, walk_marked

    found: list[tuple[Any, str]] = []
    errors: list[PreviewResult] = []
    for arg in paths:
        arg = os.fspath(arg)
        for path, walked in walk_marked([arg]):
            try:
                embs = read_all(path)
            except EmbkitError as exc:
                if not (walked and not_an_embedding(path, exc)):
                    errors.append(PreviewResult(path, None, ERROR, reason=str(exc)))
                continue
            base = arg if walked else os.path.dirname(os.path.abspath(path))
            found.extend((e, base) for e in embs)
    return found, errors


def make_previews(
    paths: Iterable[str | os.PathLike],
    *,
    model: str | None = None,
    device: str = "auto",
    settings: PreviewSettings = PreviewSettings(),
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    negative: bool | None = None,
    progress: Progress | None = None,
    renderer: PreviewRenderer | None = None,
    **loader: Any,
) -> PreviewRun:
    """Render the missing previews of every embedding under ``paths`` and write them.

    Each goes to ``<stem>.preview.png`` beside its file, or under ``out`` (the walked folders'
    tree is kept there; ``out`` is created). An existing preview (``<stem>.preview.png``, or any
    picture the sidecar rules take for the file's preview: :func:`embkit.formats.sidecars.preview_of`)
    is kept unless ``overwrite``. ``negative``: ``None`` detects negative embeddings by name and
    metadata, ``True`` / ``False`` says all are / none is. ``renderer`` reuses a loaded pipeline;
    ``loader`` (``dtype``, ``prediction``, ``tokenizer``, ``host_dirs``) goes to the one made here."""
    start = time.perf_counter()
    found, errors = read_embeddings(paths)
    inputs = {os.path.abspath(e.source.path) for e, _ in found if e.source is not None}
    todo: list[tuple[Any, str, bool]] = []
    results: list[PreviewResult] = list(errors)
    claimed: dict[str, str] = {}
    for emb, base in found:
        source = emb.source
        path = source.path if source is not None else emb.name
        member = source.member if source is not None else None
        target = _target(path, member, base, out)
        told = negative if negative is not None else is_negative(emb)
        result = PreviewResult(path, emb.name, KEPT, target, member, trigger_word(emb, settings.host), told)
        results.append(result)
        existing = _existing(emb, target, out)
        if os.path.abspath(target) in inputs or target in claimed:
            result.status = SKIPPED
            other = claimed.get(target, target)
            result.reason = f"its preview would be {target}, which is {'an embedding file' if target not in claimed else 'also the preview of ' + other}"
        elif existing is not None and not overwrite:
            result.preview = existing  # kept
        else:
            todo.append((emb, target, told))
            result.status = WRITTEN
        claimed.setdefault(target, path)
    previews = []
    if todo:  # a model is loaded only when something is to be rendered with it
        renderer = renderer or PreviewRenderer(model, device=device, settings=settings, progress=progress, **loader)
        if renderer.progress is None:
            renderer.progress = progress
        previews = renderer.render([e for e, _, _ in todo], negative=[n for _, _, n in todo])
    by_target = {r.preview: r for r in results if r.status == WRITTEN}
    for (_emb, target, _n), preview in zip(todo, previews):
        result = by_target[target]
        result.trigger, result.parameters = preview.trigger, preview.parameters
        if not preview.ok:
            result.status, result.reason, result.preview = SKIPPED, preview.skipped, None
            continue
        try:
            root = os.fspath(out) if out is not None else os.path.dirname(os.path.abspath(result.path.rstrip("/\\")))
            _write(target, preview.png, overwrite, root, out)
        except EmbkitError as exc:
            result.status, result.reason = ERROR, str(exc)
    description = (", ".join(renderer.descriptions) if renderer is not None else "") or model or "built-in tiny pipeline of each embedding's family"
    return PreviewRun(description, settings, results, time.perf_counter() - start)


def _target(path: str, member: str | None, base: str, out: str | os.PathLike | None) -> str:
    if out is None:
        return preview_path(path, member)
    folder = os.path.dirname(os.path.abspath(path.rstrip("/\\")))
    rel = os.path.relpath(folder, os.path.abspath(base)) if base else "."
    if rel.startswith(os.pardir):
        rel = "."
    return preview_path(path, member, os.path.normpath(os.path.join(os.fspath(out), rel)))


def _existing(emb: Any, target: str, out: str | os.PathLike | None) -> str | None:
    """The preview already there for ``emb``: ``target``, or (beside a file, for the file's own
    preview) the picture the sidecar reader found (``<stem>.preview.jpg``, ``<stem>.png`` …)."""
    if os.path.lexists(target):
        return target
    source = emb.source
    if out is None and source is not None and not source.member:
        return emb.sidecars.preview
    return None


def _write(target: str, png: bytes | None, overwrite: bool, root: str, out: str | os.PathLike | None) -> None:
    """Write one preview atomically, only inside ``root`` (the embedding's folder, or ``out``)."""
    from ..atomic import write_bytes
    from ..walk import check_inside, makedirs_inside

    check_inside(target, root)
    if out is not None:
        makedirs_inside(os.path.dirname(target), root)  # under --out only: beside a file the folder exists
    write_bytes(target, png or b"", overwrite=overwrite)


__all__ = ["make_previews", "read_embeddings", "PreviewRun", "PreviewResult", "WRITTEN", "KEPT", "SKIPPED", "ERROR"]

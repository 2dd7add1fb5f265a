"""Previews for files and folders: read every embedding, decide where each preview goes, keep the
ones that exist, render the rest with one :class:`~.previews.PreviewRenderer`, and write them
atomically. ``embkit previews`` and ``embkit library previews`` both run this; neither input
embeddings nor existing previews (without ``overwrite``) are ever changed.

Folders are walked by the one walk and its one rule for what a folder holds
(:func:`embkit.report.walk_entries`, :mod:`embkit.folder`: regular files only, no link out of the
folder, the second file of an SDXL pair read with its first; previews, sidecars, pictures, text and
model checkpoints skipped with the reason, never failed). A preview is only written inside the
embedding's folder or under ``out`` (:func:`embkit.walk.check_inside`), never over an input file,
and an ``out`` whose tree overlaps an input folder is refused before anything is read
(:func:`embkit.walk.check_not_an_input`). The exit status of a run is the walk rule
(:attr:`PreviewRun.exit_code`, :func:`embkit.folder.walk_exit_code`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

from ..errors import EmbkitError, OperationError, WriteError
from .preview_rules import is_negative, preview_path, trigger_word
from .previews import PreviewRenderer, PreviewSettings, Progress

#: The label of what is read from standard input (``-``), as every command names it.
STDIN_NAME = "<stdin>"

#: The statuses a result can have.
WRITTEN, KEPT, SKIPPED, ERROR = "written", "kept", "skipped", "error"


@dataclass
class PreviewResult:
    """What happened to one embedding: ``written`` (rendered, at ``preview``), ``kept`` (a
    preview was there already), ``skipped`` (it does not fit the model, or another embedding's
    preview has its name; ``reason``) or ``error`` (unreadable file, failed or refused write;
    ``reason``, and ``code``: the error's code, ``broken-file``, ``write-failed`` …)."""

    path: str
    name: str | None
    status: str
    preview: str | None = None
    member: str | None = None
    trigger: str | None = None
    negative: bool | None = None
    reason: str | None = None
    parameters: str | None = None
    code: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dict(self.__dict__)


@dataclass
class PreviewRun:
    """Every result of one run, in the order the embeddings were found; ``ignored``: the files of
    walked folders that are no embedding, ``(path, reason)`` (:mod:`embkit.folder`)."""

    model: str
    settings: PreviewSettings
    results: list[PreviewResult] = field(default_factory=list)
    seconds: float = 0.0
    ignored: list[tuple[str, str]] = field(default_factory=list)

    def count(self, status: str) -> int:
        """How many results have ``status``."""
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when nothing failed (skipped embeddings are not failures)."""
        return self.count(ERROR) == 0

    @property
    def exit_code(self) -> int:
        """The walk rule (:func:`embkit.folder.walk_exit_code`): 0 when nothing failed (skipped
        embeddings and ignored files are no failures); else the errors' exit code (3 a damaged
        file, 9 a preview not written), 1 when they differ, 5 when a file is unsafe; 4 when no
        embedding was found."""
        from ..errors import exit_code_of
        from ..folder import walk_exit_code

        return walk_exit_code((exit_code_of(r.code or "error") for r in self.results if r.status == ERROR), len(self.results))

    def to_dict(self) -> dict:
        """JSON-ready: counts, settings, every result, and the files skipped as no embedding
        (``ignored``: ``{"path", "skipped": reason}``, as every walking command lists them)."""
        from ..folder import skipped_entry

        s = self.settings
        return {
            "ok": self.ok,
            "model": self.model,
            "host": s.host,
            "seeds": list(s.seeds),
            **{status: self.count(status) for status in (WRITTEN, KEPT, SKIPPED, ERROR)},
            "seconds": round(self.seconds, 3),
            "previews": [r.to_dict() for r in self.results],
            "ignored": [skipped_entry(p, why) for p, why in self.ignored],
        }


def read_embeddings(paths: Iterable[str | os.PathLike], stdin: BinaryIO | None = None) -> tuple[list[tuple[Any, str]], list[PreviewResult], list[tuple[str, str]]]:
    """Every embedding under ``paths`` with the folder its preview path is relative to (for
    ``--out``), an error result per file that cannot be read, and ``(path, reason)`` per file of a
    walked folder that is no embedding (the rule of every walk, :mod:`embkit.folder`: by its name,
    or after reading it). With ``stdin`` (a binary file object) the path ``-`` reads it."""
    from ..folder import error_reason
    from ..io import read_all
    from ..report import walk_entries

    found: list[tuple[Any, str]] = []
    errors: list[PreviewResult] = []
    ignored: list[tuple[str, str]] = []
    for arg in paths:
        arg = os.fspath(arg)
        for entry in walk_entries([arg]):
            path = entry.path
            if entry.skip is not None:
                ignored.append((path, entry.skip))
                continue
            try:
                embs = _read_stdin(stdin) if path == "-" and stdin is not None else read_all(path)
            except EmbkitError as exc:
                reason = error_reason(path, exc.code, exc.detail) if entry.walked else None
                if reason is not None:
                    ignored.append((path, reason))
                else:
                    errors.append(PreviewResult(path, None, ERROR, reason=str(exc), code=exc.code))
                continue
            base = arg if entry.walked else os.path.dirname(os.path.abspath(path))
            found.extend((e, base) for e in embs)
    return found, errors, ignored


def _read_stdin(stdin: BinaryIO) -> list:
    """The embeddings of the one file on standard input, read as if it were named
    ``<name><ext>``: the embedding's name (an A1111 file's stored name) when it is a plain file
    name, else ``stdin``, and its container's extension. Its preview (``<name>.preview.png`` under
    ``out``) and the trigger a host that goes by file names types are then those of that file,
    saved beside its preview."""
    from ..formats import get_container
    from ..inputs import bytes_of
    from ..io import MAX_STREAM_BYTES, read_all

    raw = bytes_of(stdin, STDIN_NAME, MAX_STREAM_BYTES)
    first = read_all(raw, name=STDIN_NAME)
    if not first:
        return first
    emb = first[0]
    # a layout named by its file takes the label as its name; an A1111 file keeps the name it stored
    names = (emb.name, str(emb.metadata.get("stored_name") or ""))
    name = next((n for n in names if _plain_file_name(n)), "stdin")
    container = emb.source.container if emb.source is not None else None
    return read_all(raw, name=name + (get_container(container).extensions[0] if container else ""))


def _plain_file_name(name: str) -> bool:
    """Whether ``name`` can be a file name as it is on every system (no folder, no hidden name,
    no character Windows refuses, nothing invisible)."""
    return bool(name) and os.path.basename(name) == name and not name.startswith(".") and name.isprintable() \
        and not any(c in name for c in '<>:"|?*\\')


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
    stdin: BinaryIO | None = None,
    **loader: Any,
) -> PreviewRun:
    """Render the missing previews of every embedding under ``paths`` and write them.

    Each goes to ``<stem>.preview.png`` beside its file, or under ``out`` (the walked folders'
    tree is kept there; ``out`` is created). An existing preview (``<stem>.preview.png``, or any
    picture the sidecar rules take for the file's preview: :func:`embkit.formats.sidecars.preview_of`)
    is kept unless ``overwrite``. ``negative``: ``None`` detects negative embeddings by name and
    metadata, ``True`` / ``False`` says all are / none is. ``renderer`` reuses a loaded pipeline;
    ``loader`` (``dtype``, ``prediction``, ``tokenizer``, ``host_dirs``) goes to the one made here.
    With ``stdin`` (a binary file object) the path ``-`` reads one file from it; its previews go
    under ``out`` (required then), named after the embedding.

    Inputs are never written: ``out`` overlapping an input folder (or naming an input file) is
    refused before anything is read (:class:`~embkit.errors.WriteError`), and an embedding whose
    preview would land on an input file is an error of its own (``write-failed``)."""
    from ..walk import check_not_an_input

    start = time.perf_counter()
    paths = [os.fspath(p) for p in paths]
    if "-" in paths and stdin is not None and out is None:
        raise OperationError("a preview of standard input ('-') has no folder to go beside: give out (-o DIR)")
    if out is not None:
        try:
            check_not_an_input(out, [p for p in paths if p != "-"], into_folder=True)
        except WriteError as exc:
            raise WriteError(f"{exc.detail}; or leave out -o: each preview then goes beside its embedding", path=exc.path) from None
    found, errors, ignored = read_embeddings(paths, stdin)
    inputs = {os.path.realpath(e.source.path) for e, _ in found if e.source is not None and not e.source.in_memory}
    todo: list[tuple[Any, str, bool]] = []
    results: list[PreviewResult] = list(errors)
    claimed: dict[str, str] = {}
    for emb, base in found:
        source = emb.source
        path = source.path if source is not None else emb.name
        member = source.member if source is not None else None
        if source is not None and source.in_memory:  # read from standard input: its preview goes under out
            target, path = preview_path(os.path.join(os.fspath(out or "."), source.path), member), STDIN_NAME
        else:
            target = _target(path, member, base, out)
        told = negative if negative is not None else is_negative(emb)
        result = PreviewResult(path, emb.name, KEPT, target, member, trigger_word(emb, settings.host), told)
        results.append(result)
        existing = _existing(emb, target, out)
        if os.path.realpath(target) in inputs:
            # never over an input (an embedding card named like another file's preview)
            result.status, result.code, result.preview = ERROR, WriteError.code, None
            result.reason = f"its preview would be {target}, which is an input embedding file: embkit never writes over an input"
        elif target in claimed:
            result.status = SKIPPED
            result.reason = f"its preview would be {target}, which is also the preview of {claimed[target]}"
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
            result.status, result.reason, result.code = ERROR, str(exc), exc.code
    description = (", ".join(renderer.descriptions) if renderer is not None else "") or model or "built-in tiny pipeline of each embedding's family"
    return PreviewRun(description, settings, results, time.perf_counter() - start, ignored)


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

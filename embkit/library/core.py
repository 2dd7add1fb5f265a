""":class:`Library`: the Python face of the registry. Each method is a thin layer over
:mod:`~embkit.library.scan`, :mod:`~embkit.library.queries` and :mod:`~embkit.library.conflicts`;
compatibility checks go through :func:`embkit.validate.validate`."""

from __future__ import annotations

import builtins
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import EmbkitError, LibraryError
from . import queries, schema
from .queries import Entry, FileError, Group
from .scan import ScanReport

if TYPE_CHECKING:  # for the annotations only: rendering is imported when it is asked for
    from ..diffusers.preview_run import PreviewRun
    from ..diffusers.previews import PreviewSettings
    from .gallery import GalleryReport


@dataclass
class CheckResult:
    """Whether one library entry would load on a target model, and why not."""

    entry: Entry
    loads: bool
    #: ``{"code", "severity", "message"}`` per finding (errors explain a skip, warnings do not).
    findings: list[dict] = field(default_factory=list)
    embedding: Any = field(default=None, repr=False)
    #: host id → :class:`embkit.hosts.HostVerdict` for the hosts asked (``check(hosts=…)``)
    hosts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"name": self.entry.name, "path": self.entry.path, "member": self.entry.member, "loads": self.loads, "findings": self.findings}
        if self.hosts:
            out["hosts"] = {h: v.to_dict() for h, v in self.hosts.items()}
        return out


@dataclass
class LoadReport:
    """What :meth:`Library.load_into` applied and what it skipped (name, reasons)."""

    loaded: list[str]
    skipped: list[tuple[str, list[str]]]
    #: what :func:`embkit.diffusers.apply` returned (``None`` when nothing was applied); pass it to
    #: :func:`embkit.diffusers.unload` to take exactly these embeddings out again.
    applied: Any = None


class Library:
    """An SQLite registry of embedding files.

        >>> lib = embkit.Library()                 # $EMBKIT_LIBRARY or the user data folder
        >>> lib.scan(["~/sd/embeddings"])
        >>> [e.name for e in lib.search(family="sdxl")]

    ``path`` is the database file; it is created (with its folder) when missing.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else schema.default_path()
        self._conn = schema.connect(self.path)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The database's schema version."""
        return schema.version(self._conn)

    # -- scanning ------------------------------------------------------------------------------
    def scan(
        self,
        paths: Iterable[str | os.PathLike] | str | os.PathLike,
        jobs: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ScanReport:
        """Scan files and folders (recursively) into the library. Incremental: unchanged files
        (same size and mtime) are not opened; files gone from a scanned folder are removed.
        ``jobs`` worker processes read files (default: the CPUs available); ``progress(done,
        total)`` is called as files are read."""
        from .scan import scan

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return scan(self._conn, [os.path.expanduser(os.fspath(p)) for p in paths], jobs=jobs, progress=progress)

    # -- queries -------------------------------------------------------------------------------
    def search(
        self,
        *,
        family: str | None = None,
        fits: str | None = None,
        slot: str | None = None,
        name: str | None = None,
        vectors: int | tuple[int | None, int | None] | None = None,
        format: str | None = None,
        tag: str | None = None,
        pattern: str | None = None,
        word: str | None = None,
        base_model: str | None = None,
    ) -> list[Entry]:
        """Entries matching every filter given: ``family`` (exact: ``sdxl`` finds SDXL embeddings),
        ``fits`` (a family the slots fit: an SD1 embedding fits ``sdxl``), ``slot`` present, ``name`` glob (case-insensitive, ``*bad*``),
        ``vectors`` (a count or an inclusive ``(min, max)``, either end ``None``), ``format`` id,
        ``tag``; ``pattern`` (a glob matching the name or a trained word), ``word`` (a glob matching
        a trained word) and ``base_model`` (a glob, case-insensitive: ``"SDXL*"``), both as the
        sidecars beside the file name them (Civitai Helper, A1111, Lora Manager)."""
        return queries.entries(self._conn, family=family, fits=fits, slot=slot, name=name, vectors=vectors, format=format, tag=tag,
                               pattern=pattern, word=word, base_model=base_model)

    def list(self, **filters: Any) -> builtins.list[Entry]:
        """Every entry (same filters as :meth:`search`)."""
        return self.search(**filters)

    def errors(self) -> builtins.list[FileError]:
        """Files the scans could not read, with the reason. Plain pictures are not among them
        (see :meth:`pictures`), as in the scan report."""
        return queries.errors(self._conn)

    def pictures(self) -> builtins.list[FileError]:
        """PNG/WebP files holding no embedding (previews beside embedding files), with the reason
        they hold none. Recorded so rescans skip them; not errors."""
        return queries.pictures(self._conn)

    def show(self, name_or_hash: str) -> builtins.list[Entry]:
        """Entries whose trigger name, path or hash (sha256 / AutoV2 / AutoV3 / vectors hash
        prefix) matches; :class:`~embkit.errors.LibraryError` when none does."""
        return queries.find(self._conn, name_or_hash)

    def dupes(self) -> builtins.list[Group]:
        """Identical files, and identical vectors kept in different files or formats."""
        return queries.dupes(self._conn)

    def conflicts(self, hosts: Iterable[str] | str | None = None) -> builtins.list[Group]:
        """Trigger-name conflicts under each host's rules (see :mod:`embkit.library.conflicts`):
        ``hosts`` ids (or ``"all"``), every host by default; each group names its hosts."""
        from ..hosts import resolve_hosts
        from .conflicts import conflicts

        return conflicts(self.search(), resolve_hosts(hosts) or None)

    # -- compatibility -------------------------------------------------------------------------
    def check(self, target: Any, names: Iterable[str] | str | None = None, *, hosts: Iterable[str] | str | None = None) -> builtins.list[CheckResult]:
        """For each entry (or those named), whether it would load on ``target`` (a family name, a
        model folder, a pipeline or a :class:`~embkit.encoders.ModelSpec`) and the findings that
        say why not. ``hosts`` (ids, or ``"all"``) checks as those hosts load the files (the word
        to type, what they skip); by default as :func:`embkit.diffusers.apply` would. Files are
        re-read from disk (torch-free) to validate their vectors."""
        from ..hosts import resolve_hosts

        host_ids = resolve_hosts(hosts) or None
        from ..io import read_all
        from ..check.validate import validate

        spec = _spec(target)
        chosen = self._chosen(names)
        results: builtins.list[CheckResult] = []
        cache: dict[str, Any] = {}
        for entry in chosen:
            if entry.path not in cache:
                try:
                    _regular(entry.path)
                    cache[entry.path] = read_all(entry.path)
                except EmbkitError as exc:
                    cache[entry.path] = exc
            got = cache[entry.path]
            if isinstance(got, EmbkitError):
                results.append(CheckResult(entry, False, [{"code": got.code, "severity": "error", "message": str(got)}]))
                continue
            emb = _pick(got, entry)
            if emb is None:
                msg = f"{entry.path} no longer holds {entry.name!r}; rescan the library"
                results.append(CheckResult(entry, False, [{"code": "library-stale", "severity": "error", "message": msg}]))
                continue
            report = validate(emb, spec, hosts=host_ids)
            findings = [{"code": f.code, "severity": f.severity, "message": f.message, "hosts": list(f.hosts)} for f in report.findings]
            results.append(CheckResult(entry, bool(report.ok), findings, emb, dict(report.verdicts) if host_ids else {}))
        return results

    def load_into(self, pipe: Any, names: Iterable[str] | str | None = None) -> LoadReport:
        """Apply every compatible embedding (or those named) to a diffusers pipeline in one step,
        through :func:`embkit.diffusers.apply`. Skipped, with the reason: embeddings that do not
        fit the pipeline, a second file defining a trigger already taken (tokenizers ignore case),
        and triggers whose tokens the tokenizer already has."""
        from ..diffusers.apply import apply, encoder_slots
        from ..diffusers.prompt import token_names

        vocab: set[str] = set()
        pipe_slots = [s.slot for s in encoder_slots(pipe)]
        for s in encoder_slots(pipe):
            vocab.update(t.casefold() for t in getattr(pipe, s.tokenizer).get_vocab())
        loaded, skipped, embs = [], [], []
        taken: dict[str, str] = {}  # casefolded token -> the file that claimed it
        for r in self.check(pipe, names):
            name = r.entry.name
            if not r.loads:
                skipped.append((name, [f["message"] for f in r.findings if f["severity"] == "error"]))
                continue
            tokens = [t.casefold() for t in token_names(name, r.embedding.num_vectors)]
            clash = next((t for t in tokens if t in taken), None)
            # apply() refuses the whole batch over one misfit, so leave those out here: vectors for
            # an encoder the pipeline lacks, or no vectors for one it has (T5 may go without).
            extra = [s for s in r.embedding.slots if s not in pipe_slots]
            lacking = [s for s in pipe_slots if s not in r.embedding.slots and s != "t5"]
            if extra or lacking:
                what = f"has {', '.join(extra)} vectors the pipeline has no encoder for" if extra else f"has no {', '.join(lacking)} vectors"
                skipped.append((name, [f"{r.entry.path}: {what} (pipeline encoders: {', '.join(pipe_slots)})"]))
            elif clash is not None:
                skipped.append((name, [f"{r.entry.path}: token {clash!r} is already taken by {taken[clash]}"]))
            elif any(t in vocab for t in tokens):
                skipped.append((name, [f"{r.entry.path}: the tokenizer already has a token {name!r} (unload it, or rename the embedding)"]))
            else:
                taken.update(dict.fromkeys(tokens, r.entry.path))
                embs.append(r.embedding)
                loaded.append(name)
        return LoadReport(loaded, skipped, apply(pipe, embs) if embs else None)

    # -- previews and the gallery ---------------------------------------------------------------
    def render_previews(
        self,
        model: str | None = None,
        names: Iterable[str] | str | None = None,
        *,
        device: str = "auto",
        settings: PreviewSettings | None = None,
        overwrite: bool = False,
        negative: bool | None = None,
        progress: Callable[[int, int], None] | None = None,
        **loader: Any,
    ) -> PreviewRun:
        """Render the previews the entries (or those named) lack, beside their files, with
        :func:`embkit.diffusers.preview_run.make_previews` (``settings``: a
        :class:`~embkit.diffusers.previews.PreviewSettings`; ``loader``: ``dtype``,
        ``prediction``, ``tokenizer``, ``host_dirs`` for the model), then record them (a file's
        new preview changes its sidecars, so rescanning it records the picture). With
        ``overwrite`` every chosen entry's preview is rendered again. Returns the
        :class:`~embkit.diffusers.preview_run.PreviewRun`."""
        from ..diffusers.preview_run import WRITTEN, PreviewRun, make_previews
        from ..diffusers.previews import PreviewSettings

        settings = settings or PreviewSettings()
        paths = list(dict.fromkeys(e.path for e in self._chosen(names) if overwrite or e.preview is None))
        if not paths:
            return PreviewRun(model or "", settings)
        run = make_previews(paths, model=model, device=device, settings=settings, overwrite=overwrite, negative=negative, progress=progress, **loader)
        written = sorted({r.path for r in run.results if r.status == WRITTEN})
        if written:
            self.scan(written, jobs=1)  # their sidecar keys changed: the files are read again, their previews recorded
        return run

    def gallery(self, out: str | os.PathLike, *, overwrite: bool = False, title: str = "embkit library") -> GalleryReport:
        """Write the library as a static site to the folder ``out`` (see
        :mod:`embkit.library.gallery`); returns its :class:`~embkit.library.gallery.GalleryReport`."""
        from .conflicts import conflicts
        from .gallery import write_gallery

        entries = self.search()
        return write_gallery(entries, self.dupes(), conflicts(entries), out, overwrite=overwrite, title=title)

    # -- maintenance ---------------------------------------------------------------------------
    def export(self) -> dict:
        """The whole library as a JSON-ready manifest: every entry, every unreadable file, and the
        paths of pictures holding no embedding."""
        return {
            "embkit_library": schema.SCHEMA_VERSION,
            "database": str(self.path),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "entries": [e.to_dict() for e in self.search()],
            "errors": [e.to_dict() for e in self.errors()],
            "pictures": [p.path for p in self.pictures()],
        }

    def remove(self, *keys: str, missing: bool = False) -> int:
        """Forget the files holding the entries ``keys`` name (name, path or hash), and with
        ``missing`` every file no longer on disk. Files on disk are never touched; a later scan of
        their folder adds them back. Returns the number of files forgotten."""
        paths: set[str] = set()
        for key in keys:
            # a file recorded with an error holds no entry; its path still names it
            recorded = os.path.abspath(os.path.expanduser(key))
            if self._conn.execute("SELECT 1 FROM files WHERE path = ? AND error_code IS NOT NULL", (recorded,)).fetchone():
                paths.add(recorded)
                continue
            paths.update(e.path for e in self.show(key))
        if missing:
            paths.update(p for (p,) in self._conn.execute("SELECT path FROM files") if not os.path.exists(p))
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in sorted(paths)])
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return len(paths)

    def tag(self, key: str, *tags: str, remove: bool = False) -> builtins.list[Entry]:
        """Add (or with ``remove``, take away) tags on the entries ``key`` names. Tags belong to
        the content (file hash and member), so they survive moves and rescans."""
        tags = tuple(t.strip() for t in tags if t.strip())
        if not tags:
            raise LibraryError("give at least one tag")
        found = self.show(key)
        rows = [(e.sha256, e.member, t) for e in found for t in tags]
        sql = "DELETE FROM tags WHERE sha256 = ? AND member = ? AND tag = ?" if remove else "INSERT OR IGNORE INTO tags (sha256, member, tag) VALUES (?,?,?)"
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(sql, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return self.show(key)

    def _chosen(self, names: Iterable[str] | str | None) -> builtins.list[Entry]:
        if isinstance(names, str):  # one name, not its letters
            names = [names]
        if names is None:
            return self.search()
        out, seen = [], set()
        for n in names:
            for e in self.show(n):
                if e.id not in seen:
                    seen.add(e.id)
                    out.append(e)
        return out


def _regular(path: str) -> None:
    """A path the database lists is read only when it is a regular file: the database may come
    from elsewhere, and a FIFO listed there blocked ``library check`` forever (found in review)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise EmbkitError(f"cannot be read ({exc.strerror or exc})", path=path) from None
    if not stat.S_ISREG(mode):
        raise EmbkitError("is not a regular file (a pipe, device or folder); not read", path=path)


def _spec(target: Any) -> Any:
    from ..model.resolve import resolve_target

    return resolve_target(target)  # a ModelSpec passes through unchanged


def _pick(embeddings: list, entry: Entry):
    """The embedding in a freshly read file that a library entry describes."""
    for emb in embeddings:
        member = emb.source.member if emb.source is not None else None
        if (member or "") == entry.member and emb.name == entry.name:
            return emb
    for emb in embeddings:
        if emb.name == entry.name:
            return emb
    return None

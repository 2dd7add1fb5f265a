"""Pull embedding repos from the Hugging Face Hub: download (through :mod:`embkit.hubclient`),
read, validate, and optionally copy or convert them into a folder and a library. No torch here.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import EmbkitError, HubEntryNotFoundError, HubError, MissingDependencyError, WriteError
from ..formats import concept_folder, extensions
from ..schema import Embedding
from ..hubclient import _snapshot

#: Files of an sd-concepts-library repo that go with ``learned_embeds.bin``.
CONCEPT_TEXT = (concept_folder.TOKEN_FILE, concept_folder.TYPE_FILE)
#: Never fetched by a whole-repo pull: A1111's preview pictures, which ``embkit inspect`` also skips by name.
PULL_IGNORE = ["*.preview.png"]


@dataclass
class PulledFile:
    """One embedding file (or concept folder) fetched from a repo, read, validated, maybe converted.

    ``path`` is where it lies locally: the copy in ``out_dir`` when one was given, else the file in
    the Hugging Face cache. ``error`` is set when the file could not be read (``embeddings`` is then
    empty) or could not be written into ``out_dir`` (``embeddings`` holds what was read, ``converted``
    what was written before the failure).
    """

    repo_id: str
    filename: str
    commit: str
    path: str
    format: str | None = None
    embeddings: tuple[Embedding, ...] = ()
    findings: tuple[dict, ...] = ()
    converted: tuple[str, ...] = ()
    error: EmbkitError | None = None
    notes: list[str] = field(default_factory=list)
    repo_type: str = "model"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``embkit pull --json`` prints for this file."""
        return {
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "filename": self.filename,
            "commit": self.commit,
            "path": self.path,
            "format": self.format,
            "embeddings": [
                {"name": e.name, "family": e.family, "slots": {s: {"vectors": int(a.shape[0]), "dim": int(a.shape[1])} for s, a in e.vectors.items()}}
                for e in self.embeddings
            ],
            "findings": list(self.findings),
            "converted": list(self.converted),
            "notes": list(self.notes),
            **({"error": self.error.to_dict()} if self.error is not None else {}),
        }


# -- pull --------------------------------------------------------------------------------------------
def _patterns(filename: str | None) -> list[str]:
    if filename is None:
        return [f"*{ext}" for ext in extensions()] + [f"*{name}" for name in CONCEPT_TEXT]
    folder = os.path.dirname(filename)
    extra = [f"{folder}/{n}" if folder else n for n in CONCEPT_TEXT] if os.path.basename(filename) in concept_folder.EMBED_FILES else []
    return [filename, *extra]


def find_embeddings(folder: str) -> list[tuple[str, str]]:
    """``(path in repo, local path)`` of every embedding in a downloaded snapshot: each folder holding
    ``learned_embeds.*`` is one concept folder; every other file with an embkit extension is one file."""
    exts = tuple(e.lower() for e in extensions())
    found: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(root, folder).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        concept = any(f in files for f in concept_folder.EMBED_FILES)
        if concept:
            found.append((rel or ".", root))
        for name in sorted(files):
            if concept and name in concept_folder.EMBED_FILES:
                continue
            if name.lower().endswith(exts):
                found.append((f"{rel}/{name}" if rel else name, os.path.join(root, name)))
    return found


def _include_patterns(include: Sequence[str]) -> list[str]:
    """What to download for ``include`` globs: a glob ending in ``*`` (``v2/*``, ``*``) is narrowed to
    the files embkit reads under it (``v2/*.pt``, …, ``v2/*token_identifier.txt``), so that a
    repo's other files (checkpoints, samples) are not fetched; any other glob is taken as given."""
    exts = _patterns(None)
    out: list[str] = []
    for pattern in include:
        pattern = pattern + "*" if pattern.endswith("/") else pattern  # a folder, as huggingface_hub reads it
        out += [pattern + e[1:] for e in exts] if pattern.endswith("*") else _patterns(pattern)
    return list(dict.fromkeys(out))


def _selected(rel: str, local: str, include: Sequence[str] | None, exclude: Sequence[str]) -> bool:
    """Whether an embedding found in the snapshot passes ``include``/``exclude`` (a concept folder by
    its ``learned_embeds.*`` path). The cached snapshot may hold files of earlier pulls of the same
    commit, so the selection is applied to what is found, not only to what is downloaded."""
    path = rel
    if os.path.isdir(local):
        embed = next((n for n in concept_folder.EMBED_FILES if os.path.isfile(os.path.join(local, n))), concept_folder.EMBED_FILES[0])
        path = embed if rel == "." else f"{rel}/{embed}"

    def matches(patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatch(path, p + "*" if p.endswith("/") else p) for p in patterns)

    return (include is None or matches(include)) and not matches(exclude)


def pull(repo_id: str, *, revision: str | None = None, filename: str | None = None, out_dir: str | os.PathLike | None = None,
         library: str | os.PathLike | bool | None = None, convert: bool = False, token: str | None = None,
         overwrite: bool = False, progress: bool = False, repo_type: str = "model",
         include: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> list[PulledFile]:
    """Download the embeddings of a Hub repo, read and validate each, optionally convert and index them.

    Recognises sd-concepts-library repos (``learned_embeds.bin`` + ``token_identifier.txt`` +
    ``type_of_concept.txt``, read as one concept folder), single-file repos and repos holding several
    embeddings (every file whose extension embkit reads). ``filename`` restricts to one file.
    A file of a whole-repo pull that is no embedding (a preview or contact-sheet picture, a model:
    :func:`embkit.report.not_an_embedding`) is left out, as ``embkit inspect`` leaves it out of a folder.
    With ``out_dir`` the files are copied there, keeping the repo's folders (a concept folder at the
    root goes to ``out_dir/<repo name>/``); with ``convert`` each embedding is written as
    ``.safetensors`` in the same place instead. ``library`` (a database path, or ``True`` for the
    default library) adds the results to it. ``repo_type`` is ``"model"`` or ``"dataset"`` (embedding
    collections published as datasets). ``include`` and ``exclude`` are globs on paths in the repo
    (``fnmatch``, as huggingface_hub's ``allow_patterns``/``ignore_patterns``: ``*`` crosses folders):
    only embeddings matching an ``include`` glob (when given) and no ``exclude`` glob are pulled, and
    only the files they need are downloaded. A file that cannot be read, or written into ``out_dir``
    (it exists and differs, or another file of the same pull already took its name), comes back with
    ``error`` set and the others still go through; a failed download raises HubError.
    """
    if convert and out_dir is None:
        raise HubError(f"{repo_id}: converting needs an output folder (out_dir)")
    if isinstance(include, str) or isinstance(exclude, str):
        raise TypeError("include and exclude are lists of globs, not one string")
    exclude = list(exclude)
    allow = _patterns(filename) if filename is not None or include is None else _include_patterns(include)
    ignore = [*([] if filename else PULL_IGNORE), *exclude] or None
    snapshot = _snapshot(repo_id, revision, allow, token, progress, ignore, repo_type)
    commit = os.path.basename(os.path.normpath(snapshot))
    items = [it for it in find_embeddings(snapshot) if _selected(*it, include, exclude)]
    if filename is not None:
        want = os.path.dirname(filename) or "." if os.path.basename(filename) in concept_folder.EMBED_FILES else filename
        items = [it for it in items if it[0] == want]
        if not items:
            raise HubEntryNotFoundError(f"{repo_id}@{revision or 'main'} file {filename}: no such file in the repo")
    results = [_load(repo_id, commit, rel, local, repo_type) for rel, local in items]
    if filename is None:
        from ..report import not_an_embedding

        # The extension table lists .png/.webp because a picture can carry an embedding card, so
        # pictures are fetched; most in a repo are samples or the contact sheet embkit push uploads.
        results = [r for r in results if r.error is None or not not_an_embedding(r.filename, r.error)]
    if not results:
        chosen = "".join(f" matching {', '.join(g)}" for g in (include,) if g) + (f" outside {', '.join(exclude)}" if exclude else "")
        raise HubError(f"{repo_id}@{revision or 'main'}: holds no embedding files{chosen} (looked for {', '.join(extensions())} "
                       "and sd-concepts-library folders)")
    pulled = tuple(e for r in results for e in r.embeddings)
    for res in results:
        res.findings = tuple(f for emb in res.embeddings for f in _validate(emb, res, pulled))
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        claimed: dict[str, str] = {}
        for res in results:
            if res.error is None:
                try:
                    _deliver(res, os.fspath(out_dir), convert, overwrite, claimed)
                except EmbkitError as exc:
                    res.error = exc
    if library:
        _add_to_library(results, library)
    return results


def _load(repo_id: str, commit: str, rel: str, local: str, repo_type: str = "model") -> PulledFile:
    from ..io import open_file, read_all

    res = PulledFile(repo_id=repo_id, filename=rel, commit=commit, path=local, repo_type=repo_type)
    try:
        res.format = open_file(local).format.id
        res.embeddings = tuple(read_all(local))
    except EmbkitError as exc:
        res.error = exc
    return res


def _validate(emb: Embedding, res: PulledFile, others: tuple[Embedding, ...] = ()) -> list[dict]:
    """Findings of embkit.validate against the embedding's own family, as plain dicts (the other
    embeddings of the same pull count as loaded, for the trigger-clash checks)."""
    family = emb.family if emb.family != "unknown" else (emb.families[0] if emb.families else None)
    if family is None:
        res.notes.append(f"{emb.name}: no known family fits slots {', '.join(emb.slots)}; not validated")
        return []
    try:
        from ..check.validate import validate

        report = validate(emb, family, loaded=[o for o in others if o is not emb])
    except ImportError as exc:  # validation lives in its own module; pulling must not depend on it
        res.notes.append(f"validation skipped: {exc}")
        return []
    return [{"embedding": emb.name, **f.to_dict()} for f in report.findings]


def _deliver(res: PulledFile, out_dir: str, convert: bool, overwrite: bool, claimed: dict[str, str]) -> None:
    """Copy (or convert) one pulled item into ``out_dir`` below the repo's own folders; never
    leaves a partial file. ``claimed`` maps each path this pull wrote to the repo file it came from:
    a second file wanting the same path fails instead of replacing the first (even with
    ``overwrite``, which is about files that were there before the pull)."""
    folder = os.path.join(out_dir, *os.path.dirname(res.filename).split("/")) if res.filename != "." else out_dir
    if convert:
        written: list[str] = []
        try:
            for emb in res.embeddings:
                target = os.path.join(folder, _safe_stem(_stem_for(emb, res)) + ".safetensors")
                _claim(claimed, target, res)
                os.makedirs(folder, exist_ok=True)
                written.append(_write_safetensors(emb, target, overwrite))
        finally:
            res.converted = tuple(written)
        res.path = written[0] if len(written) == 1 else folder
        return
    src = res.path
    if os.path.isdir(src):
        target = os.path.join(out_dir, res.repo_id.split("/")[-1]) if res.filename == "." else os.path.join(folder, os.path.basename(res.filename))
        names = [n for n in (*concept_folder.EMBED_FILES, *CONCEPT_TEXT) if os.path.isfile(os.path.join(src, n))]
        for n in names:
            _claim(claimed, os.path.join(target, n), res)
        os.makedirs(target, exist_ok=True)
        for n in names:
            _copy_atomic(os.path.join(src, n), os.path.join(target, n), overwrite)
    else:
        target = os.path.join(folder, os.path.basename(res.filename))
        _claim(claimed, target, res)
        os.makedirs(folder, exist_ok=True)
        _copy_atomic(src, target, overwrite)
    res.path = target


def _claim(claimed: dict[str, str], target: str, res: PulledFile) -> None:
    key = os.path.abspath(target)
    other = claimed.setdefault(key, res.filename)
    if other != res.filename:
        raise WriteError(f"{other} of the same pull was written here; not replaced (pull {res.filename} on its own "
                         "with --file and another -o folder)", path=target)


def _stem_for(emb: Embedding, res: PulledFile) -> str:
    if res.filename == "." or res.format == "concept-folder":
        return res.repo_id.split("/")[-1] if res.filename == "." else os.path.basename(res.filename)
    if len(res.embeddings) > 1:
        return f"{os.path.splitext(os.path.basename(res.filename))[0]}-{emb.name}"
    return os.path.splitext(os.path.basename(res.filename))[0]


def _safe_stem(stem: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem.strip("<>").strip())
    return keep.strip("._") or "embedding"


def _copy_atomic(src: str, dst: str, overwrite: bool) -> None:
    """Copy through embkit's atomic writer (hidden temporary file, fsync, rename; the umask's mode,
    as every other embkit output); an existing file with the same bytes is left alone."""
    from ..atomic import write_bytes

    real = os.path.realpath(src)  # the cache holds symlinks to blobs
    if os.path.isfile(dst) and _same_bytes(real, dst):
        return
    with open(real, "rb") as fh:
        data = fh.read()  # embedding files are small; the readers already held it whole
    write_bytes(dst, data, overwrite=overwrite)


def _same_bytes(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def safetensors_format(emb: Embedding) -> str:
    """The layout a converted file gets: diffusers (``{trigger: vectors}``, which A1111, ComfyUI and
    diffusers all load) for one encoder, encoder-keyed ``multi`` for several."""
    return "diffusers" if len(emb.vectors) == 1 else "multi"


def _write_safetensors(emb: Embedding, target: str, overwrite: bool) -> str:
    try:
        from ..writing import write
    except ImportError:
        raise MissingDependencyError("converting needs embkit.writing, which is not installed in this checkout") from None
    write(emb, target, format=safetensors_format(emb), overwrite=overwrite)
    return target


def _add_to_library(results: list[PulledFile], library: str | os.PathLike | bool) -> None:
    try:
        from ..library import Library
    except ImportError:
        raise MissingDependencyError("--library needs embkit.library, which is not available in this checkout") from None
    paths = sorted({p for r in results if r.error is None for p in (r.converted or (r.path,))})
    # A pull adds a handful of files: one worker, no process pool to start.
    with Library(None if library is True else os.fspath(library)) as lib:
        lib.scan(paths, jobs=1)

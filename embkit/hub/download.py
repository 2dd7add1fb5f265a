"""Pull embedding repos from the Hugging Face Hub: download (through :mod:`embkit.hubclient`),
read, validate, and optionally copy or convert them into a folder and a library. No torch here.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import EmbkitError, HubEntryNotFoundError, HubError, MissingDependencyError, UnsafeFileError, WriteError
from ..formats import concept_folder, extensions
from ..schema import Embedding
from ..hubclient import _snapshot
from ..walk import check_inside, makedirs_inside

#: Files of an sd-concepts-library repo that go with ``learned_embeds.bin``.
CONCEPT_TEXT = (concept_folder.TOKEN_FILE, concept_folder.TYPE_FILE)
#: Nothing is left out of a pull any more: previews and sidecars come along with their embeddings
#: (kept, empty, for callers that passed it on).
PULL_IGNORE: list[str] = []


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
    #: the sidecars (Civitai info, A1111 and Lora Manager JSON, previews) copied beside ``path``
    sidecars: list[str] = field(default_factory=list)
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
            "sidecars": list(self.sidecars),
            **({"error": self.error.to_dict()} if self.error is not None else {}),
        }


# -- pull --------------------------------------------------------------------------------------------
def _patterns(filename: str | None) -> list[str]:
    if filename is None:
        return [f"*{ext}" for ext in extensions()] + [f"*{name}" for name in CONCEPT_TEXT]
    folder = os.path.dirname(filename)
    extra = [f"{folder}/{n}" if folder else n for n in CONCEPT_TEXT] if os.path.basename(filename) in concept_folder.EMBED_FILES else []
    return [filename, *extra]


def _beside_patterns(items: list[tuple[str, str]]) -> list[str]:
    """Repo paths of whatever may lie beside the embeddings found: each one's sidecars
    (:func:`embkit.formats.sidecars.candidates`) and the ``_2`` file of a possible SDXL pair."""
    from ..formats.sdxl_pair import second_path
    from ..formats.sidecars import candidates

    out = []
    for rel, _local in items:
        name = rel if rel != "." else ""
        if not name or name.endswith("/") or os.path.basename(name) == "":
            continue
        folder = os.path.dirname(name)
        names = [n for group in candidates(name).values() for n in group] + [os.path.basename(second_path(name))]
        out += [f"{folder}/{n}" if folder else n for n in names]
    return sorted(set(out))


#: Repo file names deeper or longer than this are skipped (with an error for that file): no
#: embedding repo needs them, and huggingface_hub fails the whole download on a name the file
#: system refuses (found in review: a pull failed with a traceback).
MAX_NAME_PARTS = 32
MAX_NAME_BYTES = 1024


def _name_problem(name: str) -> str | None:
    """Why a repo file name must not be downloaded, or None."""
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        return "its name leaves the repo's folder ('..', an absolute path or empty parts); skipped"
    if len(parts) > MAX_NAME_PARTS or len(name.encode("utf-8")) > MAX_NAME_BYTES or any(len(p.encode("utf-8")) > 255 for p in parts):
        return f"its name is deeper than {MAX_NAME_PARTS} folders or longer than the file system allows; skipped"
    if any(ord(c) < 0x20 for c in name):
        return "its name holds control characters; skipped"
    return None


def _hostile_names(repo_id: str, revision: str | None, token: str | None, patterns: list[str], repo_type: str = "model") -> list[tuple[str, str]]:
    """``(name, why)`` for every file the pull would fetch whose name is unsafe to create."""
    from ..hubclient import list_files

    names = list_files(repo_id, revision, token, repo_type)
    out = []
    for name in names or ():
        why = _name_problem(name)
        if why is not None and any(fnmatch.fnmatch(name, p) for p in patterns):
            out.append((name, why))
    return out


def find_embeddings(folder: str) -> list[tuple[str, str]]:
    """``(path in repo, local path)`` of every embedding in a downloaded snapshot: each folder holding
    ``learned_embeds.*`` is one concept folder; every other file with an embkit extension is one file,
    except companions (previews, the second file of an SDXL pair: :func:`embkit.io.is_companion`).
    The walk is :func:`embkit.walk.walk_tree` (no recursion, regular files only); a snapshot's files
    are links into the cache repo's ``blobs/``, the tree links may stay in."""
    from ..io import is_companion
    from ..walk import hf_cache_root, walk_tree

    exts = tuple(e.lower() for e in extensions())
    boundary = hf_cache_root(folder) or folder
    # per folder, in walk order: whether it is a concept folder, and its other embedding files
    folders: dict[str, tuple[list[bool], list[tuple[str, str]]]] = {"": ([False], [])}
    for entry in walk_tree(folder, hidden=False, boundary=boundary):
        rel_dir, _, name = entry.rel.rpartition("/")
        concept, files = folders.setdefault(rel_dir, ([False], []))
        if name in concept_folder.EMBED_FILES:
            concept[0] = True
        elif name.lower().endswith(exts) and not is_companion(entry.path):
            files.append((entry.rel, entry.path))
    found: list[tuple[str, str]] = []
    for rel_dir, (concept, files) in folders.items():
        if concept[0]:
            found.append((rel_dir or ".", os.path.join(folder, *rel_dir.split("/")) if rel_dir else folder))
        found.extend(files)
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
    hostile = _hostile_names(repo_id, revision, token, allow, repo_type)
    # huggingface_hub would stop the whole pull on a hostile name: those are left out, each reported
    ignore = [*([] if filename else PULL_IGNORE), *exclude, *(glob.escape(name) for name, _why in hostile)] or None
    snapshot = _snapshot(repo_id, revision, allow, token, progress, ignore, repo_type)
    commit = os.path.basename(os.path.normpath(snapshot))
    items = [it for it in find_embeddings(snapshot) if _selected(*it, include, exclude)]
    if filename is not None:
        want = os.path.dirname(filename) or "." if os.path.basename(filename) in concept_folder.EMBED_FILES else filename
        items = [it for it in items if it[0] == want]
        if not items:
            raise HubEntryNotFoundError(f"{repo_id}@{revision or 'main'} file {filename}: no such file in the repo")
    beside = _beside_patterns(items)
    if beside:  # the sidecars and previews of the embeddings found, and the second files of SDXL pairs
        _snapshot(repo_id, commit, beside, token, progress, None, repo_type)
    results = [_load(repo_id, commit, rel, local, repo_type) for rel, local in items]
    results += [PulledFile(repo_id=repo_id, filename=name, commit=commit, path="", error=UnsafeFileError(why, path=name), repo_type=repo_type)
                for name, why in hostile]
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
        from ..walk import check_not_an_input, hf_cache_root

        # the cache is what was read: an output folder in it (or holding it) would write over it
        check_not_an_input(out_dir, [hf_cache_root(snapshot) or snapshot], into_folder=True)
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
                _claim(claimed, target, res, out_dir)
                makedirs_inside(folder, out_dir)
                written.append(_write_safetensors(emb, target, overwrite))
                _carry(emb, target, res, claimed, overwrite, out_dir)
        finally:
            res.converted = tuple(written)
        res.path = written[0] if len(written) == 1 else folder
        return
    src = res.path
    if os.path.isdir(src):
        target = os.path.join(out_dir, res.repo_id.split("/")[-1]) if res.filename == "." else os.path.join(folder, os.path.basename(res.filename))
        pair = res.embeddings[0].source.pair if len(res.embeddings) == 1 and res.embeddings[0].source else None
        extra = (os.path.basename(pair),) if pair is not None and os.path.dirname(pair) == src else ()  # an SDXL pair's second file
        names = [n for n in (*concept_folder.EMBED_FILES, *extra, *CONCEPT_TEXT) if os.path.isfile(os.path.join(src, n))]
        for n in names:
            _claim(claimed, os.path.join(target, n), res, out_dir)
        makedirs_inside(target, out_dir)
        for n in names:
            _copy_atomic(os.path.join(src, n), os.path.join(target, n), overwrite)
    else:
        target = os.path.join(folder, os.path.basename(res.filename))
        _claim(claimed, target, res, out_dir)
        makedirs_inside(folder, out_dir)
        _copy_atomic(src, target, overwrite)
        pair = res.embeddings[0].source.pair if len(res.embeddings) == 1 and res.embeddings[0].source else None
        if pair is not None:  # an SDXL pair: its second file goes along, under its own name
            second = os.path.join(folder, os.path.basename(pair))
            _claim(claimed, second, res, out_dir)
            _copy_atomic(pair, second, overwrite)
    for emb in res.embeddings[:1]:
        _carry(emb, target, res, claimed, overwrite, out_dir)
    res.path = target


def _carry(emb: Embedding, target: str, res: PulledFile, claimed: dict[str, str], overwrite: bool, out_dir: str) -> None:
    """Copy the sidecars of a pulled embedding beside what was written for it, renamed to its stem."""
    from ..formats.sidecars import copies

    folder, name = os.path.split(target)
    stem = os.path.splitext(name)[0] if os.path.isfile(target) or os.path.splitext(name)[1] else name
    for src, dst in copies(emb.source.sidecars if emb.source else None, stem, folder):
        _claim(claimed, dst, res, out_dir)
        _copy_atomic(src, dst, overwrite)
        res.sidecars.append(dst)


def _claim(claimed: dict[str, str], target: str, res: PulledFile, out_dir: str) -> None:
    check_inside(target, out_dir)  # a link inside the output folder must not take the copy elsewhere
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

"""What a folder holds: the one rule every command that walks folders follows (``inspect``,
``verify``, ``convert``, ``scan``, ``library scan``, ``pull``, ``previews``, ``ingest``), and the
one exit status of a walk.

Each file met while walking a folder is one of three things:

* **read**: a file embkit reads (an extension of the formats table, or a concept folder) that it
  could read;
* **skipped**, with the reason: a known non-embedding, never a failure. By its name (nothing is
  opened): a preview picture, a sidecar (Civitai Helper's ``.civitai.info``, Lora Manager's
  ``.metadata.json``, A1111's ``<stem>.json``), a picture, a text file, an archive, a model file, a
  file of a kind embkit does not read (:data:`NOT_EMBEDDINGS`). After a failed read: a picture
  that holds no embedding card, a file that holds no embedding (a model's weights, an unknown
  layout), a kohya XTI file, a model checkpoint (``.ckpt``) that is no embedding
  (:func:`error_reason`);
* **error**: a file that looks like an embedding but cannot be read (damaged, unsafe, too large).

Hidden names (``.git``, ``._x.pt``, interrupted writes' temporaries) and the second file of an SDXL
pair (read with its first file) are not listed at all. A path the user names directly is never
skipped: whatever it is, it is read, and a failure is an error.

:func:`walk_exit_code` is the exit status of every walking command: 0 when nothing failed (skipped
files do not count); 5 when any file is unsafe (a gate must see it whatever else failed); else the
failures' exit code when they share one, 1 when they differ; 4 when no embedding was found at all.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, NamedTuple

READ, SKIPPED, ERROR = "read", "skipped", "error"

#: Kinds of files an embeddings folder holds besides embeddings, by extension (lower case). A file
#: with one of embkit's own extensions is read first whatever this table says (a ``.ckpt`` may hold
#: an embedding); the table then names what it is when it holds none.
NOT_EMBEDDINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a picture", (".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif", ".jxl", ".ico", ".svg", ".psd", ".png", ".webp")),
    ("a text file", (".txt", ".md", ".rst", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".csv", ".tsv", ".log",
                     ".html", ".htm", ".xml", ".info", ".nfo")),
    ("a model checkpoint", (".ckpt", ".gguf", ".onnx", ".msgpack", ".h5", ".tflite", ".engine", ".sft")),
    ("an archive", (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".xz", ".bz2", ".zst")),
    ("a video", (".mp4", ".webm", ".mov", ".mkv", ".avi")),
    ("a script", (".py", ".sh", ".bat", ".cmd", ".ps1", ".js")),
)

#: Read errors that mean "this is not an embedding" rather than "this embedding is broken".
_NOT_MINE_CODES = ("unknown-format", "unsupported-layout")


class Found(NamedTuple):
    """One thing met while walking: ``path``, ``rel`` (``/``-separated, relative to the folder
    walked; ``""`` for a path named directly), whether it is a folder read whole (``unit``: a concept
    folder), whether it was met in a folder (``walked``), why it is skipped without being opened
    (``skip``; ``None``: read it), and the size and modification time (with ``stat_files``)."""

    path: str
    rel: str = ""
    unit: bool = False
    walked: bool = False
    skip: str | None = None
    size: int = 0
    mtime_ns: int = 0
    #: the walk passed it by (a FIFO, a link out of the tree): ``skip`` says why, and nothing may
    #: open it, not even to sniff its first bytes
    passed: bool = False


def kind_of(name: str) -> str | None:
    """What :data:`NOT_EMBEDDINGS` says a file name is (``"a picture"``), or ``None``."""
    low = name.lower()
    for kind, exts in NOT_EMBEDDINGS:
        if low.endswith(exts):
            return kind
    return None


def name_reason(path: str, exists: Callable[[str], bool] = os.path.exists) -> str | None:
    """Why a file met in a folder is skipped without being opened, from its name alone; ``None``
    when embkit reads it (one of the formats table's extensions). ``exists`` answers whether a file
    beside it exists (a library scan passes its folder listing)."""
    from .formats import extensions
    from .formats.sidecars import JSON_SUFFIXES, is_preview_name

    name = os.path.basename(path)
    low = name.lower()
    if is_preview_name(name):
        return "a preview picture"
    if low.endswith(JSON_SUFFIXES["civitai_info"]):
        return "a sidecar (Civitai Helper's model information)"
    if low.endswith(JSON_SUFFIXES["metadata_json"]):
        return "a sidecar (Lora Manager's metadata)"
    if low.endswith(extensions()):
        return None
    if low.endswith(".json"):
        stem = os.path.join(os.path.dirname(path), name[: -len(".json")])
        if any(exists(stem + ext) for ext in _beside_extensions()):
            return "a sidecar (A1111's user metadata)"
    kind = kind_of(name)
    if kind is not None:
        return kind
    ext = os.path.splitext(name)[1]
    return f"not a kind of file embkit reads ({ext or 'no extension'})"


def _beside_extensions() -> tuple[str, ...]:
    from .formats import extensions

    return extensions()


def error_reason(path: str, code: str, detail: str = "") -> str | None:
    """Why a file met in a folder that embkit could not read is a known non-embedding (skipped,
    not a failure), from the error's code; ``None``: it looks like an embedding, so it is an error."""
    from .formats import container_for_extension

    why = f": {detail}" if detail else ""
    if code not in _NOT_MINE_CODES and code != "broken-file":
        return None  # unsafe, too large, unreadable: a failure whatever the file is
    container = container_for_extension(path)
    if container is not None and container.id in ("png", "webp"):
        return "a picture without an embedding card"
    if kind_of(path) == "a model checkpoint":
        return f"a model checkpoint, not an embedding{why}"
    if code in _NOT_MINE_CODES:
        return f"not an embedding{why}"
    return None


def classify(path: str, exc: BaseException | None = None, *, walked: bool = True) -> tuple[str, str | None]:
    """``(kind, reason)`` for a file after reading it: :data:`READ` (``exc`` is ``None``),
    :data:`SKIPPED` with the reason (:func:`error_reason`, only for a file met in a folder), or
    :data:`ERROR` with the error's message."""
    if exc is None:
        return READ, None
    code = getattr(exc, "code", "error")
    reason = error_reason(path, code, getattr(exc, "detail", str(exc))) if walked else None
    return (SKIPPED, reason) if reason is not None else (ERROR, str(exc))


def walk(paths: Iterable[str | os.PathLike], *, stat_files: bool = False, unit: Callable[[str], bool] | None = None) -> Iterator[Found]:
    """Every file and concept folder under ``paths``, in :func:`embkit.walk.walk`'s order (regular
    files only, no link out of the tree, no recursion, sorted), each with its :func:`name_reason`
    (a FIFO or a link out of the tree comes with the reason it is not read);
    hidden names and the second files of SDXL pairs are left out. A path named directly is passed
    through as named, never skipped. ``unit``: which folders are read whole (default: concept
    folders with their text files; ``convert`` also takes a folder holding only
    ``learned_embeds.*``, so that its output is named after the folder)."""
    from .formats.concept_folder import is_concept_folder
    from .io import is_companion
    from .walk import walk as walk_paths

    for e in walk_paths(paths, unit=unit or is_concept_folder, hidden=False, stat_files=stat_files, passed=True):
        if e.passed is not None:  # a FIFO, a link out of the tree: listed as skipped, never opened
            yield Found(e.path, e.rel, False, True, e.passed, passed=True)
            continue
        if not e.walked or e.unit:
            yield Found(e.path, e.rel, e.unit, e.walked, None, e.size, e.mtime_ns)
            continue
        skip = name_reason(e.path)
        if skip is None and is_companion(e.path):
            continue  # the CLIP-G file of a pair: read, and reported, with its first file
        yield Found(e.path, e.rel, False, True, skip, e.size, e.mtime_ns)


def walk_exit_code(codes: Iterable[int], found: int = 1) -> int:
    """The exit status of a walk from the exit codes of the files that failed (``codes``; a
    skipped file is not one) and how many files were found that are not skipped (``found``):

    * 0 when nothing failed;
    * 5 when any file is unsafe (:class:`~embkit.errors.UnsafeFileError`): a folder that holds one
      exits 5 in every command, whatever else failed, so a gate sees it;
    * the failures' exit code when they share one, 1 when they differ;
    * 4 (:class:`~embkit.errors.UnknownFormatError`) when nothing failed and nothing was found.
    """
    failed = {c for c in codes if c}
    if 5 in failed:
        return 5
    if len(failed) > 1:
        return 1
    if failed:
        return failed.pop()
    return 0 if found else 4


def skipped_entry(path: str, reason: str) -> dict:
    """The JSON object a command lists for a skipped file: ``{"path", "skipped": reason}``."""
    return {"path": path, "skipped": reason}


__all__ = ["READ", "SKIPPED", "ERROR", "NOT_EMBEDDINGS", "Found", "kind_of", "name_reason", "error_reason", "classify", "walk",
           "walk_exit_code", "skipped_entry"]

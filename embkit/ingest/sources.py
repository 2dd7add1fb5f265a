"""What to ingest: the files under SOURCE folders, or the paths a manifest lists.

Every file found becomes an *item*: a plain dict (cheap to send to a worker process or a Ray task)
with ``path`` (absolute, as found), ``source`` (the SOURCE it came from), ``size``, ``mtime_ns``,
``open`` (the path the read step opens), ``root`` (for a file found in a folder: the folder a link
may lead into), ``sidecar_key`` and ``present`` (the sidecars beside it, as ``embkit library scan``
keys them), or ``skip_code``/``skip_reason`` when the file must not be read at all.

Folders are walked as ``embkit library scan`` walks them (:func:`embkit.library.tree.walk`, over
:func:`embkit.walk.walk_tree`, the one walk): regular files with embkit's extensions, hidden names
skipped, no recursion, links followed only inside the SOURCE folder, and companions left out: a
preview picture and the second file of a diffusers SDXL pair belong to another file (its record
holds them, and its conversion joins the pair), so they are not uploads of their own. What the walk
passes by unread (:attr:`embkit.walk.Entry.passed`: a link out of the SOURCE folder or to nothing,
a pipe, a socket, a device) is said with the walk's reason: a ``skipped`` row (``link-outside``,
``link-broken``, ``not-a-file``) when its name is one embkit reads, else listed in ``ignored``
(links to folders outside are also counted, ``links_skipped``); the other files of the folder are
skipped by their names, with the reason (:mod:`embkit.folder`: pictures, text, sidecars,
previews, archives …; ``ignored``), never opened. The output folder never overlaps what is read (:func:`check_output`).

A path named on the command line is read as named (a named link is followed: it was named); a
path a manifest lists that is a link is not read (a manifest names files, not what links point
to); pipes, devices and sockets are never opened.

A manifest of paths is a text file (``.txt``, ``.lst``: one path per line, ``#`` comments), JSON
Lines (``.jsonl``: objects with a ``path`` key) or Parquet (``.parquet``: a ``path`` column);
relative paths are taken from the manifest's folder. A listed folder is walked like a SOURCE folder.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field

from ..errors import EmbkitError, MissingFileError

#: A SOURCE file with one of these extensions is a manifest of paths, not an embedding.
MANIFEST_EXTENSIONS = (".txt", ".lst", ".jsonl", ".parquet")


@dataclass
class Found:
    """The items found, in path order, and what the walk passed over."""

    items: list[dict] = field(default_factory=list)
    #: links to folders outside the SOURCE folder, which are never followed
    links_skipped: int = 0
    #: files whose names are not valid UTF-8 (a manifest column cannot hold them): not ingested
    bad_names: list[str] = field(default_factory=list)
    #: ``(path, reason)`` of the other files met in SOURCE folders, skipped by their names as no
    #: embedding (:func:`embkit.folder.name_reason`), never opened: not rows of the manifest
    ignored: list[tuple[str, str]] = field(default_factory=list)


def check_output(out: str, paths: list[str]) -> None:
    """Refuse, before any upload is read, an output folder ``out`` that would write into what is
    read: one whose tree overlaps a folder of ``paths`` (the same folder, one inside the other,
    through links too: :func:`embkit.walk.check_not_an_input`), or one that holds a file of
    ``paths`` (an upload, a manifest of paths: ingest replaces its manifest and adds files under
    DIR). :class:`~embkit.errors.WriteError` (exit 9)."""
    from ..errors import WriteError
    from ..walk import check_not_an_input, trees_overlap

    paths = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
    check_not_an_input(out, paths, into_folder=True)
    for path in paths:
        if os.path.lexists(path) and not os.path.isdir(path) and trees_overlap(out, path):
            raise WriteError(f"holds the input file {path}: embkit never writes into what it reads; write to a folder outside it", path=out)


def discover(sources: list[str], out: str) -> Found:
    """Every file to ingest under ``sources`` (folders, files, manifests), each once, by path. A
    path a manifest lists is checked against ``out`` (:func:`check_output`) before it is walked."""
    found = Found()
    seen: dict[str, dict] = {}
    for src in sources:
        src = os.path.abspath(os.path.expanduser(os.fspath(src)))
        if os.path.isdir(src):
            _walk(src, src, found, seen)
        elif os.path.isfile(src) and src.lower().endswith(MANIFEST_EXTENSIONS):
            listed_paths = read_path_list(src)
            check_output(out, listed_paths)
            for listed in listed_paths:
                if os.path.islink(listed):
                    st = _stat(listed)
                    _add(_item(listed, src, st, None, ("link", "is a symbolic link; a manifest's paths are read only as files and folders")), found, seen)
                elif os.path.isdir(listed):
                    _walk(listed, src, found, seen)
                else:
                    _add(_named(listed, src), found, seen)
        elif os.path.lexists(src):
            _add(_named(src, src), found, seen)
        else:
            raise MissingFileError("no such file or folder", path=src)
    named = [p for p, item in seen.items() if item["open"] and not item["root"]]
    if named:  # the sidecars beside files named one by one: each folder listed once
        from ..library.tree import beside_files

        for path, (key, present) in beside_files(named).items():
            seen[path]["sidecar_key"], seen[path]["present"] = key, _names(present)
    found.items = [seen[p] for p in sorted(seen)]
    found.ignored.sort()
    return found


def read_path_list(manifest: str) -> list[str]:
    """The paths a manifest lists, absolute (relative ones from the manifest's folder)."""
    base = os.path.dirname(manifest)
    low = manifest.lower()
    paths: list[str] = []
    try:
        if low.endswith(".parquet"):
            from .manifest import pyarrow_module

            pyarrow_module()
            import pyarrow.parquet as pq

            table = pq.read_table(manifest)
            if "path" not in table.column_names:
                raise EmbkitError("has no 'path' column", path=manifest)
            paths = [p for p in table.column("path").to_pylist() if p]
        elif low.endswith(".jsonl"):
            with open(manifest, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        raise EmbkitError(f"line {n} is not JSON", path=manifest) from None
                    if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
                        raise EmbkitError(f"line {n} has no \"path\" string", path=manifest)
                    paths.append(obj["path"])
        else:
            with open(manifest, encoding="utf-8") as fh:
                paths = [s for s in (line.strip() for line in fh) if s and not s.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise EmbkitError(f"cannot read the manifest ({exc})", path=manifest) from None
    except Exception as exc:  # pyarrow's errors for a damaged Parquet file
        if isinstance(exc, EmbkitError):
            raise
        raise EmbkitError(f"cannot read the manifest ({type(exc).__name__}: {exc})", path=manifest) from None
    return [os.path.normpath(os.path.join(base, os.path.expanduser(p))) for p in paths]


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _names(present: tuple[str, ...]) -> str:
    """The sidecar names as one string (an item's values are strings: Ray Data's blocks type a
    column by what each block holds, and a list empty in every row of one would be typed null)."""
    return json.dumps(list(present), ensure_ascii=False)


def _item(path: str, source: str, st: os.stat_result | None, open_path: str | None, skip: tuple[str, str] | None = None, *,
          root: str | None = None, sidecar_key: str = "", present: str = "[]") -> dict:
    return {
        "path": path,
        "source": source,
        "size": st.st_size if st is not None else 0,
        "mtime_ns": st.st_mtime_ns if st is not None else 0,
        "open": open_path,
        "root": root,
        "sidecar_key": sidecar_key,
        "present": present,
        "skip_code": skip[0] if skip else None,
        "skip_reason": skip[1] if skip else None,
    }


def _add(item: dict, found: Found, seen: dict) -> None:
    path = item["path"]
    if not _utf8(path):
        found.bad_names.append(_shown(path))
        return
    seen.setdefault(path, item)


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path: str) -> str:
    """A name that is not valid UTF-8, its undecodable bytes shown as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _named(path: str, source: str) -> dict:
    """A file named on the command line or in a manifest: read as named (a link is followed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _item(path, source, None, None, ("missing", "no such file"))
    except OSError as exc:
        return _item(path, source, None, None, ("unreadable", f"cannot read ({exc.strerror or exc})"))
    if not stat.S_ISREG(st.st_mode):
        return _item(path, source, st, None, _not_a_file(st))
    return _item(path, source, st, os.path.realpath(path))


def _not_a_file(st: os.stat_result) -> tuple[str, str]:
    kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, a device or a socket)"
    return ("not-a-file", f"is {kind}; not read")


def _walk(root: str, source: str, found: Found, seen: dict) -> None:
    """The files under the folder ``root`` (see the module docstring)."""
    from ..formats import extensions
    from ..library.tree import walk
    from ..walk import hf_cache_root

    exts = tuple(extensions())
    boundary = os.path.realpath(hf_cache_root(root) or root)
    passed: list[tuple[str, str]] = []
    beside: dict[str, tuple[str, tuple[str, ...]]] = {}
    skipped: list[tuple[str, str]] = []
    walked = walk(root, exts, beside, skipped, passed=passed)
    for path, size, mtime in walked:
        key, present = beside.get(path, ("", ()))
        item = _item(path, source, None, path, root=boundary, sidecar_key=key, present=_names(present))
        item["size"], item["mtime_ns"] = size, mtime
        _add(item, found, seen)
    # what the walk passed by unread (embkit.walk.Entry.passed), with its reason: a row when it is
    # named like an embedding (an upload the manifest must account for), else skipped with the others
    for path, why in passed:
        if os.path.isdir(path):
            found.links_skipped += 1  # a folder outside: never entered
        elif path.lower().endswith(exts):
            code = _passed_code(path, boundary)
            # the size of what a link leads to (stat only, never read); none for a link to nothing
            st = None if code == "link-broken" else _stat(os.path.realpath(path))
            _add(_item(path, source, st, None, (code, why)), found, seen)
            continue
        skipped.append((path, why))
    # the other files, by their names (previews and sidecars are also part of their file's row)
    found.ignored += [(p if _utf8(p) else _shown(p), reason) for p, reason in skipped]


def _passed_code(path: str, boundary: str) -> str:
    """The ``error_code`` of a file the walk passed by: a link to nothing, a link out of the
    SOURCE folder (``boundary``), or no regular file (a pipe, a socket, a device)."""
    from ..walk import is_inside

    if not os.path.islink(path):
        return "not-a-file"
    if not os.path.exists(path):
        return "link-broken"
    return "not-a-file" if is_inside(path, boundary) else "link-outside"


__all__ = ["discover", "check_output", "read_path_list", "Found", "MANIFEST_EXTENSIONS"]

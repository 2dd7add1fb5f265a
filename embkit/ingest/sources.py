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
passes over is said: a link out of the SOURCE folder, or to nothing, becomes a ``skipped`` row
(``link-outside``, ``link-broken``) when its name is one embkit reads; links to folders outside
are counted (``links_skipped``). The output folder, when it lies inside a SOURCE, is left out.

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

from ..errors import EmbkitError

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


def discover(sources: list[str], out: str) -> Found:
    """Every file to ingest under ``sources`` (folders, files, manifests), each once, by path."""
    found = Found()
    seen: dict[str, dict] = {}
    for src in sources:
        src = os.path.abspath(os.path.expanduser(os.fspath(src)))
        if os.path.isdir(src):
            _walk(src, src, out, found, seen)
        elif os.path.isfile(src) and src.lower().endswith(MANIFEST_EXTENSIONS):
            for listed in read_path_list(src):
                if os.path.islink(listed):
                    st = _stat(listed)
                    _add(_item(listed, src, st, None, ("link", "is a symbolic link; a manifest's paths are read only as files and folders")), found, seen)
                elif os.path.isdir(listed):
                    _walk(listed, src, out, found, seen)
                else:
                    _add(_named(listed, src), found, seen)
        elif os.path.lexists(src):
            _add(_named(src, src), found, seen)
        else:
            raise EmbkitError("no such file or folder", path=src)
    named = [p for p, item in seen.items() if item["open"] and not item["root"]]
    if named:  # the sidecars beside files named one by one: each folder listed once
        from ..library.tree import beside_files

        for path, (key, present) in beside_files(named).items():
            seen[path]["sidecar_key"], seen[path]["present"] = key, _names(present)
    found.items = [seen[p] for p in sorted(seen)]
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
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        found.bad_names.append(path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
        return
    seen.setdefault(path, item)


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


def _walk(root: str, source: str, out: str, found: Found, seen: dict) -> None:
    """The files under the folder ``root`` (see the module docstring)."""
    from ..formats import extensions
    from ..library.tree import walk
    from ..walk import hf_cache_root, is_inside

    exts = tuple(extensions())
    boundary = os.path.realpath(hf_cache_root(root) or root)
    # DIR inside SOURCE: its converted files and previews are not uploads (DIR as this walk names it)
    real_out = os.path.realpath(out)
    inside = real_out == boundary or real_out.startswith(boundary.rstrip(os.sep) + os.sep)
    skip_prefix = os.path.join(root, os.path.relpath(real_out, os.path.realpath(root))) + os.sep if inside else None
    passed: list[str] = []
    beside: dict[str, tuple[str, tuple[str, ...]]] = {}
    for path, size, mtime in walk(root, exts, beside, passed=passed.append):
        if skip_prefix is not None and path.startswith(skip_prefix):
            continue
        key, present = beside.get(path, ("", ()))
        item = _item(path, source, None, path, root=boundary, sidecar_key=key, present=_names(present))
        item["size"], item["mtime_ns"] = size, mtime
        _add(item, found, seen)
    for link in passed:
        if os.path.isdir(link):
            found.links_skipped += 1  # a folder outside: never entered
        elif link.lower().endswith(exts):
            target = _target(link)
            if target is None:
                _add(_item(link, source, None, None, ("link-broken", "is a symbolic link to nothing; not read")), found, seen)
            elif not is_inside(target, boundary):
                _add(_item(link, source, _stat(target), None, ("link-outside", "is a symbolic link to a file outside SOURCE; not read")), found, seen)


def _target(link: str) -> str | None:
    """Where a link leads, when that exists."""
    target = os.path.realpath(link)
    return target if os.path.exists(target) else None


__all__ = ["discover", "read_path_list", "Found", "MANIFEST_EXTENSIONS"]

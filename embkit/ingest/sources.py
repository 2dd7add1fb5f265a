"""What to ingest: the files under SOURCE folders, or the paths a manifest lists.

Every file found becomes an *item*: a plain dict (cheap to send to a worker process or a Ray task)
with ``path`` (absolute, as found), ``source`` (the SOURCE it came from), ``size``, ``mtime_ns``
and ``open``, the path the read step opens, or ``skip`` (an error code and message) when the
file must not be read at all.

Nothing outside the named sources is read:

* in a folder, a symbolic link to a file is read only when its target lies inside the same SOURCE
  folder; a link that leads out (or nowhere) becomes a ``skipped`` row; links to folders are not
  followed (counted in ``links_skipped``);
* a path named on the command line is read as named (a named link is followed: it was named);
  a path a manifest lists that is a link is not read (a manifest names files, not what links
  point to);
* pipes, devices and sockets are never opened; hidden folders, embkit's temporary files, preview
  pictures (``*.preview.png``) and the output folder itself are not walked.

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
    #: links to folders, which are never followed
    links_skipped: int = 0
    #: files whose names are not valid UTF-8 (a manifest column cannot hold them): not ingested
    bad_names: list[str] = field(default_factory=list)


def discover(sources: list[str], out: str) -> Found:
    """Every file to ingest under ``sources`` (folders, files, manifests), each once, by path."""
    from ..atomic import is_temp
    from ..formats import extensions

    found = Found()
    exts = tuple(extensions())
    out_key = _key(out)
    seen: dict[str, dict] = {}
    for src in sources:
        src = os.path.abspath(os.path.expanduser(os.fspath(src)))
        if os.path.isdir(src):
            _walk(src, src, exts, out_key, is_temp, found, seen)
        elif os.path.isfile(src) and src.lower().endswith(MANIFEST_EXTENSIONS):
            for listed in read_path_list(src):
                if os.path.islink(listed):
                    st = _stat(listed)
                    _add(_item(listed, src, st, None, ("link", "is a symbolic link; a manifest's paths are read only as files and folders")), found, seen)
                elif os.path.isdir(listed):
                    _walk(listed, src, exts, out_key, is_temp, found, seen)
                else:
                    _add(_named(listed, src), found, seen)
        elif os.path.lexists(src):
            _add(_named(src, src), found, seen)
        else:
            raise EmbkitError("no such file or folder", path=src)
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


def _key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _item(path: str, source: str, st: os.stat_result | None, open_path: str | None, skip: tuple[str, str] | None = None) -> dict:
    return {
        "path": path,
        "source": source,
        "size": st.st_size if st is not None else 0,
        "mtime_ns": st.st_mtime_ns if st is not None else 0,
        "open": open_path,
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


def _walk(root: str, source: str, exts: tuple[str, ...], out_key, is_temp, found: Found, seen: dict) -> None:
    real_root = os.path.realpath(root)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # an unreadable folder: its files are not seen
        for entry in entries:
            name = entry.name
            try:
                if entry.is_symlink():
                    if os.path.isdir(entry.path):
                        found.links_skipped += 1  # never followed: it could lead anywhere
                    elif _wanted(name, exts, is_temp):
                        _add(_link(entry.path, real_root, source), found, seen)
                elif entry.is_dir(follow_symlinks=False):
                    if not name.startswith(".") and not is_temp(name) and _key(entry.path) != out_key:
                        stack.append(entry.path)
                elif _wanted(name, exts, is_temp):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        _add(_item(entry.path, source, st, entry.path), found, seen)
                    else:
                        _add(_item(entry.path, source, st, None, _not_a_file(st)), found, seen)
            except OSError:
                continue  # vanished between listing and stat
    return None


def _wanted(name: str, exts: tuple[str, ...], is_temp) -> bool:
    low = name.lower()
    return low.endswith(exts) and not low.endswith(".preview.png") and not name.startswith(".") and not is_temp(name)


def _link(path: str, real_root: str, source: str) -> dict:
    """A link found in a folder: read its target only when that lies inside the same SOURCE."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except OSError:
        return _item(path, source, None, None, ("link-broken", "is a symbolic link to nothing; not read"))
    inside = os.path.commonpath([real_root, target]) == real_root
    if not inside:
        return _item(path, source, st, None, ("link-outside", "is a symbolic link to a file outside SOURCE; not read"))
    if not stat.S_ISREG(st.st_mode):
        return _item(path, source, st, None, _not_a_file(st))
    return _item(path, source, st, target)


__all__ = ["discover", "read_path_list", "Found", "MANIFEST_EXTENSIONS"]

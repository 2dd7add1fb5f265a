"""The one folder walk every command shares, and the checks that keep reads and writes inside the
user's folders.

:func:`walk` expands the paths a user names into the files under them. Its rules, the same for
``inspect``, ``verify``, ``convert``, ``scan``, ``previews``, ``ingest``, ``library scan`` and ``pull``:

* **regular files only**: a FIFO, socket or device met in a folder is skipped (opening a FIFO
  blocks forever; ``/dev/zero`` never ends). A path named directly is passed through as it is:
  the user chose it, and the readers cap what a pipe may give;
* **no link out of the tree**: a symlink is followed only when its target lies inside the folder
  being walked (``links="inside"``, the default) or never (``links="never"``); a link to ``/usr``
  in an embeddings folder is not read;
* **iterative**: a tree thousands of folders deep is walked without recursion (``os.walk`` of
  Python 3.11 recurses, and raised RecursionError at 1,000 levels);
* sorted, folders after the files beside them, so every command lists a tree in the same order;
* **nothing vanishes unsaid**: asked with ``passed=True`` (every command does, through
  :func:`embkit.folder.walk`), the walk also yields what these rules leave unread, with the reason
  in :attr:`Entry.passed`, so that it is listed as skipped; it is never opened.

The output side: :func:`check_inside` refuses a path that resolves (through links in any existing
part) outside the output root, and :func:`makedirs_inside` creates folders without passing through
such links. :func:`regular_file_inside` is the test for files read beside an embedding (a concept
folder's text files). This module knows no format: callers say which names they want and which
folders are read whole.
"""

from __future__ import annotations

import os
import stat
from typing import Callable, Iterable, Iterator, NamedTuple

from .errors import WriteError


class Entry(NamedTuple):
    """One thing found: ``path`` (as joined from the argument), ``rel`` (``/``-separated, relative to
    the folder walked; ``""`` for a path named directly), whether it is a folder read whole
    (``unit``: a concept folder), whether it was found by walking a folder (``walked``), and the
    size and modification time of a regular file (when ``stat=True`` was asked)."""

    path: str
    rel: str = ""
    unit: bool = False
    walked: bool = False
    size: int = 0
    mtime_ns: int = 0
    #: why the walk passed this entry by without reading it (a FIFO, a link out of the tree), when
    #: the caller asked to hear of such entries (``passed=True``); never set otherwise
    passed: str | None = None


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path``, every link in it resolved, lies in ``root`` (resolved too) or is it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def hf_cache_root(path: str | os.PathLike) -> str | None:
    """The repo folder of a Hugging Face cache (``models--a--b``) when ``path`` lies in one of its
    ``snapshots/<revision>/``: the cache keeps every file as a link into the repo's ``blobs/``, so
    for files of a snapshot that repo folder is the tree links may stay in."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots":
            repo = os.sep.join(parts[:i]) or os.sep
            return repo if os.path.isdir(os.path.join(repo, "blobs")) else None
    return None


def regular_file_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (after links) that lies in ``root``, or in the Hugging
    Face cache repo ``root`` belongs to (the test for a file read beside an embedding)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    if not os.path.islink(path) and is_inside(os.path.dirname(os.path.abspath(path)), root):
        return True
    if is_inside(path, root):
        return True
    cache = hf_cache_root(root)
    return cache is not None and is_inside(path, cache)


def walk_tree(top: str, *, want: Callable[[str], bool] | None = None, unit: Callable[[str], bool] | None = None,
              links: str = "inside", boundary: str | None = None, hidden: bool = True, stat_files: bool = False,
              passed: bool = False) -> Iterator[Entry]:
    """Every regular file under the folder ``top`` whose name ``want`` accepts (all, without it),
    and every sub-folder ``unit`` accepts, yielded whole (not entered). ``links``: ``"inside"``
    follows a link only when its target lies in ``boundary`` (default ``top``, or the Hugging Face
    cache repo ``top`` lies in), ``"never"`` skips links. ``hidden=False`` skips names starting with
    a dot; ``stat_files`` fills in each file's size and modification time. ``passed=True`` also
    yields, with the reason in :attr:`Entry.passed`, what the rules leave unread that a user may
    look for: a FIFO, socket or device, a link out of the tree, a broken link (never hidden names)."""
    if links not in ("inside", "never"):
        raise ValueError("links must be 'inside' or 'never'")
    # a Hugging Face snapshot's files are links into its repo's blobs/: that repo is the tree
    boundary = os.path.realpath(boundary or hf_cache_root(top) or top)
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(top)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        return
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        folder, rel = stack.pop()
        if rel and unit is not None and unit(folder):
            yield Entry(folder, rel, unit=True, walked=True)
            continue
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # unreadable folder: its files are simply not seen
        subdirs = []
        for e in entries:
            name = e.name
            if not hidden and name.startswith("."):
                continue
            child_rel = f"{rel}/{name}" if rel else name
            try:
                link = e.is_symlink()
                if link and (links == "never" or not is_inside(e.path, boundary)):
                    if passed:  # never out of the tree
                        yield Entry(e.path, child_rel, walked=True, passed="a link out of the folder (links are followed only inside it)"
                                    if links == "inside" else "a link (links are not followed here)")
                    continue
                if e.is_dir(follow_symlinks=link):
                    if link:
                        st = os.stat(e.path)
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue  # a link back up the tree: each folder once
                        seen.add(key)
                    subdirs.append((e.path, child_rel))
                elif e.is_file(follow_symlinks=link) and (want is None or want(name)):
                    size = mtime = 0
                    if stat_files:
                        st = e.stat(follow_symlinks=link)
                        size, mtime = st.st_size, st.st_mtime_ns
                    yield Entry(e.path, child_rel, walked=True, size=size, mtime_ns=mtime)
                elif passed and (want is None or want(name)):
                    yield Entry(e.path, child_rel, walked=True, passed=_not_regular(e.path, link))
            except OSError:
                continue  # vanished between listing and stat
        stack.extend(reversed(subdirs))


def _not_regular(path: str, link: bool) -> str:
    """Why a name in a folder that is neither a folder nor a regular file is not read."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken link" if link else "cannot be read"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file: reading it could block forever"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    return "not a regular file"


def walk(paths: Iterable[str | os.PathLike], *, want: Callable[[str], bool] | None = None, unit: Callable[[str], bool] | None = None,
         links: str = "inside", hidden: bool = True, stat_files: bool = False, passed: bool = False) -> Iterator[Entry]:
    """:func:`walk_tree` of every folder among ``paths``; a folder ``unit`` accepts, and any path
    that is not a folder, is passed through as named (``walked=False``)."""
    for p in paths:
        p = os.fspath(p)
        if not os.path.isdir(p) or (unit is not None and unit(p)):
            yield Entry(p, "", unit=os.path.isdir(p))
            continue
        yield from walk_tree(p, want=want, unit=unit, links=links, hidden=hidden, stat_files=stat_files, passed=passed)


class Listings:
    """The names in folders, each folder listed once (until :meth:`clear`): the sidecar and pair
    lookups of the files of a walked folder (``embkit.io.open_file(..., present=...)``) then cost
    no system call each."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str] | None] = {}

    def beside(self, path: str | os.PathLike) -> frozenset[str] | None:
        """The names in the folder holding ``path`` (``None`` when it cannot be listed: each
        name is then looked up on its own)."""
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in self._names:
            try:
                self._names[folder] = frozenset(os.listdir(folder))
            except OSError:
                self._names[folder] = None
        return self._names[folder]

    def clear(self) -> None:
        """Forget every listing (the folders may have changed since)."""
        self._names.clear()


def check_inside(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` itself, after checking that it stays inside the output ``root``: lexically (no
    ``..`` out of it) and through links (the deepest existing folder above ``path`` must resolve
    inside ``root``, which may itself be a link the user chose). The last part of ``path`` is not
    followed: atomic writes rename over it, never write through it. :class:`WriteError` otherwise."""
    path = os.fspath(path)
    target, base = os.path.abspath(path), os.path.abspath(root)
    lexical = target == base or target.startswith(base.rstrip(os.sep) + os.sep)
    probe = os.path.dirname(target)
    while not os.path.lexists(probe):  # the deepest part that exists decides where the rest goes
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    below_root = probe == base or probe.startswith(base.rstrip(os.sep) + os.sep)
    if not lexical or (below_root and not is_inside(probe, base)):
        raise WriteError(f"resolves outside the output folder {os.fspath(root)} (through a link or '..'); refusing to write there", path=path)
    return path


def makedirs_inside(folder: str | os.PathLike, root: str | os.PathLike) -> None:
    """``os.makedirs(folder, exist_ok=True)`` without recursion (a path 1,000 folders deep) and
    without passing through a link that leaves ``root``."""
    folder = os.path.abspath(folder)
    check_inside(os.path.join(folder, "_"), root)  # the folder itself must resolve inside the root
    missing = []
    probe = folder
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for part in reversed(missing):
        try:
            os.mkdir(part)
        except FileExistsError:
            if not os.path.isdir(part):
                raise WriteError("exists and is not a folder", path=part) from None


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (through links, hard links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def trees_overlap(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether the trees at ``a`` and ``b`` share anything: the same folder, or one inside the
    other, lexically or through links (each resolved as far as it exists)."""
    pairs = ((os.path.abspath(a), os.path.abspath(b)), (os.path.realpath(a), os.path.realpath(b)))
    for x, y in pairs:
        if x == y or x.startswith(y.rstrip(os.sep) + os.sep) or y.startswith(x.rstrip(os.sep) + os.sep):
            return True
    return same_path(a, b)


def check_not_an_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], *, into_folder: bool = False,
                       in_place: bool = False) -> bool:
    """Refuse, before anything is written, an output that would write over an input: ``output``
    naming an input file itself (allowed only with ``in_place``, and then this returns True), or an
    output folder (``into_folder``, or ``output`` an existing folder) whose tree overlaps an input
    folder (the same folder, one inside the other, through links too). Files written beside an
    input file in a folder that holds it are checked one by one by the writer
    (:func:`same_path`). :class:`WriteError` otherwise; False when no input is the output."""
    output = os.fspath(output)
    replaces = False
    for inp in inputs:
        inp = os.fspath(inp)
        if inp == "-" or not os.path.lexists(inp):
            continue
        if os.path.isdir(inp) and (into_folder or os.path.isdir(output) or os.path.isdir(inp)):
            if trees_overlap(output, inp):
                if in_place and same_path(output, inp) and not into_folder:
                    replaces = True  # a concept folder named as its own output
                    continue
                raise WriteError(
                    f"overlaps the input folder {inp} (the same folder, or one inside the other): embkit never writes into "
                    "what it reads; write to a folder outside it", path=output)
        elif os.path.lexists(output) and same_path(output, inp):
            if not in_place:
                raise WriteError("is the input itself: embkit never writes over an input; name another output, or give "
                                 "--in-place (in_place=True) to replace it atomically once the new file is complete", path=output)
            replaces = True
    return replaces


__all__ = ["Entry", "same_path", "trees_overlap", "check_not_an_input", "walk", "walk_tree", "is_inside", "hf_cache_root", "regular_file_inside", "check_inside", "makedirs_inside"]

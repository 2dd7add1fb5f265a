"""The walk of a library scan: which files under a root are embeddings to read, which are skipped
(with the reason, :mod:`embkit.folder`), and the sidecars beside each file (their names, sizes and
mtimes as one key, so that a scan notices a changed sidecar). Shared by ``embkit library scan`` and
``embkit ingest``.
"""

from __future__ import annotations

import os
from typing import Iterable

from ..folder import name_reason
from ..formats.sdxl_pair import first_path, second_path
from ..formats.sidecars import candidates, is_preview_name, owners
from ..io import is_companion


def walk(root: str, extensions: tuple[str, ...], beside: dict | None = None, skipped: list | None = None, *,
         passed: list | None = None) -> list[tuple[str, int, int]]:
    """Every file under ``root`` (recursively, skipping hidden names) whose name ends with one of
    ``extensions``: ``(absolute path, size, mtime_ns)``. A file path is returned as itself. The walk
    is :func:`embkit.walk.walk_tree`: regular files only (a FIFO would block the scan), no link out
    of ``root`` (a link to /usr in an embeddings folder is not read), no recursion. Companions
    (previews, the second file of an SDXL pair: :func:`embkit.io.is_companion`) are left out.
    ``beside``, when given, is filled with path → ``(key, names)``: the sidecars (and pair file)
    beside each file, their names, sizes and mtimes as one string, and their names. ``skipped``,
    when given, gets ``(path, reason)`` for every other file of the tree (:mod:`embkit.folder`:
    previews, sidecars, pictures, text …), none of which is opened, and for what the walk passes by
    unread (:attr:`embkit.walk.Entry.passed`: a FIFO, a link out of the tree, a broken link), with
    the walk's reason; ``passed``, when given, gets those instead (``embkit ingest`` makes rows of
    them)."""
    from ..walk import walk_tree

    root = os.path.abspath(root)
    if not os.path.isdir(root):
        st = os.stat(root)
        if beside is not None:
            beside.update(beside_files([root]))
        return [(root, st.st_size, st.st_mtime_ns)]

    def wanted(name: str) -> bool:
        return name.lower().endswith(extensions)

    out: list[tuple[str, int, int]] = []
    listing: tuple[str, set[str], tuple] = ("", set(), ({}, set()))  # the folder being walked, its names
    passed_to = passed if passed is not None else skipped
    for entry in walk_tree(root, want=None if skipped is not None else wanted, hidden=False, stat_files=True, passed=passed_to is not None):
        if entry.passed is not None:
            passed_to.append((entry.path, entry.passed))  # a FIFO, a link out of the tree: never opened  # type: ignore[union-attr]
            continue
        folder = os.path.dirname(entry.path)
        if folder != listing[0]:
            # a file's sidecars and pair half are looked up among its folder's names, listed once
            try:
                names = set(os.listdir(folder))
            except OSError:
                names = set()
            listing = (folder, names, _owned(names) if beside is not None else ({}, set()))
        _, names, owned = listing
        name = os.path.basename(entry.path)
        if skipped is not None and (not wanted(name) or is_preview_name(name)):
            reason = name_reason(entry.path, lambda p, names=names: os.path.basename(p) in names)
            skipped.append((entry.path, reason or "not a kind of file embkit reads"))
            continue
        if _companion(entry.path, names):
            continue
        out.append((entry.path, entry.size, entry.mtime_ns))
        if beside is not None:
            beside[entry.path] = _beside(entry.path, names, owned)
    return out


def beside_files(paths: Iterable[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """path → ``(key, names)`` of the sidecars beside each of ``paths`` (files named one by one,
    as a list of uploads names them), as :func:`walk` gives them; each folder is listed once."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for folder, files in by_folder.items():
        try:
            names = set(os.listdir(folder))
        except OSError:
            names = set()
        owned = _owned(names)
        for path in files:
            out[path] = _beside(path, names, owned)
    return out


def _companion(path: str, names: set[str]) -> bool:
    name = os.path.basename(path)
    if "_2" not in name:  # cheap first: most files are neither previews nor a pair's second half
        return is_preview_name(name)
    first = first_path(name)
    # only a preview name, or a "_2" file whose first file is listed, can be a companion: the
    # others are not opened here
    return is_preview_name(name) or (first is not None and first in names and is_companion(path))


def _owned(names: set[str]) -> tuple[dict[str, list[str]], set[str]]:
    """What a folder's names may hold beside its embeddings: sidecars by stem
    (:func:`embkit.formats.sidecars.owners`), and the first files that a ``…_2`` file may pair with."""
    return owners(names), {os.path.basename(first) for n in names if "_2" in n and (first := first_path(n)) is not None}


def _beside(path: str, names: set[str], owned: tuple[dict[str, list[str]], set[str]]) -> tuple[str, tuple[str, ...]]:
    """The sidecar key of a file and the sidecar names found (see :func:`walk`); ``owned`` is
    :func:`_owned` of the folder's names."""
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    if stem not in owned[0] and name not in owned[1]:
        return "", ()  # the common case, decided without building a name
    wanted = [n for group in candidates(path).values() for n in group] + [os.path.basename(second_path(path))]
    # the previews of members of a file holding several (<stem>.<member>.preview.png)
    wanted += sorted(n for n in owned[0].get(stem, ()) if is_preview_name(n) and n not in wanted)
    found = tuple(n for n in wanted if n in names)
    parts = []
    for n in found:
        try:
            st = os.stat(os.path.join(os.path.dirname(path), n))
        except OSError:
            continue
        parts.append(f"{n}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts), found

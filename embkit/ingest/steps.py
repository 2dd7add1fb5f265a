"""The CPU stages of ``embkit ingest``, one function each, and the batch that runs them.

    read_step → scan_step → record_step → open_step → convert_step, hosts_step   (then, apart, previews)

Each stage is a plain function of what the stage before it produced, so the local process pool and
a Ray Data ``map_batches`` task run exactly the same code (:func:`process_batch`), and a stage can
be replaced by another implementation at one place. No stage raises for a bad file: what went
wrong becomes the row's ``status``, ``error_code`` and ``error`` (or ``convert_error``). The file is
read from disk once (:func:`read_step`); every later stage works on those bytes.

Converted files are content-addressed: ``DIR/objects/ab/<sha256>.safetensors``, where ``<sha256>``
is the SHA-256 of the converted file's own bytes (``ab`` its first two hex digits). The same
embedding converted twice (a duplicate upload, a resumed run) lands on the same object.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from typing import Any

from .manifest import (
    BROKEN,
    NOT_READ_CODES,
    OK,
    SKIPPED,
    UNCONVERTED,
    UNSAFE,
    no_embedding_reason,
    normal_row,
)

#: Error codes that make a row ``unsafe`` (the reader refused the file, or it is over a cap).
UNSAFE_CODES = ("unsafe-file", "too-large")


@dataclass(frozen=True)
class StepSettings:
    """What the CPU stages need (picklable: sent to worker processes and Ray tasks)."""

    #: DIR, absolute
    out: str


# -- the stages --------------------------------------------------------------------------------


def read_step(item: dict) -> tuple[bytes | None, dict]:
    """The file's bytes, read once, or ``None`` and the reason it was not read (as row fields).

    Opens ``item["open"]`` without following a link there (a file swapped for a link since the
    walk is refused), never blocks on a pipe, refuses anything but a regular file, and does not
    read a file past the library's size cap (the record step then reports it as too large)."""
    from ..library.extract import MAX_FILE_BYTES

    if item.get("skip_code"):
        return None, {"status": SKIPPED, "error_code": item["skip_code"], "error": f"{item['path']}: {item['skip_reason']}"}
    try:
        fd = _open(item["open"], item.get("root") or None)
    except OSError as exc:
        why = "became a symbolic link out of SOURCE since it was found; not read" if exc.errno == errno.ELOOP else f"cannot read ({exc.strerror or exc})"
        return None, {"status": SKIPPED, "error_code": "unreadable", "error": f"{item['path']}: {why}"}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, {"status": SKIPPED, "error_code": "not-a-file", "error": f"{item['path']}: is not a regular file; not read"}
        fields = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if st.st_size > MAX_FILE_BYTES:
            return b"", fields  # the record step says "too large" without the bytes
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, max(1 << 20, st.st_size + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                break  # grew past the cap while being read
        fields["size"] = total
        return b"".join(chunks), fields
    except OSError as exc:
        return None, {"status": SKIPPED, "error_code": "unreadable", "error": f"{item['path']}: cannot read ({exc.strerror or exc})"}
    finally:
        os.close(fd)


def scan_step(data: bytes, path: str) -> dict:
    """The safety verdict of ``embkit scan`` for these bytes (:func:`embkit.scan.scan_bytes`:
    embkit's reader run on them and every pickle walked; nothing is unpickled): the verdict, the
    container, the globals named and refused, the rules that fired, the reasons."""
    from ..scan import scan_bytes

    return scan_fields(scan_bytes(data, path))


def scan_fields(result: Any) -> dict:
    """A :class:`~embkit.scan.ScanResult` as manifest fields."""
    return {
        "scan_verdict": result.verdict,
        "scan_container": result.container,
        "scan_rules": list(result.rules),
        "scan_globals": result.globals,
        "scan_refused": result.refused,
        "scan_reasons": list(result.reasons),
    }


def record_step(path: str, size: int, mtime_ns: int, data: bytes, sidecar_key: str = "", present: tuple[str, ...] | None = None) -> dict:
    """The record ``embkit library scan`` makes of the file (hashes, format, family, slots,
    sidecars, trained words, the previews beside it, errors), as manifest fields (see
    :mod:`embkit.ingest.record`). ``sidecar_key`` and ``present``: the walk's (see
    :mod:`embkit.ingest.sources`)."""
    from ..library.extract import examine
    from .record import record_fields

    return record_fields(examine(path, size, mtime_ns, None, sidecar_key, present, data=data))


def open_step(path: str, data: bytes, present: tuple[str, ...] | None = None) -> tuple[Any, str | None]:
    """The file opened by embkit's reader from its bytes (with the other half of an SDXL pair and
    the sidecars beside it), for the conversion and the hosts; or ``None`` and why not."""
    from ..errors import EmbkitError
    from ..io import open_file

    try:
        return open_file(path, data=data, present=present), None
    except EmbkitError as exc:
        return None, f"{exc.code}: {exc.detail}"


def convert_step(loaded: Any, out: str) -> tuple[dict, list[tuple[str, bytes]]]:
    """Every embedding in the opened file as a safetensors file, kept loss-free, or the reason it
    was not.

    Each embedding is written in the layout :func:`embkit.write` picks for ``<name>.safetensors``
    (diffusers keyed by the name for one encoder, multi for several), then read back and compared bit for bit (name, slots, dtypes,
    vectors); any loss or difference refuses the whole file. Returns the ``converted`` and
    ``convert_error`` fields and the ``(absolute object path, bytes)`` still to write."""
    from ..errors import EmbkitError
    from .convert_check import convert_embeddings

    try:
        converted, files = convert_embeddings(loaded, out)
    except EmbkitError as exc:
        return {"converted": [], "convert_error": f"{exc.code}: {exc.detail}"}, []
    except (TypeError, ValueError) as exc:
        return {"converted": [], "convert_error": f"error: {exc}"}, []
    return {"converted": converted, "convert_error": None}, files


def host_facts(loaded: Any, data: bytes, scanned: Any = None) -> Any:
    """What the hosts see in the file (:class:`embkit.hosts.facts.FileFacts`), from the file
    already opened: :func:`~embkit.hosts.facts.facts_from_loaded`, with the globals of
    ``scanned`` (the scan of the same bytes) instead of a second scan. Hosts load each file on
    its own, so the first file of an SDXL pair is opened again from its bytes, without its pair."""
    from ..hosts.facts import facts_from_loaded
    from ..io import open_file

    if loaded.pair is not None:
        loaded = open_file(loaded.path, data=data, alone=True)
    return facts_from_loaded(loaded, scanned)


def hosts_step(facts: Any) -> dict:
    """Per-host verdicts from the hosts table (:mod:`embkit.hosts`), for the file's first
    embedding: host id → ``{"loads", "trigger", "reasons", "family", "families"}``. ``loads``,
    ``trigger`` and ``reasons`` are :func:`embkit.hosts.verdict` on the embedding's own model
    family (``family``; SD1 when its slots fit none), ``families`` the host's status on every
    family (``loads``, ``partial``, ``skipped``, ``error``, ``ignored``, ``unknown``: the statuses
    of :func:`embkit.hosts.where`). ``facts``: :func:`host_facts`."""
    from ..hosts.verdict import every_family, family_of

    own = family_of(None, facts)
    out = {}
    for host, by_family in every_family(facts).items():
        v = by_family[own]
        statuses = {family: x.status for family, x in by_family.items()}
        out[host] = {"loads": v.loads, "trigger": v.trigger, "reasons": list(v.reasons), "family": own, "families": statuses}
    return out


# -- one file, one batch -----------------------------------------------------------------------


def process_item(item: dict, settings: StepSettings) -> tuple[dict, list[tuple[str, bytes]], bool]:
    """Run the CPU stages on one item: ``(row, files to write, reused)``. ``reused`` is true when
    the item's ``prior`` row (from an earlier run on the same DIR) has the same SHA-256 and its
    converted files are still there: that row is returned with the current size and mtime, and
    nothing else is done."""
    from ..hashes import sha256
    from ..library.extract import MAX_FILE_BYTES

    base = {"path": item["path"], "source": item["source"], "size": item["size"], "mtime_ns": item["mtime_ns"]}
    walked = bool(item.get("root"))  # met in a SOURCE folder, not named (the folder rule)
    data, fields = read_step(item)
    base.update(fields)
    if data is None:
        return normal_row(base), [], False
    key = item.get("sidecar_key") or ""
    present = tuple(json.loads(item.get("present") or "[]"))
    if item.get("prior"):
        sha = sha256(data) if base["size"] <= MAX_FILE_BYTES else None
        for old in json.loads(item["prior"]):
            # the same bytes with the same sidecars beside them (a sidecar that changed changes the record)
            if sha is not None and old.get("sha256") == sha and (old.get("sidecar_key") or "") == key and _objects_exist(old, settings.out):
                # (an earlier run may have met the file otherwise: named, or in a folder)
                return folder_rule(normal_row({**old, **base}), walked), [], True
    from ..scan import scan_bytes

    path, size = item["path"], base["size"]
    row: dict[str, Any] = dict(base)
    scanned = None
    if size <= MAX_FILE_BYTES:  # a file past the cap was not read, so not scanned either
        scanned = scan_bytes(data, path)
        row.update(scan_fields(scanned))
    row.update(record_step(path, size, base["mtime_ns"], data, key, present))
    files: list[tuple[str, bytes]] = []
    if row.get("error_code") in UNSAFE_CODES or row.get("scan_verdict") == "unsafe":
        row["status"] = UNSAFE
        row["convert_error"] = "not converted: the file is unsafe"
    elif row.get("error_code"):
        row["status"] = BROKEN
        row["convert_error"] = "not converted: the file could not be read as an embedding"
    else:
        loaded, why = open_step(path, data, present)
        if loaded is None:  # the record read it; a second reading that fails is said, not hidden
            row.update(status=UNCONVERTED, convert_error=why)
        else:
            converted, files = convert_step(loaded, settings.out)
            row.update(converted)
            row["status"] = OK if row["converted"] else UNCONVERTED
            row["hosts"] = hosts_step(host_facts(loaded, data, scanned))
    return folder_rule(normal_row(row), walked), files, False


def folder_rule(row: dict, walked: bool) -> dict:
    """The folder rule (:mod:`embkit.folder`) on the row of a file that was read and is no
    embedding embkit can read: ``skipped`` when the file was met in a SOURCE folder and is a known
    non-embedding (a picture without an embedding card, a model checkpoint, model weights:
    :func:`~embkit.ingest.manifest.no_embedding_reason`), else ``broken``: a path named on the
    command line or in a manifest is never skipped. Other rows are returned as they are."""
    if row["status"] not in (BROKEN, SKIPPED) or not row.get("error_code") or row["error_code"] in NOT_READ_CODES:
        return row
    status = SKIPPED if walked and no_embedding_reason({**row, "status": BROKEN}) else BROKEN
    return row if status == row["status"] else {**row, "status": status}


def process_batch(items: list[dict], settings: StepSettings) -> list[dict]:
    """The CPU stages for a batch of items, then one durable commit: the converted files by group
    commit (an object that exists already is the same bytes: its name is their hash), then the new
    rows as one JSONL shard. Rows come back in item order. Used by the local pool and by Ray."""
    from ..atomic_batch import BatchWriter
    from .shards import commit_shard

    rows: list[dict] = []
    fresh: list[int] = []
    owners: list[int] = []
    with BatchWriter(commit_every=1 << 30, folders_by_syncfs=True) as writer:  # one commit per batch
        for item in items:
            row, files, reused = process_item(item, settings)
            if not reused:
                fresh.append(len(rows))
            for target, blob in files:
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    writer.submit([(target, blob)])
                    owners.append(len(rows))
            rows.append(row)
        errors = writer.finish()
    for index, exc in zip(owners, errors):
        if exc is not None and getattr(exc, "code", "") != "exists":
            rows[index] = normal_row({**rows[index], "status": UNCONVERTED, "converted": [], "convert_error": f"write-failed: {exc}"})
    commit_shard(settings.out, "cpu", [rows[i] for i in fresh])
    return rows


def _open(path: str, root: str | None) -> int:
    """A read-only descriptor of the file at ``path``, never through a link, except, for a file
    found in a folder (``root``), a link whose target still lies in that folder (the walk's rule)."""
    from ..walk import is_inside

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        return os.open(path, flags)
    except OSError as exc:
        if exc.errno != errno.ELOOP or root is None:
            raise
        target = os.path.realpath(path)
        if not is_inside(target, root):
            raise
        return os.open(target, flags)  # its target: no further link is followed


def _objects_exist(row: dict, out: str) -> bool:
    """Whether every converted file an earlier row names is still under DIR (one was deleted:
    the file is converted again)."""
    return all(os.path.exists(os.path.join(out, *c["path"].split("/"))) for c in row.get("converted") or [])


__all__ = ["read_step", "scan_step", "scan_fields", "record_step", "open_step", "convert_step", "host_facts", "hosts_step", "process_item",
           "folder_rule", "process_batch", "StepSettings"]

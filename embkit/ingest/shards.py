"""Durable progress: each finished batch's rows as a JSON Lines shard, committed atomically.

A batch (in a local worker, a Ray task or a preview actor) writes its new rows to
``DIR/.ingest/rows/<stage>-<random>.jsonl`` through :func:`embkit.atomic.write_bytes` (temporary
file, fsync, rename, folder fsync) *after* the files its rows point to are on disk. A shard is
therefore complete or absent, and every row in it is done. A run that is killed leaves its
finished batches' shards; the next run loads them and skips each file whose SHA-256 matches its
row. A task that Ray retries may commit the same rows twice: rows are keyed by (path, sha256), so
a second copy changes nothing. At the end of a run the shards are compacted into one.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from ..errors import EmbkitError
from .manifest import jsonl_bytes, read_jsonl

#: Hidden state folder under DIR.
STATE = ".ingest"
ROWS = "rows"


def rows_dir(out: str) -> str:
    """``DIR/.ingest/rows``."""
    return os.path.join(out, STATE, ROWS)


def commit_shard(out: str, stage: str, rows: Iterable[dict]) -> str | None:
    """Commit rows as one shard (rows without a SHA-256, files that were never read, are left out:
    nothing about them is worth keeping). Returns the shard's path, or None when empty."""
    from ..atomic import write_bytes

    keep = [r for r in rows if r.get("sha256")]
    if not keep:
        return None
    folder = rows_dir(out)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{stage}-{os.urandom(8).hex()}.jsonl")
    write_bytes(path, jsonl_bytes(keep))
    return path


def shard_files(out: str) -> list[str]:
    """The committed shards (temporaries of an interrupted commit are not among them)."""
    from ..atomic import is_temp

    folder = rows_dir(out)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(folder, n) for n in names if n.endswith(".jsonl") and not n.startswith(".") and not is_temp(n))


def _better(new: dict, old: dict | None, want_key: str | None) -> bool:
    """Between two rows of the same (path, sha256): the one with the previews asked for, then
    one with any previews."""
    if old is None:
        return True
    rank = lambda r: (r.get("preview_key") is not None and r.get("preview_key") == want_key, r.get("previews") is not None)  # noqa: E731
    return rank(new) > rank(old)


def load_done(out: str, want_key: str | None = None) -> dict[str, list[dict]]:
    """Rows of earlier runs on DIR: path → its rows (one per content seen at that path)."""
    best: dict[tuple[str, str], dict] = {}
    for shard in shard_files(out):
        for row in read_jsonl(shard):
            key = (row.get("path"), row.get("sha256"))
            if key[0] and key[1] and _better(row, best.get(key), want_key):
                best[key] = row
    by_path: dict[str, list[dict]] = {}
    for (path, _sha), row in best.items():
        by_path.setdefault(path, []).append(row)
    return by_path


def compact(out: str, final: list[dict], done: dict[str, list[dict]]) -> None:
    """Fold every shard into one: this run's rows (``final``) and, of the rows earlier runs left
    (``done``, as :func:`load_done` gave them at the start), those of files this run did not see.
    Then remove the folded shards (every row of a shard written during this run is in ``final``;
    one run at a time holds the lock)."""
    files = shard_files(out)
    current = {r["path"] for r in final}
    rows = [r for path, rs in done.items() if path not in current for r in rs] + list(final)
    commit_shard(out, "base", sorted(rows, key=lambda r: (r["path"], r.get("sha256") or "")))
    for path in files:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class Lock:
    """One run at a time on a DIR: an exclusive ``flock`` on ``DIR/.ingest/lock`` (released when
    the process ends, however it ends)."""

    def __init__(self, out: str):
        self.path = os.path.join(out, STATE, "lock")
        self.fd: int | None = None

    def __enter__(self) -> "Lock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no flock (Windows): one run at a time is then the user's care
            pass
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise EmbkitError("another embkit ingest is writing to this folder; wait for it to end", path=os.path.dirname(os.path.dirname(self.path))) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"pid": os.getpid()}).encode())
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


__all__ = ["commit_shard", "load_done", "compact", "shard_files", "rows_dir", "Lock", "STATE"]

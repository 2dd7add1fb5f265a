"""Chunks of work run in worker processes, results in input order: the pool ``embkit convert``
and ``embkit ingest`` share (each chunk ends with one durable commit, so several chunks a worker
keep a progress bar moving and let the last chunks end together)."""

from __future__ import annotations

from typing import Any, Callable


def chunked(items: list, workers: int, most: int) -> list[list]:
    """``items`` cut into chunks of at most ``most``, fewer items a chunk when that gives each of
    ``workers`` about four chunks."""
    size = max(1, min(most, len(items) // (max(workers, 1) * 4) or 1))
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_chunks(fn: Callable[[list, Any], list], chunks: list[list], arg: Any, workers: int, *, inline: bool = False,
               on_done: Callable[[int], None] | None = None) -> list:
    """``fn(chunk, arg)`` for every chunk, its results flattened in chunk order: in this process
    when ``inline`` or ``workers`` is 1, else in ``workers`` processes (forked where the platform
    can, so they inherit what the caller imported before). ``on_done(n)`` after
    each chunk of ``n`` items. On Ctrl-C or a lost worker, chunks not started are dropped and
    running ones are told to stop (:func:`stopping`) and end with their commit, then the exception
    goes on."""
    if inline or workers <= 1:
        results: list = []
        for chunk in chunks:
            results.extend(fn(chunk, arg))
            if on_done:
                on_done(len(chunk))
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    out: list[list] = [[] for _ in chunks]
    stop = ctx.Event()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_start, initargs=(stop,))
    try:
        futures = {pool.submit(fn, chunk, arg): i for i, chunk in enumerate(chunks)}
        for fut in as_completed(futures):
            out[futures[fut]] = fut.result()
            if on_done:
                on_done(len(chunks[futures[fut]]))
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [r for chunk in out for r in chunk]


def stopping() -> bool:
    """Whether the parent of this worker asked it to stop (Ctrl-C): finish the item at hand,
    commit, start nothing more."""
    return _STOP.event is not None and _STOP.event.is_set()


class _Stop:
    """The parent's stop flag, as a worker sees it."""

    event: Any = None


_STOP = _Stop()


def _worker_start(stop: Any) -> None:
    # workers leave Ctrl-C to the parent, which sets ``stop``
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP.event = stop


__all__ = ["chunked", "run_chunks", "stopping"]

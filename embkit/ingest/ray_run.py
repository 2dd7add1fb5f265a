"""The Ray runner: the same stages as a Ray Data pipeline.

    from_items(items)
      → map_batches(process_batch)                  CPU tasks: read, scan, record, convert, hosts
      → map_batches(RayPreviews, ActorPoolStrategy)  actors, each loading the renderer once
      → repartition(1) → sort by path → write_parquet  the manifest, written by Ray Data

Every task and actor writes to DIR (objects, previews, shards), so on a cluster SOURCE and DIR must
be on a file system every node sees at the same path (NFS, Lustre, EFS, a shared volume), and
embkit (``pip install 'embkit-ti[ray]'``) must be installed on every node. Ray Data re-runs a task
whose worker or node dies (its default, ``max_retries=-1``, for system failures only: the steps
never raise for a bad file) and restarts a lost actor; a re-run batch computes the same rows and
its shard is a harmless copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from ..errors import EmbkitError, MissingDependencyError
from .manifest import MANIFEST_PARQUET, from_table, to_table
from .steps import StepSettings, process_batch

INSTALL = "pip install 'embkit-ti[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """How the run uses the cluster. ``address``: ``auto`` (the running cluster: ``RAY_ADDRESS``
    or one started on this machine), ``local`` (a private Ray instance for this run, with ``jobs``
    CPUs), or an address (``host:port``, ``ray://host:port``)."""

    address: str
    jobs: int | None = None
    batch_size: int = 256
    actors: int = 1
    #: GPUs each preview actor holds; ``None``: one when the cluster has GPUs and the device is not the CPU
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    progress: bool = False
    #: ``local``: Ray's session folder (sockets, logs); None: Ray's default, ``/tmp/ray``
    temp_dir: str | None = None


def import_ray():
    """``ray`` with Ray Data, or :class:`MissingDependencyError` (exit 11) with the pip line."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"--ray needs Ray Data and pyarrow ({exc}); install them with: {INSTALL}") from None
    return ray


def connect(options: RayOptions) -> tuple[Any, bool]:
    """Join the cluster (or start a private instance); ``(ray, whether this call started it)``."""
    import logging

    ray = import_ray()
    if ray.is_initialized():  # a Python caller connected already: use that
        return ray, False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if options.address == "local":
            ray.init(address="local", num_cpus=options.jobs, include_dashboard=False, _temp_dir=options.temp_dir, **kwargs)
        else:
            ray.init(address=options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EmbkitError(f"cannot join the Ray cluster at {options.address!r}: {exc}") from None
    return ray, True


@contextlib.contextmanager
def _private_token():
    """A new local Ray turns on token authentication and, unless it finds a token, saves a new one
    in ``~/.ray/auth_token``: outside DIR, and picked up by later clusters. Unless the user chose
    (``RAY_AUTH_*`` set), hand this private instance a token of its own in ``RAY_AUTH_TOKEN``, which
    Ray reads before it looks for the file and its processes inherit; nothing is written."""
    names = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    if any(n in os.environ for n in names):
        yield
        return
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:
        yield
    finally:
        for n in names[:2]:  # RAY_AUTH_MODE is set by ray.init itself
            os.environ.pop(n, None)


def _cpu_batch(table, settings: StepSettings):
    """A Ray task: the CPU stages for one batch (an Arrow table of items → of manifest rows)."""
    return to_table(process_batch(table.to_pylist(), settings))


def _sorted(table):
    """The manifest's order: by path (Arrow sorts strings by their UTF-8 bytes, which is code
    point order, as Python's sort)."""
    return table.sort_by("path")


class RayPreviews:
    """A Ray actor of the preview pool: one :class:`~embkit.ingest.previews.PreviewStep` (one
    pipeline load) for its whole life, fed batches of manifest rows."""

    def __init__(self, out: str, model: str | None, device: str, settings: Any):
        from .previews import PreviewStep

        self.step = PreviewStep(out, model, device, settings)

    def __call__(self, table):
        return to_table(self.step(from_table(table)))


def run_ray(items: list[dict], settings: StepSettings, options: RayOptions, previews: Any = None) -> list[dict]:
    """Run the pipeline; the manifest lands in ``DIR/manifest.parquet`` (written by Ray Data) and
    its rows, sorted by path, are returned. ``previews``: ``(model, device, PreviewSettings)``."""
    if options.address != "local":
        return _run(items, settings, options, previews)
    # a private instance: its own token for its whole life (see _private_token), and its own
    # session folder, so that nothing else on the machine finds it (``ray.init()`` elsewhere
    # joins the cluster named in /tmp/ray) and nothing of it stays behind
    temp = tempfile.mkdtemp(prefix="embkit-ray-")
    try:
        with _private_token():
            return _run(items, settings, dataclasses.replace(options, temp_dir=temp), previews)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _run(items: list[dict], settings: StepSettings, options: RayOptions, previews: Any) -> list[dict]:
    import logging

    ray, started = connect(options)
    try:
        from ray.data import ActorPoolStrategy, DataContext

        from .previews import PREVIEW_ROWS

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = options.progress
        ctx.print_on_execution_start = False
        if not options.progress:  # Ray Data's INFO lines (and its "progress bars disabled") are progress too
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        blocks = max(1, min(len(items) // max(1, options.batch_size), 10_000))
        # no None among the items: a column that is all None in one block would be typed null
        # there and string in the next
        items = [{k: "" if v is None else v for k, v in item.items()} for item in items]
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        ds = ds.map_batches(
            _cpu_batch, fn_kwargs={"settings": settings}, batch_size=options.batch_size, batch_format="pyarrow", num_cpus=1
        )
        if previews is not None:
            model, device, preview_settings = previews
            ds = ds.map_batches(
                RayPreviews,
                fn_constructor_kwargs={"out": settings.out, "model": model, "device": device, "settings": preview_settings},
                compute=ActorPoolStrategy(size=max(1, options.actors)),
                num_gpus=actor_gpus(options.gpus_per_actor, device, ray.cluster_resources()) or None,
                num_cpus=options.cpus_per_actor,
                batch_size=PREVIEW_ROWS,
                batch_format="pyarrow",
                # any node; a remote argument the CPU stage lacks keeps Ray Data from fusing that
                # stage into the actors (fused, each actor would also read and convert, and the
                # CPU stage would scale with the actor count instead of the cluster's CPUs)
                label_selector={},
            )
        staging = os.path.join(settings.out, ".ingest", f"parquet-{os.urandom(6).hex()}")
        # one block, sorted in one task: a distributed sort (sampling, a shuffle) of rows this
        # small costs more than it saves (7 s against well under 1 s for 2,000 rows here)
        ds = ds.repartition(1).map_batches(_sorted, batch_size=None, batch_format="pyarrow")
        ds.write_parquet(staging)
        return _publish(staging, settings.out)
    except EmbkitError:
        raise
    except Exception as exc:  # a task failed past its retries, the cluster went away
        if type(exc).__module__.split(".")[0] != "ray":
            raise  # embkit's own bug: its traceback is worth more than a message
        raise EmbkitError(f"the Ray run stopped ({type(exc).__name__}: {_first_line(exc)}); finished batches are kept: run the same command again to resume") from None
    finally:
        if started:
            ray.shutdown()


def actor_gpus(asked: float | None, device: str, resources: dict) -> float:
    """The GPUs each preview actor holds: what was asked, else one when the cluster has a GPU
    and the previews are not to run on the CPU (a GPU cluster given ``--previews`` alone renders on
    its GPUs, not on a CPU beside them)."""
    if asked is not None:
        return float(asked)
    return 1.0 if device != "cpu" and resources.get("GPU", 0) >= 1 else 0.0


def _publish(staging: str, out: str) -> list[dict]:
    """Move the one Parquet file Ray wrote into place as ``DIR/manifest.parquet`` (a rename: the
    old manifest is replaced whole) and return its rows."""
    import pyarrow.parquet as pq

    from ..atomic import fsync_dir

    parts = sorted(glob.glob(os.path.join(staging, "*.parquet")))
    target = os.path.join(out, MANIFEST_PARQUET)
    if len(parts) != 1:
        raise EmbkitError(f"Ray wrote {len(parts)} manifest files, not one", path=staging)
    os.replace(parts[0], target)
    fsync_dir(out)
    for leftover in glob.glob(os.path.join(staging, "*")):
        os.remove(leftover)
    os.rmdir(staging)
    return from_table(pq.read_table(target))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["run_ray", "RayOptions", "connect", "import_ray", "RayPreviews"]

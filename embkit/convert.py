"""Batch conversion: plan jobs from inputs and an output (a file, or a folder keeping the input tree),
and convert them in worker processes. Every write is atomic and files are published by group commit
(:mod:`embkit.atomic_batch`), so a killed batch leaves each target complete or absent and re-running
finishes it. ``embkit convert`` is the command over this; nothing here prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .pool import chunked, run_chunks, stopping
from .walk import Listings

#: the dtype spellings ``--dtype`` lists (every alias of :data:`embkit.formats.writer_base.DTYPE_ALIASES` works)
DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Job:
    """One input (file or concept folder) and where its output goes."""

    source: str
    #: the target path, or, when ``into_dir``, the path without extension (extension added per format)
    target: str
    into_dir: bool
    #: --name also names the output file (a lone input converted into a folder)
    rename: bool = False
    #: the output root every write of this job must stay in ("": not checked)
    root: str = ""
    #: met while walking a folder (a file that is no embedding is then skipped, not failed)
    walked: bool = False
    #: why the file is skipped without being opened (embkit.folder.name_reason); "": convert it
    skip: str = ""
    #: a folder read whole (a concept folder, a diffusers SDXL pair's folder)
    unit: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to convert one job (picklable: sent to worker processes)."""

    to: str | None
    container: str | None
    dtype: str | None
    name: str | None
    strict: bool
    overwrite: bool
    dry_run: bool
    options: tuple[tuple[str, object], ...]
    #: ``--for HOST``: the layout that host loads best, and the result checked against its rules
    for_host: str | None = None
    #: write even when vectors are dropped (a slot, output vectors); refused by default
    allow_loss: bool = False
    #: the input named as the output may be replaced (``--in-place``); refused otherwise
    in_place: bool = False


def plan_jobs(inputs: tuple[str, ...], out: str, to: str | None = None, *, in_place: bool = False) -> tuple[list[Job], bool]:
    """Expand inputs into jobs; also says whether this is a single-file conversion.

    ``-o`` names a folder when it is one, ends with a separator, has no extension (unless the
    target is itself a concept folder), or when there are several inputs or a folder of them.
    An output that is an input (allowed only with ``in_place``), or an output folder whose tree
    overlaps an input folder, is refused here, before anything is written
    (:func:`embkit.walk.check_not_an_input`). Files in a walked folder that
    :mod:`embkit.folder` skips by name become jobs with ``skip`` set."""
    from .folder import walk as walk_found
    from .walk import check_not_an_input

    no_ext = not os.path.splitext(os.path.basename(out))[1] and to != "concept-folder"
    out_is_dir = os.path.isdir(out) or out.endswith(("/", os.sep)) or len(inputs) > 1 or no_ext
    single = len(inputs) == 1 and (os.path.isfile(inputs[0]) or _is_concept(inputs[0]))
    for src in inputs:
        if not os.path.lexists(src):
            from .errors import MissingFileError

            raise MissingFileError("no such file or folder", path=src)  # exit 1, as inspect, merge and edit say it
    check_not_an_input(out, inputs, into_folder=out_is_dir and not single, in_place=in_place)
    if single and not out_is_dir:
        return [Job(inputs[0], out, False, root=os.path.dirname(os.path.abspath(out)))], True

    jobs: list[Job] = []
    for src in inputs:
        src = os.path.normpath(src)
        if os.path.isfile(src) or _is_concept(src):
            jobs.append(Job(src, os.path.join(out, _stem(os.path.basename(src))), True, root=out))
            continue
        if not os.path.isdir(src):
            from .errors import MissingFileError

            raise MissingFileError("no such file or folder", path=src)
        base = out if len(inputs) == 1 else os.path.join(out, os.path.basename(src))
        # embkit.folder: regular files only, no link out of the input tree, no recursion (a tree
        # 1,100 folders deep raised RecursionError), hidden names and a pair's second file left out
        for entry in walk_found([src], unit=_is_concept):
            if entry.skip is not None:
                jobs.append(Job(entry.path, "", True, root=out, walked=True, skip=entry.skip))
            elif entry.unit:
                jobs.append(Job(entry.path, os.path.normpath(os.path.join(base, entry.rel)), True, root=out, walked=True, unit=True))
            else:
                rel_dir, name = os.path.split(entry.rel)
                jobs.append(Job(entry.path, os.path.normpath(os.path.join(base, rel_dir, _stem(name))), True, root=out, walked=True))
    return jobs, single


def _is_concept(path: str) -> bool:
    from .errors import NotMine
    from .formats.concept_folder import embeds_file

    if not os.path.isdir(path):
        return False
    try:
        embeds_file(path)
        return True
    except NotMine:
        return False


def _stem(name: str) -> str:
    low = name.lower()
    if low.endswith(".preview.png"):
        return name[: -len(".preview.png")]
    return os.path.splitext(name)[0] if os.path.splitext(name)[1] else name


def _safe(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text).strip("._")
    return cleaned or "embedding"


def convert_one(job: Job, s: Settings, staged: list) -> dict:
    """Convert one job; never raises for an embkit problem: the result says what happened.

    Files go to the worker's :class:`~embkit.atomic_batch.BatchWriter` (written as hidden temporaries,
    named at the next group commit) and ``(result, files)`` is appended to ``staged``;
    :func:`convert_chunk` commits them (a concept folder is written at once)."""
    from .atomic import write_folder
    from .errors import EmbkitError, TargetExistsError
    from .io import embedding_of, open_file
    from .walk import check_inside
    from .writing import check_losses, default_extension, plan, prepare

    result: dict = {"input": job.source, "outputs": [], "status": "converted", "losses": []}
    if job.skip:
        result.update(status="skipped", reason=job.skip, not_embedding=True)
        return result
    try:
        loaded = open_file(job.source, present=_LISTINGS.beside(job.source) if job.walked and not job.unit else None)
        embs = [embedding_of(loaded, part) for part in loaded.parts]
        if s.name:
            embs = [e.replace(name=s.name, metadata={k: v for k, v in e.metadata.items() if k != "stored_name"}) for e in embs]
        if len(embs) > 1 and not job.into_dir:
            raise EmbkitError(f"holds {len(embs)} embeddings ({', '.join(e.name for e in embs)}); give -o a folder", path=job.source)
        for emb in embs:
            options = dict(s.options)
            target = job.target
            fmt, container = s.to, s.container
            if s.for_host:
                fmt, container, extra = _for_host(s.for_host, emb, None if job.into_dir else target, s.container)
                options.update(extra)
            if job.into_dir:
                stem = target if len(embs) == 1 else f"{target}-{_safe(emb.name)}"
                if s.name and job.rename and len(embs) == 1:
                    stem = os.path.join(os.path.dirname(target), _safe(s.name))
                target = stem + default_extension(fmt, container)
            if s.for_host and fmt in ("a1111", "diffusers") and s.for_host != "diffusers":
                options.setdefault("token", os.path.splitext(os.path.basename(target))[0])  # the word the host types
            if job.root:
                check_inside(target, job.root)  # a link inside the output tree must not take the write elsewhere
            _not_the_input(target, job.source, s.in_place)
            if s.dry_run:
                planned = plan(emb, target, fmt, container=container, dtype=s.dtype, **options)
                losses = planned.losses
                exists = [o.path for o in planned.outputs if os.path.lexists(o.path)]
                check_losses(losses, target, strict=s.strict, allow_loss=s.allow_loss, format=planned.format)
                if exists and not s.overwrite:
                    result["status"] = "skipped"
                    result["reason"] = f"{exists[0]} exists"
                else:
                    result["status"] = "dry-run"
                result["outputs"].extend(o.path for o in planned.outputs)
                result.setdefault("sidecars", []).extend(dst for _src, dst in _sidecar_copies(emb, planned.outputs[0].path))
            else:
                _makedirs(os.path.dirname(target) or ".", job.root)
                if s.for_host:  # the host's rules are checked on the plan, before the target rules
                    planned = plan(emb, target, fmt, container=container, dtype=s.dtype, **options)
                    result.setdefault("hosts", []).extend(_check_for(s.for_host, emb, planned))
                planned = prepare(emb, target, fmt, container=container, overwrite=s.overwrite, strict=s.strict,
                                  allow_loss=s.allow_loss, dtype=s.dtype, **options)
                losses = planned.losses
                for o in planned.outputs:
                    if o.path != target:  # the target itself was checked above
                        if job.root:
                            check_inside(o.path, job.root)
                        _not_the_input(o.path, job.source, s.in_place)
                files = [(o.path, o.data) for o in planned.outputs if o.fill is None]
                carried = _carry_sidecars(emb, planned.outputs[0].path, s.overwrite, result)
                files += carried
                for o in planned.outputs:
                    if o.fill is not None:
                        write_folder(o.path, o.fill, owns=o.owns, overwrite=s.overwrite)
                if files:
                    staged_writer().submit(files)
                    staged.append((result, files))
                result["outputs"].extend(o.path for o in planned.outputs)
            result["losses"].extend({**x.to_dict(), "embedding": emb.name} for x in losses)
    except TargetExistsError as exc:
        # with --overwrite given, what stood in the way was a folder embkit does not own: say so
        reason = exc.detail if s.overwrite else f"{exc.path} exists (--overwrite replaces it)"
        result.update(status="skipped", reason=reason, error=exc.to_dict(), exit_code=exc.exit_code)
    except EmbkitError as exc:
        from .folder import error_reason

        skip = error_reason(job.source, exc.code, exc.detail) if job.walked else None
        if skip is not None:
            # a file in a walked folder that is not an embedding (a model, a picture, an XTI file)
            result.update(status="skipped", reason=skip, not_embedding=True)
        else:
            result.update(status="failed", reason=exc.detail, error=exc.to_dict(), exit_code=exc.exit_code)
    except (TypeError, ValueError) as exc:
        result.update(status="failed", reason=str(exc), error={"code": "error", "message": str(exc)}, exit_code=1)
    return result


def _not_the_input(target: str, source: str, in_place: bool) -> None:
    """A target that is the job's own input (a file converted into the folder that holds it, to
    its own name) is refused unless the user asked for ``--in-place``."""
    from .walk import same_path

    if not in_place and os.path.lexists(target) and same_path(target, source):
        from .errors import WriteError

        raise WriteError("is the input itself: embkit never writes over an input; convert into another folder, or name "
                         "the one file with --in-place", path=target)


def _sidecar_copies(emb, output: str) -> list[tuple[str, str]]:
    """``(sidecar, target)`` for each sidecar of the input, renamed to the output's stem."""
    from .formats.sidecars import copies

    folder, name = os.path.split(output)
    stem = os.path.splitext(name)[0] if os.path.splitext(name)[1] else name
    return copies(emb.source.sidecars if emb.source else None, stem, folder)


def _carry_sidecars(emb, output: str, overwrite: bool, result: dict) -> list[tuple[str, bytes]]:
    """The sidecars to write beside ``output`` (Civitai Helper's info, A1111's and Lora Manager's
    JSON, the preview), as ``(path, bytes)`` for the batch writer; an existing target is refused
    as the output itself would be, and a sidecar that cannot be read is reported, not fatal."""
    from .atomic import check_target
    from .errors import EmbkitError
    from .formats.sidecars import read_copy

    from .walk import same_path

    out = []
    for src, dst in _sidecar_copies(emb, output):
        if os.path.lexists(dst) and same_path(src, dst):
            continue  # converted in place: the sidecar already is where it belongs
        check_target(dst, overwrite)
        try:
            out.append((dst, read_copy(src, emb.source.path)))
        except EmbkitError as exc:
            result["losses"].append({"code": "sidecar-dropped", "message": str(exc), "slot": None, "embedding": emb.name})
            continue
        result.setdefault("sidecars", []).append(dst)
    return out


def _for_host(host: str, emb, target: str | None, container: str | None) -> tuple[str, str, dict]:
    """The format, container and writer options ``host`` loads best; a target file's extension
    fixes the container."""
    from .formats import container_for_extension
    from .hosts.writing import best_format

    if target is not None and container is None:
        found = container_for_extension(target)
        container = found.id if found is not None and found.id in ("pickle", "safetensors") else None
    return best_format(host, emb, container)


def _check_for(host: str, emb, planned) -> list[dict]:
    """What ``host`` does with each planned file; a file it would not load fails the job."""
    from .errors import ValidationFailed
    from .hosts import get_host
    from .hosts.writing import check_written

    out = []
    for o in planned.outputs:
        if o.fill is not None:
            continue
        v = check_written(host, o.path, o.data, emb.family if emb.family != "unknown" else None, None)
        if not v.loads:
            raise ValidationFailed(f"{get_host(host).label} would not load the result: {'; '.join(v.reasons) or v.status}", path=o.path)
        out.append({"path": o.path, "host": host, "status": v.status, "trigger": v.trigger, "reasons": list(v.reasons)})
    return out


_MADE: set[str] = set()


def _makedirs(folder: str, root: str = "") -> None:
    from .walk import makedirs_inside

    if folder not in _MADE:
        makedirs_inside(folder, root or folder)  # no recursion (a tree 1,100 deep), no link out of the root
        _MADE.add(folder)


class _Writer:
    """The worker's BatchWriter, made on first use in each worker process."""

    overwrite = False
    writer = None


_WRITER = _Writer()


def staged_writer():
    from .atomic_batch import BatchWriter

    if _WRITER.writer is None or _WRITER.writer.overwrite != _WRITER.overwrite:
        _WRITER.writer = BatchWriter(overwrite=_WRITER.overwrite)
    return _WRITER.writer



#: the names in the folders of the chunk being converted (sidecar and pair lookups cost no system call each)
_LISTINGS = Listings()

def convert_chunk(jobs: list[Job], s: Settings) -> list[dict]:
    """Convert several jobs in one worker: each job's files are written as temporaries as soon
    as they are planned, then the chunk ends with one group commit (one flush of the file system,
    then every name, then one fsync per folder), so targets appear chunk by chunk."""
    from .errors import EmbkitError

    staged: list = []
    _WRITER.overwrite = s.overwrite
    _LISTINGS.clear()  # the folders of a walk, listed once per chunk
    results = []
    for job in jobs:
        if stopping():
            break  # Ctrl-C in the parent: commit what is done, start nothing more
        results.append(convert_one(job, s, staged))
    if staged:
        errors = staged_writer().finish()
        for (result, files), exc in zip(staged, errors):
            if exc is None:
                continue
            if not isinstance(exc, EmbkitError):
                raise exc
            exists = getattr(exc, "code", "") == "exists"
            result.update(
                status="skipped" if exists else "failed",
                reason=f"{exc.path} exists (--overwrite replaces it)" if exists else str(exc),
                error=exc.to_dict(),
                exit_code=exc.exit_code,
            )
            result["outputs"] = [p for p in result["outputs"] if p not in {f for f, _ in files}]
    return results


def run_jobs(jobs: list[Job], s: Settings, workers: int, on_done=None) -> list[dict]:
    """Run jobs in ``workers`` processes (inline for one worker or a few jobs), in input order:
    several chunks per worker so the bar moves, each chunk one group commit (one syncfs);
    Ctrl-C stops each worker after its current file, with what it wrote committed."""
    from .atomic_batch import COMMIT_EVERY

    if workers > 1 and len(jobs) >= 8:
        from . import atomic, io, writing  # noqa: F401  imported once, before the workers fork
    return run_chunks(convert_chunk, chunked(jobs, workers, COMMIT_EVERY), s, workers, inline=len(jobs) < 8, on_done=on_done)

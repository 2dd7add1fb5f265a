"""``embkit convert IN... -o OUT|DIR --to FORMAT``: any format to any writable format, in bulk.

One file in and ``-o`` a file name (or a folder) out; several files or a folder in and ``-o`` a
folder out, with the same tree below it. Files are converted in parallel worker processes; every
write is atomic, so a killed batch leaves each target complete or absent, and running the same
command again finishes it (existing targets are skipped unless ``--overwrite``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import click

if "numpy" not in sys.modules:
    # convert does no linear algebra; otherwise OpenBLAS starts a thread that spins for about
    # 0.1 s of CPU once numpy loads, taking a core from the workers on a small machine
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ..convert import Job, Settings, plan_jobs, run_jobs  # noqa: E402  (numpy loads here)
from ..formats import CONTAINER_IDS  # noqa: E402
from ..hosts import HOST_IDS  # noqa: E402
from . import output
from .options import Dtype, allow_loss_option, in_place_option, rename_option, renamed, shared, to_option


@click.command("convert")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(readable=False, allow_dash=True))
@click.option("-o", "--output", "out", required=True, type=click.Path(allow_dash=True),
              help="Output file (with an extension), or a folder (an existing one, or a name ending in '/'; implied for several inputs "
                   "or a folder in); '-' writes one file to standard output (needs --to).")
@to_option("Output layout (default: from the output extension; needed for a folder or '-').")
@click.option("--container", type=click.Choice([c for c in CONTAINER_IDS if c != "webp"]), help="Container for files written into a folder (default: the format's first).")
@click.option("--dtype", type=Dtype(), help="Store vectors as this dtype (default: keep each slot's dtype).")
@rename_option("Rename the trigger word.")
@renamed("--name", "--rename", "rename")
@click.option("--strict", is_flag=True, help="Fail a file on any loss (precision, metadata) instead of reporting it.")
@allow_loss_option
@click.option("--overwrite", is_flag=True, help="Replace existing targets, never an input (default: in a batch, skip them; a single file whose target exists fails, exit 9).")
@in_place_option
@click.option("--dry-run", is_flag=True, help="Report what would be written and lost; write nothing.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=None, help="Worker processes (default: CPU count).")
@click.option("--t5-key", type=click.Choice(["t5", "t5xxl"]), help="multi: spell the T5 key (t5xxl for ComfyUI).")
@click.option("--sdxl-two-files", is_flag=True, help="diffusers: write an SDXL pair as NAME and NAME_2.")
@click.option("--picture", type=click.Path(exists=True, dir_okay=False), help="a1111-image: picture to put in the card.")
@click.option("--for", "for_host", type=click.Choice(HOST_IDS), help="Write the layout this host loads best (instead of --to) and check the result against its rules.")
@shared("Print a JSON report instead of tables.", summary=True)
def cli(inputs, out, to, container, dtype, rename, strict, allow_loss, overwrite, in_place, dry_run, jobs, t5_key, sdxl_two_files, picture,
        for_host, as_json, summary) -> None:
    """Convert embeddings between formats; folders keep their tree. Inputs are never modified.

    A file that would lose vectors (a slot, OneTrainer output vectors) is refused (exit 8) with the
    lossless choice named, unless --allow-loss; other losses (metadata, precision the target cannot
    hold, a --dtype asked for) are reported per file, and --strict fails them too. An output that is
    an input, or a folder that overlaps an input folder, is refused before anything is written
    (--in-place replaces one file named as its own output). Files in folders that are no embedding
    (pictures, previews, sidecars, text, model checkpoints) are skipped, not failed. --for HOST picks
    the layout and container that host loads best and fails a file the host would not load. Exit
    status: the rule of every folder walk (docs/cli.md): 0 when nothing failed, else the failures'
    exit code (1 when they differ; 5 when a file is unsafe), 4 when no embedding was found."""
    if for_host and to:
        raise click.UsageError("give --to FORMAT or --for HOST, not both")
    options = {}
    if t5_key:
        options["t5_key"] = t5_key
    if sdxl_two_files:
        options["sdxl_two_files"] = True
    if picture:
        options["picture"] = picture
    if "-" in inputs or out == "-":
        return _stream(inputs, out, to, container, dtype, rename, strict, allow_loss, overwrite, in_place, options, as_json)
    single_file = len(inputs) == 1 and os.path.isfile(inputs[0])
    if single_file and not _extension(out) and not os.path.isdir(out) and not out.endswith(("/", os.sep)) and to != "concept-folder":
        raise click.UsageError(
            f"-o {out!r} has no extension: give it one (e.g. {out}.safetensors), end it with '/' to write into a folder, "
            "or --to concept-folder for a concept folder")
    job_list, single = plan_jobs(tuple(inputs), out, to, in_place=in_place)
    if in_place and not (single and os.path.lexists(out)):
        raise click.UsageError("--in-place replaces one file named as its own output: embkit convert FILE -o FILE --in-place --to FORMAT")
    # one file to a file: the writer picks the format from the output extension; into a folder
    # there is no extension to go by
    if to is None and not for_host and any(j.into_dir and not j.skip for j in job_list):
        raise click.UsageError("--to FORMAT is needed when writing into a folder")
    if len(inputs) == 1 and len(job_list) == 1 and rename and job_list[0].into_dir and os.path.isfile(inputs[0]):
        job_list = [replace(job_list[0], rename=True)]
    if not single and not dry_run:
        os.makedirs(out, exist_ok=True)
    settings = Settings(to, container, dtype, rename, strict, overwrite or in_place, dry_run, tuple(options.items()), for_host,
                        allow_loss=allow_loss, in_place=in_place)
    workers = jobs or os.cpu_count() or 1
    results = _run_with_progress(job_list, settings, workers, show=not as_json)
    if single:
        # one file asked for by name: an existing target is a failure (exit 9), and the summary
        # must say so; in a batch it is a skip, so that re-running finishes an interrupted batch
        for r in results:
            if r["status"] == "skipped" and "exit_code" in r:
                r["status"] = "failed"
    code = exit_code(results)
    if as_json:
        output.print_json(summary_of(results))
    else:
        print_summary(results, dry_run, summary)
    if code:
        raise SystemExit(code)


def _extension(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[1]


def _stream(inputs, out, to, container, dtype, rename, strict, allow_loss, overwrite, in_place, options, as_json) -> None:
    """One file from standard input (``-``) and/or to standard output (``-o -``)."""
    from .writeout import read_one, write_result

    if len(inputs) != 1:
        raise click.UsageError("'-' converts one file: give one input with '-' or -o -")
    if out == "-" and as_json:
        raise click.UsageError("-o - writes the file to standard output; --json would print there too")
    emb = read_one(inputs[0])
    if rename:
        from ..edit import ops

        emb = ops.rename(emb, rename)
    write_result(emb, out, to, overwrite=overwrite, strict=strict, as_json=as_json, allow_loss=allow_loss,
                 inputs=inputs, in_place=in_place, container=container, dtype=dtype, **options)


def _run_with_progress(job_list: list[Job], s: Settings, workers: int, show: bool) -> list[dict]:
    bar = output.progress() if show and len(job_list) >= 2 else None
    if bar is None:
        return run_jobs(job_list, s, workers)
    with bar:
        task = bar.add_task("converting", total=len(job_list))
        return run_jobs(job_list, s, workers, on_done=lambda n: bar.advance(task, n))


def exit_code(results: list[dict]) -> int:
    """The walk rule (:func:`embkit.folder.walk_exit_code`): 0 when nothing failed; 5 when a file
    is unsafe; the failures' shared exit code, else 1; 4 when no embedding was found."""
    from ..folder import walk_exit_code

    codes = [r["exit_code"] for r in results if r["status"] == "failed"]
    found = sum(1 for r in results if not _not_embedding(r))
    return walk_exit_code(codes, found)


def _not_embedding(r: dict) -> bool:
    """A result for a file skipped as no embedding (not a target that exists)."""
    return bool(r.get("not_embedding"))


def summary_of(results: list[dict]) -> dict:
    """The ``--json`` report: counts by status and every file's result."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"counts": counts, "losses": sum(len(r["losses"]) for r in results), "files": results}


def print_summary(results: list[dict], dry_run: bool, brief: bool = False) -> None:
    """A table of every file that failed, was skipped (a target that exists) or lost something
    (every file, for 20 or fewer and not ``brief``), the files that are no embedding (counted;
    listed with -v), then the totals."""
    esc = output.escape
    others = [(r["input"], r["reason"]) for r in results if _not_embedding(r)]
    converting = [r for r in results if not _not_embedding(r)]
    few = len(converting) <= 20 and not brief
    noteworthy = [r for r in converting if r["status"] in ("failed", "skipped") or r["losses"] or few]
    if noteworthy:
        output.print_table(("file", "result", "why / what was lost"), (_row(r, esc) for r in noteworthy))
    output.skipped(others)
    if output.MODE.quiet:
        return
    counts = summary_of(converting)["counts"]
    done = counts.get("dry-run" if dry_run else "converted", 0)
    verb = "would convert" if dry_run else "converted"
    output.console().print(
        f"{verb} {done}, skipped {counts.get('skipped', 0)}, failed {counts.get('failed', 0)}"
        f"; {sum(1 for r in results if r['losses'])} with losses"
    )
    if not converting:
        output.warn("no embedding files found")
    sys.stdout.flush()


def _row(r: dict, esc) -> tuple[str, str, str]:
    """A converted file's row: input → outputs, the status in its colour, the reason, losses and hosts."""
    style = {"failed": "red", "skipped": "yellow"}.get(r["status"], "green")
    notes = [r["reason"]] if "reason" in r else []
    notes += [f"[{x['code']}] {x['message']}" for x in r["losses"]]
    notes += [f"{h['host']}: {h['status']}, typed as {h['trigger']}" for h in r.get("hosts", [])]
    target = ", ".join(r["outputs"]) if r["outputs"] else ""
    shown = esc(r["input"]) + (f" → {esc(target)}" if target else "")
    return shown, f"[{style}]{r['status']}[/]", "\n".join(esc(n) for n in notes)
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

from ..convert import DTYPES, Job, Settings, plan_jobs, run_jobs  # noqa: E402  (numpy loads here)
from ..formats import CONTAINER_IDS, writable_ids  # noqa: E402
from ..hosts import HOST_IDS  # noqa: E402
from . import output

@click.command("convert")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(), help="Output file, or a folder (for several inputs or a folder in).")
@click.option("--to", "to", type=click.Choice(writable_ids()), help="Target format (default: from the output extension).")
@click.option("--container", type=click.Choice([c for c in CONTAINER_IDS if c != "webp"]), help="Container for files written into a folder (default: the format's first).")
@click.option("--dtype", type=click.Choice(DTYPES), help="Store vectors as this dtype (default: keep each slot's dtype).")
@click.option("--name", help="Rename the trigger word.")
@click.option("--strict", is_flag=True, help="Fail a file on any loss instead of warning.")
@click.option("--overwrite", is_flag=True, help="Replace existing targets (default: in a batch, skip them; a single file whose target exists fails, exit 9).")
@click.option("--dry-run", is_flag=True, help="Report what would be written and lost; write nothing.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=None, help="Worker processes (default: CPU count).")
@click.option("--t5-key", type=click.Choice(["t5", "t5xxl"]), help="multi: spell the T5 key (t5xxl for ComfyUI).")
@click.option("--sdxl-two-files", is_flag=True, help="diffusers: write an SDXL pair as NAME and NAME_2.")
@click.option("--picture", type=click.Path(exists=True, dir_okay=False), help="a1111-image: picture to put in the card.")
@click.option("--for", "for_host", type=click.Choice(HOST_IDS), help="Write the layout this host loads best (instead of --to) and check the result against its rules.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of tables.")
def cli(inputs, out, to, container, dtype, name, strict, overwrite, dry_run, jobs, t5_key, sdxl_two_files, picture, for_host, as_json) -> None:
    """Convert embeddings between formats; folders keep their tree.

    Every loss (a slot, output vectors, metadata, precision the target cannot hold) is reported
    per file; --strict turns a loss into a failure. --for HOST picks the layout and container
    that host loads best and fails a file the host would not load. Exit status: 0 when nothing
    failed, else the exit code of the failures' error (1 when they differ)."""
    if for_host and to:
        raise click.UsageError("give --to FORMAT or --for HOST, not both")
    job_list, single = plan_jobs(tuple(inputs), out, to)
    # one file to a file: the writer picks the format from the output extension; into a folder
    # there is no extension to go by
    if to is None and not for_host and any(j.into_dir for j in job_list):
        hint = "" if os.path.isdir(out) or out.endswith(("/", os.sep)) or len(inputs) > 1 else f" ({out!r} has no extension, so it is taken as a folder)"
        raise click.UsageError(f"--to FORMAT is needed when writing into a folder{hint}")
    if len(inputs) == 1 and len(job_list) == 1 and name and job_list[0].into_dir and os.path.isfile(inputs[0]):
        job_list = [replace(job_list[0], rename=True)]
    if not single and not dry_run:
        os.makedirs(out, exist_ok=True)
    options = {}
    if t5_key:
        options["t5_key"] = t5_key
    if sdxl_two_files:
        options["sdxl_two_files"] = True
    if picture:
        options["picture"] = picture
    settings = Settings(to, container, dtype, name, strict, overwrite, dry_run, tuple(options.items()), for_host)
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
        output.print_json(summary(results))
    else:
        print_summary(results, dry_run)
    if code:
        raise SystemExit(code)


def _run_with_progress(job_list: list[Job], s: Settings, workers: int, show: bool) -> list[dict]:
    con = output.err_console()
    if not show or len(job_list) < 2 or not con.is_terminal:
        return run_jobs(job_list, s, workers)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("converting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=con, transient=True) as bar:
        task = bar.add_task("convert", total=len(job_list))
        return run_jobs(job_list, s, workers, on_done=lambda n: bar.advance(task, n))


def exit_code(results: list[dict]) -> int:
    """0 when nothing failed; the failures' shared exit code, else 1."""
    codes = {r["exit_code"] for r in results if r["status"] == "failed"}
    if not codes:
        return 0
    return codes.pop() if len(codes) == 1 else 1


def summary(results: list[dict]) -> dict:
    """The ``--json`` report: counts by status and every file's result."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"counts": counts, "losses": sum(len(r["losses"]) for r in results), "files": results}


def print_summary(results: list[dict], dry_run: bool) -> None:
    """A table of every file that failed, was skipped or lost something, then the totals."""
    from rich.table import Table

    esc = output.escape
    noteworthy = [r for r in results if r["status"] in ("failed", "skipped") or r["losses"] or len(results) <= 20]
    if noteworthy:
        table = Table(show_header=True, header_style="bold")
        table.add_column("file")
        table.add_column("result")
        table.add_column("why / what was lost")
        for r in noteworthy:
            style = {"failed": "red", "skipped": "yellow"}.get(r["status"], "green")
            notes = [r["reason"]] if "reason" in r else []
            notes += [f"[{x['code']}] {x['message']}" for x in r["losses"]]
            notes += [f"{h['host']}: {h['status']}, typed as {h['trigger']}" for h in r.get("hosts", [])]
            target = ", ".join(r["outputs"]) if r["outputs"] else ""
            shown = esc(r["input"]) + (f" → {esc(target)}" if target else "")
            table.add_row(shown, f"[{style}]{r['status']}[/]", esc("\n".join(notes)) if notes else "")
        output.console().print(table)
    counts = summary(results)["counts"]
    done = counts.get("dry-run" if dry_run else "converted", 0)
    verb = "would convert" if dry_run else "converted"
    output.console().print(
        f"{verb} {done}, skipped {counts.get('skipped', 0)}, failed {counts.get('failed', 0)}"
        f"; {sum(1 for r in results if r['losses'])} with losses"
    )
    if not results:
        output.warn("no embedding files found")
    sys.stdout.flush()

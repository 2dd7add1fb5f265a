"""``embkit ingest SOURCE... --out DIR``: scan, record, convert, judge and preview every file, on
one machine or on a Ray cluster (docs/ingest.md)."""

from __future__ import annotations

import contextlib
import sys

import click

from . import output


@click.command("ingest")
@click.argument("sources", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder: converted files, previews, the manifest (manifest.jsonl, manifest.parquet).")
@click.option("--ray", "ray", metavar="auto|local|ADDRESS", help="Run as a Ray Data pipeline: auto (the running cluster), local (a private Ray on this machine) or a cluster address. Needs embkit-ti[ray].")
@click.option("--previews", is_flag=True, help="Render a preview of every converted embedding.")
@click.option("-m", "--model", help="With --previews: a family's built-in tiny pipeline (sd1, sd2, sdxl), a diffusers folder or a Hub id (default: each embedding's family, tiny).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True, help="With --previews: where to render.")
@click.option("--prompt", help="With --previews: the prompt, with {trigger} where the trigger goes.")
@click.option("--seed", "seeds", type=int, multiple=True, help="With --previews: a seed (repeatable; the images sit side by side).")
@click.option("--steps", type=click.IntRange(1), help="With --previews: denoising steps.")
@click.option("--library", "library", type=click.Path(dir_okay=False), help="Also record every file in this embkit library database.")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), default=None, help="Worker processes (local) or CPUs of a private Ray (--ray local); default: CPUs available.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=256, show_default=True, help="Files per task (one shard, one durable commit).")
@click.option("--actors", type=click.IntRange(1, 4096), default=1, show_default=True, help="With --ray --previews: preview actors (each loads the model once).")
@click.option("--gpus-per-actor", type=click.FloatRange(0), default=0.0, show_default=True, help="With --ray --previews: GPUs each preview actor holds (1 on a GPU cluster).")
@click.option("--cpus-per-actor", type=click.FloatRange(0), default=1.0, show_default=True, help="With --ray --previews: CPUs each preview actor holds.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON.")
def cli(sources, out, ray, previews, model, device, prompt, seeds, steps, library, jobs, batch_size, actors, gpus_per_actor, cpus_per_actor, as_json) -> None:
    """Ingest embedding uploads: for every file under SOURCE (folders, files, or manifests of
    paths: .txt, .jsonl or .parquet with a path column) the scan verdict, the library record, a
    loss-free safetensors copy (content-addressed under DIR/objects), per-host verdicts and,
    with --previews, a preview image; one manifest row per file. Unsafe and broken files are
    recorded with their reason. Running the same command again skips what is done (by SHA-256),
    so an interrupted run resumes. Exit status 0 when the run completed, whatever the files held."""
    from ..ingest.run import ingest

    preview_settings = None
    if previews:
        from dataclasses import replace

        from ..diffusers.previews import PreviewSettings

        preview_settings = PreviewSettings()
        if prompt:
            preview_settings = replace(preview_settings, prompt=prompt)
        if seeds:
            preview_settings = replace(preview_settings, seeds=tuple(seeds))
        if steps:
            preview_settings = replace(preview_settings, steps=steps)
    elif model or prompt or seeds or steps:
        raise click.UsageError("--model, --prompt, --seed and --steps go with --previews")
    con = output.err_console()
    show = not as_json and con.is_terminal
    # Ray prints its cluster's messages ("(raylet) Task … failed … will be retried") to stdout:
    # they belong with the diagnostics, and stdout to the summary (a --json document)
    with contextlib.redirect_stdout(sys.stderr):
        summary = _run(show, ingest, sources, out, ray=ray, previews=preview_settings, model=model, device=device, library=library, jobs=jobs,
                       batch_size=batch_size, actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor, ray_progress=show)
    if as_json:
        output.print_json(summary.to_dict())
    else:
        _print(summary)


def _run(show: bool, ingest, *args, **kwargs):
    if not show or kwargs.get("ray"):
        return ingest(*args, **kwargs)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=output.err_console(), transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task("reading" if stage == "read" else "previews", total=total)
            bar.update(tasks[stage], completed=done)

        return ingest(*args, progress=progress, **kwargs)


def _print(summary) -> None:
    from rich.table import Table

    esc = output.escape
    problems = [r for r in summary.rows if r["status"] not in ("ok",)]
    if problems:
        table = Table(show_header=True, header_style="bold")
        table.add_column("file")
        table.add_column("status")
        table.add_column("why")
        for r in problems[:20]:
            why = r["error"] or r["convert_error"] or ""
            table.add_row(esc(r["path"]), r["status"], esc(why.replace(r["path"] + ": ", "", 1)))
        output.console().print(table)
        if len(problems) > 20:
            output.console().print(f"… and {len(problems) - 20} more: see the manifest")
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items() if n)
    output.console().print(
        f"{summary.files} files ({counts or 'none'}); {summary.reused} done before, {summary.duplicates} duplicates; "
        f"{summary.converted} converted, {summary.previews} previews; {summary.seconds:.1f} s ({esc(summary.mode)})"
    )
    for kind, path in summary.manifest.items():
        output.console().print(f"manifest ({kind}): {esc(path)}")
    if summary.library:
        output.console().print(f"library: {summary.library['added']} added, {summary.library['updated']} updated")
    if summary.links_skipped:
        output.warn(f"{summary.links_skipped} links to folders were not followed")
    for name in summary.bad_names[:5]:
        output.warn(f"not ingested (the name is not UTF-8): {name}")
    if not summary.files:
        output.warn("no embedding files found")

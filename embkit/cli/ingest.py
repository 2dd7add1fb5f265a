"""``embkit ingest SOURCE... -o DIR``: scan, record, convert, judge and preview every file, on
one machine or on a Ray cluster (docs/ingest.md).

Exit status: the rule of every folder walk (:attr:`embkit.ingest.IngestSummary.exit_code`,
:func:`embkit.folder.walk_exit_code`): 0 when every file was ingested (files that are no
embedding, links and pipes passed over do not count); 5 when any file is unsafe; else the
failures' code when they share one (3 a damaged file, 8 not converted loss-free, 1 a listed path
missing), 1 when they differ; 4 when no embedding file was found. The manifest holds every row
whatever the status. An :class:`~embkit.errors.EmbkitError`'s own code when the run could not
be done (9: ``-o`` overlapping an input; 11: ``--ray`` without Ray; 1: a missing SOURCE, a
cluster that went away).
"""

from __future__ import annotations

import contextlib
import sys

import click

from . import output
from .options import model_option, renamed, shared

MODEL_HELP = ("With --previews: a family (sd1, sd2, sdxl: the built-in tiny pipeline), a single-file checkpoint (.safetensors or "
              ".ckpt, built offline), a diffusers folder or a Hub id. Default: the tiny pipeline of each embedding's family.")
#: problems listed in text output without -v (the manifest has them all)
SHOWN = 20


@click.command("ingest")
@click.argument("sources", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False),
              help="Output folder (required): converted files, previews, the manifest (manifest.jsonl, manifest.parquet); "
                   "never a folder that holds an input or lies inside one.")
@renamed("--out", "--output", "out", type=click.Path(file_okay=False))
@click.option("--ray", "ray", metavar="auto|local|ADDRESS", help="Run as a Ray Data pipeline: auto (the running cluster), local (a private Ray on this machine) or a cluster address. Needs embkit-ti[ray].")
@click.option("--previews", is_flag=True, help="Render a preview of every converted embedding.")
@model_option(MODEL_HELP)
@click.option("--device", type=click.Choice(["auto", "cuda", "mps", "cpu"]), default="auto", show_default=True, help="With --previews: where to render.")
@click.option("--prompt", help="With --previews: the prompt, with {trigger} where the trigger goes.")
@click.option("--seed", "seeds", type=int, multiple=True, help="With --previews: a seed (repeatable; the images sit side by side).")
@click.option("--steps", type=click.IntRange(1), help="With --previews: denoising steps.")
@click.option("--library", "library", type=click.Path(dir_okay=False), help="Also record every file in this embkit library database.")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), default=None, help="Worker processes (local) or CPUs of a private Ray (--ray local); default: CPUs available.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=256, show_default=True, help="Files per task (one shard, one durable commit).")
@click.option("--actors", type=click.IntRange(1, 4096), default=1, show_default=True, help="With --ray --previews: preview actors (each loads the model once).")
@click.option("--gpus-per-actor", type=click.FloatRange(0), default=None,
              help="With --ray --previews: GPUs each preview actor holds (default: 1 when the cluster has GPUs and --device is not cpu, else 0).")
@click.option("--cpus-per-actor", type=click.FloatRange(0), default=1.0, show_default=True, help="With --ray --previews: CPUs each preview actor holds.")
@shared("Print the run's summary as one JSON document (the rows are in the manifest), with the files skipped as no embedding.")
def cli(sources, out, ray, previews, model, device, prompt, seeds, steps, library, jobs, batch_size, actors, gpus_per_actor, cpus_per_actor, as_json) -> None:
    """Ingest embedding uploads: for every file under SOURCE (folders, files, or manifests of
    paths: .txt, .jsonl or .parquet with a path column) the scan verdict, the library record, a
    loss-free safetensors copy (content-addressed under DIR/objects), per-host verdicts and,
    with --previews, a preview image; one manifest row per file. Unsafe and broken files are
    recorded with their reason and never stop the run. Running the same command again skips what
    is done (by SHA-256), so an interrupted run resumes.

    Folders are walked; files in them that are no embedding (pictures, text, sidecars, model
    checkpoints) are skipped with the reason (counted; -v lists them); a path named here or in a
    manifest is always read. Inputs are never written: -o must not overlap a SOURCE folder nor
    hold a SOURCE file. Exit status: the rule of every folder walk (docs/cli.md): 0 when every
    file was ingested; 5 when any is unsafe; else the failures' code (3 a damaged file, 8 not
    converted loss-free; 1 when codes differ); 4 when no embedding file was found."""
    from ..ingest.run import ingest

    if out is None:
        raise click.UsageError("Missing option '-o' / '--output': the folder to write the converted files and the manifest in.")
    if out == "-":
        raise click.UsageError("ingest writes a folder (converted files, previews, the manifest): -o names it, not standard output")
    if "-" in sources:
        raise click.UsageError("ingest reads files by path, one manifest row each: list paths in a manifest (.txt, .jsonl) instead of '-'")
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
    show = not output.MODE.machine and output.show_progress()
    # Ray prints its cluster's messages ("(raylet) Task … failed … will be retried") to stdout:
    # they belong with the diagnostics, and stdout to the summary (a --json document)
    with contextlib.redirect_stdout(sys.stderr):
        summary = _run(show, ingest, sources, out, ray=ray, previews=preview_settings, model=model, device=device, library=library, jobs=jobs,
                       batch_size=batch_size, actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor, ray_progress=show)
    if as_json:
        output.print_json(summary.to_dict())
    else:
        _print(summary)
    sys.exit(summary.exit_code)


def _run(show: bool, ingest, *args, **kwargs):
    bar = output.progress() if show and not kwargs.get("ray") else None
    if bar is None:
        return ingest(*args, **kwargs)
    with bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task("reading" if stage == "read" else "previews", total=total)
            bar.update(tasks[stage], completed=done)

        return ingest(*args, progress=progress, **kwargs)


def _print(summary) -> None:
    """The rows that failed or were not read (every one with -v, else the first SHOWN; only the
    failures with -q), the files skipped as no embedding, the totals and where the manifest is."""
    from ..ingest.manifest import SKIPPED, no_embedding_reason, row_exit_code

    esc, quiet = output.escape, output.MODE.quiet
    # a file skipped as no embedding is listed with the others skipped, not as a problem
    problems = [r for r in summary.rows if r["status"] != "ok" and not (r["status"] == SKIPPED and no_embedding_reason(r))]
    if quiet:
        problems = [r for r in problems if row_exit_code(r)]
    shown = problems if output.MODE.verbose else problems[:SHOWN]
    if shown:
        output.print_table(("file", "status", "why"), ((esc(r["path"]), esc(r["status"]), esc((r["error"] or r["convert_error"] or "").replace(r["path"] + ": ", "", 1)))
                                                       for r in shown))
        if len(problems) > len(shown):
            output.console().print(f"… and {len(problems) - len(shown)} more: -v lists them, and the manifest has every row")
    output.skipped(summary.ignored)
    if not quiet:
        counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items() if n)
        output.info(
            f"{summary.files} files ({esc(counts) or 'none'}); {summary.reused} done before, {summary.duplicates} duplicates; "
            f"{summary.converted} converted, {summary.previews} previews"
            + (f", {len(summary.ignored)} files that are no embedding" if summary.ignored else "")
            + f"; {summary.seconds:.1f} s ({esc(summary.mode)})"
        )
        for kind, path in summary.manifest.items():
            output.info(f"manifest ({kind}): {esc(path)}")
        if summary.library:
            output.info(f"library: {summary.library['added']} added, {summary.library['updated']} updated")
    if summary.links_skipped:
        output.warn(f"{summary.links_skipped} links to folders were not followed")
    for name in summary.bad_names[:5]:
        output.warn(f"not ingested (the name is not UTF-8): {name}")
    if not any(r["status"] != SKIPPED for r in summary.rows):
        output.warn("no embedding files found")

"""``embkit previews PATH... --model M``: one preview per embedding, ``<stem>.preview.png`` beside it.

Exit status: 0 when every preview was written or kept (embeddings that do not fit the model are
skipped and reported, not failures); 1 when a file could not be read or a preview not written;
an :class:`~embkit.errors.EmbkitError`'s own code when nothing could run (a bad ``--model``).
"""

from __future__ import annotations

import os
import sys

import click

from ..hosts import HOST_IDS
from . import output
from .render import loader_options


def render_options(f):
    """The options that say how previews are rendered (``embkit previews`` and ``embkit library
    previews`` share them); where and how the model is loaded are ``embkit verify --render``'s
    own options (:func:`embkit.cli.render.loader_options`)."""
    opts = [
        click.option("--model", default=None, help="Model: a family (sd1, sd2, sdxl: the built-in tiny pipeline), a single-file checkpoint (.safetensors or .ckpt, built offline), a diffusers folder or a Hub id. Default: the tiny pipeline of each embedding's family."),
        click.option("--prompt", default="a photo of {trigger}", show_default=True, help="Prompt template; {trigger} is the trigger word (appended when missing)."),
        click.option("--negative-prompt", default="", help="Negative prompt for positive embeddings (negative ones add their trigger before it)."),
        click.option("--positive-prompt", "positive_for_negatives", default="a photo", show_default=True, help="The fixed prompt negative embeddings render against."),
        click.option("--negative-embeddings/--positive-embeddings", "negative", default=None, help="Render every embedding as a negative / a positive one (default: detected by name and metadata)."),
        click.option("--host", type=click.Choice(HOST_IDS), default="a1111", show_default=True, help="Use the trigger word this host uses (the hosts table: docs/hosts.md)."),
        click.option("--seed", "seeds", type=int, multiple=True, help="Seed (repeatable: one image per seed, side by side). Default 0."),
        click.option("--steps", type=click.IntRange(1, 1000), default=None, help="Denoising steps (default per model: 4 tiny, 20 SD1/SD2, 25 SDXL)."),
        click.option("--size", type=click.IntRange(8, 4096), default=None, help="Image side in pixels, a multiple of 8 (default per model: 64 tiny, 512 SD1, 768 SD2, 1024 SDXL)."),
        click.option("--guidance", type=click.FloatRange(0, 100), default=None, help="Classifier-free guidance scale, CFG (default per model: 7.5; 5 for SDXL)."),
        click.option("--batch-size", type=click.IntRange(1, 1024), default=None, help="Prompts per pipeline call (default: 8 on the CPU; on CUDA what fits the free memory)."),
        *loader_options(),
        click.option("--overwrite", is_flag=True, help="Replace existing previews (default: keep them)."),
        click.option("--json", "as_json", is_flag=True, help="Print the results as JSON."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def settings_from(prompt, negative_prompt, positive_for_negatives, host, seeds, steps, size, guidance, batch_size):
    """:class:`~embkit.diffusers.previews.PreviewSettings` from the shared options."""
    from ..diffusers.previews import PreviewSettings

    if size is not None and size % 8:
        raise click.BadParameter(f"{size} is not a multiple of 8", param_hint="--size")
    return PreviewSettings(
        prompt=prompt, negative_prompt=negative_prompt, positive_for_negatives=positive_for_negatives, seeds=tuple(seeds) or (0,),
        steps=steps, size=size, guidance=guidance, batch_size=batch_size, host=host,
    )


def run_with_bar(quiet: bool, as_json: bool, work):
    """``work(progress)`` with a rich progress bar on stderr when it is a terminal."""
    # transformers and diffusers log notices at import and load (fp32 modules, torchvision) that
    # say nothing about the user's embeddings
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    if quiet or as_json or not sys.stderr.isatty():
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("previews"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=output.err_console(), transient=True) as bar:
        task = bar.add_task("previews", total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def report(run, as_json: bool) -> int:
    """Print a run's results (a table of what was not plainly written, then a summary); the exit status."""
    from ..diffusers.preview_run import ERROR, KEPT, SKIPPED, WRITTEN

    code = 0 if run.ok else 1
    if as_json:
        output.print_json({**run.to_dict(), "exit_code": code})
        return code
    esc = output.escape
    for r in run.results:
        what = esc(r.path + (f" [{r.member}]" if r.member else ""))
        if r.status == WRITTEN:
            output.info(f"[green]wrote[/] {esc(r.preview or '')}  [dim]{esc(r.trigger or '')}{' (negative)' if r.negative else ''}[/]")
        elif r.status == KEPT:
            output.info(f"[dim]kept  {esc(r.preview or '')} (exists; --overwrite replaces it)[/]")
        elif r.status == SKIPPED:
            output.warn(f"skipped {r.path}{f' [{r.member}]' if r.member else ''}: {r.reason}")
        else:
            output.err_console().print(f"[bold red]error[/]: {what}: {esc(r.reason or '')}")
    rate = run.count(WRITTEN) / run.seconds * 60 if run.seconds else 0.0
    output.info(
        f"[bold]{run.count(WRITTEN)}[/] written, {run.count(KEPT)} kept, {run.count(SKIPPED)} skipped, {run.count(ERROR)} failed "
        f"on {esc(run.model)} ({run.seconds:.1f} s, {rate:.0f} previews/min)"
    )
    return code


@click.command("previews")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), default=None, help="Write previews under this folder (the walked folders' tree kept) instead of beside each file.")
@render_options
def cli(paths, out, model, prompt, negative_prompt, positive_for_negatives, negative, host, seeds, steps, size, guidance, batch_size,
        device, dtype, prediction, tokenizer, host_dirs, overwrite, as_json, quiet) -> None:
    """Render one preview per embedding with your model, as <stem>.preview.png beside each file
    (the name A1111 and Forge show in their Extra Networks tab), with the render's facts in the
    PNG's 'parameters' chunk. Negative embeddings render as the negative prompt against a fixed
    positive one. Many embeddings render per pipeline call; existing previews are kept."""
    from ..diffusers.preview_run import make_previews

    settings = settings_from(prompt, negative_prompt, positive_for_negatives, host, seeds, steps, size, guidance, batch_size)
    run = run_with_bar(quiet, as_json, lambda progress: make_previews(
        paths, model=model, device=device, settings=settings, out=out, overwrite=overwrite, negative=negative, progress=progress,
        dtype=dtype, prediction=prediction, tokenizer=tokenizer, host_dirs=host_dirs,
    ))
    sys.exit(report(run, as_json))

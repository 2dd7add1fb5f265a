"""``embkit previews PATH... [-m MODEL]``: one preview per embedding, ``<stem>.preview.png`` beside it.

Exit status: the rule of every folder walk (:func:`embkit.folder.walk_exit_code`,
:attr:`embkit.diffusers.preview_run.PreviewRun.exit_code`): 0 when every preview was written or
kept (embeddings that do not fit the model are skipped and reported, files that are no embedding
skipped with the reason: neither is a failure); a file that cannot be read exits with its error's
code, a preview that cannot be written (or would land on an input) 9, 1 when the codes differ, 5
when a file is unsafe; 4 when no embedding was found; an :class:`~embkit.errors.EmbkitError`'s
own code when nothing could run (a bad ``--model``, ``-o`` overlapping an input folder).
"""

from __future__ import annotations

import os
import sys

import click

from . import output
from .options import model_option, renamed, shared
from .render import loader_options

MODEL_HELP = ("Model: a family (sd1, sd2, sdxl: the built-in tiny pipeline), a single-file checkpoint (.safetensors or .ckpt, built "
              "offline), a diffusers folder or a Hub id. Default: the tiny pipeline of each embedding's family.")


def _one_host(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--host`` spelled as ``verify --host`` takes it (any case), but one host: a preview's
    prompt holds one trigger."""
    from .hosts_view import parse_hosts

    hosts = parse_hosts([value])
    if len(hosts) != 1:
        raise click.BadParameter(f"{value!r} names {len(hosts)} hosts; a preview's prompt holds one trigger: give one host", param_hint="--host")
    return hosts[0]


def render_options(f):
    """The options that say how previews are rendered (``embkit previews`` and ``embkit library
    previews`` share them); where and how the model is loaded are ``embkit verify --render``'s
    own options (:func:`embkit.cli.render.loader_options`)."""
    from ..hosts import HOST_IDS

    opts = [
        model_option(MODEL_HELP, default=None),
        click.option("--prompt", default="a photo of {trigger}", show_default=True, help="Prompt template; {trigger} is the trigger word (appended when missing)."),
        click.option("--negative-prompt", default="", help="Negative prompt for positive embeddings (negative ones add their trigger before it)."),
        click.option("--positive-prompt", "positive_for_negatives", default="a photo", show_default=True, help="The fixed prompt negative embeddings render against."),
        click.option("--negative-embeddings/--positive-embeddings", "negative", default=None, help="Render every embedding as a negative / a positive one (default: detected by name and metadata)."),
        click.option("--host", default="a1111", show_default=True, callback=_one_host, metavar="HOST",
                     shell_complete=lambda _c, _p, typed: [h for h in HOST_IDS if h.startswith(typed.lower())],
                     help=f"Use the trigger word this host uses: one of {', '.join(HOST_IDS)} (any case; the hosts table: docs/hosts.md)."),
        click.option("--seed", "seeds", type=int, multiple=True, help="Seed (repeatable: one image per seed, side by side). Default 0."),
        click.option("--steps", type=click.IntRange(1, 1000), default=None, help="Denoising steps (default per model: 4 tiny, 20 SD1/SD2, 25 SDXL)."),
        click.option("--size", type=click.IntRange(8, 4096), default=None, help="Image side in pixels, a multiple of 8 (default per model: 64 tiny, 512 SD1, 768 SD2, 1024 SDXL)."),
        click.option("--guidance", type=click.FloatRange(0, 100), default=None, help="Classifier-free guidance scale, CFG (default per model: 7.5; 5 for SDXL)."),
        click.option("--batch-size", type=click.IntRange(1, 1024), default=None, help="Prompts per pipeline call (default: 8 on the CPU; on CUDA what fits the free memory)."),
        *loader_options(),
        click.option("--overwrite", is_flag=True, help="Replace existing previews (default: keep them); never an input file."),
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


def run_with_bar(work):
    """``work(progress)`` with a progress bar on stderr when it is a terminal (not with ``-q``,
    ``--json``)."""
    # transformers and diffusers log notices at import and load (fp32 modules, torchvision) that
    # say nothing about the user's embeddings
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    bar = None if output.MODE.machine else output.progress()
    if bar is None:
        return work(None)
    with bar:
        task = bar.add_task("previews", total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def report(run, as_json: bool, *, brief: bool = False, empty_ok: bool = False) -> int:
    """Print a run's results (a line per embedding, or with ``brief`` only the problems; the files
    skipped as no embedding; the totals); the exit status (the walk rule; ``empty_ok``: nothing to
    do is 0, not 4)."""
    from ..diffusers.preview_run import ERROR, KEPT, SKIPPED, WRITTEN

    code = run.exit_code if run.results or not empty_ok else 0
    if as_json:
        output.print_json({**run.to_dict(), "exit_code": code})
        return code
    esc = output.escape
    for r in run.results:
        what = esc(r.path + (f" [{r.member}]" if r.member else ""))
        if r.status == WRITTEN and not brief:
            output.info(f"[green]wrote[/] {esc(r.preview or '')}  [dim]{esc(r.trigger or '')}{' (negative)' if r.negative else ''}[/]")
        elif r.status == KEPT and not brief:
            output.info(f"[dim]kept  {esc(r.preview or '')} (exists; --overwrite replaces it)[/]")
        elif r.status == SKIPPED:
            output.warn(f"skipped {r.path}{f' [{r.member}]' if r.member else ''}: {r.reason}")
        elif r.status == ERROR:
            # a read error's message names the file already; a write error's names the preview
            text = esc(r.reason or "") if (r.reason or "").startswith(r.path + ": ") else f"{what}: {esc(r.reason or '')}"
            output.err_console().print(f"[bold red]error[/][red]\\[{esc(r.code or 'error')}][/]: {text}")
    output.skipped(run.ignored)
    if not output.MODE.quiet:
        rate = run.count(WRITTEN) / run.seconds * 60 if run.seconds else 0.0
        output.info(
            f"[bold]{run.count(WRITTEN)}[/] written, {run.count(KEPT)} kept, {run.count(SKIPPED)} skipped, {run.count(ERROR)} failed"
            + (f", {len(run.ignored)} files that are no embedding" if run.ignored else "")
            + f" on {esc(run.model)} ({run.seconds:.1f} s, {rate:.0f} previews/min)"
        )
    if not run.results and not empty_ok:
        output.warn("no embedding files found")
    return code


@click.command("previews")
@click.argument("paths", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), default=None,
              help="Write previews under this folder (the walked folders' tree kept) instead of beside each file; never a folder that holds an input or lies inside one.")
@renamed("--out", "--output", "out", type=click.Path(file_okay=False))
@render_options
@shared("Print one JSON document: every result, and the files skipped as no embedding.",
        summary="Print the problems (skipped embeddings, errors) and the totals only, not a line per preview.")
def cli(paths, out, model, prompt, negative_prompt, positive_for_negatives, negative, host, seeds, steps, size, guidance, batch_size,
        device, dtype, prediction, tokenizer, host_dirs, overwrite, as_json, summary) -> None:
    """Render one preview per embedding with your model, as <stem>.preview.png beside each file
    (the name A1111 and Forge show in their Extra Networks tab), with the render's facts in the
    PNG's 'parameters' chunk. Negative embeddings render as the negative prompt against a fixed
    positive one. Many embeddings render per pipeline call; existing previews are kept.

    Folders are walked; files in them that are no embedding (pictures, previews, sidecars, text,
    model checkpoints) are skipped with the reason (counted; -v lists them). PATH '-' reads one
    file from standard input (its preview goes under -o DIR, named after the embedding). Inputs are
    never written: -o must not overlap an input folder. Exit status: the rule of every folder walk
    (docs/cli.md): 0 when every preview was written or kept (an embedding that does not fit the
    model is skipped, not failed); a file that cannot be read adds its error's code, a preview not
    written 9 (1 when codes differ, 5 when a file is unsafe); 4 when no embedding was found."""
    from ..diffusers.preview_run import make_previews

    if out == "-":
        raise click.UsageError("previews are PNG files: -o names the folder to write them in, not standard output")
    if "-" in paths and out is None:
        raise click.UsageError("a preview of standard input ('-') has no file to go beside: give -o DIR")
    settings = settings_from(prompt, negative_prompt, positive_for_negatives, host, seeds, steps, size, guidance, batch_size)
    stdin = sys.stdin.buffer if "-" in paths else None
    run = run_with_bar(lambda progress: make_previews(
        paths, model=model, device=device, settings=settings, out=out, overwrite=overwrite, negative=negative, progress=progress,
        dtype=dtype, prediction=prediction, tokenizer=tokenizer, host_dirs=host_dirs, stdin=stdin,
    ))
    sys.exit(report(run, as_json, brief=summary))

"""``embkit library previews`` (render the previews the library's entries lack) and ``embkit
library gallery -o DIR`` (the library as a static site)."""

from __future__ import annotations

import os
import sys

import click

from . import output
from .library_db import db_option, open_library
from .options import shared
from .previews import render_options, report, run_with_bar, settings_from


@click.command("previews")
@click.option("--name", "names", multiple=True, help="Only these entries (name, path or hash); repeatable.")
@render_options
@db_option
@shared("Print the results as JSON.")
@click.pass_context
def previews_cmd(ctx, names, model, prompt, negative_prompt, positive_for_negatives, negative, host, seeds, steps, size, guidance, batch_size,
                 device, dtype, prediction, tokenizer, host_dirs, overwrite, db, as_json) -> None:
    """Render the previews the library's entries lack, as <stem>.preview.png beside their files,
    and record them (as `embkit previews` does for files; with --overwrite every chosen entry's
    preview is rendered again). Exit status: 0 when every preview was written or kept (an entry
    that does not fit the model is skipped, not failed), and when every entry has one; a file that
    cannot be read adds its error's code, a preview not written 9 (1 when codes differ, 5 when a
    file is unsafe)."""
    lib = open_library(ctx, db)
    settings = settings_from(prompt, negative_prompt, positive_for_negatives, host, seeds, steps, size, guidance, batch_size)
    run = run_with_bar(lambda progress: lib.render_previews(
        model, names or None, device=device, settings=settings, overwrite=overwrite, negative=negative, progress=progress,
        dtype=dtype, prediction=prediction, tokenizer=tokenizer, host_dirs=host_dirs,
    ))
    if not run.results and not as_json:
        if not output.MODE.quiet:
            output.info("every entry has a preview (--overwrite renders them again)")
        return
    sys.exit(report(run, as_json, empty_ok=True))


@click.command("gallery")
@click.option("--output", "-o", "out", required=True, type=click.Path(file_okay=False), help="The folder to write (index.html and thumbs/); its parent must exist.")
@click.option("--title", default="embkit library", show_default=True, help="The page's title.")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder holding only index.html and thumbs/ (a previous gallery is always replaced).")
@db_option
@shared("Print what was written as JSON.")
@click.pass_context
def gallery_cmd(ctx, out, title, overwrite, db, as_json) -> None:
    """Write the library as a static site: one index.html and its thumbnails, opened from disk
    (no server, no network). A grid of previews with names, triggers per host, family, vectors,
    trained words and base model, hashes, and duplicate and conflict badges; search and filters
    in the page; a detail view per entry with everything `embkit library show` knows. -q prints
    only the path of index.html; -v lists the entries without a preview."""
    if out == "-":
        raise click.UsageError("the gallery is a folder (index.html and thumbs/): -o names it, not standard output")
    lib = open_library(ctx, db)
    result = lib.gallery(out, overwrite=overwrite, title=title)
    if as_json:
        output.print_json(result.to_dict())
        return
    esc = output.escape
    index = os.path.join(result.path, "index.html")
    if output.MODE.quiet:
        output.info(esc(index))
        return
    output.info(
        f"wrote {esc(index)}: {result.entries} entries, {result.thumbnails} thumbnails"
        + (f", {result.without_preview} without a preview (embkit library previews renders them)" if result.without_preview else "")
    )
    if output.MODE.verbose:
        for e in lib.search():
            if e.preview is None:
                output.detail(f"  no preview: {esc(e.name)}  [dim]{esc(e.path + (f' [{e.member}]' if e.member else ''))}[/]")

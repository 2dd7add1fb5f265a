"""``embkit library previews`` (render the previews the library's entries lack) and ``embkit
library gallery -o DIR`` (the library as a static site)."""

from __future__ import annotations

import sys

import click

from . import output
from .library_db import db_option, open_library
from .previews import render_options, report, run_with_bar, settings_from


@click.command("previews")
@click.option("--name", "names", multiple=True, help="Only these entries (name, path or hash); repeatable.")
@render_options
@db_option
@click.pass_context
def previews_cmd(ctx, names, model, prompt, negative_prompt, positive_for_negatives, negative, host, seeds, steps, size, guidance, batch_size,
                 device, dtype, prediction, tokenizer, host_dirs, overwrite, as_json, quiet, db) -> None:
    """Render the previews the library's entries lack, as <stem>.preview.png beside their files,
    and record them (as `embkit previews` does for files; with --overwrite every chosen entry's
    preview is rendered again)."""
    lib = open_library(ctx, db)
    settings = settings_from(prompt, negative_prompt, positive_for_negatives, host, seeds, steps, size, guidance, batch_size)
    run = run_with_bar(quiet, as_json, lambda progress: lib.render_previews(
        model, names or None, device=device, settings=settings, overwrite=overwrite, negative=negative, progress=progress,
        dtype=dtype, prediction=prediction, tokenizer=tokenizer, host_dirs=host_dirs,
    ))
    if not run.results and not as_json:
        output.info("every entry has a preview (--overwrite renders them again)")
        return
    sys.exit(report(run, as_json))


@click.command("gallery")
@click.option("--output", "-o", "out", required=True, type=click.Path(file_okay=False), help="The folder to write (index.html and thumbs/); its parent must exist.")
@click.option("--title", default="embkit library", show_default=True, help="The page's title.")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder holding only index.html and thumbs/ (a previous gallery is always replaced).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@db_option
@click.pass_context
def gallery_cmd(ctx, out, title, overwrite, as_json, db) -> None:
    """Write the library as a static site: one index.html and its thumbnails, opened from disk
    (no server, no network). A grid of previews with names, triggers per host, family, vectors,
    trained words and base model, hashes, and duplicate and conflict badges; search and filters
    in the page; a detail view per entry with everything `embkit library show` knows."""
    result = open_library(ctx, db).gallery(out, overwrite=overwrite, title=title)
    if as_json:
        output.print_json(result.to_dict())
        return
    output.info(
        f"wrote {output.escape(result.path)}/index.html: {result.entries} entries, {result.thumbnails} thumbnails"
        + (f", {result.without_preview} without a preview (embkit library previews renders them)" if result.without_preview else "")
    )

"""``embkit formats``: what embkit reads and writes, built from the one format table."""

from __future__ import annotations

import click

from . import output
from .options import shared


@click.command("formats")
@shared("Print the table as JSON.")
def cli(as_json: bool) -> None:
    """List every format and container embkit reads and writes."""
    from ..formats import CONTAINERS, FORMATS, get_container

    rows = []
    for fmt in FORMATS:
        exts = sorted({e for c in fmt.containers for e in get_container(c).extensions})
        rows.append(
            {
                "id": fmt.id,
                "title": fmt.title,
                "read": list(fmt.containers),
                "write": list(fmt.write_containers) if fmt.writer else [],
                "extensions": exts,
                "slots": fmt.slots,
                "metadata": fmt.metadata,
                "output_vectors": fmt.output_vectors,
                "several_per_file": fmt.several,
            }
        )
    if as_json:
        output.print_json({"formats": rows, "containers": [{"id": c.id, "title": c.title, "noun": c.noun, "extensions": list(c.extensions)} for c in CONTAINERS]})
        return
    from rich.table import Table

    table = Table(title="formats", title_justify="left", header_style="bold")
    for col in ("id", "reads from", "writes to", "slots", "metadata", "_out vectors", "description"):
        table.add_column(col)
    yes = lambda b: "[green]yes[/]" if b else "[dim]no[/]"  # noqa: E731
    for r in rows:
        table.add_row(r["id"], ", ".join(r["read"]), ", ".join(r["write"]) or "[dim]—[/]", r["slots"], yes(r["metadata"]), yes(r["output_vectors"]), r["title"])
    output.console().print(table)
    ctable = Table(title="containers", title_justify="left", header_style="bold")
    for col in ("id", "extensions", "description"):
        ctable.add_column(col)
    for c in CONTAINERS:
        ctable.add_row(c.id, " ".join(c.extensions) or "(a folder)", c.title)
    output.console().print(ctable)

"""How commands show the hosts' answers (embkit.hosts): the ``--host`` option, a compact file ×
host matrix, and per host "loads as WORD" / "skipped: why" lines."""

from __future__ import annotations

from typing import Iterable

import click

from . import output

HOST_HELP = "A host to answer for: a1111, forge, comfyui, invokeai, diffusers, sdnext, embkit (repeatable, or 'all')."
STATUS_STYLE = {"loads": "green", "partial": "yellow", "skipped": "red", "error": "red", "ignored": "red", "unknown": "dim"}
SHORT = {"loads": "loads", "partial": "part", "skipped": "skip", "error": "error", "ignored": "ignored", "unknown": "?"}


def host_option(f):
    """``--host`` (repeatable)."""
    return click.option("--host", "host_names", multiple=True, help=HOST_HELP)(f)


def parse_hosts(values: Iterable[str]) -> tuple[str, ...]:
    """Host ids from ``--host`` values; a usage error names the known ones."""
    from ..hosts import resolve_hosts

    try:
        return resolve_hosts(tuple(values))
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--host") from None


def title(host: str) -> str:
    from ..hosts import get_host

    return get_host(host).label


def print_matrix(rows: list[tuple[str, dict]], family: str | None = None) -> None:
    """One line per embedding, one column per host: status and the word to type."""
    from rich.table import Table

    if not rows:
        return
    esc = output.escape
    hosts = list(rows[0][1])
    fam = f" on {family.upper()}" if family else ""
    table = Table(title=f"what each host does{fam} (and the word to type)", title_justify="left", header_style="bold", box=None)
    table.add_column("embedding", overflow="fold")
    for h in hosts:
        table.add_column(title(h), overflow="fold")
    for label, verdicts in rows:
        cells = []
        for h in hosts:
            v = verdicts.get(h)
            if v is None:
                cells.append("")
                continue
            style = STATUS_STYLE.get(v.status, "")
            word = f" {esc(v.trigger)}" if v.trigger and v.loads else ""
            cells.append(f"[{style}]{SHORT.get(v.status, v.status)}[/]{word}")
        table.add_row(esc(label), *cells)
    output.console().print(table)


def print_host_lines(label: str, verdicts: dict, indent: str = "  ") -> None:
    """Per host: whether it loads, the exact word to type, and why not."""
    esc = output.escape
    con = output.console()
    con.print(f"[bold]{esc(label)}[/]")
    for h, v in verdicts.items():
        style = STATUS_STYLE.get(v.status, "")
        word = f" as [bold]{esc(v.trigger)}[/]" if v.trigger and v.loads else (f" (would be typed {esc(v.trigger)})" if v.trigger else "")
        con.print(f"{indent}{title(h)}: [{style}]{v.status}[/]{word}")
        for why in v.reasons:
            con.print(f"{indent}    [dim]{esc(why)}[/]")
        for note in v.notes:
            con.print(f"{indent}    [dim]note: {esc(note)}[/]")

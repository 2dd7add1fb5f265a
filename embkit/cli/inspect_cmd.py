"""``embkit inspect PATH...``: what is in each embedding file, as rich tables or ``--json``."""

from __future__ import annotations

import click

from ..formats import FORMAT_IDS
from . import output


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (one object per file) instead of tables.")
@click.option("--format", "format_", type=click.Choice(FORMAT_IDS), help="Force a layout instead of detecting it.")
@click.option("--all-norms", is_flag=True, help="Show every vector's norm in the tables (default: at most 8).")
def cli(paths: tuple[str, ...], as_json: bool, format_: str | None, all_norms: bool) -> None:
    """Show slots, vectors, norms, family, hashes and metadata of embedding files.

    Folders are walked; files in them that are no embedding (a model, a preview picture) are left
    out. Exits 0 when every file was read; otherwise with the exit code of the first error (files
    that were read are still reported)."""
    from ..errors import EmbkitError
    from ..report import iter_reports

    reports = []
    first_error: EmbkitError | None = None
    left_out = 0
    for rep, exc in iter_reports(paths, format_):
        if rep is None:
            left_out += 1
            continue
        first_error = first_error or exc
        reports.append(rep)
        if not as_json:
            _print_report(rep, all_norms)
    if as_json:
        output.print_json(reports)
    elif not reports:
        output.warn("no embedding files found")
    if left_out and not as_json:
        output.info(f"[dim]{left_out} file(s) in the folders are not embeddings (models, pictures) and were left out[/]")
    if first_error is not None:
        raise SystemExit(first_error.exit_code)
    if not reports:
        raise SystemExit(4)


def _print_report(rep: dict, all_norms: bool) -> None:
    from rich.table import Table

    con = output.console()
    esc = output.escape
    if "error" in rep:
        output.error_line(rep["path"], rep["error"])
        return
    for emb in rep["embeddings"]:
        title = f"[bold]{esc(emb['name'])}[/]  [dim]{esc(rep['path'])}[/]"
        table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
        table.add_column("slot")
        table.add_column("vectors × dim", justify="right")
        table.add_column("dtype")
        table.add_column("L2 norms")
        table.add_column("min / max / std", justify="right")
        for slot, s in emb["slots"].items():
            norms = s["norms"] if all_norms else s["norms"][:8]
            shown = ", ".join("non-finite" if n is None else f"{n:.3f}" for n in norms)
            if len(s["norms"]) > len(norms):
                shown += f", … ({len(s['norms'])})"
            stats = "non-finite" if s["min"] is None else f"{s['min']:.3f} / {s['max']:.3f} / {s['std']:.3f}"
            if not s["finite"] and s["min"] is not None:
                stats += " (finite values; has NaN/inf)"
            table.add_row(slot, f"{s['vectors']} × {s['dim']}", s["dtype"], shown, stats)
        con.print(table)
        family = emb["family"] if emb["family"] != "unknown" else "unknown"
        con.print(f"  format [cyan]{rep['format']}[/] in [cyan]{rep['container']}[/]   family [green]{family}[/]   {emb['vectors']} token(s) of 75")
        con.print("  applies in:")
        for h, w in emb.get("hosts", {}).items():
            con.print("    " + _where(h, w))
        hashes = rep["hashes"]
        con.print("  " + "   ".join(f"{k} [dim]{v}[/]" for k, v in hashes.items() if k != "sha256"))
        con.print(f"  sha256 [dim]{hashes['sha256']}[/]")
        meta = {k: v for k, v in emb["metadata"].items() if k != "provenance"}
        if meta:
            con.print("  " + "   ".join(f"{esc(str(k))}={esc(_short(v))}" for k, v in meta.items()))
        history = emb["metadata"].get("provenance")
        if isinstance(history, list):  # a file may hold anything under this key
            ops = [str(p.get("operation", "?")) if isinstance(p, dict) else "?" for p in history]
            con.print(f"  provenance: {esc(' → '.join(ops))}")
        elif history is not None:
            con.print(f"  provenance={esc(_short(history))}")
        for w in emb["warnings"]:
            con.print(f"  [yellow]warning[/]: {esc(w)}")
        con.print()


def _where(host: str, entry: dict) -> str:
    """``A1111: SD1 as bad-hands-5`` for one host of the report's ``hosts`` field."""
    from ..hosts import get_host
    from ..hosts.verdict import summary

    where = summary(entry)
    word = f" as [bold]{output.escape(entry['trigger'])}[/]" if entry.get("trigger") and where != "nowhere" else ""
    return f"{get_host(host).label + ':':<11}{where}{word}"


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"

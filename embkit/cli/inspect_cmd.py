"""``embkit inspect PATH...``: what is in each embedding file, as rich tables or ``--json``."""

from __future__ import annotations

import click

from . import output
from .options import format_option, model_option, shared


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False, allow_dash=True))
@format_option()
@click.option("--all-norms", is_flag=True, help="Show every vector's norm in the tables (default: at most 8).")
@model_option("Model for --nearest: a diffusers folder, a single-file .safetensors checkpoint, or a Hub id in the cache.")
@click.option("--nearest", "nearest", type=click.IntRange(1, 1000), help="List the K vocabulary tokens nearest (cosine) to each vector (needs --model).")
@shared("Print a JSON list (one object per file, skipped files too) instead of tables.", json_lines=True,
        summary="Print one line per file (name, layout, family, slots) and the problems, not the tables.")
def cli(paths: tuple[str, ...], format_: str | None, all_norms: bool, model: str | None, nearest: int | None, as_json: bool,
        json_lines: bool, summary: bool) -> None:
    """Show slots, vectors, norms, family, hashes, metadata and sidecars of embedding files.

    Folders are walked; files in them that are no embedding (pictures, previews, sidecars, text,
    model checkpoints) are skipped with the reason (counted; -v lists them, --json lists them as
    {"path", "skipped"}). PATH '-' reads one file from standard input. With --model and --nearest
    K, each vector's K nearest vocabulary tokens are listed, per encoder. --summary prints one line
    per file. Exit status: the rule of every folder walk (docs/cli.md): 0 when every file was read,
    else the error's exit code (1 when several differ, 5 when one is unsafe), 4 when no embedding
    was found; files that were read are still reported."""
    import sys

    from ..report import iter_reports

    if (model is None) != (nearest is None):
        raise click.UsageError("--nearest K and --model TARGET go together")
    index = None
    if model is not None:
        from ..model.nearest import TokenIndex

        index = TokenIndex.from_target(model)
        for note in index.notes:  # on stderr: stdout may be --json
            output.note(f"[dim]note: {output.escape(note)}[/]")
    extra = (lambda emb, slot: index.slot_fields(emb, slot, nearest)) if index is not None else None
    entries: list[dict] = []
    skipped: list[tuple[str, str]] = []
    codes: list[int] = []
    found = 0
    try:
        for rep, exc in iter_reports(paths, format_, stdin=getattr(sys.stdin, "buffer", None), slot_extra=extra):
            if "skipped" in rep:
                skipped.append((rep["path"], rep["skipped"]))
            else:
                found += 1
                if exc is not None:
                    codes.append(exc.exit_code)
            if json_lines:
                output.print_json_line(rep)
            elif as_json:
                entries.append(rep)
            elif "skipped" not in rep and summary:
                _print_line(rep)
            elif "skipped" not in rep:
                _print_report(rep, all_norms)
    finally:
        if index is not None:
            index.close()
    output.end_walk(entries, as_json=as_json, json_lines=json_lines, skipped_items=skipped, codes=codes, found=found,
                    nothing="no embedding files found")


def _print_line(rep: dict) -> None:
    """``--summary``: one line per file."""
    esc = output.escape
    if "error" in rep:
        output.error_line(rep["path"], rep["error"])
        return
    for emb in rep["embeddings"]:
        slots = " ".join(f"{esc(s)}:{v['vectors']}x{v['dim']}" for s, v in emb["slots"].items())
        output.info(f"[bold]{esc(emb['name'])}[/]  {esc(rep['format'])}  [green]{esc(emb['family'])}[/]  {slots}  [dim]{esc(rep['path'])}[/]")


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
            table.add_row(esc(slot), f"{s['vectors']} × {s['dim']}", esc(s["dtype"]), shown, stats)
        con.print(table)
        con.print(f"  format [cyan]{esc(rep['format'])}[/] in [cyan]{esc(rep['container'])}[/]   family [green]{esc(emb['family'])}[/]   {emb['vectors']} token(s) of 75")
        con.print("  applies in:")
        for h, w in emb.get("hosts", {}).items():
            con.print("    " + _where(h, w))
        hashes = rep["hashes"]
        con.print("  " + "   ".join(f"{esc(k)} [dim]{esc(v)}[/]" for k, v in hashes.items() if k != "sha256"))
        con.print(f"  sha256 [dim]{esc(hashes['sha256'])}[/]")
        meta = {k: v for k, v in emb["metadata"].items() if k != "provenance"}
        if meta:
            con.print("  " + "   ".join(f"{esc(str(k))}={esc(_short(v))}" for k, v in meta.items()))
        history = emb["metadata"].get("provenance")
        if isinstance(history, list):  # a file may hold anything under this key
            ops = [str(p.get("operation", "?")) if isinstance(p, dict) else "?" for p in history]
            con.print(f"  provenance: {esc(' → '.join(ops))}")
        elif history is not None:
            con.print(f"  provenance={esc(_short(history))}")
        if "pair" in rep:
            con.print(f"  SDXL pair: clip_l from {esc(rep['pair']['clip_l']['path'])}, clip_g from {esc(rep['pair']['clip_g']['path'])}")
        _print_sidecars(rep)
        for slot, s in emb["slots"].items():
            if s.get("nearest"):
                _print_nearest(slot, s["nearest"])
            elif "nearest" in s:
                con.print(f"  [dim]{esc(slot)}: the model has no token matrix for these vectors[/]")
        for w in emb["warnings"]:
            con.print(f"  [yellow]warning[/]: {esc(w)}")
        con.print()


def _print_sidecars(rep: dict) -> None:
    esc = output.escape
    found = {k: v for k, v in rep.get("sidecars", {}).items() if v is not None}
    if not found:
        return
    con = output.console()
    con.print("  sidecars: " + esc(", ".join(found)))
    if rep.get("trained_words"):
        con.print(f"  trained words: {esc(', '.join(rep['trained_words']))}")
    if rep.get("base_model"):
        con.print(f"  base model: {esc(rep['base_model'])}")
    info = found.get("civitai_info") or {}
    model = info.get("model") if isinstance(info.get("model"), dict) else {}
    names = [str(x) for x in (model.get("name"), info.get("name")) if x]
    if names:
        con.print(f"  civitai: {esc(' / '.join(names))}" + (f" (model {esc(str(info.get('modelId')))}, version {esc(str(info.get('id')))})" if info.get("id") else ""))
    for key in ("description", "notes"):
        text = (found.get("a1111_json") or {}).get(key)
        if isinstance(text, str) and text.strip():
            con.print(f"  {key}: {esc(_short(text))}")
    if found.get("preview"):
        con.print(f"  preview: {esc(found['preview'])}")


def _print_nearest(slot: str, rows: list) -> None:
    con = output.console()
    con.print(f"  nearest tokens ({output.escape(slot)}):")
    for i, row in enumerate(rows):
        cells = ", ".join(f"{output.escape(str(t['token'] if t['token'] is not None else '#' + str(t['id'])))} {t['cosine']:.3f}" for t in row)
        con.print(f"    {i}: {cells}")


def _where(host: str, entry: dict) -> str:
    """``A1111: SD1 as bad-hands-5`` for one host of the report's ``hosts`` field."""
    from ..hosts import get_host
    from ..hosts.verdict import summary

    where = summary(entry)
    word = f" as [bold]{output.escape(entry['trigger'])}[/]" if entry.get("trigger") and where != "nowhere" else ""
    return f"{get_host(host).label + ':':<11}{output.escape(where)}{word}"


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"

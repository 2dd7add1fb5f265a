"""``embkit inspect PATH...``: what is in each embedding file, as rich tables or ``--json``."""

from __future__ import annotations

import click

from ..formats import FORMAT_IDS
from . import output


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (one object per file) instead of tables.")
@click.option("--format", "format_", type=click.Choice(FORMAT_IDS), help="Force a layout instead of detecting it.")
@click.option("--all-norms", is_flag=True, help="Show every vector's norm in the tables (default: at most 8).")
@click.option("--model", "model", help="Model for --nearest: a diffusers folder, a single-file .safetensors checkpoint, or a Hub id in the cache.")
@click.option("--nearest", "nearest", type=click.IntRange(1, 1000), help="List the K vocabulary tokens nearest (cosine) to each vector (needs --model).")
def cli(paths: tuple[str, ...], as_json: bool, format_: str | None, all_norms: bool, model: str | None, nearest: int | None) -> None:
    """Show slots, vectors, norms, family, hashes, metadata and sidecars of embedding files.

    Folders are walked; files in them that are no embedding (a model, a preview picture) are left
    out. PATH '-' reads one file from standard input. With --model and --nearest K, each vector's
    K nearest vocabulary tokens are listed, per encoder. Exits 0 when every file was read;
    otherwise with the exit code of the first error (files that were read are still reported)."""
    import sys

    from ..errors import EmbkitError
    from ..report import iter_reports

    if (model is None) != (nearest is None):
        raise click.UsageError("--nearest K and --model TARGET go together")
    index = None
    if model is not None:
        from ..model.nearest import TokenIndex

        index = TokenIndex.from_target(model)
        for note in index.notes:  # on stderr: stdout may be --json
            output.err_console().print(f"[dim]note: {output.escape(note)}[/]")
    extra = (lambda emb, slot: index.slot_fields(emb, slot, nearest)) if index is not None else None
    reports = []
    first_error: EmbkitError | None = None
    left_out = 0
    try:
        for rep, exc in iter_reports(paths, format_, stdin=getattr(sys.stdin, "buffer", None), slot_extra=extra):
            if rep is None:
                left_out += 1
                continue
            first_error = first_error or exc
            reports.append(rep)
            if not as_json:
                _print_report(rep, all_norms)
    finally:
        if index is not None:
            index.close()
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
        if "pair" in rep:
            con.print(f"  SDXL pair: clip_l from {esc(rep['pair']['clip_l']['path'])}, clip_g from {esc(rep['pair']['clip_g']['path'])}")
        _print_sidecars(rep)
        for slot, s in emb["slots"].items():
            if s.get("nearest"):
                _print_nearest(slot, s["nearest"])
            elif "nearest" in s:
                con.print(f"  [dim]{slot}: the model has no token matrix for these vectors[/]")
        for w in emb["warnings"]:
            con.print(f"  [yellow]warning[/]: {esc(w)}")
        con.print()


def _print_sidecars(rep: dict) -> None:
    esc = output.escape
    found = {k: v for k, v in rep.get("sidecars", {}).items() if v is not None}
    if not found:
        return
    con = output.console()
    con.print("  sidecars: " + ", ".join(found))
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
    con.print(f"  nearest tokens ({slot}):")
    for i, row in enumerate(rows):
        cells = ", ".join(f"{output.escape(str(t['token'] if t['token'] is not None else '#' + str(t['id'])))} {t['cosine']:.3f}" for t in row)
        con.print(f"    {i}: {cells}")


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

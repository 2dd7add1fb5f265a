"""``embkit verify PATH... [--model TARGET]``: does each embedding fit the target model?

Prints a table of findings per embedding (or ``--json``, ``--json-lines``, ``--summary``) and a
summary of which would load and which would be skipped, and why. Exit status: the rule of every
folder walk (:func:`embkit.folder.walk_exit_code`): 0 when everything passes; 7
(:attr:`embkit.errors.ValidationFailed.exit_code`) when any embedding has an error, and with
``--strict`` also when any has a warning; a file that cannot be read adds its own error's code (1
when the codes differ, 5 when a file is unsafe); 4 when no embedding was found; 6 when the target
cannot be built.
With ``--render``, rendering (``embkit.cli.render``) runs after validation and its status is the
command's; whether the contact sheet can be written (``-o``) is checked first of all (exit 9).
"""

from __future__ import annotations

import os

import click

from . import output
from .hosts_view import host_option, parse_hosts, print_host_lines, print_matrix
from .options import model_option, shared
from .render import render_options

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


@click.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False, allow_dash=True))
@model_option("Target: a family (sd1, sd2, sdxl, sd3, flux), a diffusers folder, a single-file checkpoint (.safetensors or .ckpt) or a Hub repo id (org/name). Default: each embedding's own family (sd1 when unknown).")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--render", is_flag=True, help="After validating, render with and without each embedding and write a contact sheet (see docs/diffusers.md).")
@render_options
@host_option
@shared("Print one JSON object (files, findings, summary) instead of tables.", json_lines=True, summary=True)
def cli(paths, model, strict, render, host_names, as_json, json_lines, summary, **render_kw) -> None:
    """Check embeddings against a target model: widths, slots, values, prompt budget, trigger names.

    Folders are walked (every embedding file and concept folder under them); files in a folder that
    are no embedding (pictures, previews, sidecars, text, model checkpoints) are skipped with the
    reason, never failed. PATH '-' reads one file from standard input. --summary prints the totals
    and the embeddings that would be skipped, --json-lines one object per file. All embeddings given are checked as if loaded together, so
    trigger collisions between them are reported. With --host, each file is checked as that host
    (A1111, ComfyUI, …) would load it: the word to type there, whether it loads and why not; only
    that host's findings are shown and count for --strict. Without --host the findings are
    embkit's own (how embkit.diffusers.apply treats the file), followed by a file × host table.
    Exit status: the rule of every folder walk (docs/cli.md): 0 when all would load; 7 when any
    would be skipped; a file that cannot be read adds its error's code (1 when codes differ, 5 when
    a file is unsafe); 4 when no embedding was found; 6 for an unusable --model."""
    from ..errors import ValidationFailed
    from ..folder import walk_exit_code
    from ..model.resolve import resolve_target

    if render and (json_lines or summary):
        raise click.UsageError("--render prints its own report: give --json, not --json-lines or --summary")
    if render:
        from . import render as render_cli

        # rendering takes seconds: a sheet that cannot be written is said before anything else
        code = render_cli.preflight(paths, render_kw["output_path"], render_kw["overwrite"], as_json, render_kw["sheet_per_file"])
        if code:
            raise SystemExit(code)
    asked = parse_hosts(host_names)
    spec = resolve_target(model) if model else None
    files = _load(paths)
    everything = [e for f in files for e in f["embeddings"]]
    own_specs: dict[str, object] = {}
    failed = False
    codes: list[int] = []
    for entry in files:
        entry["reports"] = []
        for emb in entry["embeddings"]:
            target = spec or own_specs.setdefault(emb.family, resolve_target(emb.family if emb.family != "unknown" else "sd1"))
            from ..check.validate import validate

            report = validate(emb, target, loaded=everything, hosts=asked or None)
            entry["reports"].append(report)
            if not report.passes(strict):
                failed = True
                codes.append(ValidationFailed.exit_code)
        if not entry["ignored"]:
            entry["hosts"] = _host_verdicts(entry, spec, asked)
        if entry["error"] is not None:
            # a file embkit cannot read may still load where asked (ComfyUI takes any dict's first tensor)
            hosts_load = asked and "embkit" not in asked and all(v.loads for v in entry["hosts"].values())
            if not hosts_load:
                failed = True
                codes.append(entry["error"].exit_code)
    report_summary = _summary(files, strict)
    found = sum(1 for f in files if not f["ignored"])
    if not found and not render:
        if as_json:
            output.print_json(_json(files, spec, report_summary, failed))
        elif not json_lines:
            output.skipped([(i["path"], i["reason"]) for i in report_summary["ignored"]])
            output.warn("no embedding files found")
        raise SystemExit(walk_exit_code(codes, found))
    if not (as_json and render):
        if as_json:
            output.print_json(_json(files, spec, report_summary, failed))
        elif json_lines:
            for item in _json_lines(files):
                output.print_json_line(item)
        else:
            _print(files, report_summary, spec, strict, asked, brief=summary)
    code = walk_exit_code(codes, found)
    if render:
        # the render validates against the pipeline it builds and owns the exit status from here
        code = _render(paths, model, as_json, strict, render_kw)
    raise SystemExit(code)


def _render(paths, model, as_json, strict, kw: dict) -> int:
    from . import render

    kw = dict(kw)
    kw["output"] = kw.pop("output_path")
    kw["seeds"], kw["host_dirs"] = list(kw["seeds"]), list(kw["host_dirs"])
    return render.run(paths=list(paths), model=model, json_out=as_json, strict=strict, **kw)


def _load(paths) -> list[dict]:
    """Read every file; a file in a walked folder that is no embedding (embkit.folder: by its name,
    or after reading it) is marked ignored, with the reason. ``-`` reads standard input."""
    import sys

    from ..errors import EmbkitError
    from ..folder import error_reason
    from ..hosts.verdict import remember
    from ..io import embedding_of, open_data, open_file
    from ..report import walk_entries

    files = []
    for found in walk_entries(paths):
        path = found.path
        entry = {"path": path, "embeddings": [], "error": None, "ignored": found.skip is not None, "reason": found.skip}
        if found.skip is None:
            try:
                loaded = open_data(sys.stdin.buffer, name="<stdin>") if path == "-" else open_file(path)
                entry["embeddings"] = [embedding_of(loaded, part) for part in loaded.parts]
                if path != "-":
                    remember(loaded)  # the hosts' questions about this file need no second read
            except EmbkitError as exc:
                reason = error_reason(path, exc.code, exc.detail) if found.walked else None
                if reason is not None:
                    entry["ignored"], entry["reason"] = True, reason
                else:
                    entry["error"] = exc
        files.append(entry)
    return files


def _host_verdicts(entry: dict, spec, asked: tuple[str, ...]) -> dict:
    """host id → verdict for the file's first embedding (for the file as a whole when embkit
    cannot read it), on the target's family (the embedding's own without --model)."""
    from ..hosts import HOST_IDS, verdict

    family = spec.family if spec is not None and spec.family != "unknown" else None
    embs = entry["embeddings"]
    subject = embs[0] if embs else entry["path"]
    return {h: verdict(subject, h, family) for h in (asked or HOST_IDS)}


def _reason(report) -> str:
    first = report.errors[0]
    return first.code + (f" ({first.slot})" if first.slot else "") + (f" - fix: {first.fix}" if first.fix else "")


def _summary(files: list[dict], strict: bool = False) -> dict:
    """Which embeddings would load, which would be skipped and why, which files were ignored, and
    (``strict_failed``, empty without ``--strict``) which would load but fail ``--strict`` on their
    warnings: without it, a strict failure of loadable files would have no stated reason."""
    load, skipped, ignored = [], [], []
    for entry in files:
        if entry["ignored"]:
            ignored.append({"path": entry["path"], "reason": entry["reason"]})
        elif entry["error"] is not None:
            skipped.append({"name": None, "path": entry["path"], "reason": f"{entry['error'].code}: {entry['error'].detail}"})
        for report in entry["reports"]:
            if report.ok:
                load.append({"name": report.name, "path": entry["path"], "warnings": len(report.warnings)})
            else:
                skipped.append({"name": report.name, "path": entry["path"], "reason": _reason(report)})
    strict_failed = [item for item in load if item["warnings"]] if strict else []
    return {"load": load, "skipped": skipped, "ignored": ignored, "strict_failed": strict_failed}


def _json(files: list[dict], spec, summary: dict, failed: bool) -> dict:
    out_files = []
    for entry in files:
        if entry["ignored"]:
            continue
        item: dict = {"path": entry["path"], "reports": [r.to_dict() for r in entry["reports"]]}
        if entry["error"] is not None:
            item["error"] = entry["error"].to_dict()
        item["hosts"] = {h: v.to_dict() for h, v in entry.get("hosts", {}).items()}
        out_files.append(item)
    return {"target": spec.to_dict() if spec else None, "ok": not failed, "files": out_files, "summary": summary}


def _json_lines(files: list[dict]):
    """``--json-lines``: one object per file, as in ``--json``'s ``files``; skipped files as
    ``{"path", "skipped": reason}``."""
    for entry in files:
        if entry["ignored"]:
            yield {"path": entry["path"], "skipped": entry["reason"]}
            continue
        item: dict = {"path": entry["path"], "reports": [r.to_dict() for r in entry["reports"]]}
        if entry["error"] is not None:
            item["error"] = entry["error"].to_dict()
        item["hosts"] = {h: v.to_dict() for h, v in entry.get("hosts", {}).items()}
        yield item


def _print(files: list[dict], summary: dict, spec, strict: bool, asked: tuple[str, ...] = (), brief: bool = False) -> None:
    from rich.table import Table

    con, esc = output.console(), output.escape
    if brief:
        _print_brief(files, summary)
        return
    if spec is not None:
        # a family's source already says so ("family sdxl"); a folder's or a file's is a bare path
        where = spec.source if spec.source.startswith(f"{spec.kind} ") else f"{spec.kind}: {spec.source}"
        con.print(f"target [bold]{esc(spec.describe())}[/] [dim]({esc(where)})[/]")
        for note in () if output.MODE.quiet else spec.notes:
            con.print(f"  [dim]{esc(note)}[/]")
        if not output.MODE.quiet and not any(s.vocab is not None for s in spec.slots.values()):
            con.print("  [dim]no tokenizer: triggers not checked against the vocabulary (pass a model folder for that)[/]")
    for entry in files:
        if entry["ignored"]:
            continue
        if entry["error"] is not None:
            output.error(entry["error"])
            if asked:
                print_host_lines(entry["path"], entry["hosts"])
            continue
        for report in entry["reports"]:
            verdict = "[green]ok[/]" if report.passes(strict) else "[red]fails[/]"
            title = f"[bold]{esc(report.name)}[/] {verdict}  [dim]{esc(entry['path'])} → {esc(report.target)}[/]"
            table = Table(title=title, title_justify="left", header_style="bold", expand=False)
            several = len(report.hosts) > 1
            for col in ("severity", "code", "slot", "row", *(("hosts",) if several else ()), "message"):
                table.add_column(col, overflow="fold")
            for f in report.findings:
                if f.code == "vocab-unavailable":
                    continue  # said once, under the target line
                style = SEVERITY_STYLE[f.severity]
                where = (", ".join(f.hosts) if set(f.hosts) != set(report.hosts) else "all",) if several else ()
                table.add_row(f"[{style}]{f.severity}[/]", esc(f.code), esc(f.slot or ""), "" if f.index is None else str(f.index), *(esc(w) for w in where), esc(f.message))
            con.print(table)
            if asked and report.verdicts:
                print_host_lines(f"{report.name} in each host", report.verdicts)
    if not asked:
        rows = [(r.name, entry["hosts"]) for entry in files if not entry["ignored"] and entry["error"] is None for r in entry["reports"][:1]]
        rows += [(os.path.basename(entry["path"]), entry["hosts"]) for entry in files if not entry["ignored"] and entry["error"] is not None]
        con.print()
        print_matrix(rows, spec.family if spec is not None and spec.family != "unknown" else None)
        if not output.MODE.quiet:
            con.print("[dim]findings above are embkit's own (embkit.diffusers.apply); --host H checks as host H loads the file[/]")
    _print_totals(summary)


def _print_brief(files: list[dict], summary: dict) -> None:
    """``--summary``: the files that cannot be read, then the totals and what would be skipped."""
    for entry in files:
        if entry["error"] is not None:
            output.error(entry["error"])
    _print_totals(summary)


def _print_totals(summary: dict) -> None:
    con, esc = output.console(), output.escape
    load, skipped = summary["load"], summary["skipped"]
    if not output.MODE.quiet:  # -q: the results (what is skipped, and why), not the count line
        con.print(f"\n[bold]{len(load)}[/] would load, [bold]{len(skipped)}[/] would be skipped")
    for item in skipped:
        con.print(f"  [red]skipped[/] {esc(item['name'] or os.path.basename(item['path']))}: {esc(item['reason'])}")
    output.skipped([(i["path"], i["reason"]) for i in summary["ignored"]])
    strict_failed = summary["strict_failed"]
    if strict_failed:
        count = sum(item["warnings"] for item in strict_failed)
        names = ", ".join(item["name"] for item in strict_failed)
        con.print(f"[red]failed under --strict[/]: {count} warning{'s' if count != 1 else ''} ({esc(names)})")

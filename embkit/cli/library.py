"""``embkit library …``: the registry of a user's embeddings (scan, list, search, show, dupes,
conflicts, check, export, remove, tag; previews and gallery in :mod:`.library_previews`). The
database is ``--db``, else ``$EMBKIT_LIBRARY``, else ``library.sqlite`` in the platform's user data
folder."""

from __future__ import annotations

import click

from . import output
from .hosts_view import host_option, parse_hosts
from .library_db import DB_HELP as _DB_HELP
from .library_db import db_option as _db_option
from .library_db import open_library as _open
from .library_previews import gallery_cmd, previews_cmd
from .options import model_option, renamed, shared


@click.group("library")
@click.option("--db", "db", type=click.Path(dir_okay=False), default=None, help=_DB_HELP)
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """An SQLite registry of your embeddings: scan folders once, then search, find duplicates and
    name conflicts, and check what a model would load."""
    ctx.obj = {"db": db}


# -- scan -------------------------------------------------------------------------------------


@cli.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, help="Worker processes (default: CPUs available).")
@_db_option
@shared("Print the scan report as JSON.")
@click.pass_context
def scan_cmd(ctx, paths, jobs, db, as_json) -> None:
    """Scan files and folders (recursively) into the library. Incremental: unchanged files are not
    reopened, changed ones are re-read, deleted ones are dropped. Unreadable or unsafe files are
    recorded with the reason; files that are no embedding (pictures, previews, sidecars, text,
    model checkpoints) are skipped (counted; -v lists them). Exit status: the rule of every folder
    walk (docs/cli.md), over the files under PATHS as they are now: 0 when every file was read, the
    unreadable files' error code (1 when codes differ, 5 when one is unsafe), 4 when no embedding
    was found."""
    lib = _open(ctx, db)
    bar = output.progress() if not as_json else None
    report = lib.scan(paths, jobs=jobs) if bar is None else _scan_with_bar(lib, paths, jobs, bar)
    code = report.exit_code
    if as_json:
        output.print_json(report.to_dict())
        _exit(code)
        return
    for path, code_, message in report.errors[: None if output.MODE.verbose else 20]:
        output.error_line(path, {"code": code_, "message": message})
    if len(report.errors) > 20 and not output.MODE.verbose:
        output.warn(f"… and {len(report.errors) - 20} more unreadable files (embkit library list --errors)")
    output.skipped(report.skipped)
    if not output.MODE.quiet:
        rate = report.seen / report.seconds if report.seconds else 0.0
        output.info(
            f"{report.seen - report.read_skips} files: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.removed} removed, {len(report.errors)} unreadable"
            + (f", {len(report.skipped)} skipped (no embedding)" if report.skipped else "")
            + (f", {report.previews} with a preview" if report.previews else "")
            + f" ({report.seconds:.2f} s, {rate:,.0f} files/s)"
        )
    _exit(code)


def _exit(code: int) -> None:
    if code:
        raise SystemExit(code)


def _scan_with_bar(lib, paths, jobs, bar):
    with bar:
        task = bar.add_task("scanning", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return lib.scan(paths, jobs=jobs, progress=progress)


# -- list / search / show -----------------------------------------------------------------------


def _filters(f):
    from ..formats import FORMAT_IDS
    from ..schema import SLOTS

    opts = [
        click.option("--family", help="Family (sd1, sd2, sdxl, sd3, flux), exact."),
        click.option("--fits", help="A family the slots fit (an SD1 embedding fits sdxl's CLIP-L slot)."),
        click.option("--slot", type=click.Choice(SLOTS), help="Has this slot."),
        click.option("--name", help="Only trigger names matching this glob, case-insensitive ('*neg*')."),
        click.option("--vectors", help="Vector count: N, MIN-MAX, MIN- or -MAX."),
        click.option("--layout", "format_", type=click.Choice(FORMAT_IDS), help="Only files of this layout."),
        renamed("--format", "--layout", "format_", type=click.Choice(FORMAT_IDS)),
        click.option("--tag", help="Has this tag."),
        click.option("--word", help="A trained word the sidecars name (glob, case-insensitive)."),
        click.option("--base-model", "base_model", help="Base model the sidecars name (glob, case-insensitive: 'SDXL*', 'SD 1.5')."),
        _db_option,
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _vectors(value: str | None):
    if value is None:
        return None
    try:
        if "-" not in value:
            return int(value)
        lo, hi = value.split("-", 1)
        return (int(lo) if lo else None, int(hi) if hi else None)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use N, MIN-MAX, MIN- or -MAX", param_hint="--vectors") from None


def _query(ctx, db, family, fits, slot, name, vectors, format_, tag, word=None, base_model=None, pattern=None):
    lib = _open(ctx, db)
    return lib.search(family=family, fits=fits, slot=slot, name=name, vectors=_vectors(vectors), format=format_, tag=tag,
                      word=word, base_model=base_model, pattern=pattern)


@cli.command("list")
@_filters
@click.option("--errors", "show_errors", is_flag=True, help="List the files that could not be read instead.")
@shared("Print JSON.", json_lines=True)
@click.pass_context
def list_cmd(ctx, family, fits, slot, name, vectors, format_, tag, word, base_model, db, show_errors, as_json, json_lines) -> None:
    """List the embeddings in the library (filters combine)."""
    if show_errors:
        lib = _open(ctx, db)
        errs = lib.errors()
        if as_json:
            output.print_json([e.to_dict() for e in errs])
        elif json_lines:
            for e in errs:
                output.print_json_line(e.to_dict())
        else:
            _errors_table(errs, len(lib.pictures()))
        return
    _print_entries(_query(ctx, db, family, fits, slot, name, vectors, format_, tag, word, base_model), as_json, json_lines)


@cli.command("search")
@click.argument("pattern", required=False)
@_filters
@shared("Print JSON.")
@click.pass_context
def search_cmd(ctx, pattern, family, fits, slot, name, vectors, format_, tag, word, base_model, db, as_json) -> None:
    """Search by a PATTERN (a substring, or a glob with * ? [ ]) matching the trigger name or a
    trained word its sidecars name, and filters."""
    if pattern and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    _print_entries(_query(ctx, db, family, fits, slot, name, vectors, format_, tag, word, base_model, pattern), as_json)


@cli.command("show")
@click.argument("key")
@_db_option
@shared("Print JSON.")
@click.pass_context
def show_cmd(ctx, key, db, as_json) -> None:
    """Everything stored about the embeddings KEY names: a trigger name, a path, or a hash
    (sha256, AutoV2, AutoV3 or vectors hash; a prefix of 6+ hex digits)."""
    found = _open(ctx, db).show(key)
    if as_json:
        output.print_json([e.to_dict() for e in found])
        return
    for e in found:
        _show_entry(e)


def _print_entries(found, as_json: bool, json_lines: bool = False) -> None:
    if as_json:
        output.print_json([e.to_dict() for e in found])
        return
    if json_lines:
        for e in found:
            output.print_json_line(e.to_dict())
        return
    if not found:
        output.warn("no embeddings match")
        return
    from rich.table import Table

    esc = output.escape
    table = Table(show_header=True, header_style="bold", box=None)
    cols = ["name", "family", "slots", "vectors", "format"] + (["tags"] if any(e.tags for e in found) else []) + ["path"]
    for col in cols:
        # everything but the path keeps to one line; the path folds when the terminal is narrow
        table.add_column(col, justify="right" if col == "vectors" else "left", no_wrap=col != "path", overflow="fold")
    for e in found:
        cells = {
            "name": esc(e.name),
            "family": esc(e.family),
            "slots": esc(" ".join(f"{s.slot}:{s.vectors}x{s.width}" for s in e.slots)),
            "vectors": str(e.num_vectors),
            "format": esc(e.format),
            "tags": esc(",".join(e.tags)),
            "path": esc(e.path + (f" [{e.member}]" if e.member else "")),
        }
        table.add_row(*(cells[c] for c in cols))
    output.console().print(table)
    if not output.MODE.quiet:
        output.info(f"[dim]{len(found)} embedding{'' if len(found) == 1 else 's'}[/]")


def _show_entry(e) -> None:
    from rich.table import Table

    esc = output.escape
    table = Table(title=f"[bold]{esc(e.name)}[/]", title_justify="left", show_header=False, box=None)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = e.rows()
    for k, v in rows:
        table.add_row(esc(k), esc(v))
    output.console().print(table)


def _errors_table(errs, pictures: int) -> None:
    # Pictures are only counted: a folder of previews would otherwise bury the real errors.
    aside = f" (and {pictures} picture{'' if pictures == 1 else 's'} without an embedding, not errors)" if pictures else ""
    if not errs:
        output.info("no unreadable files" + aside)
        return
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("code")
    table.add_column("message", overflow="fold")
    for e in errs:
        table.add_row(output.escape(e.code), output.escape(e.message))
    output.console().print(table)
    output.info(f"[dim]{len(errs)} unreadable file{'' if len(errs) == 1 else 's'}{aside}[/]")


# -- dupes / conflicts / check ------------------------------------------------------------------


def _print_groups(groups, as_json: bool, none_text: str) -> None:
    if as_json:
        output.print_json([g.to_dict() for g in groups])
        return
    if not groups:
        output.info(none_text)
        return
    esc = output.escape
    for g in groups:
        where = f" [dim]({esc(', '.join(g.hosts))})[/]" if g.hosts else ""
        output.info(f"[bold]{esc(g.kind)}[/]{where} {esc(g.message)}")
        for e in g.entries:
            output.info(f"    {esc(e.name)}  [dim]{esc(e.path)}{esc(' [' + e.member + ']' if e.member else '')} ({esc(e.format)}, {esc(e.family)})[/]")


@cli.command("dupes")
@_db_option
@shared("Print JSON.")
@click.pass_context
def dupes_cmd(ctx, db, as_json) -> None:
    """Identical files, and the same vectors kept in different files or formats."""
    _print_groups(_open(ctx, db).dupes(), as_json, "no duplicates")


@cli.command("conflicts")
@click.option("--kind", type=click.Choice(["same-trigger", "case", "prefix", "stored-name", "family-mix"]), multiple=True, help="Only these kinds.")
@host_option
@_db_option
@shared("Print JSON.")
@click.pass_context
def conflicts_cmd(ctx, kind, host_names, db, as_json) -> None:
    """Trigger names that confuse hosts: one name in several files, names differing only by case,
    names in each other's way under a host's prompt matching, stored name ≠ file name, SD1 and
    SDXL under one name. Names are the ones each host triggers by (A1111 calls every
    learned_embeds.bin 'learned_embeds'); every host by default, each group naming its hosts."""
    hosts = parse_hosts(host_names)
    groups = [g for g in _open(ctx, db).conflicts(hosts or None) if not kind or g.kind in kind]
    _print_groups(groups, as_json, "no conflicts")


@cli.command("check")
@model_option(dest="target", required=True)
@click.option("--name", "names", multiple=True, help="Only these entries (name, path or hash); repeatable.")
@host_option
@_db_option
@shared("Print JSON.")
@click.pass_context
def check_cmd(ctx, target, names, host_names, db, as_json) -> None:
    """Which embeddings would load on a model, which would be skipped, and why; with --host, as
    that host loads them, with the word to type there. Exit status as verify's: 0 when all would
    load, 7 when any would be skipped."""
    from ..errors import ValidationFailed

    hosts = parse_hosts(host_names)
    lib = _open(ctx, db)
    results = lib.check(target, names or None, hosts=hosts or None)
    code = ValidationFailed.exit_code if any(not r.loads for r in results) else 0
    if as_json:
        output.print_json([r.to_dict() for r in results])
        raise SystemExit(code)
    esc = output.escape
    loads = [r for r in results if r.loads]
    for r in results:
        mark = "[green]load[/]" if r.loads else "[red]skip[/]"
        words = "  " + "  ".join(f"{esc(h)}: [bold]{esc(v.trigger)}[/]" for h, v in r.hosts.items() if v.loads and v.trigger) if r.hosts else ""
        output.info(f"{mark}  {esc(r.entry.name)}  [dim]{esc(r.entry.path)}[/]{words}")
        for f in r.findings:
            if f["severity"] != "info":
                colour = "red" if f["severity"] == "error" else "yellow"
                output.info(f"        [{colour}]{esc(f['severity'])}[/] [{colour}]\\[{esc(f['code'])}][/] {esc(f['message'])}")
    where = f" by {', '.join(hosts)}" if hosts else ""
    output.info(f"[bold]{len(loads)}[/] would load, [bold]{len(results) - len(loads)}[/] would be skipped on {esc(target)}{where}")
    unreadable = len(lib.errors()) if not names else 0
    if unreadable:
        output.warn(f"{unreadable} unreadable files were not checked (embkit library list --errors)")
    raise SystemExit(code)


# -- export / remove / tag ----------------------------------------------------------------------


@cli.command("export")
@click.option("--output", "-o", "out", type=click.Path(dir_okay=False, allow_dash=True), help="Write the manifest here (default or -: stdout).")
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
@_db_option
@shared("With -o FILE: print a JSON object (path, entries); the manifest itself is JSON.")
@click.pass_context
def export_cmd(ctx, out, overwrite, db, as_json) -> None:
    """The whole library as a JSON manifest."""
    manifest = _open(ctx, db).export()
    if out is None or out == "-":
        output.print_json(manifest)
        return
    from ..atomic import write_bytes

    write_bytes(out, (output.dumps(manifest) + "\n").encode("utf-8"), overwrite=overwrite)
    if as_json:
        output.print_json({"path": out, "entries": len(manifest["entries"])})
    elif not output.MODE.quiet:
        output.info(f"wrote {len(manifest['entries'])} entries to {output.escape(out)}")


@cli.command("remove")
@click.argument("keys", nargs=-1)
@click.option("--missing", is_flag=True, help="Also forget every file that is no longer on disk.")
@_db_option
@shared("Print a JSON object: how many files were forgotten.")
@click.pass_context
def remove_cmd(ctx, keys, missing, db, as_json) -> None:
    """Forget the files holding the entries KEYS name (files on disk are not touched)."""
    if not keys and not missing:
        raise click.UsageError("name something to remove, or pass --missing")
    n = _open(ctx, db).remove(*keys, missing=missing)
    if as_json:
        output.print_json({"forgot": n})
    elif not output.MODE.quiet:
        output.info(f"forgot {n} files")


@cli.command("tag")
@click.argument("key")
@click.argument("tags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove these tags instead of adding them.")
@_db_option
@shared("Print a JSON list: each entry's name, path and tags.")
@click.pass_context
def tag_cmd(ctx, key, tags, remove, db, as_json) -> None:
    """Add TAGS to (or --remove them from) the entries KEY names."""
    found = _open(ctx, db).tag(key, *tags, remove=remove)
    if as_json:
        output.print_json([{"name": e.name, "path": e.path, "member": e.member, "tags": list(e.tags)} for e in found])
        return
    for e in found:
        output.info(f"{output.escape(e.name)}: {output.escape(', '.join(e.tags) or '(no tags)')}")


cli.add_command(previews_cmd)
cli.add_command(gallery_cmd)

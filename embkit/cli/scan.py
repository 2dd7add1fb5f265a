"""``embkit scan PATH...``: every global each pickle names, and a verdict, without running anything."""

from __future__ import annotations

import click

from . import output
from .options import shared

#: Exit statuses: every file safe (or skipped as no embedding); some file unsafe (whatever else);
#: otherwise the walk rule (embkit.folder.walk_exit_code): the refusal's code, 1 when codes differ.
EXIT_SAFE, EXIT_UNSAFE, EXIT_UNKNOWN = 0, 5, 1


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False, allow_dash=True))
@shared("Print a JSON list (one object per file).", json_lines=True, summary=True)
def cli(paths: tuple[str, ...], as_json: bool, json_lines: bool, summary: bool) -> None:
    """Say, without executing anything, whether embkit would read each file and whether every other
    loader would see the same thing: safe (embkit's reader accepts it, nothing ambiguous), unsafe
    (a global off the allow-list anywhere, an allowed global misused, a container another parser
    reads differently, a size past a cap; the rules that fired are named), or unknown (refused for
    another reason). Every global each pickle refers to is listed.

    Folders are walked (regular files only, no link out of the folder): embkit's extensions, names
    that hold pickles (.pkl, .npy, .zip, ...) and any file that starts like a pickle or a zip; the
    others (pictures, text, sidecars) are listed as skipped, as are scanned files that are no
    embedding and hold nothing hostile. PATH '-' scans standard input. --summary prints the unsafe
    and unreadable files and the totals. Exit status: 0 when every file is safe or skipped; 5 when
    any is unsafe; otherwise the rule of every folder walk (docs/cli.md): the reader's error code
    (1 when several differ), 4 when nothing was found."""
    import sys

    from ..errors import EmbkitError
    from ..scan import SAFE, scan_bytes, scan_paths

    results: list[dict] = []
    codes: list[int] = []
    counts: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    found = 0
    for_each = scan_paths(p for p in paths if p != "-")
    if "-" in paths:
        from ..inputs import bytes_of
        from ..io import MAX_STREAM_BYTES

        for_each = _chain(lambda: [scan_bytes(bytes_of(sys.stdin.buffer, "<stdin>", MAX_STREAM_BYTES), "<stdin>")], for_each)
    while True:
        try:
            res = next(for_each)
        except StopIteration:
            break
        except EmbkitError as exc:  # unreadable file: report it and go on with the others
            entry = {"path": exc.path, "verdict": "unknown", "error": exc.to_dict()}
            found += 1
            codes.append(exc.exit_code)
            counts["unknown"] = counts.get("unknown", 0) + 1
            _emit(entry, results, as_json, json_lines)
            if not (as_json or json_lines):
                output.error(exc)
            continue
        entry = res.to_dict()
        if res.skipped is not None:
            skipped.append((res.path, res.skipped))
        else:
            found += 1
            counts[res.verdict] = counts.get(res.verdict, 0) + 1
            if res.verdict != SAFE:
                codes.append(res.exit_code or EXIT_UNKNOWN)
        _emit(entry, results, as_json, json_lines)
        if not (as_json or json_lines) and res.skipped is None and (not summary or res.verdict != SAFE):
            _print(entry)
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) + (f", {len(skipped)} skipped" if skipped else "")
    output.end_walk(results, as_json=as_json, json_lines=json_lines, skipped_items=skipped, codes=codes, found=found,
                    nothing="no files to scan", tally=tally)


def _chain(first, rest):
    yield from first()  # inside the generator: an error reading stdin is reported like any file's
    yield from rest


def _emit(entry: dict, results: list[dict], as_json: bool, json_lines: bool) -> None:
    if json_lines:
        output.print_json_line(entry)
    elif as_json:
        results.append(entry)


_STYLE = {"safe": "green", "unsafe": "bold red", "unknown": "yellow"}


def _print(entry: dict) -> None:
    esc = output.escape
    style = _STYLE[entry["verdict"]]
    rules = f"  [red]{esc(', '.join(entry['rules']))}[/]" if entry.get("rules") else ""
    output.info(f"[{style}]{entry['verdict']:7}[/] {esc(entry['path'])}  [dim]{esc(entry['container'])}[/]{rules}")
    if "error" in entry:
        return
    refused = set(entry["refused"])
    for name in entry["globals"]:
        mark = "[red]✗ refused[/]" if name in refused else "[green]✓[/]"
        output.info(f"    {mark} {esc(name)}")
    for reason in entry["reasons"]:
        output.info(f"    [dim]{esc(reason)}[/]")

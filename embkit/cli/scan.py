"""``embkit scan PATH...``: every global each pickle names, and a verdict, without running anything."""

from __future__ import annotations

import click

from . import output

#: Exit statuses: every file safe; some file unsafe; otherwise some file unknown or unreadable.
EXIT_SAFE, EXIT_UNSAFE, EXIT_UNKNOWN = 0, 5, 1


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (one object per file).")
def cli(paths: tuple[str, ...], as_json: bool) -> None:
    """Say, without executing anything, whether embkit would read each file and whether every other
    loader would see the same thing: safe (embkit's reader accepts it, nothing ambiguous), unsafe
    (a global off the allow-list anywhere, an allowed global misused, a container another parser
    reads differently, a size past a cap; the rules that fired are named), or unknown (refused for
    another reason). Every global each pickle refers to is listed.

    Folders are walked (regular files only, no link out of the folder): embkit's extensions, names
    that hold pickles (.pkl, .npy, .zip, ...) and any file that starts like a pickle or a zip.
    Exits 0 when every file is safe, 5 when any is unsafe, 1 otherwise."""
    from ..errors import EmbkitError
    from ..scan import UNSAFE, SAFE, scan_paths

    results: list[dict] = []
    status = EXIT_SAFE
    for_each = scan_paths(paths)
    while True:
        try:
            res = next(for_each)
        except StopIteration:
            break
        except EmbkitError as exc:  # unreadable file: report it and go on with the others
            entry = {"path": exc.path, "verdict": "unknown", "error": exc.to_dict()}
            results.append(entry)
            status = status or EXIT_UNKNOWN
            if not as_json:
                output.error(exc)
            continue
        entry = res.to_dict()
        results.append(entry)
        if res.verdict == UNSAFE:
            status = EXIT_UNSAFE
        elif res.verdict != SAFE and status == EXIT_SAFE:
            status = EXIT_UNKNOWN
        if not as_json:
            _print(entry)
    if as_json:
        output.print_json(results)
    elif not results:
        output.warn("no files to scan")
    if status:
        raise SystemExit(status)


_STYLE = {"safe": "green", "unsafe": "bold red", "unknown": "yellow"}


def _print(entry: dict) -> None:
    esc = output.escape
    style = _STYLE[entry["verdict"]]
    rules = f"  [red]{esc(', '.join(entry['rules']))}[/]" if entry.get("rules") else ""
    output.info(f"[{style}]{entry['verdict']:7}[/] {esc(entry['path'])}  [dim]{esc(entry['container'])}[/]{rules}")
    refused = set(entry["refused"])
    for name in entry["globals"]:
        mark = "[red]✗ refused[/]" if name in refused else "[green]✓[/]"
        output.info(f"    {mark} {esc(name)}")
    for reason in entry["reasons"]:
        output.info(f"    [dim]{esc(reason)}[/]")

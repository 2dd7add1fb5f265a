"""All terminal output goes through here: rich for people, plain JSON for machines.

Commands print results to stdout and diagnostics to stderr. Nothing outside ``embkit.cli`` prints.

Every string that came from a file or a database (a trigger name, a file name, metadata, a refused
global's name, an error message quoting any of them) is passed through :func:`escape` before it
reaches a terminal: control characters, bidi overrides and other invisible characters are shown as
Python-style escapes (``\\x1b``, ``\\u202e``), so none can move the cursor, change the window title,
open a hyperlink or reorder the line, and rich markup in it is escaped, so ``[red]`` in a name is
printed as typed. JSON output keeps every value exact (:func:`print_json` writes those characters as
JSON ``\\u`` escapes, which a parser reads back as the same string).

The shared options (``--json``, ``--json-lines``, ``-q``, ``-v``, ``--summary``: see
:mod:`embkit.cli.options`) set :data:`MODE`; :func:`note`, :func:`warn` and :func:`progress` obey it.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any

_console = None
_err_console = None


@dataclass
class Mode:
    """How the running command prints: set once by :func:`embkit.cli.options.shared`."""

    json: bool = False
    json_lines: bool = False
    quiet: bool = False
    verbose: bool = False
    summary: bool = False

    @property
    def machine(self) -> bool:
        """Whether stdout is a machine-readable document (``--json`` or ``--json-lines``)."""
        return self.json or self.json_lines


MODE = Mode()


def console():
    """The stdout rich console (created on first use: importing rich costs time)."""
    global _console
    if _console is None:
        import os

        from rich.console import Console

        # Piped output (files, pagers, CI logs) has no width; rich would squeeze tables of paths
        # into 80 columns. Use a wide page unless the user set COLUMNS.
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
        class _Console(Console):
            def on_broken_pipe(self) -> None:  # `embkit … | head`: as main() treats it
                self.quiet = True
                broken_pipe_exit()

        _console = _Console(highlight=False, soft_wrap=False, width=width)
    return _console


#: Exit status when the reader of stdout went away (``| head``): 128 + SIGPIPE, as the shell
#: reports a command that SIGPIPE ended; not 1, which some commands use for a result.
EXIT_BROKEN_PIPE = 141


def broken_pipe_exit() -> None:
    """Point stdout at /dev/null (so the interpreter's final flush cannot fail again) and exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(EXIT_BROKEN_PIPE)


def err_console():
    """The stderr rich console, for warnings and errors."""
    global _err_console
    if _err_console is None:
        from rich.console import Console

        # piped (a log, a script), a message stays on one line: hard wrapping at 80 columns split
        # paths in two, so grep could not find them
        _err_console = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())
    return _err_console


# -- neutralising strings from files ---------------------------------------------------------------

#: Unicode categories never shown raw: controls (ESC, CSI, BEL, DEL, the C1 range), format characters
#: (bidi overrides and isolates, zero-width joiners, tag characters), surrogates, private use,
#: unassigned code points, line and paragraph separators.
_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Characters worth a look: everything but printable ASCII. Most text from files is ASCII, which
#: :func:`clean` passes through without looking at each character.
_SUSPECT = re.compile(r"[^\x20-\x7e]")


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) in _INVISIBLE


def _shown(match: re.Match) -> str:
    ch = match.group()
    if not _invisible(ch):
        return ch
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def clean(text: Any) -> str:
    """``text`` (made a string) with every control, bidi and other invisible character shown as a
    Python-style escape (``\\x1b``, ``\\n``, ``\\u202e``, ``\\U000e0041``), so that printing it
    cannot act on the terminal. Printable text, any script, is kept as it is. No markup escaping:
    for plain-text output (``-`` progress labels, click messages); rich output uses :func:`escape`."""
    text = text if isinstance(text, str) else str(text)
    if text.isascii() and text.isprintable():
        return text
    return _SUSPECT.sub(_shown, text)


def escape(text: Any) -> str:
    """A string from a file or a database, made safe to print with rich: :func:`clean`, then rich
    markup escaped (``[bold]`` in a name is printed as typed). Every print site uses this for any
    value it did not write itself: names, paths, metadata, messages, table cells, titles."""
    from rich.markup import escape as _escape

    return _escape(clean(text))


def _json_escape(match: re.Match) -> str:
    ch = match.group()
    if not _invisible(ch):
        return ch
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes characters past the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


#: Outside JSON strings there is only ASCII; inside, json.dumps already wrote C0 controls as
#: ``\\u00XX``. What is left to write as escapes: DEL, C1 controls, bidi and other invisible
#: characters, lone surrogates (a file name that was not UTF-8), all non-ASCII.
_JSON_SUSPECT = re.compile(r"[^\x00-\x7e]")


def dumps(obj: Any, indent: int | None = 2) -> str:
    """JSON text for ``obj``, exact (a parser reads back the same values) and safe on a terminal:
    printable non-ASCII text stays as it is, invisible characters are ``\\u`` escapes."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False, default=_default,
                      separators=None if indent is not None else (",", ":"))
    return text if text.isascii() and "\x7f" not in text else _JSON_SUSPECT.sub(_json_escape, text).replace("\x7f", "\\u007f")


def print_json(obj: Any) -> None:
    """Machine-readable output: indented JSON on stdout, nothing else."""
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()


def print_json_line(obj: Any) -> None:
    """One JSON object on one line (``--json-lines``), flushed at once so a reader can stream."""
    sys.stdout.write(dumps(obj, indent=None) + "\n")
    sys.stdout.flush()


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- messages ----------------------------------------------------------------------------------------


def error(exc: BaseException) -> None:
    """Print an error on stderr as ``error[code]: message``."""
    code = getattr(exc, "code", "error")
    err_console().print(f"[bold red]error[/][red]\\[{escape(code)}][/]: {escape(str(exc))}")


def error_line(path: str, err: dict) -> None:
    """Print a per-file error entry (``{"code", "message"}``) on stderr."""
    err_console().print(f"[bold red]error[/][red]\\[{escape(err['code'])}][/]: {escape(err['message'])}")


def warn(message: str) -> None:
    """Print a warning on stderr (the message is escaped; not under ``-q``)."""
    if MODE.quiet:
        return
    err_console().print(f"[yellow]warning[/]: {escape(message)}")


def deprecated(old: str, new: str) -> None:
    """Say on stderr that an option spelling is deprecated (even under ``-q``: it will stop working)."""
    err_console().print(f"[yellow]deprecated[/]: {escape(old)} is now {escape(new)}; the old spelling goes in the next release")


def note(message: str) -> None:
    """A side remark on stderr (``message`` is rich markup: escape what came from files); not
    under ``-q`` or a machine-readable mode."""
    if MODE.quiet:
        return
    err_console().print(message)


def info(message: str) -> None:
    """Print a line on stdout (rich markup allowed: escape what came from files)."""
    console().print(message)


def detail(message: str) -> None:
    """A line on stdout only with ``-v`` (rich markup allowed)."""
    if MODE.verbose and not MODE.quiet:
        console().print(message)


def show_progress() -> bool:
    """Whether a progress bar may be drawn: stderr is a terminal, not ``-q``."""
    return not MODE.quiet and err_console().is_terminal


def progress():
    """A transient rich progress bar on stderr, or ``None`` when :func:`show_progress` says no.
    Each task's description is its label: pass it through :func:`escape` when it holds anything
    from a file (``bar.add_task(escape(name), total=n)``); the column never formats it further."""
    if not show_progress():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console(), transient=True)


def skipped(items: list[tuple[str, str]]) -> None:
    """Files of a walked folder skipped as no embedding (``(path, reason)``): each on its own line
    with ``-v`` (or when there are a few), else one line counting them by kind; nothing under ``-q``."""
    if MODE.quiet or not items:
        return
    con = console()
    if MODE.verbose or len(items) <= 3:
        for path, reason in items:
            con.print(f"[dim]skipped {escape(path)}: {escape(reason)}[/]")
        return
    kinds: dict[str, int] = {}
    for _path, reason in items:
        kind = reason.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    what = ", ".join(f"{escape(k)}: {n}" for k, n in kinds.items())
    con.print(f"[dim]skipped {len(items)} files that are no embedding ({what}); -v lists them[/]")


def end_walk(results: Any, *, as_json: bool, json_lines: bool, skipped_items: list[tuple[str, str]], codes: list[int], found: int,
             nothing: str, tally: str | None = None) -> None:
    """The end of a command that walked folders: the JSON document (``--json``), or the skipped
    files, the warning ``nothing`` when no file was found and the ``tally`` line (not under
    ``-q``); then the exit status by the walk rule (:func:`embkit.folder.walk_exit_code`)."""
    from ..folder import walk_exit_code

    if as_json:
        print_json(results)
    elif not json_lines:
        skipped(skipped_items)
        if not found:
            warn(nothing)
        elif tally and not MODE.quiet:
            info(tally)
    code = walk_exit_code(codes, found)
    if code:
        raise SystemExit(code)


def print_table(columns: tuple[str, ...], rows: Any) -> None:
    """One table of results on stdout: bold ``columns`` over ``rows`` of cells already escaped
    (:func:`escape`; rich markup of embkit's own, such as a status colour, stays markup)."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console().print(table)

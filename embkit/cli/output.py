"""All terminal output goes through here: rich for people, plain JSON for machines.

Commands print results to stdout and diagnostics to stderr. Nothing outside ``embkit.cli`` prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_console = None
_err_console = None


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


def print_json(obj: Any) -> None:
    """Machine-readable output: indented JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_default) + "\n")
    sys.stdout.flush()


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def error(exc: BaseException) -> None:
    """Print an error on stderr as ``error[code]: message``."""
    code = getattr(exc, "code", "error")
    err_console().print(f"[bold red]error[/][red]\\[{code}][/]: {escape(str(exc))}")


def error_line(path: str, err: dict) -> None:
    """Print a per-file error entry (``{"code", "message"}``) on stderr."""
    err_console().print(f"[bold red]error[/][red]\\[{err['code']}][/]: {escape(err['message'])}")


def warn(message: str) -> None:
    """Print a warning on stderr."""
    err_console().print(f"[yellow]warning[/]: {escape(message)}")


def info(message: str) -> None:
    """Print a line on stdout (rich markup allowed)."""
    console().print(message)


def escape(text: str) -> str:
    """Escape rich markup in user-provided text (file names, trigger words)."""
    from rich.markup import escape as _escape

    return _escape(text)

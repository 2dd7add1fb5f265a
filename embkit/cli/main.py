"""``embkit`` entry point: a click group whose commands are imported only when run.

Each command lives in its own module ``embkit.cli.<module>`` exposing a click command named ``cli``.
Importing them lazily keeps ``embkit inspect`` fast (no diffusers/torch, no unused modules).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from ..version import __version__
from ..errors import EmbkitError

#: The name this project has on the package index (``pip install embkit-ti``); the import package
#: and the command are ``embkit``. ``embkit --version`` says both, and where the package lies.
DISTRIBUTION = "embkit-ti"

#: command name → module under embkit.cli. A module that is missing is simply not offered.
COMMANDS: dict[str, str] = {
    "inspect": "inspect_cmd",
    "formats": "formats_cmd",
    "convert": "convert",
    "verify": "verify",
    "merge": "merge",
    "edit": "edit",
    "library": "library",
    "scan": "scan",
    "pull": "pull",
    "push": "push",
    "previews": "previews",
    "ingest": "ingest",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, mod in COMMANDS.items() if importlib.util.find_spec(f"embkit.cli.{mod}") is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        mod = COMMANDS.get(name)
        if mod is None:
            return None
        try:
            module = importlib.import_module(f"embkit.cli.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name == f"embkit.cli.{mod}":
                return None
            raise
        return module.cli


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="embkit",
                      message=f"%(prog)s %(version)s ({DISTRIBUTION}, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})")
def cli() -> None:
    """Read, inspect, validate, convert, merge and test textual-inversion embeddings.

    Every command takes --json, -q/--quiet and -v/--verbose; options mean the same thing in every
    command (docs/cli.md lists them, and the exit status of folder walks). Shell completion:
    eval "$(_EMBKIT_COMPLETE=bash_source embkit)" (zsh_source, fish_source)."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; an :class:`EmbkitError` that escapes a command becomes its exit code."""
    try:
        cli.main(args=argv, prog_name="embkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # click's form of Ctrl-C
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EmbkitError as exc:
        from . import output

        output.error(exc)
        doc = {"ok": False, "error": exc.to_dict(), "exit_code": exc.exit_code}
        # a script reading --json (or --json-lines) gets a document for a failure too, not an empty stdout
        if output.MODE.json_lines:
            output.print_json_line(doc)
        elif output.MODE.json or "--json" in (sys.argv[1:] if argv is None else argv):
            output.print_json(doc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        from .output import broken_pipe_exit

        broken_pipe_exit()

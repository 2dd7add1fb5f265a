"""The ``--db`` option every ``embkit library`` subcommand takes, and opening the library it names."""

from __future__ import annotations

import click

DB_HELP = "Library database file (default: $EMBKIT_LIBRARY, else the user data folder)."


def db_option(f):
    """Add ``--db`` to a subcommand."""
    return click.option("--db", "db", type=click.Path(dir_okay=False), default=None, help=DB_HELP)(f)


def open_library(ctx: click.Context, db: str | None):
    """The :class:`~embkit.library.Library` named by the subcommand's ``--db``, else the group's,
    else the default; closed when the command ends."""
    from ..library import Library

    path = db or (ctx.obj or {}).get("db")
    lib = Library(path)
    ctx.call_on_close(lib.close)
    return lib

"""Write the CLI reference (docs/cli.md) from the commands' own help, so it cannot drift.

    python -m embkit.cli.reference > docs/cli.md
"""

from __future__ import annotations

import click

from .main import cli


def _section(name: str, cmd: click.Command, parent: click.Context, level: int) -> list[str]:
    ctx = click.Context(cmd, info_name=name, parent=parent, terminal_width=100, max_content_width=100)
    lines = [f"{'#' * level} `{ctx.command_path}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""]
    if isinstance(cmd, click.Group):
        for sub in cmd.list_commands(ctx):
            lines += _section(sub, cmd.get_command(ctx, sub), ctx, level + 1)
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    # the group's context_settings (-h as well as --help), as a real run applies them: click
    # caches each command's help option, so rendering without them differed after an in-process run
    root = click.Context(cli, info_name="embkit", terminal_width=100, max_content_width=100, **cli.context_settings)
    out = [
        "# CLI reference",
        "",
        "Generated from the commands' own `--help` by `python -m embkit.cli.reference > docs/cli.md`;",
        "`tests/test_docs.py` fails when it is out of date. Exit statuses: [errors.md](errors.md).",
        "",
        "```text",
        cli.get_help(root).rstrip(),
        "```",
        "",
    ]
    for name in cli.list_commands(root):
        out += _section(name, cli.get_command(root, name), root, 2)
    return "\n".join(out)


if __name__ == "__main__":
    print(render())

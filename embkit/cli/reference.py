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
        *_conventions(),
    ]
    for name in cli.list_commands(root):
        out += _section(name, cli.get_command(root, name), root, 2)
    return "\n".join(out)


def _conventions() -> list[str]:
    """The option vocabulary, the folder rule and the exit status of walks (embkit.cli.options,
    embkit.folder), written once for every command."""
    from ..folder import NOT_EMBEDDINGS
    from .options import SHARED, WALK_EXIT_RULE

    lines = [
        "## Options every command shares",
        "",
        "One flag means one thing in every command that has it (`tests/test_cli_vocabulary.py` checks every",
        "command's `--help`). Old spellings keep working for one release and say so on stderr: `push -m`",
        "(now `--message`), `merge`/`edit --format` (now `--to`), `convert`/`merge`/`edit --name` (now",
        "`--rename`), `library list`/`search --format` (now `--layout`), `previews`/`ingest --out` (now `--output`).",
        "",
        "| option | meaning |",
        "| --- | --- |",
        *(f"| `{flag}` | {meaning.replace('|', chr(92) + '|')} |" for flag, meaning in SHARED),
        "",
        "## What a folder holds",
        "",
        "Every command that walks folders (`inspect`, `verify`, `convert`, `scan`, `library scan`, `pull`, `previews`, `ingest`)",
        "sorts each file the same way (`embkit/folder.py`): an embedding is **read**; a known non-embedding",
        "is **skipped** with the reason and never counted as a failure (a preview picture, a sidecar, a",
        "picture that holds no embedding card, a text file, a model checkpoint, a file holding model weights",
        "or an XTI layout, any other kind of file embkit does not read); a file that looks like an embedding",
        "but cannot be read is an **error**. Hidden names and the second file of an SDXL pair are not",
        "listed. A path named directly is always read, never skipped. Text output counts the skipped files",
        "(`-v` lists each); `--json` lists them as `{\"path\", \"skipped\": reason}`. `scan` also opens any",
        "file that starts like a pickle or a zip, whatever its name. `ingest` lists them as `ignored` in its",
        "`--json` summary, and its manifest keeps a row for each file of embkit's extensions (status `skipped`",
        "when it was read and is no embedding); a path its manifest of paths lists counts as named. Kinds known",
        "by extension:",
        "",
        *(f"- {kind}: {', '.join(exts)}" for kind, exts in NOT_EMBEDDINGS),
        "",
        "## Exit status of folder walks",
        "",
        "Every walking command exits by one rule (`embkit.folder.walk_exit_code`):",
        "",
        *(f"- {rule}" for rule in WALK_EXIT_RULE),
        "",
        "## Shell completion",
        "",
        "Click's completion works for every command and option: add",
        "`eval \"$(_EMBKIT_COMPLETE=bash_source embkit)\"` to `~/.bashrc` (`zsh_source` in `~/.zshrc`;",
        "for fish, `_EMBKIT_COMPLETE=fish_source embkit > ~/.config/fish/completions/embkit.fish`).",
        "",
    ]
    return lines


if __name__ == "__main__":
    print(render())

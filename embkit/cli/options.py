"""The option vocabulary every command shares, defined once.

* :func:`shared`: ``--json`` on every command, ``-q/--quiet`` and ``-v/--verbose`` on every command,
  ``--json-lines`` and ``--summary`` where a command walks folders; it sets
  :data:`embkit.cli.output.MODE` before the command runs.
* :func:`model_option` (``-m/--model``: a family, a diffusers folder, a single-file checkpoint or a
  Hub id), :func:`to_option` (``--to``: the output layout), :func:`format_option` (``--format``:
  force the input layout), :class:`Dtype` (one parser for ``fp16``/``float16``/``half`` …),
  :func:`rename_option` (``--rename``: a new trigger; ``--name`` is a filter), and the write-safety
  flags (:func:`allow_loss_option`, :func:`in_place_option`).
* :func:`renamed`: an old spelling kept for one release, hidden from ``--help``, that says on stderr
  that it is deprecated.

:data:`SHARED` is the table ``docs/cli.md`` prints (``python -m embkit.cli.reference``), and
``tests/test_cli_vocabulary.py`` checks every command's ``--help`` against it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from . import output

#: (flag, meaning) of every option that means the same thing in every command that has it.
SHARED: tuple[tuple[str, str], ...] = (
    ("--json", "every command: one JSON document on stdout (an error too: {\"ok\": false, \"error\": …})"),
    ("--json-lines", "inspect, verify, scan, library list: one JSON object per file, one per line, printed as each is done"),
    ("-q, --quiet", "every command: no progress bars, notes, warnings or summary lines; errors and results only"),
    ("-v, --verbose", "every command: more detail (every skipped file with its reason)"),
    ("--summary", "inspect, verify, scan, convert, previews: the totals and the problems, not every table (inspect: one line per file)"),
    ("-m, --model", "the target model: a family (sd1, sd2, sdxl, sd3, flux), a diffusers folder, a single-file checkpoint or a Hub id"),
    ("--via", "a model as --model names one (edit --port sdxl: nearest-token transfer)"),
    ("--to", "the output layout (a1111, a1111-image, kohya, multi, diffusers, concept-folder)"),
    ("--format", "force the input layout instead of detecting it (never the output: that is --to)"),
    ("--rename", "a new trigger name for what is written (--name is a filter: library list --name '*neg*')"),
    ("--dtype", "fp32, fp16, bf16, fp64; also float32, float16, half, bfloat16, float64"),
    ("-o, --output", "where to write; '-' is standard output for one file or a report"),
    ("-", "as a PATH: read one file from standard input"),
    ("--overwrite", "replace an existing output (never an input: that is --in-place)"),
    ("--in-place", "convert, edit, merge: replace the input named as the output, atomically, once the new file is complete"),
    ("--allow-loss", "convert, edit, merge: write even when the output layout drops vectors (a slot, OneTrainer output vectors); refused by default, exit 8"),
    ("--strict", "fail on any loss or warning, precision and metadata included (edit: a result verify would reject)"),
    ("--dry-run", "say what would be done; write nothing"),
    ("--db", "library: the database file (default $EMBKIT_LIBRARY, else the user data folder)"),
    ("--host", "answer as this host loads files (a1111, forge, comfyui, invokeai, diffusers, sdnext, embkit, any case; repeatable, or all; previews: one host, whose trigger the prompt holds)"),
)

#: The exit status of every command that walks folders (embkit.folder.walk_exit_code), for the docs.
WALK_EXIT_RULE = (
    "0 when every file was read (and passed the command's check); files skipped as no embedding do not count",
    "5 when any file is unsafe, whatever else failed",
    "the failures' exit code when they share one (3 a damaged file, 7 a validation failure, 8 a loss refused, …)",
    "1 when failures have different codes",
    "4 when no embedding was found at all",
)


def _mode_setter(f: Callable, passes: tuple[str, ...]) -> Callable:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        output.MODE.quiet = bool(kwargs.pop("quiet", False))
        output.MODE.verbose = bool(kwargs.pop("verbose", False))
        output.MODE.json = bool(kwargs.get("as_json", False))
        output.MODE.json_lines = bool(kwargs.get("json_lines", False))
        output.MODE.summary = bool(kwargs.get("summary", False))
        if output.MODE.json and output.MODE.json_lines:
            raise click.UsageError("--json and --json-lines are two forms of one report; give one")
        for key in ("as_json", "json_lines", "summary"):
            if key in kwargs and key not in passes:
                kwargs.pop(key)
        return f(*args, **kwargs)

    return wrapper


def shared(json_help: str = "Print JSON instead of text.", *, json_lines: bool = False, summary: bool | str = False) -> Callable:
    """Add the options every command has (``--json``, ``-q/--quiet``, ``-v/--verbose``) and, where
    asked, ``--json-lines`` and ``--summary`` (a string: its help). The command receives ``as_json``
    (and ``json_lines``, ``summary`` when added); quiet and verbose go to :data:`embkit.cli.output.MODE`."""

    def deco(f: Callable) -> Callable:
        passes = ("as_json",) + (("json_lines",) if json_lines else ()) + (("summary",) if summary else ())
        wrapper = _mode_setter(f, passes)
        opts = [click.option("--json", "as_json", is_flag=True, help=json_help)]
        if json_lines:
            opts.append(click.option("--json-lines", "json_lines", is_flag=True,
                                     help="Print one JSON object per file, one per line, as each is done (for thousands of files)."))
        if summary:
            text = summary if isinstance(summary, str) else "Print the totals and the problems only, not every file."
            opts.append(click.option("--summary", "summary", is_flag=True, help=text))
        opts.append(click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress bars, notes, warnings or summary lines."))
        opts.append(click.option("-v", "--verbose", "verbose", is_flag=True, help="More detail (every skipped file with its reason)."))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        return wrapper

    return deco


def renamed(old: str, new: str, dest: str, **option_kw: Any) -> Callable:
    """Keep the spelling ``old`` of the option ``new`` (parameter ``dest``) working for one release:
    a hidden option that fills ``dest`` when ``new`` was not given, with a deprecation note on stderr."""
    hidden = "_old_" + dest + "_" + old.lstrip("-").replace("-", "_")

    def deco(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(hidden, None)
            if value not in (None, False, ()):
                output.deprecated(old, new)
                current = kwargs.get(dest)
                if current in (None, False, ()):
                    kwargs[dest] = value
                elif current != value:
                    raise click.UsageError(f"{old} (deprecated) and {new} say different things; give {new}")
            return f(*args, **kwargs)

        return click.option(old, hidden, hidden=True, **option_kw)(wrapper)

    return deco


class Dtype(click.ParamType):
    """One dtype parser for every command: ``fp32``/``float32``/``f32``, ``fp16``/``float16``/
    ``f16``/``half``, ``bf16``/``bfloat16``, ``fp64``/``float64`` (any case) → the numpy-style name
    (``float16``). ``allowed`` narrows the result; ``extra`` adds words passed through (``auto``)."""

    name = "dtype"

    def __init__(self, allowed: tuple[str, ...] | None = None, extra: tuple[str, ...] = ()):
        self.allowed, self.extra = allowed, extra

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:  # click 8.1 passes no ctx
        short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}
        names = [short[a] for a in (self.allowed or tuple(short))]
        return "[" + "|".join((*self.extra, *names)) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from ..formats.writer_base import dtype_name

        text = str(value).strip().lower()
        if text in self.extra:
            return text
        try:
            name = dtype_name(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.allowed is not None and name not in self.allowed:
            self.fail(f"{value!r} is not one of {', '.join(self.allowed)}", param, ctx)
        return name


MODEL_HELP = ("Target model: a family (sd1, sd2, sdxl, sd3, flux), a diffusers folder, a single-file checkpoint "
              "(.safetensors or .ckpt) or a Hub repo id (org/name).")


def model_option(help: str = MODEL_HELP, dest: str = "model", **kw: Any) -> Callable:
    """``-m/--model``: the target, everywhere."""
    return click.option("-m", "--model", dest, help=help, **kw)


def to_option(help: str = "Output layout (default: from the output's extension).") -> Callable:
    """``--to``: the output layout, everywhere (choices from the formats table)."""
    from ..formats import writable_ids

    return click.option("--to", "to", type=click.Choice(writable_ids()), help=help)


def format_option(help: str = "Force the input layout instead of detecting it.") -> Callable:
    """``--format``: force the input layout (never the output's: that is ``--to``)."""
    from ..formats import FORMAT_IDS

    return click.option("--format", "format_", type=click.Choice(FORMAT_IDS), help=help)


def rename_option(help: str = "New trigger name for what is written.") -> Callable:
    """``--rename``: a new trigger name (``--name`` is kept for filters)."""
    return click.option("--rename", "rename", help=help)


def allow_loss_option(f: Callable) -> Callable:
    """``--allow-loss``: write even when vectors would be dropped (refused by default, exit 8)."""
    return click.option("--allow-loss", is_flag=True,
                        help="Write even when the output layout drops vectors (a slot, output vectors); refused by default (exit 8).")(f)


def in_place_option(f: Callable) -> Callable:
    """``--in-place``: the input named as the output is replaced (atomically, once complete)."""
    return click.option("--in-place", is_flag=True,
                        help="Allow -o to name the input itself: it is replaced atomically once the new file is complete.")(f)


def result_options(*, rename_help: str, overwrite_help: str, strict_help: str, json_help: str) -> Callable:
    """The options of a command that writes one result file (``merge``, ``edit``), in the order
    ``--help`` lists them: --rename (old --name), --to (old --format), --overwrite, --in-place,
    --strict, --allow-loss, then :func:`shared`."""
    from ..formats import writable_ids

    stack = [
        rename_option(rename_help),
        renamed("--name", "--rename", "rename"),
        to_option("Output layout (default: from the extension)."),
        renamed("--format", "--to", "to", type=click.Choice(writable_ids())),
        click.option("--overwrite", is_flag=True, help=overwrite_help),
        in_place_option,
        click.option("--strict", is_flag=True, help=strict_help),
        allow_loss_option,
        shared(json_help),
    ]

    def deco(f: Callable) -> Callable:
        for option in reversed(stack):  # decorators listed top down apply bottom up
            f = option(f)
        return f

    return deco


__all__ = ["SHARED", "result_options", "WALK_EXIT_RULE", "shared", "renamed", "Dtype", "model_option", "to_option", "format_option", "rename_option",
           "allow_loss_option", "in_place_option", "MODEL_HELP"]

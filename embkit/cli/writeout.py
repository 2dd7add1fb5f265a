"""Reading one input and writing one result, shared by ``merge``, ``edit`` and ``convert -``:
``FILE``, ``FILE::MEMBER`` or ``-`` (standard input) in; a file, ``-`` (standard output) or the input
itself (``--in-place``) out, with the write-safety rules of every command (no input overwritten, no
vectors dropped without ``--allow-loss``, no folder written for a name without an extension)."""

from __future__ import annotations

import os
import sys

import click

from . import output

MEMBER_SEP = "::"
STDIN_NAME = "<stdin>"


def read_one(spec: str):
    """Read ``FILE``, ``FILE::MEMBER`` (one embedding of a file that holds several) or ``-``
    (standard input)."""
    from ..errors import EmbkitError
    from ..io import read, read_all

    if spec == "-":
        embs = read_all(sys.stdin.buffer, name=STDIN_NAME)
    elif MEMBER_SEP in spec and not os.path.exists(spec):
        path, member = spec.rsplit(MEMBER_SEP, 1)
        return read(path, member=member)
    else:
        embs = read_all(spec)
    if len(embs) > 1:
        # the library's message names member= and read_all(); on the command line it is FILE::MEMBER
        names = [e.source.member or e.name for e in embs]
        raise EmbkitError(
            f"holds {len(embs)} embeddings ({', '.join(names)}); pick one as FILE{MEMBER_SEP}MEMBER, e.g. {spec}{MEMBER_SEP}{names[0]}",
            path=spec,
        )
    return embs[0]


def check_output_name(out: str, format_: str | None) -> None:
    """``-o OUT`` without an extension would be a concept folder: only when asked for (``--to
    concept-folder``, a trailing ``/``, or an existing concept folder), never silently."""
    if out == "-" or format_ == "concept-folder" or out.endswith(("/", os.sep)) or os.path.isdir(out):
        return
    if not os.path.splitext(os.path.basename(out))[1]:
        raise click.UsageError(
            f"-o {out!r} has no extension: give it one (e.g. {out}.safetensors), or --to concept-folder "
            "(or a trailing '/') for a diffusers concept folder")


def input_paths(specs) -> list[str]:
    """The files behind input specs (``FILE::MEMBER`` → ``FILE``; ``-`` left out)."""
    out = []
    for spec in specs:
        if spec == "-":
            continue
        if MEMBER_SEP in spec and not os.path.exists(spec):
            spec = spec.rsplit(MEMBER_SEP, 1)[0]
        out.append(spec)
    return out


def write_result(emb, out: str, format_: str | None, *, overwrite: bool = False, strict: bool = False, as_json: bool = False,
                 notes: list[str] | None = None, allow_loss: bool = False, inputs=(), in_place: bool = False,
                 container: str | None = None, dtype: str | None = None, hide_codes: tuple[str, ...] = (), **options) -> list:
    """Write the result (to standard output for ``-``), print the losses as warnings and a one-line
    summary (or a JSON object); returns the losses. An output that is one of ``inputs`` is refused
    unless ``in_place`` (then it is replaced atomically); vectors dropped are refused unless
    ``allow_loss``; ``hide_codes``: losses the caller has already explained."""
    from ..walk import check_not_an_input
    from ..writing import write

    check_output_name(out, format_)
    if out == "-" and as_json:
        raise click.UsageError("-o - writes the file to standard output; --json would print there too")
    if out == "-":
        losses = _to_stdout(emb, format_, strict=strict, allow_loss=allow_loss, container=container, dtype=dtype, **options)
    else:
        replaces = check_not_an_input(out, input_paths(inputs), in_place=in_place)
        if in_place and not replaces:
            raise click.UsageError("--in-place: -o must name the input itself")
        losses = write(emb, out, format_, overwrite=overwrite or replaces, strict=strict, allow_loss=allow_loss,
                       container=container, dtype=dtype, **options)
    notes = list(notes or [])
    if as_json:
        output.print_json(
            {
                "path": out,
                "name": emb.name,
                "family": emb.family,
                "slots": {s: list(a.shape) for s, a in emb.vectors.items()},
                "dtypes": dict(emb.dtypes),
                "losses": [loss.to_dict() for loss in losses],
                "warnings": notes,
                "provenance": list(emb.metadata.get("provenance", [])),
            }
        )
        return losses
    for note in notes:
        output.warn(note)
    for loss in losses:
        if loss.code not in hide_codes:
            output.warn(str(loss))
    if output.MODE.quiet:
        return losses
    esc = output.escape
    slots = ", ".join(f"{s} {a.shape[0]}×{a.shape[1]} {emb.dtypes[s]}" for s, a in emb.vectors.items())
    steps = " → ".join(str(p.get("operation", "?")) for p in emb.metadata.get("provenance", []) if isinstance(p, dict))
    line = f"wrote [bold]{esc(out if out != '-' else 'standard output')}[/]  [bold]{esc(emb.name)}[/]  [green]{esc(emb.family)}[/]  {esc(slots)}  [dim]{esc(steps)}[/]"
    # the file itself went to stdout: the line goes to stderr
    (output.err_console() if out == "-" else output.console()).print(line)
    return losses


def _to_stdout(emb, format_: str | None, *, strict: bool, allow_loss: bool, container: str | None, dtype: str | None, **options) -> list:
    """Plan the one file and write its bytes to standard output."""
    from ..errors import WriteError
    from ..writing import check_losses, default_extension, plan

    if format_ is None:
        raise click.UsageError("-o - has no extension to go by: name the layout with --to")
    # the file has no name: plan it under the embedding's own, so no trigger is renamed
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in emb.name).strip(".") or "embedding"
    name = f"{stem}{default_extension(format_, container)}"
    if not os.path.splitext(name)[1]:
        raise WriteError(f"a {format_} is a folder: it cannot be written to standard output", path="-")
    planned = plan(emb, name, format_, container=container, dtype=dtype, **options)
    check_losses(planned.losses, "-", strict=strict, allow_loss=allow_loss, format=planned.format)
    if len(planned.outputs) != 1 or planned.outputs[0].data is None:
        raise WriteError("this result is several files: it cannot be written to standard output", path="-")
    if sys.stdout.isatty():
        raise WriteError("standard output is a terminal: redirect it to a file (> out.safetensors) or a pipe", path="-")
    data = planned.outputs[0].data
    sys.stdout.flush()
    for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:  # a file may be planned as chunks
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    return list(planned.losses)

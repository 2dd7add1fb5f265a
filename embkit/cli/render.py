"""``embkit verify PATH --render``: validate, render before/after, write a contact sheet, report numbers.

``embkit.cli.verify`` calls :func:`run` when ``--render`` is given and exits with what it returns:

* 0: rendered, and the embedding changed the conditioning or the images;
* 14 (:data:`embkit.diffusers.comparison.EXIT_NO_EFFECT`): rendered, and the embedding changed nothing;
* 7 (:class:`embkit.ValidationFailed`): an embedding does not fit the pipeline (nothing rendered),
  or ``--strict`` and there were warnings;
* 9 (:class:`embkit.WriteError`): the contact sheet cannot be written: its folder does not exist, or
  a file that is not a previous contact sheet is in the way and ``--overwrite`` was not given. This
  is checked before the pipeline is built, so it fails in a moment rather than after the render;
* any other :class:`embkit.EmbkitError`'s own exit code (unreadable file, bad model …).
"""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import EmbkitError, ValidationFailed
from . import output as out


def run(
    paths: Sequence[str],
    model: str | None = None,
    prompt: str | None = None,
    as_negative: bool = False,
    seeds: Sequence[int] = (0,),
    steps: int | None = None,
    device: str = "auto",
    output: str | None = None,
    json_out: bool = False,
    strict: bool = False,
    overwrite: bool = False,
) -> int:
    """Render ``paths``' embeddings with and without, print the numbers, write the sheet; the exit
    status (see the module docstring). ``overwrite`` lets the sheet replace a file at ``output``
    that is not a previous contact sheet."""
    sheet_path = sheet_path_for(paths, output)
    # transformers and diffusers log import-time notices (torchvision missing, fp32 modules) that
    # say nothing about the user's embedding; the CLI keeps its output to what was asked.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        return _run(list(paths), model, prompt, as_negative, tuple(seeds) or (0,), steps, device, sheet_path, json_out, strict, overwrite)
    except EmbkitError as exc:
        return _report(exc, json_out)


def sheet_path_for(paths: Sequence[str], output: str | None) -> str:
    """Where the sheet goes: ``output``, or ``<stem of the first path>.render.png`` here."""
    if output is not None:
        return output
    stem = os.path.splitext(os.path.basename(paths[0].rstrip("/\\")))[0] if paths else ""
    return f"{stem or 'embedding'}.render.png"


def preflight(paths: Sequence[str], output: str | None, overwrite: bool = False, json_out: bool = False) -> int:
    """0 when the sheet can be written, else the error's exit status (the error printed).
    ``embkit verify`` calls this before validating, so a bad ``-o`` is the first thing said."""
    from ..diffusers import sheet

    try:
        sheet.check_sheet_target(sheet_path_for(paths, output), overwrite)
    except EmbkitError as exc:
        return _report(exc, json_out)
    return 0


def _report(exc: EmbkitError, json_out: bool) -> int:
    if json_out:
        out.print_json({"ok": False, "error": exc.to_dict(), "exit_code": exc.exit_code})
    else:
        out.error(exc)
    return exc.exit_code


def _run(paths, model, prompt, as_negative, seeds, steps, device, sheet_path, json_out, strict, overwrite) -> int:
    from ..diffusers import render, sheet
    from ..model.spec import ModelSpec
    from ..check.validate import validate

    # before the pipeline and the render (seconds): a sheet that cannot be written fails now
    sheet.check_sheet_target(sheet_path, overwrite)
    embeddings = _read(paths)
    if not embeddings:
        raise EmbkitError("no embeddings given")
    if not json_out:
        out.err_console().print("[dim]building the pipeline (imports torch and diffusers)…[/]")
    pipe, description, _tiny = render.load_pipeline(model, embeddings, device)
    spec = ModelSpec.from_pipeline(pipe)
    reports = [validate(e, spec, loaded=embeddings) for e in embeddings]
    errors = [(r, f) for r in reports for f in r.errors]
    warnings = [f"{r.path or r.name}: {f.message}" for r in reports for f in r.warnings]
    if errors:
        if json_out:
            out.print_json({"ok": False, "model": description, "validation": [r.to_dict() for r in reports], "exit_code": ValidationFailed.exit_code})
        else:
            for report, finding in errors:
                out.error(ValidationFailed(finding.message, path=report.path))
            out.err_console().print("[red]not rendered[/]: fix the errors above first")
        return ValidationFailed.exit_code
    if strict and warnings:
        # --strict makes these errors: stop before the render, as errors do
        if json_out:
            out.print_json({"ok": False, "model": description, "validation": [r.to_dict() for r in reports], "warnings": warnings, "exit_code": ValidationFailed.exit_code})
        else:
            for warning in warnings:
                out.warn(warning)
            out.err_console().print("[red]not rendered[/]: warnings count as errors with --strict")
        return ValidationFailed.exit_code
    comparison = render.compare(pipe, embeddings, prompt=prompt, as_negative=as_negative, seeds=seeds, steps=steps, model=description)
    warnings += comparison.warnings
    sheet.save_sheet(comparison, sheet_path, overwrite=overwrite)
    if not comparison.changed:
        code = render.EXIT_NO_EFFECT
    elif strict and warnings:
        code = ValidationFailed.exit_code
    else:
        code = 0
    if json_out:
        out.print_json({"ok": code == 0, **comparison.to_dict(), "sheet": sheet_path, "warnings": warnings, "exit_code": code})
        return code
    _print(comparison, sheet_path, warnings)
    if code == render.EXIT_NO_EFFECT:
        out.error(render.NoEffectError(f"{', '.join(comparison.triggers)} changed neither the conditioning nor the images: the embedding appears to do nothing"))
    elif code:
        out.err_console().print("[red]failed[/]: warnings count as errors with --strict")
    return code


def _read(paths: Sequence[str]) -> list:
    """Every embedding in the paths; a plain folder is walked and its non-embedding files skipped
    (as ``embkit verify`` does)."""
    from ..errors import BrokenFileError, UnknownFormatError
    from ..io import read_all
    from ..formats.concept_folder import is_concept_folder
    from ..report import walk

    found = []
    for path in paths:
        if os.path.isdir(path) and not is_concept_folder(path):
            for inner in walk([path]):
                try:
                    found.extend(read_all(inner))
                except (UnknownFormatError, BrokenFileError):
                    continue
        else:
            found.extend(read_all(path))
    return found


def _print(comparison, sheet_path: str, warnings: list[str]) -> None:
    from rich.table import Table

    esc = out.escape
    out.info(f"rendered on {esc(comparison.model)} ({comparison.device}, {comparison.dtype}, {comparison.steps} steps)")
    table = Table(show_header=True)
    table.add_column("seed", justify="right")
    table.add_column("pixel difference (0–255)", justify="right")
    for r in comparison.renders:
        table.add_row(str(r.seed), f"{r.pixel_difference:.2f}")
    out.console().print(table)
    where = "negative" if comparison.as_negative else "positive"
    out.info(f"prompt: {esc(comparison.prompt)}" + (f"  |  negative: {esc(comparison.negative_prompt)}" if comparison.negative_prompt else ""))
    out.info(f"triggers ({where}): {esc(', '.join(comparison.triggers))}")
    out.info(f"conditioning cosine distance: {comparison.conditioning_distance:.6f}")
    out.info(f"time: {comparison.seconds:.2f} s ({comparison.seconds_per_image:.2f} s per image)")
    out.info(f"contact sheet: {esc(sheet_path)}")
    for w in warnings:
        out.warn(w)
    if comparison.changed:
        out.info("[green]the embedding changes the output[/]")

"""``embkit verify PATH --render``: validate, render before/after, write a contact sheet, report numbers.

``embkit.cli.verify`` takes the render options from :func:`render_options` and calls :func:`run`
when ``--render`` is given, exiting with what it returns:

* 0: rendered, and every embedding changed the conditioning or the images;
* 14 (:data:`embkit.diffusers.comparison.EXIT_NO_EFFECT`): rendered, and an embedding changed nothing;
* 7 (:class:`embkit.ValidationFailed`): an embedding does not fit the pipeline (nothing rendered),
  or ``--strict`` and there were warnings;
* 9 (:class:`embkit.WriteError`): a contact sheet cannot be written: its folder does not exist, or
  a file that is not a previous contact sheet is in the way and ``--overwrite`` was not given. This
  is checked before the pipeline is built, so it fails in a moment rather than after the render;
* 11 (:class:`embkit.MissingDependencyError`): torch or diffusers is not installed (the line to run is printed);
* any other :class:`embkit.EmbkitError`'s own exit code (unreadable file, bad model …).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Sequence

import click

from ..errors import EmbkitError, ValidationFailed
from . import output as out
from .options import Dtype

_SIZE = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*$")


def _size(_ctx: Any, _param: Any, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    m = _SIZE.match(value)
    if not m or int(m[1]) <= 0 or (m[2] and int(m[2]) <= 0):
        raise click.BadParameter("give a side (512) or WIDTHxHEIGHT (768x512)")
    return int(m[1]), int(m[2] or m[1])


def loader_options(flag: str | None = None) -> tuple[Any, ...]:
    """The options that say where and how the pipeline ``--model`` names is built: ``--device``,
    ``--dtype``, and for single-file checkpoints ``--prediction``, ``--tokenizer``, ``--host-dir``
    (:func:`embkit.diffusers.pipelines.load_pipeline`'s arguments). ``embkit verify`` has them with
    ``flag="--render"`` (their help says so), ``embkit previews`` without."""

    def say(when: str, text: str) -> str:
        if flag:
            return f"With {flag}{' and ' + when if when else ''}: {text}"
        return f"With {when}: {text}" if when else text[0].upper() + text[1:]

    return (
        click.option("--device", type=click.Choice(["auto", "cuda", "mps", "cpu"]), default="auto", show_default=True, help=say("", "where to render.")),
        click.option("--dtype", type=Dtype(allowed=("float32", "float16", "bfloat16"), extra=("auto",)), default="auto", show_default=True,
                     help=say("", "weights' precision (auto: float16 on CUDA and MPS, float32 on the CPU).")),
        click.option("--prediction", type=click.Choice(["v", "epsilon"]),
                     help=say("a single-file SD2 checkpoint", "its prediction type (default: the <checkpoint>.yaml beside it, else estimated; see docs).")),
        click.option("--tokenizer", "tokenizer", type=click.Path(), help=say("a single-file checkpoint", "a folder with CLIP's tokenizer files (vocab.json + merges.txt).")),
        click.option("--host-dir", "host_dirs", multiple=True, type=click.Path(),
                     help=say("a single-file checkpoint", "a ComfyUI, Forge or A1111 install to take CLIP's tokenizer from (repeatable).")),
    )


#: The ``--render`` options, in the order ``embkit verify --help`` lists them.
RENDER_OPTIONS = (
    click.option("--prompt", help="With --render: the prompt (default 'a photo'); each embedding's trigger is appended unless the prompt names it."),
    click.option("--negative", help="With --render: the negative prompt."),
    click.option("--as-negative", is_flag=True, help="With --render: put the embedding's trigger in the negative prompt."),
    click.option("--seed", "seeds", type=int, multiple=True, help="With --render: a seed (repeatable; default 0)."),
    click.option("--steps", type=click.IntRange(1), help="With --render: denoising steps (default per model: 4 tiny, 20 SD1/SD2, 25 SDXL)."),
    click.option("--size", callback=_size, help="With --render: image size, SIDE or WIDTHxHEIGHT (default per model: 64 tiny, 512 SD1, 768 SD2, 1024 SDXL)."),
    click.option("--width", type=click.IntRange(8), help="With --render: image width (overrides --size)."),
    click.option("--height", type=click.IntRange(8), help="With --render: image height (overrides --size)."),
    click.option("--guidance", type=click.FloatRange(0), help="With --render: CFG scale (default 7.5; 5 for SDXL)."),
    *loader_options("--render"),
    click.option("-o", "--output", "output_path", type=click.Path(),
                 help="With --render: the contact sheet PNG to write (default <file stem>.render.png; its folder must exist); with --sheet-per-file, the folder for the sheets. A previous contact sheet there is replaced."),
    click.option("--sheet-per-file", is_flag=True, help="With --render: one sheet per embedding file (<stem>.render.png) instead of one sheet with a row per embedding."),
    click.option("--overwrite", is_flag=True, help="With --render: replace a file at -o even if it is not a previous contact sheet."),
)


def render_options(command: Any) -> Any:
    """Add :data:`RENDER_OPTIONS` to a click command (``embkit verify``)."""
    for option in reversed(RENDER_OPTIONS):
        command = option(command)
    return command


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
    **options: Any,
) -> int:
    """Render ``paths``' embeddings with and without, print the numbers, write the sheet(s); the
    exit status (see the module docstring). ``options``: ``negative``, ``size`` (a side or
    ``(width, height)``), ``width``, ``height``, ``guidance``, ``dtype``, ``prediction``,
    ``tokenizer``, ``host_dirs``, ``sheet_per_file``."""
    # transformers and diffusers log import-time notices (torchvision missing, fp32 modules) that
    # say nothing about the user's embedding; the CLI keeps its output to what was asked.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        return _run(list(paths), model, prompt, as_negative, tuple(seeds) or (0,), steps, device, output, json_out, strict, overwrite, options)
    except EmbkitError as exc:
        return _report(exc, json_out)


def sheet_path_for(paths: Sequence[str], output: str | None) -> str:
    """Where the sheet goes: ``output``, or ``<stem of the first path>.render.png`` here."""
    if output is not None:
        return output
    stem = os.path.splitext(os.path.basename(paths[0].rstrip("/\\")))[0] if paths else ""
    return f"{stem or 'embedding'}.render.png"


def preflight(paths: Sequence[str], output: str | None, overwrite: bool = False, json_out: bool = False, sheet_per_file: bool = False) -> int:
    """0 when the sheet can be written (with ``sheet_per_file``: when the folder for them exists),
    else the error's exit status (the error printed). ``embkit verify`` calls this before
    validating, so a bad ``-o`` is the first thing said."""
    from ..diffusers import sheet

    try:
        if sheet_per_file:
            _sheet_folder(output)
        else:
            sheet.check_sheet_target(sheet_path_for(paths, output), overwrite)
    except EmbkitError as exc:
        return _report(exc, json_out)
    return 0


def _sheet_folder(output: str | None) -> str:
    from ..errors import WriteError

    folder = output or "."
    if not os.path.isdir(folder):
        raise WriteError("is not a folder: with --sheet-per-file, -o names the folder the sheets go in", path=folder)
    return folder


def _report(exc: EmbkitError, json_out: bool) -> int:
    if json_out:
        out.print_json({"ok": False, "error": exc.to_dict(), "exit_code": exc.exit_code})
    else:
        out.error(exc)
    return exc.exit_code


def _targets(embeddings: list, folder: str) -> dict[str, list]:
    """Sheet path → the embeddings on it, one sheet per source file (``<stem>.render.png``)."""
    groups: dict[str, list] = {}
    for emb in embeddings:
        groups.setdefault(emb.source.path if emb.source else emb.name, []).append(emb)
    targets: dict[str, list] = {}
    for source, embs in groups.items():
        stem = os.path.splitext(os.path.basename(source.rstrip("/\\")))[0] or "embedding"
        path, n = os.path.join(folder, f"{stem}.render.png"), 1
        while path in targets:  # two files of one name in different folders
            n += 1
            path = os.path.join(folder, f"{stem}-{n}.render.png")
        targets[path] = embs
    return targets


def _run(paths, model, prompt, as_negative, seeds, steps, device, output, json_out, strict, overwrite, options) -> int:
    from ..diffusers import sheet

    per_file = bool(options.get("sheet_per_file"))
    # before the pipeline and the render (seconds): a sheet that cannot be written fails now
    if per_file:
        folder = _sheet_folder(output)
    else:
        sheet.check_sheet_target(sheet_path_for(paths, output), overwrite)
    embeddings = _read(paths)
    if not embeddings:
        raise EmbkitError("no embeddings given")
    targets = _targets(embeddings, folder) if per_file else {sheet_path_for(paths, output): embeddings}
    for target in targets:
        sheet.check_sheet_target(target, overwrite)
    timings: dict[str, float] = {}
    if not json_out:
        out.err_console().print("[dim]loading torch and diffusers…[/]")
    clock = time.perf_counter()
    from ..diffusers import pipelines

    pipelines.require()
    timings["import"] = time.perf_counter() - clock
    clock = time.perf_counter()
    loaded = pipelines.load_pipeline(model, embeddings, device, options.get("dtype"), prediction=options.get("prediction"),
                                     tokenizer=options.get("tokenizer"), host_dirs=options.get("host_dirs") or ())
    timings["build"] = time.perf_counter() - clock
    code = _validate(loaded, embeddings, json_out, strict)
    if code:
        return code
    size = options.get("size")
    width, height = (size if isinstance(size, tuple) else (size, size)) if size else (None, None)
    clock = time.perf_counter()
    from ..diffusers import render

    with _progress(not json_out) as report:
        comparison = render.compare(loaded.pipe, embeddings, prompt=prompt, negative=options.get("negative"), as_negative=as_negative,
                                    seeds=seeds, steps=steps, width=options.get("width") or width, height=options.get("height") or height,
                                    guidance=options.get("guidance"), model=loaded.description, defaults=loaded.defaults,
                                    notes=loaded.notes, progress=report)
    timings["render"] = time.perf_counter() - clock
    clock = time.perf_counter()
    row_of = {id(e): row for e, row in zip(embeddings, comparison.rows)}  # one row per embedding, in order
    written = []
    for target, embs in targets.items():
        part = comparison if not per_file else comparison.subset([row_of[id(e)] for e in embs])
        written.append(sheet.save_sheet(part, target, overwrite=overwrite))
    timings["sheet"] = time.perf_counter() - clock
    warnings = list(comparison.warnings)
    if not comparison.changed:
        code = render.EXIT_NO_EFFECT
    elif strict and warnings:
        code = ValidationFailed.exit_code
    else:
        code = 0
    if json_out:
        sheets = {"sheet": written[0]} if not per_file else {"sheets": written}
        out.print_json({"ok": code == 0, **comparison.to_dict(), **sheets, "warnings": warnings,
                        "timings": {k: round(v, 3) for k, v in timings.items()}, "exit_code": code})
        return code
    _print(comparison, written, warnings, timings)
    if code == render.EXIT_NO_EFFECT:
        names = ", ".join(r.trigger for r in comparison.unchanged)
        out.error(render.NoEffectError(f"{names} changed neither the conditioning nor the images: the embedding appears to do nothing"))
    elif code:
        out.err_console().print("[red]failed[/]: warnings count as errors with --strict")
    return code


def _validate(loaded: Any, embeddings: list, json_out: bool, strict: bool) -> int:
    """Validate against the pipeline built; 7 (errors printed) when something does not fit."""
    from ..check.validate import validate
    from ..model.spec import ModelSpec

    spec = ModelSpec.from_pipeline(loaded.pipe)
    reports = [validate(e, spec, loaded=embeddings) for e in embeddings]
    errors = [(r, f) for r in reports for f in r.errors]
    warnings = [f"{r.path or r.name}: {f.message}" for r in reports for f in r.warnings]
    if not errors and not (strict and warnings):
        return 0
    if json_out:
        doc = {"ok": False, "model": loaded.description, "validation": [r.to_dict() for r in reports], "exit_code": ValidationFailed.exit_code}
        out.print_json({**doc, "warnings": warnings} if not errors else doc)
    elif errors:
        for report, finding in errors:
            out.error(ValidationFailed(finding.message, path=report.path))
        out.err_console().print("[red]not rendered[/]: fix the errors above first")
    else:  # --strict makes these errors: stop before the render, as errors do
        for warning in warnings:
            out.warn(warning)
        out.err_console().print("[red]not rendered[/]: warnings count as errors with --strict")
    return ValidationFailed.exit_code


class _progress:
    """A rich progress display on stderr (images, and steps of the current image) while rendering,
    when stderr is a terminal; otherwise nothing. Used as ``with _progress(on) as callback``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and out.show_progress()
        self.bar: Any = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=out.err_console(), transient=True)
        self.bar.start()
        images, steps = self.bar.add_task("images", total=None), self.bar.add_task("steps", total=None)

        def report(event: Any) -> None:
            self.bar.update(images, total=event.images, completed=event.image - (event.step < event.steps),
                            description=out.escape(f"image {event.image}/{event.images}: {event.label}"))
            self.bar.update(steps, total=event.steps, completed=event.step, description="steps")

        return report

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def _read(paths: Sequence[str]) -> list:
    """Every embedding in the paths; a plain folder is walked and its files that are no embedding
    skipped (the rule of every walk, :mod:`embkit.folder`, as ``embkit verify`` does)."""
    from ..errors import EmbkitError
    from ..formats.concept_folder import is_concept_folder
    from ..io import read_all
    from ..report import not_an_embedding, walk

    found = []
    for path in paths:
        if os.path.isdir(path) and not is_concept_folder(path):
            for inner in walk([path]):
                try:
                    found.extend(read_all(inner))
                except EmbkitError as exc:
                    if not not_an_embedding(inner, exc):
                        raise
        else:
            found.extend(read_all(path))
    return found


def _print(comparison: Any, sheets: list[str], warnings: list[str], timings: dict[str, float]) -> None:
    from rich.table import Table

    esc = out.escape
    c = comparison
    out.info(f"rendered on {esc(c.model)} ({esc(c.device)}, {esc(c.dtype)}; {c.width}×{c.height}, {c.steps} steps, CFG {c.guidance:g}, {esc(c.sampler)})")
    for note in c.notes:
        out.info(f"  [dim]{esc(note)}[/]")
    out.info(f"prompt: {esc(c.prompt)}" + (f"  |  negative: {esc(c.negative_prompt)}" if c.negative_prompt else "")
             + f"  |  trigger in the {'negative' if c.as_negative else 'positive'} prompt")
    table = Table(show_header=True)
    for column, justify in (("embedding", "left"), ("trigger", "left"), ("cosine distance", "right"),
                            *((f"pixel diff, seed {s}", "right") for s in c.seeds), ("changed", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in c.rows:
        table.add_row(esc(row.name), esc(row.trigger), f"{row.conditioning_distance:.6f}", *(f"{r.pixel_difference:.2f}" for r in row.renders),
                      "[green]yes[/]" if row.changed else "[red]no[/]")
    out.console().print(table)
    split = " · ".join(f"{k} {v:.2f} s" for k, v in timings.items())
    out.info(f"time: {split} ({c.seconds_per_image:.2f} s per image)")
    for path in sheets:
        out.info(f"contact sheet: {esc(path)}")
    for w in warnings:
        out.warn(w)
    if c.changed:
        out.info("[green]the embedding changes the output[/]" if len(c.rows) == 1 else "[green]every embedding changes the output[/]")


__all__ = ["run", "preflight", "render_options", "loader_options", "sheet_path_for", "RENDER_OPTIONS"]

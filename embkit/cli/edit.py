"""``embkit edit IN -o OUT``: select, trim, scale, normalise, rename, recast or port one embedding."""

from __future__ import annotations

import click

from . import output
from .options import (
    Dtype,
    result_options,
)
from .writeout import read_one, write_result


@click.command("edit")
@click.argument("source")
@click.option("-o", "--output", "out", type=click.Path(allow_dash=True),
              help="File to write (layout from the extension unless --to; '-': standard output, with --to). With --in-place: the input itself (the default).")
@click.option("--select", "selection", help="Keep these vectors: 0:4, -2:, 0,2,5 (Python-style, 0-based).")
@click.option("--reorder", help="New order of the vectors, e.g. 2,0,1.")
@click.option("--drop-zero", is_flag=True, help="Drop vectors that are all zero.")
@click.option("--pad-to", type=click.IntRange(1), help="Append zero vectors up to this count.")
@click.option("--port", "port_to", type=click.Choice(["sd1", "sdxl"]), help="Port to another family (sdxl → sd1 keeps CLIP-L).")
@click.option("--via", help="With --port sdxl: a model as --model names one (a diffusers folder, a single-file .safetensors checkpoint or a cached Hub id), for nearest-token transfer.")
@click.option("--scale", type=float, help="Multiply every vector by this factor.")
@click.option("--scale-slot", multiple=True, metavar="SLOT=FACTOR", help="Scale one slot only, e.g. clip_g=0.5 (repeatable).")
@click.option("--norm", type=float, help="Scale so the mean vector norm becomes this value.")
@click.option("--dtype", type=Dtype(), help="Store in this dtype.")
@click.option("--slot", help="Apply --select/--reorder/--drop-zero/--pad-to/--scale/--norm/--dtype to this slot only.")
@result_options(rename_help="New trigger name (default: for layouts triggered by their file name, OUT's name, as merge does).",
                overwrite_help="Replace OUT if it exists (never the input: that is --in-place).",
                strict_help="Fail (exit 8) on any loss, and (exit 7) on a result `embkit verify` would reject, instead of warning.", json_help="Print a JSON summary (path, slots, losses, provenance).")
def cli(source, out, selection, reorder, drop_zero, pad_to, port_to, via, scale, scale_slot, norm, dtype, slot, rename, to, overwrite,
        in_place, strict, allow_loss, as_json) -> None:
    """Edit one embedding and write the result to OUT, recording each step in its provenance.

    Steps run in this order: --select, --reorder, --drop-zero, --pad-to, --port, --scale,
    --scale-slot, --norm, --dtype, --rename. Every step acts on all input slots alike (an SDXL
    embedding's CLIP-L and CLIP-G rows stay paired) unless --slot names one; OneTrainer output
    vectors (<slot>_out) are left alone unless --slot names them. A file holding several embeddings
    is read as FILE::MEMBER, standard input as '-'. The input is never modified unless it is named
    as the output with --in-place; a result that drops vectors the edit did not ask to drop (the
    output layout cannot hold a slot) is refused unless --allow-loss, and a result `embkit verify`
    would reject (SDXL halves of different lengths) is warned about (refused with --strict).

    \b
    Examples:
      embkit edit EasyNegative.pt --select 0:4 -o EasyNegative4.safetensors
      embkit edit style.pt --port sdxl --via ./stable-diffusion-xl-base-1.0 -o style_xl.safetensors
      embkit edit style_xl.safetensors --scale-slot clip_g=0.5 --dtype fp16 -o style_xl16.safetensors
      embkit edit style.safetensors --select 0:2 --in-place
    """
    from ..edit import ops
    from ..edit.port import port, port_warning

    if out is None:
        if not in_place:
            raise click.UsageError("give -o OUT (or --in-place to replace the input)")
        out = source
    if via is not None and port_to != "sdxl":
        raise click.UsageError("--via is used with --port sdxl")
    factors = []
    for item in scale_slot:
        key, sep, value = item.partition("=")
        try:
            factors.append((key.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not SLOT=FACTOR (e.g. clip_g=0.5)", param_hint="--scale-slot")

    emb = read_one(source)
    steps = [
        (selection is not None, lambda e: ops.select(e, selection, slot=slot)),
        (reorder is not None, lambda e: ops.reorder(e, reorder, slot=slot)),
        (drop_zero, lambda e: ops.drop_zero(e, slot=slot)),
        (pad_to is not None, lambda e: ops.pad(e, pad_to, slot=slot)),
        (port_to is not None, lambda e: port(e, port_to, via=via)),
        (scale is not None, lambda e: ops.scale(e, scale, slot=slot)),
        *[(True, lambda e, k=k, f=f: ops.scale(e, f, slot=k)) for k, f in factors],
        (norm is not None, lambda e: ops.normalize(e, norm, slot=slot)),
        (dtype is not None, lambda e: ops.cast(e, dtype, slot=slot)),
        (rename is not None, lambda e: ops.rename(e, rename)),
    ]
    chosen = [fn for wanted, fn in steps if wanted]
    if not chosen:
        raise click.UsageError("nothing to do: give at least one edit (see embkit edit --help); `embkit convert` only converts")
    notes = []
    for fn in chosen:
        emb = fn(emb)
        warning = port_warning(emb) if fn is steps[4][1] else None
        if warning:
            notes.append(warning)
    for key, _factor in factors:
        values = emb.vectors.get(key)
        if values is not None and not values.any():
            notes.append(f"{key} is all zeros: --scale-slot {key}=… changes nothing (a quick port's zero half? port with --via)")
    notes += _verify_notes(emb, source, strict)
    options = {}
    if rename is None:
        emb = _named_like_the_file(emb, out, to)
    elif out != "-" and _token_layout(emb, out, to):
        options["token"] = rename  # the layout stores a trigger: it holds the new name (diffusers reads it)
    losses = write_result(emb, out, to, overwrite=overwrite, strict=strict, as_json=as_json, notes=notes, allow_loss=allow_loss,
                          inputs=[source], in_place=in_place, hide_codes=("trigger-renamed",) if rename else (), **options)
    if rename is not None and out != "-" and not as_json:
        _say_file_name_triggers(out, rename, any(loss.code == "trigger-renamed" for loss in losses))


def _verify_notes(emb, source: str, strict: bool) -> list[str]:
    """What `embkit verify` would reject in the result, checked against its own family before
    anything is written: a warning each, or (``strict``) a ValidationFailed (exit 7)."""
    from ..check.validate import validate
    from ..errors import ValidationFailed

    if emb.family == "unknown":
        return []
    report = validate(emb, emb.family)
    found = [f"the result would fail `embkit verify`: [{f.code}] {f.message}" for f in report.errors]
    if found and strict:
        raise ValidationFailed("; ".join(found) + " (nothing was written)", path=source)
    return found


def _token_layout(emb, out: str, to: str | None) -> bool:
    """Whether the layout written to ``out`` stores a trigger (A1111's name, diffusers' key)."""
    from ..errors import EmbkitError
    from ..writing import choose_format

    try:
        fmt = to or choose_format(emb, out)
    except EmbkitError:
        return False
    return fmt in ("a1111", "diffusers")


def _say_file_name_triggers(out: str, new: str, renamed_by_file: bool) -> None:
    """After ``--rename``: the hosts (from the hosts table) that trigger the written file by its
    file name, and what to type there; the new name is stored where the layout keeps one."""
    import os

    from ..hosts import get_host
    from ..hosts.verdict import triggers

    found = triggers(out)
    by_file = {h: t for h, t in found.items() if t is not None and get_host(h).bare(t) != new}
    if not by_file and not renamed_by_file:
        return
    stem = os.path.splitext(os.path.basename(os.path.normpath(out)))[0]
    hosts = ", ".join(get_host(h).label for h in by_file) or "hosts"
    words = ", ".join(repr(w) for w in sorted(set(by_file.values()))) or repr(stem)
    ext = os.path.splitext(out)[1]
    output.warn(
        f"the trigger of {out} is its file name in {hosts}: they type {words}, not {new!r}. "
        f"{new!r} is stored in the file where its layout keeps a name; name the file {new}{ext} (-o {new}{ext}) to type {new!r} everywhere"
    )


def _named_like_the_file(emb, out: str, to: str | None):
    """For a format triggered by its file name (the writer reports such a file as renaming the
    trigger), name the result after OUT, as merge does: the file's trigger and its stored name then
    agree, and --strict does not fail on a name the user chose with -o."""
    import os

    from ..errors import EmbkitError
    from ..writing import plan

    if out == "-":
        return emb
    try:
        planned = plan(emb, out, to)
    except EmbkitError:
        return emb  # the write itself reports it
    if any(loss.code == "trigger-renamed" for loss in planned.losses):
        # a consequence of the output's name, not an edit: no provenance step of its own
        return emb.replace(name=os.path.splitext(os.path.basename(os.path.normpath(out)))[0])
    return emb

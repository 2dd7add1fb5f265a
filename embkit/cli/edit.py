"""``embkit edit IN -o OUT``: select, trim, scale, normalise, rename, recast or port one embedding."""

from __future__ import annotations

import click

from ..formats import writable_ids
from .merge import read_input, write_result


@click.command("edit")
@click.argument("source")
@click.option("-o", "--output", "out", required=True, type=click.Path(), help="File to write (format from the extension unless --format).")
@click.option("--select", "selection", help="Keep these vectors: 0:4, -2:, 0,2,5 (Python-style, 0-based).")
@click.option("--reorder", help="New order of the vectors, e.g. 2,0,1.")
@click.option("--drop-zero", is_flag=True, help="Drop vectors that are all zero.")
@click.option("--pad-to", type=click.IntRange(1), help="Append zero vectors up to this count.")
@click.option("--port", "port_to", type=click.Choice(["sd1", "sdxl"]), help="Port to another family (sdxl → sd1 keeps CLIP-L).")
@click.option("--via", type=click.Path(exists=True, file_okay=False), help="With --port sdxl: a local diffusers SDXL folder, for nearest-token transfer.")
@click.option("--scale", type=float, help="Multiply every vector by this factor.")
@click.option("--scale-slot", multiple=True, metavar="SLOT=FACTOR", help="Scale one slot only, e.g. clip_g=0.5 (repeatable).")
@click.option("--norm", type=float, help="Scale so the mean vector norm becomes this value.")
@click.option("--dtype", type=click.Choice(["fp16", "bf16", "fp32", "float16", "bfloat16", "float32"]), help="Store in this dtype.")
@click.option("--slot", help="Apply --select/--reorder/--drop-zero/--pad-to/--scale/--norm/--dtype to this slot only.")
@click.option("--rename", "--name", "rename", help="New trigger name (default: for formats triggered by their file name, OUT's name, as merge does).")
@click.option("--format", "--to", "format_", type=click.Choice(writable_ids()), help="Output layout (default: from the extension); --to as in convert.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--strict", is_flag=True, help="Fail (exit 8) instead of warning when the output format loses something.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (path, slots, losses, provenance).")
def cli(source, out, selection, reorder, drop_zero, pad_to, port_to, via, scale, scale_slot, norm, dtype, slot, rename, format_, overwrite, strict, as_json) -> None:
    """Edit one embedding and write the result to OUT, recording each step in its provenance.

    Steps run in this order: --select, --reorder, --drop-zero, --pad-to, --port, --scale,
    --scale-slot, --norm, --dtype, --rename. Every step acts on all input slots alike (an SDXL
    embedding's CLIP-L and CLIP-G rows stay paired) unless --slot names one; OneTrainer output
    vectors (<slot>_out) are left alone unless --slot names them. A file holding several embeddings
    is read as FILE::MEMBER.

    \b
    Examples:
      embkit edit EasyNegative.pt --select 0:4 -o EasyNegative4.safetensors
      embkit edit style.pt --port sdxl --via ./stable-diffusion-xl-base-1.0 -o style_xl.safetensors
      embkit edit style_xl.safetensors --scale-slot clip_g=0.5 --dtype fp16 -o style_xl16.safetensors
    """
    from ..edit import ops
    from ..edit.port import port, port_warning

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

    emb = read_input(source)
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
    if rename is None:
        emb = _named_like_the_file(emb, out, format_)
    write_result(emb, out, format_, overwrite, strict, as_json, notes)


def _named_like_the_file(emb, out: str, format_: str | None):
    """For a format triggered by its file name (the writer reports such a file as renaming the
    trigger), name the result after OUT, as merge does: the file's trigger and its stored name then
    agree, and --strict does not fail on a name the user chose with -o."""
    import os

    from ..errors import EmbkitError
    from ..writing import plan

    try:
        planned = plan(emb, out, format_)
    except EmbkitError:
        return emb  # the write itself reports it
    if any(loss.code == "trigger-renamed" for loss in planned.losses):
        # a consequence of the output's name, not an edit: no provenance step of its own
        return emb.replace(name=os.path.splitext(os.path.basename(os.path.normpath(out)))[0])
    return emb

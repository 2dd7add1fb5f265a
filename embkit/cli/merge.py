"""``embkit merge A B ... -o OUT``: combine embeddings (concat, weighted sum, mean, lerp, slerp)."""

from __future__ import annotations

import os

import click

from .options import result_options
from .writeout import MEMBER_SEP, read_one, write_result

#: reading ``FILE``, ``FILE::MEMBER`` or ``-``: :func:`embkit.cli.writeout.read_one`
read_input = read_one


def parse_floats(text: str, what: str) -> list[float]:
    """``"0.7,0.3"`` → ``[0.7, 0.3]``, or a usage error naming the option."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=what) from None


def default_name(out: str) -> str:
    """The trigger a result gets without ``--name``: the output file's stem (A1111, kohya and multi
    files are triggered by it), unless that is a generic diffusers file name."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(out)))[0]
    return "" if stem.startswith("learned_embeds") else stem


@click.command("merge")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, type=click.Path(allow_dash=True),
              help="File to write (layout from the extension unless --to; '-': standard output, with --to).")
@click.option("--mode", type=click.Choice(["concat", "sum", "mean", "lerp", "slerp"]), default=None, help="How to combine (default: concat; sum with --expr).")
@click.option("--weights", help="Comma-separated weights, one per input (lerp/slerp: one t, or two).")
@click.option("--expr", "expression", help='A blend like "0.7*a + 0.3*b": a, b, … are the inputs in order (file stems work too).')
@click.option("--pad", is_flag=True, help="Zero-pad inputs with fewer vectors instead of refusing (sum, mean, lerp, slerp).")
@click.option("--slot", help="Combine only this slot (e.g. clip_g); the other slots are the first input's.")
@result_options(rename_help="Trigger name of the result (default: the output file's stem).",
                overwrite_help="Replace OUT if it exists (never an input: that is --in-place).",
                strict_help="Fail (exit 8) instead of warning when the output format loses metadata or precision.", json_help="Print a JSON summary (path, slots, losses, provenance).")
def cli(inputs, out, mode, weights, expression, pad, slot, rename, to, overwrite, in_place, strict, allow_loss, as_json) -> None:
    """Merge embeddings of one family into OUT, recording every input (SHA-256, weight) in the
    result's provenance. Inputs of different families or widths are refused (exit 10); port one
    first with `embkit edit --port`. A file holding several embeddings is read as FILE::MEMBER.

    \b
    Examples:
      embkit merge bad-hands-5.pt EasyNegative.pt -o negs.safetensors
      embkit merge a.pt b.pt --mode mean --weights 0.7,0.3 -o blend.safetensors
      embkit merge a.pt b.pt --expr "0.7*a + 0.3*b" -o blend.safetensors
      embkit merge a.pt b.pt --mode slerp --weights 0.3 -o halfway.safetensors
    """
    from ..edit.merges import merge
    from ..errors import OperationError

    if list(inputs).count("-") > 1:
        raise click.UsageError("standard input ('-') can be read once")
    embs = [read_one(spec) for spec in inputs]
    w = parse_floats(weights, "--weights") if weights is not None else None
    if expression is not None:
        if w is not None:
            raise click.UsageError("--expr and --weights both give weights; use one")
        if mode not in (None, "sum", "mean"):
            raise click.UsageError("--expr gives a weighted sum; it cannot be combined with --mode " + mode)
        embs, w = _bind_expression(expression, inputs, embs)
    mode = mode or ("sum" if expression is not None else "concat")
    if len(embs) < 2 and mode != "concat":
        raise OperationError(f"{mode} needs at least two inputs")
    result = merge(embs, mode, w, pad=pad, name=rename or (default_name(out) if out != "-" else "") or None, slot=slot)
    write_result(result, out, to, overwrite=overwrite, strict=strict, as_json=as_json, allow_loss=allow_loss, inputs=inputs, in_place=in_place)


def _bind_expression(expression: str, inputs, embs):
    """Weights from the expression, for the inputs it names (a, b, … by position, or file stems)."""
    from ..edit.expr import parse_weights
    from ..errors import OperationError

    names: dict[str, int] = {}
    for i, spec in enumerate(inputs):
        if i < 26:
            names[chr(ord("a") + i)] = i
    for i, spec in enumerate(inputs):
        stem = os.path.splitext(os.path.basename(spec.split(MEMBER_SEP)[0]))[0]
        if stem.isidentifier() and stem not in names:
            names[stem] = i
    weights = parse_weights(expression, list(names))
    by_input: dict[int, float] = {}
    for key, value in weights.items():
        by_input[names[key]] = by_input.get(names[key], 0.0) + value
    unused = [inputs[i] for i in range(len(inputs)) if i not in by_input]
    if unused:
        raise OperationError(f"expression {expression!r} does not use input(s) {', '.join(unused)}; drop them or give them a weight")
    order = sorted(by_input)
    return [embs[i] for i in order], [by_input[i] for i in order]

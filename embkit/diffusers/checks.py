"""Every check :func:`~embkit.diffusers.apply` makes before it touches a pipeline: slots, widths,
values, token names, and :func:`embkit.validate` against the live pipeline. A failure raises
:class:`~embkit.errors.ValidationFailed` listing every problem; nothing has changed then."""

from __future__ import annotations

from typing import Any

from ..errors import ValidationFailed
from ..schema import Embedding, family_for
from .prompt import token_names
from .registry import EncoderSlot


def where(emb: Embedding) -> str:
    """How messages name an embedding: its file, else its name."""
    return emb.source.path if emb.source is not None else f"embedding {emb.name!r}"


def check(pipe: Any, embs: list[Embedding], triggers: list[str], slots: list[EncoderSlot], validate: bool,
          lenient: bool = False) -> tuple[dict[str, list[str]], list[str]]:
    """Returns encoder → tokens to add, and warnings. ``slots`` are the encoders to load into;
    ``lenient``: an embedding goes into those of them it has vectors for (diffusers' rule, which
    puts an SD1 file into SDXL's first encoder only), instead of having to fill every CLIP encoder."""
    import numpy as np

    by_slot = {s.slot: s for s in slots}
    problems: list[str] = []
    warnings: list[str] = []
    plan: dict[str, list[str]] = {s.encoder: [] for s in slots}
    for emb, trigger in zip(embs, triggers):
        at = where(emb)
        extra = [s for s in emb.slots if s not in by_slot]
        if extra and len(extra) == len(emb.slots):
            problems.append(f"{at}: has {', '.join(extra)} vectors but the {'chosen' if lenient else 'pipeline'} encoders are {', '.join(by_slot)}")
        elif extra and not lenient:
            # what validation reports as extra-slot ("would be ignored"): apply the halves that fit
            warnings.append(f"{at}: {', '.join(extra)} vectors ignored: the pipeline has no such encoder")
        uncovered = [s.slot for s in slots if s.slot not in emb.slots and s.slot != "t5"]
        made_for = f" (made for {emb.family}; port it with `embkit edit … --port`)" if emb.family != "unknown" else ""
        if uncovered and not lenient:
            # The A1111 "does nothing" trap: an SD1 file on SDXL would reach only one of two encoders.
            problems.append(f"{at}: has no {', '.join(uncovered)} vectors, which this pipeline's encoders need{made_for}")
        elif uncovered and len(uncovered) < len(slots):
            warnings.append(f"{at}: no {', '.join(uncovered)} vectors: {trigger!r} reaches only some of the encoders{made_for}")
        for out_slot in emb.output_slots:
            warnings.append(f"{at}: {out_slot} output vectors are not token rows; diffusers cannot use them, skipped")
        for slot in emb.slots:
            if slot not in by_slot:
                continue
            target = by_slot[slot]
            arr = emb.vectors[slot]
            if arr.shape[1] != target.width:
                problems.append(f"{at}: {slot} vectors are {arr.shape[1]} wide, {target.encoder} expects {target.width}")
            if validate and not np.isfinite(arr).all():
                problems.append(f"{at}: {slot} vectors hold NaN or infinite values")
            plan[target.encoder].extend(token_names(trigger, arr.shape[0]))
    for s in slots:
        problems.extend(_token_problems(getattr(pipe, s.tokenizer), s.tokenizer, plan[s.encoder]))
    if validate and not problems:
        # embkit.validate's own checks (prompt budget, slot counts …); its messages say what to do.
        problems.extend(_validation_errors(pipe, embs, triggers, slots, lenient))
    if problems:
        raise ValidationFailed("cannot apply: " + "; ".join(dict.fromkeys(problems)))
    return plan, warnings


def _token_problems(tokenizer: Any, name: str, tokens: list[str]) -> list[str]:
    if not hasattr(tokenizer, "backend_tokenizer"):
        return [f"{name} is a {type(tokenizer).__name__} without a tokenizers backend; embkit needs a fast tokenizer"]
    existing = {t.casefold() for t in tokenizer.get_vocab()}
    seen: set[str] = set()
    twice: list[str] = []
    taken: list[str] = []
    for tok in tokens:
        key = tok.casefold()  # CLIP lower-cases, so case variants are the same token
        (twice if key in seen else taken if key in existing else []).append(tok)
        seen.add(key)
    problems = []
    if twice:
        problems.append(f"{_some(twice)} asked for twice in {name} (two embeddings with one trigger? pass tokens=)")
    if taken:
        problems.append(f"{_some(taken)} already in {name}'s vocabulary (unload first, or pass tokens=)")
    return problems


def _validation_errors(pipe: Any, embs: list[Embedding], triggers: list[str], slots: list[EncoderSlot], lenient: bool) -> list[str]:
    """Errors from :func:`embkit.validate` against the live pipeline (widths, slots, values,
    budget), limited to the encoders being loaded into (``lenient``: to those of them each
    embedding has vectors for)."""
    from ..check.validate import validate
    from ..model.spec import ModelSpec

    full = ModelSpec.from_pipeline(pipe)
    chosen = [s.slot for s in slots if s.slot in full.slots]
    out = []
    for emb, trigger in zip(embs, triggers):
        wanted = [s for s in chosen if s in emb.slots] if lenient else chosen
        kept = {s: v for s, v in emb.vectors.items() if s.removesuffix("_out") in wanted}
        if not kept:
            continue
        spec = full
        if len(wanted) < len(full.slots):
            spec = ModelSpec(family_for(wanted), {s: full.slots[s] for s in wanted}, source=full.source, kind=full.kind)
        one = emb.replace(name=trigger, vectors=kept) if (trigger != emb.name or len(kept) < len(emb.vectors)) else emb
        report = validate(one, spec)
        out.extend(f"{where(emb)}: {f.message}" for f in report.errors)
    return out


def _some(tokens: list[str]) -> str:
    shown = ", ".join(repr(t) for t in tokens[:3])
    return f"token {shown} is" if len(tokens) == 1 else f"tokens {shown}{f' (+{len(tokens) - 3} more)' if len(tokens) > 3 else ''} are"


__all__ = ["check", "where"]

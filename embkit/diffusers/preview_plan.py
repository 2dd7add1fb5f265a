"""Planning a preview render: which embeddings fit the pipeline, the token each is applied under,
and the rounds of embeddings that can share one apply (see :mod:`.previews` for why). torch-free
itself; it reads the live pipeline's tokenizers and runs :func:`embkit.validate` against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ValidationFailed
from ..schema import Embedding


@dataclass
class Item:
    """One embedding on its way through a render: its place, trigger word, kind, and the token it
    is applied under (the word, or a stand-in)."""

    index: int
    emb: Embedding
    word: str
    negative: bool
    token: str = ""


def plan(pipe: Any, items: list[Item], fixed: str) -> tuple[list[list[Item]], list[tuple[Item, str]]]:
    """Which items fit (and under which token), grouped into rounds that can share one apply.
    ``fixed`` is the prompt text every item shares (a trigger found in it gets a stand-in).

    Fitting is :func:`embkit.validate` against the live pipeline (widths, slots, values) plus
    "no slot the pipeline lacks"; apply's own structural check runs once per round, and splits
    the round only if it finds something these missed."""
    from ..check.validate import validate
    from ..model.spec import ModelSpec
    from .apply import encoder_slots
    from .prompt import find, token_names

    slots = encoder_slots(pipe)
    have = {s.slot for s in slots}
    spec = ModelSpec.from_pipeline(pipe)
    vocab = {t.casefold() for s in slots for t in getattr(pipe, s.tokenizer).get_vocab()}
    rounds: list[list[Item]] = []
    taken: list[tuple[set[str], set[str]]] = []  # per round: its tokens and names; the words inside its tokens
    skipped: list[tuple[Item, str]] = []
    for n, item in enumerate(items):
        word, count = item.word.strip(), max(item.emb.num_vectors, 1)
        clash = not word or any(t.casefold() in vocab for t in token_names(word, count)) or bool(find(fixed, [word]))
        item.token = f"<embkit-preview-{n}>" if clash else word
        extra = [s for s in item.emb.slots if s not in have]
        if extra:
            # apply would use the halves that fit, but no host loads such a file on this model:
            # half an embedding is not its preview
            skipped.append((item, f"has {', '.join(extra)} vectors this model has no encoder for (made for {item.emb.family})"))
            continue
        errors = validate(item.emb, spec).errors
        if errors:
            skipped.append((item, "; ".join(f.message for f in errors)))
            continue
        mine = {t.casefold() for t in token_names(item.token, count)} | {"\0name:" + item.emb.name}
        inner = _inner_words(item.token)
        for r, (tokens, words) in enumerate(taken):
            # one token or name twice, or one trigger a whole word inside another: not in one apply
            if tokens.isdisjoint(mine) and item.token.casefold() not in words and inner.isdisjoint(tokens):
                rounds[r].append(item)
                tokens |= mine
                words |= inner
                break
        else:
            rounds.append([item])
            taken.append((set(mine), set(inner)))
    return rounds, skipped


def _inner_words(token: str) -> set[str]:
    """Every part of ``token`` (case-folded) that prompt matching would find as a whole word inside
    it: ``bad`` and ``bad-hands`` in ``bad-hands-5``."""
    import re

    starts = [m.start() for m in re.finditer(r"(?<!\w)(?=.)", token)]
    ends = [m.end() for m in re.finditer(r"(?<=.)(?!\w)", token)]
    return {token[a:b].casefold() for a in starts for b in ends if a < b and (a, b) != (0, len(token)) and token[a:b].strip()}


def apply_round(pipe: Any, members: list[Item]) -> tuple[Any, list[tuple[Item, str]]]:
    """Apply one round; an embedding apply refuses (something :func:`plan` did not foresee) is
    left out with apply's reason, and the rest applied."""
    from .apply import apply, encoder_slots
    from .checks import check

    try:
        return apply(pipe, [m.emb for m in members], tokens=[m.token for m in members], validate=False), []
    except ValidationFailed:
        slots = encoder_slots(pipe)
        refused = []
        for m in members:
            try:
                check(pipe, [m.emb], [m.token], slots, False)
            except ValidationFailed as exc:
                refused.append((m, str(exc)))
        members[:] = [m for m in members if all(m is not r for r, _ in refused)]
        if not members or not refused:
            raise
        return apply(pipe, [m.emb for m in members], tokens=[m.token for m in members], validate=False), refused


__all__ = ["Item", "plan", "apply_round"]

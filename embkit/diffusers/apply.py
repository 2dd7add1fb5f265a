"""Put embeddings into a diffusers pipeline in one step, and take them out again exactly.

:func:`apply` loads any number of embeddings (Embedding objects or files of any format) into every
text encoder they have vectors for: SD1/SD2 ``text_encoder``; SDXL ``clip_l`` → ``text_encoder`` and
``clip_g`` → ``text_encoder_2``; Flux ``clip_l`` and ``t5`` (``text_encoder_2`` is T5 there); SD3 all
three. Compared with diffusers' ``load_textual_inversion`` it

* checks everything first (slots, widths, names, values), so a failure leaves the pipeline untouched;
* grows each embedding matrix once, by building the new ``nn.Embedding`` directly (no transformers
  mean-resizing, which costs a covariance and a Cholesky over all rows per call);
* writes rows in each encoder's own dtype and device;
* names multi-vector tokens ``tok, tok_1, …`` exactly like diffusers, so its ``maybe_convert_prompt``
  still works, and registers them as whole-word tokens matching :func:`embkit.prompt.expand`.

:func:`unload` restores what apply changed: the tokenizer's backend object, the matrix size and rows,
``config.vocab_size``. torch and diffusers are only imported inside functions.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import EmbkitError, TargetError, ValidationFailed
from .matrix import Snapshot, grow, restore
from .prompt import expand, expand_prompt, expanded_prompts, token_names, trigger_counts
from ..schema import Embedding

#: (text encoder, tokenizer) attribute pairs a diffusers pipeline may have, in order.
ENCODER_PAIRS: tuple[tuple[str, str], ...] = (
    ("text_encoder", "tokenizer"),
    ("text_encoder_2", "tokenizer_2"),
    ("text_encoder_3", "tokenizer_3"),
)
#: CLIP text-encoder width → slot. T5 encoders are recognised by their model type.
_CLIP_WIDTH_SLOT = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}
#: Pipeline attribute where apply keeps what it did, so unload can undo it.
_REGISTRY = "_embkit_applied"
_keys = itertools.count(1)


@dataclass(frozen=True)
class EncoderSlot:
    """One text encoder of a pipeline: its slot, attribute names and token width."""

    slot: str
    encoder: str
    tokenizer: str
    width: int


@dataclass
class Applied:
    """What :func:`apply` added to a pipeline.

    Attributes:
        embeddings: the embeddings applied, in order.
        triggers: embedding name → the trigger word registered for it.
        tokens: encoder attribute → the tokens added to its tokenizer, in id order.
        ids: encoder attribute → the token ids of those tokens.
        counts: tokenizer attribute → {trigger: number of vectors}, for :func:`embkit.prompt.expand`.
        warnings: things apply skipped (OneTrainer output vectors, slots the pipeline has no encoder for) as plain messages.
    """

    embeddings: tuple[Embedding, ...]
    triggers: dict[str, str]
    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    key: int = 0

    def expand(self, prompt: str, tokenizer: str = "tokenizer") -> str:
        """``prompt`` with this apply's multi-vector triggers expanded for ``tokenizer``."""
        return expand(prompt, self.counts.get(tokenizer, {}))


@dataclass
class _Entry:
    applied: Applied
    snapshots: dict[str, Snapshot]
    token_lists: dict[str, list[str]]


# -- finding the encoders ----------------------------------------------------------------------


def encoder_slots(pipe: Any) -> list[EncoderSlot]:
    """The text encoders of ``pipe`` with the slot each one fills (``clip_l``, ``clip_g``, ``t5`` …)."""
    found = []
    for enc_attr, tok_attr in ENCODER_PAIRS:
        encoder, tokenizer = getattr(pipe, enc_attr, None), getattr(pipe, tok_attr, None)
        if encoder is None or tokenizer is None:
            continue
        width = int(encoder.get_input_embeddings().weight.shape[1])
        model_type = str(getattr(getattr(encoder, "config", None), "model_type", "")).lower()
        if "t5" in model_type or "T5" in type(encoder).__name__:
            slot = "t5"
        else:
            slot = _CLIP_WIDTH_SLOT.get(width)
        if slot is None:
            raise TargetError(f"{type(pipe).__name__}.{enc_attr} has token width {width}, which matches no known text encoder")
        found.append(EncoderSlot(slot, enc_attr, tok_attr, width))
    if not found:
        raise TargetError(f"{type(pipe).__name__} has no text encoder and tokenizer to put embeddings into")
    return found


# -- apply ---------------------------------------------------------------------------------------


def _load(embeddings: Any) -> list[Embedding]:
    from ..io import read_all

    if isinstance(embeddings, (Embedding, str, os.PathLike)):
        embeddings = [embeddings]
    out: list[Embedding] = []
    for item in embeddings:
        if isinstance(item, Embedding):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.extend(read_all(item))
        else:
            raise EmbkitError(f"cannot apply a {type(item).__name__}; pass Embedding objects or file paths")
    if not out:
        raise EmbkitError("no embeddings to apply")
    return out


def _trigger_names(embs: list[Embedding], tokens: Any) -> list[str]:
    if tokens is None:
        return [e.name for e in embs]
    if isinstance(tokens, str):
        if len(embs) != 1:
            raise EmbkitError(f"one token given for {len(embs)} embeddings; pass a list or a mapping")
        return [tokens]
    if isinstance(tokens, Mapping):
        return [str(tokens.get(e.name, e.name)) for e in embs]
    tokens = list(tokens)
    if len(tokens) != len(embs):
        raise EmbkitError(f"{len(tokens)} tokens given for {len(embs)} embeddings")
    return [str(t) if t is not None else e.name for t, e in zip(tokens, embs)]


def _where(emb: Embedding) -> str:
    return emb.source.path if emb.source is not None else f"embedding {emb.name!r}"


def _validation_errors(pipe: Any, embs: list[Embedding]) -> list[str]:
    """Errors from :func:`embkit.validate` against the live pipeline (widths, slots, values, budget)."""
    from ..check.validate import validate
    from ..model.spec import ModelSpec

    spec = ModelSpec.from_pipeline(pipe)
    out = []
    for emb in embs:
        report = validate(emb, spec)
        out.extend(f"{_where(emb)}: {f.message}" for f in report.errors)
    return out


def _check(pipe: Any, embs: list[Embedding], triggers: list[str], slots: list[EncoderSlot], validate: bool) -> tuple[dict[str, list[str]], list[str]]:
    """Every check apply makes, before touching anything. Returns encoder → tokens to add, and warnings."""
    import numpy as np

    by_slot = {s.slot: s for s in slots}
    problems: list[str] = []
    warnings: list[str] = []
    plan: dict[str, list[str]] = {s.encoder: [] for s in slots}
    for emb, trigger in zip(embs, triggers):
        where = _where(emb)
        extra = [s for s in emb.slots if s not in by_slot]
        if extra and len(extra) == len(emb.slots):
            problems.append(f"{where}: has {', '.join(extra)} vectors but the pipeline has only {', '.join(by_slot)} encoders")
        elif extra:
            # what validation reports as extra-slot ("would be ignored"): apply the halves that fit
            warnings.append(f"{where}: {', '.join(extra)} vectors ignored: the pipeline has no such encoder")
        uncovered = [s.slot for s in slots if s.slot not in emb.slots and s.slot != "t5"]
        if uncovered:
            # The A1111 "does nothing" trap: an SD1 file on SDXL would reach only one of two encoders.
            made_for = f" (made for {emb.family}; port it with `embkit edit … --port`)" if emb.family != "unknown" else ""
            problems.append(f"{where}: has no {', '.join(uncovered)} vectors, which this pipeline's encoders need{made_for}")
        for out_slot in emb.output_slots:
            warnings.append(f"{where}: {out_slot} output vectors are not token rows; diffusers cannot use them, skipped")
        for slot in emb.slots:
            if slot not in by_slot:
                continue
            target = by_slot[slot]
            arr = emb.vectors[slot]
            if arr.shape[1] != target.width:
                problems.append(f"{where}: {slot} vectors are {arr.shape[1]} wide, {target.encoder} expects {target.width}")
            if validate and not np.isfinite(arr).all():
                problems.append(f"{where}: {slot} vectors hold NaN or infinite values")
            plan[target.encoder].extend(token_names(trigger, arr.shape[0]))
    for s in slots:
        tokenizer = getattr(pipe, s.tokenizer)
        if not hasattr(tokenizer, "backend_tokenizer"):
            problems.append(f"{s.tokenizer} is a {type(tokenizer).__name__} without a tokenizers backend; embkit needs a fast tokenizer")
            continue
        existing = {t.casefold() for t in tokenizer.get_vocab()}
        seen: set[str] = set()
        twice, taken = [], []
        for tok in plan[s.encoder]:
            key = tok.casefold()  # CLIP lower-cases, so case variants are the same token
            (twice if key in seen else taken if key in existing else []).append(tok)
            seen.add(key)
        if twice:
            problems.append(f"{_some(twice)} asked for twice in {s.tokenizer} (two embeddings with one trigger? pass tokens=)")
        if taken:
            problems.append(f"{_some(taken)} already in {s.tokenizer}'s vocabulary (unload first, or pass tokens=)")
    if validate and not problems:
        # embkit.validate's own checks (prompt budget, slot counts …); its messages say what to do.
        problems.extend(_validation_errors(pipe, embs))
    if problems:
        raise ValidationFailed("cannot apply: " + "; ".join(dict.fromkeys(problems)))
    return plan, warnings


def _some(tokens: list[str]) -> str:
    shown = ", ".join(repr(t) for t in tokens[:3])
    return f"token {shown} is" if len(tokens) == 1 else f"tokens {shown}{f' (+{len(tokens) - 3} more)' if len(tokens) > 3 else ''} are"


def apply(pipe: Any, embeddings: Any, *, tokens: Any = None, validate: bool = True) -> Applied:
    """Load ``embeddings`` (Embedding objects or paths, any format, any number) into ``pipe``.

    ``tokens`` overrides the trigger words: one string for one embedding, a list matching the
    embeddings, or a mapping from embedding name to trigger. Every check runs before anything
    changes; on failure :class:`embkit.ValidationFailed` lists all problems and the pipeline is
    untouched. ``validate=False`` skips :func:`embkit.validate` and the value checks (never the
    structural ones: slots, widths, token names). Returns an
    :class:`Applied` describing what was added; :func:`unload` undoes it.
    """
    embs = _load(embeddings)
    triggers = _trigger_names(embs, tokens)
    slots = encoder_slots(pipe)
    plan, warnings = _check(pipe, embs, triggers, slots, validate)
    applied = Applied(embeddings=tuple(embs), triggers={e.name: t for e, t in zip(embs, triggers)}, warnings=tuple(warnings), key=next(_keys))
    snapshots: dict[str, Snapshot] = {}
    try:
        for s in slots:
            if plan[s.encoder]:
                rows = _rows_for(embs, triggers, s.slot)
                snapshots[s.encoder] = _grow(pipe, s, plan[s.encoder], rows, applied)
    except BaseException:
        for enc_attr, snap in snapshots.items():
            _restore(pipe, next(s for s in slots if s.encoder == enc_attr), snap)
        raise
    registry = pipe.__dict__.setdefault(_REGISTRY, [])
    registry.append(_Entry(applied, snapshots, {k: list(v) for k, v in plan.items() if v}))
    return applied


def _rows_for(embs: list[Embedding], triggers: list[str], slot: str):
    import numpy as np

    parts = [e.vectors[slot] for e in embs if slot in e.vectors]
    return np.concatenate([p.astype(np.float32, copy=False) for p in parts], axis=0)


def _grow(pipe: Any, s: EncoderSlot, new_tokens: list[str], vectors: Any, applied: Applied) -> Snapshot:
    """Add ``new_tokens`` to one tokenizer and their rows to its encoder's matrix (one resize), and
    record them in ``applied``."""
    snap, ids = grow(getattr(pipe, s.tokenizer), getattr(pipe, s.encoder), new_tokens, vectors, s.tokenizer)
    applied.tokens[s.encoder] = tuple(new_tokens)
    applied.ids[s.encoder] = tuple(ids)
    counts = applied.counts.setdefault(s.tokenizer, {})
    for emb in applied.embeddings:
        if s.slot in emb.vectors:
            counts[applied.triggers[emb.name]] = int(emb.vectors[s.slot].shape[0])
    return snap


def _restore(pipe: Any, s: EncoderSlot, snap: Snapshot) -> None:
    restore(getattr(pipe, s.tokenizer), getattr(pipe, s.encoder), snap)


# -- unload --------------------------------------------------------------------------------------


def unload(pipe: Any, applied_or_tokens: Applied | str | Iterable[str] | None = None) -> list[str]:
    """Remove what :func:`apply` added: everything (``None``), one :class:`Applied`, or the embeddings
    whose trigger words are given. Tokenizers, matrix sizes and rows, and ``config.vocab_size`` go
    back exactly to their state before; embeddings applied later stay applied. Returns the triggers
    removed. Tokens added by other means (diffusers' own loader) after an embkit apply are dropped
    with it when that apply is undone."""
    registry: list[_Entry] = pipe.__dict__.get(_REGISTRY, [])
    if not registry:
        return []
    if applied_or_tokens is None:
        doomed = {id(e): set(e.applied.triggers.values()) for e in registry}
    elif isinstance(applied_or_tokens, Applied):
        doomed = {id(e): set(e.applied.triggers.values()) for e in registry if e.applied.key == applied_or_tokens.key}
        if not doomed:
            raise EmbkitError("this Applied is not (or no longer) applied to the pipeline")
    else:
        wanted = {applied_or_tokens} if isinstance(applied_or_tokens, str) else set(applied_or_tokens)
        doomed = {id(e): wanted & set(e.applied.triggers.values()) for e in registry}
        doomed = {k: v for k, v in doomed.items() if v}
        unknown = wanted - set().union(*doomed.values()) if doomed else wanted
        if unknown:
            raise EmbkitError(f"no embedding applied under trigger {', '.join(sorted(unknown))}")
    first = min(i for i, e in enumerate(registry) if id(e) in doomed)
    later = registry[first:]
    slots = {s.encoder: s for s in encoder_slots(pipe)}
    # Restore each encoder to its state before the first undone apply that touched it.
    restored: set[str] = set()
    for entry in later:
        for enc_attr, snap in entry.snapshots.items():
            if enc_attr not in restored:
                _restore(pipe, slots[enc_attr], snap)
                restored.add(enc_attr)
    del registry[first:]
    removed: list[str] = []
    # Re-apply what should stay, keeping each Applied's key so callers can still unload it later.
    for entry in later:
        gone = doomed.get(id(entry), set())
        removed.extend(t for t in entry.applied.triggers.values() if t in gone)
        keep = [e for e in entry.applied.embeddings if entry.applied.triggers[e.name] not in gone]
        if keep:
            again = apply(pipe, keep, tokens={e.name: entry.applied.triggers[e.name] for e in keep}, validate=False)
            registry[-1].applied.key = entry.applied.key
            entry.applied.__dict__.update({k: getattr(again, k) for k in ("embeddings", "triggers", "tokens", "ids", "counts")})
            registry[-1].applied = entry.applied
    if not registry:
        pipe.__dict__.pop(_REGISTRY, None)
    return removed


def applied(pipe: Any) -> list[Applied]:
    """The :class:`Applied` records currently in ``pipe``, oldest first."""
    return [e.applied for e in pipe.__dict__.get(_REGISTRY, [])]


__all__ = ["apply", "unload", "applied", "Applied", "EncoderSlot", "encoder_slots", "expanded_prompts", "expand_prompt", "trigger_counts", "ENCODER_PAIRS"]

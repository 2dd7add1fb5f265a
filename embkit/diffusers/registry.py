"""What embkit has applied to a pipeline, kept on the pipeline object itself.

Each :func:`~embkit.diffusers.apply` adds an :class:`Entry`: the :class:`Applied` record the caller
holds, and per encoder a :class:`~embkit.diffusers.matrix.Snapshot` of the state before it. A
snapshot is only good while nobody else changes that encoder: diffusers' own
``load_textual_inversion``/``unload_textual_inversion`` (or anything else) may add, remove and
renumber tokens in between. So the registry also remembers the tokenizer and embedding objects
embkit left in each encoder; :func:`notice` compares them with what is there now, marks the
snapshots of a changed encoder *stale* (unload then takes tokens out by name instead of restoring
a snapshot) and forgets tokens that someone else has removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import TargetError
from ..schema import Embedding, is_output_slot
from .matrix import Snapshot, state
from .prompt import expand, token_names

#: (text encoder, tokenizer) attribute pairs a diffusers pipeline may have, in order.
ENCODER_PAIRS: tuple[tuple[str, str], ...] = (
    ("text_encoder", "tokenizer"),
    ("text_encoder_2", "tokenizer_2"),
    ("text_encoder_3", "tokenizer_3"),
)
TOKENIZER_OF = dict(ENCODER_PAIRS)
#: CLIP text-encoder width → slot. T5 encoders are recognised by their model type.
_CLIP_WIDTH_SLOT = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}
#: pipeline attributes where the registry lives
_ENTRIES, _LEFT, _EOS = "_embkit_applied", "_embkit_left", "_embkit_eos"


@dataclass(frozen=True)
class EncoderSlot:
    """One text encoder of a pipeline: its slot, attribute names and token width."""

    slot: str
    encoder: str
    tokenizer: str
    width: int


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


@dataclass
class Applied:
    """What :func:`~embkit.diffusers.apply` added to a pipeline.

    Attributes:
        embeddings: the embeddings applied, in order.
        triggers: embedding name → the trigger word registered for it.
        tokens: encoder attribute → the tokens added to its tokenizer, in id order.
        ids: encoder attribute → the token ids of those tokens (kept current: unloads renumber).
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
class Entry:
    """One apply as the registry keeps it."""

    applied: Applied
    snapshots: dict[str, Snapshot]
    #: encoder attributes whose snapshot no longer describes the state before this apply
    stale: set[str] = field(default_factory=set)
    #: the encoders apply was asked to use (None: every encoder, with apply's full checks)
    encoders: tuple[str, ...] | None = None


def entries(pipe: Any) -> list[Entry]:
    """The entries of ``pipe``, oldest first (a live list)."""
    return pipe.__dict__.setdefault(_ENTRIES, [])


def touching(pipe: Any, enc_attr: str) -> list[Entry]:
    """The entries with tokens in one encoder."""
    return [e for e in entries(pipe) if e.applied.tokens.get(enc_attr)]


def left(pipe: Any, enc_attrs: Any) -> None:
    """Remember the state embkit leaves in these encoders."""
    record = pipe.__dict__.setdefault(_LEFT, {})
    for enc_attr in enc_attrs:
        record[enc_attr] = state(getattr(pipe, TOKENIZER_OF[enc_attr]), getattr(pipe, enc_attr))


def remember_eos(pipe: Any, enc_attr: str, snap: Snapshot) -> None:
    """Keep the legacy end-token ids a grow corrected, until the last embkit token leaves."""
    if snap.eos is not None:
        pipe.__dict__.setdefault(_EOS, {}).setdefault(enc_attr, snap.eos)


def notice(pipe: Any) -> None:
    """Compare every encoder with what embkit left there; for one that someone else changed, mark
    its snapshots stale and forget the embkit tokens that are gone from it."""
    record = pipe.__dict__.get(_LEFT, {})
    for enc_attr, was in list(record.items()):
        encoder, tokenizer = getattr(pipe, enc_attr, None), getattr(pipe, TOKENIZER_OF[enc_attr], None)
        if encoder is None or tokenizer is None:
            continue
        now = state(tokenizer, encoder)
        if now[0] is was[0] and now[1] is was[1] and now[2:] == was[2:]:
            continue
        for entry in entries(pipe):
            if enc_attr in entry.snapshots:
                entry.stale.add(enc_attr)
        present = set(tokenizer.get_added_vocab())
        for entry in touching(pipe, enc_attr):
            gone = [t for t in entry.applied.tokens[enc_attr] if t not in present]
            if gone:
                forget(pipe, entry, enc_attr, gone)
        record[enc_attr] = now
    settle(pipe)


def forget(pipe: Any, entry: Entry, enc_attr: str, removed: Any) -> None:
    """Update one entry after ``removed`` tokens left ``enc_attr``. A trigger none of whose tokens
    is left there leaves that encoder (its embedding keeps only its other slots, so a re-apply
    puts back only those), and the entry when no encoder holds it any more."""
    removed = set(removed)
    applied = entry.applied
    tok_attr = TOKENIZER_OF[enc_attr]
    remaining = tuple(t for t in applied.tokens.get(enc_attr, ()) if t not in removed)
    counts = applied.counts.get(tok_attr, {})
    for trigger, n in list(counts.items()):
        if not set(remaining) & set(token_names(trigger, n)):
            counts.pop(trigger)
    if remaining:
        applied.tokens[enc_attr] = remaining
    else:
        for table, key in ((applied.tokens, enc_attr), (applied.ids, enc_attr), (applied.counts, tok_attr), (entry.snapshots, enc_attr)):
            table.pop(key, None)
        entry.stale.discard(enc_attr)
    slot = next((s.slot for s in encoder_slots(pipe) if s.encoder == enc_attr), None)
    kept = []
    for emb in applied.embeddings:
        trigger = applied.triggers[emb.name]
        if slot in emb.vectors and trigger not in counts:
            rest = {s: v for s, v in emb.vectors.items() if s != slot}
            if not [s for s in rest if not is_output_slot(s)]:
                applied.triggers.pop(emb.name)
                continue
            emb = emb.replace(vectors=rest)
        kept.append(emb)
    applied.embeddings = tuple(kept)
    if not applied.triggers:
        entries(pipe).remove(entry)


def refresh_ids(pipe: Any) -> None:
    """Every entry's ``ids`` as the tokenizers number the tokens now."""
    for entry in entries(pipe):
        for enc_attr, tokens in entry.applied.tokens.items():
            tokenizer = getattr(pipe, TOKENIZER_OF[enc_attr])
            entry.applied.ids[enc_attr] = tuple(tokenizer.convert_tokens_to_ids(list(tokens)))


def settle(pipe: Any) -> None:
    """Put back the legacy end-token ids of encoders no embkit entry touches any more; drop an
    empty registry."""
    eos = pipe.__dict__.get(_EOS, {})
    for enc_attr in [e for e in eos if not touching(pipe, e)]:
        encoder = getattr(pipe, enc_attr)
        encoder.text_model.eos_token_id, encoder.config.eos_token_id = eos.pop(enc_attr)
    if not entries(pipe):
        for name in (_ENTRIES, _LEFT, _EOS):
            pipe.__dict__.pop(name, None)


__all__ = ["Applied", "Entry", "EncoderSlot", "encoder_slots", "ENCODER_PAIRS", "entries", "touching", "left", "notice", "forget", "refresh_ids", "settle", "remember_eos"]

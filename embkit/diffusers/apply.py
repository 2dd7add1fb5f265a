"""Put embeddings into a diffusers pipeline in one step, and take them out again exactly.

:func:`apply` loads any number of embeddings (Embedding objects, files of any format, Hub repo ids,
state dicts, tensors) into every text encoder they have vectors for: SD1/SD2 ``text_encoder``; SDXL
``clip_l`` → ``text_encoder`` and ``clip_g`` → ``text_encoder_2``; Flux ``clip_l`` and ``t5``
(``text_encoder_2`` is T5 there); SD3 all three. Compared with diffusers' ``load_textual_inversion`` it

* checks everything first (slots, widths, names, values), so a failure leaves the pipeline untouched;
* grows each embedding matrix once, by building the new ``nn.Embedding`` directly (no transformers
  mean-resizing, which costs a covariance and a Cholesky over all rows per call);
* writes rows in each encoder's own dtype and device, also under accelerate's CPU offload;
* names multi-vector tokens ``tok, tok_1, …`` exactly like diffusers, so its ``maybe_convert_prompt``
  still works, and registers them as whole-word tokens matching :func:`embkit.prompt.expand`.

:func:`unload` takes out what apply added and nothing else. While nobody else has touched an encoder
it restores it exactly from a snapshot (tokenizer object, matrix size and rows,
``config.vocab_size``); after diffusers' own loader (or anything else) changed it, it removes
embkit's tokens by name and closes up the ids, so tokenizer and matrix always agree. torch and
diffusers are only imported inside functions.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Iterable, Mapping

from ..errors import EmbkitError
from ..schema import Embedding
from . import registry
from .checks import check
from .matrix import Snapshot, grow, remove, restore
from .offload import unhooked
from .prompt import expand_prompt, expanded_prompts, token_names, trigger_counts
from .registry import ENCODER_PAIRS, TOKENIZER_OF, Applied, EncoderSlot, Entry, encoder_slots

_keys = itertools.count(1)


# -- apply ---------------------------------------------------------------------------------------


def _load(items: Any, tokens: Any = None) -> list[Embedding]:
    """Embeddings from Embedding objects, paths, Hub repo ids, state dicts and tensors (a tensor is
    named by the token at its place in ``tokens``)."""
    from . import sources

    if isinstance(items, (Embedding, str, os.PathLike, Mapping)) or sources.is_tensor(items):
        items = [items]
    items = list(items)
    names = [tokens] if isinstance(tokens, str) else list(tokens) if isinstance(tokens, (list, tuple)) else [None] * len(items)
    out: list[Embedding] = []
    for i, item in enumerate(items):
        name = names[i] if len(names) == len(items) else None
        if isinstance(item, Embedding):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            text = os.fspath(item)
            if sources.looks_like_repo_id(text):
                out.extend(sources.from_hub(text, sources.HubOptions()))
            else:
                out.extend(sources.read_file(text))
        elif isinstance(item, Mapping):
            out.extend(sources.from_state_dict(dict(item), name))
        elif sources.is_tensor(item):
            if name is None:
                raise EmbkitError("a tensor carries no trigger word; pass tokens= (one per tensor)")
            out.append(sources.from_tensor(item, name))
        else:
            raise EmbkitError(f"cannot apply a {type(item).__name__}; pass Embedding objects, paths, Hub repo ids, state dicts or tensors")
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


def apply(pipe: Any, embeddings: Any, *, tokens: Any = None, validate: bool = True, encoders: Iterable[str] | None = None) -> Applied:
    """Load ``embeddings`` into ``pipe``: Embedding objects, paths (any format), Hub repo ids
    (``owner/name``: its ``learned_embeds.safetensors`` or ``.bin``, through the huggingface_hub
    cache), state dicts and tensors, alone or in a list.

    ``tokens`` overrides the trigger words: one string for one embedding, a list matching the
    embeddings, or a mapping from embedding name to trigger (a tensor needs one). ``encoders``
    names the encoder attributes to load into (``["text_encoder_2"]``); each embedding then goes
    into those it has vectors for. By default every encoder of the pipeline, and an embedding must
    fill all its CLIP encoders (an SD1 file on SDXL is refused rather than half-applied).

    Every check runs before anything changes; on failure :class:`embkit.ValidationFailed` lists
    all problems and the pipeline is untouched. ``validate=False`` skips :func:`embkit.validate`
    and the value checks (never the structural ones: slots, widths, token names). Works under
    ``enable_model_cpu_offload()`` and ``enable_sequential_cpu_offload()``. Returns an
    :class:`Applied` describing what was added; :func:`unload` undoes it.
    """
    embs = _load(embeddings, tokens)
    triggers = _trigger_names(embs, tokens)
    return _apply(pipe, embs, triggers, validate, tuple(encoders) if encoders is not None else None)


def _apply(pipe: Any, embs: list[Embedding], triggers: list[str], validate: bool, encoders: tuple[str, ...] | None, key: int | None = None) -> Applied:
    registry.notice(pipe)
    slots = encoder_slots(pipe)
    if encoders is not None:
        unknown = [e for e in encoders if e not in {s.encoder for s in slots}]
        if unknown:
            raise EmbkitError(f"{type(pipe).__name__} has no text encoder {', '.join(unknown)} (it has {', '.join(s.encoder for s in slots)})")
        slots = [s for s in slots if s.encoder in encoders]
    with unhooked(pipe, [s.encoder for s in encoder_slots(pipe)]):
        plan, warnings = check(pipe, embs, triggers, slots, validate, lenient=encoders is not None)
        applied = Applied(embeddings=tuple(embs), triggers={e.name: t for e, t in zip(embs, triggers)}, warnings=tuple(warnings), key=key or next(_keys))
        snapshots: dict[str, Snapshot] = {}
        try:
            for s in slots:
                if plan[s.encoder]:
                    rows = _rows_for(embs, s.slot)
                    snapshots[s.encoder] = _grow(pipe, s, plan[s.encoder], rows, applied)
        except BaseException:
            for enc_attr, snap in snapshots.items():
                restore(getattr(pipe, TOKENIZER_OF[enc_attr]), getattr(pipe, enc_attr), snap)
            raise
    for enc_attr, snap in snapshots.items():
        registry.remember_eos(pipe, enc_attr, snap)
    registry.entries(pipe).append(Entry(applied, snapshots, encoders=encoders))
    registry.left(pipe, snapshots)
    return applied


def _rows_for(embs: list[Embedding], slot: str) -> Any:
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


# -- unload --------------------------------------------------------------------------------------


def unload(pipe: Any, applied_or_tokens: Applied | str | Iterable[str] | None = None) -> list[str]:
    """Remove what :func:`apply` added: everything (``None``), one :class:`Applied`, or the embeddings
    whose trigger words are given. Returns the triggers removed.

    Only embkit's tokens leave; tokens loaded by other means (diffusers' own
    ``load_textual_inversion``) stay, before or after embkit's, in any order. While nobody else
    changed an encoder since, it goes back exactly to its state before (tokenizer, matrix size and
    rows, ``config.vocab_size``, the legacy end-token id) and embeddings applied later stay
    applied; otherwise embkit's tokens and rows are taken out by name and the ids after them close
    up, as diffusers' ``unload_textual_inversion`` does. Works under CPU offload."""
    registry.notice(pipe)
    entries = registry.entries(pipe)
    if not entries:
        registry.settle(pipe)
        return []
    if applied_or_tokens is None:
        doomed = {id(e): set(e.applied.triggers.values()) for e in entries}
    elif isinstance(applied_or_tokens, Applied):
        doomed = {id(e): set(e.applied.triggers.values()) for e in entries if e.applied.key == applied_or_tokens.key}
        if not doomed:
            raise EmbkitError("this Applied is not (or no longer) applied to the pipeline")
    else:
        wanted = {applied_or_tokens} if isinstance(applied_or_tokens, str) else set(applied_or_tokens)
        doomed = {id(e): wanted & set(e.applied.triggers.values()) for e in entries}
        doomed = {k: v for k, v in doomed.items() if v}
        unknown = wanted - set().union(*doomed.values()) if doomed else wanted
        if unknown:
            raise EmbkitError(f"no embedding applied under trigger {', '.join(sorted(unknown))}")
    first = min(i for i, e in enumerate(entries) if id(e) in doomed)
    later = entries[first:]
    touched = list(dict.fromkeys(enc for e in later for enc in e.applied.tokens))
    with unhooked(pipe, touched):
        if any(e.stale for e in later):
            removed = _take_out(pipe, [(e, doomed.get(id(e), set())) for e in later])
        else:
            removed = _restore_and_replay(pipe, later, doomed)
    registry.refresh_ids(pipe)
    registry.left(pipe, [enc for enc in touched if getattr(pipe, enc, None) is not None])
    registry.settle(pipe)
    return removed


def _restore_and_replay(pipe: Any, later: list[Entry], doomed: dict[int, set[str]]) -> list[str]:
    """The exact path: restore each encoder from the snapshot of the first undone apply that
    touched it, then apply again what should stay, under the same keys."""
    entries = registry.entries(pipe)
    restored: set[str] = set()
    for entry in later:
        for enc_attr, snap in entry.snapshots.items():
            if enc_attr not in restored:
                restore(getattr(pipe, TOKENIZER_OF[enc_attr]), getattr(pipe, enc_attr), snap)
                restored.add(enc_attr)
    registry.left(pipe, restored)  # this state is embkit's own, not someone else's change
    del entries[len(entries) - len(later):]
    removed: list[str] = []
    everything = tuple(s.encoder for s in encoder_slots(pipe))
    for entry in later:
        gone = doomed.get(id(entry), set())
        removed.extend(t for t in entry.applied.triggers.values() if t in gone)
        keep = [e for e in entry.applied.embeddings if entry.applied.triggers[e.name] not in gone]
        if keep:
            again = _apply(pipe, keep, [entry.applied.triggers[e.name] for e in keep], False, entry.encoders or everything, key=entry.applied.key)
            # the caller's Applied object stays the live record
            entry.applied.__dict__.update({k: getattr(again, k) for k in ("embeddings", "triggers", "tokens", "ids", "counts")})
            newest = registry.entries(pipe)[-1]  # (the registry list is new if it was emptied meanwhile)
            newest.applied, newest.encoders = entry.applied, entry.encoders
    return removed


def _take_out(pipe: Any, doomed: list[tuple[Entry, set[str]]]) -> list[str]:
    """The path after someone else changed an encoder: remove embkit's tokens of the doomed
    triggers by name, from every encoder that holds them."""
    removed: list[str] = []
    by_encoder: dict[str, set[str]] = {}
    for entry, gone in doomed:
        removed.extend(t for t in entry.applied.triggers.values() if t in gone)
        for enc_attr in entry.applied.tokens:
            counts = entry.applied.counts.get(TOKENIZER_OF[enc_attr], {})
            by_encoder.setdefault(enc_attr, set()).update(tok for t in gone if t in counts for tok in token_names(t, counts[t]))
    for enc_attr, tokens in by_encoder.items():
        if tokens:
            remove_tokens(pipe, enc_attr, tokens)
    return removed


def remove_tokens(pipe: Any, enc_attr: str, tokens: Iterable[str] | None = None) -> list[str]:
    """Take tokens out of one encoder, whoever added them (``None``: every added token that is not
    special, as diffusers' ``unload_textual_inversion()`` does), and keep embkit's records true.
    Returns the tokens removed."""
    registry.notice(pipe)
    tokenizer, encoder = getattr(pipe, TOKENIZER_OF[enc_attr]), getattr(pipe, enc_attr)
    if tokens is None:
        tokens = [t.content for t in tokenizer.added_tokens_decoder.values() if not t.special]
    with unhooked(pipe, [enc_attr]):
        gone = remove(tokenizer, encoder, list(tokens))
    for entry in registry.entries(pipe):
        if enc_attr in entry.snapshots:
            entry.stale.add(enc_attr)  # renumbered: the snapshots no longer describe the state
    for entry in registry.touching(pipe, enc_attr):
        if set(entry.applied.tokens[enc_attr]) & set(gone):
            registry.forget(pipe, entry, enc_attr, gone)
    registry.refresh_ids(pipe)
    registry.left(pipe, [enc_attr])
    registry.settle(pipe)
    return gone


def applied(pipe: Any) -> list[Applied]:
    """The :class:`Applied` records currently in ``pipe``, oldest first (tokens that someone else
    removed meanwhile are no longer listed; ids are as the tokenizers number them now)."""
    registry.notice(pipe)
    registry.refresh_ids(pipe)
    return [e.applied for e in registry.entries(pipe)]


__all__ = ["apply", "unload", "applied", "remove_tokens", "Applied", "EncoderSlot", "encoder_slots", "expanded_prompts",
           "expand_prompt", "trigger_counts", "ENCODER_PAIRS"]

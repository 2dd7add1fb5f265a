"""Surgery on one text encoder: grow its tokenizer and embedding matrix by some tokens in one
resize, restore both exactly, or take some tokens out of whatever state they are in now.
:mod:`.apply` and :mod:`.unload` decide what to add and remove; this module only does it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import EmbkitError


@dataclass
class Snapshot:
    """The state of one encoder before an apply: enough to put it back exactly."""

    backend: Any  # the tokenizer's original tokenizers.Tokenizer object
    rows: int
    vocab_size: Any
    overwritten: dict  # id → original row, for ids that fell inside the old matrix (T5's padding rows)
    eos: Any = None  # the CLIP text model's legacy eos_token_id (2), when apply corrected it


def grow(tokenizer: Any, encoder: Any, new_tokens: list[str], vectors: Any, name: str = "tokenizer") -> tuple[Snapshot, list[int]]:
    """Add ``new_tokens`` to ``tokenizer`` and their rows (``vectors``, one per token) to
    ``encoder``'s matrix, in one resize. Returns what :func:`restore` needs, and the new ids. On
    failure nothing is left changed."""
    import torch
    from tokenizers import AddedToken, Tokenizer

    old_backend = tokenizer._tokenizer
    old_module = encoder.get_input_embeddings()
    old_weight = old_module.weight
    rows, width = old_weight.shape
    snap = Snapshot(backend=old_backend, rows=rows, vocab_size=getattr(encoder.config, "vocab_size", None), overwritten={})
    # Work on a copy of the Rust tokenizer: unload puts the original object back, bit for bit.
    backend = Tokenizer.from_str(old_backend.to_str())
    set_backend(tokenizer, backend)
    try:
        # single_word: a trigger inside another word is not a trigger, as in embkit.prompt.expand.
        tokenizer.add_tokens([AddedToken(t, single_word=True, normalized=True) for t in new_tokens])
        ids = [backend.token_to_id(t) for t in new_tokens]
        if any(i is None for i in ids):
            raise EmbkitError(f"{name} did not accept the tokens {new_tokens}")
        new_rows = max(rows, max(ids) + 1)
        with torch.no_grad():
            weight = torch.empty(new_rows, width, dtype=old_weight.dtype, device=old_weight.device)
            weight[:rows] = old_weight
            weight[rows:] = 0  # rows between the old end and a new id, if the tokenizer skipped any
            index = torch.tensor(ids, dtype=torch.long, device=old_weight.device)
            for i in ids:
                if i < rows:  # T5 pads its matrix past the vocabulary; keep what we overwrite
                    snap.overwritten[i] = old_weight[i].detach().clone()
            weight[index] = torch.from_numpy(vectors).to(device=old_weight.device, dtype=old_weight.dtype)
        set_matrix(encoder, old_module, weight)
        fix_legacy_eos(encoder, tokenizer, snap)
    except BaseException:
        restore(tokenizer, encoder, snap)
        raise
    return snap, ids


def fix_legacy_eos(encoder: Any, tokenizer: Any, snap: Snapshot) -> None:
    """Point a CLIP text model with the legacy ``eos_token_id=2`` at the real end token (see below)."""
    # CLIP configs written before transformers PR #24773 (SD1.5's, SDXL's) say eos_token_id=2, and
    # then the pooled output is taken at input_ids.argmax(): with added tokens (ids above the real
    # end token) that is the trigger's position, not the end of the prompt, which corrupts SDXL's
    # pooled embedding. Point the text model at the tokenizer's real end token while applied.
    text_model = getattr(encoder, "text_model", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    if text_model is None or getattr(text_model, "eos_token_id", None) != 2 or eos in (None, 2):
        return
    snap.eos = (text_model.eos_token_id, encoder.config.eos_token_id)
    text_model.eos_token_id = eos
    encoder.config.eos_token_id = eos


def set_matrix(encoder: Any, like: Any, weight: Any) -> None:
    """Give ``encoder`` a new input-embedding module holding ``weight``, shaped like ``like``."""
    import torch

    module = torch.nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=like.padding_idx, _weight=weight, device=weight.device, dtype=weight.dtype)
    module.weight.requires_grad_(like.weight.requires_grad)
    encoder.set_input_embeddings(module)
    if getattr(encoder.config, "vocab_size", None) is not None:
        encoder.config.vocab_size = int(weight.shape[0])


def restore(tokenizer: Any, encoder: Any, snap: Snapshot) -> None:
    """Put one tokenizer and its encoder's matrix back exactly as :func:`grow` found them."""
    import torch

    set_backend(tokenizer, snap.backend)
    current = encoder.get_input_embeddings()
    with torch.no_grad():
        weight = current.weight[: snap.rows].detach().clone()
        for i, row in snap.overwritten.items():
            weight[i] = row
    set_matrix(encoder, current, weight)
    if snap.vocab_size is not None:
        encoder.config.vocab_size = snap.vocab_size
    if snap.eos is not None:
        encoder.text_model.eos_token_id, encoder.config.eos_token_id = snap.eos


def set_backend(tokenizer: Any, backend: Any) -> None:
    """Give a transformers fast tokenizer another ``tokenizers.Tokenizer`` object."""
    tokenizer._tokenizer = backend
    if hasattr(tokenizer, "_wrap_decode_method_backend_tokenizer"):
        tokenizer._wrap_decode_method_backend_tokenizer()


def state(tokenizer: Any, encoder: Any) -> tuple[Any, ...]:
    """What an encoder's state is made of: the Rust tokenizer and the embedding module (objects),
    the number of tokens and of rows. When all four are what embkit left, nobody else has changed
    the encoder since: diffusers' loader adds tokens to the same tokenizer object and resizes the
    same module in place (transformers keeps it), so the sizes are part of the state."""
    module = encoder.get_input_embeddings()
    backend = tokenizer._tokenizer
    return backend, module, backend.get_vocab_size(with_added_tokens=True), int(module.weight.shape[0])


def remove(tokenizer: Any, encoder: Any, tokens: Any) -> list[str]:
    """Take ``tokens`` (those of them that are added tokens now) out of ``tokenizer`` and their rows
    out of ``encoder``'s matrix, whoever added them, renumbering the tokens after them the way
    diffusers' ``unload_textual_inversion`` does. Other rows keep their values bit for bit. Returns
    the tokens removed."""
    import torch
    from tokenizers import Tokenizer

    wanted = set(tokens)
    data = json.loads(tokenizer._tokenizer.to_str())
    added = data.get("added_tokens", [])
    doomed = sorted(a["id"] for a in added if a["content"] in wanted and not a.get("special"))
    if not doomed:
        return []
    kept = [a for a in added if not (a["content"] in wanted and not a.get("special"))]
    for a in kept:  # the ids after a removed one close up
        a["id"] -= sum(1 for d in doomed if d < a["id"])
    data["added_tokens"] = kept
    removed = [a["content"] for a in sorted(added, key=lambda a: a["id"]) if a["id"] in set(doomed)]
    module = encoder.get_input_embeddings()
    weight = module.weight
    rows = int(weight.shape[0])
    padded = rows > int(tokenizer._tokenizer.get_vocab_size(with_added_tokens=True))
    with torch.no_grad():
        keep = torch.ones(rows, dtype=torch.bool, device=weight.device)
        keep[[d for d in doomed if d < rows]] = False
        new = weight[keep].detach().clone()
        if padded:
            # T5 pads its matrix past the vocabulary: keep its size (the padding rows are never looked up)
            new = torch.cat([new, new.new_zeros(rows - new.shape[0], new.shape[1])])
    set_backend(tokenizer, Tokenizer.from_str(json.dumps(data)))
    set_matrix(encoder, module, new)
    return removed

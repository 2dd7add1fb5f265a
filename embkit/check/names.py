"""Trigger-name checks of :func:`embkit.validate.validate`: the pitfalls of how hosts find a trigger
in a prompt.

- diffusers refuses a token that is already in the vocabulary, names extra vectors ``tok_1 …``,
  rewrites prompts with ``str.replace`` (a trigger inside another is corrupted) and, with CLIP's
  lower-casing fast tokenizer, never expands a multi-vector trigger that has capitals;
- A1111 matches the tokens a trigger is cut into, so a vocabulary word as trigger hijacks that word;
- CLIP lower-cases prompts, so two triggers that differ only by case are one trigger.
"""

from __future__ import annotations

import re
import shlex
import weakref
from dataclasses import replace
from typing import Iterable

from ..model.spec import ModelSpec
from ..schema import Embedding
from .findings import Finding
from ..model.vocab import clip_words


def _expanded(name: str, count: int) -> set[str]:
    """The names diffusers gives rows 2…n of a multi-vector trigger."""
    return {f"{name}_{i}" for i in range(1, count)}


#: Embedding → (name, vector count), so that checking N embeddings loaded together costs N² cheap
#: string tests rather than N² schema walks.
_COUNTS: "weakref.WeakKeyDictionary[Embedding, tuple[str, int]]" = weakref.WeakKeyDictionary()


def _others(loaded: Iterable[Embedding | str], exclude: Embedding) -> list[tuple[str, int]]:
    out = []
    for item in loaded:
        if item is exclude:
            continue
        if isinstance(item, Embedding):
            pair = _COUNTS.get(item)
            if pair is None:
                pair = _COUNTS[item] = (item.name, item.num_vectors)
            out.append(pair)
        elif isinstance(item, str) and item:
            out.append((item, 1))
        elif isinstance(item, tuple) and len(item) == 2:
            out.append((str(item[0]), int(item[1])))
    return out


def _rename_fix(emb: Embedding, new: str) -> str:
    path = shlex.quote(emb.source.path) if emb.source else "IN"
    return f"embkit edit {path} -o OUT --rename {shlex.quote(new)}"


_FIX = re.compile(r"`embkit edit [^`]*`")

#: finding code → the pitfall (a ``Host.pitfalls`` entry, see :mod:`embkit.hosts`) it is about; a
#: host whose rules lack that pitfall is not concerned. Codes not listed concern every host.
CODE_PITFALLS = {
    "trigger-in-vocab": "vocab-token",
    "trigger-mixed-case": "mixed-case",
    "expanded-name-collision": "expanded-names",
    "trigger-prefix": "substring-replace",
    "trigger-case": "case-fold",
}


def check_names(emb: Embedding, spec: ModelSpec, loaded: Iterable[Embedding | str | tuple[str, int]], trigger: str | None = None) -> list[Finding]:
    """Findings about ``emb``'s trigger name against the target's vocabulary and ``loaded``.

    ``trigger`` is the word a host triggers the file by when it is not the embedding's name (A1111
    uses the file stem); the rename fixes are then left out, since renaming the embedding would
    not change it."""
    name, n = trigger or emb.name, emb.num_vectors
    out: list[Finding] = []
    if name != emb.name:
        # renaming the embedding would not change what this host types: the file name does
        how = "a new file name (this host triggers the file by its name, not the embedding's)"
        return [replace(f, fix=None, message=_FIX.sub(how, f.message)) for f in check_names(emb.replace(name=name), spec, loaded)]
    vocab = next((spec.slots[s].vocab for s in ("clip_l", "clip_h", "clip_g") if s in spec.slots and spec.slots[s].vocab is not None), None)
    fresh = f"<{name.lower()}>"
    if vocab is None:
        out.append(
            Finding(
                "vocab-unavailable",
                "info",
                f"{spec.describe()} comes without a tokenizer, so the trigger was not checked against its vocabulary; pass a model folder or pipeline for that.",
            )
        )
    elif _in_vocab(vocab, name):
        fix = _rename_fix(emb, fresh)
        out.append(
            Finding(
                "trigger-in-vocab",
                "warning",
                f"trigger {name!r} is already a token of the target's vocabulary: diffusers refuses to load it "
                f"(\"already in tokenizer vocabulary\"), A1111 fires it wherever the word is typed. Rename it: `{fix}`.",
                fix=fix,
            )
        )
    pieces = vocab.tokenize(name) if vocab is not None and getattr(vocab, "can_tokenize", False) else clip_words(name)
    if len(pieces) > 1 or any(c.isspace() for c in name):
        spaced = any(c.isspace() for c in name)
        fix = _rename_fix(emb, "".join(name.split()).lower()) if spaced else None
        shown = " ".join(pieces[:12]) + (" …" if len(pieces) > 12 else "")
        msg = f"trigger {name!r} is {len(pieces)} tokens to the tokenizer ({shown}): A1111 matches that token sequence, diffusers adds it as one new token."
        if spaced:
            msg += f" Its whitespace breaks ComfyUI's `embedding:NAME` syntax and is easy to mistype; rename it: `{fix}`."
        out.append(Finding("trigger-split", "warning" if spaced else "info", msg, fix=fix))
    if n > 1 and name != name.lower():
        fix = _rename_fix(emb, name.lower())
        out.append(
            Finding(
                "trigger-mixed-case",
                "warning",
                f"multi-vector trigger {name!r} has capitals: CLIP's fast tokenizer lower-cases the prompt, so diffusers' prompt rewriting never "
                f"finds {name!r} and only one of its {n} vectors is used. Use a lower-case trigger: `{fix}` (or embkit.diffusers' prompt helper).",
                fix=fix,
            )
        )
    mine = _expanded(name, n)
    if vocab is not None:
        taken = sorted(t for t in mine if t in vocab)
        if taken:
            fix = _rename_fix(emb, fresh)
            out.append(Finding("expanded-name-collision", "warning", f"the extra-vector names {', '.join(taken)} are already tokens of the target's vocabulary: diffusers refuses to load it. Rename it: `{fix}`.", fix=fix))
    low = name.lower()
    for other, count in _others(loaded, emb):
        other_low = other.lower()
        # every pair finding needs one name to contain the other, ignoring case: test that first
        if low in other_low or other_low in low:
            out += _pair(emb, name, n, mine, other, count)
    return out


def _in_vocab(vocab, name: str) -> bool:
    has_word = getattr(vocab, "has_word", None)
    if has_word is not None:
        return has_word(name)
    low = name.lower()
    return name in vocab or low in vocab or low + "</w>" in vocab


def _pair(emb: Embedding, name: str, n: int, mine: set[str], other: str, count: int) -> list[Finding]:
    out: list[Finding] = []
    if other == name:
        fix = _rename_fix(emb, name + "_2")
        out.append(Finding("trigger-duplicate", "warning", f"another loaded embedding is also triggered by {name!r}: only one of them loads (which one depends on the host). Rename one: `{fix}`.", fix=fix))
        return out
    if other.lower() == name.lower():
        fix = _rename_fix(emb, name.lower() + "_alt")
        out.append(
            Finding(
                "trigger-case",
                "warning",
                f"trigger {name!r} differs from the loaded {other!r} only by case: CLIP lower-cases prompts, so both are the same trigger and one shadows the other. Rename one: `{fix}`.",
                fix=fix,
            )
        )
        return out
    shorter, longer, short_n = (name, other, n) if len(name) < len(other) else (other, name, count)
    if shorter in longer:
        # str.replace only rewrites multi-vector triggers, so a single-vector one inside another is harmless today
        severity = "warning" if short_n > 1 else "info"
        effect = f"a prompt holding both corrupts {longer!r}" if short_n > 1 else f"harmless while {shorter!r} has one vector, broken once it has more"
        fix = _rename_fix(emb, f"<{name}>") if shorter == name else None
        how = f"`{fix}`" if fix else f"rename {other!r}"
        out.append(
            Finding(
                "trigger-prefix",
                severity,
                f"trigger {shorter!r} is part of {longer!r}: diffusers expands multi-vector triggers with str.replace, so {effect}. "
                f"Rename so neither contains the other: {how}.",
                fix=fix,
            )
        )
    else:
        return out  # any expanded-name clash needs one name to contain the other
    theirs = {other} | _expanded(other, count)
    clash = sorted((mine & theirs) | ({name} & _expanded(other, count)))
    if clash:
        fix = _rename_fix(emb, f"<{name}>")
        out.append(
            Finding(
                "expanded-name-collision",
                "warning",
                f"diffusers names extra vectors TRIGGER_1, TRIGGER_2 …: {name!r} ({n} vectors) and {other!r} ({count}) both need "
                f"{', '.join(clash)}, so the second load fails or overwrites the first. Rename one: `{fix}`.",
                fix=fix,
            )
        )
    return out

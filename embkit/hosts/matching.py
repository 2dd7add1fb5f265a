"""When two trigger names get in each other's way, under each host's prompt matching rule.

* ``token-ids`` (A1111, Forge): a name is registered as its CLIP token ids and the prompt is
  matched longest first. CLIP cuts text into pieces before BPE (letters, single digits, runs of
  punctuation) and each piece is encoded on its own, so one name's ids start another's exactly
  when its pieces start the other's: ``whatever-200`` (``whatever - 2 0 0``) is inside
  ``whatever-2000``, ``style`` is not inside ``styles``. Both load and the longer wins where
  typed; but when the longer is skipped (another model family) typing it applies the shorter and
  a stray ``0``. Case folds (CLIP lower-cases).
* ``added-tokens`` (diffusers, SD.Next) and ``whole-words`` (embkit): multi-vector triggers are
  expanded with ``str.replace`` (embkit: whole words), so one name inside another corrupts it.
* ``embedding-syntax`` (ComfyUI) and ``angle-brackets`` (InvokeAI): the name is typed whole, so
  only an identical name collides.
"""

from __future__ import annotations

import functools

from ..model.vocab import clip_words


@functools.lru_cache(maxsize=4096)
def pieces(name: str) -> tuple[str, ...]:
    """The pieces CLIP cuts a name into before BPE (lower case)."""
    return tuple(clip_words(name))


def token_prefix(short: str, long: str) -> bool:
    """True when ``short``'s CLIP token ids are a proper prefix of ``long``'s."""
    a, b = pieces(short), pieces(long)
    return bool(a) and len(a) < len(b) and b[: len(a)] == a


def same(rule_folds_case: bool, a: str, b: str) -> bool:
    """Whether two names are one trigger to a host (case folded where the host folds it)."""
    return a.lower() == b.lower() if rule_folds_case else a == b


def inside(matching: str, short: str, long: str) -> bool:
    """Whether ``short`` gets in ``long``'s way under the matching rule (``short`` ≠ ``long``)."""
    if matching == "token-ids":
        return token_prefix(short, long)
    if matching in ("added-tokens", "whole-words"):
        return short.lower() != long.lower() and long.lower().startswith(short.lower())
    return False


def explain(matching: str, short: str, long: str) -> str:
    """Why ``short`` is in ``long``'s way, in the words of the rule."""
    if matching == "token-ids":
        return (
            f"{short!r} is the start of {long!r} in CLIP tokens: matching picks the longest loaded name, so typing {long!r} "
            f"while it is not loaded (skipped on this model) applies {short!r} and the rest as plain text"
        )
    return f"{short!r} is a prefix of {long!r}: prompt expansion with str.replace would corrupt the longer name"

"""Prompt expansion for multi-vector triggers, done right (torch-free).

A multi-vector embedding occupies several tokens. diffusers names them ``tok, tok_1, … tok_{n-1}`` and
its ``maybe_convert_prompt`` rewrites ``tok`` into ``tok tok_1 …`` with ``str.replace``. That breaks in
two common cases (see FORMATS.md):

* a trigger that is a prefix of another word or trigger (``tok`` inside ``tok2`` or inside an already
  expanded ``tok_1``) is rewritten inside it;
* CLIP tokenizers lower-case the prompt before matching, so diffusers finds ``easynegative`` in the
  token list but ``str.replace`` looks for that lower-case string in the original, mixed-case prompt and
  expands nothing.

:func:`expand` matches triggers the way CLIP does: case-insensitively, as whole words (not preceded or
followed by a letter, digit or underscore, the rule the tokenizers library uses for ``single_word``
tokens, which is how :func:`embkit.diffusers.apply` registers them), longest trigger first. It is
idempotent: an already expanded ``tok tok_1 tok_2`` is left as it is.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, Mapping

from ..errors import OperationError


def token_names(trigger: str, count: int) -> list[str]:
    """The tokens a trigger of ``count`` vectors occupies: ``[trigger, trigger_1, …]`` (diffusers' naming)."""
    return [trigger] + [f"{trigger}_{i}" for i in range(1, max(int(count), 1))]


def _pattern(triggers: Mapping[str, int]) -> re.Pattern[str]:
    seen: dict[str, str] = {}
    for trigger in triggers:
        if not trigger or not trigger.strip():
            raise OperationError("a trigger must be a non-empty word")
        key = trigger.casefold()
        if key in seen and seen[key] != trigger:
            # CLIP lower-cases prompts: two triggers that differ only in case are the same word to it.
            raise OperationError(f"triggers {seen[key]!r} and {trigger!r} differ only in case; CLIP cannot tell them apart")
        seen[key] = trigger
    alternatives = []
    # Longest first, so that "<emb>-v2" wins over "<emb>" at the same position.
    for trigger in sorted(triggers, key=lambda t: (-len(t), t)):
        count = int(triggers[trigger])
        body = re.escape(trigger)
        if count > 1:
            # An already expanded run is consumed whole, which makes expand() idempotent.
            tail = "".join(rf"\s+{re.escape(trigger)}_{i}" for i in range(1, count))
            body += f"(?:{tail})?"
        alternatives.append(f"(?P<t{len(alternatives)}>{body})")
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def expand(prompt: str, triggers: Mapping[str, int]) -> str:
    """Rewrite every multi-vector trigger in ``prompt`` into its tokens.

    ``triggers`` maps each trigger word to its number of vectors. A trigger matches case-insensitively
    and only as a whole word; the longest trigger wins where several could match. The case the user
    typed is kept (``EasyNegative`` → ``EasyNegative EasyNegative_1 …``); CLIP lower-cases anyway.
    Single-vector triggers and everything else are left untouched.

        >>> expand("a photo, (EasyNegative:1.2), tok2", {"easynegative": 3, "tok": 2, "tok2": 1})
        'a photo, (EasyNegative EasyNegative_1 EasyNegative_2:1.2), tok2'
    """
    if not triggers or not prompt:
        return prompt
    ordered = sorted(triggers, key=lambda t: (-len(t), t))
    pattern = _pattern(triggers)

    def replace(match: re.Match[str]) -> str:
        index = int(match.lastgroup[1:])
        count = int(triggers[ordered[index]])
        typed = match.group(0).split()[0]
        return " ".join(token_names(typed, count))

    return pattern.sub(replace, prompt)


def find(prompt: str, triggers: Mapping[str, int] | list[str]) -> list[str]:
    """The triggers that occur in ``prompt`` as whole words (case-insensitive), in trigger order."""
    counts = triggers if isinstance(triggers, Mapping) else {t: 1 for t in triggers}
    if not counts or not prompt:
        return []
    ordered = sorted(counts, key=lambda t: (-len(t), t))
    found = {ordered[int(m.lastgroup[1:])] for m in _pattern(counts).finditer(prompt)}
    return [t for t in counts if t in found]


# -- with a tokenizer or a pipeline (still torch-free: only tokenizer attributes are read) --


def trigger_counts(tokenizer: Any) -> dict[str, int]:
    """Trigger → vectors for every multi-token trigger in a tokenizer, read from its added tokens the
    way diffusers names them (``tok, tok_1, …``); works for tokens diffusers loaded too."""
    names = [t.content for t in tokenizer.added_tokens_decoder.values() if not t.special]
    have = set(names)
    counts: dict[str, int] = {}
    for name in names:
        m = re.fullmatch(r"(.+)_(\d+)", name)
        if m and m.group(1) in have:
            continue
        n = 1
        while f"{name}_{n}" in have:
            n += 1
        counts[name] = n
    return counts


def expand_prompt(pipe: Any, prompt: str, tokenizer: str = "tokenizer") -> str:
    """``prompt`` expanded for the multi-vector triggers in one of ``pipe``'s tokenizers."""
    return expand(prompt, trigger_counts(getattr(pipe, tokenizer)))


@contextlib.contextmanager
def expanded_prompts(pipe: Any) -> Iterator[Any]:
    """Within this block, ``pipe`` expands prompts with :func:`embkit.prompt.expand` instead of
    diffusers' ``str.replace`` (mixed case and prefix triggers work). Only this pipeline object is
    affected, and only inside the block.

        with embkit.diffusers.expanded_prompts(pipe):
            image = pipe("a photo, EasyNegative").images[0]
    """

    def convert(prompt: Any, tokenizer: Any) -> Any:
        counts = trigger_counts(tokenizer)
        if isinstance(prompt, list):
            return [expand(p, counts) for p in prompt]
        return expand(prompt, counts)

    had = "maybe_convert_prompt" in pipe.__dict__
    previous = pipe.__dict__.get("maybe_convert_prompt")
    pipe.__dict__["maybe_convert_prompt"] = convert
    try:
        yield pipe
    finally:
        if had:
            pipe.__dict__["maybe_convert_prompt"] = previous
        else:
            pipe.__dict__.pop("maybe_convert_prompt", None)


__all__ = ["expand", "find", "token_names", "trigger_counts", "expand_prompt", "expanded_prompts"]

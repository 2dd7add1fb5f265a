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

import re
from typing import Mapping

from .errors import OperationError


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


__all__ = ["expand", "find", "token_names"]

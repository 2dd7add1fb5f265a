"""diffusers SDXL pairs: one embedding in two files, one per text encoder.

diffusers' ``examples/textual_inversion/textual_inversion_sdxl.py`` saves the CLIP-L rows as
``learned_embeds.safetensors`` and the CLIP-G rows as ``learned_embeds_2.safetensors``, each a
one-key diffusers dict under the same placeholder token (``{token: T[n, 768]}`` and
``{token: T[n, 1280]}``, metadata ``{"format": "pt"}``); its checkpoints are
``learned_embeds-steps-N.safetensors`` and ``learned_embeds_2-steps-N.safetensors``
(diffusers@58eb52c080:examples/textual_inversion/textual_inversion_sdxl.py:179-191, 998-1017,
1100-1120). ``embkit.write(..., sdxl_two_files=True)`` writes the same pair (``<name>`` and
``<name>_2``). Under mixed precision the second file is usually bf16 while the first stays fp32.

This module knows the names and when two parsed files make one embedding; :mod:`embkit.io` reads
the files.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

from .base import Part

#: ``<base>[-steps-N]`` → the second file is ``<base>_2[-steps-N]`` with the same extension.
_STEPS = re.compile(r"^(?P<base>.+?)(?P<steps>-steps-\d+)?$", re.DOTALL)
_SECOND = re.compile(r"^(?P<base>.+)_2(?P<steps>-steps-\d+)?$", re.DOTALL)
#: The two slots, in file order.
SLOTS = ("clip_l", "clip_g")


def second_path(first: str) -> str:
    """The CLIP-G file that goes with a CLIP-L file: ``x.safetensors`` → ``x_2.safetensors``,
    ``learned_embeds-steps-500.safetensors`` → ``learned_embeds_2-steps-500.safetensors``."""
    folder, name = os.path.split(first)
    stem, ext = os.path.splitext(name)
    m = _STEPS.match(stem)
    base, steps = (m.group("base"), m.group("steps") or "") if m else (stem, "")
    return os.path.join(folder, f"{base}_2{steps}{ext}")


def first_path(second: str) -> str | None:
    """The CLIP-L file a ``…_2`` file goes with, or ``None`` when the name is not a second's."""
    folder, name = os.path.split(second)
    stem, ext = os.path.splitext(name)
    m = _SECOND.match(stem)
    if m is None:
        return None
    return os.path.join(folder, f"{m.group('base')}{m.group('steps') or ''}{ext}")


def stored_token(part: Part) -> str:
    """The token a diffusers file stores (a concept folder's part is renamed by its text file)."""
    stored = part.metadata.get("stored_name")
    return stored if isinstance(stored, str) else part.name


def join(first: list[Part], second: list[Part]) -> Part | None:
    """The one SDXL part two parsed files make: each holds one embedding, the first CLIP-L rows and
    the second CLIP-G rows, under the same token. ``None`` when they are not such a pair."""
    if len(first) != 1 or len(second) != 1:
        return None
    a, b = first[0], second[0]
    if set(a.tensors) != {"clip_l"} or set(b.tensors) != {"clip_g"} or stored_token(a) != b.name:
        return None
    metadata = {**b.metadata, **a.metadata}
    return Part(name=a.name, tensors={"clip_l": a.tensors["clip_l"], "clip_g": b.tensors["clip_g"]}, metadata=metadata,
                member=None, warnings=[*a.warnings, *b.warnings])


def pair_up(loaded: Any, open_alone: Callable[[str], Any], open_whole: Callable[[str], Any], present: Any = None) -> Any:
    """A file read from disk (``embkit.io.Loaded``), joined with the other half of its pair when
    that lies beside it: the first (CLIP-L) file takes in its ``_2`` file (``open_alone`` reads
    it without looking further); a second (CLIP-G) file named on its own gives the pair as its first
    file does (``open_whole``). A partner that cannot be read leaves a warning, not an error.
    ``present``, when given, holds the names beside the file a walk found (a partner not among them
    is not looked for)."""
    from ..errors import EmbkitError

    if loaded.format.id not in ("diffusers", "concept-folder") or len(loaded.parts) != 1:
        return loaded
    part = loaded.parts[0]
    if set(part.tensors) == {"clip_l"}:
        other = second_path(loaded.file)
        if (present is not None and os.path.basename(other) not in present) or not os.path.isfile(other):
            return loaded
        try:
            second = open_alone(other)
        except EmbkitError as exc:
            part.warnings.append(f"{os.path.basename(other)} beside it could not be read ({exc.code}): read as CLIP-L only")
            return loaded
        joined = join(loaded.parts, second.parts) if second.format.id == "diffusers" else None
        if joined is not None:
            loaded.parts, loaded.pair, loaded.pair_data = [joined], other, second.data
        return loaded
    first = first_path(loaded.file) if set(part.tensors) == {"clip_g"} else None
    if first is None:
        return loaded
    if not os.path.isfile(first):
        part.warnings.append(f"looks like the CLIP-G half of a diffusers SDXL pair, but its CLIP-L half {os.path.basename(first)} is not beside it")
        return loaded
    try:
        whole = open_whole(first)
    except EmbkitError:
        return loaded
    if whole.pair is not None and os.path.samefile(whole.pair, loaded.file):
        return whole  # the pair, as reading its first file gives it
    return loaded


__all__ = ["pair_up", "second_path", "first_path", "join", "stored_token", "SLOTS"]

"""Which layout to write, worked out from the hosts table.

* :func:`portable_format`: the layout embkit writes when none is asked for. Every host that
  loads it must trigger it by the same word, the file stem (which embkit also stores as the token
  or A1111 name); among those, the one the most hosts load. For one text encoder that is A1111's
  ``.pt`` (every host, the stem everywhere) and, in safetensors, the diffusers layout keyed by the
  stem (kohya's ``emb_params`` is the token diffusers would use; InvokeAI cannot install a 2-D
  diffusers tensor, so it is the one host left out); for SDXL, the encoder-keyed layout.
* :func:`best_format`: the layout and container a host loads best (``convert --for``).
* :func:`check_written`: what a host does with a planned file, from its bytes.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ..schema import Embedding, family_for
from . import HOST_IDS, get_host
from .common import HostVerdict
from .facts import facts_from_record

#: Layouts that store the trigger inside the file (A1111's ``name``, diffusers' key): the writer's
#: ``token`` option sets it.
TOKEN_FORMATS = ("a1111", "diffusers")


def _shape_key(emb: Embedding) -> tuple[tuple[str, int], ...]:
    return tuple((s, int(emb.vectors[s].shape[1])) for s in emb.slots) + tuple((s, 0) for s in emb.output_slots)


def portable_format(emb: Embedding, container: str) -> str | None:
    """The format id every host triggers by the file stem, written in ``container``
    (``safetensors`` or ``pickle``); ``None`` when no layout of that container holds the embedding."""
    return _portable(_shape_key(emb), container)


@functools.lru_cache(maxsize=64)
def _portable(shape: tuple[tuple[str, int], ...], container: str) -> str | None:
    from ..formats import FORMATS

    slots = {s: (2, w) for s, w in shape}
    inputs = [s for s, w in shape if w]
    family = family_for(inputs)
    family = family if family != "unknown" else "sd1"
    best, best_score = None, -1
    for fmt in FORMATS:
        if fmt.writer is None or container not in fmt.write_containers:
            continue
        if fmt.slots == "one" and (len(inputs) != 1 or len(shape) != len(inputs)):
            continue  # it would drop a slot or output vectors
        ext = ".safetensors" if container == "safetensors" else ".pt"
        facts = facts_from_record(f"x{ext}", fmt.id, container, "x", slots, stored_name="x", metadata={"string_to_token": {"*": 265}})
        loads, agree = 0, True
        for h in HOST_IDS:
            if h == "embkit":
                continue
            row = get_host(h)
            reads = row.read(facts)
            v = row.apply(reads[0], family) if reads else None
            if v is None or not v.loads:
                continue
            loads += 1
            agree &= row.bare(v.trigger) == "x"
        if agree and loads > best_score:
            best, best_score = fmt.id, loads
    return best


def best_format(host: str, emb: Embedding, container: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """(format, container, writer options) that ``host`` loads best for this embedding: the
    host's preferred layout (``Host.writes``), or, when ``container`` is fixed (an output file's
    extension), the portable layout of that container."""
    row = get_host(host)
    two = {"clip_l", "clip_g"} <= set(emb.slots)
    fmt, cont = row.writes["sdxl" if two else "one"]
    options: dict[str, Any] = {}
    if container is not None and container != cont:
        fmt, cont = portable_format(emb, container) or fmt, container
    if fmt == "diffusers" and two:
        options["sdxl_two_files"] = True
    return fmt, cont, options


def check_written(host: str, path: str, data: Any, family: str | None, trigger: str | None) -> HostVerdict:
    """What ``host`` does with a file about to be written (its bytes), on ``family``; a
    verdict whose trigger is not ``trigger`` has a reason saying so."""
    import dataclasses

    from ..io import open_file
    from .facts import facts_from_loaded
    from .verdict import family_of

    if not isinstance(data, bytes):
        data = b"".join(data)
    facts = facts_from_loaded(open_file(path, data=data))
    row = get_host(host)
    reads = row.read(facts)
    v = row.apply(reads[0], family_of(family, facts))
    got = row.bare(v.trigger)
    if trigger is not None and v.loads and got != trigger:
        v = dataclasses.replace(v, status="error", reasons=(*v.reasons, f"{row.label} would trigger it as {got!r}, not {trigger!r}"))
    return v


def default_token(path: str, fmt: str) -> str | None:
    """The token a default-layout file stores: its stem, so every host types the same word
    (``learned_embeds*`` files keep the diffusers convention: the token is the trigger)."""
    if fmt not in TOKEN_FORMATS:
        return None
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return None if stem.lower().startswith("learned_embeds") else stem

"""The questions other code asks the hosts table: :func:`verdict` (does host H load this on model
family F, under which word, and why not), :func:`triggers` (the word per host) and :func:`where`
(on which families each host applies it). Torch-free; a path is read once (and cached by its
size and modification time), an :class:`~embkit.schema.Embedding` is answered from the file it was
read from, or from itself when it was built in memory.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Iterable

from ..schema import FAMILIES, JSON, Embedding, family_for
from . import HOST_IDS, get_host
from .common import HostVerdict, Read
from .facts import FileFacts, facts_from_embedding, facts_of

_CACHE: "OrderedDict[tuple, FileFacts]" = OrderedDict()
_CACHE_SIZE = 256


def facts_for(obj: Any, *, exact: bool = True) -> FileFacts:
    """FileFacts for a path, an Embedding or FileFacts. An embedding read from a file that is still
    there is answered from the file when ``exact`` (safe-loader facts need it), else from itself."""
    if isinstance(obj, FileFacts):
        return obj
    if isinstance(obj, Embedding):
        src = obj.source
        if exact and src is not None and os.path.exists(src.path):
            return _cached(src.path)
        return facts_from_embedding(obj)
    if isinstance(obj, (str, os.PathLike)):
        return _cached(os.path.expanduser(os.fspath(obj)))
    raise TypeError(f"hosts answer for a path, an Embedding or FileFacts, not a {type(obj).__name__}")


def _key(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def remember(loaded: Any) -> FileFacts:
    """The facts of a file :func:`embkit.io.open_file` opened, kept for later questions about it
    (``verify`` reads each file once for validation and the hosts alike)."""
    from .facts import facts_from_loaded

    facts = facts_from_loaded(loaded)
    key = _key(loaded.path)
    if key is not None:
        _CACHE[key] = facts
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return facts


def _cached(path: str) -> FileFacts:
    key = _key(path)
    if key is None:
        return facts_of(path)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = facts_of(path)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return found


def family_of(family_or_spec: Any, facts: FileFacts) -> str:
    """A family name from a family, a ModelSpec (its ``family``), or ``None``: the embedding's own
    family (SD1 when its slots match none)."""
    if family_or_spec is None:
        slots = facts.embkit[0][2] if facts.embkit else {}
        own = family_for(s for s in slots if not s.endswith("_out"))
        return own if own != "unknown" else "sd1"
    fam = getattr(family_or_spec, "family", family_or_spec)
    fam = str(fam).lower()
    if fam not in FAMILIES:
        raise ValueError(f"unknown model family {fam!r}; hosts answer for {', '.join(FAMILIES)}")
    return fam


def _name_of(read: Read, facts: FileFacts) -> str | None:
    for name, member, _slots in facts.embkit:
        if read.member is not None and member == read.member:
            return name
    return facts.embkit[0][0] if len(facts.embkit) == 1 else read.member


def verdicts(obj: Any, host: str, family_or_spec: Any = None) -> list[HostVerdict]:
    """One verdict per embedding ``host`` finds in the file (most files: one)."""
    facts = facts_for(obj)
    row = get_host(host)
    family = family_of(family_or_spec, facts)
    return [row.apply(r, family, _name_of(r, facts)) for r in row.read(facts)]


def _pick(found: list[HostVerdict], emb: Embedding | None) -> HostVerdict:
    if emb is not None and len(found) > 1:
        member = emb.source.member if emb.source is not None else None
        for v in found:
            if (member is not None and v.member == member) or v.name == emb.name:
                return v
    return found[0]


def verdict(obj: Any, host: str, family_or_spec: Any = None) -> HostVerdict:
    """What ``host`` does with ``obj`` (a path, an :class:`~embkit.schema.Embedding`, or
    :class:`FileFacts`) on a model family (a family name, a ModelSpec, or ``None`` for the
    embedding's own family): ``loads``, the ``trigger`` to type, the ``reasons`` it does not.
    For a file holding several embeddings, an Embedding picks its own; a path gives the first."""
    emb = obj if isinstance(obj, Embedding) else None
    return _pick(verdicts(obj, host, family_or_spec), emb)


def triggers(obj: Any, hosts: Iterable[str] | None = None) -> dict[str, str | None]:
    """``{host id: the exact text to type}`` (``None`` where nothing can be typed). Needs no file
    read for an Embedding: triggers follow from its name, format and file name."""
    emb = obj if isinstance(obj, Embedding) else None
    facts = facts_for(obj, exact=False)
    out: dict[str, str | None] = {}
    for host in hosts or HOST_IDS:
        row = get_host(host)
        reads = row.read(facts)
        pick = reads[0]
        if emb is not None and len(reads) > 1:
            member = emb.source.member if emb.source is not None else None
            pick = next((r for r in reads if r.member is not None and r.member == member), None) or next(
                (r for r in reads if r.trigger == emb.name), reads[0]
            )
        out[host] = pick.trigger
    return out


def every_family(obj: Any, hosts: Iterable[str] | None = None, *, embedding: Embedding | None = None) -> dict[str, dict[str, HostVerdict]]:
    """``{host: {family: verdict}}``: :func:`verdict` for every host and every model family, each
    host reading the file once (``embkit ingest`` records them all for every upload).
    ``embedding`` picks one embedding of a file that holds several."""
    emb = embedding if embedding is not None else obj if isinstance(obj, Embedding) else None
    facts = facts_for(obj)
    out: dict[str, dict[str, HostVerdict]] = {}
    for host in hosts or HOST_IDS:
        row = get_host(host)
        reads = row.read(facts)
        out[host] = {family: _pick([row.apply(r, family, _name_of(r, facts)) for r in reads], emb) for family in FAMILIES}
    return out


def where(obj: Any, hosts: Iterable[str] | None = None, *, embedding: Embedding | None = None) -> dict[str, dict[str, JSON]]:
    """For each host: the trigger and, per model family, the status and the encoders reached
    (``{"trigger": …, "families": {"sd1": {"status": "loads", "applied": ["clip_l"]}, …}}``).
    ``inspect`` prints it as "A1111: SD1; ComfyUI: SD1, SDXL's CLIP-L". ``embedding`` picks one
    embedding of a file that holds several (``obj`` may then be the file's FileFacts)."""
    out: dict[str, dict[str, Any]] = {}
    for host, by_family in every_family(obj, hosts, embedding=embedding).items():
        fams = {family: {"status": v.status, "applied": list(v.applied)} for family, v in by_family.items()}
        out[host] = {"trigger": by_family[list(FAMILIES)[-1]].trigger, "families": fams}
    return out


def summary(where_one: dict[str, Any]) -> str:
    """``SD1, SDXL's CLIP-L`` for one host's :func:`where` entry: the families it applies the
    embedding on, then those where only some encoders get it; ``nowhere`` when it never applies."""
    from .common import FAMILY_TITLES, SLOT_TITLES

    full = [FAMILY_TITLES[f] for f, v in where_one["families"].items() if v["status"] == "loads"]
    part = [f"{FAMILY_TITLES[f]}'s {'+'.join(SLOT_TITLES[s] for s in v['applied'])}" for f, v in where_one["families"].items() if v["status"] == "partial"]
    if not full and not part:
        return "nowhere"
    return ", ".join(full + part)

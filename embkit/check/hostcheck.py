"""Validation per host: trigger names checked as each host triggers the file, and what each host
does with it on the target (``host-*`` findings from :func:`embkit.hosts.verdict`).

A finding carries the hosts it concerns: the name checks run once per distinct trigger word, and
each finding goes to the hosts using that word whose matching rules have the pitfall it is about
(:data:`embkit.check.names.CODE_PITFALLS`, ``Host.pitfalls``): the mixed-case expansion bug is
diffusers' (and embkit's, whose apply sees the file the same way), not A1111's.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Any, Iterable

from ..hosts import get_host, triggers, verdict
from ..hosts.facts import facts_from_embedding
from ..hosts.matching import explain, token_prefix
from ..model.spec import ModelSpec
from ..schema import FAMILIES, Embedding
from .findings import CODES, STATUS_CODES, Finding
from .names import CODE_PITFALLS, check_names

#: Embedding → {host: (bare trigger, vector count)}: checking N embeddings loaded together asks N
#: times, not N².
_TRIGGERS: "weakref.WeakKeyDictionary[Embedding, dict[str, tuple[str | None, int]]]" = weakref.WeakKeyDictionary()


def _pairs(emb: Embedding, all_hosts: bool) -> dict[str, tuple[str | None, int]]:
    found = _TRIGGERS.get(emb)
    if found is None or (all_hosts and len(found) == 1):
        n = emb.num_vectors
        found = {"embkit": (emb.name, n)}
        if all_hosts:
            found.update({h: (get_host(h).bare(t), n) for h, t in triggers(emb).items() if h != "embkit"})
        _TRIGGERS[emb] = found
    return found


def bare_triggers(emb: Embedding) -> dict[str, str | None]:
    """host id → the name the host matches in a prompt (without ``embedding:`` or ``<>``)."""
    return {h: name for h, (name, _n) in _pairs(emb, True).items()}


def _others(loaded: Iterable[Any], emb: Embedding, host: str) -> tuple[tuple[str, int], ...]:
    out = []
    every = host != "embkit"
    for item in loaded:
        if item is emb:
            continue
        if isinstance(item, Embedding):
            name, count = _pairs(item, every).get(host, (None, 0))
            if name:
                out.append((name, count))
        elif isinstance(item, str) and item:
            out.append((item, 1))
        elif isinstance(item, tuple) and len(item) == 2:
            out.append((str(item[0]), int(item[1])))
    return tuple(out)


def host_names(emb: Embedding, spec: ModelSpec, loaded: Iterable[Any], host_ids: tuple[str, ...]) -> list[Finding]:
    """The trigger-name findings for every host asked, each naming the hosts it concerns."""
    loaded = list(loaded)
    mine = bare_triggers(emb) if any(h != "embkit" for h in host_ids) else {}
    groups: dict[tuple[str, Any], list[str]] = {}
    for h in host_ids:
        if h == "embkit":  # embkit names triggers as they are read: the loaded list as given
            groups.setdefault((emb.name, None), []).append(h)
            continue
        word = mine.get(h)
        if word:
            groups.setdefault((word, _others(loaded, emb, h)), []).append(h)
    out: list[Finding] = []
    for (word, others), hs in groups.items():
        for f in check_names(emb, spec, loaded if others is None else others, trigger=word if word != emb.name else None):
            pitfall = CODE_PITFALLS.get(f.code)
            concerned = tuple(h for h in hs if pitfall is None or pitfall in get_host(h).pitfalls)
            if concerned:
                out.append(replace(f, hosts=concerned))
        token_hosts = tuple(h for h in hs if "token-prefix" in get_host(h).pitfalls)
        for other, _count in others if token_hosts and others else ():
            for short, long in ((word, other), (other, word)):
                if token_prefix(short, long):
                    out.append(Finding("trigger-prefix", "info", explain("token-ids", short, long) + ". Rename one so neither starts the other.", hosts=token_hosts))
    return _merged(out)


def _merged(findings: list[Finding]) -> list[Finding]:
    """One finding per problem: the same finding for hosts checked apart gets their hosts together."""
    seen: dict[tuple, Finding] = {}
    for f in findings:
        key = (f.code, f.severity, f.message, f.slot, f.index, f.fix)
        old = seen.get(key)
        seen[key] = f if old is None else replace(old, hosts=old.hosts + tuple(h for h in f.hosts if h not in old.hosts))
    return list(seen.values())


def check_hosts(emb: Embedding, spec: ModelSpec, host_ids: tuple[str, ...]) -> tuple[list[Finding], dict[str, Any]]:
    """What each host does with the embedding on the target's family: a finding for each host
    that would skip, partly apply or fail on it, and the verdicts themselves."""
    family = spec.family if spec.family in FAMILIES else (emb.family if emb.family in FAMILIES else None)
    out: list[Finding] = []
    verdicts: dict[str, Any] = {}
    # embkit's own verdict needs only what embkit read; the other hosts need the file (its zip
    # members, 1-D tensors), read once and cached
    subject: Any = emb if any(h != "embkit" for h in host_ids) else facts_from_embedding(emb)
    for h in host_ids:
        row = get_host(h)
        if family is None:
            if h != "embkit":
                out.append(Finding("host-unknown", "info", f"{row.label}: the target is no known model family, so what it does was not worked out.", hosts=(h,)))
            continue
        v = verdict(subject, h, family)
        verdicts[h] = v
        if h == "embkit":
            continue  # embkit's own slot findings say it, with their fixes
        code = STATUS_CODES.get(v.status)
        if code is not None:
            why = "; ".join(v.reasons) or v.status
            out.append(Finding(code, CODES[code][0], f"{row.label}: {why}.", hosts=(h,)))
        old = [rel for rel, ok in v.releases.items() if not ok]
        if old and v.loads:
            note = next((n for n in v.notes if n.startswith("A1111 before")), f"{row.label} {', '.join(old)} refuses it")
            fix = _resave(emb)
            out.append(Finding("host-old-release", "warning", f"{note}. Re-save it with embkit, which writes only the members every release accepts: `{fix}`." if fix else note + ".", fix=fix, hosts=(h,)))
    return out, verdicts


def _resave(emb: Embedding) -> str | None:
    """``embkit convert`` in the same layout: embkit's ``.pt`` files hold only the zip members
    every A1111 release accepts."""
    import os
    import shlex

    src = emb.source
    if src is None:
        return None
    ext = os.path.splitext(src.path)[1] if src.container != "folder" else ""
    return f"embkit convert {shlex.quote(src.path)} -o OUT{ext} --to {src.format}"

"""Names that will confuse a host, worked out per host (embkit.hosts): the same trigger in several
files, names that differ only by case where the host folds case, names that get in each other's
way under the host's prompt matching, SD1 and SDXL versions kept under one name, and an A1111 file
whose stored name (what diffusers types) is not its file name (what A1111 types).

Triggers come from each host's own rule, computed from the library's rows: A1111 calls every
sd-concepts ``learned_embeds.bin`` ``learned_embeds``, so three of them are one trigger there
while diffusers sees three tokens. A group names the hosts it concerns; groups that are the same
for several hosts (A1111 and Forge share their rules) are reported once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from ..hosts import HOST_IDS, get_host
from ..hosts.facts import facts_from_entry
from ..hosts.matching import inside
from .queries import Entry, Group

#: Layouts whose stored name a host triggers by, while A1111 triggers the file by its stem: only
#: A1111's own layout, whose ``name`` field diffusers' ``load_textual_inversion`` takes as the
#: token. A kohya or multi file's ``stored_name`` (the name it had before embkit renamed it, kept
#: in its metadata) is read by no host: A1111 and ComfyUI use the file name, and diffusers reads no
#: safetensors metadata (a one-tensor file's token is its key, ``emb_params``). Image cards are
#: triggered by their stored name, so theirs never differs.
STORED_NAME_FORMATS = ("a1111",)
KINDS = ("same-trigger", "case", "prefix", "stored-name", "family-mix")

#: what happens when two files share a trigger, by host
SAME_NAME = {
    "a1111": "A1111 registers each and the file loaded last wins (folder walk order)",
    "forge": "Forge registers each and the file loaded last wins (folder walk order)",
    "comfyui": "which file embedding:NAME finds depends on the folder order (type embedding:FOLDER/NAME)",
    "invokeai": "InvokeAI refuses the trigger: 'more than one similarly-named textual inversion models'",
    "diffusers": "the second load_textual_inversion fails: the token is already in the vocabulary",
    "sdnext": "SD.Next keeps the last one registered",
    "embkit": "a host loads only one of them",
}


def entry_triggers(e: Entry, hosts: Iterable[str] = HOST_IDS) -> dict[str, str]:
    """host id → the name the host matches for this entry (only hosts that read the file)."""
    facts = facts_from_entry(e)
    out = {}
    for h in hosts:
        if h == "embkit":
            out[h] = e.name
            continue
        row = get_host(h)
        reads = row.read(facts)
        pick = next((r for r in reads if (r.member or "") == (e.member or "")), reads[0])
        # a name counts where the host reads the file, even if loading then fails (a safe-loader
        # refusal, InvokeAI's shape probe): the user sees and types that name
        if pick.status in (None, "error") and pick.trigger:
            out[h] = row.bare(pick.trigger) or pick.trigger
    return out


def conflicts(all_entries: list[Entry], hosts: Iterable[str] | None = None) -> list[Group]:
    """Every conflict among the entries for the hosts asked (all by default), grouped by kind in a
    fixed order; each group names the hosts it concerns."""
    host_ids = tuple(hosts) if hosts else HOST_IDS
    names = {e.id: entry_triggers(e, host_ids) for e in all_entries}
    found: dict[tuple, Group] = {}

    def add(kind: str, key: str, message: str, es: list[Entry], host: str) -> None:
        ident = (kind, key, message, tuple(sorted({e.id for e in es})))
        old = found.get(ident)
        found[ident] = Group(kind, key, message, tuple(es), (*old.hosts, host) if old else (host,))

    for h in host_ids:
        row = get_host(h)
        mine = [(names[e.id][h], e) for e in all_entries if h in names[e.id]]
        by_name: dict[str, list[Entry]] = defaultdict(list)
        by_fold: dict[str, list[Entry]] = defaultdict(list)
        for n, e in mine:
            by_name[n].append(e)
            by_fold[n.lower() if row.folds_case else n].append(e)
        for n, es in sorted(by_name.items()):
            if len({e.path for e in es}) > 1:
                add("same-trigger", n, f"trigger {n!r} is defined by {len(es)} files: {SAME_NAME.get(h, 'a host loads only one of them')}", es, h)
        if row.folds_case:
            for low, es in sorted(by_fold.items()):
                variants = sorted({n for n, e in mine if n.lower() == low})
                if len(variants) > 1:
                    add("case", low, f"names {', '.join(map(repr, variants))} differ only by case; tokenizers lower-case prompts", es, h)
        _prefixes(row.matching, by_fold, h, add)
        for key, es in sorted(by_fold.items()):
            fams = sorted({e.family for e in es})
            if len(fams) > 1:
                which = ", ".join(f"{f} ({sum(e.family == f for e in es)})" for f in fams)
                add("family-mix", key, f"{key!r} exists for several model families: {which}; a host skips the ones that do not fit its model", es, h)
    if {"a1111", "diffusers"} & set(host_ids):
        for e in all_entries:
            if e.format in STORED_NAME_FORMATS and e.stored_name and e.stored_name != e.name:
                msg = f"{e.path} is triggered as {e.name!r} by A1111 but as {e.stored_name!r} by diffusers (its stored name)"
                for h in ("a1111", "diffusers"):
                    if h in host_ids:
                        add("stored-name", e.name, msg, [e], h)
    return sorted(found.values(), key=lambda g: KINDS.index(g.kind))


def _prefixes(matching: str, by_fold: dict[str, list[Entry]], host: str, add) -> None:
    """Names in each other's way under the host's matching rule, the shorter name as the key."""
    if matching not in ("token-ids", "added-tokens", "whole-words"):
        return
    keys = sorted(by_fold)
    lows = sorted({k.lower() for k in keys})
    for i, short in enumerate(lows):
        longer = []
        for other in lows[i + 1 :]:
            if not other.startswith(short):
                break  # sorted order: every name starting with `short` follows it directly
            if inside(matching, short, other):
                longer.append(other)
        if longer:
            es = [e for k in keys if k.lower() in (short, *longer) for e in by_fold[k]]
            shown = ", ".join(repr(o) for o in longer[:5]) + (" …" if len(longer) > 5 else "")
            if matching == "token-ids":
                why = (
                    f"{short!r} starts {shown} in CLIP tokens: matching picks the longest loaded name, so typing a longer one "
                    f"while it is not loaded (skipped on this model) applies {short!r} and the rest as plain text"
                )
            else:
                why = f"{short!r} is a prefix of {shown}; diffusers' prompt rewriting would corrupt the longer names"
            add("prefix", short, why, es, host)

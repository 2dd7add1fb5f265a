"""Names that will confuse a host: the same trigger in several files, names that differ only by
case, names that are prefixes of others, an A1111 file whose stored name is not its file name, and
SD1 and SDXL versions kept under one name.

Why each matters (see docs/formats.md): A1111 loads one file per trigger and silently skips the
rest; CLIP tokenizers lower-case, so ``Style`` and ``style`` collide; diffusers rewrites prompts
with ``str.replace``, so a trigger that is a prefix of another corrupts it; A1111 triggers an A1111
``.pt`` by its file stem while diffusers' ``load_textual_inversion`` uses its stored ``name``.
"""

from __future__ import annotations

from collections import defaultdict

from .queries import Entry, Group

#: Layouts whose stored name a host triggers by, while A1111 triggers the file by its stem: only
#: A1111's own layout, whose ``name`` field diffusers' ``load_textual_inversion`` takes as the
#: token. A kohya or multi file's ``stored_name`` (the name it had before embkit renamed it, kept
#: in its metadata) is read by no host: A1111 and ComfyUI use the file name, and diffusers reads no
#: safetensors metadata (a one-tensor file's token is its key, ``emb_params``). Image cards are
#: triggered by their stored name, so theirs never differs.
STORED_NAME_FORMATS = ("a1111",)


def conflicts(all_entries: list[Entry]) -> list[Group]:
    """Every conflict among the entries, grouped by kind in a fixed order."""
    by_name: dict[str, list[Entry]] = defaultdict(list)
    by_lower: dict[str, list[Entry]] = defaultdict(list)
    for e in all_entries:
        by_name[e.name].append(e)
        by_lower[e.name.lower()].append(e)
    out: list[Group] = []

    for name, es in sorted(by_name.items()):
        if len({e.path for e in es}) > 1:
            out.append(Group("same-trigger", name, f"trigger {name!r} is defined by {len(es)} files; a host loads only one of them", tuple(es)))

    for low, es in sorted(by_lower.items()):
        names = sorted({e.name for e in es})
        if len(names) > 1:
            out.append(Group("case", low, f"names {', '.join(map(repr, names))} differ only by case; tokenizers lower-case prompts", tuple(es)))

    lowers = sorted(by_lower)
    for i, short in enumerate(lowers):
        longer = []
        for other in lowers[i + 1 :]:
            if not other.startswith(short):
                break  # sorted order: every name starting with `short` follows it directly
            longer.append(other)
        if longer:
            es = by_lower[short] + [e for o in longer for e in by_lower[o]]
            shown = ", ".join(repr(o) for o in longer[:5]) + (" …" if len(longer) > 5 else "")
            out.append(Group("prefix", short, f"{short!r} is a prefix of {shown}; diffusers' prompt rewriting would corrupt the longer names", tuple(es)))

    for e in all_entries:
        if e.format in STORED_NAME_FORMATS and e.stored_name and e.stored_name != e.name:
            out.append(
                Group("stored-name", e.name, f"{e.path} is triggered as {e.name!r} by A1111 but as {e.stored_name!r} by diffusers (its stored name)", (e,))
            )

    for low, es in sorted(by_lower.items()):
        fams = sorted({e.family for e in es})
        if len(fams) > 1:
            which = ", ".join(f"{f} ({sum(e.family == f for e in es)})" for f in fams)
            out.append(Group("family-mix", low, f"{low!r} exists for several model families: {which}; a host skips the ones that do not fit its model", tuple(es)))
    return out

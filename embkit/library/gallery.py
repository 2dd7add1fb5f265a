"""``embkit library gallery``: the library as a static site, one ``index.html`` and a ``thumbs/``
folder, to open from disk (``file://``) with no server and no network.

:func:`cards` turns library entries into plain dicts (what a card and its detail view show);
:mod:`.gallery_page` renders them as HTML, escaping every string; :func:`write_gallery` makes the
thumbnails with Pillow and writes the folder atomically (a previous gallery is replaced, any other
folder refused unless ``overwrite``).

The fields a card shows are the table :data:`CARD_FIELDS`: adding one is one row there, no
template change. Triggers and the hosts an entry loads in come from the hosts table
(:mod:`embkit.hosts`), the preview from the library's ``previews`` table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..diffusers.preview_rules import is_negative, triggers
from .queries import Entry, Group

#: Longest side of a thumbnail, in pixels.
THUMB_SIDE = 256
#: Pictures larger than this many pixels get no thumbnail (a hostile file can claim billions).
MAX_PICTURE_PIXELS = 64 * 1024 * 1024
#: Marks an ``index.html`` as an embkit gallery, so a re-run may replace its folder.
GENERATOR = "embkit library gallery"


#: What a card shows besides its name, trigger and badges: ``(css class, label, value of an entry)``;
#: empty values are left out. Trained words and base model are the sidecars' (library columns).
CARD_FIELDS: tuple[tuple[str, str, Callable[[Entry], str]], ...] = (
    ("facts", "", lambda e: f"{e.family} · {e.num_vectors} vector{'' if e.num_vectors == 1 else 's'} · {' '.join(f'{s.slot} {s.vectors}x{s.width}' for s in e.slots)} · {e.format}"),
    ("words", "trained words", lambda e: ", ".join(e.trained_words)),
    ("base", "base model", lambda e: e.base_model or ""),
    ("hash", "AutoV2", lambda e: e.autov2),
    ("tags", "tags", lambda e: ", ".join(e.tags)),
)
#: What a card shows for a host that has no trigger for an entry (it ignores or cannot read the file).
NO_TRIGGER = "—"


def hosts_loading(entry: Entry) -> list[str]:
    """The hosts the gallery's host filter lists ``entry`` under: those that apply it (wholly or on
    some encoders) on a model of its own family, by the hosts table's verdicts
    (:func:`embkit.hosts.verdicts` on the facts of its library row, as ``library conflicts`` asks)."""
    from ..hosts import HOST_IDS, verdicts
    from ..hosts.facts import facts_from_entry
    from ..schema import FAMILIES

    facts = facts_from_entry(entry)
    family = entry.family if entry.family in FAMILIES else None
    out = []
    for host in HOST_IDS:
        found = verdicts(facts, host, family)
        mine = next((v for v in found if (v.member or "") == (entry.member or "")), found[0] if found else None)
        if mine is not None and mine.loads:
            out.append(host)
    return out


@dataclass
class Card:
    """One entry as the page shows it; ``thumb`` is the thumbnail's name in ``thumbs/`` or ``None``."""

    entry: Entry
    triggers: dict[str, str]
    hosts: list[str]
    badges: list[tuple[str, str]]
    fields: list[tuple[str, str, str]]
    notes: list[str]
    thumb: str | None = None

    @property
    def search(self) -> str:
        """The text the page's search box matches (lower-cased)."""
        e = self.entry
        words = [e.name, e.family, e.format, os.path.basename(e.path), *self.triggers.values(), *e.tags, *(v for _c, _l, v in self.fields)]
        return " ".join(words).lower()


def cards(entries: list[Entry], dupes: list[Group], conflicts: list[Group]) -> list[Card]:
    """A :class:`Card` per entry, with badges for the duplicate and conflict groups it is in."""
    groups: dict[int, list[Group]] = {}
    for g in [*dupes, *conflicts]:
        for e in g.entries:
            groups.setdefault(e.id, []).append(g)
    dupe_kinds = {g.kind for g in dupes}
    out = []
    for e in entries:
        badges: list[tuple[str, str]] = []
        mine = groups.get(e.id, [])
        if any(g.kind in dupe_kinds for g in mine):
            badges.append(("dupe", "duplicate"))
        kinds = sorted({g.kind for g in mine if g.kind not in dupe_kinds})
        badges.extend(("conflict", f"conflict: {k}") for k in kinds)
        if is_negative(e):
            badges.append(("negative", "negative"))
        if e.preview is None:
            badges.append(("nopreview", "no preview"))
        fields = [(css, label, value) for css, label, get in CARD_FIELDS if (value := get(e))]
        notes = [g.message for g in mine]
        typed = {host: word or NO_TRIGGER for host, word in triggers(e).items()}
        out.append(Card(e, typed, hosts_loading(e), badges, fields, notes))
    return out


@dataclass
class GalleryReport:
    """What :func:`write_gallery` wrote."""

    path: str
    entries: int
    thumbnails: int
    without_preview: int

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dict(self.__dict__)


def is_gallery(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding an ``index.html`` that this module wrote."""
    index = os.path.join(os.fspath(path), "index.html")
    if os.path.islink(os.fspath(path)) or not os.path.isfile(index):
        return False
    try:
        with open(index, "rb") as fh:
            return f'<meta name="generator" content="{GENERATOR}">'.encode() in fh.read(4096)
    except OSError:
        return False


def write_gallery(entries: list[Entry], dupes: list[Group], conflicts: list[Group], out: str | os.PathLike, *, title: str = "embkit library", overwrite: bool = False) -> GalleryReport:
    """Write the gallery of ``entries`` to the folder ``out`` (created atomically; its parent must
    exist). A folder holding a previous gallery is replaced; any other existing folder only with
    ``overwrite``, and only when it holds nothing but ``index.html`` and ``thumbs``."""
    from ..atomic import write_folder
    from .gallery_page import page

    out = os.fspath(out)
    made = cards(entries, dupes, conflicts)
    count = 0

    def fill(folder: str) -> None:
        nonlocal count
        thumbs = os.path.join(folder, "thumbs")
        os.mkdir(thumbs)
        done: dict[str, str | None] = {}
        for card in made:
            picture = card.entry.preview.path if card.entry.preview is not None else None
            if picture is None:
                continue
            if picture not in done:
                name = f"{len(done) + 1}.png"
                done[picture] = name if _thumbnail(picture, os.path.join(thumbs, name)) else None
            card.thumb = done[picture]
        count = sum(v is not None for v in done.values())
        with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as fh:
            fh.write(page(made, title=title, generator=GENERATOR))

    write_folder(out, fill, owns=("index.html", "thumbs/"), overwrite=overwrite or is_gallery(out))
    return GalleryReport(out, len(made), count, sum(c.entry.preview is None for c in made))


def _thumbnail(picture: str, target: str) -> bool:
    """A PNG thumbnail of ``picture`` at ``target``; False when it cannot be read (any reason: a
    hostile or broken picture costs its card the image, nothing more)."""
    from PIL import Image

    try:
        with Image.open(picture) as im:
            if im.width * im.height > MAX_PICTURE_PIXELS:
                return False
            im.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # JPEG: decode at a reduced size
            im.thumbnail((THUMB_SIDE, THUMB_SIDE))
            im.convert("RGB").save(target, format="PNG")
        return True
    except Exception:  # noqa: BLE001 - Pillow raises many kinds on damaged files
        if os.path.exists(target):
            os.unlink(target)
        return False


__all__ = ["write_gallery", "cards", "Card", "GalleryReport", "is_gallery", "CARD_FIELDS", "hosts_loading"]

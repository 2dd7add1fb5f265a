"""The gallery's one HTML page: a grid of cards, a detail view per entry, a little plain JavaScript.

Everything from a file (names, paths, metadata, parameters) goes through :func:`text` (HTML
escaping, with control and bidirectional-override characters shown as ``\\u{…}``), or, in data
attributes, through JSON then :func:`text`. The script and style are fixed strings: no file's
text ever reaches them, and the Content-Security-Policy allows only those two (by hash), images
from the gallery's own folder, and nothing from a network.

Without JavaScript the page still browses: the grid is plain HTML, each card links to its detail
view (``#e-<id>``), which CSS shows with ``:target``. The script adds search, the family, host
and tag filters, and shows the chosen host's trigger on each card.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import time
import unicodedata
from typing import Any

STYLE = """
:root { color-scheme: dark; --bg: #16181d; --card: #20232a; --line: #333842; --text: #e6e6e6; --dim: #9aa0aa; --accent: #7cc4ff; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
header { padding: 12px 16px; border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 4px; font-size: 20px; }
.dim { color: var(--dim); }
#controls { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; align-items: center; }
#controls input, #controls select { background: var(--card); color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 4px 6px; }
#q { min-width: 260px; }
[hidden] { display: none !important; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; padding: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px; overflow-wrap: anywhere; }
.card h2 { font-size: 15px; margin: 6px 0 2px; }
.card a { color: var(--accent); text-decoration: none; }
.card p { margin: 2px 0; font-size: 12px; }
.thumb { display: flex; align-items: center; justify-content: center; aspect-ratio: 1; background: #0d0e11; border-radius: 4px; overflow: hidden; color: var(--dim); }
.thumb img { width: 100%; height: 100%; object-fit: contain; image-rendering: auto; }
code { background: #0d0e11; padding: 0 3px; border-radius: 3px; }
.badge { display: inline-block; font-size: 11px; padding: 0 5px; margin: 1px 2px 1px 0; border-radius: 8px; background: #3a3f4b; }
.badge.dupe { background: #6b4f1d; } .badge.conflict { background: #7a2e2e; } .badge.negative { background: #2e4a7a; } .badge.nopreview { background: #3a3f4b; }
.detail { display: none; }
.detail:target { display: block; position: fixed; inset: 24px; overflow: auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; z-index: 10; }
.detail table { border-collapse: collapse; }
.detail th { text-align: left; vertical-align: top; padding: 3px 12px 3px 0; white-space: nowrap; color: var(--dim); font-weight: normal; }
.detail td { padding: 3px 0; white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: 12px; }
.detail img { width: 256px; height: auto; float: right; margin: 0 0 8px 12px; border-radius: 4px; }
.detail a { color: var(--accent); }
"""

SCRIPT = """
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var controls = $("controls"), q = $("q"), family = $("family"), host = $("host"), tag = $("tag"), count = $("count");
  var cards = Array.prototype.slice.call(document.querySelectorAll("#grid .card"));
  cards.forEach(function (c) {
    c.embkit = {
      triggers: JSON.parse(c.getAttribute("data-triggers")),
      hosts: JSON.parse(c.getAttribute("data-hosts")),
      tags: JSON.parse(c.getAttribute("data-tags")),
      search: c.getAttribute("data-search"),
      family: c.getAttribute("data-family")
    };
  });
  function update() {
    var words = q.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var f = family.value, h = host.value, t = tag.value, shown = 0;
    cards.forEach(function (c) {
      var d = c.embkit;
      var ok = words.every(function (w) { return d.search.indexOf(w) !== -1; })
        && (!f || d.family === f) && (!t || d.tags.indexOf(t) !== -1) && (!h || d.hosts.indexOf(h) !== -1);
      c.hidden = !ok;
      if (ok) { shown += 1; }
      var which = h || "a1111";
      c.querySelector(".trigger .host").textContent = which;
      c.querySelector(".trigger code").textContent = d.triggers[which];
    });
    count.textContent = shown + " of " + cards.length + " shown";
  }
  [q, family, host, tag].forEach(function (el) {
    el.addEventListener("input", update);
    el.addEventListener("change", update);
  });
  controls.hidden = false;
  update();
})();
"""


def text(value: Any) -> str:
    """``value`` as safe HTML text or attribute content: escaped, with control characters and
    bidirectional overrides (which can make a name read as another) shown as ``\\u{…}``."""
    s = str(value)
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in s):
        s = "".join(c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf") else f"\\u{{{ord(c):04x}}}" for c in s)
    return html.escape(s, quote=True)


def _json(value: Any) -> str:
    return text(json.dumps(value, ensure_ascii=True, sort_keys=True))


def _hash(source: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def _options(select_id: str, label: str, values: list[str], all_label: str) -> str:
    opts = "".join(f'<option value="{text(v)}">{text(v)}</option>' for v in values)
    return f'<label>{label} <select id="{select_id}"><option value="">{all_label}</option>{opts}</select></label>'


def _label(label: str) -> str:
    return f'<span class="dim">{text(label)}:</span> ' if label else ""


def _card(card: Any) -> str:
    e = card.entry
    thumb = f'<img src="thumbs/{card.thumb}" alt="preview of {text(e.name)}" loading="lazy">' if card.thumb else "no preview"
    badges = "".join(f'<span class="badge {css}">{text(label)}</span>' for css, label in card.badges)
    fields = "".join(f'<p class="{css}">{_label(label)}{text(value)}</p>' for css, label, value in card.fields)
    return (
        f'<article class="card" id="c-{e.id}" data-family="{text(e.family)}" data-tags="{_json(list(e.tags))}" '
        f'data-hosts="{_json(card.hosts)}" data-triggers="{_json(card.triggers)}" data-search="{text(card.search)}">'
        f'<a class="thumb" href="#e-{e.id}">{thumb}</a>'
        f'<h2><a href="#e-{e.id}">{text(e.name)}</a></h2>'
        f'<p class="trigger"><span class="host dim">a1111</span> <code>{text(card.triggers["a1111"])}</code></p>'
        f'{fields}<p class="badges">{badges}</p></article>'
    )


def _detail(card: Any) -> str:
    e = card.entry
    rows = [("name", e.name)]
    rows += [(f"trigger ({host})", word) for host, word in card.triggers.items()]
    rows.append(("loads in", ", ".join(card.hosts) or "no host, on a model of its family"))
    rows += [(label or css, value) for css, label, value in card.fields if css not in ("hash", "tags")]
    rows += e.rows()
    rows += [("note", n) for n in card.notes]
    body = "".join(f"<tr><th>{text(k)}</th><td>{text(v)}</td></tr>" for k, v in rows)
    image = f'<img src="thumbs/{card.thumb}" alt="preview of {text(e.name)}">' if card.thumb else ""
    badges = "".join(f'<span class="badge {css}">{text(label)}</span>' for css, label in card.badges)
    return (
        f'<section class="detail" id="e-{e.id}" aria-label="{text(e.name)}"><p><a href="#c-{e.id}">back to the grid</a></p>'
        f"{image}<h2>{text(e.name)}</h2><p>{badges}</p><table>{body}</table></section>"
    )


def page(cards: list[Any], *, title: str, generator: str) -> str:
    """The whole ``index.html`` for ``cards`` (:class:`embkit.library.gallery.Card`)."""
    families = sorted({c.entry.family for c in cards})
    tags = sorted({t for c in cards for t in c.entry.tags})
    hosts = list(dict.fromkeys(h for c in cards for h in c.hosts))
    csp = f"default-src 'none'; img-src 'self' file: data:; style-src '{_hash(STYLE)}'; script-src '{_hash(SCRIPT)}'; base-uri 'none'; form-action 'none'"
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    controls = (
        '<div id="controls" hidden><input id="q" type="search" placeholder="search names, triggers, trained words, tags" aria-label="search">'
        + _options("family", "family", families, "all")
        + _options("host", "host", hosts, "any (trigger shown: a1111)")
        + _options("tag", "tag", tags, "any")
        + '<span id="count" class="dim"></span></div>'
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8">\n<meta name="generator" content="{generator}">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n<meta name="referrer" content="no-referrer">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{text(title)}</title>\n<style>{STYLE}</style></head>\n'
        f'<body><header><h1>{text(title)}</h1><p class="dim">{len(cards)} embeddings · made {made} by embkit</p>{controls}'
        "<noscript><p class=dim>Search and filters need JavaScript; the grid and each entry's details work without it.</p></noscript></header>\n"
        f'<main id="grid">\n' + "\n".join(_card(c) for c in cards) + "\n</main>\n"
        '<div id="details">\n' + "\n".join(_detail(c) for c in cards) + "\n</div>\n"
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )


__all__ = ["page", "text", "STYLE", "SCRIPT"]

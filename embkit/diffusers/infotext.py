"""The ``parameters`` text a contact sheet or a preview carries, in A1111's "infotext" style, and its reader.

A1111 writes each image's generation settings into a PNG text chunk named ``parameters``
(AUTOMATIC1111/stable-diffusion-webui ``modules/images.py`` @00952fb4a8b86b75402cc8276e00f3daadf1f459,
read back by ``image_data``) as::

    <prompt, one or more lines>
    Negative prompt: <negative prompt>
    Steps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 0, Size: 512x512, Model: …, TI hashes: "name: 0123456789ab"

The last line is ``key: value`` pairs separated by ``, ``; a value holding ``,``, ``:`` or a newline
is written as a JSON string (``modules/infotext_utils.py`` @036500223de0a3caaa86360a8ad3ed301e4367b0,
``quote``, and the reader's pattern ``re_param_code``). ``TI hashes`` lists ``name: <first 12 hex of
the file's sha256>`` per embedding, as A1111's prompt encoder writes them
(``modules/sd_hijack_clip.py`` @00e09382cd85c77ac35545c7264855823dfc2eb1). So PNG Info in A1111 and
Forge, and the tools that read A1111 images, read a sheet's settings: prompt, negative prompt, steps,
sampler, CFG scale, the first seed and the size reproduce the first row's "after" image.

:func:`text` writes it for one render (a preview is one); :func:`parameters` for a contact sheet. embkit
adds its own keys to the same line (tools that read infotext keep keys they do not know): ``Seeds``
(every seed) and, on a sheet, ``Device``, ``Dtype``, ``Trigger placement``, ``Embeddings`` (the row count),
per row *i* ``Embedding i``, ``Trigger i``, ``Cosine distance i``, ``Pixel difference i`` (per seed)
and, for rows after the first, ``Prompt i`` / ``Negative prompt i`` when they differ from the first
row's, then ``Version: embkit X``. Torch-free.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping, Sequence

#: A1111's pattern for one ``key: value`` pair of the last line (``re_param_code``).
PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def quote(value: Any) -> str:
    """A value as A1111 writes it: as is, or as a JSON string when it holds ``,``, ``:`` or a newline."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if ("," in text or ":" in text or "\n" in text) else text


def _number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"


def text(*, prompt: str, negative_prompt: str | None, steps: int, sampler: str, guidance: float, seeds: Sequence[int], width: int, height: int,
         model: str, ti_hashes: Mapping[str, str | None] | Iterable[tuple[str, str | None]] = (), extra: Sequence[tuple[str, Any]] = (), version: str) -> str:
    """The ``parameters`` text of one render, the one writer for contact sheets and previews: the
    prompt, ``Negative prompt: …`` (when there is one), then ``Steps``, ``Sampler``, ``CFG scale``,
    ``Seed`` (the first), ``Size``, ``Model``, ``TI hashes`` (``name: short hash`` per embedding,
    when any), ``Seeds`` (every seed), the ``extra`` pairs, and ``Version: embkit X``."""
    fields: list[tuple[str, Any]] = [
        ("Steps", steps),
        ("Sampler", sampler),
        ("CFG scale", _number(guidance)),
        ("Seed", seeds[0] if seeds else 0),
        ("Size", f"{width}x{height}"),
        ("Model", model),
    ]
    hashes = [f"{name.replace(':', '').replace(',', '')}: {short}" for name, short in (ti_hashes.items() if isinstance(ti_hashes, Mapping) else ti_hashes) if short]
    if hashes:
        fields.append(("TI hashes", ", ".join(hashes)))
    fields.append(("Seeds", ", ".join(str(s) for s in seeds)))
    fields += list(extra)
    fields.append(("Version", f"embkit {version}"))
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{k}: {quote(v)}" for k, v in fields))
    return "\n".join(lines)


def parameters(comparison: Any) -> str:
    """The ``parameters`` text for a :class:`~embkit.diffusers.comparison.Comparison` (a contact sheet)."""
    rows = comparison.rows
    first = rows[0] if rows else None
    prompt = first.prompt if first else comparison.prompt
    negative = first.negative_prompt if first else comparison.negative_prompt
    extra: list[tuple[str, Any]] = [
        ("Device", comparison.device),
        ("Dtype", comparison.dtype),
        ("Trigger placement", "negative" if comparison.as_negative else "positive"),
        ("Embeddings", len(rows)),
    ]
    for i, row in enumerate(rows, 1):
        extra += [
            (f"Embedding {i}", row.name),
            (f"Trigger {i}", row.trigger),
            (f"Cosine distance {i}", _number(row.conditioning_distance)),
            (f"Pixel difference {i}", ", ".join(f"{r.pixel_difference:.2f}" for r in row.renders)),
        ]
        if i > 1 and row.prompt != prompt:
            extra.append((f"Prompt {i}", row.prompt))
        if i > 1 and row.negative_prompt != negative:
            extra.append((f"Negative prompt {i}", row.negative_prompt or ""))
    return text(prompt=prompt, negative_prompt=negative, steps=comparison.steps, sampler=comparison.sampler, guidance=comparison.guidance,
                seeds=comparison.seeds, width=comparison.width, height=comparison.height, model=comparison.model,
                ti_hashes=[(r.name, r.short_hash) for r in rows], extra=extra, version=comparison.version)


def by_embkit(text: str | None) -> bool:
    """Whether ``parameters`` text was written by embkit (its ``Version`` names embkit)."""
    return bool(text) and parse(text or "").get("Version", "").startswith("embkit")


def parse(text: str) -> dict[str, str]:
    """Read infotext as A1111's ``parse_generation_parameters`` does: ``Prompt`` and
    ``Negative prompt`` from the lines before the last, then every ``key: value`` of the last line
    (JSON-quoted values unquoted). Values stay strings; ``Size`` stays ``WxH``."""
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:") or negative:
            negative.append(line[16:].strip() if not negative else line)
        else:
            prompt.append(line)
    out = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in PARAM.findall(last):
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


__all__ = ["text", "parameters", "parse", "by_embkit", "quote", "PARAM"]

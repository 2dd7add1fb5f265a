"""The contact sheet of a test render: a PNG a person can read, marked so that a re-run replaces its
own sheet and never a user's picture.

Layout (:func:`layout` gives every box; :func:`contact_sheet` draws it):

* a header: the model, the prompt and negative prompt, the seeds, steps, size, CFG scale,
  sampler, device and dtype, the embkit version, where the trigger went, and the heat-map scale;
* a column heading per seed: ``before``, ``after``, ``difference``;
* one row per embedding: its name, the trigger used, the conditioning's cosine distance and the
  largest pixel difference on the left, then per seed the image without the embedding, with it,
  and a heat map of ``|after - before|`` (mean over the colour channels; black is no change, the
  brightest yellow the largest difference anywhere on the sheet, named in the header).

The PNG carries two text chunks: ``Software`` = ``embkit contact sheet`` (the mark) and
``parameters`` (the same facts in A1111's infotext style, :mod:`.infotext`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TargetExistsError, WriteError
from .comparison import Comparison
from .infotext import parameters

PAD = 8
LABEL_W = 270
LINE = 18
TITLE = 24
#: heat-map colours from no change to the sheet's largest change (black, purple, red, orange, yellow)
HEAT_ANCHORS = ((0, 0, 0), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164))
BACKGROUND, INK, DIM, WARN = (24, 24, 24), (235, 235, 235), (160, 160, 160), (255, 110, 90)


def heat_lut() -> np.ndarray:
    """256 RGB colours interpolated through :data:`HEAT_ANCHORS`."""
    anchors = np.asarray(HEAT_ANCHORS, dtype=np.float64)
    x = np.linspace(0, len(anchors) - 1, 256)
    lo = np.floor(x).astype(int).clip(0, len(anchors) - 2)
    t = (x - lo)[:, None]
    return np.rint(anchors[lo] * (1 - t) + anchors[lo + 1] * t).astype(np.uint8)


def difference(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per-pixel mean absolute difference over the channels (0–255, float)."""
    return np.abs(after.astype(np.int16) - before.astype(np.int16)).mean(axis=2)


def heat_scale(comparison: Comparison) -> float:
    """The largest per-pixel difference on the sheet (at least 1): the heat map's brightest colour."""
    peak = [float(difference(r.before, r.after).max()) for row in comparison.rows for r in row.renders]
    return max([1.0, *peak])


def heat_map(before: np.ndarray, after: np.ndarray, scale: float) -> np.ndarray:
    """``|after - before|`` coloured by :func:`heat_lut`, 0 → black, ``scale`` → yellow (H×W×3 uint8)."""
    index = np.clip(np.rint(difference(before, after) / scale * 255), 0, 255).astype(np.uint8)
    return heat_lut()[index]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _clean(text: str) -> str:
    """Text from files, drawable: control characters shown as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _wrap(text: str, font: Any, width: int) -> list[str]:
    """``text`` cut into lines no wider than ``width`` pixels, at spaces where it can be."""
    lines: list[str] = []
    current = ""
    for word in _clean(" / ".join(str(text).splitlines())).split(" "):
        trial = f"{current} {word}" if current else word
        if font.getlength(trial) <= width:
            current = trial
            continue
        if current:
            lines.append(current)
        while font.getlength(word) > width and len(word) > 1:  # a word wider than the line: cut it
            cut = max(1, int(len(word) * width / font.getlength(word)))
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    lines.append(current)
    return lines


@dataclass(frozen=True)
class Layout:
    """Where everything goes: the sheet's size, the header's height, the tile size, and per row
    and seed the boxes (x, y) of the before, after and difference tiles."""

    width: int
    height: int
    header: int
    tile_w: int
    tile_h: int
    row_h: int
    header_lines: tuple[str, ...]
    tiles: tuple[tuple[tuple[tuple[int, int], tuple[int, int], tuple[int, int]], ...], ...]


def _header_lines(c: Comparison, scale: float) -> list[str]:
    seeds = ", ".join(str(s) for s in c.seeds)
    return [
        f"prompt: {c.prompt}",
        f"negative prompt: {c.negative_prompt or '(none)'}",
        f"seed{'s' if len(c.seeds) != 1 else ''} {seeds} · {c.steps} steps · {c.width}x{c.height} · CFG {c.guidance:g} · {c.sampler} · "
        f"{c.device} {c.dtype} · embkit {c.version}",
        f"trigger in the {'negative' if c.as_negative else 'positive'} prompt · difference |after - before|: black 0 to yellow {scale:.0f} (of 255)",
    ]


def layout(comparison: Comparison, *, tile: int | None = None) -> Layout:
    """The boxes :func:`contact_sheet` draws into. ``tile``: the width of each image tile (default
    the image width, between 128 and 256 pixels); heights keep the images' aspect."""
    first = comparison.rows[0].renders[0].before if comparison.rows and comparison.rows[0].renders else np.zeros((64, 64, 3), np.uint8)
    h, w = first.shape[:2]
    tile_w = tile or max(128, min(256, w))
    tile_h = max(1, round(tile_w * h / w))
    seeds = len(comparison.seeds)
    group = 3 * tile_w + 2 * PAD
    width = PAD + LABEL_W + seeds * (group + 2 * PAD)
    font = _font(13)
    lines: list[str] = []
    for line in _header_lines(comparison, heat_scale(comparison) if comparison.rows else 1.0):
        lines.extend(_wrap(line, font, width - 2 * PAD))
    header = PAD + TITLE + LINE * len(lines) + 12 + PAD + LINE  # + the heat-map bar, + the column headings
    row_h = max(tile_h, 5 * LINE) + 2 * PAD
    tiles = []
    for r in range(len(comparison.rows)):
        y = header + r * row_h + PAD
        per_seed = []
        for s in range(seeds):
            x = PAD + LABEL_W + s * (group + 2 * PAD)
            per_seed.append(((x, y), (x + tile_w + PAD, y), (x + 2 * (tile_w + PAD), y)))
        tiles.append(tuple(per_seed))
    height = header + len(comparison.rows) * row_h + PAD
    return Layout(width, height, header, tile_w, tile_h, row_h, tuple(lines), tuple(tiles))


def contact_sheet(comparison: Comparison, *, tile: int | None = None) -> Any:
    """The sheet as a PIL image (see the module docstring for what is where)."""
    from PIL import Image, ImageDraw

    box = layout(comparison, tile=tile)
    sheet = Image.new("RGB", (box.width, box.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    title, text, small = _font(17), _font(13), _font(12)
    draw.text((PAD, PAD), _clean(f"embkit test render · {comparison.model}"), fill=INK, font=title)
    y = PAD + TITLE
    for line in box.header_lines:
        draw.text((PAD, y), line, fill=INK, font=text)
        y += LINE
    bar = np.repeat(heat_lut()[None, :, :], 10, axis=0)
    sheet.paste(Image.fromarray(bar).resize((256, 10), Image.NEAREST), (PAD, y + 1))
    draw.text((PAD + 264, y - 2), "0 to max", fill=DIM, font=small)
    y += 12 + PAD
    scale = heat_scale(comparison)
    for s, seed in enumerate(comparison.seeds):
        x = PAD + LABEL_W + s * (3 * box.tile_w + 4 * PAD)
        for k, label in enumerate(("before", "after", "difference")):
            draw.text((x + k * (box.tile_w + PAD), y), f"seed {seed} · {label}" if k == 0 else label, fill=DIM, font=text)
    for r, row in enumerate(comparison.rows):
        top = box.header + r * box.row_h
        draw.line([(PAD, top), (box.width - PAD, top)], fill=(60, 60, 60))
        ly = top + PAD
        draw.text((PAD, ly), _clean(row.name)[:34], fill=INK, font=_font(15))
        details = [f"trigger: {_clean(row.trigger)[:28]}", f"cosine distance {row.conditioning_distance:.4f}",
                   f"pixel difference {row.pixel_difference:.2f}"]
        for i, line in enumerate(details, 1):
            draw.text((PAD, ly + 2 + i * LINE), line, fill=INK, font=text)
        if not row.changed:
            draw.text((PAD, ly + 2 + 4 * LINE), "no effect: changes nothing", fill=WARN, font=text)
        for render, boxes in zip(row.renders, box.tiles[r]):
            images = (render.before, render.after, heat_map(render.before, render.after, scale))
            for image, (x, ty) in zip(images, boxes):
                sheet.paste(_tile(image, box.tile_w, box.tile_h), (x, ty))
    return sheet


def _tile(image: np.ndarray, width: int, height: int) -> Any:
    from PIL import Image

    picture = Image.fromarray(image)
    if picture.size == (width, height):
        return picture
    return picture.resize((width, height), Image.NEAREST if image.shape[1] < width else Image.LANCZOS)


#: The PNG text chunk every contact sheet carries: ``save_sheet`` replaces an existing file at its
#: target only when it holds this mark (a previous sheet), so re-running the same command works
#: while a user's own picture of the same name is never lost silently.
SHEET_KEY, SHEET_VALUE = "Software", "embkit contact sheet"
#: The chunk with the render's settings in A1111's infotext style (:mod:`.infotext`).
PARAMETERS_KEY = "parameters"


def is_sheet(path: str | os.PathLike) -> bool:
    """True when ``path`` is a PNG that :func:`save_sheet` wrote (it carries :data:`SHEET_KEY`).

    Only the chunks before the image data are read (PIL's ``Image.open`` is lazy), so this is cheap
    on any file. A symbolic link is never a sheet: replacing it would replace the link, not what it
    points to, which is not what "re-run and refresh the sheet" means."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get(SHEET_KEY) == SHEET_VALUE
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


def read_parameters(path: str | os.PathLike) -> str | None:
    """The ``parameters`` text of a PNG (a sheet, or any A1111 image), or ``None``."""
    from PIL import Image

    with Image.open(os.fspath(path)) as im:
        value = im.info.get(PARAMETERS_KEY)
    return value if isinstance(value, str) else None


def check_sheet_target(path: str | os.PathLike, overwrite: bool = False) -> bool:
    """Raise before any rendering if the sheet cannot be written to ``path``; return whether an
    existing file there will be replaced.

    The rules are the writers' (:func:`embkit.write`, ``embkit merge``): the folder must exist
    (:class:`~embkit.errors.WriteError`, "its folder does not exist"; it is not created), and an
    existing file raises :class:`~embkit.errors.TargetExistsError` unless ``overwrite``, with one
    exception: a previous contact sheet (:func:`is_sheet`) is replaced, so a command can be re-run.
    """
    from ..atomic import check_folder

    path = os.fspath(path)
    check_folder(path)  # rendering takes seconds: found before it, not when the file is written
    if os.path.isdir(path):
        raise WriteError("is a folder; name the contact sheet's .png file", path=path)
    if not os.path.lexists(path):
        return False
    if overwrite or is_sheet(path):
        return True
    raise TargetExistsError("exists and is not an embkit contact sheet; pass overwrite=True (--overwrite) to replace it", path=path)


def sheet_png(comparison: Comparison) -> bytes:
    """The contact sheet as PNG bytes, marked as a sheet (:data:`SHEET_KEY`) and carrying its
    settings (:data:`PARAMETERS_KEY`)."""
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(SHEET_KEY, SHEET_VALUE)
    info.add_itxt(PARAMETERS_KEY, parameters(comparison))  # iTXt: UTF-8, any prompt survives
    buffer = io.BytesIO()
    contact_sheet(comparison).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_sheet(comparison: Comparison, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Write the contact sheet as PNG to ``path`` and return the path.

    Written like every embkit output (:func:`embkit.atomic.write_bytes`: a temporary file in the
    folder, fsync, rename; the umask's file mode). An existing file is replaced only if it is a
    previous contact sheet or ``overwrite`` is true; see :func:`check_sheet_target` for the errors.
    """
    from ..atomic import write_bytes

    path = os.fspath(path)
    replace = check_sheet_target(path, overwrite)
    # without ``replace`` the rename refuses a file that appeared since the check
    write_bytes(path, sheet_png(comparison), overwrite=replace)
    return path


__all__ = ["contact_sheet", "layout", "Layout", "save_sheet", "sheet_png", "is_sheet", "check_sheet_target", "read_parameters",
           "heat_map", "heat_lut", "heat_scale", "difference", "SHEET_KEY", "SHEET_VALUE", "PARAMETERS_KEY"]

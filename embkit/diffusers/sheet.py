"""The contact sheet of a test render: the before/after images laid out as a labelled PNG, marked
so that a re-run replaces its own sheet and never a user's picture."""

from __future__ import annotations

import os
from typing import Any

from ..errors import TargetExistsError, WriteError
from .comparison import Comparison


def contact_sheet(comparison: Comparison, *, tile: int = 256) -> Any:
    """A PIL image: one column per seed, ``before`` on the top row and ``after`` below, each tile
    labelled with its seed and row, and a title line naming the triggers and the numbers."""
    from PIL import Image, ImageDraw

    label_h, title_h, pad = 18, 22, 6
    cols = len(comparison.renders)
    width = pad + cols * (tile + pad)
    height = title_h + 2 * (label_h + tile + pad) + pad
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    title = (
        f"{', '.join(comparison.triggers)}  |  cos dist {comparison.conditioning_distance:.4f}  |  "
        f"pixel diff {comparison.pixel_difference:.2f}  |  {'negative' if comparison.as_negative else 'positive'}"
    )
    draw.text((pad, 5), title, fill=(235, 235, 235))
    for col, render in enumerate(comparison.renders):
        x = pad + col * (tile + pad)
        for row, (name, image) in enumerate((("before", render.before), ("after", render.after))):
            y = title_h + row * (label_h + tile + pad)
            draw.text((x, y + 3), f"seed {render.seed} · {name}", fill=(235, 235, 235))
            picture = Image.fromarray(image).resize((tile, tile), Image.NEAREST if image.shape[0] < tile else Image.LANCZOS)
            sheet.paste(picture, (x, y + label_h))
    return sheet


#: The PNG text chunk every contact sheet carries: ``save_sheet`` replaces an existing file at its
#: target only when it holds this mark (a previous sheet), so re-running the same command works
#: while a user's own picture of the same name is never lost silently.
SHEET_KEY, SHEET_VALUE = "Software", "embkit contact sheet"


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
    """The contact sheet as PNG bytes, marked as a sheet (:data:`SHEET_KEY`)."""
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(SHEET_KEY, SHEET_VALUE)
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


__all__ = ["contact_sheet", "save_sheet", "sheet_png", "is_sheet", "check_sheet_target", "SHEET_KEY", "SHEET_VALUE"]

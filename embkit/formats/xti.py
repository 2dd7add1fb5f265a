"""kohya XTI (extended textual inversion, "P+"): one embedding per SD1 UNet cross-attention block.

kohya's ``train_textual_inversion_XTI.py`` saves ``{layer: T[n, 768]}`` for the 16 layers
``IN01 IN02 IN04 IN05 IN07 IN08 MID OUT03 … OUT11``, as ``.pt`` (default) or ``.safetensors`` without
metadata (sd-scripts@48d368fa55:train_textual_inversion_XTI.py:157-175, 612-648). Only kohya's own
``gen_img_diffusers.py --XTI_embeddings`` applies it, by patching the UNet's forward passes to feed
each block its own prompt encoding (gen_img_diffusers.py:2591-2706, XTI_hijack.py:69-109); A1111,
Forge, ComfyUI, InvokeAI and diffusers have no XTI loader, and would take such a file for 16 plain
embeddings or refuse it. embkit recognises the layout so that it is never listed as 16 embeddings,
and refuses to read it with :class:`~embkit.errors.UnsupportedLayoutError`, whose message says what
the file is (an Embedding holds vectors per text encoder, not per UNet block).
"""

from __future__ import annotations

from ..errors import UnsupportedLayoutError
from .base import Part, Raw, Tensor, matrix_shape

#: The UNet blocks, in kohya's order (which is also their sorted order).
LAYERS = ("IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "MID", "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11")


def detect(raw: Raw) -> bool:
    """A dict of at least two tensors, every one keyed by an XTI block name (kohya's loader wants
    all 16; a file missing some is still XTI, not a set of embeddings named ``IN01`` …)."""
    tree = raw.tree
    if not isinstance(tree, dict) or len(tree) < 2:
        return False
    return all(isinstance(v, Tensor) for v in tree.values()) and all(k in LAYERS for k in tree)


def describe(raw: Raw, path: str) -> str:
    """What the file is, in one sentence (the refusal's message)."""
    shapes = {k: matrix_shape(v, path, k) for k, v in raw.tree.items()}
    counts = sorted({n for n, _ in shapes.values()})
    widths = sorted({d for _, d in shapes.values()})
    missing = [layer for layer in LAYERS if layer not in raw.tree]
    size = f"{'/'.join(map(str, counts))}x{'/'.join(map(str, widths))}"
    first, last = next(x for x in LAYERS if x in raw.tree), [x for x in LAYERS if x in raw.tree][-1]
    return (
        f"is a kohya XTI (extended textual inversion) file: {len(shapes)} embeddings, one per UNet cross-attention block "
        f"({first} … {last}), each {size}"
        + (f", missing {', '.join(missing)}" if missing else "")
        + ". Only kohya's gen_img_diffusers.py --XTI_embeddings applies it; A1111, Forge, ComfyUI, InvokeAI and diffusers "
        "do not apply it as a textual inversion, and embkit does not read it as one"
    )


def parse(raw: Raw, path: str) -> list[Part]:
    """Never returns: an XTI file is refused with a message that says what it is."""
    raise UnsupportedLayoutError(describe(raw, path), path=path)

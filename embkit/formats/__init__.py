"""The one table of formats. Extension lookup, content sniffing, ``embkit formats``, CLI choices and
writer selection all read :data:`CONTAINERS` and :data:`FORMATS`; there is no other list.

A *container* is how bytes are stored (torch pickle, safetensors, PNG, WebP, a folder); a *format* is
a layout of keys inside a container (a1111, diffusers, kohya, multi, …). Formats are tried in table
order, so the more specific layouts come first and diffusers (any dict of tensors) comes last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import a1111, concept_folder, diffusers, imagecard, kohya, lora_bundle, multi, safetensors_file, torchfile, xti
from .base import Part, Raw


@dataclass(frozen=True)
class Container:
    """How bytes are stored; ``accepts`` is a cheap check on the first bytes. ``title`` describes
    the container in a table (``embkit formats``); ``noun`` names one such file in a sentence
    ("does not start like a torch file")."""

    id: str
    title: str
    extensions: tuple[str, ...]
    accepts: Callable[[bytes], bool] | None
    read_raw: Callable[..., Raw] | None
    noun: str = "a file"


@dataclass(frozen=True)
class Format:
    """A layout of an embedding inside one or more containers."""

    id: str
    title: str
    #: containers it is read from, and written to (the first is the default when writing).
    containers: tuple[str, ...]
    detect: Callable[[Raw], bool]
    parse: Callable[[Raw, str], list[Part]]
    #: what one file can hold: ``"one"`` slot (chosen by width) or ``"many"`` slots.
    slots: str
    #: whether the format keeps arbitrary metadata and OneTrainer's output vectors.
    metadata: bool
    output_vectors: bool
    #: several embeddings per file
    several: bool = False
    #: ``writer(embedding, path, container, options) -> writer_base.Plan`` (the bytes to write and
    #: the losses); it never touches the disk, :func:`embkit.writing.write` does. None: read-only.
    writer: Callable | None = None
    #: containers it can be written to (subset of ``containers``)
    write_containers: tuple[str, ...] = ()


CONTAINERS: tuple[Container, ...] = (
    Container("pickle", "torch pickle (zip or legacy), read without torch", (".pt", ".bin", ".ckpt", ".pth"), torchfile.accepts, torchfile.read_raw,
              noun="a torch file"),
    Container("safetensors", "safetensors", (".safetensors",), safetensors_file.accepts, safetensors_file.read_raw, noun="a safetensors file"),
    Container("png", "PNG image card", (".png",), imagecard.accepts, imagecard.read_raw, noun="a PNG image"),
    Container("webp", "WebP image card", (".webp",), imagecard.accepts, imagecard.read_raw, noun="a WebP image"),
    Container("folder", "sd-concepts-library folder", (), None, None, noun="an sd-concepts-library folder"),
)

FORMATS: tuple[Format, ...] = (
    Format("lora-bundle", "embeddings bundled in a LoRA (bundle_emb.*)", ("safetensors", "pickle"), lora_bundle.detect, lora_bundle.parse, "many", False, False, several=True),
    Format("a1111-image", "A1111 embedding card (text chunk and pixels)", ("png", "webp"), a1111.detect, a1111.parse_image, "one", True, False, writer=a1111.write_image, write_containers=("png",)),
    Format("a1111", "A1111 training output (string_to_param)", ("pickle",), a1111.detect, a1111.parse, "one", True, False, several=True, writer=a1111.write, write_containers=("pickle",)),
    Format("kohya", "kohya emb_params (OneTrainer emp_params, emp_params_out)", ("safetensors", "pickle"), kohya.detect, kohya.parse, "one", True, False, writer=kohya.write, write_containers=("safetensors", "pickle")),
    Format("multi", "encoder-keyed (clip_l, clip_g, t5, *_out)", ("safetensors", "pickle"), multi.detect, multi.parse, "many", True, True, writer=multi.write, write_containers=("safetensors", "pickle")),
    Format("kohya-xti", "kohya XTI, one embedding per UNet block (recognised, refused)", ("safetensors", "pickle"), xti.detect, xti.parse, "many", False, False),
    Format("concept-folder", "sd-concepts-library folder", ("folder",), concept_folder.detect, concept_folder.parse, "one", False, False, writer=concept_folder.write, write_containers=("folder",)),
    Format("diffusers", "diffusers token dict ({token: tensor})", ("safetensors", "pickle"), diffusers.detect, diffusers.parse, "one", False, False, several=True, writer=diffusers.write, write_containers=("safetensors", "pickle")),
)

FORMAT_IDS: tuple[str, ...] = tuple(f.id for f in FORMATS)
CONTAINER_IDS: tuple[str, ...] = tuple(c.id for c in CONTAINERS)


def get_format(format_id: str) -> Format:
    """The table row for a format id; ``KeyError`` names the known ids."""
    for fmt in FORMATS:
        if fmt.id == format_id:
            return fmt
    raise KeyError(f"unknown format {format_id!r}; known formats: {', '.join(FORMAT_IDS)}")


def get_container(container_id: str) -> Container:
    """The table row for a container id."""
    for c in CONTAINERS:
        if c.id == container_id:
            return c
    raise KeyError(f"unknown container {container_id!r}; known containers: {', '.join(CONTAINER_IDS)}")


def container_for_extension(path: str) -> Container | None:
    """The container an extension suggests (the last hint, after content sniffing)."""
    low = path.lower()
    for c in CONTAINERS:
        if any(low.endswith(ext) for ext in c.extensions):
            return c
    return None


def sniff_container(prefix: bytes) -> Container | None:
    """The container whose magic bytes match, or ``None``."""
    for c in CONTAINERS:
        if c.accepts is not None and c.accepts(prefix):
            if c.id in ("png", "webp") and imagecard.container_of(prefix) != c.id:
                continue
            return c
    return None


def writable_ids() -> tuple[str, ...]:
    """Format ids that have a writer (``embkit convert --to`` choices)."""
    return tuple(f.id for f in FORMATS if f.writer is not None)


def extensions() -> tuple[str, ...]:
    """Every extension embkit reads, for walking folders."""
    return tuple(ext for c in CONTAINERS for ext in c.extensions)

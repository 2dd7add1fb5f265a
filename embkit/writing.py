"""``embkit.write``: an Embedding to a file in any writable format, atomically, loud about loss.

The writer for each format is the ``writer`` column of :data:`embkit.formats.FORMATS`; it turns the
embedding into bytes and a list of :class:`Loss` warnings without touching the disk. This module
picks the format and container, casts the dtype, applies ``strict``, and only then writes each
output through :mod:`embkit.atomic` (temporary file, fsync, rename).

Choosing the format when ``format`` is None (the extension, then the embedding): the layout every
host triggers by the same word, the file stem, as the hosts table works it out
(:func:`embkit.hosts.writing.portable_format`); the stem is also stored as the token (diffusers'
key, A1111's ``name``), so diffusers types the word A1111, ComfyUI and InvokeAI type:

====================  ==========================================================================
``.png``              ``a1111-image``
``.bin``              ``diffusers`` (the ``learned_embeds.bin`` convention)
``.pt`` ``.pth`` …    ``a1111`` for one input slot without output vectors, else ``multi``
``.safetensors``      ``diffusers`` keyed by the stem for one input slot (kohya's ``emb_params``
                      would be diffusers' token), ``multi`` for several slots or output vectors;
                      a file named ``learned_embeds*`` is ``diffusers`` keyed by the name
no extension          ``concept-folder`` (a folder)
====================  ==========================================================================
"""

from __future__ import annotations

import os
from typing import Any

from .atomic import check_target, fsync_dir, write_bytes, write_folder
from .errors import LossError, WriteError
from .formats import FORMATS, Format, container_for_extension, get_container, get_format
from .formats.writer_base import Loss, Plan, cast, dtype_name
from .schema import Embedding

#: Loss codes that mean vectors are dropped (a slot, OneTrainer's output vectors): a write that would
#: drop vectors is refused (:class:`~embkit.errors.LossError`, exit 8) unless ``allow_loss=True``
#: (``--allow-loss``). The other losses (precision asked for with ``dtype``, metadata a layout cannot
#: hold, a trigger that is the file name) are reported, and refused only with ``strict``.
VECTOR_LOSSES = frozenset({"slot-dropped", "output-vectors-dropped"})

#: options a writer understands (anything else is a caller's typo, reported as such)
OPTIONS = {
    "slot": "the one slot single-encoder formats keep (default: the first)",
    "t5_key": "multi: spell the T5 key 't5' (OneTrainer, diffusers) or 't5xxl' (ComfyUI)",
    "sdxl_two_files": "diffusers: write an SDXL pair as <name> (CLIP-L) and <name>_2 (CLIP-G)",
    "picture": "a1111-image: the picture inside the card (PIL image or path)",
    "embeds": "concept-folder: 'bin' (default) or 'safetensors' for the tensor file",
    "token": "a1111, diffusers: the trigger stored in the file (A1111's name, diffusers' key; default: the embedding's name)",
}


def choose_format(embedding: Embedding, path: str) -> str:
    """The format id :func:`write` uses when none is given (see the module docstring)."""
    low = os.path.basename(os.fspath(path).rstrip("/\\")).lower()
    several = len(embedding.slots) > 1 or bool(embedding.output_slots)
    container = container_for_extension(low)
    if container is None:
        if not os.path.splitext(low)[1]:
            return "concept-folder"
    elif container.id == "safetensors":
        if low.startswith("learned_embeds"):  # diffusers' training scripts name their output so
            return "diffusers"
        return _portable(embedding, "safetensors") or ("multi" if several else "diffusers")
    elif container.id == "pickle":
        if low.endswith(".bin"):  # the learned_embeds.bin convention
            return "diffusers"
        return _portable(embedding, "pickle") or ("multi" if several else "a1111")
    else:
        image = [f.id for f in FORMATS if container.id in f.write_containers]
        if image:
            return image[0]
    raise WriteError("cannot tell the format from the extension; name one: format= in Python, --to on the command line (`embkit formats` lists them)", path=path)


def _portable(embedding: Embedding, container: str) -> str | None:
    from .hosts.writing import portable_format

    return portable_format(embedding, container)


def choose_container(fmt: Format, path: str, container: str | None = None) -> str:
    """The container for ``path``: ``container`` if given, else the one its extension names."""
    if not fmt.write_containers:
        raise WriteError(f"embkit cannot write {fmt.id} files", path=path)
    if container is None:
        if fmt.write_containers == ("folder",):
            return "folder"
        found = container_for_extension(path)
        if found is None:
            exts = ", ".join(ext for c in fmt.write_containers for ext in get_container(c).extensions)
            raise WriteError(f"no extension embkit knows; a {fmt.id} file ends in {exts}", path=path)
        container = found.id
    if container not in fmt.write_containers:
        raise WriteError(f"a {fmt.id} file cannot be written as {container}; it can be {', '.join(fmt.write_containers)}", path=path)
    return container


def default_extension(format: str, container: str | None = None) -> str:
    """The extension a converted file gets: ``.pt``, ``.bin`` (diffusers pickles),
    ``.safetensors``, ``.png``, or ``""`` for a folder."""
    fmt = get_format(format)
    container = container or fmt.write_containers[0]
    if container == "folder":
        return ""
    if container == "pickle" and fmt.id == "diffusers":
        return ".bin"
    return get_container(container).extensions[0]


def plan(embedding: Embedding, path: str | os.PathLike, format: str | None = None, *, container: str | None = None, dtype: str | None = None, **options: Any) -> Plan:
    """What :func:`write` would write and lose, without writing (``--dry-run``)."""
    path = os.path.expanduser(os.fspath(path))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown write option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    fmt_id = format or choose_format(embedding, path)
    if format is None and "token" not in options:
        from .hosts.writing import default_token

        token = default_token(path, fmt_id)
        if token is not None:
            options["token"] = token
    try:
        fmt = get_format(fmt_id)
    except KeyError as exc:
        raise WriteError(str(exc.args[0]), path=path) from None
    if fmt.writer is None:
        writable = ", ".join(f.id for f in FORMATS if f.writer is not None)
        raise WriteError(f"embkit cannot write {fmt.id} files; it writes {writable}", path=path)
    chosen = choose_container(fmt, path, container)
    if dtype is not None:
        try:
            dtype = dtype_name(dtype)
        except ValueError as exc:
            raise WriteError(str(exc), path=path) from None
    losses: list[Loss] = []
    cast_emb = cast(embedding, dtype, losses, fmt_id="" if dtype else fmt.id)  # a dtype asked for is the reason, not the format
    result = fmt.writer(cast_emb, path, chosen, dict(options))
    result.losses[:0] = losses
    result.format = fmt.id
    return result


def lossless_choice(losses: list[Loss], format: str | None = None) -> str:
    """What keeps the vectors ``losses`` drop: the multi layout keeps every slot and output
    vectors; a diffusers SDXL pair can also be two files."""
    codes = {loss.code for loss in losses}
    slots = {loss.slot for loss in losses if loss.code == "slot-dropped"}
    if "output-vectors-dropped" in codes:
        return "multi keeps every slot and the output vectors (--to multi; format='multi')"
    if format == "diffusers" and slots <= {"clip_l", "clip_g"}:
        return "multi keeps both halves in one file (--to multi), a diffusers pair in two (--sdxl-two-files; sdxl_two_files=True)"
    return "multi keeps every slot (--to multi; format='multi')"


def check_losses(losses: list[Loss], path: str, *, strict: bool = False, allow_loss: bool = False, format: str | None = None) -> None:
    """Refuse a write that would drop vectors (:data:`VECTOR_LOSSES`) unless ``allow_loss``, and one
    that would lose anything at all under ``strict``: a :class:`~embkit.errors.LossError` (exit 8)
    naming what is lost and the lossless choice."""
    dropped = [loss for loss in losses if loss.code in VECTOR_LOSSES]
    if dropped and not allow_loss:
        lines = "; ".join(loss.message.split("; sdxl_two_files")[0] for loss in dropped)
        raise LossError(f"would drop vectors: {lines}. {lossless_choice(dropped, format)}; or allow the loss (--allow-loss; allow_loss=True)", path=path)
    if strict and losses:
        lines = "; ".join(loss.message for loss in losses)
        raise LossError(f"would lose: {lines}", path=path)


def prepare(embedding: Embedding, path: str | os.PathLike, format: str | None = None, **settings: Any) -> Plan:
    """Everything :func:`write` does before touching the disk: plan, the loss rules
    (:func:`check_losses`), existing targets. ``settings``: :func:`write`'s keywords but
    ``sync_dir``. Batch writers (``embkit convert``) then write many plans with one disk flush."""
    overwrite = bool(settings.pop("overwrite", False))
    strict = bool(settings.pop("strict", False))
    allow_loss = bool(settings.pop("allow_loss", False))
    path = os.path.expanduser(os.fspath(path))
    check_target(path, overwrite)
    planned = plan(embedding, path, format, **settings)  # container, dtype and the layout's options
    check_losses(planned.losses, path, strict=strict, allow_loss=allow_loss, format=planned.format)
    for out in planned.outputs:
        if out.path != path:  # ``path`` itself was checked above
            check_target(out.path, overwrite)
    return planned


def write(
    embedding: Embedding,
    path: str | os.PathLike,
    format: str | None = None,
    *,
    container: str | None = None,
    overwrite: bool = False,
    strict: bool = False,
    allow_loss: bool = False,
    dtype: str | None = None,
    sync_dir: bool = True,
    **options: Any,
) -> list[Loss]:
    """Write ``embedding`` to ``path`` as ``format`` and return what the target could not hold.

    ``format`` is a FORMATS id (``a1111``, ``a1111-image``, ``diffusers``, ``kohya``, ``multi``,
    ``concept-folder``); when None it follows the extension and the embedding (see the module
    docstring). The container follows the extension unless ``container`` is given. ``dtype``
    (``fp32``, ``fp16``, ``bf16``) casts every slot; by default each slot keeps its stored dtype
    bit for bit. A write that would drop vectors (a slot the layout cannot hold, output vectors)
    raises :class:`~embkit.errors.LossError` naming the lossless choice, unless ``allow_loss=True``;
    ``strict=True`` raises it for any loss (precision, metadata) too, before anything is written. An existing target raises
    :class:`~embkit.errors.TargetExistsError` unless ``overwrite``. Writes are atomic: a failure
    leaves no file behind. Options: see :data:`OPTIONS`.
    """
    planned = prepare(embedding, path, format, container=container, overwrite=overwrite, strict=strict, allow_loss=allow_loss, dtype=dtype, **options)
    written: list[str] = []
    try:
        for out in planned.outputs:
            if out.fill is not None:
                write_folder(out.path, out.fill, owns=out.owns, overwrite=overwrite)
            else:
                write_bytes(out.path, out.data, overwrite=overwrite, sync_dir=False)
            written.append(out.path)
    except BaseException:
        # a pair is all or nothing: remove what this call created (never a file it replaced)
        if not overwrite:
            for done in written:
                try:
                    os.unlink(done)
                except OSError:
                    pass
        raise
    if sync_dir:
        for folder in {os.path.dirname(os.path.abspath(p)) for p in written}:
            fsync_dir(folder)
    return list(planned.losses)


__all__ = ["write", "plan", "prepare", "check_losses", "lossless_choice", "VECTOR_LOSSES", "Loss", "choose_format", "choose_container", "default_extension", "OPTIONS"]

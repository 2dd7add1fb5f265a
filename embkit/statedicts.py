"""State dicts: the in-memory dicts a host's loader takes, both ways, without torch.

A *state dict* here is what ``torch.load`` gives back from an embedding file: ``{token: tensor}``
(diffusers), ``{"string_to_param": {"*": tensor}, "name": …}`` (A1111), ``{"emb_params": tensor}``
(kohya), ``{"clip_l": …, "clip_g": …}`` (multi). diffusers' ``load_textual_inversion`` takes one
directly, and node authors pass them between nodes.

* :func:`state_dict` builds one from an :class:`~embkit.schema.Embedding` with the format writers
  themselves (the ``writer`` column of :data:`embkit.formats.FORMATS`, through
  :func:`embkit.writing.plan`): the dict is exactly the one the writer would pickle, so there is no
  second description of the layouts here. Arrays are writable copies (``torch.from_numpy`` takes
  them without a warning); :func:`embkit.to_state_dict` gives torch tensors.
* :func:`from_state_dict` reads one: numpy arrays or torch tensors (recognised by their methods,
  torch is not imported), detected and parsed by the same layout table as files.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import EmbkitError, LossError, OperationError, UnknownFormatError
from .formats import FORMATS, get_format
from .formats.base import NUMPY_DTYPES, Part, Raw, Tensor, narrow_bf16, stem_of, tensor_matrix, widen_bf16
from .schema import Embedding, Source

#: the container a state dict stands for: what ``torch.load`` returns is a pickle's tree
CONTAINER = "pickle"
#: ``Source.container`` of embeddings read from memory
IN_MEMORY = "state dict"


def state_dict(emb: Embedding, layout: str = "diffusers", *, dtype: str | None = None, strict: bool = False, **options: Any) -> dict[str, object]:
    """The dict ``layout``'s loader takes for ``emb``: numpy arrays, writable copies.

    ``layout`` is a format id whose files are pickles (``diffusers``, ``a1111``, ``kohya``,
    ``multi``): the dict is what ``torch.load`` returns from the file :func:`embkit.write` would
    write, key for key. ``dtype`` casts (``fp16``, ``bf16`` …; default: each slot's stored dtype);
    bf16 values come as float32 arrays (numpy has no bf16; the values are exact). Writer options
    apply (``slot="clip_g"`` picks the slot of a one-encoder layout, ``t5_key=``). What the layout
    cannot hold (another slot, metadata) is dropped; ``strict=True`` raises
    :class:`~embkit.errors.LossError` instead.

        >>> sd = embkit.statedicts.state_dict(emb, "a1111")
        >>> sorted(sd)
        ['name', 'sd_checkpoint', 'sd_checkpoint_name', 'step', 'string_to_param', 'string_to_token']
    """
    return state_dict_with(_numpy, emb, layout, dtype=dtype, strict=strict, **options)


def state_dict_with(leaf: Callable[[str, np.ndarray], Any], emb: Embedding, layout: str = "diffusers", *,
                    dtype: str | None = None, strict: bool = False, **options: Any) -> dict[str, object]:
    """:func:`state_dict` with each tensor built by ``leaf(dtype name, stored array)`` (the
    stored array holds bf16 as uint16 bit patterns): how the torch side makes tensors."""
    from .writing import plan

    try:
        fmt = get_format(layout)
    except KeyError as exc:
        raise UnknownFormatError(str(exc.args[0])) from None
    if CONTAINER not in fmt.write_containers:
        pickled = ", ".join(f.id for f in FORMATS if CONTAINER in f.write_containers)
        raise OperationError(f"{layout} files are not pickled tensor dicts, so no loader takes a state dict of them; layouts with one: {pickled}")
    if options.get("sdxl_two_files"):
        raise OperationError("a state dict is one file's dict; for a diffusers SDXL pair ask for slot='clip_l' and slot='clip_g'")
    planned = plan(emb, f"{emb.name}.pt", fmt.id, container=CONTAINER, dtype=dtype, **options)
    # a state dict has no file name, so "triggered by the file name" does not apply to it
    losses = [loss for loss in planned.losses if loss.code != "trigger-renamed"]
    if strict and losses:
        raise LossError("a {} state dict would lose: {}".format(fmt.id, "; ".join(loss.message for loss in losses)))
    return _walk(planned.outputs[0].tree, leaf)


def _walk(value: Any, leaf: Callable[[str, np.ndarray], Any]) -> Any:
    from .formats.torchfile_write import TensorData

    if isinstance(value, TensorData):
        return leaf(value.dtype, value.array)
    if isinstance(value, dict):
        return {k: _walk(v, leaf) for k, v in value.items()}
    return value


def _numpy(dtype: str, stored: np.ndarray) -> np.ndarray:
    """A fresh, writable, native-endian copy (bf16 widened to float32): the writer's arrays may be
    views of the embedding's read-only memory."""
    arr = widen_bf16(stored) if dtype == "bfloat16" else stored
    return np.array(arr, dtype=arr.dtype.newbyteorder("="), copy=True)


# -- reading -----------------------------------------------------------------------------------------


def from_state_dict(tree: Any, *, name: str | None = None, format: str | None = None) -> list[Embedding]:
    """The embeddings in an in-memory state dict (any layout embkit reads from a pickle).

    Values may be numpy arrays or torch tensors (on any device; bf16 included). The layout is
    detected from the keys unless ``format`` names it. The trigger is ``name`` when given, else
    the name the dict carries: the token key (diffusers), the stored ``name`` (A1111), or the one
    key of a one-tensor dict (kohya's ``emb_params``: diffusers' rule); a dict that names nothing
    (``{"clip_l", "clip_g"}``) needs ``name``.
    """
    if not isinstance(tree, dict) or not tree:
        raise EmbkitError(f"a state dict must be a non-empty dict, not {type(tree).__name__ if not isinstance(tree, dict) else 'an empty dict'}")
    raw = Raw(_handles(tree, 0), CONTAINER)
    if format is not None:
        try:
            fmt = get_format(format)
        except KeyError as exc:
            raise UnknownFormatError(str(exc.args[0])) from None
        if not fmt.detect(raw):
            raise UnknownFormatError(f"the state dict is not in the {fmt.id} layout (keys {_keys(tree)})")
    else:
        found = [f for f in FORMATS if CONTAINER in f.containers and f.detect(raw)]
        if not found:
            raise UnknownFormatError(f"the state dict holds no embedding layout embkit knows (keys {_keys(tree)})")
        fmt = found[0]
    label = "<state dict>"
    parts = fmt.parse(raw, label)
    return [_embedding(part, fmt.id, name if len(parts) == 1 else None, raw, label) for part in parts]


def _embedding(part: Part, fmt_id: str, name: str | None, raw: Raw, label: str) -> Embedding:
    if name is None and part.name == stem_of(label):  # a layout triggered by its file's name
        stored = part.metadata.get("stored_name")
        tensors = [k for k, v in raw.tree.items() if isinstance(v, Tensor)]
        if isinstance(stored, str) and stored.strip():
            name = stored
        elif len(tensors) == 1 and isinstance(tensors[0], str):
            name = tensors[0]  # diffusers names a one-key dict by its key
        else:
            raise EmbkitError(f"a {fmt_id} state dict (keys {_keys(raw.tree)}) carries no trigger word; pass name= (or token=)")
    vectors = {slot: tensor_matrix(t, label, f"{part.name} {slot}") for slot, t in part.tensors.items()}
    dtypes = {slot: t.dtype for slot, t in part.tensors.items()}
    try:
        return Embedding(name=name or part.name, vectors=vectors, dtypes=dtypes, metadata=part.metadata,
                         source=Source(path=label, format=fmt_id, container=IN_MEMORY, member=part.member))
    except ValueError as exc:
        raise EmbkitError(f"{label}: {exc}") from None


#: nesting a state dict may have (A1111's is two levels deep)
MAX_DEPTH = 8


def _handles(value: Any, depth: int) -> Any:
    """The tree with :class:`~embkit.formats.base.Tensor` handles in place of arrays and tensors."""
    if depth > MAX_DEPTH:
        raise EmbkitError(f"the state dict nests deeper than {MAX_DEPTH} levels")
    tensor = _tensor(value)
    if tensor is not None:
        return tensor
    if isinstance(value, dict):
        return {k: _handles(v, depth + 1) for k, v in value.items()}
    return value


def _tensor(value: Any) -> Tensor | None:
    """A numpy array, or a torch tensor (known by ``detach``/``cpu``, so torch is not imported)."""
    if isinstance(value, np.ndarray):
        arr = value
    elif all(hasattr(value, a) for a in ("detach", "cpu", "dtype", "shape")):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            bits = narrow_bf16(t.float().numpy())  # exact: the values are bf16 already
            return Tensor(tuple(int(d) for d in t.shape), "bfloat16", lambda b=bits: b)
        arr = t.numpy()
    else:
        return None
    dtype = arr.dtype.name
    if dtype not in NUMPY_DTYPES:
        dtype = str(arr.dtype)  # an int or bool tensor: the layout check names it
    return Tensor(tuple(int(d) for d in arr.shape), dtype, lambda a=arr: np.asarray(a))


def _keys(tree: dict) -> str:
    keys = [repr(k) for k in list(tree)[:8]]
    return "{" + ", ".join(keys) + (", …" if len(tree) > 8 else "") + "}"


__all__ = ["state_dict", "state_dict_with", "from_state_dict"]

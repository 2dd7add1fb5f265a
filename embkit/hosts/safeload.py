"""What each host's pickle loader refuses, as facts from its source (cited in docs/hosts.md).

* A1111 patches ``torch.load`` with ``modules/safe.py``: every zip member must match a pattern
  (the pattern changed in 1.10), exactly one ``<dir>/data.pkl``, and the pickle may name only
  the globals of its ``RestrictedUnpickler.find_class``; a legacy (non-zip) file's pickles go
  through the same unpickler. A refused file is reported as "Unable to load Textual inversion
  embedding due to data issue" and not loaded.
* torch's ``weights_only`` unpickler (the default since torch 2.6; ComfyUI, InvokeAI and diffusers
  ask for it, SD.Next gets it by default on torch 2.13) allows the rebuild functions, storages,
  dtypes and ``OrderedDict``; ComfyUI adds a few globals, and falls back to guessing the tensor
  from the zip's ``data/`` members when torch refuses.
* Forge calls plain ``torch.load`` on torch 2.3.1 (default ``weights_only=False``): nothing refused.

Globals are spelled ``module.name`` as :mod:`embkit.scan` reports them.
"""

from __future__ import annotations

import re
from typing import Iterable

from .facts import FileFacts

#: A1111 ``modules/safe.py`` zip member pattern before 1.10 (``A1111@0593384:modules/safe.py:68``).
A1111_MEMBERS_BEFORE_1_10 = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
#: From 1.10 on (``A1111@07cf95c:modules/safe.py:67-68``; the ``.`` before ``data`` is unescaped there).
A1111_MEMBERS_1_10 = re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$")
A1111_DATA_PKL = re.compile(r"^([^/]+)/data\.pkl$")

#: ``RestrictedUnpickler.find_class`` (``A1111@07cf95c:modules/safe.py:40-61``, the same before 1.10).
A1111_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_device_tensor_from_numpy",
        *(f"torch.{n}" for n in ("FloatStorage", "HalfStorage", "IntStorage", "LongStorage", "DoubleStorage", "ByteStorage", "float32", "BFloat16Storage")),
        "torch.nn.modules.container.ParameterDict",
        "numpy.core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct",
        "numpy.dtype",
        "numpy.ndarray",
        "_codecs.encode",
        "pytorch_lightning.callbacks.model_checkpoint",
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        "__builtin__.set",
    }
)

#: A1111 releases and their member pattern, newest first.
A1111_RELEASES: tuple[tuple[str, re.Pattern[str]], ...] = (("1.10+", A1111_MEMBERS_1_10), ("before 1.10", A1111_MEMBERS_BEFORE_1_10))

_STORAGES = (
    "FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "IntStorage", "LongStorage", "ShortStorage",
    "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage", "ComplexDoubleStorage", "TypedStorage", "UntypedStorage",
)
_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool", "float", "half", "double", "long")
#: torch's ``weights_only`` allow-list, the part a tensor file can name
#: (``torch@cf30153:torch/_weights_only_unpickler.py:150-227``).
TORCH_WEIGHTS_ONLY_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "collections.Counter",
        "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout",
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "_codecs.encode",
        "builtins.bytearray",
        "builtins.set",
        "builtins.complex",
        *(f"torch.{n}" for n in _STORAGES),
        *(f"torch.{n}" for n in _DTYPES),
        *(
            f"torch._utils.{n}"
            for n in (
                "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_tensor", "_rebuild_tensor_v2",
                "_rebuild_tensor_v3", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage", "_rebuild_nested_tensor",
                "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
            )
        ),
        "torch._tensor._rebuild_from_type_v2",
    }
)
#: Globals ComfyUI registers with ``add_safe_globals`` (``Comfy@a125cd8:comfy/utils.py:36-48``).
COMFYUI_EXTRA_GLOBALS = frozenset({"numpy.core.multiarray.scalar", "numpy.dtype", "numpy.dtypes.Float64DType", "_codecs.encode", "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"})


def _refused(globals_: Iterable[str], allowed: frozenset[str]) -> list[str]:
    return [g for g in globals_ if g not in allowed]


def a1111_refusal(facts: FileFacts, members: re.Pattern[str]) -> str | None:
    """Why A1111's safe loader (with this release's member pattern) refuses a pickle file, or
    ``None`` when it accepts it (or when the facts are unknown)."""
    if facts.zip_members is not None:
        bad = [m for m in facts.zip_members if not members.match(m)]
        if bad:
            return f"its safe loader refuses zip member{'s' if len(bad) > 1 else ''} {', '.join(sorted(m.split('/', 1)[-1] for m in bad))} (\"bad file inside\"; 'The file may be malicious')"
        pkls = [m for m in facts.zip_members if A1111_DATA_PKL.match(m)]
        if len(pkls) != 1:
            return f"its safe loader needs exactly one data.pkl, the file has {len(pkls)}"
    if facts.pickle_globals is not None:
        bad = _refused(facts.pickle_globals, A1111_GLOBALS)
        if bad:
            return f"its safe loader forbids the global {bad[0]} (\"global ... is forbidden\")"
    return None


def weights_only_refusal(facts: FileFacts, extra: frozenset[str] = frozenset()) -> str | None:
    """Why ``torch.load`` with ``weights_only=True`` refuses a pickle file (``extra``: globals the host
    registered with ``add_safe_globals``), or ``None``."""
    if facts.pickle_globals is None:
        return None
    bad = _refused(facts.pickle_globals, TORCH_WEIGHTS_ONLY_GLOBALS | extra)
    if bad:
        return f"torch.load with weights_only=True refuses the global {bad[0]} (\"Unsupported global\")"
    return None


def comfyui_zip_guess(facts: FileFacts) -> tuple[int, int] | None:
    """ComfyUI's fallback when ``torch.load`` refuses a file (``safe_load_embed_zip``): the last
    zip member holding ``data/`` with at least 768 float32 values, read as float32 rows of 768
    (or 1024 when 768 does not divide it). Returns (rows, width), or ``None`` when there is no zip
    or no such member. The member sizes are taken from the file's parameter shapes."""
    if facts.zip_members is None:
        return None
    tensors = list(facts.params) or list(facts.tensors)
    sizes = {}
    for i, t in enumerate(tensors):
        n = 1
        for d in t.shape:
            n *= d
        sizes[str(i)] = n * {"float16": 2, "bfloat16": 2, "float64": 8}.get(t.dtype, 4)
    for member in reversed(facts.zip_members):
        if "data/" not in member:
            continue
        key = member.rsplit("/", 1)[-1]
        nbytes = sizes.get(key)
        if nbytes is None or nbytes // 4 < 768:
            continue
        count = nbytes // 4
        width = 768 if count % 768 == 0 else 1024
        return count // width, width
    return None

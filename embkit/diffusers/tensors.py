"""State dicts as torch tensors: :func:`to_state_dict` (``embkit.to_state_dict``).

The layouts themselves come from :mod:`embkit.statedicts` (the format writers); this module only
makes torch tensors of the stored arrays, which is why it sits on the torch side. torch is imported
only when ``framework="torch"`` is asked for.
"""

from __future__ import annotations

from typing import Any

from ..errors import OperationError
from ..schema import Embedding
from ..statedicts import state_dict, state_dict_with

FRAMEWORKS = ("numpy", "torch")


def to_state_dict(emb: Embedding, layout: str = "diffusers", framework: str = "numpy", *, dtype: str | None = None,
                  strict: bool = False, **options: Any) -> dict[str, object]:
    """The dict ``layout``'s loader takes for ``emb``, with numpy arrays or torch tensors.

    ``layout``: ``diffusers`` (``{trigger: T[n, d]}``, what diffusers' ``load_textual_inversion``
    takes), ``a1111`` (``string_to_param`` …, what A1111 and ComfyUI load), ``kohya`` or
    ``multi``. ``framework="numpy"`` gives writable numpy copies; ``"torch"`` gives CPU tensors
    that own their memory (no read-only warning from ``torch.from_numpy``), in the stored dtype
    (bf16 as ``torch.bfloat16``). Other arguments as :func:`embkit.statedicts.state_dict`.

        >>> sd = embkit.to_state_dict(emb, "diffusers", framework="torch")
        >>> pipe.load_textual_inversion(sd)           # diffusers' own loader takes it
    """
    if framework not in FRAMEWORKS:
        raise OperationError(f"framework must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    if framework == "numpy":
        return state_dict(emb, layout, dtype=dtype, strict=strict, **options)
    import numpy as np
    import torch

    def tensor(stored_dtype: str, stored: Any) -> Any:
        if stored_dtype == "bfloat16":  # uint16 bit patterns: reinterpret, do not convert
            return torch.from_numpy(np.ascontiguousarray(stored).view(np.int16).copy()).view(torch.bfloat16)
        # a copy torch owns (the stored array may be a read-only view of the embedding)
        return torch.from_numpy(np.array(stored, dtype=stored.dtype.newbyteorder("="), copy=True))

    return state_dict_with(tensor, emb, layout, dtype=dtype, strict=strict, **options)


__all__ = ["to_state_dict", "FRAMEWORKS"]

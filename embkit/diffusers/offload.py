"""Changing text encoders under accelerate's CPU offload.

``enable_sequential_cpu_offload()`` keeps a text encoder's weights on the ``meta`` device and the
real values in a hook per submodule (accelerate's ``AlignDevicesHook`` with ``offload=True``):
growing the embedding matrix there fails with "Cannot copy out of meta tensor". diffusers' own
loader removes the hooks, changes the matrix and offloads again (diffusers@58eb52c
src/diffusers/loaders/textual_inversion.py:422-463). :func:`unhooked` does the same for each
encoder that has such hooks, with two differences:

* it offloads again on the device the removed hooks executed on (the pipeline's execution device,
  ``pipe._offload_device``), where diffusers 0.42 passes ``text_encoder.device``, the CPU under
  offload; and with the hooks' own ``offload_buffers``;
* it touches only the encoders that are changed, not every component.

``enable_model_cpu_offload()`` hooks (``CpuOffload``) move a whole model to the execution device
before its forward pass; a new embedding module inside the model moves with it, so those hooks stay.
accelerate is imported only when a hook is found.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


def sequential_hooks(module: Any) -> tuple[Any, bool] | None:
    """(execution device, offload_buffers) of a module under sequential offload, else None."""
    for sub in module.modules():
        hook = getattr(sub, "_hf_hook", None)
        if hook is None:
            continue
        for h in getattr(hook, "hooks", None) or (hook,):  # a SequentialHook holds several
            if getattr(h, "offload", False) and getattr(h, "execution_device", None) is not None:
                return h.execution_device, bool(getattr(h, "offload_buffers", False))
    return None


@contextlib.contextmanager
def unhooked(pipe: Any, enc_attrs: Any) -> Iterator[None]:
    """Within this block the given encoders hold their real weights: sequential-offload hooks are
    removed (accelerate puts the weights back) and added again afterwards, also after an error."""
    removed = []
    try:
        for enc_attr in dict.fromkeys(enc_attrs):
            encoder = getattr(pipe, enc_attr, None)
            found = sequential_hooks(encoder) if encoder is not None else None
            if found is None:
                continue
            from accelerate.hooks import remove_hook_from_module

            remove_hook_from_module(encoder, recurse=True)
            removed.append((encoder, found))
        yield
    finally:
        if removed:
            from accelerate import cpu_offload

            for encoder, (device, offload_buffers) in removed:
                cpu_offload(encoder, device, offload_buffers=offload_buffers)


__all__ = ["unhooked", "sequential_hooks"]

"""From anything a user may name as a target to a :class:`~embkit.model.spec.ModelSpec`."""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import TargetError
from ..schema import FAMILIES
from .checkpoint import is_pickle_checkpoint
from .slots import family_name
from .spec import ModelSpec

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_target(value: Any) -> ModelSpec:
    """A :class:`ModelSpec` from anything a user may name as a target: a ModelSpec, a family name
    (``sd1`` …), an existing diffusers folder, an existing single-file checkpoint (``.safetensors``
    header, or ``.ckpt`` through the allow-list unpickler), a live
    diffusers pipeline, or a Hub repo id ``org/name`` (through :mod:`embkit.hubclient`)."""
    if isinstance(value, ModelSpec):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(value, str) and family_name(text) in FAMILIES:
            return ModelSpec.from_family(text)
        text = os.path.expanduser(text)
        if os.path.isdir(text):
            return ModelSpec.from_folder(text)
        if os.path.isfile(text):
            if text.lower().endswith(".safetensors") or is_pickle_checkpoint(text):
                return ModelSpec.from_checkpoint(text)
            raise TargetError("is not a single-file checkpoint (.safetensors, or .ckpt read by embkit's allow-list unpickler)", path=text)
        if isinstance(value, str) and _HUB_ID.match(text):
            try:
                from ..hubclient import model_folder
            except ImportError:
                raise TargetError(f"{text!r} looks like a Hub repo id, but hub support is not available in this install") from None
            return ModelSpec.from_folder(model_folder(text))
        raise TargetError(
            f"cannot use {text!r} as a target: not a family ({', '.join(FAMILIES)}), an existing folder or "
            ".safetensors file, or a Hub repo id (org/name)"
        )
    if hasattr(value, "text_encoder") or hasattr(value, "text_encoder_2"):
        return ModelSpec.from_pipeline(value)
    raise TargetError(f"cannot use a {type(value).__name__} as a target model")

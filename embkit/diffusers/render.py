"""Before/after test renders: does an embedding change what the model makes?

:func:`compare` renders the same prompt and seeds twice, without and with the embeddings applied
(in the positive or the negative prompt), and measures three things: how far the text encoders'
conditioning moved (cosine distance of the encoder outputs, with vs without), how far the images
moved (mean absolute pixel difference, 0–255), and the time. :mod:`.sheet` lays the images
out as a labelled PNG and writes it, replacing only a previous sheet unless told to. An embedding
that moves neither is the classic "appears to do nothing" failure: :data:`EXIT_NO_EFFECT` /
:class:`NoEffectError`.

The prompt text is the same in both renders: without the embedding its trigger is plain words to the
tokenizer; with it, the trigger is the embedding's vectors. torch and diffusers load lazily.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

from ..errors import NoEffectError, TargetError
from ..schema import Embedding
from .comparison import EXIT_NO_EFFECT, NO_EFFECT_COSINE, NO_EFFECT_PIXELS, Comparison, SeedRender

#: Prompt used when none is given (the triggers are added to it).
DEFAULT_PROMPT = "a photo"
#: Steps for a real (non-tiny) model when none are given.
DEFAULT_STEPS = 20


# -- choosing the device and the model ---------------------------------------------------------


def resolve_device(device: str = "auto") -> tuple[str, Any]:
    """``auto`` → CUDA in float16 when present, else CPU in float32; ``cuda`` / ``cpu`` as asked."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TargetError("--device cuda was asked for, but torch sees no CUDA device")
    if device not in ("cuda", "cpu"):
        raise TargetError(f"unknown device {device!r}; use auto, cuda or cpu")
    return device, (torch.float16 if device == "cuda" else torch.float32)


def family_of(embeddings: Sequence[Embedding]) -> str:
    """The built-in tiny family that fits every embedding (``sd1``, ``sd2`` or ``sdxl``)."""
    from .tiny import TINY_FAMILIES

    candidates = None
    for emb in embeddings:
        fits = [f for f in emb.families if f in TINY_FAMILIES]
        candidates = fits if candidates is None else [f for f in candidates if f in fits]
    if not candidates:
        slots = sorted({s for e in embeddings for s in e.slots})
        raise TargetError(f"no built-in pipeline fits embeddings with slots {', '.join(slots)}; pass --model with a model folder or Hub id")
    return candidates[0]


def load_pipeline(model: str | None, embeddings: Sequence[Embedding], device: str = "auto") -> tuple[Any, str, bool]:
    """The pipeline to render with, its description, and whether it is a built-in tiny one.

    ``model``: ``None`` (the tiny pipeline of the embeddings' family), a family name (that family's
    tiny pipeline), a local diffusers folder (loaded with ``local_files_only``), or a Hub repo id
    (fetched through :func:`embkit.hub.model_folder`).
    """
    from ..model.slots import ALIASES
    from .tiny import TINY_FAMILIES, tiny_pipeline

    dev, dtype = resolve_device(device)
    name = None if model is None else ALIASES.get(model.strip().lower(), model.strip().lower())
    if name is None or name in TINY_FAMILIES:
        family = family_of(embeddings) if name is None else name
        return tiny_pipeline(family, device=dev, dtype=dtype), f"built-in tiny {family}", True
    if name in ("sd3", "flux"):
        raise TargetError(f"no built-in tiny pipeline for {model}; pass a local diffusers folder or a Hub id")
    if os.path.isfile(model):
        raise TargetError("rendering needs a diffusers model folder, a family name or a Hub id, not a single file", path=model)
    folder = model
    if not os.path.isdir(model):
        from ..hubclient import model_folder

        folder = model_folder(model, include="all")
    try:
        from diffusers import DiffusionPipeline

        # diffusers renamed torch_dtype to dtype (0.36+); older releases only know torch_dtype
        from diffusers.utils import deprecation_utils

        dtype_kw = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
        pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, **{dtype_kw: dtype})
    except (OSError, ValueError, EnvironmentError) as exc:
        raise TargetError(f"cannot load a diffusers pipeline from {folder}: {exc}") from None
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe, model, False


# -- measuring ---------------------------------------------------------------------------------


def _conditioning(pipe: Any, text: str) -> Any:
    """Every text encoder's output for ``text`` (triggers expanded), concatenated and flattened."""
    import torch

    from .apply import encoder_slots, expand_prompt

    parts = []
    with torch.no_grad():
        for s in encoder_slots(pipe):
            tokenizer, encoder = getattr(pipe, s.tokenizer), getattr(pipe, s.encoder)
            ids = tokenizer(expand_prompt(pipe, text, s.tokenizer), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
            out = encoder(ids.to(encoder.device))[0]
            parts.append(out.float().flatten().cpu())
    return torch.cat(parts)


def _images(pipe: Any, prompt: str, negative: str | None, seeds: Sequence[int], steps: int, size: int | None) -> list[Any]:
    import numpy as np
    import torch

    from .apply import expanded_prompts

    out = []
    generator_device = "cuda" if pipe.device.type == "cuda" else "cpu"
    with expanded_prompts(pipe), torch.no_grad():
        for seed in seeds:
            kwargs: dict[str, Any] = dict(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, output_type="np")
            if size is not None:
                kwargs.update(height=size, width=size)
            kwargs["generator"] = torch.Generator(device=generator_device).manual_seed(int(seed))
            image = pipe(**kwargs).images[0]
            out.append(np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255), 0, 255).astype(np.uint8))
    return out


def prompts_for(triggers: Sequence[str], prompt: str | None, as_negative: bool) -> tuple[str, str | None, list[str]]:
    """(positive, negative, warnings): where the triggers go. In the negative prompt the triggers
    are the whole negative; in the positive they are appended unless the prompt names them."""
    from .prompt import find

    warnings: list[str] = []
    if as_negative:
        return (prompt or DEFAULT_PROMPT), ", ".join(triggers), warnings
    if prompt is None:
        return f"{DEFAULT_PROMPT}, {', '.join(triggers)}", None, warnings
    missing = [t for t in triggers if t not in find(prompt, list(triggers))]
    if missing:
        warnings.append(f"the prompt does not name {', '.join(missing)}; appended")
        prompt = f"{prompt}, {', '.join(missing)}"
    return prompt, None, warnings


def compare(
    pipe: Any,
    embeddings: Sequence[Embedding | str],
    *,
    prompt: str | None = None,
    as_negative: bool = False,
    seeds: Sequence[int] = (0,),
    steps: int | None = None,
    size: int | None = None,
    model: str = "",
) -> Comparison:
    """Render ``prompt`` for each seed without and with ``embeddings`` and measure the change.

    The pipeline is left as it was: the embeddings are applied for the second pass and unloaded
    afterwards. ``steps`` defaults to the tiny pipelines' 4, or 20 for a real model.
    """
    import numpy as np

    from .apply import _load, apply, unload

    embs = _load(list(embeddings))
    seeds = tuple(int(s) for s in seeds) or (0,)
    triggers = [e.name for e in embs]
    positive, negative, warnings = prompts_for(triggers, prompt, as_negative)
    from .tiny import TINY_SIZE, TINY_STEPS, is_tiny

    if steps is None:
        steps = TINY_STEPS if is_tiny(pipe) else DEFAULT_STEPS
    if size is None and is_tiny(pipe):
        size = TINY_SIZE
    side = negative if as_negative else positive
    start = time.perf_counter()
    cond_before = _conditioning(pipe, side)
    before = _images(pipe, positive, negative, seeds, steps, size)
    applied = apply(pipe, embs)
    try:
        warnings.extend(applied.warnings)
        cond_after = _conditioning(pipe, side)
        after = _images(pipe, positive, negative, seeds, steps, size)
    finally:
        unload(pipe, applied)
    seconds = time.perf_counter() - start
    import torch

    cosine = float(torch.nn.functional.cosine_similarity(cond_before, cond_after, dim=0))
    renders = [
        SeedRender(seed, b, a, float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())) for seed, b, a in zip(seeds, before, after)
    ]
    return Comparison(
        model=model or type(pipe).__name__,
        device=pipe.device.type,
        dtype=str(pipe.dtype).replace("torch.", ""),
        prompt=positive,
        negative_prompt=negative,
        as_negative=as_negative,
        triggers=triggers,
        steps=int(steps),
        renders=renders,
        conditioning_distance=max(0.0, 1.0 - cosine),
        seconds=seconds,
        seconds_per_image=seconds / (2 * len(seeds)),
        warnings=warnings,
    )


__all__ = [
    "compare",
    "load_pipeline",
    "resolve_device",
    "family_of",
    "prompts_for",
    "Comparison",
    "SeedRender",
    "NoEffectError",
    "EXIT_NO_EFFECT",
    "NO_EFFECT_COSINE",
    "NO_EFFECT_PIXELS",
]

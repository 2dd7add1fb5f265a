"""Before/after test renders: does an embedding change what the model makes?

:func:`compare` renders, for each embedding in turn and each seed, the same prompt twice: without
the embedding (its trigger is plain words to the tokenizer) and with it applied (the trigger is the
embedding's vectors), in the positive prompt or, ``as_negative``, the negative one. Per embedding it
measures how far the text encoders' conditioning moved (cosine distance of the encoder outputs) and
how far each image moved (mean absolute pixel difference, 0–255). :mod:`.sheet` lays the result out
as a labelled PNG. An embedding that moves neither is the classic "appears to do nothing" failure:
:data:`EXIT_NO_EFFECT` / :class:`NoEffectError`.

Progress is reported through a callback (:class:`Progress`), never printed. torch and diffusers
load lazily; :mod:`.pipelines` builds the pipeline (re-exported here: :func:`load_pipeline`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ..errors import NoEffectError
from ..model.configs import RenderDefaults
from ..schema import Embedding
from .comparison import EXIT_NO_EFFECT, NO_EFFECT_COSINE, NO_EFFECT_PIXELS, Comparison, Row, SeedRender
from .pipelines import Loaded, family_of, load_pipeline, resolve_device
from .sheet import check_sheet_target, is_sheet, save_sheet

#: Prompt used when none is given (the triggers are added to it).
DEFAULT_PROMPT = "a photo"
#: Steps for a real (non-tiny) model when none are given and the model type has no default.
DEFAULT_STEPS = 20
#: diffusers scheduler → the sampler name A1111 shows for the same method.
SAMPLER_NAMES = {"EulerDiscreteScheduler": "Euler", "EulerAncestralDiscreteScheduler": "Euler a", "DDIMScheduler": "DDIM",
                 "PNDMScheduler": "PLMS", "LMSDiscreteScheduler": "LMS", "HeunDiscreteScheduler": "Heun",
                 "DPMSolverMultistepScheduler": "DPM++ 2M", "UniPCMultistepScheduler": "UniPC"}
#: Embedding files up to this size are hashed for A1111's ``TI hashes``.
MAX_HASHED_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Progress:
    """Where a render is: image ``image`` of ``images`` (1-based), ``step`` of ``steps`` done on it,
    and a ``label`` (``name · seed 0 · after``). ``step == 0`` announces an image."""

    image: int
    images: int
    step: int
    steps: int
    label: str


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


class _Counter:
    """Numbers the images of one :func:`compare` and reports each step to the caller's callback."""

    def __init__(self, total: int, steps: int, callback: Callable[[Progress], None] | None) -> None:
        self.total, self.steps, self.callback, self.done = total, steps, callback, 0

    def start(self, label: str) -> Callable | None:
        self.done += 1
        if self.callback is None:
            return None
        image = self.done
        self.callback(Progress(image, self.total, 0, self.steps, label))

        def on_step(_pipe: Any, index: int, _timestep: Any, kwargs: dict) -> dict:
            self.callback(Progress(image, self.total, index + 1, self.steps, label))
            return kwargs

        return on_step


def _image(pipe: Any, prompt: str, negative: str | None, seed: int, settings: dict, on_step: Callable | None) -> Any:
    import numpy as np
    import torch

    generator_device = "cuda" if pipe.device.type == "cuda" else "cpu"
    kwargs: dict[str, Any] = dict(prompt=prompt, negative_prompt=negative, output_type="np", **settings)
    kwargs["generator"] = torch.Generator(device=generator_device).manual_seed(int(seed))
    if on_step is not None:
        kwargs["callback_on_step_end"] = on_step
    image = pipe(**kwargs).images[0]
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255), 0, 255).astype(np.uint8)


@contextlib.contextmanager
def _threads(pipe: Any) -> Iterator[None]:
    """One CPU thread for a tiny pipeline: its matrices are too small to share out, and on a busy
    machine the threads wait on each other (the README's render took 5 to 12 s instead of 0.2 s
    with two threads on a loaded two-core machine). torch's setting is put back afterwards."""
    import torch

    from .tiny import is_tiny

    if not (is_tiny(pipe) and pipe.device.type == "cpu"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prompts_for(triggers: Sequence[str], prompt: str | None, as_negative: bool, negative: str | None = None) -> tuple[str, str | None, list[str]]:
    """(positive, negative, warnings): where the triggers go. In the negative prompt they are added
    to ``negative`` (or are the whole negative); in the positive they are appended to ``prompt``
    unless it names them (with a warning when a given prompt does not)."""
    from .prompt import find

    warnings: list[str] = []
    if as_negative:
        missing = [t for t in triggers if t not in find(negative or "", list(triggers))]
        joined = ", ".join(missing)
        return (prompt or DEFAULT_PROMPT), (f"{negative}, {joined}" if negative and missing else negative if negative else joined), warnings
    if prompt is None:
        return f"{DEFAULT_PROMPT}, {', '.join(triggers)}", negative, warnings
    missing = [t for t in triggers if t not in find(prompt, list(triggers))]
    if missing:
        warnings.append(f"the prompt does not name {', '.join(missing)}; appended")
        prompt = f"{prompt}, {', '.join(missing)}"
    return prompt, negative, warnings


def short_hash(emb: Embedding) -> str | None:
    """A1111's short hash of the file ``emb`` was read from (first 12 hex of its SHA-256), or None
    (also for bytes read from memory or standard input: their name is no file on disk)."""
    source = emb.source
    path = source.path if source is not None and not source.in_memory else None
    if not path or not os.path.isfile(path) or os.path.getsize(path) > MAX_HASHED_BYTES:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _settings(pipe: Any, defaults: RenderDefaults | None, steps: int | None, size: int | None, width: int | None, height: int | None,
              guidance: float | None) -> tuple[int, int, int, float]:
    from .tiny import TINY_SIZE, TINY_STEPS, is_tiny

    if defaults is None:
        xl = hasattr(pipe, "text_encoder_2")
        side = TINY_SIZE if is_tiny(pipe) else int(getattr(pipe.unet.config, "sample_size", 64)) * int(getattr(pipe, "vae_scale_factor", 8))
        defaults = RenderDefaults(side, TINY_STEPS if is_tiny(pipe) else DEFAULT_STEPS, 5.0 if xl and not is_tiny(pipe) else 7.5)
    side = size or defaults.size
    return int(steps or defaults.steps), int(width or side), int(height or side), float(defaults.guidance if guidance is None else guidance)


def compare(
    pipe: Any,
    embeddings: Sequence[Embedding | str],
    *,
    prompt: str | None = None,
    negative: str | None = None,
    as_negative: bool = False,
    seeds: Sequence[int] = (0,),
    steps: int | None = None,
    size: int | None = None,
    width: int | None = None,
    height: int | None = None,
    guidance: float | None = None,
    model: str = "",
    defaults: RenderDefaults | None = None,
    notes: Sequence[str] = (),
    progress: Callable[[Progress], None] | None = None,
) -> Comparison:
    """Render, per embedding and seed, the prompt without and with the embedding; measure the change.

    Each embedding is applied alone (one row each) and unloaded afterwards: the pipeline is left
    as it was. Defaults come from ``defaults`` (what :func:`load_pipeline` found for the model),
    else the tiny pipelines' 64 pixels and 4 steps or the pipeline's own size and 20 steps; CFG 7.5
    (5.0 for SDXL). ``size`` sets both sides; ``width``/``height`` one each. ``progress`` is called
    as each image starts and after each denoising step."""
    import numpy as np
    import torch

    from ..version import __version__  # the sheet names the embkit that made it
    from .apply import _load, apply, unload

    embs = _load(list(embeddings))
    seeds = [int(s) for s in seeds] or [0]
    steps, width, height, guidance = _settings(pipe, defaults, steps, size, width, height, guidance)
    settings = dict(num_inference_steps=steps, width=width, height=height, guidance_scale=guidance)
    counter = _Counter(2 * len(embs) * len(seeds), steps, progress)
    befores: dict[tuple, Any] = {}
    rows: list[Row] = []
    warnings: list[str] = []
    start = time.perf_counter()
    with _threads(pipe), torch.no_grad():
        for emb in embs:
            positive, neg, notes_here = prompts_for([emb.name], prompt, as_negative, negative)
            warnings.extend(notes_here)
            side = neg if as_negative else positive
            cond_before = _conditioning(pipe, side or "")
            before = []
            for seed in seeds:
                key = (positive, neg, seed)
                on_step = counter.start(f"{emb.name} · seed {seed} · before")
                if key not in befores:  # the same prompts and seed render the same image
                    befores[key] = _image(pipe, positive, neg, seed, settings, on_step)
                before.append(befores[key])
            applied = apply(pipe, [emb])
            try:
                warnings.extend(applied.warnings)
                cond_after = _conditioning(pipe, side or "")
                from .prompt import expanded_prompts

                with expanded_prompts(pipe):
                    after = [_image(pipe, positive, neg, seed, settings, counter.start(f"{emb.name} · seed {seed} · after")) for seed in seeds]
            finally:
                unload(pipe, applied)
            cosine = float(torch.nn.functional.cosine_similarity(cond_before, cond_after, dim=0))
            renders = [SeedRender(s, b, a, float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())) for s, b, a in zip(seeds, before, after)]
            rows.append(Row(emb.name, applied.triggers.get(emb.name, emb.name), positive, neg, renders, max(0.0, 1.0 - cosine),
                            emb.source.path if emb.source else None, short_hash(emb)))
    seconds = time.perf_counter() - start
    return Comparison(
        model=model or type(pipe).__name__,
        device=pipe.device.type,
        dtype=str(pipe.dtype).replace("torch.", ""),
        prompt=prompt or DEFAULT_PROMPT,
        negative_prompt=negative,
        as_negative=as_negative,
        steps=steps,
        width=width,
        height=height,
        guidance=guidance,
        sampler=SAMPLER_NAMES.get(type(pipe.scheduler).__name__, type(pipe.scheduler).__name__),
        seeds=seeds,
        rows=rows,
        seconds=seconds,
        seconds_per_image=seconds / max(1, counter.done),
        warnings=warnings,
        notes=list(notes),
        version=__version__,
    )



__all__ = [
    "compare",
    "prompts_for",
    "short_hash",
    "Progress",
    "load_pipeline",
    "Loaded",
    "resolve_device",
    "family_of",
    "save_sheet",
    "check_sheet_target",
    "is_sheet",
    "Comparison",
    "Row",
    "SeedRender",
    "NoEffectError",
    "EXIT_NO_EFFECT",
    "NO_EFFECT_COSINE",
    "NO_EFFECT_PIXELS",
]

"""Preview images of embeddings, rendered with one pipeline loaded once.

STAND-IN written on the ``ingest`` branch so that ``embkit ingest --previews`` can be built and
tested before the ``previews`` branch lands: it offers exactly the interface that branch builds
(:class:`PreviewSettings`, :class:`PreviewRenderer`, :class:`Preview`, :func:`is_negative`) and
the lead's merge replaces this file with the real one. It renders each embedding on its own
(apply, render every seed, unload), so an image depends only on (embedding, seed, settings), not
on which other embeddings share the batch or the process.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import EmbkitError
from ..schema import Embedding

#: Words in a name that mark a negative embedding (used in the negative prompt).
NEGATIVE_HINTS = ("negative", "easyneg", "badhand", "bad-hand", "bad_hand", "bad-prompt", "bad_prompt", "badprompt", "worst", "deformed")


@dataclass(frozen=True)
class PreviewSettings:
    """How previews are rendered. ``prompt`` holds ``{trigger}``; a negative embedding is rendered
    with ``positive_for_negatives`` as the prompt and its trigger as the negative prompt."""

    prompt: str = "a photo of {trigger}"
    negative_prompt: str = ""
    positive_for_negatives: str = "a photo"
    seeds: tuple[int, ...] = (0,)
    steps: int | None = None
    size: int | None = None
    guidance: float | None = None
    batch_size: int = 8
    host: str | None = None


@dataclass(frozen=True)
class Preview:
    """One embedding's preview: the PNG (the seeds side by side) and its pixels, or why not."""

    name: str
    trigger: str
    png: bytes | None = None
    image: Any = None
    skipped: str | None = None
    negative: bool = False


def is_negative(embedding: Embedding) -> bool:
    """Whether the embedding is meant for the negative prompt (by its name)."""
    low = embedding.name.lower()
    return any(h in low for h in NEGATIVE_HINTS) or low.startswith(("neg", "bad"))


class PreviewRenderer:
    """Loads a pipeline once and renders previews with it.

    ``model``: a family name or ``None`` (the built-in tiny pipeline: of the given family, or of
    each embedding's family, loaded once per family), a local diffusers folder or a Hub id."""

    def __init__(self, model: str | None = None, *, device: str = "auto", settings: PreviewSettings = PreviewSettings()):
        self.model = model
        self.device = device
        self.settings = settings
        self._pipes: dict[str | None, Any] = {}
        if model is not None:
            from .render import load_pipeline

            self._pipes[None] = load_pipeline(model, [], device)[0]

    def is_negative(self, embedding: Embedding) -> bool:
        """See :func:`is_negative`."""
        return is_negative(embedding)

    def _pipe(self, emb: Embedding) -> Any:
        if None in self._pipes:
            return self._pipes[None]
        from .render import family_of, load_pipeline

        family = family_of([emb])
        if family not in self._pipes:
            self._pipes[family] = load_pipeline(family, [emb], self.device)[0]
        return self._pipes[family]

    def render(self, embeddings: Sequence[Embedding], *, negative: bool | None = None) -> list[Preview]:
        """One :class:`Preview` per embedding, in order. ``negative``: put every trigger in the
        negative prompt (True), none (False), or decide per embedding (None)."""
        out = []
        for emb in embeddings:
            neg = self.is_negative(emb) if negative is None else bool(negative)
            try:
                out.append(self._render_one(emb, neg))
            except EmbkitError as exc:
                out.append(Preview(emb.name, emb.name, skipped=exc.detail, negative=neg))
        return out

    def _render_one(self, emb: Embedding, negative: bool) -> Preview:
        import numpy as np

        from .apply import apply, unload

        pipe = self._pipe(emb)
        applied = apply(pipe, [emb])
        try:
            trigger = applied.triggers[emb.name]
            s = self.settings
            if negative:
                positive = s.positive_for_negatives
                neg_text = ", ".join(t for t in (trigger, s.negative_prompt) if t)
            else:
                positive = s.prompt.replace("{trigger}", trigger) if "{trigger}" in s.prompt else f"{s.prompt}, {trigger}"
                neg_text = s.negative_prompt or None
            images = self._images(pipe, positive, neg_text)
        finally:
            unload(pipe, applied)
        strip = np.concatenate(images, axis=1)
        return Preview(emb.name, trigger, png=_png(strip), image=strip, negative=negative)

    def _images(self, pipe: Any, prompt: str, negative: str | None) -> list[Any]:
        import numpy as np
        import torch

        from .prompt import expanded_prompts
        from .render import DEFAULT_STEPS
        from .tiny import TINY_SIZE, TINY_STEPS, is_tiny

        s = self.settings
        steps = s.steps or (TINY_STEPS if is_tiny(pipe) else DEFAULT_STEPS)
        size = s.size or (TINY_SIZE if is_tiny(pipe) else None)
        generator_device = "cuda" if pipe.device.type == "cuda" else "cpu"
        out = []
        with expanded_prompts(pipe), torch.no_grad():
            for seed in s.seeds or (0,):
                kwargs: dict[str, Any] = dict(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, output_type="np")
                if size is not None:
                    kwargs.update(height=size, width=size)
                if s.guidance is not None:
                    kwargs["guidance_scale"] = float(s.guidance)
                kwargs["generator"] = torch.Generator(device=generator_device).manual_seed(int(seed))
                image = pipe(**kwargs).images[0]
                out.append(np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255), 0, 255).astype(np.uint8))
        return out


def _png(pixels: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # no text chunks: the same pixels give the same bytes
    return buf.getvalue()


__all__ = ["PreviewSettings", "PreviewRenderer", "Preview", "is_negative"]

"""Previews: one picture per embedding, many embeddings per pipeline call.

The way diffusers users render previews (``load_textual_inversion``, render, ``unload_textual_inversion``,
repeat) resizes the embedding matrix twice per embedding and renders batches of one.
:class:`PreviewRenderer` instead applies every embedding that fits in one :func:`~.apply.apply`
(one resize per encoder), renders the prompts in batches of ``batch_size`` per pipeline call,
and unloads once.

Embeddings that cannot share one apply go to separate *rounds* (each round one apply, its own
batches, one unload): two that would register a common token (the same trigger, triggers that
differ only in case, ``tok`` with two vectors beside a trigger ``tok_1``), or whose triggers
contain one another as a word. A trigger the tokenizer already knows as a word (``photo``), or
one that occurs in the fixed prompt text, is applied under a stand-in token instead: a token
added to the vocabulary is one position whatever it is spelled, so the conditioning is the one the
host's trigger gives, and the prompt's other words keep their meaning.

Every sample has its own generator seeded with its seed, so an embedding's preview does not
depend on what else is in its batch: the starting noise is identical, and the pixels agree with
a one-at-a-time render up to the float rounding of batched kernels (at most 1 in 255 on the CPU).

Nothing here prints; progress goes to a callback. torch and diffusers load inside functions.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import OperationError
from ..schema import Embedding
from .preview_plan import Item, apply_round, plan
from .preview_rules import is_negative, trigger_word, triggers

#: A progress callback: ``(embeddings done, embeddings in all)``.
Progress = Callable[[int, int], None]
#: Batch size on the CPU when none is given (the tiny pipelines gain nothing from more).
CPU_BATCH = 8
#: The largest batch the memory-aware CUDA default picks.
MAX_BATCH = 32
#: Rough GPU memory one sample needs at 512x512 in fp16 with classifier-free guidance (SD1.5
#: UNet activations and its VAE decode), in bytes; SDXL-sized UNets count double.
_BYTES_PER_SAMPLE_512 = 600 * 1024**2


@dataclass(frozen=True)
class PreviewSettings:
    """How previews are rendered. ``prompt`` is a template: ``{trigger}`` is replaced by the trigger
    word (appended when the template does not name it). A negative embedding renders
    ``positive_for_negatives`` with its trigger as the negative prompt (before ``negative_prompt``).
    ``steps``, ``size`` and ``guidance`` default to the model's own (as ``verify --render``: 4 steps
    at 64 pixels on the tiny pipelines; 20 steps, CFG 7.5 and the native size for SD1 and SD2; 25
    steps and CFG 5 for SDXL); ``batch_size`` to :data:`CPU_BATCH` on the CPU or a memory-aware
    choice on CUDA (:func:`default_batch_size`). ``host`` picks the trigger word, the one the hosts
    table (:mod:`embkit.hosts`) says that host triggers the embedding by."""

    prompt: str = "a photo of {trigger}"
    negative_prompt: str = ""
    positive_for_negatives: str = "a photo"
    seeds: tuple[int, ...] = (0,)
    steps: int | None = None
    size: int | None = None
    guidance: float | None = None
    batch_size: int | None = None
    host: str = "a1111"

    def __post_init__(self) -> None:
        from ..hosts import HOST_IDS

        if self.host not in HOST_IDS:
            raise OperationError(f"unknown host {self.host!r}; use one of {', '.join(HOST_IDS)}")
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds:
            raise OperationError("give at least one seed")
        object.__setattr__(self, "seeds", seeds)
        for what, value, low in (("steps", self.steps, 1), ("batch_size", self.batch_size, 1), ("size", self.size, 8)):
            if value is not None and int(value) < low:
                raise OperationError(f"{what} must be at least {low}, not {value}")
        if self.size is not None and int(self.size) % 8:
            raise OperationError(f"size must be a multiple of 8, not {self.size}")
        if self.guidance is not None and self.guidance < 0:
            raise OperationError(f"guidance must not be negative, not {self.guidance}")

    def prompts(self, word: str, negative: bool) -> tuple[str, str]:
        """``(prompt, negative prompt)`` for an embedding triggered by ``word``."""
        if negative:
            return self.positive_for_negatives, ", ".join(p for p in (word, self.negative_prompt) if p)
        template = self.prompt if "{trigger}" in self.prompt else f"{self.prompt}, {{trigger}}"
        return template.replace("{trigger}", word), self.negative_prompt

    def fixed_text(self) -> str:
        """Every word the prompts share, whatever the embedding (a trigger found here gets a stand-in)."""
        return "\n".join((self.prompt.replace("{trigger}", " "), self.negative_prompt, self.positive_for_negatives))


@dataclass
class Preview:
    """One embedding's preview: the PNG bytes (with the ``parameters`` chunk) and the image as a
    ``(height, width * seeds, 3)`` uint8 array, or ``skipped`` with the reason."""

    name: str
    trigger: str
    negative: bool = False
    png: bytes | None = field(default=None, repr=False)
    image: Any = field(default=None, repr=False)
    parameters: str | None = None
    skipped: str | None = None
    path: str | None = None
    member: str | None = None

    @property
    def ok(self) -> bool:
        """True when rendered."""
        return self.skipped is None

    def to_dict(self) -> dict:
        """JSON-ready (no pixels)."""
        return {k: getattr(self, k) for k in ("name", "trigger", "negative", "parameters", "skipped", "path", "member")}


def default_batch_size(pipe: Any, size: int) -> int:
    """:data:`CPU_BATCH` on the CPU; on CUDA, what fits in 70% of the free GPU memory at about
    600 MiB per 512x512 sample (scaled by area, doubled for SDXL-sized UNets), 1 to :data:`MAX_BATCH`."""
    if getattr(pipe.device, "type", "cpu") != "cuda":
        return CPU_BATCH
    import torch

    free, _total = torch.cuda.mem_get_info(pipe.device)
    per = _BYTES_PER_SAMPLE_512 * (size / 512) ** 2
    if int(getattr(pipe.unet.config, "cross_attention_dim", 768) or 768) >= 2048:
        per *= 2
    return max(1, min(MAX_BATCH, int(free * 0.7 / per)))


class PreviewRenderer:
    """Renders previews with one pipeline, loaded once.

    ``model``: what :func:`embkit.diffusers.pipelines.load_pipeline` accepts (a family name for
    its built-in tiny pipeline, a single-file checkpoint, built offline, a diffusers folder, a Hub
    id), a diffusers pipeline already loaded, or ``None``: the tiny pipeline of each embedding's
    family, built when first needed and kept. ``dtype``, ``prediction``, ``tokenizer`` and
    ``host_dirs`` are the loader's (the last three matter for single-file checkpoints).
    ``progress(done, total)`` is called as embeddings finish.
    """

    def __init__(self, model: Any = None, *, device: str = "auto", dtype: str | None = None, prediction: str | None = None,
                 tokenizer: str | None = None, host_dirs: Sequence[str] = (), settings: PreviewSettings = PreviewSettings(),
                 progress: Progress | None = None):
        self.device, self.dtype = device, dtype
        self.loader_options = {"prediction": prediction, "tokenizer": tokenizer, "host_dirs": tuple(host_dirs)}
        self.settings = settings
        self.progress = progress
        self._pipes: dict[str, Any] = {}
        self.model: str | None = None
        if model is not None and not isinstance(model, (str, os.PathLike)):
            from .pipelines import loaded_from

            self.model = f"<{type(model).__name__}>"
            self._pipes[self.model] = loaded_from(model, type(model).__name__)
        elif model is not None:
            self.model = os.fspath(model)
            self.pipeline(self.model)

    def pipeline(self, key: str) -> Any:
        """The :class:`~embkit.diffusers.pipelines.Loaded` pipeline for ``key`` (the model, or a
        tiny family): the one place previews load one, through the loader ``verify --render`` uses."""
        if key not in self._pipes:
            from .pipelines import load_pipeline

            self._pipes[key] = load_pipeline(key, [], self.device, self.dtype, **self.loader_options)
        return self._pipes[key]

    @property
    def descriptions(self) -> list[str]:
        """What each pipeline loaded so far is (``built-in tiny sd1``, a model file or folder …)."""
        return [loaded.description for loaded in self._pipes.values()]

    def render(self, embeddings: Sequence[Embedding], *, negative: Sequence[bool | None] | None = None) -> list[Preview]:
        """One :class:`Preview` per embedding, in order. ``negative[i]`` says whether embedding
        *i* is a negative one (``None`` anywhere: detected by :func:`is_negative`). Embeddings
        that do not fit the pipeline, or that the chosen host has no trigger for, come back
        ``skipped`` with the reason; the pipeline is left as it was found."""
        embs = list(embeddings)
        if negative is not None and len(negative) != len(embs):
            raise OperationError(f"{len(negative)} negative flags for {len(embs)} embeddings")
        flags = [is_negative(e) if negative is None or negative[i] is None else bool(negative[i]) for i, e in enumerate(embs)]
        results: list[Preview | None] = [None] * len(embs)
        groups: dict[str, list[Item]] = {}
        host = self.settings.host
        for i, emb in enumerate(embs):
            word = trigger_word(emb, host)
            item = Item(i, emb, word or "", flags[i])
            key = self.model if self.model is not None else _tiny_family(emb)
            if not word:
                results[i] = _skipped(item, f"{host} has no trigger for it (see embkit verify --host {host})")
            elif key is None:
                slots = ", ".join(emb.slots)
                results[i] = _skipped(item, f"no built-in tiny pipeline fits an embedding with {slots} vectors; pass --model")
            else:
                groups.setdefault(key, []).append(item)
        counter = _Counter(len(embs), self.progress)
        counter.add(sum(r is not None for r in results))
        for key, items in groups.items():
            for item, preview in _render_group(self.pipeline(key), items, self.settings, counter):
                results[item.index] = preview
        return [r for r in results if r is not None]


class _Counter:
    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress
        self.add(0)

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _tiny_family(emb: Embedding) -> str | None:
    from .tiny import TINY_FAMILIES

    return next((f for f in emb.families if f in TINY_FAMILIES), None)


def _skipped(item: Item, reason: str) -> Preview:
    source = item.emb.source
    return Preview(item.emb.name, item.word, item.negative, skipped=reason, path=source.path if source else None, member=source.member if source else None)


def _render_group(loaded: Any, items: list[Item], settings: PreviewSettings, counter: _Counter):
    """Yield ``(item, Preview)`` for every item of one pipeline (a :class:`~.pipelines.Loaded`)."""
    import numpy as np
    import torch

    from .apply import expanded_prompts, unload
    from .render import SAMPLER_NAMES

    pipe, defaults = loaded.pipe, loaded.defaults
    steps = settings.steps or defaults.steps
    size = settings.size or defaults.size
    guidance = defaults.guidance if settings.guidance is None else settings.guidance
    batch = settings.batch_size or default_batch_size(pipe, size)
    rounds, skipped = plan(pipe, items, settings.fixed_text())
    for item, reason in skipped:
        yield item, _skipped(item, reason)
    counter.add(len(skipped))
    generator_device = "cuda" if pipe.device.type == "cuda" else "cpu"
    sampler = SAMPLER_NAMES.get(type(pipe.scheduler).__name__, type(pipe.scheduler).__name__)
    facts = dict(steps=steps, sampler=sampler, guidance=guidance, seeds=settings.seeds, width=size, height=size, model=_model_name(loaded.description))
    hashes: dict[str, str | None] = {}
    for members in rounds:
        applied, refused = apply_round(pipe, members)
        for item, reason in refused:
            yield item, _skipped(item, reason)
        counter.add(len(refused))
        try:
            samples = [(m, seed) for m in members for seed in settings.seeds]
            images: dict[int, list[Any]] = {}
            with expanded_prompts(pipe), torch.inference_mode():
                for start in range(0, len(samples), batch):
                    chunk = samples[start : start + batch]
                    runs = [settings.prompts(m.token, m.negative) for m, _ in chunk]
                    out = pipe(
                        prompt=[p for p, _ in runs],
                        negative_prompt=[n for _, n in runs],
                        num_inference_steps=steps,
                        guidance_scale=guidance,
                        height=size,
                        width=size,
                        generator=[torch.Generator(device=generator_device).manual_seed(seed) for _, seed in chunk],
                        output_type="np",
                    ).images
                    finished = []
                    for (m, _seed), image in zip(chunk, out):
                        images.setdefault(m.index, []).append(np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255), 0, 255).astype(np.uint8))
                        if len(images[m.index]) == len(settings.seeds):
                            finished.append(m)
                    for m in finished:
                        yield m, _preview(m, np.concatenate(images.pop(m.index), axis=1), settings, facts, hashes)
                    counter.add(len(finished))
        finally:
            unload(pipe, applied)


def _preview(item: Item, image: Any, settings: PreviewSettings, facts: dict, hashes: dict[str, str | None]) -> Preview:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from ..version import __version__
    from .infotext import text as infotext
    from .render import short_hash

    prompt, negative = settings.prompts(item.word, item.negative)
    source = item.emb.source
    if source is not None and source.path not in hashes:
        hashes[source.path] = short_hash(item.emb)  # A1111's TI hash of the file (one read per file)
    short = hashes.get(source.path) if source is not None else None
    text = infotext(prompt=prompt, negative_prompt=negative, ti_hashes={item.word: short} if short else {}, version=__version__, **facts)
    info = PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", pnginfo=info)
    return Preview(item.emb.name, item.word, item.negative, buffer.getvalue(), image, text, None, source.path if source else None, source.member if source else None)


def _model_name(description: str) -> str:
    return os.path.basename(description.rstrip("/\\")) if os.path.sep in description else description


__all__ = ["PreviewSettings", "Preview", "PreviewRenderer", "is_negative", "triggers", "default_batch_size", "CPU_BATCH", "MAX_BATCH"]

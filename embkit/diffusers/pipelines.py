"""The pipeline a test render uses, from whatever a user names with ``--model``:

* nothing or a family name (``sd1``, ``sd2``, ``sdxl``): the built-in tiny pipeline (:mod:`.tiny`);
* a single-file checkpoint (``.safetensors``, or a ``.ckpt`` read by embkit's own unpickler),
  SD1.x, SD2.x or SDXL: built **offline** with diffusers' ``from_single_file`` from embkit's own
  architecture configs (:mod:`embkit.model.configs`, written to a temporary folder) and a CLIP
  tokenizer found on this machine (:mod:`embkit.model.tokenizers`);
* a local diffusers folder: ``from_pretrained(local_files_only=True)``;
* a Hub repo id: only what the render loads, one weight variant (fp16 when rendering in half
  precision, else the plain fp32 files), through huggingface_hub's cache (:func:`embkit.hubclient.render_folder`).

Safety checkers and feature extractors are never loaded (a safety checker blacks out images, which
would hide what the embedding does). torch, diffusers and transformers are imported here, inside
the functions; :func:`require` turns their absence into :class:`~embkit.errors.MissingDependencyError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..errors import MissingDependencyError, TargetError
from ..model.configs import RENDER_DEFAULTS, RenderDefaults
from ..model.tokenizers import CLIP_VOCAB_SIZE
from ..schema import Embedding

#: What to run when torch or diffusers is missing.
INSTALL_HINT = "pip install 'embkit[diffusers]' (install torch for your platform first: https://pytorch.org/get-started/locally/)"
#: dtype names users type → torch dtype attribute names.
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}
DEVICES = ("auto", "cuda", "mps", "cpu")
_NOT_LOADED = ("safety_checker", "feature_extractor", "image_encoder")


def require() -> None:
    """Import torch, diffusers and transformers, or raise :class:`MissingDependencyError` saying
    which is missing and what to install (``embkit`` exits 11 with it)."""
    missing = []
    for name in ("torch", "transformers", "diffusers"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(f"rendering needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}")
    # the classes every render uses, imported now (diffusers and transformers import lazily): a
    # broken install fails here, and the time it takes is counted as importing, not building
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: F401
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401


@dataclass
class Loaded:
    """A pipeline ready to render, and what the render needs to know about it."""

    pipe: Any
    #: what to call it in reports and on the sheet (``built-in tiny sd1``, a file name, a folder, a repo id)
    description: str
    tiny: bool
    defaults: RenderDefaults
    notes: list[str] = field(default_factory=list)


def resolve_device(device: str = "auto", dtype: str | None = None) -> tuple[str, Any]:
    """(device, torch dtype): ``auto`` → CUDA, else Apple's MPS, else the CPU; dtype ``auto``/None →
    float16 on CUDA and MPS, float32 on the CPU. :class:`TargetError` for a device torch does not see."""
    import torch

    device = (device or "auto").lower()
    if device not in DEVICES:
        raise TargetError(f"unknown device {device!r}; use {', '.join(DEVICES)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TargetError("--device cuda was asked for, but torch sees no CUDA device")
    if device == "mps" and not has_mps:
        raise TargetError("--device mps was asked for, but torch sees no Apple MPS device")
    if dtype in (None, "", "auto"):
        return device, (torch.float16 if device in ("cuda", "mps") else torch.float32)
    name = DTYPES.get(str(dtype).lower())
    if name is None:
        raise TargetError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return device, getattr(torch, name)


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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep diffusers' and transformers' loading bars and notices ("Loading pipeline components",
    "modules that should be kept in float32") off the terminal for one load, then restore their
    settings: the library never prints, and reports what matters itself."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    levels = dlog.get_verbosity(), tlog.get_verbosity()
    bar = dlog.is_progress_bar_enabled()
    if "DIFFUSERS_VERBOSITY" not in os.environ:
        dlog.set_verbosity_error()
    if "TRANSFORMERS_VERBOSITY" not in os.environ:
        tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])
        if bar:
            dlog.enable_progress_bar()


def _dtype_kwarg() -> str:
    # diffusers renamed torch_dtype to dtype (0.36+); older releases only know torch_dtype
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def load_pipeline(model: str | None, embeddings: Sequence[Embedding], device: str = "auto", dtype: str | None = None, *,
                  prediction: str | None = None, tokenizer: str | None = None, host_dirs: Sequence[str] = ()) -> Loaded:
    """The pipeline to render ``embeddings`` with (see the module docstring for what ``model`` may
    be). ``prediction`` (``v``/``epsilon``), ``tokenizer`` and ``host_dirs`` matter for single files."""
    from ..model.slots import ALIASES
    from .tiny import TINY_FAMILIES, TINY_SIZE, TINY_STEPS, tiny_pipeline

    require()
    dev, torch_dtype = resolve_device(device, dtype)
    name = None if model is None else ALIASES.get(model.strip().lower(), model.strip().lower())
    if name is None or name in TINY_FAMILIES:
        family = family_of(embeddings) if name is None else name
        pipe = tiny_pipeline(family, device=dev, dtype=torch_dtype)
        return Loaded(pipe, f"built-in tiny {family}", True, RenderDefaults(TINY_SIZE, TINY_STEPS, 7.5))
    if name in ("sd3", "flux"):
        raise TargetError(f"no built-in tiny pipeline for {model}; pass a local diffusers folder, a Hub id or an SD1/SD2/SDXL checkpoint")
    path = os.path.expanduser(model)
    if os.path.isfile(path):
        return single_file_pipeline(path, device=dev, dtype=torch_dtype, prediction=prediction, tokenizer=tokenizer, host_dirs=host_dirs)
    if os.path.isdir(path):
        return _folder_pipeline(path, path, dev, torch_dtype, variant=None)
    from ..hubclient import render_folder

    folder, used_variant = render_folder(model, variant="fp16" if str(torch_dtype) in ("torch.float16", "torch.bfloat16") else None)
    return _folder_pipeline(folder, model, dev, torch_dtype, variant="fp16" if used_variant else None)


def loaded_from(pipe: Any, description: str | None = None) -> Loaded:
    """A pipeline built elsewhere (a caller's own, a tiny one) as :class:`Loaded`: whether it is a
    built-in tiny pipeline, and its defaults."""
    from .tiny import TINY_SIZE, TINY_STEPS, is_tiny

    if is_tiny(pipe):
        return Loaded(pipe, description or "built-in tiny pipeline", True, RenderDefaults(TINY_SIZE, TINY_STEPS, 7.5))
    return Loaded(pipe, description or type(pipe).__name__, False, _defaults(pipe))


def _defaults(pipe: Any) -> RenderDefaults:
    """A diffusers pipeline's own default image side, and steps and guidance for its family."""
    unet = getattr(pipe, "unet", None)
    scale = getattr(pipe, "vae_scale_factor", 8)
    size = int(getattr(getattr(unet, "config", None), "sample_size", 64) or 64) * int(scale)
    xl = hasattr(pipe, "text_encoder_2")
    return RenderDefaults(size, 25 if xl else 20, 5.0 if xl else 7.5)


def _folder_pipeline(folder: str, description: str, device: str, dtype: Any, *, variant: str | None) -> Loaded:
    from diffusers import DiffusionPipeline

    skip = {}
    try:
        with open(os.path.join(folder, "model_index.json"), encoding="utf-8") as fh:
            index = json.load(fh)
        skip = {k: None for k in _NOT_LOADED if isinstance(index, dict) and k in index}
        if "safety_checker" in skip:
            skip["requires_safety_checker"] = False
    except (OSError, ValueError):
        pass  # from_pretrained reports the folder's problem in its own words below
    try:
        with quiet():
            pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, variant=variant, **{_dtype_kwarg(): dtype}, **skip)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise TargetError(f"cannot load a diffusers pipeline from {folder}: {exc}") from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return Loaded(pipe, description, False, _defaults(pipe))


def clip_tokenizer(source: Any, pad_token: str, *, vocab_size: int | None = CLIP_VOCAB_SIZE) -> Any:
    """A ``CLIPTokenizer`` from a :class:`~embkit.model.tokenizers.TokenizerSource`, 77 tokens long
    (ComfyUI's copy says 8192), padding with ``pad_token`` (SD1 and SDXL's first encoder pad with
    ``<|endoftext|>``, SD2 and SDXL's second with ``!``). Its size is checked: transformers builds a
    2-token tokenizer from a folder missing its files without complaint."""
    from transformers import CLIPTokenizer

    from ..model.tokenizers import read_bpe_gz

    if source.kind == "bpe-gz":
        vocab, merges = read_bpe_gz(source.path)
        tok = CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad_token, model_max_length=77)
    else:
        tok = CLIPTokenizer.from_pretrained(source.path, local_files_only=True, model_max_length=77, pad_token=pad_token)
    if vocab_size is not None and len(tok) != vocab_size:
        raise TargetError(f"the tokenizer has {len(tok)} tokens, not CLIP's {vocab_size}", path=source.path)
    return tok


def single_file_pipeline(path: str, *, device: str = "cpu", dtype: Any = None, prediction: str | None = None, tokenizer: str | None = None,
                         host_dirs: Sequence[str] = (), configs: dict | None = None, vocab_size: int | None = CLIP_VOCAB_SIZE,
                         search: bool = True) -> Loaded:
    """Build a pipeline from one checkpoint file, offline.

    ``configs`` replaces the built-in architecture configs (component → config dict, as
    :func:`embkit.model.configs.configs_for` returns them): for checkpoints of other shapes, and for
    tests. ``vocab_size`` is the vocabulary size the tokenizer must have (``None``: any); ``search``
    lets the tokenizer be looked for in the Hugging Face cache and the usual install places."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from ..model.architecture import check_complete, config_type, detect, prediction_type
    from ..model.checkpoint import open_checkpoint, write_safetensors
    from ..model.configs import configs_for, write_config_folder
    from ..model.tokenizers import find_clip_tokenizer

    checkpoint = open_checkpoint(path)
    arch = detect(checkpoint)
    check_complete(checkpoint, arch)
    predicts, how = prediction_type(checkpoint, arch, prediction)
    kind = config_type(arch, predicts)
    if configs is None:
        configs = configs_for(kind, predicts)
    else:  # the caller's configs decide, the scheduler's prediction type included
        predicts, how = str(configs.get("scheduler", {}).get("prediction_type", "epsilon")), "the configs given"
    source = find_clip_tokenizer(tokenizer=tokenizer, host_dirs=tuple(host_dirs), expected_size=vocab_size, search=search)
    xl = arch.family == "sdxl"
    extra: dict[str, Any] = {"tokenizer": clip_tokenizer(source, "!" if arch.family == "sd2" else "<|endoftext|>", vocab_size=vocab_size)}
    if xl:
        extra["tokenizer_2"] = clip_tokenizer(source, "!", vocab_size=vocab_size)
    else:
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    with tempfile.TemporaryDirectory(prefix="embkit-model-") as tmp:
        folder = write_config_folder(os.path.join(tmp, "config"), configs)
        weights = path
        if checkpoint.container == "pickle":
            # diffusers would torch.load the pickle; embkit has read it, and hands over plain tensors
            weights = write_safetensors(checkpoint, os.path.join(tmp, "checkpoint.safetensors"))
        try:
            with quiet():
                pipe = cls.from_single_file(weights, config=folder, local_files_only=True, **{_dtype_kwarg(): dtype or torch.float32}, **extra)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise TargetError(f"diffusers cannot build a {arch.family.upper()} pipeline from it ({type(exc).__name__}: {str(exc)[:300]})", path=path) from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    notes = [f"{arch.family.upper()} ({kind}), {predicts} ({how}); tokenizer: {source.where}"]
    return Loaded(pipe, os.path.basename(path), False, RENDER_DEFAULTS.get(kind, RENDER_DEFAULTS["v1"]), notes)


__all__ = ["Loaded", "load_pipeline", "loaded_from", "single_file_pipeline", "resolve_device", "family_of", "require", "clip_tokenizer", "INSTALL_HINT", "DTYPES", "DEVICES"]

"""Built-in tiny pipelines: the default model for ``embkit verify --render``, no download needed.

Each family's pipeline is a real diffusers pipeline built from configs with seeded random weights:
text encoders with the family's *real* token widths (768 for SD1's CLIP-L, 1024 for SD2's CLIP-H,
768 + 1280 for SDXL) so that real embedding files apply unchanged, but one layer and a small
vocabulary; a small UNet and VAE; an Euler scheduler; no safety checker. It renders 64×64 images in
a few seconds on a CPU. The pictures are noise-like (the weights are random), but they are a
deterministic function of the conditioning, which is what a before/after comparison needs.

The CLIP tokenizer is built in memory: the byte-level base vocabulary of CLIP (every byte, alone and
word-final) plus letter-pair merges, so any text tokenizes. ``clip_tokenizer(vocab_size=49408)`` builds
a tokenizer of real CLIP size for benchmarks. torch, transformers and diffusers are imported inside
the functions.
"""

from __future__ import annotations

import itertools
import json
import os
import string
from typing import Any

from ..model.vocab import byte_encoder

#: Families with a built-in tiny pipeline → the token width of each text encoder.
TINY_FAMILIES: dict[str, tuple[int, ...]] = {"sd1": (768,), "sd2": (1024,), "sdxl": (768, 1280)}
#: Image side the tiny pipelines render at by default.
TINY_SIZE = 64
#: Denoising steps the tiny pipelines use by default.
TINY_STEPS = 4
_MARK = "_embkit_tiny"


def clip_vocab(vocab_size: int = 1190) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges in CLIP's shape: 512 byte tokens (plain and ``</w>``),
    then merges of lower-case letters (pairs, then longer runs) up to ``vocab_size - 2``, then
    ``<|startoftext|>`` and ``<|endoftext|>`` as the last two ids, as in CLIP."""
    base = list(byte_encoder().values())
    vocab: dict[str, int] = {}
    for ch in base:
        vocab[ch] = len(vocab)
    for ch in base:
        vocab[ch + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    letters = string.ascii_lowercase
    target = max(vocab_size - 2, len(vocab))
    length = 1
    while len(vocab) < target:
        # Merge every run of `length` letters with one more letter: "ab"+"c" → "abc".
        for combo in itertools.product(letters, repeat=length + 1):
            if len(vocab) >= target:
                break
            left, right = "".join(combo[:-1]), combo[-1]
            merges.append((left, right))
            vocab[left + right] = len(vocab)
        length += 1
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def clip_tokenizer(vocab_size: int = 1190, *, pad_token: str = "<|endoftext|>"):
    """A ``CLIPTokenizer`` built locally (no download) with :func:`clip_vocab`; 77-token prompts."""
    import tempfile

    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab(vocab_size)
    # From files, as a saved tokenizer is read: transformers 4.x takes only file paths (vocab_file,
    # merges_file), 5.x paths or in-memory tables; both read the files in the constructor.
    with tempfile.TemporaryDirectory(prefix="embkit-tok-") as folder:
        vocab_file, merges_file = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
        with open(vocab_file, "w", encoding="utf-8") as fh:
            json.dump(vocab, fh, ensure_ascii=False)
        with open(merges_file, "w", encoding="utf-8") as fh:
            fh.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        return CLIPTokenizer(vocab_file, merges_file, pad_token=pad_token, model_max_length=77)


def clip_text_config(width: int, vocab_size: int, *, layers: int = 1, projection_dim: int = 32):
    """A CLIP text-encoder config of real token width, ``layers`` layers and a small MLP."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=width // 64,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        hidden_act="quick_gelu" if width == 768 else "gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # Three blocks: 8x downsampling would be SD's; 4x keeps the latents (16x16) cheap on a CPU.
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=TINY_SIZE,
    )


def _unet(cross_attention_dim: int, *, sdxl: bool):
    from diffusers import UNet2DConditionModel

    extra: dict[str, Any] = {}
    if sdxl:
        # SDXL's UNet also takes the pooled text embedding and six size/crop numbers.
        extra = dict(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
            use_linear_projection=True,
        )
    return UNet2DConditionModel(
        sample_size=TINY_SIZE // 4,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        **extra,
    )


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1)


def tiny_pipeline(family: str = "sd1", seed: int = 0, device: str = "cpu", dtype: Any = None, vocab_size: int = 1190):
    """A small real diffusers pipeline of ``family`` (``sd1``, ``sd2`` or ``sdxl``) with seeded random
    weights: the same ``seed`` gives bit-identical weights. ``dtype`` is a torch dtype (default
    float32). ``vocab_size=49408`` gives the text encoders CLIP's real vocabulary (and embedding
    matrix) size, for benchmarks of what loading costs. Raises :class:`embkit.TargetError` for a
    family without a tiny pipeline."""
    from ..errors import TargetError

    if family not in TINY_FAMILIES:
        raise TargetError(f"no built-in tiny pipeline for family {family!r}; built-in: {', '.join(TINY_FAMILIES)}")
    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "sdxl":
            from diffusers import StableDiffusionXLPipeline

            tokenizer, tokenizer_2 = clip_tokenizer(vocab_size), clip_tokenizer(vocab_size, pad_token="!")
            text_encoder = CLIPTextModel(clip_text_config(768, len(tokenizer)))
            text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(1280, len(tokenizer_2)))
            pipe = StableDiffusionXLPipeline(
                vae=_vae(),
                text_encoder=text_encoder,
                text_encoder_2=text_encoder_2,
                tokenizer=tokenizer,
                tokenizer_2=tokenizer_2,
                unet=_unet(768 + 1280, sdxl=True),
                scheduler=_scheduler(),
                add_watermarker=False,
            )
        else:
            from diffusers import StableDiffusionPipeline

            width = TINY_FAMILIES[family][0]
            tokenizer = clip_tokenizer(vocab_size)
            pipe = StableDiffusionPipeline(
                vae=_vae(),
                text_encoder=CLIPTextModel(clip_text_config(width, len(tokenizer))),
                tokenizer=tokenizer,
                unet=_unet(width, sdxl=False),
                scheduler=_scheduler(),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
    pipe = pipe.to(device=device, dtype=dtype) if dtype is not None else pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.__dict__[_MARK] = family
    return pipe


def is_tiny(pipe: Any) -> bool:
    """True for a pipeline built by :func:`tiny_pipeline`."""
    return _MARK in getattr(pipe, "__dict__", {})


__all__ = ["tiny_pipeline", "is_tiny", "clip_tokenizer", "clip_vocab", "clip_text_config", "TINY_FAMILIES", "TINY_SIZE", "TINY_STEPS"]

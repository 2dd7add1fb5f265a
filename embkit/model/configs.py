"""The architecture configs of the Stable Diffusion families, as Python data, for rendering with a
single-file checkpoint offline (:mod:`embkit.diffusers.pipelines`).

A single ``.safetensors``/``.ckpt`` checkpoint holds weights only; diffusers needs the shapes of
its components (UNet, VAE, text encoders), the scheduler's noise schedule and a ``model_index.json``
to assemble a pipeline, and would otherwise download them from the Hub. These are written from the
published architectures: the diffusers repos ``stable-diffusion-v1-5/stable-diffusion-v1-5``
(formerly ``runwayml/…``), ``stabilityai/stable-diffusion-2-1``, ``stabilityai/stable-diffusion-2-base``
and ``stabilityai/stable-diffusion-xl-base-1.0`` (their ``*/config.json`` files; copies in
lllyasviel/stable-diffusion-webui-forge ``backend/huggingface/`` @dfdcbab685e57677014f05a3309b48cc87383167).
Where embkit departs from them, on purpose:

* the text encoders' ``bos_token_id``/``eos_token_id`` are CLIP's real 49406/49407, not the
  published 0/2: with ``eos_token_id == 2`` transformers pools at ``input_ids.argmax()``, which after
  textual-inversion tokens (ids past 49407) is the embedding's token, not the end of the prompt
  (diffusers#10754), and SDXL's pooled embedding goes wrong;
* no safety checker or feature extractor (``[null, null]``), and no SDXL watermarker;
* every family renders with diffusers' Euler scheduler (A1111's "Euler") over the family's own
  noise schedule (``scaled_linear`` 0.00085–0.012, 1000 steps, ``leading`` spacing, offset 1); the
  published repos name PNDM (SD1.5) and DDIM (SD2.1) for the same schedule. ``prediction_type`` is
  the checkpoint's (``epsilon`` or ``v_prediction``, see :mod:`embkit.model.architecture`).

Torch-free: plain dicts, and :func:`write_config_folder` writes them as the folder layout
``from_single_file(config=…)`` reads.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass

from ..errors import TargetError

_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
}

_SD_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "sample_size": 64,
}

# CLIP ViT-L/14's text tower (SD1, SDXL's first encoder)
_CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
    "bos_token_id": 49406,  # published: 0 (see the module docstring)
    "eos_token_id": 49407,  # published: 2
    "pad_token_id": 1,
}

# OpenCLIP ViT-H/14's text tower as SD2 uses it: the penultimate layer, so 23 of its 24 layers
_CLIP_H = {**_CLIP_L, "hidden_act": "gelu", "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
           "num_hidden_layers": 23, "projection_dim": 512}

# OpenCLIP ViT-bigG/14's text tower with its projection (SDXL's second encoder)
_CLIP_G = {**_CLIP_L, "architectures": ["CLIPTextModelWithProjection"], "hidden_act": "gelu", "hidden_size": 1280,
           "intermediate_size": 5120, "num_attention_heads": 20, "num_hidden_layers": 32, "projection_dim": 1280}


def _scheduler(prediction_type: str) -> dict:
    return {
        "_class_name": "EulerDiscreteScheduler",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "trained_betas": None,
        "prediction_type": prediction_type,
    }


_SD_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None],
    "safety_checker": [None, None],
    "requires_safety_checker": False,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

_SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "add_watermarker": False,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

_SDXL_UNET = {
    **_SD_UNET,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
}

#: model type → component → config (the scheduler's ``prediction_type`` is filled in per checkpoint).
#: ``v2`` is SD2.x-768 (SD2.1's architecture); ``v2-base`` SD2.x-512, the same with a 64-latent UNet
#: without attention upcasting (stabilityai/stable-diffusion-2-base).
ARCHITECTURES: dict[str, dict[str, dict]] = {
    "v1": {"model_index": _SD_INDEX, "unet": _SD_UNET, "vae": _VAE, "text_encoder": _CLIP_L},
    "v2": {
        "model_index": _SD_INDEX,
        "unet": {**_SD_UNET, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "sample_size": 96,
                 "use_linear_projection": True, "upcast_attention": True},
        "vae": {**_VAE, "sample_size": 768},
        "text_encoder": _CLIP_H,
    },
    "v2-base": {
        "model_index": _SD_INDEX,
        "unet": {**_SD_UNET, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "sample_size": 64,
                 "use_linear_projection": True, "upcast_attention": False},
        "vae": _VAE,
        "text_encoder": _CLIP_H,
    },
    "xl_base": {
        "model_index": _SDXL_INDEX,
        "unet": _SDXL_UNET,
        "vae": {**_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        "text_encoder": _CLIP_L,
        "text_encoder_2": _CLIP_G,
    },
}


@dataclass(frozen=True)
class RenderDefaults:
    """What ``embkit verify --render`` uses when not told: image side, denoising steps, CFG scale."""

    size: int
    steps: int
    guidance: float


#: model type → defaults (the families' native resolutions; diffusers' default guidance scales).
RENDER_DEFAULTS: dict[str, RenderDefaults] = {
    "v1": RenderDefaults(512, 20, 7.5),
    "v2": RenderDefaults(768, 20, 7.5),
    "v2-base": RenderDefaults(512, 20, 7.5),
    "xl_base": RenderDefaults(1024, 25, 5.0),
}


def configs_for(model_type: str, prediction_type: str = "epsilon") -> dict[str, dict]:
    """A fresh copy of ``model_type``'s component configs with the scheduler for ``prediction_type``
    (``epsilon`` or ``v_prediction``). :class:`TargetError` for a model type embkit has no configs for."""
    if model_type not in ARCHITECTURES:
        raise TargetError(f"no built-in configs for model type {model_type!r}; embkit renders single files of {', '.join(ARCHITECTURES)}")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise TargetError(f"unknown prediction type {prediction_type!r}; use epsilon or v_prediction")
    configs = copy.deepcopy(ARCHITECTURES[model_type])
    configs["scheduler"] = _scheduler(prediction_type)
    return configs


def write_config_folder(folder: str, configs: dict[str, dict]) -> str:
    """Write ``configs`` as a diffusers config folder (``model_index.json``, ``scheduler/scheduler_config.json``,
    ``<component>/config.json``): what ``from_single_file(config=folder)`` reads instead of the Hub."""
    os.makedirs(folder, exist_ok=True)
    for name, config in configs.items():
        if name == "model_index":
            target = os.path.join(folder, "model_index.json")
        else:
            os.makedirs(os.path.join(folder, name), exist_ok=True)
            target = os.path.join(folder, name, "scheduler_config.json" if name == "scheduler" else "config.json")
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=1)
    return folder


__all__ = ["ARCHITECTURES", "RENDER_DEFAULTS", "RenderDefaults", "configs_for", "write_config_folder"]

"""GPU check: render SD1.5-sized and SDXL-sized pipelines with embeddings applied, and time it.

The pipelines are built from the real models' configs (UNet, VAE, CLIP-L / CLIP-G text encoders at
full size) with random weights, directly on the GPU in float16: no download, no internet. For each
family it prints the build time, the embkit apply time, the time per image at the model's native
resolution, and runs :func:`embkit.diffusers.render.compare` (the code path of ``embkit verify --render``)
with one seed, printing its numbers. The GPU name and library versions come first.

Writes nothing except, when ``$OUT`` is set, ``$OUT/gpu_render.json`` and the two contact sheets.
``--smoke`` shrinks every model and runs on the CPU, to check the script itself anywhere.

    python tests/benchmarks/gpu_render.py            # on a CUDA machine
    python tests/benchmarks/gpu_render.py --smoke    # anywhere, in seconds
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # write nothing outside $OUT, not even __pycache__

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, when embkit is not installed

import numpy as np  # noqa: E402


def clip_config(kind: str, smoke: bool):
    """CLIP-L (SD1.5, SDXL encoder 1) or CLIP-G (SDXL encoder 2) text-encoder config."""
    from transformers import CLIPTextConfig

    if kind == "l":
        cfg = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu")
    else:
        cfg = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
    if smoke:
        cfg.update(intermediate_size=128, num_hidden_layers=1, projection_dim=32)
    return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **cfg)


def unet_config(family: str, smoke: bool) -> dict:
    """The UNet config of SD1.5 or SDXL base (as in their model repos), or a tiny one for --smoke."""
    if family == "sd15":
        cfg = dict(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768, attention_head_dim=8,
        )
    else:
        cfg = dict(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
    if smoke:
        n = len(cfg["block_out_channels"])
        cfg.update(sample_size=8, layers_per_block=1, block_out_channels=(32,) * n, attention_head_dim=8, norm_num_groups=8)
        if family == "sdxl":
            cfg.update(transformer_layers_per_block=1, addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8)
    return cfg


def vae_config(family: str, smoke: bool) -> dict:
    cfg = dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512 if family == "sd15" else 1024, scaling_factor=0.18215 if family == "sd15" else 0.13025,
    )
    if smoke:
        cfg.update(layers_per_block=1, block_out_channels=(16,) * 4, norm_num_groups=8, sample_size=64)
    return cfg


def build(family: str, device: str, dtype, smoke: bool):
    """A StableDiffusionPipeline (sd15) or StableDiffusionXLPipeline (sdxl) with random weights."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from embkit.diffusers.tiny import clip_tokenizer

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: a CPU init of SDXL's 2.6 B weights takes minutes
        unet = UNet2DConditionModel(**unet_config(family, smoke))
        vae = AutoencoderKL(**vae_config(family, smoke))
        text_encoder = CLIPTextModel(clip_config("l", smoke))
        if family == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection(clip_config("g", smoke))
    if family == "sd15":
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(49408), unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=clip_tokenizer(49408),
                                         tokenizer_2=clip_tokenizer(49408, pad_token="!"), unet=unet, scheduler=scheduler, add_watermarker=False)
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def embeddings_for(family: str) -> list:
    """Three synthetic embeddings of the family's real widths (1, 4 and 8 vectors)."""
    from embkit.schema import Embedding

    rng = np.random.default_rng(1)
    slots = {"sd15": {"clip_l": 768}, "sdxl": {"clip_l": 768, "clip_g": 1280}}[family]
    return [Embedding(f"<gpu-{n}>", {s: (rng.standard_normal((n, w)) * 0.3).astype(np.float16) for s, w in slots.items()}) for n in (1, 4, 8)]


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_family(family: str, device: str, dtype, smoke: bool, steps: int, images: int, out: str | None) -> dict:
    import torch

    from embkit import diffusers as ed
    from embkit.diffusers import render

    t = time.perf_counter()
    pipe = build(family, device, dtype, smoke)
    sync(device)
    built = time.perf_counter() - t
    size = 64 if smoke else (512 if family == "sd15" else 1024)
    embs = embeddings_for(family)
    t = time.perf_counter()
    applied = ed.apply(pipe, embs)
    sync(device)
    t_apply = time.perf_counter() - t
    prompt = "a photo of a house, " + ", ".join(e.name for e in embs)
    kwargs = dict(prompt=prompt, negative_prompt="blurry", num_inference_steps=steps, height=size, width=size, output_type="np")
    with ed.expanded_prompts(pipe), torch.inference_mode():
        pipe(**kwargs, generator=torch.Generator(device).manual_seed(0))  # warm-up (kernels, allocator)
        sync(device)
        t = time.perf_counter()
        for i in range(images):
            pipe(**kwargs, generator=torch.Generator(device).manual_seed(i))
        sync(device)
    per_image = (time.perf_counter() - t) / images
    ed.unload(pipe, applied)
    comparison = render.compare(pipe, embs, seeds=(0,), steps=steps, size=size, model=f"{family} (random weights)")
    result = {
        "family": family, "size": size, "steps": steps, "build_s": round(built, 2), "apply_ms": round(t_apply * 1000, 2),
        "seconds_per_image": round(per_image, 3), "it_per_s": round(steps / per_image, 2),
        "compare": {k: comparison.to_dict()[k] for k in ("conditioning_cosine_distance", "pixel_difference_max", "seconds_per_image", "changed")},
    }
    if out:
        render.save_sheet(comparison, os.path.join(out, f"gpu_render_{family}.png"))
    print(f"{family:5s} {size}x{size}, {steps} steps: build {built:6.1f} s, apply {t_apply * 1000:7.1f} ms, "
          f"{per_image:6.3f} s/image ({steps / per_image:5.1f} it/s); compare: cos dist {comparison.conditioning_distance:.4f}, "
          f"pixel diff {comparison.pixel_difference:.2f}, {comparison.seconds_per_image:.3f} s/image", flush=True)
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="Time renders of SD1.5- and SDXL-sized pipelines with embeddings applied.")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks the script, times nothing useful")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 20, 2 with --smoke)")
    parser.add_argument("--images", type=int, default=None, help="timed images per family (default 3, 1 with --smoke)")
    parser.add_argument("--family", choices=("sd15", "sdxl", "both"), default="both")
    args = parser.parse_args()

    import torch

    if args.smoke:
        device, dtype = "cpu", torch.float32
    elif torch.cuda.is_available():
        device, dtype = "cuda", torch.float16
    else:
        print("no CUDA device; run with --smoke to check the script on a CPU", file=sys.stderr)
        return 2
    steps = args.steps or (2 if args.smoke else 20)
    images = args.images or (1 if args.smoke else 3)
    out = os.environ.get("OUT") or None
    import diffusers
    import transformers

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU smoke run)"
    print(f"GPU: {gpu}; torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}", flush=True)
    families = ("sd15", "sdxl") if args.family == "both" else (args.family,)
    results = [run_family(f, device, dtype, args.smoke, steps, images, out) for f in families]
    if out:
        with open(os.path.join(out, "gpu_render.json"), "w") as fh:
            json.dump({"gpu": gpu, "device": device, "dtype": str(dtype), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

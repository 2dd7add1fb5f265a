"""Benchmark: previews per minute, embkit's batched renderer against the diffusers loop.

For N embeddings (default 16 on the CPU, 32 on CUDA; a quarter of them negative), with the same model, prompts and seeds,
in the same run:

* **embkit**: ``PreviewRenderer.render(embeddings)``: every embedding applied once (one resize per
  encoder), prompts rendered ``--batch-size`` per pipeline call, one unload, PNGs encoded;
* **the diffusers loop** (what a diffusers user writes): for each embedding
  ``pipe.load_textual_inversion(...)``, one render, ``pipe.unload_textual_inversion()``, PNG encoded.

Both render the same prompts (``a photo of <trigger>``; a negative one as the negative prompt
against ``a photo``) with the same seed, and the benchmark checks that they made the same pictures
(mean pixel difference), so the ratio compares equal work.

``--device cpu`` (default; run by run_all.py): the built-in tiny SD1 pipeline built with CLIP's real
vocabulary size (a 49408 x 768 token matrix, which every ``load_textual_inversion`` call resizes, as
on a real SD1.5 model; the UNet and VAE stay tiny), 64x64, 4 steps. Target: at least 3x.
``--vocab 1190`` runs the tiny pipeline's own small vocabulary, where loading costs little: the
ratio there depends on how busy the CPU is (batching a tiny UNet on an idle CPU gains little).

``--device cuda``: an SD1.5-architecture pipeline in fp16 (the SD1.5 configs with seeded random
weights, nothing downloaded; or ``--model`` a local diffusers folder of an SD1.5 checkpoint) at
512x512, 20 steps, 32 embeddings. Target: at least 4x. Not run by run_all.py (it needs CUDA).

    python tests/benchmarks/bench_previews.py [--count 16] [--batch-size 8] [--vocab 49408]
    python tests/benchmarks/bench_previews.py --device cuda [--model ./sd15] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import numpy as np

CPU_TARGET, GPU_TARGET = 3.0, 4.0


def embeddings(count: int, seed: int):
    """``count`` SD1 embeddings of 1-4 vectors; every fourth one named as a negative."""
    from embkit.schema import Embedding

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        name = f"neg_bench{i}" if i % 4 == 3 else f"stylebench{i}"
        out.append(Embedding(name, {"clip_l": (rng.standard_normal((1 + i % 4, 768)) * 0.3).astype(np.float32)}))
    return out


def sd15_pipeline(device: str, dtype, seed: int = 0):
    """An SD1.5-architecture StableDiffusionPipeline from the SD1.5 configs, seeded random weights."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from embkit.diffusers.tiny import clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512), sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    tokenizer = clip_tokenizer(49408)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_loop(pipe, embs, negatives, settings, size: int, steps: int) -> list[np.ndarray]:
    """The loop a diffusers user writes: load one, render it, unload it, save the PNG."""
    import torch
    from PIL import Image

    device = "cuda" if pipe.device.type == "cuda" else "cpu"
    images = []
    for emb, negative in zip(embs, negatives):
        vectors = torch.from_numpy(np.array(emb.vectors["clip_l"]))
        pipe.load_textual_inversion({emb.name: vectors}, token=emb.name)
        prompt, negative_prompt = settings.prompts(emb.name, negative)
        with torch.inference_mode():
            image = pipe(prompt=prompt, negative_prompt=negative_prompt, num_inference_steps=steps, guidance_scale=settings.guidance,
                         height=size, width=size, generator=torch.Generator(device=device).manual_seed(settings.seeds[0]), output_type="np").images[0]
        pipe.unload_textual_inversion()
        pixels = np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(io.BytesIO(), format="PNG")
        images.append(pixels)
    return images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=None, help="embeddings (default: 16 on the CPU, 32 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="embkit's batch (default: its own, 8 on the CPU, memory-aware on CUDA)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--vocab", type=int, default=49408, help="CPU: the tiny pipeline's vocabulary size (49408 = CLIP's)")
    parser.add_argument("--model", default=None, help="CUDA: a local SD1.5 diffusers folder or single-file checkpoint instead of random weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import torch

    from embkit.diffusers.previews import PreviewRenderer, PreviewSettings, is_negative

    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: torch sees no CUDA device")
            return 1
        if args.model:
            from embkit.diffusers.pipelines import load_pipeline

            pipe = load_pipeline(args.model, [], "cuda").pipe  # a diffusers folder or a single-file checkpoint
        else:
            pipe = sd15_pipeline("cuda", torch.float16, args.seed)
        size, steps, target = 512, 20, GPU_TARGET
        what = f"SD1.5 architecture ({args.model or 'random weights'}), fp16, {torch.cuda.get_device_name()}"
    else:
        from embkit.diffusers.tiny import TINY_SIZE, TINY_STEPS, tiny_pipeline

        pipe = tiny_pipeline("sd1", seed=args.seed, vocab_size=args.vocab)
        size, steps, target = TINY_SIZE, TINY_STEPS, CPU_TARGET
        what = f"built-in tiny sd1, vocabulary {args.vocab}, CPU, {torch.get_num_threads()} threads"

    args.count = args.count or (32 if args.device == "cuda" else 16)
    settings = PreviewSettings(seeds=(args.seed,), steps=steps, size=size, guidance=7.5, batch_size=args.batch_size)
    embs = embeddings(args.count, args.seed)
    negatives = [is_negative(e) for e in embs]
    renderer = PreviewRenderer(pipe, settings=settings)

    # warm both paths up once (first-call allocations, kernel selection) outside the timings
    renderer.render(embs[:1])
    diffusers_loop(pipe, embs[:1], negatives[:1], settings, size, steps)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    sync()
    start = time.perf_counter()
    previews = renderer.render(embs)
    sync()
    t_embkit = time.perf_counter() - start
    start = time.perf_counter()
    theirs = diffusers_loop(pipe, embs, negatives, settings, size, steps)
    sync()
    t_loop = time.perf_counter() - start

    skipped = [p for p in previews if not p.ok]
    if skipped:
        print(f"embkit skipped {len(skipped)}: {skipped[0].skipped}")
        return 1
    diff = float(np.mean([np.abs(p.image.astype(np.int16) - t.astype(np.int16)).mean() for p, t in zip(previews, theirs)]))
    batch = settings.batch_size or "default"
    ratio = t_loop / t_embkit
    print(f"{args.count} previews ({sum(negatives)} negative), {size}x{size}, {steps} steps, on {what}")
    print(f"  embkit batched (batch {batch})          {t_embkit:8.2f} s   {args.count / t_embkit * 60:8.1f} previews/min")
    print(f"  diffusers load/render/unload loop     {t_loop:8.2f} s   {args.count / t_loop * 60:8.1f} previews/min")
    print(f"  ratio {ratio:.2f}x (target >= {target:g}x); same pictures: mean pixel difference {diff:.3f} / 255")
    if diff > 1.0:
        print("  the two paths made different pictures: the comparison is not of equal work")
        return 1
    if ratio < target:
        print(f"  TARGET MISSED: {ratio:.2f}x < {target:g}x")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

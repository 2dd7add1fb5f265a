"""Single-file checkpoints for tests, written the way A1111/SAI checkpoints are laid out.

- :func:`to_original` converts a diffusers pipeline's state dicts to the original single-file
  ("LDM") key layout: ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE),
  ``cond_stage_model.transformer.text_model.*`` (SD1's CLIP-L), ``cond_stage_model.model.*`` (SD2's
  OpenCLIP), ``conditioner.embedders.0/1.*`` (SDXL). diffusers ships only the other direction; this
  is the inverse of its ``convert_ldm_*`` functions, written generically (block indices from
  ``layers_per_block``) so it fits the tiny pipelines and the full-size architectures alike.
- :func:`tiny_single_file` writes a built-in tiny pipeline as such a file (``.safetensors``, or a
  ``.ckpt`` saved with ``torch.save`` as Lightning would) and returns the configs that describe it.
- :func:`full_size_keys` lists a full-size architecture's original keys and shapes without
  allocating weights (models built on the meta device); :func:`write_random_checkpoint` streams a
  checkpoint of seeded random fp16 values for them, one tensor in memory at a time.
- :func:`write_clip_vocab` writes a CLIP-shaped ``vocab.json`` + ``merges.txt`` of any size.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
UNET_TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "conv_norm_out": "out.0", "conv_out": "out.2", "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
VAE_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."))


def _res(rest: str) -> str:
    for a, b in RESNET:
        if rest.startswith(a + "."):
            return b + rest[len(a):]
    return rest


def unet_key(k: str, cfg: dict) -> str:
    """A diffusers UNet key → its original name."""
    n = cfg["layers_per_block"] + 1
    for a, b in UNET_TOP.items():
        if k.startswith(a + "."):
            return b + k[len(a):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", k):
        b, j = int(m[1]), int(m[3])
        return f"input_blocks.{1 + b * n + j}." + (f"0.{_res(m[4])}" if m[2] == "resnets" else f"1.{m[4]}")
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
        return f"input_blocks.{(int(m[1]) + 1) * n}.0.op.{m[2]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", k):
        b, j = int(m[1]), int(m[3])
        return f"output_blocks.{b * n + j}." + (f"0.{_res(m[4])}" if m[2] == "resnets" else f"1.{m[4]}")
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
        b = int(m[1])
        return f"output_blocks.{b * n + n - 1}.{2 if 'CrossAttn' in cfg['up_block_types'][b] else 1}.conv.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", k):
        return f"middle_block.{2 * int(m[1])}.{_res(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", k):
        return f"middle_block.1.{m[1]}"
    raise KeyError(k)


def vae_key(k: str, cfg: dict) -> tuple[str, bool]:
    """A diffusers VAE key → (original name, whether it is a mid-attention matrix stored as a 1x1 conv)."""
    levels = len(cfg["block_out_channels"])
    conv = False
    m2 = k
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        m2 = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
    elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
        m2 = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
        m2 = f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
    elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
        m2 = f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", k):
        m2 = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
    elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", k):
        rest = m[2]
        for a, b in VAE_ATTN:
            if rest.startswith(a):
                rest = b + rest[len(a):]
        m2, conv = f"{m[1]}.mid.attn_1.{rest}", True
    return m2.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out"), conv


def openclip_keys(sd: dict, hidden: int) -> dict:
    """An HF CLIP text model's state dict (name → array/tensor) → OpenCLIP names (q/k/v joined)."""
    import torch

    out, qkv = {}, {}
    for k, v in sd.items():
        k = k.removeprefix("text_model.")
        if k == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif k == "embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif k.startswith("final_layer_norm."):
            out["ln_final." + k.split(".")[-1]] = v
        elif k == "text_projection.weight":
            out["text_projection"] = v.T.contiguous()
        elif k == "embeddings.position_ids":
            continue
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)", k):
            if m2 := re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", m[2]):
                qkv.setdefault((m[1], m2[2]), {})[m2[1]] = v
                continue
            rest = (m[2].replace("self_attn.out_proj", "attn.out_proj").replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
                    .replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[f"transformer.resblocks.{m[1]}.{rest}"] = v
        else:
            raise KeyError(k)
    for (i, kind), d in qkv.items():
        out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat([d["q"], d["k"], d["v"]])
    if "text_projection" not in out:
        out["text_projection"] = torch.eye(hidden)  # SD2 files carry one; diffusers ignores it for SD2
    out["logit_scale"] = torch.tensor(4.6052)  # OpenCLIP's, in every real file; unused by diffusers
    return out


def to_original(pipe) -> dict:
    """The pipeline's weights in the original single-file key layout (SD1, SD2 or SDXL)."""
    out = {}
    for k, v in pipe.unet.state_dict().items():
        out["model.diffusion_model." + unet_key(k, dict(pipe.unet.config))] = v
    for k, v in pipe.vae.state_dict().items():
        name, conv = vae_key(k, dict(pipe.vae.config))
        out["first_stage_model." + name] = v.reshape(*v.shape, 1, 1) if conv and v.ndim == 2 else v
    te = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in pipe.text_encoder.state_dict().items()}
    te.pop("text_model.embeddings.position_ids", None)
    if hasattr(pipe, "text_encoder_2"):
        out.update({"conditioner.embedders.0.transformer." + k: v for k, v in te.items()})
        te2 = openclip_keys(pipe.text_encoder_2.state_dict(), pipe.text_encoder_2.config.hidden_size)
        out.update({"conditioner.embedders.1.model." + k: v for k, v in te2.items()})
    elif pipe.text_encoder.config.hidden_size == 1024:
        te2 = openclip_keys(pipe.text_encoder.state_dict(), 1024)
        out.update({"cond_stage_model.model." + k: v for k, v in te2.items()})
    else:
        out.update({"cond_stage_model.transformer." + k: v for k, v in te.items()})
    return {k: v.detach().contiguous() for k, v in out.items()}


def pipeline_configs(pipe) -> dict:
    """The configs (component → dict) that describe ``pipe``, as single_file_pipeline(configs=…) takes them."""
    xl = hasattr(pipe, "text_encoder_2")
    index = {"_class_name": type(pipe).__name__, "scheduler": ["diffusers", type(pipe.scheduler).__name__],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    configs = {"unet": dict(pipe.unet.config), "vae": dict(pipe.vae.config), "text_encoder": pipe.text_encoder.config.to_dict(),
               "scheduler": {"_class_name": type(pipe.scheduler).__name__, **dict(pipe.scheduler.config)}}
    if xl:
        index.update(text_encoder_2=["transformers", "CLIPTextModelWithProjection"], tokenizer_2=["transformers", "CLIPTokenizer"],
                     force_zeros_for_empty_prompt=True, add_watermarker=False)
        configs["text_encoder_2"] = pipe.text_encoder_2.config.to_dict()
    else:
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    configs["model_index"] = index
    return json.loads(json.dumps(configs, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def tiny_single_file(family: str, path: Path, *, extra: dict | None = None) -> tuple[object, dict]:
    """Write the built-in tiny ``family`` pipeline (seed 0) as a single-file checkpoint at ``path``
    (``.safetensors``, or ``.ckpt`` through ``torch.save({"state_dict": …, **extra})``); returns the
    pipeline and its configs."""
    import torch
    from safetensors.torch import save_file

    from embkit.diffusers.tiny import tiny_pipeline

    pipe = tiny_pipeline(family)
    sd = to_original(pipe)
    if str(path).endswith(".safetensors"):
        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd, **(extra or {})}, str(path))
    return pipe, pipeline_configs(pipe)


def write_clip_vocab(folder: Path, size: int = 1190, *, config: dict | None = None) -> Path:
    """A CLIP-shaped vocab.json + merges.txt of ``size`` tokens (embkit's tiny vocabulary, which at
    49,408 has exactly CLIP's shape: 512 byte tokens, 48,894 merges, the two special tokens)."""
    from embkit.diffusers.tiny import clip_vocab

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab(size)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def full_size_keys(model_type: str) -> dict[str, tuple[int, ...]]:
    """Original key → shape of a full-size ``model_type`` (embkit's configs), no weights allocated."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from embkit.model.configs import configs_for

    cfg = configs_for(model_type)
    clean = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(clean(cfg["unet"]))
        vae = AutoencoderKL.from_config(clean(cfg["vae"]))
        te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"])) if "text_encoder_2" in cfg else None

    class Meta:  # what to_original reads, with meta tensors
        pass

    pipe = Meta()
    pipe.unet, pipe.vae, pipe.text_encoder = unet, vae, te
    if te2 is not None:
        pipe.text_encoder_2 = te2
    sd = to_original(pipe)
    del torch
    return {k: tuple(v.shape) for k, v in sd.items()}


def write_random_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> Path:
    """A ``.safetensors`` file of seeded random fp16 tensors: weights ~ N(0, 1/fan_in), norm scales
    near 1 and biases near 0, so activations stay finite through a full-size network. Written tensor
    by tensor (the file is never whole in memory); values come from one seeded pool of 2**22 normals
    sliced at seeded offsets, so a 2 GB checkpoint takes seconds, not minutes."""
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal(1 << 22, dtype=np.float32)
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape, dtype=np.int64)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in shapes.items():
            count = int(np.prod(shape, dtype=np.int64))
            if len(shape) == 1 and (name.endswith("weight") or name.endswith("scale")):
                scale, shift = 0.02, 1.0  # LayerNorm/GroupNorm scales
            elif len(shape) <= 1 or name.endswith("bias"):
                scale, shift = 0.02, 0.0
            else:
                scale, shift = 1 / np.sqrt(int(np.prod(shape[1:], dtype=np.int64)) or 1), 0.0
            start = int(rng.integers(0, pool.size))
            while count:  # in pool-sized pieces: no tensor is ever whole in memory
                piece = pool[start : start + count]
                fh.write((piece * np.float32(scale) + np.float32(shift)).astype(np.float16).tobytes())
                count -= piece.size
                start = 0
    return path

"""What a single-file checkpoint is, from its tensor names and shapes: the model type, which
components it holds, and (for rendering) its prediction type. Torch-free.

The model types follow diffusers' ``infer_diffusers_model_type``
(``diffusers/loaders/single_file_utils.py``, 0.42.1), re-implemented from its checks with one change:
embkit does not rely on a particular block index existing (``input_blocks.2.1…``, ``resblocks.9``),
so small test checkpoints of the same layout are recognised too. The families:

========================  ===============================================================  ===========
model type                how it is recognised                                              renders
========================  ===============================================================  ===========
``v1`` (SD1.x)            cross-attention keys 768 wide, or ``cond_stage_model.transformer.*``  yes
``v2`` / ``v2-base``      cross-attention 1024 wide, or ``cond_stage_model.model.*`` (OpenCLIP)  yes
``xl_base`` (SDXL)        ``conditioner.embedders.1.model.*``, or cross-attention 2048 wide     yes
``xl_refiner``            ``conditioner.embedders.0.model.*`` only                             no
inpainting / pix2pix      UNet input of 9 / 8 channels                                          no
``sd3``                   ``joint_blocks.*``                                                   no
``flux``                  ``double_blocks.*``                                                  no
========================  ===============================================================  ===========

SD2's prediction type cannot be read from the key names (``v2`` 768-pixel models predict ``v``,
``v2-base`` 512-pixel ones ``epsilon``): see :func:`prediction_type` for the order embkit decides in.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import TargetError
from .checkpoint import Checkpoint

UNET = "model.diffusion_model."
VAE = "first_stage_model."
#: Text-encoder key prefixes per family, as A1111/SAI single files store them.
ENCODER_PREFIXES = {
    "v1": {"text_encoder": "cond_stage_model.transformer."},
    "v2": {"text_encoder": "cond_stage_model.model."},
    "xl_base": {"text_encoder": "conditioner.embedders.0.transformer.", "text_encoder_2": "conditioner.embedders.1.model."},
}
#: Tensors a component cannot do without (diffusers' single-file loader has no missing-key check:
#: a missing one surfaces as "Cannot copy out of meta tensor" deep in the load).
REQUIRED = {
    "unet": ("input_blocks.0.0.weight", "time_embed.0.weight", "out.2.weight"),
    "vae": ("encoder.conv_in.weight", "decoder.conv_out.weight", "post_quant_conv.weight", "quant_conv.weight"),
    "clip": ("text_model.embeddings.token_embedding.weight", "text_model.final_layer_norm.weight"),
    "openclip": ("token_embedding.weight", "positional_embedding", "ln_final.weight"),
}
#: Why a recognised model type is not rendered.
NOT_RENDERED = {
    "xl_refiner": "an SDXL refiner (it refines SDXL base images and takes no textual inversion of its own)",
    "inpainting": "an inpainting model (its UNet takes 9 input channels: image and mask, not text alone)",
    "instruct-pix2pix": "an InstructPix2Pix model (its UNet takes 8 input channels)",
    "playground-v2-5": "a Playground v2.5 (EDM) model",
    "sd3": "an SD3 transformer; SD3 single files rarely hold all three text encoders and embkit carries no SD3 configs: "
           "render with the diffusers folder or Hub id (--model stabilityai/stable-diffusion-3-medium-diffusers)",
    "flux": "a Flux transformer; Flux single files hold no text encoders or VAE: render with the diffusers folder or "
            "Hub id (--model black-forest-labs/FLUX.1-schnell)",
}
_SIDECAR_V = re.compile(r"^\s*parameterization\s*:\s*[\"']?(\w+)", re.MULTILINE)
#: ComfyUI's SD2 v-prediction estimate (Comfy-Org/ComfyUI ``comfy/supported_models.py`` ``SD20.model_type``
#: @01f03bbdc7df9462d3fc4c0918f80049333450f3): this LayerNorm bias has a standard deviation above
#: 0.09 in v-prediction models.
SD2_V_PROBE = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
SD2_V_THRESHOLD = 0.09


@dataclass(frozen=True)
class Architecture:
    """What :func:`detect` found: ``model_type`` (a key of :data:`ENCODER_PREFIXES`, of
    :data:`NOT_RENDERED`, or ``unknown``), its ``family`` (``sd1`` …), and ``components`` (the
    diffusers component names the file holds weights for)."""

    model_type: str
    family: str
    components: tuple[str, ...] = field(default=())

    @property
    def renderable(self) -> bool:
        """True when embkit can build a pipeline from this file alone (given tokenizers)."""
        return self.model_type in ENCODER_PREFIXES


def _context_width(checkpoint: Checkpoint) -> int | None:
    for name, info in checkpoint.tensors.items():
        if name.startswith(UNET) and name.endswith("attn2.to_k.weight") and len(info.shape) == 2:
            return info.shape[1]
    return None


def detect(checkpoint: Checkpoint) -> Architecture:
    """The model type of ``checkpoint`` from its key names and shapes (see the module table)."""
    names = checkpoint.tensors
    has = lambda prefix: any(n.startswith(prefix) for n in names)  # noqa: E731
    if any(n.endswith("joint_blocks.0.context_block.adaLN_modulation.1.bias") for n in names) or has(UNET + "joint_blocks."):
        return Architecture("sd3", "sd3")
    if any(n.endswith("double_blocks.0.img_attn.norm.key_norm.scale") for n in names) or has(UNET + "double_blocks."):
        return Architecture("flux", "flux")
    if "edm_mean" in names or "edm_vpred.sigma_max" in names:
        return Architecture("playground-v2-5", "sdxl")
    first = checkpoint.shape(UNET + "input_blocks.0.0.weight")
    if first is not None and len(first) == 4 and first[1] in (8, 9):
        return Architecture("inpainting" if first[1] == 9 else "instruct-pix2pix", "unknown")
    context = _context_width(checkpoint)
    if has("conditioner.embedders.1.model.") or (context == 2048 and has(UNET + "label_emb.")):
        model_type, family = "xl_base", "sdxl"
    elif has("conditioner.embedders.0.model."):
        return Architecture("xl_refiner", "sdxl")
    elif context == 1024 or has("cond_stage_model.model."):
        model_type, family = "v2", "sd2"
    elif context == 768 or has("cond_stage_model.transformer."):
        model_type, family = "v1", "sd1"
    else:
        return Architecture("unknown", "unknown")
    components = tuple(c for c, p in (("unet", UNET), ("vae", VAE), *ENCODER_PREFIXES[model_type].items()) if has(p))
    return Architecture(model_type, family, components)


def check_complete(checkpoint: Checkpoint, arch: Architecture) -> None:
    """Raise :class:`TargetError` naming what is missing when ``checkpoint`` cannot give a whole
    pipeline of ``arch``: a component with no weights, or one missing a tensor it cannot do without."""
    if not arch.renderable:
        reason = NOT_RENDERED.get(arch.model_type, "a model embkit does not recognise (no SD1/SD2/SDXL UNet or text encoder keys)")
        raise TargetError(f"is {reason}; embkit renders single-file SD1.x, SD2.x and SDXL base checkpoints", path=checkpoint.path)
    wanted = {"unet": UNET, "vae": VAE, **ENCODER_PREFIXES[arch.model_type]}
    missing = [c for c in wanted if c not in arch.components]
    if missing:
        what = {"unet": f"UNet ({UNET}*)", "vae": f"VAE ({VAE}*)"}
        named = ", ".join(what.get(c, f"{c} ({wanted[c]}*)") for c in missing)
        raise TargetError(f"holds no {named}: a full checkpoint is needed (this looks like a partial or component file)", path=checkpoint.path)
    for component, prefix in wanted.items():
        kind = component if component in ("unet", "vae") else ("openclip" if prefix.endswith(".model.") else "clip")
        # some old SD1 files keep CLIP's keys without the ``text_model.`` level
        absent = [prefix + k for k in REQUIRED[kind] if prefix + k not in checkpoint.tensors
                  and prefix + k.removeprefix("text_model.") not in checkpoint.tensors]
        if absent:
            raise TargetError(f"{component} is incomplete: {', '.join(absent)} missing", path=checkpoint.path)


def sidecar_yaml(path: str) -> str | None:
    """The A1111/Forge config beside a checkpoint (``<name>.yaml``), if there is one."""
    candidate = os.path.splitext(path)[0] + ".yaml"
    return candidate if os.path.isfile(candidate) else None


def normalise_prediction(value: str) -> str:
    """``v``/``v_prediction``/``v-prediction`` → ``v_prediction``; ``eps``/``epsilon`` → ``epsilon``."""
    text = value.strip().lower().replace("-", "_")
    if text in ("v", "v_prediction", "vpred", "v_pred"):
        return "v_prediction"
    if text in ("eps", "epsilon"):
        return "epsilon"
    raise TargetError(f"unknown prediction type {value!r}; use v or epsilon")


def prediction_type(checkpoint: Checkpoint, arch: Architecture, explicit: str | None = None) -> tuple[str, str]:
    """``(prediction type, how it was decided)`` for rendering ``checkpoint``, in this order:

    1. ``explicit`` (``--prediction v|epsilon``);
    2. a sidecar ``<checkpoint name>.yaml`` beside the file, as A1111 and Forge read it: its
       ``parameterization: "v"`` means v-prediction, anything else epsilon. Only that line is read,
       as text: nothing the yaml names is ever instantiated;
    3. SDXL: the ``v_pred`` marker key ComfyUI writes into v-prediction SDXL files;
    4. SD2: ComfyUI's estimate from the weights (:data:`SD2_V_PROBE`), when the tensor is there;
       otherwise v-prediction, as SD2.x-768 models (the common SD2 checkpoints) are;
    5. epsilon (every SD1.x and SDXL base model).
    """
    if explicit:
        return normalise_prediction(explicit), "--prediction"
    sidecar = sidecar_yaml(checkpoint.path)
    if sidecar is not None:
        try:
            with open(sidecar, encoding="utf-8", errors="replace") as fh:
                text = fh.read(1 << 20)
        except OSError as exc:
            raise TargetError(f"cannot read the checkpoint's config ({exc.strerror or exc})", path=sidecar) from None
        found = _SIDECAR_V.search(text)
        return ("v_prediction" if found and found.group(1).lower() == "v" else "epsilon"), f"sidecar {sidecar}"
    if arch.family == "sdxl" and "v_pred" in checkpoint.tensors:
        return "v_prediction", "the checkpoint's v_pred marker"
    if arch.family == "sd2":
        if SD2_V_PROBE in checkpoint.tensors:
            std = float(checkpoint.array(SD2_V_PROBE).astype("float64").std())
            value = "v_prediction" if std > SD2_V_THRESHOLD else "epsilon"
            return value, f"estimated from the weights as ComfyUI does (std {std:.3f}); pass --prediction to override"
        return "v_prediction", "SD2 default (SD2.x-768 models); pass --prediction epsilon for 512-pixel base models"
    return "epsilon", "default"


def config_type(arch: Architecture, prediction: str) -> str:
    """The key of :data:`embkit.model.configs.ARCHITECTURES` for ``arch`` predicting ``prediction``:
    SD2 epsilon models are SD2-base (512 pixels), v-prediction ones SD2-768."""
    if arch.model_type == "v2" and prediction == "epsilon":
        return "v2-base"
    return arch.model_type


__all__ = ["Architecture", "detect", "check_complete", "prediction_type", "normalise_prediction", "sidecar_yaml", "config_type",
           "ENCODER_PREFIXES", "NOT_RENDERED", "REQUIRED"]

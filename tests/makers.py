"""Make embedding files the way other tools write them (torch.save, safetensors, PIL), for tests.

These use real torch and safetensors on purpose: the files must be what A1111, kohya, OneTrainer and
diffusers produce, not what embkit thinks they produce.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np


def vectors(n: int, dim: int, seed: int = 0, scale: float = 0.02) -> np.ndarray:
    """Seeded random float32 rows."""
    return (np.random.default_rng(seed).standard_normal((n, dim)) * scale).astype(np.float32)


def _t(arr: np.ndarray, dtype: str = "float32"):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return t.to(getattr(torch, dtype))


def a1111_pt(path: Path, arr: np.ndarray, *, name: str | None = None, step: int = 100, dtype: str = "float32", legacy: bool = False) -> Path:
    """An A1111 training output (.pt), as modules/textual_inversion saves it."""
    import torch

    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": _t(arr, dtype)},
        "name": name if name is not None else path.stem,
        "step": step,
        "sd_checkpoint": "7ab762a7",
        "sd_checkpoint_name": "model",
    }
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


def original_ti_pt(path: Path, params: dict[str, np.ndarray]) -> Path:
    """The original textual-inversion repo's file: string_to_param as an nn.ParameterDict."""
    import torch

    pd = torch.nn.ParameterDict({k: torch.nn.Parameter(_t(v)) for k, v in params.items()})
    torch.save({"string_to_token": {k: 265 + i for i, k in enumerate(params)}, "string_to_param": pd}, path)
    return path


def diffusers_file(path: Path, token: str, arr: np.ndarray, *, one_d: bool = False, dtype: str = "float32") -> Path:
    """diffusers training output: {token: tensor}, .bin via torch.save or .safetensors."""
    t = _t(arr[0] if one_d else arr, dtype)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({token: t}, str(path), metadata={"format": "pt"})
    else:
        import torch

        torch.save({token: t}, path)
    return path


def kohya_file(path: Path, arr: np.ndarray, *, key: str = "emb_params", dtype: str = "float32", metadata: dict | None = None) -> Path:
    """kohya / OneTrainer single-encoder file."""
    t = _t(arr, dtype)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({key: t}, str(path), metadata=metadata)
    else:
        import torch

        torch.save({key: t}, path)
    return path


def multi_file(path: Path, slots: dict[str, np.ndarray], *, dtype: str = "float32", metadata: dict | None = None) -> Path:
    """Encoder-keyed file (kohya SDXL, OneTrainer), keys as given (clip_l, clip_g, t5, t5xxl, *_out)."""
    tensors = {k: _t(v, dtype) for k, v in slots.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata=metadata)
    else:
        import torch

        torch.save(tensors, path)
    return path


def lora_bundle(path: Path, bundles: dict[str, dict[str, np.ndarray]]) -> Path:
    """A LoRA safetensors with ``bundle_emb.<name>.<key>`` tensors beside LoRA weights."""
    from safetensors.torch import save_file

    tensors = {"lora_unet_down_blocks_0.lora_down.weight": _t(np.ones((4, 8), np.float32))}
    for name, keys in bundles.items():
        for key, arr in keys.items():
            tensors[f"bundle_emb.{name}.{key}"] = _t(arr)
    save_file(tensors, str(path))
    return path


def concept_folder(folder: Path, token: str, arr: np.ndarray, kind: str = "object") -> Path:
    """An sd-concepts-library folder."""
    folder.mkdir(parents=True, exist_ok=True)
    diffusers_file(folder / "learned_embeds.bin", token, arr)
    (folder / "token_identifier.txt").write_text(token)
    (folder / "type_of_concept.txt").write_text(kind)
    return folder


def image_card_text_only(path: Path, arr: np.ndarray, name: str, step: int = 10) -> Path:
    """A PNG carrying only the sd-ti-embedding text chunk (as A1111's JSON encoder writes it)."""
    from PIL import Image, PngImagePlugin

    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": {"TORCHTENSOR": arr.tolist()}},
        "name": name,
        "step": step,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
    }
    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(json.dumps(data).encode()).decode())
    Image.new("RGB", (64, 64), (40, 80, 120)).save(path, pnginfo=info)
    return path


# -- files found in the wild (issue 15; field names and sources in docs/formats.md) -------------------


def diffusers_sdxl_pair(folder: Path, token: str, clip_l: np.ndarray, clip_g: np.ndarray, *, g_dtype: str = "bfloat16",
                        stem: str = "learned_embeds", steps: int | None = None) -> Path:
    """diffusers' textual_inversion_sdxl.py ``save_progress``: the CLIP-L rows (fp32: text_encoder_1
    is never cast) as ``learned_embeds.safetensors`` and the CLIP-G rows (cast to the mixed-precision
    dtype) as ``learned_embeds_2.safetensors``, each ``{token: T[n, d]}`` with metadata
    ``{"format": "pt"}``; checkpoints are ``<stem>-steps-N`` and ``<stem>_2-steps-N``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tail = f"-steps-{steps}" if steps is not None else ""
    save_file({token: _t(clip_l)}, str(folder / f"{stem}{tail}.safetensors"), metadata={"format": "pt"})
    save_file({token: _t(clip_g, g_dtype)}, str(folder / f"{stem}_2{tail}.safetensors"), metadata={"format": "pt"})
    return folder / f"{stem}{tail}.safetensors"


def advanced_sdxl_emb(path: Path, clip_l: np.ndarray, clip_g: np.ndarray) -> Path:
    """diffusers' train_dreambooth_lora_sdxl_advanced.py ``save_embeddings``: ``{"clip_l", "clip_g"}``
    in fp32, no metadata, named ``<output_dir>_emb.safetensors``."""
    from safetensors.torch import save_file

    save_file({"clip_l": _t(clip_l), "clip_g": _t(clip_g)}, str(path))
    return path


def onetrainer_output_embedding(path: Path, out: np.ndarray) -> Path:
    """OneTrainer's SD1.5/SD2 embedding saver with "output embedding" on: ``emp_params`` holds
    zeros (BaseModelEmbedding keeps the vector at zeros_like) and ``emp_params_out`` the trained
    rows; ``save_file`` with no metadata."""
    from safetensors.torch import save_file

    save_file({"emp_params": _t(np.zeros_like(out)), "emp_params_out": _t(out)}, str(path))
    return path


XTI_LAYERS = ("IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "MID", "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11")


def kohya_xti(path: Path, n: int = 1, seed: int = 0) -> Path:
    """kohya's train_textual_inversion_XTI.py ``save_weights``: one ``[n, 768]`` tensor per UNet
    block, ``torch.save`` for .pt (the default), ``save_file`` without metadata for .safetensors."""
    state = {layer: _t(vectors(n, 768, seed + i)) for i, layer in enumerate(XTI_LAYERS)}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        import torch

        torch.save(state, path)
    return path


def civitai_info(path: Path, info: dict) -> Path:
    """Civitai Helper's ``<stem>.civitai.info``: ``open(path, 'w')`` + ``json.dumps(info, indent=4)``
    (ASCII, non-ASCII escaped)."""
    with open(path, "w") as fh:
        fh.write(json.dumps(info, indent=4))
    return path


def civitai_version(words: list[str], base: str = "SD 1.5", name: str = "My Concept Embedding") -> dict:
    """A Civitai model-version object as the API returns it (the fields Civitai Helper reads)."""
    return {
        "id": 123456, "modelId": 98765, "name": "v1.0", "trainedWords": words, "baseModel": base, "baseModelType": "Standard",
        "description": "<p>Version notes</p>", "model": {"name": name, "type": "TextualInversion", "nsfw": False, "poi": False},
        "files": [{"id": 111222, "name": "x.safetensors", "type": "Model", "sizeKB": 3.9,
                   "hashes": {"AutoV2": "3F2A9C1B7E", "SHA256": "3F2A9C1B7E5D4C3B2A1908F7E6D5C4B3A29180F7E6D5C4B3A29180F7E6D5C4B3"}}],
        "images": [{"url": "https://image.civitai.com/x/width=450/1.jpeg", "nsfw": "None", "width": 512, "height": 768, "type": "image",
                    "meta": {"prompt": "a photo of myconcept", "negativePrompt": "lowres"}}],
        "downloadUrl": "https://civitai.com/api/download/models/123456",
    }


def a1111_user_metadata(path: Path, metadata: dict) -> Path:
    """A1111's ``<stem>.json`` (UserMetadataEditor.write_user_metadata): UTF-8, indent 4, not ASCII-escaped."""
    with open(path, "w", encoding="utf8") as fh:
        json.dump(metadata, fh, indent=4, ensure_ascii=False)
    return path


def lora_manager_metadata(path: Path, metadata: dict) -> Path:
    """ComfyUI-Lora-Manager's ``<stem>.metadata.json``: UTF-8, indent 2, not ASCII-escaped."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(metadata, fh, indent=2, ensure_ascii=False)
    return path


def png_picture(path: Path, color=(10, 20, 30)) -> Path:
    """A plain picture (a preview)."""
    from PIL import Image

    Image.new("RGB", (16, 16), color).save(path)
    return path


def jpeg_bytes_as_png(path: Path) -> Path:
    """Civitai Helper's ``.preview.png`` holding JPEG bytes (it copies the download as is)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())
    return path

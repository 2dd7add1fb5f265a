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

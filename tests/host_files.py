"""A generated set of embedding files covering every layout the hosts meet, written the way each
tool writes them (torch.save, safetensors, PIL), for the host oracle tests.

torch 2.13's ``torch.save`` writes zip members (``.format_version``, ``.storage_alignment``,
``byteorder``, ``.data/serialization_id``) that older torch releases did not; files in the wild were
written by many releases, so :func:`as_torch` rewrites a saved zip with the members a given
release wrote (same bytes for every member kept): ``"1.x"`` (``data.pkl``, ``data/N``, ``version``:
what EasyNegative.pt holds), ``"2.1"`` (plus ``byteorder`` and ``.data/serialization_id``: what the
corpus's rummd/learned_embeds.bin holds) and ``"2.13"`` (as saved).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

import makers as mk

OLD_MEMBERS = ("data.pkl", "version")


def as_torch(path: Path, release: str) -> Path:
    """Keep only the zip members torch ``release`` wrote (see the module docstring)."""
    if release == "2.13":
        return path
    with zipfile.ZipFile(path) as zf:
        members = [(i, zf.read(i)) for i in zf.infolist()]
    keep = []
    for info, data in members:
        rest = info.filename.split("/", 1)[1]
        if rest in OLD_MEMBERS or rest.startswith("data/") or (release == "2.1" and rest in ("byteorder", ".data/serialization_id")):
            keep.append((info.filename, data))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in keep:
            zf.writestr(name, data)
    return path


def _st(path: Path, tensors: dict[str, np.ndarray], dtype: str = "float32") -> Path:
    from safetensors.torch import save_file

    save_file({k: mk._t(v, dtype) for k, v in tensors.items()}, str(path))
    return path


def _pt(path: Path, tree: dict, release: str = "1.x") -> Path:
    import torch

    def conv(v):
        if isinstance(v, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    torch.save(conv(tree), path)
    return as_torch(path, release)


def make_all(root: Path) -> list[Path]:
    """Write the set under ``root``; returns every path (files and concept folders)."""
    v = mk.vectors
    root.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []

    def add(p: Path) -> None:
        out.append(p)

    # -- A1111 training output, every torch release it meets ------------------------------------
    for release in ("1.x", "2.1", "2.13"):
        add(as_torch(mk.a1111_pt(root / f"a1111-torch{release}.pt", v(2, 768, seed=1)), release))
    add(as_torch(mk.a1111_pt(root / "stored-differs.pt", v(3, 768, seed=2), name="otherName"), "1.x"))
    add(as_torch(mk.a1111_pt(root / "a1111-fp16.pt", v(2, 768, seed=3), dtype="float16"), "1.x"))
    add(mk.a1111_pt(root / "a1111-legacy.pt", v(2, 768, seed=4), legacy=True))
    add(as_torch(mk.a1111_pt(root / "a1111-sd2.pt", v(2, 1024, seed=5)), "1.x"))
    add(as_torch(mk.a1111_pt(root / "a1111.bin", v(1, 768, seed=6)), "1.x"))
    add(as_torch(mk.a1111_pt(root / "a1111.ckpt", v(1, 768, seed=7)), "1.x"))
    add(as_torch(mk.original_ti_pt(root / "original-ti.pt", {"*": v(2, 768, seed=8)}), "1.x"))
    add(as_torch(mk.original_ti_pt(root / "original-ti-two.pt", {"*": v(1, 768, seed=9), "@": v(1, 768, seed=10)}), "1.x"))
    add(_pt(root / "a1111-noname.pt", {"string_to_token": {"*": 265}, "string_to_param": {"*": v(1, 768, seed=11)}}))
    add(as_torch(mk.a1111_pt(root / "my style (v2).pt", v(1, 768, seed=12)), "1.x"))
    add(as_torch(mk.a1111_pt(root / "café.pt", v(1, 768, seed=13)), "1.x"))
    # -- image cards -------------------------------------------------------------------------
    add(mk.image_card_text_only(root / "card.png", v(2, 768, seed=14), name="cardname"))
    add(mk.image_card_text_only(root / "card.preview.png", v(1, 768, seed=15), name="previewcard"))
    from PIL import Image

    Image.new("RGB", (32, 32), (9, 9, 9)).save(root / "plain.png")
    add(root / "plain.png")
    # -- kohya / OneTrainer --------------------------------------------------------------------
    add(as_torch(mk.kohya_file(root / "kohya-pt.pt", v(4, 768, seed=16)), "1.x"))
    add(mk.kohya_file(root / "kohya.safetensors", v(4, 768, seed=17)))
    add(mk.kohya_file(root / "kohya-sdxl-g.safetensors", v(2, 1280, seed=18)))
    add(mk.kohya_file(root / "kohya-bf16.safetensors", v(2, 768, seed=19), dtype="bfloat16"))
    add(as_torch(mk.kohya_file(root / "kohya.pth", v(1, 768, seed=20)), "1.x"))
    add(mk.kohya_file(root / "onetrainer.safetensors", v(2, 768, seed=21), key="emp_params"))
    add(_st(root / "onetrainer-out.safetensors", {"emp_params": v(2, 768, seed=22), "emp_params_out": v(2, 768, seed=23)}))
    add(_st(root / "onetrainer-sd2-out.safetensors", {"emp_params": v(1, 1024, seed=24), "emp_params_out": v(1, 1024, seed=25)}))
    # -- encoder-keyed ---------------------------------------------------------------------------
    sdxl = {"clip_l": v(2, 768, seed=26), "clip_g": v(2, 1280, seed=27)}
    add(mk.multi_file(root / "sdxl.safetensors", sdxl))
    add(as_torch(mk.multi_file(root / "sdxl-pt.pt", sdxl), "1.x"))
    add(mk.multi_file(root / "clip-l-only.safetensors", {"clip_l": v(2, 768, seed=28)}))
    add(mk.multi_file(root / "sd3.safetensors", {**sdxl, "t5": v(2, 4096, seed=29)}))
    add(mk.multi_file(root / "flux.safetensors", {"clip_l": v(2, 768, seed=30), "t5": v(2, 4096, seed=31)}))
    add(mk.multi_file(root / "sdxl-out.safetensors", {**sdxl, "clip_l_out": v(2, 768, seed=32), "clip_g_out": v(2, 1280, seed=33)}))
    add(mk.multi_file(root / "sdxl-mixed-dtype.safetensors", {"clip_l": v(1, 768, seed=34), "clip_g": v(1, 1280, seed=35)}, dtype="float16"))
    xti = {k: v(1, 768, seed=40 + i) for i, k in enumerate(["IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "MID", "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11"])}
    add(_st(root / "xti.safetensors", xti))
    # -- diffusers -------------------------------------------------------------------------------
    add(as_torch(mk.diffusers_file(root / "diffusers-1d.bin", "<one>", v(1, 768, seed=60), one_d=True), "2.1"))
    add(as_torch(mk.diffusers_file(root / "diffusers-2d.bin", "<two>", v(3, 768, seed=61)), "2.13"))
    add(mk.diffusers_file(root / "diffusers-2d.safetensors", "<st2>", v(2, 768, seed=62)))
    add(mk.diffusers_file(root / "diffusers-1d.safetensors", "<st1>", v(1, 768, seed=63), one_d=True))
    add(mk.diffusers_file(root / "diffusers-1024.safetensors", "<sd2tok>", v(1024, 1024, seed=64)[:1]))
    add(as_torch(mk.diffusers_file(root / "diffusers.pt", "MixedCase", v(2, 768, seed=65)), "1.x"))
    add(_st(root / "two-tokens.safetensors", {"<a>": v(1, 768, seed=66), "<b>": v(1, 768, seed=67)}))
    pair = root / "pair"
    pair.mkdir()
    add(mk.diffusers_file(pair / "learned_embeds.safetensors", "<pair>", v(2, 768, seed=68)))
    add(mk.diffusers_file(pair / "learned_embeds_2.safetensors", "<pair>", v(2, 1280, seed=69)))
    # -- sd-concepts-library folders -------------------------------------------------------------
    add(mk.concept_folder(root / "cat-toy", "<cat-toy>", v(1, 768, seed=70)))
    as_torch(root / "cat-toy" / "learned_embeds.bin", "2.1")  # as the sd-concepts files were saved
    st_folder = root / "st-concept"
    st_folder.mkdir()
    mk.diffusers_file(st_folder / "learned_embeds.safetensors", "<st-concept>", v(1, 768, seed=71), one_d=True)
    (st_folder / "token_identifier.txt").write_text("<st-concept>")
    add(st_folder)
    # -- LoRA bundles ----------------------------------------------------------------------------
    add(mk.lora_bundle(root / "lora-sd1.safetensors", {"hero": {"string_to_param.*": v(2, 768, seed=72)}}))
    add(mk.lora_bundle(root / "lora-sdxl.safetensors", {"villain": {"clip_l": v(1, 768, seed=73), "clip_g": v(1, 1280, seed=74)}}))
    add(mk.lora_bundle(root / "lora-dotted.safetensors", {"style.v2": {"string_to_param.*": v(1, 768, seed=75)}}))
    # -- odd files -------------------------------------------------------------------------------
    (root / "empty.pt").write_bytes(b"")
    add(root / "empty.pt")
    add(mk.kohya_file(root / "notes.txt.safetensors", v(1, 768, seed=76)))
    return out

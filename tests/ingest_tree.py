"""A generated upload tree for the ingest tests: every layout embkit reads, written the way each
tool writes it (torch.save, safetensors, PIL), diffusers SDXL pairs and files with sidecars, plus
unsafe files (every payload of the malicious suite, with its canary), broken files, duplicates and
links in and out of the tree.

``build_tree(root, n)`` writes at least ``n`` embedding files and returns what each file should
become when ``root`` is walked: path → the status its manifest row must have.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

import makers
from fuzz.malicious import CASES, Canary

#: The layouts, each a function (folder, index) → (path written, status expected).
LAYOUTS: list = []


def layout(fn):
    LAYOUTS.append(fn)
    return fn


def _v(i: int, n: int = 2, d: int = 768) -> np.ndarray:
    return makers.vectors(n, d, seed=i)


@layout
def a1111_zip(folder: Path, i: int):
    return makers.a1111_pt(folder / f"a1111_{i:04d}.pt", _v(i, 1 + i % 4)), "ok"


@layout
def a1111_legacy(folder: Path, i: int):
    return makers.a1111_pt(folder / f"legacy_{i:04d}.pt", _v(i), legacy=True), "ok"


@layout
def a1111_fp16(folder: Path, i: int):
    return makers.a1111_pt(folder / f"half_{i:04d}.pt", _v(i), dtype="float16"), "ok"


@layout
def original_ti(folder: Path, i: int):
    return makers.original_ti_pt(folder / f"orig_{i:04d}.pt", {"*": _v(i, 1)}), "ok"


@layout
def diffusers_bin(folder: Path, i: int):
    return makers.diffusers_file(folder / f"learned_{i:04d}.bin", f"<tok{i:04d}>", _v(i, 1)), "ok"


@layout
def diffusers_safetensors(folder: Path, i: int):
    return makers.diffusers_file(folder / f"diff_{i:04d}.safetensors", f"<dtok{i:04d}>", _v(i, 1)), "ok"


@layout
def diffusers_one_d(folder: Path, i: int):
    return makers.diffusers_file(folder / f"oned_{i:04d}.bin", f"<otok{i:04d}>", _v(i, 1), one_d=True), "ok"


@layout
def kohya_safetensors(folder: Path, i: int):
    return makers.kohya_file(folder / f"kohya_{i:04d}.safetensors", _v(i, 1 + i % 8), metadata={"ss_step": str(i)}), "ok"


@layout
def kohya_pt(folder: Path, i: int):
    return makers.kohya_file(folder / f"kohyapt_{i:04d}.pt", _v(i)), "ok"


@layout
def kohya_bf16(folder: Path, i: int):
    return makers.kohya_file(folder / f"bf16_{i:04d}.safetensors", _v(i), dtype="bfloat16"), "ok"


@layout
def sdxl_pair(folder: Path, i: int):
    return makers.multi_file(folder / f"xl_{i:04d}.safetensors", {"clip_l": _v(i), "clip_g": _v(i + 1, 2, 1280)}), "ok"


@layout
def sdxl_pair_pt(folder: Path, i: int):
    return makers.multi_file(folder / f"xlpt_{i:04d}.pt", {"clip_l": _v(i), "clip_g": _v(i + 1, 2, 1280)}), "ok"


@layout
def onetrainer_outputs(folder: Path, i: int):
    slots = {"clip_l": _v(i), "clip_g": _v(i + 1, 2, 1280), "clip_l_out": _v(i + 2), "clip_g_out": _v(i + 3, 2, 1280)}
    return makers.multi_file(folder / f"ot_{i:04d}.safetensors", slots), "ok"


@layout
def flux_t5(folder: Path, i: int):
    return makers.multi_file(folder / f"flux_{i:04d}.safetensors", {"clip_l": _v(i), "t5": _v(i + 1, 2, 4096)}), "ok"


@layout
def lora_bundle(folder: Path, i: int):
    bundles = {f"bun{i:04d}a": {"string_to_param.*": _v(i, 1)}, f"bun{i:04d}b": {"string_to_param.*": _v(i + 1, 1)}}
    return makers.lora_bundle(folder / f"lora_{i:04d}.safetensors", bundles), "ok"


@layout
def concept_folder(folder: Path, i: int):
    return makers.concept_folder(folder / f"concept_{i:04d}", f"<c{i:04d}>", _v(i, 1)) / "learned_embeds.bin", "ok"


@layout
def image_card(folder: Path, i: int):
    return makers.image_card_text_only(folder / f"card_{i:04d}.png", _v(i, 1), f"card_{i:04d}"), "ok"


@layout
def diffusers_pair(folder: Path, i: int):
    # diffusers' SDXL script writes two files; the second is a companion of the first, not an upload
    return makers.diffusers_sdxl_pair(folder / f"pair_{i:04d}", f"<p{i:04d}>", _v(i, 1), _v(i + 1, 1, 1280)), "ok"


@layout
def with_sidecars(folder: Path, i: int):
    # Civitai Helper's info (trained words, base model) and a preview picture beside the file
    path = makers.kohya_file(folder / f"side_{i:04d}.safetensors", _v(i, 1))
    makers.civitai_info(folder / f"side_{i:04d}.civitai.info", makers.civitai_version([f"word{i}", "shiny style"], base="SD 1.5"))
    makers.png_picture(folder / f"side_{i:04d}.preview.png", (i % 255, 10, 10))
    return path, "ok"


@layout
def slash_in_name(folder: Path, i: int):
    # the trigger cannot be a file name as it is: a safetensors copy would rename it, so refused
    return makers.diffusers_file(folder / f"slash_{i:04d}.bin", f"<a/b{i:04d}>", _v(i, 1)), "unconverted"


def _broken(folder: Path, i: int) -> list[tuple[Path, str]]:
    out = []
    good = makers.a1111_pt(folder / f"tmp_{i}.pt", _v(i))
    data = good.read_bytes()
    good.unlink()
    (folder / f"truncated_{i:04d}.pt").write_bytes(data[: len(data) // 2])
    (folder / f"empty_{i:04d}.safetensors").write_bytes(b"")
    (folder / f"garbage_{i:04d}.pt").write_bytes(np.random.default_rng(i).bytes(300))
    (folder / f"badheader_{i:04d}.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    from PIL import Image

    Image.new("RGB", (8, 8), (i % 255, 0, 0)).save(folder / f"photo_{i:04d}.png")
    makers.lora_bundle(folder / f"weights_{i:04d}.safetensors", {})  # model weights, no embedding
    for name in ("truncated", "empty", "garbage", "badheader", "photo", "weights"):
        ext = {"empty": ".safetensors", "badheader": ".safetensors", "photo": ".png", "weights": ".safetensors"}.get(name, ".pt")
        # met in a folder, a photo and a file of model weights are no embedding: skipped (the
        # folder rule, embkit.folder), not broken; the others look like embeddings and are damaged
        out.append((folder / f"{name}_{i:04d}{ext}", "skipped" if name in ("photo", "weights") else "broken"))
    return out


def build_tree(root: Path, n: int = 500, *, outside: Path | None = None) -> dict[str, str]:
    """Write the tree under ``root``; path → expected status. ``outside``: a folder beside the
    tree for the canaries and a link target that must never be read."""
    root.mkdir(parents=True, exist_ok=True)
    outside = outside or root.parent / f"{root.name}-outside"
    outside.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}
    i = 0
    while sum(1 for s in expect.values() if s in ("ok", "unconverted")) < n:
        folder = root / f"set{i % 12:02d}"
        folder.mkdir(exist_ok=True)
        path, status = LAYOUTS[i % len(LAYOUTS)](folder, i)
        expect[str(path)] = status
        i += 1
    broken = root / "broken"
    broken.mkdir()
    for j in range(4):
        for path, status in _broken(broken, j):
            expect[str(path)] = status
    evil = root / "uploads" / "evil"
    evil.mkdir(parents=True)
    canary = Canary(created=str(outside / "canary.created"), keep=str(outside / "canary.keep"))
    Path(canary.keep).write_text("keep")
    for k, case in enumerate(CASES):
        path = evil / f"{k:03d}_{case.filename}"
        path.write_bytes(case.build(canary))
        expect[str(path)] = "unsafe" if case.expect in ("unsafe-file", "too-large") else "broken"
    dups = root / "uploads" / "again"
    dups.mkdir(parents=True)
    for path in [p for p, s in sorted(expect.items()) if s == "ok" and p.endswith(".safetensors")][:20]:
        copy = dups / ("copy_" + os.path.basename(path))
        shutil.copyfile(path, copy)
        expect[str(copy)] = "ok"
    secret = outside / "secret.safetensors"
    makers.kohya_file(secret, _v(99999))
    os.symlink(secret, root / "uploads" / "leak.safetensors")
    expect[str(root / "uploads" / "leak.safetensors")] = "skipped"
    os.symlink(outside, root / "uploads" / "linked_folder")  # never followed
    inside = sorted(p for p, s in expect.items() if s == "ok" and p.endswith(".safetensors"))[0]
    os.symlink(inside, root / "uploads" / "alias.safetensors")
    expect[str(root / "uploads" / "alias.safetensors")] = "ok"
    return expect


def canary_untouched(outside: Path) -> bool:
    """True when no payload ran (the canary was neither created nor changed)."""
    return not (outside / "canary.created").exists() and (outside / "canary.keep").read_text() == "keep"

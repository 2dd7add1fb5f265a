"""Builders for validation tests: a tiny diffusers model folder (real tokenizer and text encoder
saved with save_pretrained) and header-only single-file checkpoints (sparse files)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from embkit.model.vocab import byte_encoder

#: Words the tiny vocabulary knows as single tokens (``word</w>``).
WORDS = ("cat", "style", "photo", "sks")


def write_vocab_files(folder: Path, words=WORDS) -> tuple[Path, Path]:
    """CLIP-style vocab.json + merges.txt: every byte character alone and word-final, plus merges
    that build each of ``words`` into one word-final token."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(byte_encoder().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            rule = f"{left} {right}"
            if rule not in merges:
                merges.append(rule)
            left = left + right
            vocab.setdefault(left, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def build_model_folder(root: Path, *, sdxl: bool = False) -> Path:
    """A diffusers folder: tokenizer + text_encoder (CLIP, 768 wide, 1 layer, seeded weights) saved
    with save_pretrained; with ``sdxl`` also tokenizer_2 and a text_encoder_2 config (1280 wide,
    no weights: the reader must fall back to priors)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    src = root / "_vocab_src"
    write_vocab_files(src)
    tok = CLIPTokenizer.from_pretrained(str(src))
    folder = root / ("tiny-sdxl" if sdxl else "tiny-sd1")
    tok.save_pretrained(str(folder / "tokenizer"))
    torch.manual_seed(0)
    size = len(tok.get_vocab())
    ids = {"bos_token_id": size - 2, "eos_token_id": size - 1, "pad_token_id": size - 1}  # <|startoftext|>, <|endoftext|>
    config = CLIPTextConfig(vocab_size=size, **ids, hidden_size=768, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=12, max_position_embeddings=77, projection_dim=32)
    CLIPTextModel(config).save_pretrained(str(folder / "text_encoder"))
    pipeline = "StableDiffusionXLPipeline" if sdxl else "StableDiffusionPipeline"
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    if sdxl:
        tok.save_pretrained(str(folder / "tokenizer_2"))
        config2 = CLIPTextConfig(vocab_size=size, **ids, hidden_size=1280, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=20, max_position_embeddings=77, projection_dim=1280,
                                 architectures=["CLIPTextModelWithProjection"])
        config2.save_pretrained(str(folder / "text_encoder_2"))
    return folder


def write_sparse_checkpoint(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None) -> Path:
    """A valid single-file safetensors whose data is never written: the header declares every
    tensor and the file is extended with truncate() (sparse, so a 49408x768 fp16 tensor is free)."""
    sizes = {"F16": 2, "BF16": 2, "F32": 4}
    header: dict = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return path


SD1_KEYS = {
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": ("F16", [49408, 768]),
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": ("F16", [77, 768]),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F16", [320, 768]),
}
SD2_KEYS = {
    "cond_stage_model.model.token_embedding.weight": ("F16", [49408, 1024]),
    "cond_stage_model.model.positional_embedding": ("F16", [77, 1024]),
}
SDXL_KEYS = {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": ("F16", [49408, 768]),
    "conditioner.embedders.1.model.token_embedding.weight": ("F16", [49408, 1280]),
    "conditioner.embedders.1.model.positional_embedding": ("F16", [77, 1280]),
    "model.diffusion_model.label_emb.0.0.weight": ("F16", [1280, 2816]),
}

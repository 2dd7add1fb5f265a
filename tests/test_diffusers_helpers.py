"""Shared, cached tiny pipelines for the diffusers/render/tiny tests (built once per test session).

Tests that apply embeddings must leave the pipeline clean: the ``clean`` helper unloads whatever a
test left behind and checks that the tokenizer and matrix are back to their original sizes.
"""

from __future__ import annotations

import functools

import numpy as np

from embkit.schema import Embedding


@functools.lru_cache(maxsize=None)
def pipeline(family: str):
    """The tiny pipeline of ``family`` (seed 0, CPU, float32), built once per process."""
    from embkit.diffusers.tiny import tiny_pipeline

    return tiny_pipeline(family, seed=0)


def clean(pipe) -> None:
    """Unload everything embkit applied to ``pipe``."""
    from embkit.diffusers import unload

    unload(pipe)


def synthetic(name: str, rows: int = 2, slots=("clip_l",), seed: int = 0, dtype=np.float32, scale: float = 0.05) -> Embedding:
    """A random embedding of real widths for the given slots."""
    from embkit.schema import SLOT_WIDTHS

    rng = np.random.default_rng(seed)
    return Embedding(name=name, vectors={s: (rng.standard_normal((rows, SLOT_WIDTHS[s])) * scale).astype(dtype) for s in slots})


def render(pipe, prompt: str, *, seed: int = 0, steps: int = 2, negative: str | None = None):
    """One 64x64 image as a uint8 array, with embkit's prompt expansion."""
    import torch

    from embkit.diffusers import expanded_prompts

    with expanded_prompts(pipe):
        image = pipe(prompt=prompt, negative_prompt=negative, num_inference_steps=steps, height=64, width=64, generator=torch.Generator().manual_seed(seed), output_type="np").images[0]
    return (np.asarray(image) * 255).round().astype(np.uint8)


def encode(pipe, text: str, tokenizer: str = "tokenizer", encoder: str = "text_encoder"):
    """The text encoder's output for ``text`` tokenized as given (no expansion)."""
    import torch

    tok, enc = getattr(pipe, tokenizer), getattr(pipe, encoder)
    ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return enc(ids)[0]


def state(pipe) -> dict:
    """Everything apply may change, for exact before/after comparison."""
    out = {}
    for enc_attr, tok_attr in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2"), ("text_encoder_3", "tokenizer_3")):
        enc, tok = getattr(pipe, enc_attr, None), getattr(pipe, tok_attr, None)
        if enc is None:
            continue
        out[enc_attr] = {
            "len": len(tok),
            "vocab": tok.get_vocab(),
            "added": {i: str(t) for i, t in tok.added_tokens_decoder.items()},
            "backend": _backend_json(tok),
            "weight": enc.get_input_embeddings().weight.detach().clone(),
            "dtype": enc.get_input_embeddings().weight.dtype,
            "vocab_size": enc.config.vocab_size,
            "class": type(enc.get_input_embeddings()).__name__,
        }
    return out


def _backend_json(tok) -> dict:
    import json

    if not hasattr(tok, "backend_tokenizer"):  # transformers 4.x's pure-Python CLIPTokenizer: vocab and added tokens say it all
        return {}
    data = json.loads(tok.backend_tokenizer.to_str())
    # padding/truncation settings are per-call state that each tokenizer call sets and leaves behind
    data.pop("padding", None)
    data.pop("truncation", None)
    return data


def assert_same_state(a: dict, b: dict) -> None:
    """Two :func:`state` snapshots are identical, bit for bit."""
    import torch

    assert a.keys() == b.keys()
    for k in a:
        for field in ("len", "vocab", "added", "backend", "dtype", "vocab_size", "class"):
            assert a[k][field] == b[k][field], (k, field)
        assert torch.equal(a[k]["weight"], b[k]["weight"]), k

"""Benchmark: building validation targets and verifying, against what a user would otherwise run.

    python tests/benchmarks/bench_validate.py

1. Target from a single-file SDXL checkpoint (sparse file, real shapes): embkit's header read vs
   ``safetensors.safe_open`` listing keys and shapes (in process).
2. Target from a diffusers folder of real CLIP-L size (49408 x 768 token matrix, real-size
   vocabulary), each in a fresh process: ``ModelSpec.from_folder`` (config, vocabulary, token norms)
   vs transformers loading the tokenizer and the text encoder to learn the same.
3. ``embkit verify FILE --model sdxl --json`` as a whole process vs
   ``python -c "import torch; torch.load(FILE, weights_only=True)"``, which only opens the file.
4. 2,000 embeddings validated as loaded together (name collisions are N²).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from timing import best
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))




def proc(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def main() -> None:
    import installed

    installed.compile_embkit()  # as pip does at install: processes read bytecode, not source
    from safetensors import safe_open

    from embkit.model.spec import ModelSpec
    from validate_fixtures import SDXL_KEYS, write_sparse_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="bench_validate_"))
    ckpt = write_sparse_checkpoint(tmp / "sdxl.safetensors", SDXL_KEYS)

    def st_listing():
        with safe_open(str(ckpt), "np") as fh:
            {k: fh.get_slice(k).get_shape() for k in fh.keys()}

    a = best(lambda: ModelSpec.from_checkpoint(ckpt), 20)
    b = best(st_listing, 20)
    print(f"1. checkpoint target: embkit {a * 1e3:.2f} ms, safe_open keys+shapes {b * 1e3:.2f} ms, ratio {b / a:.2f}x")

    folder = tmp / "clip-l-size"
    code = f"""
import torch
from transformers import CLIPTextConfig, CLIPTextModel
from embkit.diffusers.tiny import clip_tokenizer
tok = clip_tokenizer(vocab_size=49408)
tok.save_pretrained({str(folder / 'tokenizer')!r})
torch.manual_seed(0)
cfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=64, num_hidden_layers=1, num_attention_heads=12, max_position_embeddings=77)
CLIPTextModel(cfg).save_pretrained({str(folder / 'text_encoder')!r})
"""
    proc(code)
    ours = f"from embkit.model.spec import ModelSpec; s = ModelSpec.from_folder({str(folder)!r}); s.slots['clip_l'].token_norms.median"
    theirs = (
        "import torch; from transformers import CLIPTokenizer, CLIPTextModel; "
        f"t = CLIPTokenizer.from_pretrained({str(folder / 'tokenizer')!r}); "
        f"m = CLIPTextModel.from_pretrained({str(folder / 'text_encoder')!r}); "
        "w = m.get_input_embeddings().weight; torch.linalg.vector_norm(w, dim=1).median(); len(t.get_vocab())"
    )
    a = best(lambda: proc(ours), 3)
    b = best(lambda: proc(theirs), 3)
    print(f"2. folder target (process): embkit {a:.2f} s, transformers {b:.2f} s, ratio {b / a:.2f}x")

    import embkit
    from safetensors.numpy import save_file

    emb_file = tmp / "pair.safetensors"
    save_file({"clip_l": np.ones((4, 768), np.float32) * 0.02, "clip_g": np.ones((4, 1280), np.float32) * 0.02}, str(emb_file))
    pt_file = tmp / "a1111.pt"
    import torch

    torch.save({"string_to_param": {"*": torch.ones(4, 768) * 0.02}, "name": "a1111"}, str(pt_file))
    a = best(lambda: subprocess.run([sys.executable, "-m", "embkit", "verify", str(pt_file), "--model", "sdxl", "--json"], capture_output=True), 5)
    b = best(lambda: proc(f"import torch; torch.load({str(pt_file)!r}, weights_only=True)"), 5)
    print(f"3. embkit verify (process) {a:.3f} s, torch.load alone {b:.3f} s, ratio {b / a:.2f}x")

    embs = [embkit.Embedding(f"tok{i}", {"clip_l": np.full((2, 768), 0.02, np.float32)}) for i in range(2000)]
    spec = ModelSpec.from_family("sd1")
    t = time.perf_counter()
    for e in embs:
        embkit.validate(e, spec, loaded=embs)
    dt = time.perf_counter() - t
    print(f"4. 2,000 embeddings validated together: {dt:.2f} s ({2000 / dt:.0f} per second)")


if __name__ == "__main__":
    main()

"""GPU check: dtype and device handling of embkit.diffusers.apply / unload on CUDA.

For each of float16 and bfloat16, builds the tiny SDXL pipeline on CUDA in that dtype, applies an
fp32 file, an fp16 file and a bf16 file at once, and checks that every added row is on the
encoder's device, in its dtype, equal to the embedding cast to that dtype; renders one step; then
unloads and checks every encoder matrix and tokenizer length is bit-identical to before.

    python tests/benchmarks/gpu_dtype_check.py        # needs CUDA; prints PASS/FAIL per check
    python tests/benchmarks/gpu_dtype_check.py --cpu  # the same checks on the CPU
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402


def main() -> int:
    import torch

    import embkit
    import embkit.diffusers as ed
    from embkit.diffusers.tiny import tiny_pipeline

    device = "cpu" if "--cpu" in sys.argv else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (--cpu runs the same checks on the CPU)")
        return 0
    print("device:", torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch", torch.__version__)
    failures = 0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, dt in enumerate(("float32", "float16", "bfloat16")):
            emb = embkit.Embedding(
                name=f"dtcheck{i}",
                vectors={"clip_l": rng.standard_normal((2, 768)).astype(np.float32), "clip_g": rng.standard_normal((2, 1280)).astype(np.float32)},
            )
            path = Path(tmp) / f"dtcheck{i}.safetensors"
            embkit.write(emb, path, dtype=dt)
            files.append(path)
        embs = [embkit.read(p) for p in files]
        for dtype in (torch.float16, torch.bfloat16):
            pipe = tiny_pipeline("sdxl", device=device, dtype=dtype)
            encoders = {"clip_l": (pipe.text_encoder, pipe.tokenizer), "clip_g": (pipe.text_encoder_2, pipe.tokenizer_2)}
            before = {s: (enc.get_input_embeddings().weight.detach().clone(), len(tok)) for s, (enc, tok) in encoders.items()}
            applied = ed.apply(pipe, embs)
            for slot, (enc, tok) in encoders.items():
                w = enc.get_input_embeddings().weight
                for emb in embs:
                    ids = tok.convert_tokens_to_ids([emb.name, f"{emb.name}_1"])
                    rows = w[ids]
                    want = torch.from_numpy(np.array(emb.vectors[slot])).to(device=device, dtype=dtype)
                    ok = rows.device.type == device and rows.dtype == dtype and torch.equal(rows, want)
                    failures += not ok
                    print(f"{'PASS' if ok else 'FAIL'} {str(dtype):15} {slot} {emb.name} (stored {emb.dtypes[slot]}): rows on {rows.device} as {rows.dtype}")
            image = pipe("a photo of dtcheck0, dtcheck1", negative_prompt="dtcheck2", num_inference_steps=1, height=64, width=64, output_type="np").images[0]
            finite = bool(np.isfinite(image).all())
            failures += not finite
            print(f"{'PASS' if finite else 'FAIL'} {str(dtype):15} render with the embeddings is finite")
            ed.unload(pipe, applied)
            for slot, (enc, tok) in encoders.items():
                w0, n0 = before[slot]
                w = enc.get_input_embeddings().weight
                ok = len(tok) == n0 and w.shape == w0.shape and torch.equal(w, w0) and w.dtype == dtype
                failures += not ok
                print(f"{'PASS' if ok else 'FAIL'} {str(dtype):15} {slot} unload restores {tuple(w0.shape)} exactly")
            del pipe
            if device == "cuda":
                torch.cuda.empty_cache()
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: merging and porting with embkit vs the torch script a user would otherwise write.

1. ``embkit merge A B --mode mean --pad -o OUT`` as a whole process vs a fresh ``python -c`` that
   imports torch, ``torch.load``s both files, pads, averages and saves with safetensors. Median of N.
   Target: embkit at least 3x faster.
2. SD1 → SDXL nearest-token port at real size (49408×768 and 49408×1280 fp16 token matrices in a
   diffusers-shaped folder) in-process: ``embkit.edit.port.to_sdxl`` vs a torch version (load both files
   with ``safetensors.torch.load_file``, normalise, matmul, argmax, index). Warm file cache, median
   of N. Target: embkit no slower than 1.5x torch.

    python tests/benchmarks/bench_ops.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CORPUS = Path(os.environ.get("EMBKIT_CORPUS") or Path(__file__).resolve().parents[3] / "shared" / "corpus")

TORCH_MERGE = r"""
import sys, torch
from safetensors.torch import save_file
a = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
b = torch.load(sys.argv[2], map_location="cpu", weights_only=True)
ta = a["string_to_param"]["*"] if "string_to_param" in a else a["emb_params"]
tb = b["string_to_param"]["*"] if "string_to_param" in b else b["emb_params"]
n = max(ta.shape[0], tb.shape[0])
pad = lambda t: torch.cat([t, t.new_zeros(n - t.shape[0], t.shape[1])])
save_file({"emb_params": ((pad(ta).double() + pad(tb).double()) / 2).float().contiguous()}, sys.argv[3])
"""


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")


def bench_merge(tmp: Path, runs: int) -> float:
    a, b = str(CORPUS / "bad-hands-5.pt"), str(CORPUS / "EasyNegative.pt")
    out_e, out_t = str(tmp / "e.safetensors"), str(tmp / "t.safetensors")
    embkit_cmd = [sys.executable, "-m", "embkit", "merge", a, b, "--mode", "mean", "--pad", "-o", out_e, "--overwrite"]
    torch_cmd = [sys.executable, "-c", TORCH_MERGE, a, b, out_t]
    run(embkit_cmd), run(torch_cmd)  # warm the file cache
    te = median_time(lambda: run(embkit_cmd), runs)
    tt = median_time(lambda: run(torch_cmd), runs)
    import embkit

    same = np.array_equal(embkit.read(out_e).vectors["clip_l"], embkit.read(out_t).vectors["clip_l"])
    print(f"merge (whole process, median of {runs}): embkit {te * 1000:.0f} ms, torch script {tt * 1000:.0f} ms, "
          f"ratio {tt / te:.1f}x; identical vectors: {same}")
    return tt / te


def bench_port(tmp: Path, runs: int) -> float:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    folder = tmp / "sdxl"
    for enc, width in (("text_encoder", 768), ("text_encoder_2", 1280)):
        (folder / enc).mkdir(parents=True)
        save_file({"text_model.embeddings.token_embedding.weight": (rng.standard_normal((49408, width)) * 0.02).astype(np.float16)},
                  str(folder / enc / "model.safetensors"))
    import torch
    from safetensors.torch import load_file

    from embkit.edit.port import to_sdxl
    from embkit.schema import Embedding

    emb = Embedding("x", {"clip_l": (rng.standard_normal((8, 768)) * 0.02).astype(np.float32)})

    def with_torch():
        key = "text_model.embeddings.token_embedding.weight"
        vl = load_file(str(folder / "text_encoder" / "model.safetensors"))[key].float()
        vg = load_file(str(folder / "text_encoder_2" / "model.safetensors"))[key].float()
        v = torch.from_numpy(np.array(emb.vectors["clip_l"]))
        ids = (torch.nn.functional.normalize(v, dim=1) @ torch.nn.functional.normalize(vl, dim=1).T).argmax(dim=1)
        return ids, vg[ids]

    ours = to_sdxl(emb, folder)
    ids, rows = with_torch()
    same = ours.metadata["provenance"][-1]["params"]["token_ids"] == ids.tolist() and np.array_equal(ours.vectors["clip_g"], rows.numpy())
    te = median_time(lambda: to_sdxl(emb, folder), runs)
    tt = median_time(with_torch, runs)
    print(f"nearest-token port, 49408-token vocab (in-process, median of {runs}): embkit {te * 1000:.0f} ms, "
          f"torch {tt * 1000:.0f} ms, ratio {tt / te:.2f}x; same tokens and rows: {same}")
    return tt / te


def main() -> int:
    import installed

    installed.compile_embkit()  # as pip does at install: processes read bytecode, not source
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        merge_ratio = bench_merge(Path(tmp), args.runs)
        port_ratio = bench_port(Path(tmp), args.runs)
    ok = merge_ratio >= 3 and port_ratio >= 1 / 1.5
    print("targets met" if ok else "target missed (merge ≥ 3x, port ≥ 0.67x of torch)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

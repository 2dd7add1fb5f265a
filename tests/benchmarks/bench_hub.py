"""Benchmark: ``embkit pull`` vs what a user would otherwise run, against the local fake Hub.

A repo of N embedding files (A1111 ``.pt`` written by torch.save and kohya ``.safetensors``) is served
by ``tests/hub_server.py`` on 127.0.0.1. Each measurement is a whole process, median of R runs:

1. cold: ``embkit pull REPO -o DIR --json`` (download, read, validate, copy) with an empty HF_HOME, vs
   ``hf download REPO`` (into the cache) followed by ``python -c`` that ``torch.load``s / ``load_file``s
   every file (download, then look inside);
2. warm, offline: the same two with ``HF_HUB_OFFLINE=1`` and a filled cache.

No target: the download itself is the same client in both; the ratio shows what reading and
validating without torch costs (or saves) on top.

    python tests/benchmarks/bench_hub.py [--files N] [--runs R]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub_server import HubServer  # noqa: E402

TORCH_LOOK = r"""
import os, sys, torch
from safetensors.torch import load_file
for root, _, names in os.walk(sys.argv[1]):
    for n in names:
        p = os.path.join(root, n)
        if n.endswith(".pt"):
            torch.load(p, map_location="cpu", weights_only=True)
        elif n.endswith(".safetensors"):
            load_file(p)
"""


def make_files(n: int) -> dict[str, bytes]:
    import torch
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    files = {}
    for i in range(n):
        values = rng.standard_normal((4, 768)).astype(np.float32)
        if i % 2:
            buf = io.BytesIO()
            torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.from_numpy(values)},
                        "name": f"emb{i}", "step": 100, "sd_checkpoint": None, "sd_checkpoint_name": None}, buf)
            files[f"emb{i}.pt"] = buf.getvalue()
        else:
            files[f"emb{i}.safetensors"] = save({"emb_params": values})
    return files


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    import installed

    installed.compile_embkit()  # as pip does at install: processes read bytecode, not source
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    hub = HubServer().start()
    hub.add_repo("bench/pack", make_files(args.files))
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    base.update(HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
    hf = shutil.which("hf")
    if hf is None:
        print("the `hf` CLI is not installed; nothing to compare against")
        return 0
    results: dict[str, list[float]] = {k: [] for k in ("embkit cold", "hf+torch cold", "embkit warm", "hf+torch warm")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs):
            for who in ("embkit", "hf+torch"):
                home, out = Path(tmp) / f"{who}-{r}-home", Path(tmp) / f"{who}-{r}-out"
                env = {**base, "HF_HOME": str(home)}
                for phase, extra in (("cold", {}), ("warm", {"HF_HUB_OFFLINE": "1"})):
                    shutil.rmtree(out, ignore_errors=True)
                    e = {**env, **extra}
                    if who == "embkit":
                        t = timed([sys.executable, "-m", "embkit", "pull", "bench/pack", "-o", str(out), "--json"], e)
                    else:
                        # into the cache, like embkit: the snapshot's files are then loaded where they lie
                        t = timed([hf, "download", "bench/pack", "--quiet"], e)
                        t += timed([sys.executable, "-c", TORCH_LOOK, str(home / "hub")], e)
                    results[f"{who} {phase}"].append(t)
    hub.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"repo of {args.files} embeddings, median of {args.runs} whole-process runs")
    for k, v in med.items():
        print(f"  {k:15s} {v:6.2f} s")
    for phase in ("cold", "warm"):
        print(f"  {phase}: embkit pull is {med[f'hf+torch {phase}'] / med[f'embkit {phase}']:.2f}x the speed of hf download + torch.load")
    return 0


if __name__ == "__main__":
    sys.exit(main())

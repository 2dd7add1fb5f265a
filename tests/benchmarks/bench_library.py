"""Benchmark: `embkit library scan` over 5,000 generated embedding files of mixed formats.

    python tests/benchmarks/bench_library.py [--files 5000] [--repeat 3]

Measured in the same run, on the same files (all in the page cache):

* cold scan: a fresh ``embkit library scan`` process on an empty database (process start, imports,
  walking, reading, hashing, parsing, norms, writing: everything);
* warm rescan: the same command again over the unchanged tree;
* what a web UI does at start-up: a loop that ``torch.load(weights_only=True)``s each ``.pt`` and
  ``safetensors.torch.load_file``s each ``.safetensors``, in a fresh process. Its rate is given for
  the loop alone (torch already imported: the UI has it loaded anyway) and for the whole process.

Targets (2 cores): cold ≥ 4,000 files/s, cold ≥ 5x the torch loop, warm ≥ 20,000 files/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

LAST_CPU = [0.0]

TORCH_LOOP = r"""
import json, os, sys, time
t0 = time.perf_counter()
import torch
from safetensors.torch import load_file
t1 = time.perf_counter()
paths = []
for dp, _, fs in os.walk(sys.argv[1]):
    paths += [os.path.join(dp, f) for f in fs]
for p in paths:
    if p.endswith(".safetensors"):
        load_file(p)
    else:
        torch.load(p, weights_only=True, map_location="cpu")
t2 = time.perf_counter()
print(json.dumps({"files": len(paths), "import_s": t1 - t0, "loop_s": t2 - t1}))
"""

#: The least any scanner written in Python must do for these records, in a fresh process on the
#: same cores: start, import numpy (the norms need it), walk, and per file read the bytes, SHA-256
#: them and, for safetensors, SHA-256 the data again for AutoV3. No parsing, norms, vector hashes
#: or database. If even this is not 5x faster than the torch loop, no Python scan can be.
FLOOR = r"""
import hashlib, json, os, struct, sys, time
import multiprocessing as mp
import numpy  # noqa: F401
def work(paths):
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        hashlib.sha256(data).hexdigest()
        if p.endswith(".safetensors"):
            n = struct.unpack_from("<Q", data)[0]
            hashlib.sha256(memoryview(data)[8 + n:]).hexdigest()
    return len(paths)
if __name__ == "__main__":
    t0 = time.perf_counter()
    paths = []
    for dp, _, fs in os.walk(sys.argv[1]):
        paths += [os.path.join(dp, f) for f in fs]
    chunks = [paths[i:i + 128] for i in range(0, len(paths), 128)]
    with mp.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        done = sum(pool.imap_unordered(work, chunks))
    print(json.dumps({"files": done, "inside_s": time.perf_counter() - t0}))
"""


def make_tree(root: str, n: int, seed: int = 0) -> dict[str, int]:
    """Write ``n`` embedding files in 50 folders, cycling through the layouts people have:
    A1111 .pt, kohya .pt (fp16), kohya .safetensors, diffusers .safetensors and .bin, SDXL multi
    .safetensors; 1 to 16 vectors each."""
    import random

    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    rnd = random.Random(seed)
    kinds = ("a1111.pt", "kohya.pt", "kohya.safetensors", "diffusers.safetensors", "diffusers.bin", "multi.safetensors")
    counts = dict.fromkeys(kinds, 0)
    for i in range(n):
        folder = os.path.join(root, f"set{i % 50:02d}")
        os.makedirs(folder, exist_ok=True)
        kind = kinds[i % len(kinds)]
        counts[kind] += 1
        nv = rnd.choice((1, 2, 4, 8, 16))
        stem = os.path.join(folder, f"emb{i:05d}")
        if kind == "a1111.pt":
            t = torch.randn(nv, 768, generator=g)
            torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": t}, "name": f"emb{i:05d}", "step": 1000,
                        "sd_checkpoint": "7ab762a7", "sd_checkpoint_name": "model"}, stem + ".pt")
        elif kind == "kohya.pt":
            torch.save({"emb_params": torch.randn(nv, 768, generator=g).half()}, stem + ".pt")
        elif kind == "kohya.safetensors":
            save_file({"emb_params": torch.randn(nv, 768, generator=g)}, stem + ".safetensors")
        elif kind == "diffusers.safetensors":
            save_file({f"<tok{i}>": torch.randn(nv, 768, generator=g)}, stem + ".safetensors", metadata={"format": "pt"})
        elif kind == "diffusers.bin":
            torch.save({f"<tok{i}>": torch.randn(nv, 768, generator=g)}, stem + ".bin")
        else:
            save_file({"clip_l": torch.randn(nv, 768, generator=g), "clip_g": torch.randn(nv, 1280, generator=g)}, stem + ".safetensors")
    return counts


def timed(cmd: list[str]) -> tuple[float, str]:
    """Run a command; returns its wall time and stdout. Its CPU time (user + system, children
    included) is added to CPU[cmd kind], which is steadier than wall time on a busy machine."""
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr}")
    return wall, done.stdout


def main() -> None:
    import installed

    installed.compile_embkit()  # as pip does at install: processes read bytecode, not source
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is reported")
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="embkit-bench-") as tmp:
        tree = os.path.join(tmp, "embeddings")
        t = time.perf_counter()
        counts = make_tree(tree, args.files)
        print(f"generated {args.files} files in {time.perf_counter() - t:.1f} s: {counts}")
        scan = [sys.executable, "-m", "embkit", "library", "scan", "--json", tree]
        if args.jobs:
            scan[5:5] = ["--jobs", str(args.jobs)]

        torch_runs, cold, warm, floor = [], [], [], []
        for r in range(args.repeat):
            wall, out = timed([sys.executable, "-c", TORCH_LOOP, tree])
            res = json.loads(out)
            torch_runs.append((res["loop_s"], wall, LAST_CPU[0]))
            wall, out = timed([sys.executable, "-c", FLOOR, tree])
            floor.append((wall, json.loads(out)["inside_s"]))
            db = os.path.join(tmp, f"cold{r}.sqlite")
            wall, out = timed(scan[:4] + ["--db", db] + scan[4:])
            rep = json.loads(out)
            assert rep["added"] == args.files and not rep["errors"], rep
            cold.append((wall, rep["seconds"], LAST_CPU[0]))
            wall, out = timed(scan[:4] + ["--db", db] + scan[4:])
            rep = json.loads(out)
            assert rep["unchanged"] == args.files, rep
            warm.append((wall, rep["seconds"], LAST_CPU[0]))

        n = args.files
        loop_s = min(x[0] for x in torch_runs)
        loop_proc = min(x[1] for x in torch_runs)
        cold_proc = min(x[0] for x in cold)
        cold_in = min(x[1] for x in cold)
        warm_proc = min(x[0] for x in warm)
        warm_in = min(x[1] for x in warm)
        floor_proc = min(x[0] for x in floor)
        floor_in = min(x[1] for x in floor)
        print(f"\n{'measurement':52} {'seconds':>8} {'files/s':>10}")
        rows = [
            ("torch loop (load each file; torch already imported)", loop_s),
            ("torch loop process (start + import torch + loop)", loop_proc),
            ("embkit cold scan, whole process", cold_proc),
            ("embkit cold scan, inside the process", cold_in),
            ("embkit warm rescan, whole process", warm_proc),
            ("embkit warm rescan, inside the process", warm_in),
            ("floor: read + SHA-256 + AutoV3 only, whole process", floor_proc),
            ("floor: read + SHA-256 + AutoV3 only, inside", floor_in),
        ]
        for label, s in rows:
            print(f"{label:52} {s:8.3f} {n / s:10,.0f}")
        print("\nratios (same run, same files), against the torch loop alone / the torch loop process:")
        for label, proc, inside in (("cold scan", cold_proc, cold_in), ("warm rescan", warm_proc, warm_in), ("floor", floor_proc, floor_in)):
            print(f"  {label:12} whole process {loop_s / proc:6.2f}x / {loop_proc / proc:6.2f}x    inside its process {loop_s / inside:6.2f}x (vs the loop alone)")
        print("  (the floor's ratios bound what any Python scan producing these hashes can reach)")
        print("\nCPU seconds (user + system, all processes; steadier than wall time when the machine is shared):")
        print(f"  torch loop process {min(x[2] for x in torch_runs):.2f}, embkit cold scan {min(x[2] for x in cold):.2f}, warm rescan {min(x[2] for x in warm):.2f}")
        print("\ntargets (2 cores):")
        checks = [
            ("cold >= 4,000 files/s incl. process start", n / cold_proc >= 4000),
            ("cold >= 5x the torch loop (loop alone)", loop_s / cold_proc >= 5),
            ("cold >= 5x the torch loop (both whole processes)", loop_proc / cold_proc >= 5),
            ("warm >= 20,000 files/s incl. process start", n / warm_proc >= 20000),
            ("warm >= 5x the torch loop (both whole processes)", loop_proc / warm_proc >= 5),
        ]
        for label, ok in checks:
            print(f"  [{'met' if ok else 'MISSED'}] {label}")
        print(f"\ncpus available: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
        if not all(ok for _label, ok in checks):
            sys.exit(1)  # run_all.py reports it as missed


if __name__ == "__main__":
    main()

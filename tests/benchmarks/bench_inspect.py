"""Benchmark: `embkit inspect FILE.pt --json` as a whole process vs torch.load in a fresh process.

What a user would otherwise do to look inside a .pt file is start Python, import torch and load it.
Both are timed in the same run, as whole processes (start-up included), median of N runs.
Target: embkit at least 8x faster, well under half a second per call.

    python tests/benchmarks/bench_inspect.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return statistics.median(times)


def main() -> int:
    import installed

    installed.compile_embkit()  # as pip does at install: processes read bytecode, not source
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    import makers as mk

    with tempfile.TemporaryDirectory() as tmp:
        path = mk.a1111_pt(Path(tmp) / "bench-style.pt", mk.vectors(8, 768))
        # warm the OS file cache and Python's bytecode caches for both sides
        timed([sys.executable, "-m", "embkit", "inspect", str(path), "--json"], 1)
        load = f"import torch; torch.load({str(path)!r}, weights_only=True, map_location='cpu')"
        timed([sys.executable, "-c", load], 1)
        emb = timed([sys.executable, "-m", "embkit", "inspect", str(path), "--json"], args.runs)
        ref = timed([sys.executable, "-c", load], args.runs)
    ratio = ref / emb
    print(f"embkit inspect --json (process): {emb * 1000:.0f} ms (median of {args.runs})")
    print(f"python -c 'import torch; torch.load(...)': {ref * 1000:.0f} ms (median of {args.runs})")
    print(f"ratio: embkit is {ratio:.1f}x faster (target >= 8x, < 500 ms)")
    return 0 if ratio >= 8 and emb < 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())

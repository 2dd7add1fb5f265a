"""Run every benchmark in this folder, one process each, and print their ratios.

    python tests/benchmarks/run_all.py            # all of them
    python tests/benchmarks/run_all.py inspect    # only bench_inspect.py

Each benchmark measures embkit against the tool a user would otherwise use, in the same run, and
exits non-zero when it misses its target. gpu_render.py is not run here (it needs CUDA);
bench_previews.py runs its CPU mode here (its ``--device cuda`` mode is the GPU target).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    benches = sorted(HERE.glob("bench_*.py"))
    if argv:
        benches = [b for b in benches if any(a in b.stem for a in argv)]
    failed = []
    for bench in benches:
        print(f"== {bench.stem} ==", flush=True)
        code = subprocess.call([sys.executable, str(bench)])
        if code != 0:
            failed.append(bench.stem)
        print(flush=True)
    print("all targets met" if not failed else f"targets missed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A long fuzzing campaign over every seed, without pytest or hypothesis (a plain seeded RNG).

    EMBKIT_CORPUS=/path/to/corpus python tests/fuzz/campaign.py --examples 200000 --seed 1

Each case picks a seed file, 1-4 mutations, and whether to mutate the raw bytes or the inner payload
(pickle in a zip, safetensors header, card JSON, card pixels), then runs :func:`fuzz.mutate.check`.
A crash (any exception but EmbkitError) or a hang is saved under ``--out`` (default
``fuzz-crashes/``) as the file plus a ``.txt`` traceback, and the campaign goes on. Prints cases
tried, outcomes by error code, crashes, and cases per second.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.mutate import KINDS, all_seeds, apply, check  # noqa: E402


def draw_ops(rng: random.Random) -> list[tuple[str, int, int, int]]:
    return [(rng.choice(KINDS), rng.getrandbits(31), rng.getrandbits(31), rng.getrandbits(8)) for _ in range(rng.randint(1, 4))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("fuzz-crashes"))
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--memory-mb", type=int, default=1024,
                    help="RLIMIT_DATA for this process: an input that makes embkit allocate past it raises MemoryError, a finding")
    args = ap.parse_args(argv)
    if args.memory_mb:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (args.memory_mb * 1024 * 1024, resource.RLIM_INFINITY))
    seeds = all_seeds(args.corpus)
    rng = random.Random(args.seed)
    outcomes: collections.Counter[str] = collections.Counter()
    crashes = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.examples):
            seed = rng.choice(seeds)
            data = apply(seed, draw_ops(rng), inner=rng.random() < 0.6)
            try:
                outcomes[check(data, Path(tmp) / f"case{seed.ext}")] += 1
            except Exception as exc:  # noqa: BLE001 - every non-embkit exception is a finding
                crashes += 1
                args.out.mkdir(parents=True, exist_ok=True)
                stem = args.out / f"crash-{n}-{type(exc).__name__}"
                stem.with_suffix(seed.ext).write_bytes(data)
                stem.with_suffix(".txt").write_text(f"seed {seed.name}\n" + traceback.format_exc())
                print(f"CRASH {n} on {seed.name}: {type(exc).__name__}: {exc}", flush=True)
            if (n + 1) % 10_000 == 0:
                print(f"{n + 1} cases, {crashes} crashes, {(n + 1) / (time.perf_counter() - start):.0f}/s", flush=True)
    elapsed = time.perf_counter() - start
    print(f"cases tried: {args.examples}  crashes: {crashes}  seeds: {len(seeds)}  {args.examples / elapsed:.0f} cases/s")
    for code, count in outcomes.most_common():
        print(f"  {code:16} {count}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())

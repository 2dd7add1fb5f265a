"""Safety benchmark: embkit against the tools a user would otherwise reach for.

    EMBKIT_CORPUS=/path/to/corpus python tests/benchmarks/bench_safety.py

1. Reading a real embedding: ``embkit.read`` (allow-list unpickler, no torch) against
   ``torch.load(weights_only=True)`` (torch's own restricted unpickler), both warm, same file.
2. Scanning: ``embkit.scan.scan_file`` against ``picklescan`` (if installed), on the corpus and on
   the 60 hand-built malicious files: time per file, and how many malicious files each flags.
3. Fuzz throughput: cases per second of ``tests/fuzz/campaign.py``'s oracle.
"""

from __future__ import annotations

import io
import os
import random
import sys
import tempfile
import time

from timing import best
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fuzz.malicious import CASES, Canary  # noqa: E402




def main() -> None:
    import embkit
    from embkit.scan import scan_file

    corpus = Path(os.environ.get("EMBKIT_CORPUS", HERE.parent.parent.parent / "shared" / "corpus"))
    pt = corpus / "EasyNegative.pt"
    print(f"# safety benchmark ({sys.version.split()[0]}, {os.cpu_count()} CPUs)")

    # 1. read
    e_read = best(lambda: embkit.read(pt), number=20)
    try:
        import torch

        data = pt.read_bytes()
        t_read = best(lambda: torch.load(io.BytesIO(data), weights_only=True), number=20)
        print(f"read {pt.name}: embkit {e_read * 1e3:.2f} ms, torch.load(weights_only) {t_read * 1e3:.2f} ms, ratio {e_read / t_read:.2f}x")
    except ImportError:
        print(f"read {pt.name}: embkit {e_read * 1e3:.2f} ms (torch not installed)")

    # 2. scan
    tmp = Path(tempfile.mkdtemp(prefix="embkit-bench-"))
    canary = Canary(str(tmp / "c.created"), str(tmp / "c.keep"))
    evil = []
    for n, case in enumerate(CASES):
        path = tmp / f"{n}-{case.filename}"
        path.write_bytes(case.build(canary))
        evil.append(path)
    real = sorted(p for p in corpus.rglob("*") if p.suffix in (".pt", ".bin"))
    e_scan = best(lambda: [scan_file(p) for p in real], number=5) / len(real)
    embkit_flags = sum(scan_file(p).verdict != "safe" for p in evil)
    refused = 0
    for p in evil:
        try:
            embkit.read(p)
        except embkit.EmbkitError:
            refused += 1
    print(f"embkit: refuses {refused}/{len(evil)} malicious files on read; scan flags {embkit_flags}/{len(evil)} (unsafe or unknown)")
    try:
        from picklescan.scanner import scan_file_path

        p_scan = best(lambda: [scan_file_path(str(p)) for p in real], number=5) / len(real)

        def flagged(p: Path) -> bool:
            res = scan_file_path(str(p))
            return bool(res.issues_count or res.infected_files or res.scan_err)

        ps_flags = sum(flagged(p) for p in evil)
        missed = [CASES[n].id for n, p in enumerate(evil) if not flagged(p)]
        print(f"scan per torch file: embkit {e_scan * 1e3:.2f} ms, picklescan {p_scan * 1e3:.2f} ms, ratio {e_scan / p_scan:.2f}x")
        from importlib.metadata import version

        print(f"picklescan {version('picklescan')} flags {ps_flags}/{len(evil)}; it passes: {'; '.join(missed) or 'none'}")
    except ImportError:
        print(f"scan per torch file: embkit {e_scan * 1e3:.2f} ms (picklescan not installed)")

    # 3. fuzz throughput
    from fuzz.mutate import KINDS, all_seeds, apply, check

    seeds = all_seeds(corpus)
    rng = random.Random(0)
    n = 1000
    t0 = time.perf_counter()
    for _ in range(n):
        seed = rng.choice(seeds)
        ops = [(rng.choice(KINDS), rng.getrandbits(31), rng.getrandbits(31), rng.getrandbits(8)) for _ in range(rng.randint(1, 4))]
        check(apply(seed, ops, rng.random() < 0.6), tmp / f"f{seed.ext}")
    rate = n / (time.perf_counter() - t0)
    print(f"fuzz oracle: {rate:.0f} cases/s over {len(seeds)} seeds (read_all + probe + scan per case)")


if __name__ == "__main__":
    main()

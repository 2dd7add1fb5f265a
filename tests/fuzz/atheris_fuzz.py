"""Coverage-guided fuzzing with atheris (libFuzzer), optional: ``pip install atheris``.

    EMBKIT_CORPUS=/path/to/corpus python tests/fuzz/atheris_fuzz.py -atheris_runs=1000000 -max_len=65536

The first byte of each input picks a seed file (the same seeds as the pytest run); the rest is
libFuzzer's own data, which replaces a slice of the seed's inner payload (or raw bytes) so the
fuzzer can steer into the unpickler, the safetensors header and the card JSON. Crashes (any exception
but EmbkitError) and hangs are reported by libFuzzer and saved as ``crash-*`` files; replay one with
``python tests/fuzz/atheris_fuzz.py crash-<hash>``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atheris  # noqa: E402

with atheris.instrument_imports():
    import embkit  # noqa: F401
    from embkit.formats import imagecard, safetensors_file, torchfile  # noqa: F401
    from embkit import scan  # noqa: F401

from fuzz.mutate import all_seeds, check  # noqa: E402

SEEDS = all_seeds()
TMP = Path(tempfile.mkdtemp(prefix="embkit-atheris-"))


def one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    seed = SEEDS[data[0] % len(SEEDS)]
    target = seed.inner if (data[1] & 1 and seed.inner is not None) else seed.data
    at = int.from_bytes(data[1:3], "little") % (len(target) + 1)
    mutated = target[:at] + data[3:] + target[at + len(data) - 3 :]
    if data[1] & 1 and seed.rebuild is not None:
        mutated = seed.rebuild(mutated)
    check(mutated, TMP / f"case{seed.ext}")


if __name__ == "__main__":
    import os
    import resource

    # EMBKIT_FUZZ_MEMORY_MB: an input that makes embkit allocate past it raises MemoryError, a
    # crash. Off by default: atheris itself grows by tens of MB per thousand runs, so a limit set
    # low enough to catch a 1 GB allocation ends long runs with false alarms (replay those).
    limit_mb = int(os.environ.get("EMBKIT_FUZZ_MEMORY_MB", "0"))
    if limit_mb:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_mb * 1024 * 1024, resource.RLIM_INFINITY))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()

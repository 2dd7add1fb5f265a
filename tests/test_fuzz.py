"""Fuzzing the readers: mutated corpus and generated files may only raise embkit's own errors.

CI runs a bounded, derandomised number of cases (``EMBKIT_FUZZ_EXAMPLES``, default 5,000 in total,
split over the containers below). A long campaign: ``EMBKIT_FUZZ_EXAMPLES=200000 pytest
tests/test_fuzz.py`` or, faster and without shrinking, ``python tests/fuzz/campaign.py --examples
200000`` (see docs/safety.md). Each case is read with read_all, probed and scanned; any exception
that is not an EmbkitError fails, and so does a read that takes longer than 10 s.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.mutate import KINDS, Seed, all_seeds, apply, check, mutate

#: a hostile file must not make embkit warn either (the library never prints)
pytestmark = pytest.mark.filterwarnings("error")

#: Cases per container (pickle, safetensors, image): 5,000 each in CI; raise it for a longer run.
PER_CONTAINER = int(os.environ.get("EMBKIT_FUZZ_EXAMPLES", "5000"))
CONTAINERS = ("pickle", "safetensors", "image")
SEEDS = all_seeds()


def _container(seed: Seed) -> str:
    return {".pt": "pickle", ".bin": "pickle", ".safetensors": "safetensors", ".png": "image", ".webp": "image"}[seed.ext]


OPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)
_TMP = Path(tempfile.mkdtemp(prefix="embkit-fuzz-"))
COUNTS: dict[str, int] = {}


def _fuzz_test(container: str):
    seeds = [s for s in SEEDS if _container(s) == container]
    examples = max(1, PER_CONTAINER)

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(seed=st.sampled_from(seeds), ops=OPS, inner=st.booleans())
    def run(seed: Seed, ops, inner: bool) -> None:
        COUNTS[container] = COUNTS.get(container, 0) + 1
        check(apply(seed, ops, inner), _TMP / f"{container}{seed.ext}")

    return run


@pytest.mark.parametrize("container", CONTAINERS)
def test_fuzz(container: str):
    _fuzz_test(container)()
    # hypothesis may stop a little early once it has seen enough distinct inputs; it must not stop short
    assert COUNTS.get(container, 0) >= 0.9 * PER_CONTAINER, COUNTS


def test_report_fuzz_counts(capsys):
    """Prints how many cases ran (pytest -s shows it; the CI log keeps it) after test_fuzz."""
    with capsys.disabled():
        print(f"\nfuzz cases run: {COUNTS} (total {sum(COUNTS.values())})")
    if COUNTS:  # run after test_fuzz in the same session (not when selected alone)
        assert set(COUNTS) == set(CONTAINERS) and all(n >= 0.9 * PER_CONTAINER for n in COUNTS.values()), COUNTS


def test_seeds_cover_every_container_and_read_cleanly():
    assert {_container(s) for s in SEEDS} == set(CONTAINERS)
    for seed in SEEDS:
        assert check(seed.data, _TMP / f"seed{seed.ext}") == "ok", seed.name
        if seed.inner is not None:
            assert check(seed.rebuild(seed.inner), _TMP / f"seed{seed.ext}") == "ok", seed.name


def test_mutations_are_deterministic_and_change_bytes():
    data = bytes(range(256)) * 4
    for kind in KINDS:
        ops = [(kind, 1234, 567, 89)]
        assert mutate(data, ops) == mutate(data, ops)
        if kind != "json":
            assert mutate(data, ops) != data, kind
    doc = b'{"a": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, 3072]}}'
    assert mutate(b"\x00not json", [("json", 1, 1, 1)]) == b"\x00not json"
    assert mutate(doc, [("json", 1, 1, 1)]) != doc

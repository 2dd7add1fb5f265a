"""Shared test fixtures: the real-world corpus (through EMBKIT_CORPUS) and small helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path | None:
    """The corpus folder named by EMBKIT_CORPUS, or None when it is not set."""
    value = os.environ.get("EMBKIT_CORPUS")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def corpus() -> Path:
    """Path of ../shared/corpus. Skips locally when EMBKIT_CORPUS is unset; CI always sets it,
    and there a missing folder is a failure, not a skip."""
    path = corpus_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("EMBKIT_CORPUS is not set in CI")
        pytest.skip("EMBKIT_CORPUS is not set")
    if not path.is_dir():
        pytest.fail(f"EMBKIT_CORPUS={path} is not a folder")
    return path


def run_embkit(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m embkit ARGS`` in a fresh process; returns the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "embkit", *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout
    )

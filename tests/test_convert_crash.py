"""A converting process killed with SIGKILL mid-batch leaves every target complete or absent,
and running the same command again finishes the batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import embkit
from embkit import Embedding
from embkit.atomic import is_temp

N = 400

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")


def source(i: int) -> Embedding:
    rng = np.random.default_rng(i)
    return Embedding(f"e{i:04d}", {"clip_l": rng.standard_normal((8, 768)).astype(np.float32)}, metadata={"step": i})


def _sources(tmp_path) -> tuple:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(N):
        embkit.write(source(i), src / f"e{i:04d}.pt")
    return src, out


def _wait_for_outputs(proc, out, suffix: str, pause: float) -> None:
    """Until the batch has written a few targets (or ended, or a minute passed)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and sum(1 for n in os.listdir(out) if n.endswith(suffix)) >= 5:
            return
        time.sleep(pause)


def test_sigkill_mid_batch(tmp_path):
    src, out = _sources(tmp_path)
    cmd = [sys.executable, "-m", "embkit", "convert", str(src), "-o", str(out), "--to", "kohya", "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_outputs(proc, out, ".safetensors", 0.002)
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker processes, mid-write
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.2)  # orphaned workers, if any, are in the same group and dead
    names = os.listdir(out)
    targets = [n for n in names if not is_temp(n)]
    print("at kill:", len(targets), "targets,", len(names) - len(targets), "temporaries")
    assert 0 < len(targets) < N, "the kill must land mid-batch"
    for name in targets:
        i = int(name[1:5])
        back = embkit.read(out / name)  # complete: parses, and holds exactly the source's vectors
        assert back.same_vectors(source(i)) and back.metadata["step"] == i
    assert all(n.startswith(".") for n in names if is_temp(n))  # leftovers are hidden temporaries only

    rerun = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    finished = sorted(n for n in os.listdir(out) if not is_temp(n))
    assert finished == [f"e{i:04d}.safetensors" for i in range(N)]
    for i in (0, N // 2, N - 1):
        assert embkit.read(out / f"e{i:04d}.safetensors").same_vectors(source(i))


def test_ctrl_c_stops_promptly_and_leaves_whole_files(tmp_path):
    # Ctrl-C (SIGINT to the process): exit 130 at once, "interrupted" on stderr, workers stop after
    # the file at hand and commit, so every target is whole and no temporary is left
    src, out = _sources(tmp_path)
    cmd = [sys.executable, "-m", "embkit", "convert", str(src), "-o", str(out), "--to", "a1111-image", "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_outputs(proc, out, ".png", 0.01)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the signal arrived")
    assert proc.returncode == 130 and "interrupted" in err
    assert time.monotonic() - sent < 5
    names = os.listdir(out)
    assert not [n for n in names if is_temp(n)]
    assert len(names) < N
    for name in names:
        assert embkit.read(out / name).vectors["clip_l"].shape == (8, 768)

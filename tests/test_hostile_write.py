"""Never losing a user's file: failed, refused and interrupted writes leave the old target intact
and no temporary files behind (except the one documented case: a process killed outright).

Failures are real: a file-size limit (RLIMIT_FSIZE) makes the disk refuse the bytes, a chunk source
raises or is interrupted, a process is SIGKILLed mid-write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import embkit
from embkit.atomic import is_temp, write_bytes

from conftest import run_embkit

OLD = b"the user's precious file\n" * 10


def _emb(n: int = 4, name: str = "thing") -> embkit.Embedding:
    vec = (np.random.default_rng(0).standard_normal((n, 768)) * 0.02).astype(np.float32)
    return embkit.Embedding(name=name, vectors={"clip_l": vec})


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if is_temp(p.name))


def test_existing_target_is_not_replaced_without_overwrite(tmp_path: Path):
    target = tmp_path / "thing.safetensors"
    target.write_bytes(OLD)
    with pytest.raises(embkit.TargetExistsError):
        embkit.write(_emb(), target)
    assert target.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_disk_refusing_bytes_keeps_the_old_file(tmp_path: Path):
    """A real EFBIG from the kernel (file-size limit) in the middle of an overwrite."""
    target = tmp_path / "thing.pt"
    target.write_bytes(OLD)
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np, embkit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        emb = embkit.Embedding(name="big", vectors={{"clip_l": np.ones((64, 768), np.float32)}})
        try:
            embkit.write(emb, {str(target)!r}, overwrite=True)
        except embkit.WriteError as exc:
            print("refused", exc.code)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "refused write-failed", proc.stdout + proc.stderr
    assert target.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failing_chunk_source_keeps_the_old_file(tmp_path: Path, error: BaseException):
    target = tmp_path / "thing.bin"
    target.write_bytes(OLD)

    def chunks():
        yield b"new bytes, first half"
        raise error

    with pytest.raises((embkit.WriteError, KeyboardInterrupt)):
        write_bytes(target, chunks(), overwrite=True)
    assert target.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_strict_loss_writes_nothing(tmp_path: Path):
    emb = embkit.Embedding(name="two", vectors={"clip_l": np.zeros((1, 768), np.float32), "clip_g": np.zeros((1, 1280), np.float32)})
    target = tmp_path / "two.pt"
    with pytest.raises(embkit.LossError):
        embkit.write(emb, target, "a1111", strict=True)
    assert list(tmp_path.iterdir()) == []


def test_pair_with_one_existing_half_creates_nothing(tmp_path: Path):
    emb = embkit.Embedding(name="xl", vectors={"clip_l": np.zeros((1, 768), np.float32), "clip_g": np.zeros((1, 1280), np.float32)})
    second = tmp_path / "learned_embeds_2.safetensors"
    second.write_bytes(OLD)
    with pytest.raises(embkit.TargetExistsError):
        embkit.write(emb, tmp_path / "learned_embeds.safetensors", "diffusers", sdxl_two_files=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["learned_embeds_2.safetensors"]
    assert second.read_bytes() == OLD


def test_overwrite_that_succeeds_replaces_whole(tmp_path: Path):
    target = tmp_path / "thing.safetensors"
    target.write_bytes(OLD)
    embkit.write(_emb(3), target, overwrite=True)
    assert embkit.read(target).vectors["clip_l"].shape == (3, 768)
    assert _leftovers(tmp_path) == []


def test_killed_writer_leaves_old_target_and_only_a_hidden_temp(tmp_path: Path):
    """SIGKILL in the middle of a write: the target keeps its old bytes; the only trace is a hidden
    ``.name.embkit-tmp-*`` file, which folder walks (inspect, library) skip."""
    target = tmp_path / "thing.pt"
    target.write_bytes(OLD)
    code = textwrap.dedent(
        f"""
        import time
        from embkit.atomic import write_bytes
        def chunks():
            yield b"half of the new file"
            time.sleep(60)
        write_bytes({str(target)!r}, chunks(), overwrite=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 30
        while not _leftovers(tmp_path) and time.time() < deadline:
            time.sleep(0.05)
        assert _leftovers(tmp_path), "the writer never started"
    finally:
        proc.kill()
        proc.wait()
    assert target.read_bytes() == OLD
    temps = _leftovers(tmp_path)
    assert len(temps) == 1 and temps[0].startswith(".thing.pt")
    for command in ("scan", "inspect"):
        listed = run_embkit(command, "--json", str(tmp_path))
        assert ".thing.pt" not in listed.stdout and "thing.pt" in listed.stdout, command

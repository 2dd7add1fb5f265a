"""Errors that fit Python: every place that meets a missing input raises an error that is both an
``embkit.EmbkitError`` and a ``FileNotFoundError``; a refused read or write is also a
``PermissionError``. Codes and exit statuses stay those of the embkit parent."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

import embkit
from embkit import report, scan
from embkit.convert import plan_jobs


def _missing(tmp_path):
    return os.fspath(tmp_path / "gone.safetensors")


@pytest.mark.parametrize("call", [
    lambda p: embkit.read(p),
    lambda p: embkit.read_all(p),
    lambda p: embkit.probe(p),
    lambda p: scan.scan_file(p),
    lambda p: report.describe_file(p),
])
def test_a_missing_input_is_a_file_not_found_error(tmp_path, call):
    path = _missing(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        call(path)
    exc = info.value
    assert isinstance(exc, embkit.EmbkitError) and isinstance(exc, embkit.MissingFileError)
    assert (exc.errno, exc.filename, exc.code, exc.exit_code) == (errno.ENOENT, path, "error", 1)
    assert str(exc) == f"{path}: no such file"


def test_walks_and_batches_report_a_missing_input_as_file_not_found(tmp_path):
    path = _missing(tmp_path)
    [(entry, exc)] = list(report.iter_reports([path]))
    assert isinstance(exc, FileNotFoundError) and entry == {"path": path, "error": {"code": "error", "message": f"{path}: no such file"}}
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        plan_jobs((path,), os.fspath(tmp_path / "out"))


def test_library_scan_of_a_missing_folder_is_a_library_error_and_file_not_found(tmp_path):
    with embkit.Library(tmp_path / "lib.db") as lib:
        with pytest.raises(FileNotFoundError) as info:
            lib.scan([tmp_path / "no-such-folder"])
    # a missing input exits 1 in every command (issue 19)
    assert isinstance(info.value, embkit.LibraryError) and info.value.exit_code == 1 == embkit.MissingFileError.exit_code


def test_the_cli_keeps_code_and_exit_status_for_a_missing_input(tmp_path):
    path = _missing(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "embkit", "inspect", path, "--json"], capture_output=True, text=True)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc[0]["error"] == {"code": "error", "message": f"{path}: no such file"}


def _deny_open(monkeypatch, path):
    """A refused read: chmod 000 where that is enforced; root reads anything, so there the open
    itself is refused the way the kernel refuses it (the errno, not embkit's mapping, is faked)."""
    if os.geteuid() != 0:
        os.chmod(path, 0)
        return
    real_open = os.open

    def refusing_open(p, *args, **kwargs):
        if os.fspath(p) == os.fspath(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(p))
        return real_open(p, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


def test_a_refused_read_is_a_permission_error(tmp_path, monkeypatch):
    path = tmp_path / "secret.safetensors"
    save_file({"emb_params": np.zeros((1, 768), np.float32)}, path)
    _deny_open(monkeypatch, path)
    with pytest.raises(PermissionError) as info:
        embkit.read(path)
    exc = info.value
    assert isinstance(exc, embkit.PermissionDeniedError) and isinstance(exc, embkit.EmbkitError)
    assert (exc.errno, exc.filename, exc.code, exc.exit_code) == (errno.EACCES, os.fspath(path), "error", 1)


def test_a_refused_write_is_a_write_error_and_a_permission_error(tmp_path, monkeypatch):
    emb = embkit.Embedding(name="x", vectors={"clip_l": np.zeros((1, 768), np.float32)})
    target = tmp_path / "x.safetensors"
    if os.geteuid() != 0:
        os.chmod(tmp_path, 0o500)
    else:
        real_open = os.open

        def refusing_open(p, flags, *args, **kwargs):
            if flags & os.O_CREAT and os.path.dirname(os.fspath(p)) == os.fspath(tmp_path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(p))
            return real_open(p, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    try:
        with pytest.raises(PermissionError) as info:
            embkit.write(emb, target)
    finally:
        os.chmod(tmp_path, 0o700)
    exc = info.value
    assert isinstance(exc, embkit.WriteError) and isinstance(exc, embkit.WritePermissionError)
    assert (exc.code, exc.exit_code) == ("write-failed", 9)
    assert not target.exists()


def test_push_of_a_missing_file_or_sheet_is_file_not_found(tmp_path):
    """push reads its inputs before contacting the Hub (a dry run contacts nothing)."""
    pytest.importorskip("huggingface_hub")
    from embkit import hub

    with pytest.raises(embkit.MissingFileError):
        hub.push(tmp_path / "gone.safetensors", "me/x", dry_run=True)
    src = tmp_path / "x.safetensors"
    save_file({"emb_params": np.zeros((1, 768), np.float32)}, src)
    with pytest.raises(FileNotFoundError) as info:
        hub.push(src, "me/x", sheet=tmp_path / "no-sheet.png", dry_run=True)
    assert isinstance(info.value, embkit.EmbkitError) and info.value.filename == str(tmp_path / "no-sheet.png")

"""The malicious-pickle suite: every case must be refused by read, probe, `embkit inspect` and
flagged by `embkit scan`, and its payload (create canary.created / delete canary.keep) never runs.

The cases are built byte by byte in tests/fuzz/malicious.py; see its docstring for their sources.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import embkit
from embkit.scan import scan_bytes, scan_file
from fuzz.malicious import CASES, Canary, Case
from fuzz.pickles import benign_legacy, benign_zip

from conftest import run_embkit


def _write(case: Case, folder: Path) -> tuple[Path, Canary]:
    folder.mkdir(parents=True, exist_ok=True)
    canary = Canary(created=str(folder / "canary.created"), keep=str(folder / "canary.keep"))
    Path(canary.keep).write_text("keep")
    path = folder / case.filename
    path.write_bytes(case.build(canary))
    return path, canary


def _untouched(canary: Canary) -> None:
    assert not Path(canary.created).exists(), "payload ran: canary.created exists"
    assert Path(canary.keep).read_text() == "keep", "payload ran: canary.keep was changed"


def test_suite_is_big_enough():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_read_and_probe_refuse(case: Case, tmp_path: Path):
    path, canary = _write(case, tmp_path)
    for fn in (embkit.read, embkit.read_all, embkit.probe):
        with pytest.raises(embkit.EmbkitError) as info:
            fn(path)
        assert info.value.code == case.expect, str(info.value)
        assert str(path) in str(info.value)  # the message names the file
        if case.expect == "unsafe-file":
            assert isinstance(info.value, embkit.UnsafeFileError)
    _untouched(canary)


def test_cli_inspect_refuses_every_case(tmp_path: Path):
    paths, canaries = [], []
    for n, case in enumerate(CASES):
        path, canary = _write(case, tmp_path / f"c{n}")
        paths.append(str(path))
        canaries.append(canary)
    proc = run_embkit("inspect", "--json", *paths)
    assert proc.returncode != 0
    entries = json.loads(proc.stdout)
    assert [e["path"] for e in entries] == paths
    for case, entry in zip(CASES, entries):
        assert entry["error"]["code"] == case.expect, (case.id, entry)
    assert CASES[0].expect == "unsafe-file" and proc.returncode == 5  # the first error's exit status
    for canary in canaries:
        _untouched(canary)


def test_scan_never_calls_a_case_safe_that_names_a_refused_global(tmp_path: Path):
    """The static scan flags every case whose pickle names something off the allow-list (the cases
    that only misuse allowed names are caught by the reader, and scan says so by listing them)."""
    for n, case in enumerate(CASES):
        path, canary = _write(case, tmp_path / f"c{n}")
        result = scan_file(path)
        if result.refused:
            assert result.verdict == "unsafe", case.id
        assert result.verdict in ("safe", "unsafe", "unknown")
        _untouched(canary)
    flagged = [c.id for n, c in enumerate(CASES) if scan_file(tmp_path / f"c{n}" / c.filename).verdict != "safe"]
    assert len(flagged) >= 35


def test_memo_confusion_resolves_to_the_real_global():
    case = next(c for c in CASES if c.id.startswith("memo confusion"))
    result = scan_bytes(case.build(Canary("/nonexistent/a", "/nonexistent/b")))
    assert result.verdict == "unsafe"
    assert "os.system" in result.refused
    # the decoy strings are not reported as the global
    assert "torch._utils._rebuild_tensor_v2" not in result.globals


def test_benign_files_still_read_after_poisoning_attempts(tmp_path: Path):
    """Regression: BUILD on allow-listed objects used to mutate them for the rest of the process."""
    for case in CASES:
        if case.id.startswith("BUILD"):
            path, _ = _write(case, tmp_path / "poison")
            with pytest.raises(embkit.EmbkitError):
                embkit.read(path)
    good = tmp_path / "good.pt"
    good.write_bytes(benign_zip())
    assert embkit.read(good).vectors["clip_l"].shape == (1, 768)
    from embkit.formats import pickle_globals

    assert pickle_globals.ALLOWED_GLOBALS[("torch", "FloatStorage")].dtype == "float32"
    assert not getattr(pickle_globals._rebuild_tensor_v2, "__dict__", {})


def test_rewritten_tensor_shape_is_refused_in_a_fresh_process(tmp_path: Path):
    """Regression: BUILD after _rebuild_tensor_v2 rewrote the checked strides and the read went out
    of bounds (the process died with SIGSEGV)."""
    case = next(c for c in CASES if c.id.startswith("BUILD rewrites a checked"))
    path, _ = _write(case, tmp_path)
    code = f"import embkit\ntry:\n embkit.read({str(path)!r})\nexcept embkit.UnsafeFileError:\n print('refused')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "refused", proc.stderr


def test_legacy_and_zip_benign_files_scan_safe(tmp_path: Path):
    for name, data in (("a.pt", benign_zip()), ("b.pt", benign_legacy())):
        (tmp_path / name).write_bytes(data)
        result = scan_file(tmp_path / name)
        assert result.verdict == "safe", result
        assert result.globals == ["torch._utils._rebuild_tensor_v2", "torch.FloatStorage", "collections.OrderedDict"]


def test_legacy_referenced_globals_walks_every_pickle(tmp_path: Path):
    """Regression: torchfile.referenced_globals looked only at the first pickle of a legacy stream
    (the magic number), so a payload in the object pickle went unreported."""

    case = next(c for c in CASES if c.id == "legacy stream, payload in the object pickle")
    assert "posix.system" in scan_bytes(case.build(Canary("/x/a", "/x/b")), "x.pt").globals

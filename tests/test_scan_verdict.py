"""One verdict: ``embkit scan`` says ``safe`` exactly when ``embkit.read`` accepts a file, and
``unsafe`` for any dangerous global anywhere in it (peer scanners' payload shapes: every protocol,
every stream, every member, numpy arrays, zips), naming the rule that fired.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import embkit
from embkit.scan import scan_file, scan_paths
from fuzz import containers, malicious
from fuzz.peers import PEERS, Peer

import makers
from conftest import run_embkit

NOT_READ = (".npy", ".npz", ".zip")  # files embkit reads no embedding from: the reader refuses them by format


def _read(path: Path) -> Exception | None:
    try:
        embkit.read_all(path)
    except embkit.EmbkitError as exc:
        return exc
    return None


@pytest.mark.parametrize("case", PEERS, ids=[p.id for p in PEERS])
def test_peer_payloads_are_unsafe_and_refused(case: Peer, tmp_path: Path):
    canary = tmp_path / "canary.created"
    path = tmp_path / case.filename
    path.write_bytes(case.build(str(canary)))
    result = scan_file(path)
    assert result.verdict == "unsafe", result.to_dict()
    if case.refused:
        assert case.refused in result.refused and "global" in result.rules, result.to_dict()
    else:
        assert "pickle-frame" in result.rules, result.to_dict()
    error = _read(path)
    assert error is not None
    if not case.filename.endswith(NOT_READ):
        assert isinstance(error, embkit.UnsafeFileError), str(error)
    assert not canary.exists()


def test_a_folder_scan_lists_numpy_arrays_zips_and_pickles_under_any_name(tmp_path: Path):
    by_id = {p.id: p for p in PEERS}
    for pid in ("numpy object array (.npy)", "numpy object array in an .npz", "zip member model/config.pkl (picklescan's committed samples)"):
        (tmp_path / by_id[pid].filename).write_bytes(by_id[pid].build(str(tmp_path / "c")))
    (tmp_path / "notes.txt").write_bytes(by_id["os.system protocol 2"].build(str(tmp_path / "c")))  # a pickle named .txt
    (tmp_path / "README.md").write_text("# not a pickle\n")
    results = {Path(r.path).name: r for r in scan_paths([tmp_path])}
    found = {name: r.verdict for name, r in results.items() if r.skipped is None}
    assert found == {"array.npy": "unsafe", "arrays.npz": "unsafe", "model.zip": "unsafe", "notes.txt": "unsafe"}
    # a text file that is no pickle is listed as skipped (the rule of every walk), never opened further
    assert (results["README.md"].verdict, results["README.md"].skipped) == ("unknown", "a text file")


def _suite_files(folder: Path) -> list[Path]:
    files = []
    for n, case in enumerate(malicious.CASES):
        sub = folder / f"m{n}"
        sub.mkdir()
        path = sub / case.filename
        path.write_bytes(case.build(malicious.Canary(str(sub / "c.created"), str(sub / "c.keep"))))
        files.append(path)
    for n, case in enumerate(containers.CASES):
        sub = folder / f"k{n}"
        sub.mkdir()
        path = sub / case.filename
        path.write_bytes(case.build(str(sub / "c.created")))
        files.append(path)
    return files


def test_scan_agrees_with_read_on_the_hostile_suites(tmp_path: Path):
    """Malicious and container suites: never safe; unsafe exactly when read refuses as unsafe."""
    for path in _suite_files(tmp_path):
        result, error = scan_file(path), _read(path)
        assert error is not None and result.verdict != "safe", path
        assert (result.verdict == "unsafe") == isinstance(error, embkit.UnsafeFileError), (path, result.to_dict(), str(error))
    assert not list(tmp_path.rglob("c.created"))


def test_scan_agrees_with_read_on_files_the_tools_write(tmp_path: Path):
    """The round-trip harness's sources (every layout, written as each tool writes it): read, and safe."""
    from test_roundtrip import make_sources

    for name, path in make_sources(tmp_path).items():
        files = [path] if path.is_file() else [p for p in path.iterdir() if p.name.startswith("learned_embeds")]
        for f in files:
            assert _read(f) is None, name
            assert scan_file(f).verdict == "safe", (name, scan_file(f).to_dict())


def test_scan_agrees_with_read_on_the_corpus(corpus: Path):
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".pt", ".bin", ".safetensors", ".png")):
        assert (scan_file(path).verdict == "safe") == (_read(path) is None), path


def test_cli_names_the_rules(tmp_path: Path):
    files = _suite_files(tmp_path)
    proc = run_embkit("scan", "--json", str(tmp_path))
    assert proc.returncode == 5
    entries = json.loads(proc.stdout)
    assert len(entries) == len(files)
    assert all(e["verdict"] != "safe" for e in entries)
    assert all(e["rules"] for e in entries if e["verdict"] == "unsafe")
    text = run_embkit("scan", str(files[0].parent)).stdout
    assert "unsafe" in text and "global" in text


def test_a_safe_file_reports_no_rule_and_no_error(tmp_path: Path):
    path = makers.kohya_file(tmp_path / "k.safetensors", makers.vectors(1, 768, seed=1))
    entry = scan_file(path).to_dict()
    assert entry["verdict"] == "safe" and entry["rules"] == [] and entry["read_error"] is None


def test_bytes_after_a_legacy_streams_storages_are_refused(tmp_path: Path):
    """torch stops after the last storage; a scanner reading on meets the pickle hidden there."""
    from fuzz.pickles import benign_legacy, call, g, pickle_of, s

    path = tmp_path / "legacy.pt"
    path.write_bytes(benign_legacy() + pickle_of(call(g("os", "system"), s("touch x"))))
    with pytest.raises(embkit.UnsafeFileError) as info:
        embkit.read(path)
    assert info.value.rule == "legacy-trailing-data" and "os.system" in str(info.value)
    assert scan_file(path).rules == ("legacy-trailing-data",)


def test_polyglot_zip_end_record_after_a_legacy_stream(tmp_path: Path):
    """zipfile.is_zipfile finds an end record in the last 64 KB: scanners that ask zipfile first read
    the (empty) archive and never the pickle stream in front."""
    import io
    import zipfile

    from fuzz.pickles import benign_legacy

    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    path = tmp_path / "legacy.pt"
    path.write_bytes(benign_legacy() + buf.getvalue())
    assert zipfile.is_zipfile(path)
    with pytest.raises(embkit.UnsafeFileError) as info:
        embkit.read(path)
    assert info.value.rule == "zip-polyglot"
    assert "zip-polyglot" in scan_file(path).rules


def test_a_polyglot_of_no_known_kind_is_described_in_plain_words(tmp_path):
    """Regression: the message said 'is a other file that also holds a zip end record'."""
    path = tmp_path / "blob.pt"
    path.write_bytes(b"not a pickle, not a zip" + b"PK\x05\x06" + b"\0" * 18)
    res = scan_file(str(path))
    text = " ".join(res.reasons)
    assert res.verdict == "unsafe" and "zip end record" in text, res
    assert "a other" not in text and "is no zip archive" in text


def test_a_torch_zip_with_data_appended_is_refused_without_corruption_noise(tmp_path):
    """Regression: each member named by a local header was walked as a pickle, the descriptor
    and the central directory with it: a torch file with 100 zero bytes appended got lines such as
    'archive/data/0 (local header): damaged opcodes', which read as corruption."""
    import torch

    path = tmp_path / "appended.pt"
    torch.save({"string_to_param": {"*": torch.zeros(2, 768)}, "name": "x"}, path)
    path.write_bytes(path.read_bytes() + b"\0" * 100)
    res = scan_file(str(path))
    assert res.verdict == "unsafe" and "zip-end-record" in res.rules
    assert not [r for r in res.reasons if "damaged" in r], res.reasons

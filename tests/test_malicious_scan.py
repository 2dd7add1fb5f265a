"""`embkit scan` and embkit.scan: globals found by walking opcodes, verdicts, exit statuses, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embkit.scan import SAFE, UNKNOWN, UNSAFE, scan_bytes, scan_file, scan_paths, walk_pickle
from fuzz.malicious import CASES, Canary
from fuzz.pickles import (
    MEMOIZE, REDUCE, STACK_GLOBAL, benign_legacy, benign_zip, binget, binput, call, dict_, g, kohya_body, pickle_of,
    s, sg, tensor, torch_zip, tup,
)

from conftest import run_embkit

CANARY = Canary("/nonexistent/canary.created", "/nonexistent/canary.keep")


def _case(prefix: str) -> bytes:
    return next(c for c in CASES if c.id.startswith(prefix)).build(CANARY)


def test_corpus_files_scan_safe(corpus: Path):
    results = {Path(r.path).name: r for r in scan_paths([corpus])}
    assert set(results) >= {"EasyNegative.pt", "bad-hands-5.pt", "learned_embeds.bin", "learned_embeds.safetensors", "test_embedding.png"}
    assert all(r.verdict == SAFE for r in results.values() if r.skipped is None)
    # the corpus's text files are listed as skipped (the rule of every walk), not scanned as embeddings
    assert {name for name, r in results.items() if r.skipped is not None} <= {"SOURCES.md", "token_identifier.txt", "type_of_concept.txt"}
    assert results["EasyNegative.pt"].globals == ["torch._utils._rebuild_tensor_v2", "torch.FloatStorage", "collections.OrderedDict"]
    assert results["learned_embeds.safetensors"].pickles == ()


def test_every_global_is_listed_with_its_opcode_and_offset():
    data = pickle_of(call(g("posix", "system"), s("x")) + sg("builtins", "eval") + MEMOIZE, protocol=4)
    scan = walk_pickle(data)
    assert [(x.name, x.opcode, x.allowed) for x in scan.globals] == [
        ("posix.system", "GLOBAL", False),
        ("builtins.eval", "STACK_GLOBAL", False),
    ]
    assert scan.globals[0].pos == 2 and data[scan.globals[0].pos : scan.globals[0].pos + 1] == b"c"


def test_stack_global_through_the_memo_resolves():
    body = s("posix") + binput(3) + s("system") + binput(7) + b"00" + binget(3) + binget(7) + STACK_GLOBAL
    assert walk_pickle(pickle_of(body, 4)).globals[0].name == "posix.system"


def test_memoize_index_counts_entries_like_the_unpickler():
    # BINPUT 5 then MEMOIZE stores at len(memo) == 1, not at 6
    body = s("a") + binput(5) + b"0" + s("os") + MEMOIZE + b"0" + s("system") + MEMOIZE + b"0" + binget(1) + binget(2) + STACK_GLOBAL
    assert walk_pickle(pickle_of(body, 4)).globals[0].name == "os.system"


def test_computed_name_is_unsafe():
    """A STACK_GLOBAL whose name is not a plain string cannot be named without running anything:
    no torch file needs one, so it is refused (as picklescan calls it dangerous)."""
    body = call(g("collections", "OrderedDict")) + s("x") + STACK_GLOBAL
    result = scan_bytes(torch_zip(pickle_of(body, 4)))
    assert result.verdict == UNSAFE and "<computed>" in result.refused
    assert any("not a plain string" in r for r in result.reasons)


def test_archive_tricks_are_unsafe_even_without_globals():
    result = scan_bytes(_case("path-traversal member"))
    assert result.verdict == UNSAFE and any("escapes the archive" in r for r in result.reasons)
    result = scan_bytes(_case("two data.pkl"))
    assert result.verdict == UNSAFE and "os.system" in result.refused


def test_legacy_stream_reports_each_pickle():
    result = scan_bytes(_case("legacy stream, payload in the sys-info"))
    assert result.verdict == UNSAFE
    where = {p.where: [x.name for x in p.globals] for p in result.pickles}
    assert where["sys info"] == ["builtins.exec"]
    assert [p.where for p in scan_bytes(benign_legacy()).pickles] == ["magic number", "protocol", "sys info", "object", "storage keys"]


def test_damaged_and_foreign_files_are_unknown(tmp_path: Path):
    assert scan_bytes(benign_zip()[:-30]).verdict == UNKNOWN
    assert scan_bytes(b"hello world").verdict == UNKNOWN
    assert scan_bytes(pickle_of(kohya_body())[:-9]).verdict == UNKNOWN
    assert scan_bytes(_case("extension-registry opcode")).verdict == UNKNOWN


def test_cli_text_and_exit_status(tmp_path: Path, corpus: Path):
    (tmp_path / "evil.pt").write_bytes(_case("memo confusion"))
    (tmp_path / "good.pt").write_bytes(benign_zip())
    proc = run_embkit("scan", str(tmp_path / "good.pt"), str(corpus / "EasyNegative.pt"))
    assert proc.returncode == 0, proc.stderr
    assert "safe" in proc.stdout and "torch._utils._rebuild_tensor_v2" in proc.stdout
    proc = run_embkit("scan", str(tmp_path))
    assert proc.returncode == 5
    assert "unsafe" in proc.stdout and "os.system" in proc.stdout and "refused" in proc.stdout


def test_cli_json_walks_folders_and_reports_unreadable(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "evil.bin").write_bytes(_case("payload in a .bin"))
    (tmp_path / "junk.pt").write_bytes(b"not a pickle at all")
    (tmp_path / "notes.txt").write_text("ignored by the walk")
    proc = run_embkit("scan", "--json", str(tmp_path), str(tmp_path / "missing.pt"))
    assert proc.returncode == 5
    entries = json.loads(proc.stdout)
    by_name = {Path(e["path"]).name: e for e in entries}
    assert set(by_name) == {"evil.bin", "junk.pt", "missing.pt", "notes.txt"}
    assert by_name["notes.txt"]["skipped"] == "a text file"  # listed as skipped, with the reason (issue 19)
    assert by_name["evil.bin"]["verdict"] == "unsafe" and by_name["evil.bin"]["refused"] == ["os.system"]
    assert by_name["evil.bin"]["pickles"][0]["globals"][0]["opcode"] == "GLOBAL"
    assert by_name["junk.pt"]["verdict"] == "unknown"
    assert by_name["missing.pt"]["error"]["code"] == "error"


def test_cli_unknown_exits_with_the_readers_code(tmp_path: Path):
    # the walk rule of every command (issue 19): the reader's error code (unknown-format, 4), not 1
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    assert run_embkit("scan", str(tmp_path / "junk.pt")).returncode == 4
    (tmp_path / "broken.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{not json")
    assert run_embkit("scan", str(tmp_path / "broken.safetensors")).returncode == 3
    assert run_embkit("scan", str(tmp_path / "junk.pt"), str(tmp_path / "broken.safetensors")).returncode == 1


@pytest.mark.parametrize("prefix", ["BUILD on an allowed global then a dotted name", "memo confusion", "call result POPped"])
def test_published_bypasses_are_unsafe(prefix: str):
    assert scan_bytes(_case(prefix)).verdict == UNSAFE


def test_scan_executes_nothing(tmp_path: Path):
    canary = Canary(str(tmp_path / "c.created"), str(tmp_path / "c.keep"))
    Path(canary.keep).write_text("keep")
    for n, case in enumerate(CASES):
        (tmp_path / f"{n}.pt").write_bytes(case.build(canary))
    results = [r for r in scan_paths([tmp_path]) if r.skipped is None or r.path.endswith(".pt")]
    assert len(results) == len(CASES)
    assert not Path(canary.created).exists() and Path(canary.keep).read_text() == "keep"


def test_allowed_names_used_as_the_reader_refuses_are_unsafe(tmp_path: Path):
    """Only allowed names, but given what the reader refuses: scan runs the reader, so the verdict
    is the reader's (it used to be "safe", a statement about imports only)."""
    import embkit

    body = g("collections", "OrderedDict") + tup(s("a"), s("b")) + REDUCE
    data = torch_zip(pickle_of(dict_((s("emb_params"), tensor()), (s("x"), body))))
    result = scan_bytes(data, "odd.pt")
    assert result.verdict == UNSAFE and result.rules == ("global-misuse",) and result.refused == []
    assert result.read_error["code"] == "unsafe-file"
    (tmp_path / "odd.pt").write_bytes(data)
    with pytest.raises(embkit.UnsafeFileError):
        embkit.read(tmp_path / "odd.pt")


def test_scan_reads_only_what_it_needs(tmp_path: Path):
    """A 3 GB (sparse) file is scanned without reading it: peak memory stays small."""
    import subprocess
    import sys

    big = tmp_path / "big.safetensors"
    with open(big, "wb") as fh:
        fh.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
        fh.truncate(3 * 1024**3)
    plain = tmp_path / "big.bin"
    with open(plain, "wb") as fh:
        fh.write(pickle_of(call(g("os", "system"), s("x"))))
        fh.truncate(3 * 1024**3)
    code = (
        "import sys, json; from embkit.scan import scan_file\n"
        "v = [scan_file(p).verdict for p in sys.argv[1:]]\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(json.dumps([v, int(hwm) // 1024]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(big), str(plain)], capture_output=True, text=True, timeout=60)
    verdicts, peak_mb = json.loads(proc.stdout)
    # a 3 GB safetensors file whose header covers none of its data is invalid (the safetensors
    # library says "incomplete metadata"): unknown, read from its header and its last bytes only
    assert verdicts == ["unknown", "unsafe"]
    assert peak_mb < 200

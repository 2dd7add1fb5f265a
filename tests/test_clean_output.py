"""Clean terminals (issue 21, "Clean output"): every string that came from a file or a database is
neutralised before it reaches a terminal, in tables, messages and progress bars; JSON stays exact.

Names, file names and refused global names hold OSC/CSI escapes (a title change, clear screen, an OSC 8
hyperlink), a bell and bidi overrides; every command that prints them is run in a fresh process and
its stdout and stderr must hold none of those characters raw, only their escaped forms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from conftest import run_embkit
from embkit.cli.output import clean, dumps, escape

TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J\x1b[H"
LINK = "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
BIDI = "\u202egpj.exe\u202c"
HOSTILE_NAME = f"neg{TITLE}{CLEAR}{LINK}{BIDI}[bold red]x[/]"
RAW = ("\x1b", "\x07", "\u202e", "\u202c", "\x9b")


def assert_clean(text: str, where: str) -> None:
    for ch in RAW:
        assert ch not in text, f"{where}: raw {ch!r} reached the terminal"


def _vec(n, width, seed=0):
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32) * 0.02


@pytest.fixture()
def hostile(tmp_path) -> Path:
    root = tmp_path / f"emb{BIDI}"
    root.mkdir()
    # an A1111 file whose stored name is hostile, under a hostile file name
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.from_numpy(_vec(2, 768))}, "name": HOSTILE_NAME,
                "step": 1, "sd_checkpoint": None, "sd_checkpoint_name": f"model{CLEAR}"}, root / f"evil{CLEAR}.pt")
    # a diffusers file keyed by the hostile name, with hostile metadata
    save_file({HOSTILE_NAME: _vec(1, 768, 1)}, str(root / f"tok{TITLE}.safetensors"), metadata={"format": "pt", "note": LINK})
    # a pickle that names a global whose module and name hold escapes (STACK_GLOBAL takes any text)
    module, name = f"os{CLEAR}".encode(), f"system{BIDI}".encode()
    (root / "global.pt").write_bytes(b"\x80\x04\x8c" + bytes([len(module)]) + module + b"\x8c" + bytes([len(name)]) + name + b"\x93)R.")
    return root


def run_clean(*args: str) -> str:
    done = run_embkit(*args)
    assert "Traceback" not in done.stderr, done.stderr
    assert_clean(done.stdout, f"{args[0]} stdout")
    assert_clean(done.stderr, f"{args[0]} stderr")
    return done.stdout + done.stderr


def test_the_function():
    shown = clean(HOSTILE_NAME)
    assert_clean(shown, "clean")
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown
    assert clean("Ünïcödé 名前 ✓") == "Ünïcödé 名前 ✓"  # printable text of any script is kept
    assert escape("[bold]x[/]") == "\\[bold]x\\[/]"
    # JSON is exact (a parser reads back the same string) and safe on a terminal
    text = dumps({"name": HOSTILE_NAME, "c1": "\x9b31m", "tag": "\U000e0041"})
    assert_clean(text, "dumps")
    assert json.loads(text) == {"name": HOSTILE_NAME, "c1": "\x9b31m", "tag": "\U000e0041"}


def test_inspect_verify_scan_convert_print_no_raw_escapes(hostile, tmp_path):
    out = run_clean("inspect", str(hostile))
    assert "\\x1b]0;pwned\\x07" in out and "\\u202e" in out
    run_clean("inspect", str(hostile), "-v")
    run_clean("inspect", str(hostile), "--summary")
    run_clean("verify", str(hostile))
    run_clean("verify", str(hostile), "--summary", "--host", "all")
    out = run_clean("scan", str(hostile))
    assert "os\\x1b[2J\\x1b[H" in out  # the refused global, shown escaped
    run_clean("convert", str(hostile), "-o", str(tmp_path / "out"), "--to", "multi")
    evil = next(hostile.glob("evil*.pt"))
    run_clean("edit", str(evil), "--scale", "2", "-o", str(tmp_path / "e.safetensors"), "--to", "diffusers")
    run_clean("edit", str(evil), "--rename", f"x{CLEAR}", "-o", str(tmp_path / "r.pt"))
    run_clean("merge", str(evil), str(evil), "-o", str(tmp_path / "m.safetensors"), "--rename", HOSTILE_NAME, "--to", "diffusers")


def test_json_keeps_names_exact(hostile):
    done = run_embkit("inspect", str(hostile), "--json")
    assert_clean(done.stdout, "inspect --json")
    names = {e["name"] for e in json.loads(done.stdout) if "name" in e}
    assert HOSTILE_NAME in names
    lines = run_embkit("inspect", str(hostile), "--json-lines").stdout
    assert_clean(lines, "inspect --json-lines")
    assert HOSTILE_NAME in {json.loads(line).get("name") for line in lines.splitlines()}
    scan = run_embkit("scan", str(hostile), "--json")
    assert_clean(scan.stdout, "scan --json")
    refused = {g for r in json.loads(scan.stdout) for g in r.get("refused", [])}
    assert f"os{CLEAR}.system{BIDI}" in refused


def test_library_commands_print_no_raw_escapes(hostile, tmp_path):
    db = str(tmp_path / "lib.sqlite")
    run_clean("library", "--db", db, "scan", str(hostile))
    run_clean("library", "--db", db, "scan", str(hostile), "-v")
    out = run_clean("library", "--db", db, "list")
    assert "\\x1b]0;pwned\\x07" in out
    run_clean("library", "--db", db, "list", "--errors")
    run_clean("library", "--db", db, "show", HOSTILE_NAME)
    run_clean("library", "--db", db, "search", "neg")
    run_clean("library", "--db", db, "conflicts")
    run_clean("library", "--db", db, "dupes")
    run_clean("library", "--db", db, "check", "-m", "sd1")
    run_clean("library", "--db", db, "tag", HOSTILE_NAME, f"t{CLEAR}")
    done = run_embkit("library", "--db", db, "list", "--json")
    assert HOSTILE_NAME in {e["name"] for e in json.loads(done.stdout)}
    # the gallery's own lines: -v lists the entries without a preview by name and path
    out = run_clean("library", "--db", db, "gallery", "-o", str(tmp_path / "site"), "-v")
    assert "\\x1b]0;pwned\\x07" in out and "no preview" in out


@pytest.mark.slow  # renders on the built-in tiny pipeline
def test_previews_print_no_raw_escapes(hostile, tmp_path):
    render = ("-m", "sd1", "--device", "cpu", "--steps", "1")
    out = run_clean("previews", str(hostile), "-o", str(tmp_path / "out"), *render)
    assert "evil\\x1b[2J\\x1b[H.preview.png" in out  # a trigger and a preview named after a hostile file name
    assert "os\\x1b[2J\\x1b[H" in out  # the refused global of the unsafe file, in its error line
    run_clean("previews", str(hostile), "-o", str(tmp_path / "out"), "--summary", "-v", *render)
    db = str(tmp_path / "lib.sqlite")
    run_clean("library", "--db", db, "scan", str(hostile))
    run_clean("library", "--db", db, "previews", *render)
    done = run_embkit("previews", str(hostile), "-o", str(tmp_path / "out"), "--json", *render)
    assert_clean(done.stdout, "previews --json")
    assert HOSTILE_NAME in {p["name"] for p in json.loads(done.stdout)["previews"]}


def test_ingest_prints_no_raw_escapes(hostile, tmp_path):
    # hostile file names in the table of problems, the refused global of the unsafe file, a trigger
    # that cannot be a file name in its conversion error, hostile names among the files skipped
    (hostile / f"notes{TITLE}.txt").write_text("x")
    out = run_clean("ingest", str(hostile), "-o", str(tmp_path / "out"), "-v")
    assert "os\\x1b[2J\\x1b[H" in out and "notes\\x1b]0;pwned\\x07.txt" in out
    run_clean("ingest", str(hostile), "-o", str(tmp_path / "out"))
    run_clean("ingest", str(hostile), "-o", str(tmp_path / "out"), "-q")
    done = run_embkit("ingest", str(hostile), "-o", str(tmp_path / "out"), "--json")
    assert_clean(done.stdout, "ingest --json")
    assert f"notes{TITLE}.txt" in {Path(e["path"]).name for e in json.loads(done.stdout)["ignored"]}


def test_pull_prints_no_raw_escapes(tmp_path):
    import os
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hub_server import HubServer

    from safetensors.numpy import save

    srv = HubServer().start()
    try:
        # a diffusers file keyed by the hostile name: its trigger is that name
        srv.add_repo("someone/hostile", {"evil.safetensors": save({HOSTILE_NAME: _vec(1, 768)}, metadata={"format": "pt"}), "notes.txt": b"x"})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update({"HF_ENDPOINT": srv.endpoint, "HF_HOME": str(tmp_path / "home"), "HF_HUB_DISABLE_TELEMETRY": "1"})
        done = subprocess.run([sys.executable, "-m", "embkit", "pull", "someone/hostile", "-o", str(tmp_path / "out")],
                              capture_output=True, text=True, env=env, timeout=120)
    finally:
        srv.stop()
    assert done.returncode == 0, done.stderr
    assert_clean(done.stdout + done.stderr, "pull")
    assert "\\x1b]0;pwned\\x07" in done.stdout

"""Conventions a script piping embkit relies on (findings of the CLI review, session 2)."""

from __future__ import annotations

import json

import numpy as np

import embkit
from conftest import run_embkit


def test_a_failing_json_command_still_prints_one_json_document(tmp_path):
    done = run_embkit("merge", str(tmp_path / "nope1.pt"), str(tmp_path / "nope2.pt"), "-o", str(tmp_path / "x.safetensors"), "--json")
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 1 and doc["error"]["code"] == "error"
    assert "nope1.pt: no such file" in doc["error"]["message"]


def test_piped_errors_are_not_wrapped(tmp_path):
    long = tmp_path / ("a_really_long_folder_name_" * 4) / "missing_file_with_a_long_name.pt"
    done = run_embkit("inspect", str(long))
    assert done.returncode == 1
    assert str(long) in done.stderr  # on one line: grep finds it


def test_library_export_to_stdout_and_no_silent_overwrite(tmp_path):
    folder = tmp_path / "emb"
    folder.mkdir()
    embkit.write(embkit.Embedding(name="a", vectors={"clip_l": np.ones((1, 768), np.float32)}), folder / "a.safetensors")
    db = str(tmp_path / "lib.sqlite")
    assert run_embkit("library", "scan", "--db", db, str(folder)).returncode == 0
    dash = run_embkit("library", "export", "--db", db, "-o", "-")
    assert dash.returncode == 0 and json.loads(dash.stdout)["entries"][0]["name"] == "a"
    target = tmp_path / "manifest.json"
    target.write_text("precious")
    refused = run_embkit("library", "export", "--db", db, "-o", str(target))
    assert refused.returncode == 9 and target.read_text() == "precious"
    assert run_embkit("library", "export", "--db", db, "-o", str(target), "--overwrite").returncode == 0
    assert json.loads(target.read_text())["entries"]


def test_library_remove_forgets_an_unreadable_file_by_path(tmp_path):
    bad = tmp_path / "evil.pt"
    bad.write_bytes(b"junk")
    db = str(tmp_path / "lib.sqlite")
    run_embkit("library", "scan", "--db", db, str(bad))
    assert "evil.pt" in run_embkit("library", "list", "--db", db, "--errors").stdout
    done = run_embkit("library", "remove", "--db", db, str(bad))
    assert done.returncode == 0, done.stderr
    assert "evil.pt" not in run_embkit("library", "list", "--db", db, "--errors").stdout


def test_negative_counts_are_usage_errors(tmp_path):
    src = tmp_path / "a.safetensors"
    embkit.write(embkit.Embedding(name="a", vectors={"clip_l": np.ones((1, 768), np.float32)}), src)
    assert run_embkit("edit", str(src), "--pad-to", "-3", "-o", str(tmp_path / "b.safetensors")).returncode == 2
    assert run_embkit("verify", str(src), "--render", "--steps", "-1").returncode == 2


def test_push_without_a_reachable_hub_is_a_hub_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    src = tmp_path / "a.safetensors"
    embkit.write(embkit.Embedding(name="a", vectors={"clip_l": np.ones((1, 768), np.float32)}), src)
    done = run_embkit("push", str(src), "me/x", "--token", "hf_test")
    assert done.returncode == 12, done.stderr
    assert "cannot reach the Hub" in " ".join(done.stderr.split()) and "Traceback" not in done.stderr


def test_option_names_match_across_commands(tmp_path):
    # convert's --to and --name work in merge and edit too
    src = tmp_path / "a.safetensors"
    embkit.write(embkit.Embedding(name="a", vectors={"clip_l": np.ones((2, 768), np.float32)}), src)
    done = run_embkit("edit", str(src), "--select", "0:1", "--to", "diffusers", "--name", "tok", "-o", str(tmp_path / "e.safetensors"))
    assert done.returncode == 0, done.stderr
    assert embkit.read(tmp_path / "e.safetensors").name == "tok"
    done = run_embkit("merge", str(src), str(src), "--to", "kohya", "-o", str(tmp_path / "m.safetensors"))
    assert done.returncode == 0, done.stderr
    assert embkit.probe(tmp_path / "m.safetensors").format == "kohya"

"""One vocabulary of options across every command (issue 19).

The test walks EVERY registered command and subcommand (``embkit.cli.main.COMMANDS``, recursing into
groups), so a command added later (``previews``, ``ingest``, ``library gallery`` …) must adopt
:func:`embkit.cli.options.shared` and the shared option helpers to pass it.
"""

from __future__ import annotations

import json

import click
import numpy as np
import pytest

import embkit
from conftest import run_embkit
from embkit.cli.main import COMMANDS
from embkit.cli.main import cli as root
from embkit.cli.options import Dtype
from embkit.formats import FORMAT_IDS, writable_ids
from embkit.hosts import HOST_IDS

#: the commands that walk folders and stream one object per file
JSON_LINES = {"inspect", "verify", "scan", "library list"}
SUMMARY = {"inspect", "verify", "scan", "convert", "previews"}


def _commands() -> list[tuple[str, click.Command, click.Context]]:
    """(name, command, context) of every leaf command, groups entered."""
    out = []
    ctx = click.Context(root, info_name="embkit", **root.context_settings)

    def visit(name: str, cmd: click.Command, parent: click.Context) -> None:
        sub_ctx = click.Context(cmd, info_name=name.rsplit(" ", 1)[-1], parent=parent)
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(sub_ctx):
                visit(f"{name} {sub}", cmd.get_command(sub_ctx, sub), sub_ctx)
        else:
            out.append((name, cmd, sub_ctx))

    for name in root.list_commands(ctx):
        visit(name, root.get_command(ctx, name), ctx)
    return out


COMMANDS_FOUND = _commands()


def test_every_registered_command_is_visited():
    names = {n for n, _c, _x in COMMANDS_FOUND}
    assert set(COMMANDS) <= {n.split()[0] for n in names}
    assert {"library scan", "library list", "library tag", "library remove", "push", "formats"} <= names


def _options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]


@pytest.mark.parametrize("name,cmd,ctx", COMMANDS_FOUND, ids=[n for n, _c, _x in COMMANDS_FOUND])
def test_help_lists_the_shared_options(name, cmd, ctx):
    text = cmd.get_help(ctx)
    for flag in ("--json", "-q, --quiet", "-v, --verbose"):
        assert flag in text, f"embkit {name} --help lacks {flag}: use embkit.cli.options.shared"
    flags = {o for p in _options(cmd) for o in p.opts}
    assert ("--json-lines" in flags) == (name in JSON_LINES), name
    assert ("--summary" in flags) == (name in SUMMARY), name


@pytest.mark.parametrize("name,cmd,ctx", COMMANDS_FOUND, ids=[n for n, _c, _x in COMMANDS_FOUND])
def test_each_flag_means_one_thing(name, cmd, ctx):
    for opt in _options(cmd):
        opts = set(opt.opts) | set(opt.secondary_opts)
        where = f"embkit {name} {'/'.join(sorted(opts))}"
        if "--model" in opts or "-m" in opts:
            assert {"-m", "--model"} <= opts, f"{where}: the target is -m/--model everywhere"
        if "--format" in opts:  # only ever the input layout
            assert "input layout" in (opt.help or ""), f"{where}: --format forces the input layout; the output is --to"
            assert set(opt.type.choices) == set(FORMAT_IDS)
        if "--to" in opts:
            assert set(opt.type.choices) <= set(writable_ids()), where
        if "--name" in opts:  # a filter, never a rename (that is --rename)
            assert (opt.help or "").startswith("Only"), f"{where}: --name is a filter; a new trigger name is --rename"
        if "--dtype" in opts:
            assert isinstance(opt.type, Dtype), f"{where}: dtypes are parsed by embkit.cli.options.Dtype"
        if "-o" in opts:
            assert "--output" in opts, where
        if "--host" in opts:  # the hosts table's ids, spelled alike everywhere
            assert all(h in (opt.help or "") for h in HOST_IDS), f"{where}: --host names the hosts table's ids"
        if "-q" in opts:
            assert opts == {"-q", "--quiet"}, where
        if "-v" in opts:
            assert opts == {"-v", "--verbose"}, where


def test_dtype_spellings_are_one_parser():
    parse = Dtype().convert
    for spelling, name in (("fp16", "float16"), ("float16", "float16"), ("half", "float16"), ("FP16", "float16"),
                           ("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp32", "float32"), ("float32", "float32"), ("fp64", "float64")):
        assert parse(spelling, None, None) == name
    with pytest.raises(click.BadParameter):
        parse("int8", None, None)


def _sd1(path, name="a", n=2):
    embkit.write(embkit.Embedding(name=name, vectors={"clip_l": np.linspace(-1, 1, n * 768, dtype=np.float32).reshape(n, 768)}), path)
    return path


def test_the_same_dtype_spelling_works_in_convert_and_edit(tmp_path):
    src = _sd1(tmp_path / "a.safetensors")
    for cmd in (("convert", str(src), "-o", str(tmp_path / "c.safetensors")),
                ("edit", str(src), "--scale", "1", "-o", str(tmp_path / "e.safetensors"))):
        done = run_embkit(*cmd, "--dtype", "float16")
        assert done.returncode == 0, done.stderr
    assert embkit.read(tmp_path / "c.safetensors").dtypes["clip_l"] == embkit.read(tmp_path / "e.safetensors").dtypes["clip_l"] == "float16"


def test_old_spellings_work_for_one_release_with_a_note(tmp_path):
    src = _sd1(tmp_path / "a.safetensors")
    # convert --name → --rename
    done = run_embkit("convert", str(src), "-o", str(tmp_path / "n.safetensors"), "--to", "diffusers", "--name", "tok")
    assert done.returncode == 0, done.stderr
    assert "deprecated" in done.stderr and "--rename" in done.stderr and embkit.read(tmp_path / "n.safetensors").name == "tok"
    # merge/edit --format (the output layout) → --to
    done = run_embkit("merge", str(src), str(src), "--format", "kohya", "-o", str(tmp_path / "m.safetensors"))
    assert done.returncode == 0, done.stderr
    assert "--format is now --to" in " ".join(done.stderr.split()) and embkit.probe(tmp_path / "m.safetensors").format == "kohya"
    done = run_embkit("edit", str(src), "--scale", "2", "--name", "edited", "-o", str(tmp_path / "e.safetensors"), "--to", "diffusers")
    assert done.returncode == 0 and embkit.read(tmp_path / "e.safetensors").name == "edited"
    # library list --format (a filter) → --layout
    db = str(tmp_path / "lib.sqlite")
    assert run_embkit("library", "--db", db, "scan", str(src)).returncode == 0
    done = run_embkit("library", "--db", db, "list", "--format", "diffusers", "--json")
    assert done.returncode == 0 and [e["name"] for e in json.loads(done.stdout)] == ["a"] and "--layout" in done.stderr
    # push -m (a commit message) → --message; -m means --model everywhere else
    done = run_embkit("push", str(src), "me/x", "--dry-run", "-m", "msg", "--json")
    assert done.returncode == 0, done.stderr
    assert "-m is now --message" in " ".join(done.stderr.split())


def test_via_takes_what_model_takes_and_says_what_a_family_lacks(tmp_path):
    src = _sd1(tmp_path / "a.safetensors")
    done = run_embkit("edit", str(src), "--port", "sdxl", "--via", "sdxl", "-o", str(tmp_path / "x.safetensors"))
    assert done.returncode == 6  # a TargetError, as --model gives for an unusable target
    assert "is a family" in done.stderr and not (tmp_path / "x.safetensors").exists()


def test_json_on_every_command_prints_one_document(tmp_path):
    src = _sd1(tmp_path / "a.safetensors")
    db = str(tmp_path / "lib.sqlite")
    assert run_embkit("library", "--db", db, "scan", str(src)).returncode == 0
    for args in (("formats",), ("inspect", str(src)), ("verify", str(src)), ("scan", str(src)),
                 ("convert", str(src), "-o", str(tmp_path / "c.pt")), ("edit", str(src), "--scale", "2", "-o", str(tmp_path / "e.pt")),
                 ("merge", str(src), str(src), "-o", str(tmp_path / "m.pt")), ("library", "--db", db, "list"),
                 ("library", "--db", db, "tag", "a", "t"), ("library", "--db", db, "remove", "a"), ("push", str(src), "me/x", "--dry-run")):
        done = run_embkit(*args, "--json")
        assert done.returncode == 0, (args, done.stderr)
        json.loads(done.stdout)  # one document, nothing else on stdout


def test_quiet_prints_results_only(tmp_path):
    (tmp_path / "in").mkdir()
    src = _sd1(tmp_path / "in" / "a.safetensors")
    (tmp_path / "in" / "notes.txt").write_text("x")
    loud = run_embkit("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--to", "multi")
    quiet = run_embkit("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--to", "multi", "-q")
    assert loud.returncode == quiet.returncode == 0
    assert "converted 1" in loud.stdout and "notes.txt" in loud.stdout
    assert "converted 1" not in quiet.stdout and "notes.txt" not in quiet.stdout
    assert (tmp_path / "out2" / "a.safetensors").is_file() and src.is_file()


def test_verify_quiet_prints_the_results_without_notes_or_the_count(tmp_path):
    """Regression: ``verify -q`` still printed the no-tokenizer note, the host-table footnote and
    '1 would load, 0 would be skipped'."""
    src = _sd1(tmp_path / "a.safetensors")
    loud = run_embkit("verify", str(src), "-m", "sd1")
    quiet = run_embkit("verify", str(src), "-m", "sd1", "-q")
    assert loud.returncode == quiet.returncode == 0, quiet.stderr
    for chatter in ("would load", "no tokenizer", "findings above"):
        assert chatter in loud.stdout and chatter not in quiet.stdout, chatter
    assert "A1111" in quiet.stdout  # the results stay: the table of what each host does

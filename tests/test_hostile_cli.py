"""Odd but loadable values in files (NaN, non-string keys, bytes, sets, modules, deep lists) must
come out of `embkit inspect` as valid JSON or clean errors: never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import embkit
from fuzz.pickles import (
    EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, MARK, NEWOBJ, NONE, call, dict_, g, i, pickle_of, s, tensor, torch_zip, tup,
)

from conftest import run_embkit

NAN = b"G\x7f\xf8\x00\x00\x00\x00\x00\x00"
INF = b"G\x7f\xf0\x00\x00\x00\x00\x00\x00"

ODD = {
    "tuple-key": dict_((s("emb_params"), tensor()), (tup(i(1), i(2)), i(3))),
    "int-key": dict_((s("emb_params"), tensor()), (i(7), s("x"))),
    "none-key": dict_((s("emb_params"), tensor()), (NONE, s("x"))),
    "nan-value": dict_((s("emb_params"), tensor()), (s("f"), NAN)),
    "inf-in-list": dict_((s("emb_params"), tensor()), (s("f"), EMPTY_LIST + MARK + INF + NAN + i(1) + b"e")),
    "huge-int": dict_((s("emb_params"), tensor()), (s("f"), b"\x8a\x09" + b"\xff" * 9)),
    "bytes-value": dict_((s("emb_params"), tensor()), (s("f"), b"C\x03\xff\xfe\x00")),
    "deep-list": dict_((s("emb_params"), tensor()), (s("f"), EMPTY_LIST * 41 + b"a" * 40)),
    "set-value": dict_((s("emb_params"), tensor()), (s("f"), call(g("builtins", "set"), EMPTY_LIST + MARK + i(1) + i(2) + b"e"))),
    "module-value": dict_((s("emb_params"), tensor()), (s("f"), g("torch.nn.modules.container", "ParameterDict") + EMPTY_TUPLE + NEWOBJ + EMPTY_DICT + b"b")),
    "object-value": dict_((s("emb_params"), tensor()), (s("f"), g("builtins", "object") + EMPTY_TUPLE + NEWOBJ)),
    "a1111-odd-name-step": dict_((s("string_to_param"), dict_((s("*"), tensor()))), (s("name"), i(5)), (s("step"), dict_((i(1), NONE)))),
    "a1111-tuple-placeholder": dict_((s("string_to_param"), dict_((tup(i(1)), tensor()))),),
    "diffusers-int-token": dict_((i(5), tensor()),),
    "diffusers-bytes-token": dict_((b"C\x02ab", tensor()),),
    "diffusers-nan-tensor-meta": dict_((s("emb_params"), tensor()), (s("t"), tensor(shape=(1,), stride=(1,)))),
}


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("odd")
    paths = []
    for name, body in ODD.items():
        path = folder / f"{name}.pt"
        path.write_bytes(torch_zip(pickle_of(body)))
        paths.append(path)
    return paths


def test_inspect_json_is_valid_for_odd_values(odd_files: list[Path]):
    proc = run_embkit("inspect", "--json", *map(str, odd_files))
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    entries = json.loads(proc.stdout)  # allow_nan=False in the CLI: NaN must have been made a string
    assert len(entries) == len(odd_files)
    nan_entry = next(e for e in entries if e["path"].endswith("nan-value.pt"))
    assert nan_entry["embeddings"][0]["metadata"]["f"] == "nan"


def test_inspect_text_never_shows_a_traceback(odd_files: list[Path]):
    proc = run_embkit("inspect", *map(str, odd_files))
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (0, 1, 3, 4)  # the walk rule: 1 when files failed with different codes


def test_library_reads_odd_values_as_embeddings_or_embkit_errors(odd_files: list[Path]):
    read, refused = [], []
    for path in odd_files:
        try:
            embs = embkit.read_all(path)
            for emb in embs:
                json.dumps(dict(emb.metadata), allow_nan=False, default=str)  # strict JSON metadata
            assert embkit.probe(path).embeddings
            read.append(path.name)
        except embkit.EmbkitError as exc:  # anything else (TypeError, ValueError …) fails the test
            assert path.name in str(exc)
            refused.append(path.name)
    assert len(read) + len(refused) == len(odd_files)
    assert read, "no odd-valued file was readable: the test would prove nothing"

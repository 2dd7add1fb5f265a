"""Allowed globals given what no torch file holds (huge sizes and strides, BUILD on an OrderedDict
with items, ``_reconstructor`` on a ParameterDict with odd state, tuple keys, sets of modules):
every reading path (read_all, probe, the inspect report, the library's examine, convert, scan) ends
in an embkit error with a code, or a clean result; never a bare OverflowError or TypeError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import embkit
from embkit.convert import Job, Settings, convert_one
from embkit.library.extract import examine
from embkit.report import describe_file
from embkit.scan import scan_file
from fuzz.pickles import BUILD, MARK, NONE, call, dict_, g, i, kohya_body, pickle_of, s, storage, tensor, torch_zip, tup


def od(*args: bytes) -> bytes:
    return call(g("collections", "OrderedDict"), *args)


RECON = call(g("copyreg", "_reconstructor"), g("torch.nn.modules.container", "ParameterDict"), g("builtins", "object"), NONE)
HUGE = 2**70

SHAPES = {
    "size 2**70 beside a zero": kohya_body(tensor(shape=(0, HUGE), stride=(1, 1))),
    "stride 2**70": kohya_body(tensor(shape=(0, 768), stride=(HUGE, 1))),
    "offset 2**70": kohya_body(tensor(offset=HUGE)),
    "storage of 2**70 elements": kohya_body(tensor(storage(numel=HUGE))),
    "OrderedDict BUILD with a list of items": dict_((s("emb_params"), tensor()), (s("m"), od() + b"]" + MARK + tup(s("a"), i(1)) + b"e" + BUILD)),
    "OrderedDict BUILD with int keys": dict_((s("emb_params"), tensor()), (s("m"), od() + dict_((i(1), i(2))) + BUILD)),
    "OrderedDict BUILD with slot state": dict_((s("emb_params"), tensor()), (s("m"), od() + tup(NONE, dict_((s("x"), i(2)))) + BUILD)),
    "OrderedDict as string_to_param, BUILD": dict_((s("string_to_param"), od() + dict_((s("_parameters"), i(1))) + BUILD), (s("name"), s("x"))),
    "_reconstructor ParameterDict, _parameters a list": dict_((s("string_to_param"), RECON + dict_((s("_parameters"), b"]")) + BUILD)),
    "_reconstructor ParameterDict, tuple keys": dict_((s("string_to_param"), RECON + dict_((s("_parameters"), od(b"]" + MARK + tup(tup(i(1), i(2)), tensor()) + b"e"))) + BUILD)),
    "_reconstructor ParameterDict, _parameters itself a ParameterDict": dict_((s("string_to_param"), RECON + dict_((s("_parameters"), RECON)) + BUILD)),
    "_reconstructor ParameterDict without state": dict_((s("string_to_param"), RECON)),
    "string_to_param keyed by ints": dict_((s("string_to_param"), dict_((i(5), tensor()))), (s("name"), s("x"))),
    "name is a tensor": dict_((s("string_to_param"), dict_((s("*"), tensor()))), (s("name"), tensor())),
    "a set of tuples in the metadata": dict_((s("string_to_param"), dict_((s("*"), tensor()))), (s("step"), call(g("builtins", "set"), b"]" + MARK + tup(i(1), i(2)) + b"e"))),
    "a set of modules in the metadata": dict_((s("emb_params"), tensor()), (s("x"), call(g("builtins", "set"), b"]" + MARK + RECON + b"e"))),
    "a set of tensors": dict_((s("emb_params"), tensor()), (s("x"), call(g("builtins", "set"), b"]" + MARK + tensor() + b"e"))),
    "the allow-listed objects as metadata": dict_((s("emb_params"), tensor()), (s("a"), g("collections", "OrderedDict")), (s("b"), g("torch", "FloatStorage")),
                                                   (s("c"), g("torch.nn.parameter", "Parameter")), (s("d"), call(g("builtins", "object")))),
    "a provenance of tensors": dict_((s("emb_params"), tensor()), (s("provenance"), b"]" + MARK + dict_((s("op"), tensor())) + b"e")),
    "rebuild arguments too few": kohya_body(call(g("torch._tensor", "_rebuild_from_type_v2"), g("torch._utils", "_rebuild_tensor_v2"),
                                                 g("torch.nn.parameter", "Parameter"), tup(storage()), NONE)),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_reading_path_answers_with_an_embkit_error_or_a_result(name: str, tmp_path: Path):
    path = tmp_path / "x.pt"
    path.write_bytes(torch_zip(pickle_of(SHAPES[name])))
    outcomes = []
    for fn in (embkit.read_all, embkit.probe, describe_file, scan_file):
        try:
            result = fn(path)
            if fn is describe_file:
                json.dumps(result, allow_nan=False)
            outcomes.append("ok")
        except embkit.EmbkitError as exc:
            assert exc.code and str(path) in str(exc)
            outcomes.append(exc.code)
    row = examine(str(path), os.path.getsize(path), 0)[1]
    assert row[9] != "error", row[10]  # the library's net for unexpected exceptions was not needed
    done = convert_one(Job(str(path), str(tmp_path / "out"), True, root=str(tmp_path)), Settings("kohya", None, None, None, False, True, False, ()), [])
    assert done.get("error", {}).get("code") != "error", done
    read_ok = outcomes[0] == "ok"
    assert (scan_file(path).verdict == "safe") == read_ok

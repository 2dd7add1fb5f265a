"""The fast pickle path (embkit.formats.pickle_fast) against the full allow-list unpickler.

Whenever the fast path answers, the full unpickler must give the same object, the same storages
and the same end offset; wherever the full one refuses, the fast one must decline. Checked on
pickles torch itself writes, on every malicious case, and on many thousands of mutated pickles.
"""

from __future__ import annotations

import io
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embkit
from embkit.errors import EmbkitError
from embkit.formats import pickle_fast
from embkit.formats import pickle_allow as A
from embkit.formats import pickle_globals as G
from fuzz.malicious import CASES, Canary


def _norm(obj, path=()):
    """A comparable form of what an unpickler built (our stand-ins have identity equality);
    a container met again inside itself (a memo cycle) becomes ("cycle", depth)."""
    if id(obj) in path:
        return ("cycle", path.index(id(obj)))
    inner = path + (id(obj),)
    if isinstance(obj, G.TensorRef):
        return ("tensor", _norm(obj.storage, inner), obj.offset, obj.shape, obj.stride)
    if isinstance(obj, G.StorageRef):
        return ("storage", obj.key, obj.dtype, obj.numel)
    if isinstance(obj, G._Global):
        return ("global", obj.name)
    if isinstance(obj, G.ModuleStandIn):
        return (obj.kind, _norm(obj.__dict__.get("state"), inner))
    if isinstance(obj, dict):
        return (type(obj).__name__, [(_norm(k, inner), _norm(v, inner)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_norm(v, inner) for v in obj])
    if isinstance(obj, (set, frozenset)):
        return (type(obj).__name__, sorted(repr(_norm(v, inner)) for v in obj))
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return (type(obj).__name__, repr(obj))
    return ("other", type(obj).__name__)


def _slow(data: bytes):
    up = A._SafeUnpickler(io.BytesIO(data), "x.pt", len(data))
    try:
        obj = up.load()
    except Exception as exc:  # noqa: BLE001 - any refusal counts
        return ("error", type(exc).__name__)
    return ("ok", _norm(obj), {k: _norm(v) for k, v in up.storages.items()})


def _fast(data: bytes):
    storages: dict = {}
    budget = G._CallBudget(len(data), "x.pt")
    got = pickle_fast.load(data, lambda m, n: G._find_global(m, n, "x.pt", budget), lambda pid: G._storage_ref(pid, storages, "x.pt"), G.MAX_TUPLE_DEPTH, G.MAX_TUPLE_SIZE)
    if got is None:
        return None
    return ("ok", _norm(got[0]), {k: _norm(v) for k, v in storages.items()}, got[1])


def _agree(data: bytes) -> bool:
    """The property: the fast path declines, or answers exactly what the full one answers.
    Returns whether the fast path answered."""
    fast = _fast(data)
    if fast is None:
        return False
    slow = _slow(data)
    assert slow[0] == "ok", f"fast path accepted what the full unpickler refuses ({slow[1]})"
    assert fast[1] == slow[1] and fast[2] == slow[2]
    # and the same end offset (the legacy format reads the next pickle from there)
    stream = io.BytesIO(data)
    A._SafeUnpickler(stream, "x.pt", len(data)).load()
    assert fast[3] == stream.tell()
    return True


def _pkl_of(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        return zf.read(name)


def _torch_objects() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4, 768, generator=g)
    shared = torch.randn(8, 768, generator=g)
    return {
        "a1111": {"string_to_token": {"*": 265}, "string_to_param": {"*": t}, "name": "x", "step": 1000,
                  "sd_checkpoint": "7ab762a7", "sd_checkpoint_name": "model"},
        "kohya-fp16": {"emb_params": t.half()},
        "bf16": {"emb_params": t.bfloat16()},
        "diffusers-many": {f"<tok{i}>": torch.randn(1, 768, generator=g) for i in range(40)},
        "multi": {"clip_l": t, "clip_g": torch.randn(4, 1280, generator=g)},
        "parameter": {"string_to_param": {"*": torch.nn.Parameter(t)}},
        "ordered": OrderedDict([("emb_params", t), ("note", [1, -2, 3.5, None, True, False, 2**70, -(2**40)])]),
        "views": {"a": shared[2:5], "b": shared[:, :384], "c": shared.t(), "d": shared},
        "nested": {"meta": {"tuple": (1, 2), "t3": (1, 2, 3), "t5": (1, 2, 3, 4, 5), "empty": (), "list": [], "s": "é✓"}, "v": t},
    }


@pytest.mark.parametrize("name", list(_torch_objects()))
def test_torch_written_pickles_take_the_fast_path_and_agree(name, tmp_path):
    path = tmp_path / f"{name}.pt"
    torch.save(_torch_objects()[name], path)
    assert _agree(_pkl_of(path)), "torch's own pickle fell back to the slow path"


def test_embkit_reads_the_same_with_and_without_the_fast_path(tmp_path, monkeypatch):
    paths = []
    for name, obj in _torch_objects().items():
        if name in ("views", "nested", "ordered", "multi"):
            continue  # not embedding layouts on their own
        paths.append(tmp_path / f"{name}.pt")
        torch.save(obj, paths[-1])
    fast = [[(e.name, {k: v.tobytes() for k, v in e.vectors.items()}) for e in embkit.read_all(p)] for p in paths]
    monkeypatch.setattr(pickle_fast, "load", lambda *a: None)
    slow = [[(e.name, {k: v.tobytes() for k, v in e.vectors.items()}) for e in embkit.read_all(p)] for p in paths]
    assert fast == slow


def test_corpus_pickles_agree(corpus):
    for path in sorted(corpus.glob("*.pt")):
        data = path.read_bytes()
        if data.startswith(b"PK"):
            assert _agree(_pkl_of(path)), path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malicious_cases_answer_the_same_either_way(case, tmp_path, monkeypatch):
    canary = Canary(created=str(tmp_path / "canary.created"), keep=str(tmp_path / "canary.keep"))
    Path(canary.keep).write_text("keep")
    path = tmp_path / case.filename
    path.write_bytes(case.build(canary))

    def outcome():
        try:
            return ("ok", [e.name for e in embkit.read_all(path)])
        except EmbkitError as exc:
            return (exc.code, str(exc))

    with_fast = outcome()
    monkeypatch.setattr(pickle_fast, "load", lambda *a: None)
    without = outcome()
    assert with_fast == without
    assert with_fast[0] == case.expect
    assert not Path(canary.created).exists() and Path(canary.keep).read_text() == "keep"


def _seed_pickles() -> list[bytes]:
    out = []
    for obj in _torch_objects().values():
        buf = io.BytesIO()
        torch.save(obj, buf)
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
            out.append(zf.read([n for n in zf.namelist() if n.endswith("/data.pkl")][0]))
    return out


SEEDS = _seed_pickles()


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    edits=st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_pickles_never_make_the_paths_disagree(seed, edits):
    data = bytearray(SEEDS[seed])
    for kind, at, value in edits:
        if not data:
            break
        at %= len(data)
        if kind == "flip":
            data[at] ^= 1 << (value % 8)
        elif kind == "set":
            data[at] = value
        elif kind == "insert":
            data[at:at] = bytes([value])
        elif kind == "delete":
            del data[at]
        else:
            del data[at:]
    _agree(bytes(data))


def test_mutations_keep_some_answers_fast():
    # the property above is only meaningful if the fast path still answers for many mutants
    rng = np.random.default_rng(0)
    answered = 0
    for k in range(600):
        data = bytearray(SEEDS[k % len(SEEDS)])
        at = int(rng.integers(len(data)))
        data[at] = int(rng.integers(256))
        answered += _agree(bytes(data))
    assert 30 < answered < 600

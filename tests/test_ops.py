"""Merge and edit operations: exact expected vectors for every operation, provenance, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

import embkit
from embkit import ops
from embkit.errors import OperationError
from embkit.formats.base import narrow_bf16, widen_bf16
from embkit.schema import Embedding


def emb(name, dtypes=None, **slots):
    return Embedding(name=name, vectors={k: np.asarray(v, dtype=np.float32) for k, v in slots.items()}, dtypes=dtypes or {})


def vec(e, slot="clip_l"):
    return e.vectors[slot].tolist()


A = emb("a", clip_l=[[1, 2, 3], [4, 5, 6]])
B = emb("b", clip_l=[[10, 20, 30], [40, 50, 60]])
C3 = emb("c", clip_l=[[1, 1, 1], [2, 2, 2], [3, 3, 3]])
XL = emb("xl", clip_l=[[1, 0, 0], [0, 1, 0], [0, 0, 0]], clip_g=[[2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
XL_OUT = emb("xo", clip_l=[[1, 2, 3]], clip_g=[[1, 2, 3, 4]], clip_l_out=[[9, 9, 9]])


# -- merges --------------------------------------------------------------------------------------
def test_concat_stacks_vectors_in_order():
    out = embkit.merge([A, C3], "concat")
    assert vec(out) == [[1, 2, 3], [4, 5, 6], [1, 1, 1], [2, 2, 2], [3, 3, 3]]
    assert out.name == "a_c"
    assert ops.concat([A, B], name="both").name == "both"


def test_weighted_sum_exact():
    out = embkit.merge([A, B], "sum", [0.5, 0.25])
    assert vec(out) == [[3, 6, 9], [12, 15, 18]]
    assert vec(ops.weighted_sum([A, B])) == [[11, 22, 33], [44, 55, 66]]


def test_mean_and_weighted_mean_exact():
    assert vec(embkit.merge([A, B], "mean")) == [[5.5, 11, 16.5], [22, 27.5, 33]]
    # weights are normalised: 3:1 → 0.75, 0.25
    assert vec(ops.mean([A, B], [3, 1])) == [[3.25, 6.5, 9.75], [13, 16.25, 19.5]]


def test_unequal_counts_refused_or_zero_padded():
    with pytest.raises(OperationError, match="pad"):
        embkit.merge([A, C3], "sum")
    out = embkit.merge([A, C3], "sum", pad=True)
    assert vec(out) == [[2, 3, 4], [6, 7, 8], [3, 3, 3]]
    assert embkit.merge([A, C3], "mean", pad=True).vectors["clip_l"][2].tolist() == [1.5, 1.5, 1.5]
    assert out.metadata["provenance"][-1]["params"]["pad"] is True


def test_lerp_exact():
    out = ops.lerp(A, B, 0.25)
    assert vec(out) == [[3.25, 6.5, 9.75], [13, 16.25, 19.5]]
    # two weights are normalised to a share of the second
    assert vec(embkit.merge([A, B], "lerp", [3, 1])) == vec(out)


def reference_slerp(v0, v1, t, threshold=0.9995):
    """The textbook per-vector slerp (as in the common PyTorch/NumPy snippets), written out in floats."""
    n0 = math.sqrt(sum(x * x for x in v0))
    n1 = math.sqrt(sum(x * x for x in v1))
    dot = sum(x * y for x, y in zip(v0, v1)) / (n0 * n1)
    if abs(dot) > threshold:
        return [(1 - t) * x + t * y for x, y in zip(v0, v1)]
    omega = math.acos(dot)
    s = math.sin(omega)
    return [math.sin((1 - t) * omega) / s * x + math.sin(t * omega) / s * y for x, y in zip(v0, v1)]


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 1.0])
def test_slerp_matches_reference_formula(t):
    rng = np.random.default_rng(7)
    a = emb("a", clip_l=rng.normal(size=(4, 16)))
    b = emb("b", clip_l=rng.normal(size=(4, 16)))
    out = ops.slerp(a, b, t)
    expected = [reference_slerp(x, y, t) for x, y in zip(a.vectors["clip_l"].astype(float).tolist(), b.vectors["clip_l"].astype(float).tolist())]
    assert np.array_equal(out.vectors["clip_l"], np.asarray(expected, dtype=np.float32)) or np.allclose(
        out.vectors["clip_l"], expected, rtol=0, atol=2e-7
    )
    assert out.dtypes["clip_l"] == "float32"


def test_slerp_orthogonal_exact_and_parallel_falls_back_to_lerp():
    a = emb("a", clip_l=[[1, 0], [2, 0], [0, 0]])
    b = emb("b", clip_l=[[0, 1], [4, 0.001], [1, 1]])
    out = ops.slerp(a, b, 0.5).vectors["clip_l"].astype(float)
    s = math.sin(math.pi / 4) / math.sin(math.pi / 2)
    assert out[0].tolist() == pytest.approx([s, s], abs=1e-7)
    # nearly parallel (cos > 0.9995): plain lerp, not a division by a tiny sin
    assert out[1].tolist() == pytest.approx([3.0, 0.0005], abs=1e-7)
    # a zero row cannot be normalised: lerp
    assert out[2].tolist() == [0.5, 0.5]


def test_slerp_keeps_norm_between_unit_vectors():
    a = emb("a", clip_l=[[1, 0, 0]])
    b = emb("b", clip_l=[[0, 0, 1]])
    for t in (0.1, 0.5, 0.9):
        assert np.linalg.norm(ops.slerp(a, b, t).vectors["clip_l"][0]) == pytest.approx(1.0, abs=1e-6)
        assert np.linalg.norm(ops.lerp(a, b, t).vectors["clip_l"][0]) < 1.0


def test_lerp_slerp_take_two():
    with pytest.raises(OperationError, match="exactly two"):
        embkit.merge([A, B, A], "slerp")
    with pytest.raises(OperationError, match="concat takes no weights"):
        embkit.merge([A, B], "concat", [1, 2])
    with pytest.raises(OperationError, match="3 weights for 2"):
        embkit.merge([A, B], "sum", [1, 2, 3])
    with pytest.raises(OperationError, match="unknown merge mode"):
        embkit.merge([A, B], "average")
    with pytest.raises(OperationError, match="no embeddings"):
        embkit.merge([], "sum")


def test_refuses_different_families_and_widths():
    with pytest.raises(OperationError, match="different model families") as info:
        embkit.merge([A, XL], "concat")
    assert "'a' (sd1: clip_l)" in str(info.value) and "'xl' (sdxl: clip_l, clip_g)" in str(info.value)
    wide = emb("w", clip_l=[[1, 2, 3, 4]])
    with pytest.raises(OperationError, match="3 and 4 wide"):
        embkit.merge([A, wide], "concat")


def test_merge_multi_slot_consistently_and_carries_first_outputs():
    other = emb("o2", clip_l=[[3, 2, 1]], clip_g=[[4, 3, 2, 1]], clip_l_out=[[7, 7, 7]])
    out = embkit.merge([XL_OUT, other], "mean")
    assert vec(out) == [[2, 2, 2]]
    assert vec(out, "clip_g") == [[2.5, 2.5, 2.5, 2.5]]
    assert vec(out, "clip_l_out") == [[9, 9, 9]]  # from the first input, unchanged


def test_merge_one_named_slot():
    other = emb("o2", clip_l=[[3, 2, 1]], clip_g=[[4, 3, 2, 1]], clip_l_out=[[7, 7, 7]])
    out = embkit.merge([XL_OUT, other], "mean", slot="clip_g")
    assert vec(out) == [[1, 2, 3]]  # the first input's, unchanged
    assert vec(out, "clip_g") == [[2.5, 2.5, 2.5, 2.5]]
    assert out.metadata["provenance"][-1]["params"] == {"mode": "mean", "slot": "clip_g"}
    outs = embkit.merge([XL_OUT, other], "sum", slot="clip_l_out")
    assert vec(outs, "clip_l_out") == [[16, 16, 16]] and vec(outs) == [[1, 2, 3]]
    with pytest.raises(OperationError, match="no slot 'clip_l_out'"):
        embkit.merge([XL_OUT, emb("p", clip_l=[[1, 1, 1]], clip_g=[[1, 1, 1, 1]])], "sum", slot="clip_l_out")


def test_merge_provenance_records_inputs_hashes_weights():
    out = embkit.merge([A, B], "sum", [0.7, 0.3], name="blend")
    (entry,) = out.metadata["provenance"]
    assert entry["operation"] == "merge.sum"
    assert entry["params"] == {"mode": "sum"}
    assert [i["name"] for i in entry["inputs"]] == ["a", "b"]
    assert [i["weight"] for i in entry["inputs"]] == [0.7, 0.3]
    assert entry["inputs"][0]["vectors_sha256"] == ops.vectors_sha256(A) != ops.vectors_sha256(B)
    # a merge of a merge nests the earlier history inside its input record
    again = embkit.merge([out, A], "concat")
    assert again.metadata["provenance"][0]["inputs"][0]["provenance"][0]["operation"] == "merge.sum"


def test_merge_records_file_sha256_of_real_inputs(corpus):
    import hashlib

    bad = embkit.read(corpus / "bad-hands-5.pt")
    easy = embkit.read(corpus / "EasyNegative.pt")
    out = embkit.merge([bad, easy], "concat", name="negs")
    assert out.vectors["clip_l"].shape == (10, 768)
    assert np.array_equal(out.vectors["clip_l"][:2], bad.vectors["clip_l"])
    rec = out.metadata["provenance"][0]["inputs"]
    assert rec[0]["sha256"] == hashlib.sha256((corpus / "bad-hands-5.pt").read_bytes()).hexdigest()
    assert rec[1]["sha256"] == "66a7279a88dd0cb17afbc88560540c638336d5783fd6b191c53c0d654e25b9db"
    assert rec[0]["path"] == "bad-hands-5.pt" and rec[0]["format"] == "a1111"
    assert out.source is None and "sd_checkpoint" not in out.metadata


def test_merge_dtype_kept_when_inputs_agree():
    h1 = embkit.ops.cast(A, "fp16")
    h2 = embkit.ops.cast(B, "fp16")
    out = embkit.merge([h1, h2], "mean", [1, 2])
    assert out.dtypes["clip_l"] == "float16" and out.vectors["clip_l"].dtype == np.float16
    expected = (np.asarray(vec(A), dtype=np.float64) / 3 + np.asarray(vec(B), dtype=np.float64) * 2 / 3).astype(np.float16)
    assert np.array_equal(out.vectors["clip_l"], expected)
    assert embkit.merge([h1, B], "sum").dtypes["clip_l"] == "float32"


# -- edits ---------------------------------------------------------------------------------------
def test_scale_global_and_per_slot():
    assert vec(ops.scale(A, 0.5)) == [[0.5, 1, 1.5], [2, 2.5, 3]]
    out = ops.scale(XL, 0.5, slot="clip_g")
    assert vec(out, "clip_g")[0] == [1, 0, 0, 0]
    assert vec(out) == vec(XL)  # clip_l untouched
    assert out.metadata["provenance"][-1]["params"] == {"factor": 0.5, "slot": "clip_g"}
    both = ops.scale(XL, 2)
    assert vec(both)[0] == [2, 0, 0] and vec(both, "clip_g")[0] == [4, 0, 0, 0]


def test_scale_leaves_output_slots_unless_named():
    out = ops.scale(XL_OUT, 2)
    assert vec(out, "clip_l_out") == [[9, 9, 9]] and vec(out) == [[2, 4, 6]]
    assert vec(ops.scale(XL_OUT, 2, slot="clip_l_out"), "clip_l_out") == [[18, 18, 18]]


def test_scale_unknown_slot_refused():
    with pytest.raises(OperationError, match="no slot 'clip_g'"):
        ops.scale(A, 2, slot="clip_g")


def test_normalize_mean_norm_and_each():
    e = emb("n", clip_l=[[3, 4], [0, 10], [0, 0]])  # norms 5, 10, 0: mean 5
    out = ops.normalize(e, 10)
    assert vec(out) == [[6, 8], [0, 20], [0, 0]]
    each = ops.normalize(e, 1, each=True)
    assert vec(each) == [[0.6000000238418579, 0.800000011920929], [0, 1], [0, 0]]
    with pytest.raises(OperationError, match="all-zero"):
        ops.normalize(emb("z", clip_l=[[0, 0]]), 1)


def test_select_crop_pad_reorder():
    assert vec(ops.select(C3, "0:2")) == [[1, 1, 1], [2, 2, 2]]
    assert vec(ops.select(C3, "-1")) == [[3, 3, 3]]
    assert vec(ops.select(C3, "2,0")) == [[3, 3, 3], [1, 1, 1]]
    assert vec(ops.select(C3, [0, 2])) == [[1, 1, 1], [3, 3, 3]]
    assert vec(ops.select(C3, "::2")) == [[1, 1, 1], [3, 3, 3]]
    assert vec(ops.crop(C3, 1)) == [[1, 1, 1]]
    assert vec(ops.crop(C3, 10)) == vec(C3)
    assert vec(ops.pad(A, 3)) == [[1, 2, 3], [4, 5, 6], [0, 0, 0]]
    assert vec(ops.reorder(C3, [2, 0, 1])) == [[3, 3, 3], [1, 1, 1], [2, 2, 2]]
    assert ops.reorder(C3, "2,0,1").metadata["provenance"][-1]["operation"] == "reorder"


def test_selection_errors():
    with pytest.raises(OperationError, match="does not exist"):
        ops.select(C3, "5")
    with pytest.raises(OperationError, match="keeps no vectors"):
        ops.select(C3, "3:")
    with pytest.raises(OperationError, match="not understood"):
        ops.select(C3, "one")
    with pytest.raises(OperationError, match="not a permutation"):
        ops.reorder(C3, [0, 0, 1])
    with pytest.raises(OperationError, match="has 3"):
        ops.pad(C3, 2)
    with pytest.raises(OperationError, match="at least 1"):
        ops.crop(C3, 0)


def test_select_keeps_sdxl_slots_paired():
    out = ops.select(XL, "1:")
    assert vec(out) == [[0, 1, 0], [0, 0, 0]]
    assert vec(out, "clip_g") == [[0, 0, 0, 0], [0, 0, 0, 0]]
    one = ops.select(XL, "0", slot="clip_g")
    assert one.vectors["clip_l"].shape == (3, 3) and one.vectors["clip_g"].shape == (1, 4)


def test_drop_zero_across_slots():
    # row 1 is zero in clip_g only, row 2 in both: only row 2 goes
    out = ops.drop_zero(XL)
    assert vec(out) == [[1, 0, 0], [0, 1, 0]]
    assert vec(out, "clip_g") == [[2, 0, 0, 0], [0, 0, 0, 0]]
    assert out.metadata["provenance"][-1]["params"] == {"dropped": [2]}
    assert vec(ops.drop_zero(XL, slot="clip_g"), "clip_g") == [[2, 0, 0, 0]]
    with pytest.raises(OperationError, match="every vector is zero"):
        ops.drop_zero(emb("z", clip_l=[[0, 0]]))


def test_rename():
    out = ops.rename(A, "new-name")
    assert out.name == "new-name" and out.same_vectors(A)
    assert out.metadata["provenance"][-1]["params"] == {"old": "a", "new": "new-name"}
    with pytest.raises(OperationError):
        ops.rename(A, " ")


def test_cast_float16_bfloat16_float32():
    e = emb("p", clip_l=[[1.0009765625 + 2**-12, 3.14159265, -65504.0]])
    h = ops.cast(e, "fp16")
    assert h.dtypes["clip_l"] == "float16" and h.vectors["clip_l"].dtype == np.float16
    assert h.vectors["clip_l"].tolist() == np.asarray(e.vectors["clip_l"]).astype(np.float16).tolist()
    b = ops.cast(e, "bf16")
    assert b.dtypes["clip_l"] == "bfloat16" and b.vectors["clip_l"].dtype == np.float32
    assert np.array_equal(b.vectors["clip_l"], widen_bf16(narrow_bf16(e.vectors["clip_l"])))
    assert b.vectors["clip_l"][0, 1] == 3.140625  # rounded to bf16's 8 significant bits
    back = ops.cast(b, "float32")
    assert back.dtypes["clip_l"] == "float32" and np.array_equal(back.vectors["clip_l"], b.vectors["clip_l"])
    with pytest.raises(OperationError, match="unknown dtype"):
        ops.cast(e, "int8")
    with pytest.raises(OperationError, match="do not fit in float16"):
        ops.cast(emb("big", clip_l=[[1e5, 1.0]]), "fp16")
    with pytest.raises(OperationError, match="do not fit in float16"):
        ops.scale(h, 4.0)


def test_edits_round_to_stored_dtype():
    h = ops.cast(emb("h", clip_l=[[1.0, 3.0]]), "fp16")
    out = ops.scale(h, 1 / 3)
    assert out.dtypes["clip_l"] == "float16" and out.vectors["clip_l"].dtype == np.float16
    assert out.vectors["clip_l"].tolist() == np.asarray([[1 / 3, 1.0]]).astype(np.float16).tolist()
    b = ops.scale(ops.cast(A, "bf16"), 1 / 3)
    assert b.dtypes["clip_l"] == "bfloat16"
    assert np.array_equal(b.vectors["clip_l"], widen_bf16(narrow_bf16((np.asarray(vec(A), dtype=np.float64) / 3).astype(np.float32))))


def test_edit_chain_provenance_and_original_untouched():
    out = ops.drop_zero(ops.crop(ops.scale(A, 2), 1))
    assert [p["operation"] for p in out.metadata["provenance"]] == ["scale", "crop", "drop_zero"]
    assert out.metadata["provenance"][0]["inputs"][0]["vectors_sha256"] == ops.vectors_sha256(A)
    assert vec(A) == [[1, 2, 3], [4, 5, 6]] and "provenance" not in A.metadata


def test_indices_forms():
    assert ops.indices("0:4", 6) == [0, 1, 2, 3]
    assert ops.indices("-2:", 6) == [4, 5]
    assert ops.indices("0:2,5", 6) == [0, 1, 5]
    assert ops.indices(slice(1, 3), 6) == [1, 2]
    assert ops.indices(-1, 6) == [5]
    with pytest.raises(OperationError, match="step of 0"):
        ops.indices("0:4:0", 6)
    with pytest.raises(OperationError):
        ops.indices("-", 6)


def test_refusals_name_the_files(tmp_path):
    import makers as mk

    a = embkit.read(mk.kohya_file(tmp_path / "one.safetensors", mk.vectors(2, 768)))
    b = embkit.read(mk.multi_file(tmp_path / "two.safetensors", {"clip_l": mk.vectors(2, 768), "clip_g": mk.vectors(2, 1280)}))
    with pytest.raises(OperationError) as info:
        embkit.merge([a, b], mode="mean")
    assert str(tmp_path / "one.safetensors") in str(info.value) and str(tmp_path / "two.safetensors") in str(info.value)

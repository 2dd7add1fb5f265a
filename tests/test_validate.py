"""embkit.validate: one test (at least) per finding code, on embeddings built here and on targets
built from family names, a tiny diffusers folder and spec objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import embkit
from embkit import Embedding
from embkit.model.slots import SlotSpec
from embkit.model.spec import ModelSpec
from embkit.errors import ValidationFailed
from embkit.check.findings import CODES, Finding, Report
from embkit.check.validate import validate
from validate_fixtures import build_model_folder

DOCS = Path(__file__).resolve().parent.parent / "docs" / "validate.md"
rng = np.random.default_rng(0)


def vecs(n: int, width: int, norm: float = 0.5) -> np.ndarray:
    a = rng.standard_normal((n, width)).astype(np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True) * norm


def emb(name="mytok", **slots) -> Embedding:
    return Embedding(name, {s: v for s, v in slots.items()})


SD1 = lambda n=2, name="mytok": emb(name, clip_l=vecs(n, 768))  # noqa: E731
SDXL = lambda n=2, name="mytok": emb(name, clip_l=vecs(n, 768), clip_g=vecs(n, 1280))  # noqa: E731


def only(report: Report, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_model_folder(tmp_path_factory.mktemp("models"))


def test_clean_sd1_embedding_on_sd1_has_no_problems():
    report = validate(SD1(), "sd1")
    assert report.ok and not report.warnings
    assert set(report.codes()) == {"prompt-budget", "vocab-unavailable"}
    assert report.family == "sd1" and report.target == "SD1 (clip_l 768)"


# -- slots and widths -----------------------------------------------------------------------------
def test_width_mismatch_when_no_slot_fits():
    report = validate(SD1(), "sd2")
    [f] = only(report, "width-mismatch")
    assert f.severity == "error" and not report.ok
    assert "A1111 skips it" in f.message and "made for SD2" in f.message


def test_width_mismatch_per_slot():
    spec = ModelSpec("unknown", {"clip_l": SlotSpec(32)})
    [f] = only(validate(SD1(), spec), "width-mismatch")
    assert f.slot == "clip_l" and "768 wide" in f.message and "takes 32" in f.message


def test_missing_slot_sd1_on_sdxl_says_how_to_port():
    report = validate(SD1(), "sdxl")
    [f] = only(report, "missing-slot")
    assert f.severity == "error" and f.slot == "clip_g"
    assert f.message.startswith("SD1 embedding: on SDXL only the CLIP-L half would apply")
    assert f.fix == "embkit edit IN -o OUT --port sdxl"


def test_missing_slot_port_uses_the_target_folder(tmp_path_factory):
    sdxl = build_model_folder(tmp_path_factory.mktemp("xl"), sdxl=True)
    [f] = only(validate(SD1(), sdxl), "missing-slot")
    assert f.fix == f"embkit edit IN -o OUT --port sdxl --via {sdxl}"


def test_missing_t5_is_a_warning():
    [f] = only(validate(SD1(), "flux"), "missing-slot")
    assert f.slot == "t5" and f.severity == "warning"


def test_extra_slot_sdxl_on_sd1():
    report = validate(SDXL(), "sd1")
    [f] = only(report, "extra-slot")
    assert f.severity == "warning" and f.slot == "clip_g" and f.fix.endswith("--port sd1")
    assert report.ok


def test_vector_count_mismatch():
    e = emb(clip_l=vecs(2, 768), clip_g=vecs(3, 1280))
    [f] = only(validate(e, "sdxl"), "vector-count-mismatch")
    assert f.severity == "error" and "clip_l 2, clip_g 3" in f.message and f.fix.endswith("--select 0:2")


# -- values ---------------------------------------------------------------------------------------
def test_nan_inf_names_the_row():
    v = vecs(3, 768)
    v[1, 5] = np.nan
    v[2, 0] = np.inf
    [f] = only(validate(emb(clip_l=v), "sd1"), "nan-inf")
    assert f.severity == "error" and f.index == 1 and "1, 2" in f.message


def test_zero_vector():
    v = vecs(3, 768)
    v[2] = 0
    [f] = only(validate(emb(clip_l=v), "sd1"), "zero-vector")
    assert f.severity == "warning" and f.index == 2 and f.fix.endswith("--drop-zero")


def test_output_vectors_are_checked_for_nan_but_not_for_zero_rows():
    out = np.zeros((2, 768), np.float32)
    assert not only(validate(emb(clip_l=vecs(2, 768), clip_l_out=out), "sd1"), "zero-vector")
    out[0, 0] = np.inf
    [f] = only(validate(emb(clip_l=vecs(2, 768), clip_l_out=out), "sd1"), "nan-inf")
    assert f.slot == "clip_l_out"


def test_norm_outlier_high_and_low_against_priors():
    v = vecs(4, 768, norm=0.4)
    v[1] *= 100  # 40: far past 15 x 0.39
    v[3] /= 100  # 0.004: under 0.39 / 20
    found = only(validate(emb(clip_l=v), "sd1"), "norm-outlier")
    assert [f.index for f in found] == [1, 3]
    assert "prior" in found[0].message and "--scale-slot clip_l=" in found[0].fix


def test_real_files_are_not_norm_outliers(corpus):
    for name in ("EasyNegative.pt", "bad-hands-5.pt", "test_embedding.png"):
        assert not only(validate(embkit.read(corpus / name), "sd1"), "norm-outlier"), name


def test_norm_outlier_uses_the_real_matrix_when_available(folder):
    spec = ModelSpec.from_folder(folder)
    median = spec.slots["clip_l"].token_norms.median
    v = vecs(2, 768, norm=median)
    v[0] *= 16
    [f] = only(validate(emb(clip_l=v), folder), "norm-outlier")
    assert f.index == 0 and "this model's token embeddings" in f.message
    assert not only(validate(emb(clip_l=vecs(2, 768, norm=median * 14)), folder), "norm-outlier")


# -- prompt budget --------------------------------------------------------------------------------
@pytest.mark.parametrize("n, severity", [(8, "info"), (40, "warning"), (80, "error")])
def test_prompt_budget(n, severity):
    [f] = only(validate(SD1(n), "sd1"), "prompt-budget")
    assert f.severity == severity and str(n) in f.message and "75" in f.message


def test_prompt_budget_uses_the_folder_limit():
    spec = ModelSpec("sd1", {"clip_l": SlotSpec(768, token_limit=10)})
    [f] = only(validate(SD1(8), spec), "prompt-budget")
    assert f.severity == "warning" and "8 of 10" in f.message


# -- trigger names --------------------------------------------------------------------------------
def test_trigger_in_vocab(folder):
    [f] = only(validate(SD1(name="Cat"), folder), "trigger-in-vocab")
    assert f.severity == "warning" and "diffusers refuses" in f.message and f.fix.endswith("--rename '<cat>'")
    assert not only(validate(SD1(name="zyx"), folder), "trigger-in-vocab")
    assert not only(validate(SD1(name="cat"), folder), "vocab-unavailable")


def test_trigger_split_with_the_target_tokenizer(folder):
    [f] = only(validate(SD1(name="catstyle"), folder), "trigger-split")
    assert f.severity == "info" and "'catstyle' is 3 tokens" in f.message and "(ca t style</w>)" in f.message
    assert not only(validate(SD1(name="cat"), folder), "trigger-split")


def test_trigger_split_without_vocab_and_with_whitespace():
    [f] = only(validate(SD1(name="bad-hands-5"), "sd1"), "trigger-split")
    assert f.severity == "info" and "5 tokens" in f.message
    [g] = only(validate(SD1(name="my style"), "sd1"), "trigger-split")
    assert g.severity == "warning" and g.fix.endswith("--rename mystyle")


def test_trigger_prefix():
    short = SD1(3, name="sty")
    [f] = only(validate(SD1(name="style"), "sd1", loaded=[short]), "trigger-prefix")
    assert f.severity == "warning" and "'sty' is part of 'style'" in f.message
    [g] = only(validate(short, "sd1", loaded=["style"]), "trigger-prefix")
    assert g.fix.endswith("--rename '<sty>'")
    [h] = only(validate(SD1(1, name="sty"), "sd1", loaded=["style"]), "trigger-prefix")
    assert h.severity == "info"


def test_trigger_case():
    [f] = only(validate(SD1(name="MyTok"), "sd1", loaded=["mytok"]), "trigger-case")
    assert f.severity == "warning" and "only by case" in f.message


def test_trigger_duplicate():
    a, b = SD1(name="tok"), SD1(name="tok")
    [f] = only(validate(a, "sd1", loaded=[a, b]), "trigger-duplicate")
    assert f.severity == "warning"


def test_trigger_mixed_case():
    [f] = only(validate(SD1(8, name="EasyNeg"), "sd1"), "trigger-mixed-case")
    assert f.severity == "warning" and f.fix.endswith("--rename easyneg")
    assert not only(validate(SD1(1, name="EasyNeg"), "sd1"), "trigger-mixed-case")


def test_expanded_name_collision_with_loaded_and_vocab(folder):
    [f] = only(validate(SD1(3, name="tok"), "sd1", loaded=["tok_2"]), "expanded-name-collision")
    assert "tok_2" in f.message
    [g] = only(validate(SD1(1, name="tok_1"), "sd1", loaded=[SD1(2, name="tok")]), "expanded-name-collision")
    assert "tok_1" in g.message
    assert not only(validate(SD1(2, name="tok"), "sd1", loaded=["tok_2"]), "expanded-name-collision")
    spec = ModelSpec("sd1", {"clip_l": SlotSpec(768, vocab=frozenset({"c_1"}))})
    [h] = only(validate(SD1(2, name="c"), spec), "expanded-name-collision")
    assert "c_1" in h.message


def test_vocab_unavailable_for_family_targets():
    [f] = only(validate(SD1(), "sd1"), "vocab-unavailable")
    assert f.severity == "info"


# -- report ---------------------------------------------------------------------------------------
def test_report_order_dict_and_raise():
    v = vecs(2, 768)
    v[0] = np.nan
    report = validate(emb("X", clip_l=v), "sdxl")
    sev = [f.severity for f in report.findings]
    assert sev == sorted(sev, key=("error", "warning", "info").index)
    d = report.to_dict()
    assert d["ok"] is False and d["errors"] == 2 and {f["code"] for f in d["findings"]} >= {"nan-inf", "missing-slot"}
    with pytest.raises(ValidationFailed) as exc:
        report.raise_for_errors()
    assert exc.value.exit_code == 7
    warn_only = validate(SD1(40), "sd1")
    warn_only.raise_for_errors()
    with pytest.raises(ValidationFailed):
        warn_only.raise_for_errors(strict=True)


def test_validate_reads_a_path_and_is_callable_as_embkit_validate(corpus):
    import embkit.check.validate as module  # importing the module does not shadow the function

    report = embkit.validate(corpus / "EasyNegative.pt", "sd1")
    assert report.path.endswith("EasyNegative.pt") and report.name == "EasyNegative"
    assert embkit.validate is module.validate and embkit.validate(corpus / "EasyNegative.pt", "sd1").ok


def test_every_code_is_documented_and_tested():
    text = DOCS.read_text(encoding="utf-8")
    here = Path(__file__).read_text(encoding="utf-8")
    for code, (severity, _) in CODES.items():
        assert f"`{code}`" in text, f"docs/validate.md lacks {code}"
        assert f'"{code}"' in here, f"no test for {code}"
        assert severity in ("error", "warning", "info")


def test_report_is_a_list_of_findings():
    import numpy as np

    emb = embkit.Embedding(name="thing", vectors={"clip_l": np.zeros((2, 768), np.float32)})
    report = embkit.validate(emb, "sd1")
    assert len(report) == len(report.findings) > 0
    assert list(report) == list(report.findings) and report[0] == report.findings[0]
    assert "zero-vector" in [f.code for f in report]


# -- hosts: findings carry the hosts they concern ---------------------------------------------------


def test_findings_name_their_hosts_and_a_host_view_keeps_its_own():
    """A mixed-case multi-vector trigger is diffusers' problem (its prompt expansion misses it),
    not A1111's: A1111's view of the same report passes --strict."""
    e = emb("EasyNeg", clip_l=vecs(8, 768))
    report = validate(e, "sd1", hosts=["a1111", "diffusers"])
    [mixed] = [f for f in report if f.code == "trigger-mixed-case"]
    assert mixed.hosts == ("diffusers",)
    assert not report.passes(strict=True)
    assert report.view("a1111").passes(strict=True) and not report.view("diffusers").passes(strict=True)
    assert validate(e, "sd1", hosts="a1111").passes(strict=True)
    # the default is embkit's own view: today's findings, each naming the embkit host
    default = validate(e, "sd1")
    assert default.hosts == ("embkit",) and all(f.hosts == ("embkit",) for f in default)
    assert "trigger-mixed-case" in default.codes()


def test_trigger_names_are_checked_as_each_host_triggers_the_file(tmp_path):
    import makers as mk

    # a diffusers file: A1111 types the stem, diffusers the token
    path = mk.diffusers_file(tmp_path / "learned_embeds.safetensors", "<Cat-Toy>", vecs(3, 768))
    report = validate(embkit.read(path), "sd1", hosts=["a1111", "diffusers"])
    assert report.verdicts["a1111"].trigger == "learned_embeds" and report.verdicts["diffusers"].trigger == "<Cat-Toy>"
    assert [f.hosts for f in report if f.code == "trigger-mixed-case"] == [("diffusers",)]  # the token has capitals, the stem none


def test_a1111_token_prefix_is_its_own_finding():
    a, b = emb("whatever-200", clip_l=vecs(1, 768)), emb("whatever-2000", clip_l=vecs(1, 768))
    report = validate(a, "sd1", loaded=[a, b], hosts=["a1111", "comfyui"])
    [tok] = [f for f in report if f.code == "trigger-prefix"]
    assert tok.hosts == ("a1111",) and "CLIP tokens" in tok.message  # ComfyUI types whole names
    assert not [f for f in validate(emb("style", clip_l=vecs(1, 768)), "sd1", loaded=["styles"], hosts="a1111") if f.code == "trigger-prefix"]


def test_host_findings_say_what_each_host_does(tmp_path):
    import makers as mk

    codes = lambda r, h: [f.code for f in r if h in f.hosts]  # noqa: E731
    xl = SDXL(2)
    assert "host-skips" in codes(validate(xl, "sd1", hosts="a1111"), "a1111")  # A1111 skips an SDXL file on SD1
    assert "host-partial" in codes(validate(SD1(2), "sdxl", hosts="comfyui"), "comfyui")  # ComfyUI applies the CLIP-L half
    fresh = mk.a1111_pt(tmp_path / "fresh.pt", vecs(2, 768))  # torch 2.13 writes .format_version
    assert "host-error" in codes(validate(embkit.read(fresh), "sd1", hosts="a1111"), "a1111")
    binfile = mk.diffusers_file(tmp_path / "tok.bin", "<tok>", vecs(1, 768))
    assert "host-ignores" in codes(validate(embkit.read(binfile), "sd1", hosts="sdnext"), "sdnext")  # SD.Next lists no .bin
    assert "host-unknown" in codes(validate(SD1(2), "sd3", hosts="a1111"), "a1111")


def test_host_old_release(tmp_path):
    from host_files import as_torch
    import makers as mk

    path = as_torch(mk.a1111_pt(tmp_path / "mid.pt", vecs(2, 768)), "2.1")  # byteorder, .data/serialization_id
    report = validate(embkit.read(path), "sd1", hosts="a1111")
    [old] = [f for f in report if f.code == "host-old-release"]
    assert old.severity == "warning" and "before 1.10" in old.message and old.fix.startswith("embkit convert")
    assert report.ok and not report.passes(strict=True)
    assert report.verdicts["a1111"].releases == {"1.10+": True, "before 1.10": False}

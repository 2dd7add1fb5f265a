"""`embkit inspect` and `embkit formats` as a user runs them (a real subprocess)."""

from __future__ import annotations

import json

import makers as mk
from conftest import run_embkit

from embkit.formats import FORMAT_IDS


def test_inspect_json_contract(corpus):
    proc = run_embkit("inspect", "--json", str(corpus))
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)
    # SOURCES.md is listed as skipped, with the reason (issue 19), not left out
    assert [(e["path"].rsplit("/", 1)[-1], e["skipped"]) for e in entries if "skipped" in e] == [("SOURCES.md", "a text file")]
    reports = [e for e in entries if "skipped" not in e]
    by_name = {r["name"]: r for r in reports}
    assert set(by_name) == {"EasyNegative", "bad-hands-5", "rick", "<styled-image>", "<detail-schemas>"}
    for r in reports:
        for key in ("path", "format", "container", "name", "family", "families", "slots", "hashes", "metadata", "warnings"):
            assert key in r, (key, r["path"])
        assert r["format"] in FORMAT_IDS
        assert r["container"] in ("pickle", "safetensors", "png", "webp", "folder")
    bh = by_name["bad-hands-5"]
    assert bh["format"] == "a1111" and bh["family"] == "sd1"
    assert bh["slots"]["clip_l"]["vectors"] == 2 and bh["slots"]["clip_l"]["dim"] == 768
    assert bh["slots"]["clip_l"]["dtype"] == "float32" and len(bh["slots"]["clip_l"]["norms"]) == 2
    assert abs(bh["slots"]["clip_l"]["norms"][0] - 3.8338) < 1e-3
    assert bh["metadata"]["step"] == 1364 and bh["metadata"]["sd_checkpoint"] == "7ab762a7"
    assert bh["hashes"]["sha256"].startswith("aa7651be154c") and bh["hashes"]["autov2"] == "aa7651be15"
    assert by_name["rick"]["format"] == "a1111-image" and by_name["rick"]["container"] == "png"
    assert "autov3" in by_name["<detail-schemas>"]["hashes"]


def test_inspect_reports_errors_and_goes_on(tmp_path, corpus):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04garbage")
    good = mk.kohya_file(tmp_path / "good.safetensors", mk.vectors(2, 768))
    proc = run_embkit("inspect", "--json", str(bad), str(good))
    assert proc.returncode == 3, proc.stderr  # BrokenFileError's exit code
    out = json.loads(proc.stdout)
    assert out[0]["path"] == str(bad) and out[0]["error"]["code"] == "broken-file"
    assert "broken.pt" in out[0]["error"]["message"]
    assert out[1]["name"] == "good"


def test_inspect_table_output(tmp_path):
    path = mk.a1111_pt(tmp_path / "mine.pt", mk.vectors(3, 768), name="other")
    proc = run_embkit("inspect", str(path), env={"COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    assert "mine" in proc.stdout and "3 × 768" in proc.stdout and "float32" in proc.stdout
    assert "stored name 'other' differs from the file name 'mine'" in proc.stdout
    assert "sha256" in proc.stdout and "autov2" in proc.stdout


def test_inspect_multi_embedding_file(tmp_path):
    path = mk.lora_bundle(tmp_path / "lora.safetensors", {"a": {"clip_l": mk.vectors(1, 768)}, "b": {"clip_l": mk.vectors(2, 768)}})
    out = json.loads(run_embkit("inspect", "--json", str(path)).stdout)
    assert out[0]["format"] == "lora-bundle"
    assert [e["name"] for e in out[0]["embeddings"]] == ["a", "b"]
    assert out[0]["embeddings"][1]["slots"]["clip_l"]["vectors"] == 2


def test_inspect_output_vectors(tmp_path):
    path = mk.multi_file(tmp_path / "ot.safetensors", {"clip_l": mk.vectors(1, 768), "clip_g": mk.vectors(1, 1280), "clip_g_out": mk.vectors(1, 1280)})
    out = json.loads(run_embkit("inspect", "--json", str(path)).stdout)[0]
    assert set(out["slots"]) == {"clip_l", "clip_g", "clip_g_out"} and out["family"] == "sdxl"


def test_python_m_embkit_and_formats():
    proc = run_embkit("formats", "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert [f["id"] for f in data["formats"]] == list(FORMAT_IDS)
    assert {c["id"] for c in data["containers"]} == {"pickle", "safetensors", "png", "webp", "folder"}
    assert ".safetensors" in next(f for f in data["formats"] if f["id"] == "kohya")["extensions"]
    table = run_embkit("formats", env={"COLUMNS": "200"})
    assert "a1111-image" in table.stdout and "concept-folder" in table.stdout


def test_inspect_nothing_found(tmp_path):
    proc = run_embkit("inspect", str(tmp_path))
    assert proc.returncode == 4


def test_error_line_shows_code(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04garbage")
    proc = run_embkit("inspect", str(bad))
    assert proc.returncode == 3
    assert "error[broken-file]" in proc.stderr and "broken.pt" in proc.stderr


def test_one_nan_row_keeps_the_other_rows_norms(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    a = np.zeros((3, 768), np.float32)
    a[0, :4] = 0.5
    a[1, 5] = np.nan
    path = tmp_path / "nanrow.safetensors"
    save_file({"emb_params": a}, str(path))
    done = run_embkit("inspect", str(path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    slot = report["embeddings"][0]["slots"]["clip_l"]
    assert slot["norms"] == [1.0, None, 0.0]
    assert slot["finite"] is False
    assert (slot["min"], slot["max"]) == (0.0, 0.5)


def test_walked_folder_leaves_out_pictures_and_models(tmp_path):
    import numpy as np
    from PIL import Image
    from safetensors.numpy import save_file

    folder = tmp_path / "emb"
    folder.mkdir()
    save_file({"emb_params": np.ones((2, 768), np.float32)}, str(folder / "good.safetensors"))
    Image.new("RGB", (8, 8)).save(folder / "good.png")  # a preview beside it
    save_file({"first_stage_model.decoder.conv_in.weight": np.zeros((4, 4, 3, 3), np.float32)}, str(folder / "model.safetensors"))
    done = run_embkit("inspect", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert [r["path"].rsplit("/", 1)[-1] for r in got if "skipped" not in r] == ["good.safetensors"]
    # the others are listed as skipped, with the reason (embkit.folder)
    skipped = {r["path"].rsplit("/", 1)[-1]: r["skipped"] for r in got if "skipped" in r}
    assert skipped["good.png"] == "a picture without an embedding card" and skipped["model.safetensors"].startswith("not an embedding: holds model weights")
    text = run_embkit("inspect", str(folder))
    assert text.returncode == 0 and "good.png: a picture without an embedding card" in text.stdout
    # named directly, a picture without a card is still an error
    assert run_embkit("inspect", str(folder / "good.png")).returncode == 3

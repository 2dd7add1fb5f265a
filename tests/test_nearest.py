"""``inspect --model TARGET --nearest K``: the vocabulary tokens nearest each vector, per encoder, from
a diffusers folder, a single-file checkpoint and a Hub id in the cache (model files written with
safetensors' save_file, tokenizer files in CLIP's vocab.json/merges.txt form)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import embkit
from conftest import run_embkit
from embkit.errors import TargetError
from embkit.model.nearest import TokenIndex
from embkit.model.tokens import nearest, unit_rows
from validate_fixtures import write_vocab_files

L_KEY = "text_model.embeddings.token_embedding.weight"


def encoder(folder: Path, name: str, matrix: np.ndarray, *, projection: bool = False) -> None:
    (folder / name).mkdir(parents=True)
    config = {"model_type": "clip_text_model", "hidden_size": int(matrix.shape[1]), "max_position_embeddings": 77,
              "vocab_size": int(matrix.shape[0]), "architectures": ["CLIPTextModelWithProjection" if projection else "CLIPTextModel"]}
    (folder / name / "config.json").write_text(json.dumps(config))
    save_file({"text_model.embeddings.position_embedding.weight": np.zeros((77, matrix.shape[1]), matrix.dtype), L_KEY: matrix},
              str(folder / name / "model.safetensors"))


def vocab_size(tmp: Path) -> int:
    src = tmp / "_vocab"
    write_vocab_files(src)
    return len(json.loads((src / "vocab.json").read_text()))


@pytest.fixture()
def sdxl_model(tmp_path):
    """A diffusers SDXL folder: two encoders (CLIP-L fp32, CLIP-G fp16) over one CLIP vocabulary."""
    folder = tmp_path / "model"
    n = vocab_size(tmp_path)
    rng = np.random.default_rng(3)
    mat_l = rng.standard_normal((n, 768)).astype(np.float32)
    mat_g = rng.standard_normal((n, 1280)).astype(np.float16)
    encoder(folder, "text_encoder", mat_l)
    encoder(folder, "text_encoder_2", mat_g, projection=True)
    write_vocab_files(folder / "tokenizer")
    write_vocab_files(folder / "tokenizer_2")
    vocab = json.loads((folder / "tokenizer" / "vocab.json").read_text())
    return folder, mat_l, mat_g, {i: t for t, i in vocab.items()}


def test_a_vector_equal_to_row_i_has_token_i_nearest_with_cosine_one(sdxl_model):
    folder, mat_l, mat_g, names = sdxl_model
    cat = [i for i, t in names.items() if t == "cat</w>"][0]
    emb = embkit.Embedding("x", {"clip_l": mat_l[[cat, 7]], "clip_g": mat_g[[300, cat]].astype(np.float32)})
    with TokenIndex.from_target(folder) as index:
        fields = index.slot_fields(emb, "clip_l", 3)["nearest"]
        assert [row[0]["id"] for row in fields] == [cat, 7]
        assert [row[0]["cosine"] for row in fields] == [1.0, 1.0]
        assert fields[0][0]["token"] == "cat</w>"
        assert all(len(row) == 3 and row[0]["cosine"] >= row[1]["cosine"] >= row[2]["cosine"] for row in fields)
        g = index.slot_fields(emb, "clip_g", 2)["nearest"]  # per encoder: CLIP-G against text_encoder_2's rows
        assert [row[0]["id"] for row in g] == [300, cat] and g[0][0]["cosine"] == 1.0


def test_ranking_matches_brute_force_in_float64():
    rng = np.random.default_rng(0)
    mat = rng.standard_normal((5000, 64)).astype(np.float32)
    vecs = rng.standard_normal((6, 64))
    ids, cos = nearest(vecs, unit_rows(mat), 10, lambda i: mat[i])
    m = mat.astype(np.float64)
    full = (vecs @ m.T) / np.linalg.norm(vecs, axis=1)[:, None] / np.linalg.norm(m, axis=1)[None, :]
    for row, got_ids, got_cos in zip(full, ids, cos):
        want = np.lexsort((np.arange(len(row)), -row))[:10]
        assert list(got_ids) == list(want)
        assert np.allclose(got_cos, row[want], atol=1e-12)


def test_ties_go_to_the_lower_id_and_zero_vectors_to_the_first_ids():
    mat = np.ones((50, 8), np.float32)
    ids, cos = nearest(np.ones((1, 8)), unit_rows(mat), 3, lambda i: mat[i])
    assert list(ids[0]) == [0, 1, 2] and np.allclose(cos, 1.0)
    ids, cos = nearest(np.zeros((1, 8)), unit_rows(mat), 2, lambda i: mat[i])
    assert list(ids[0]) == [0, 1] and list(cos[0]) == [0.0, 0.0]


def test_output_vectors_and_missing_encoders_get_null(sdxl_model):
    folder, mat_l, _g, _names = sdxl_model
    emb = embkit.Embedding("x", {"clip_l": mat_l[:1], "clip_h": np.ones((1, 1024), np.float32), "clip_l_out": mat_l[:1]})
    with TokenIndex.from_target(folder) as index:
        assert index.slot_fields(emb, "clip_h", 3) == {"nearest": None}
        assert index.slot_fields(emb, "clip_l_out", 3) == {"nearest": None}


def test_inspect_cli_nearest_json_and_table(sdxl_model, tmp_path):
    folder, mat_l, mat_g, names = sdxl_model
    path = tmp_path / "xl.safetensors"
    save_file({"clip_l": mat_l[[5, 6]], "clip_g": mat_g[[8, 9]].astype(np.float32), "clip_g_out": np.ones((1, 1280), np.float32)}, str(path))
    proc = run_embkit("inspect", str(path), "--model", str(folder), "--nearest", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    [rep] = json.loads(proc.stdout)
    near = rep["slots"]["clip_l"]["nearest"]
    assert len(near) == 2 and all(len(r) == 4 for r in near)
    assert near[1][0] == {"token": names[6], "id": 6, "cosine": 1.0}
    assert [r[0]["id"] for r in rep["slots"]["clip_g"]["nearest"]] == [8, 9]
    assert rep["slots"]["clip_g_out"]["nearest"] is None
    assert rep["embeddings"][0]["slots"]["clip_l"]["nearest"] == near
    table = run_embkit("inspect", str(path), "--model", str(folder), "--nearest", "2")
    assert "nearest tokens (clip_l):" in table.stdout and "nearest tokens (clip_g):" in table.stdout
    assert run_embkit("inspect", str(path), "--nearest", "2").returncode == 2  # --model is needed


def test_single_file_checkpoint_reads_only_the_token_tensors(tmp_path):
    rng = np.random.default_rng(5)
    mat_l = rng.standard_normal((600, 768)).astype(np.float16)
    mat_g = rng.standard_normal((600, 1280)).astype(np.float16)
    ckpt = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": mat_l,
               "conditioner.embedders.1.model.token_embedding.weight": mat_g,
               "model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4), np.float16)}, str(ckpt))
    emb = embkit.Embedding("x", {"clip_l": mat_l[[42]].astype(np.float32), "clip_g": mat_g[[17]].astype(np.float32)})
    with TokenIndex.from_target(ckpt) as index:
        assert index.slot_fields(emb, "clip_l", 1)["nearest"][0][0]["id"] == 42
        assert index.slot_fields(emb, "clip_g", 1)["nearest"][0][0]["id"] == 17
    # with no CLIP tokenizer in the Hugging Face cache, tokens are shown by id; with one, by name
    path = tmp_path / "e.safetensors"
    save_file({"clip_l": mat_l[[42]].astype(np.float32)}, str(path))
    home = tmp_path / "hf"
    proc = run_embkit("inspect", str(path), "--model", str(ckpt), "--nearest", "1", "--json", env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["slots"]["clip_l"]["nearest"][0][0] == {"token": None, "id": 42, "cosine": 1.0}
    assert "no CLIP tokenizer in the Hugging Face cache" in proc.stderr + proc.stdout
    snap = home / "hub" / "models--openai--clip-vit-large-patch14" / "snapshots" / ("a" * 40)
    write_vocab_files(snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("a" * 40)
    proc = run_embkit("inspect", str(path), "--model", str(ckpt), "--nearest", "1", "--json", env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    vocab = json.loads((snap / "vocab.json").read_text())
    name = {i: t for t, i in vocab.items()}[42]
    assert json.loads(proc.stdout)[0]["slots"]["clip_l"]["nearest"][0][0]["token"] == name


def test_hub_id_in_the_cache_and_one_that_is_not(sdxl_model, tmp_path):
    folder, mat_l, _g, _names = sdxl_model
    home = tmp_path / "hf"
    repo = home / "hub" / "models--someone--tiny-sdxl"
    snap = repo / "snapshots" / ("b" * 40)
    snap.parent.mkdir(parents=True)
    os.rename(folder, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    path = tmp_path / "e.safetensors"
    save_file({"emb_params": mat_l[[11]]}, str(path))
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = run_embkit("inspect", str(path), "--model", "someone/tiny-sdxl", "--nearest", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["slots"]["clip_l"]["nearest"][0][0]["id"] == 11
    proc = run_embkit("inspect", str(path), "--model", "someone/absent", "--nearest", "1", env=env)
    assert proc.returncode == 6 and "not in the Hugging Face cache" in proc.stderr


def test_a_folder_without_weights_is_a_clear_target_error(tmp_path):
    (tmp_path / "m" / "text_encoder").mkdir(parents=True)
    (tmp_path / "m" / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "clip_text_model", "hidden_size": 768}))
    with TokenIndex.from_target(tmp_path / "m") as index:
        assert index.tables == {} and any("no safetensors weights" in n for n in index.notes)
    with pytest.raises(TargetError):
        TokenIndex.from_target(tmp_path / "nothing-here")

"""The Python API as an app or node author uses it (findings of the API review, session 2)."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import embkit


def _emb(name: str = "style") -> embkit.Embedding:
    return embkit.Embedding(name=name, vectors={"clip_l": np.linspace(-1, 1, 2 * 768, dtype=np.float32).reshape(2, 768)}, metadata={"step": 3})


def test_overwrite_never_replaces_a_folder_of_the_users(tmp_path):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(embkit.TargetExistsError, match="holding other files"):
        embkit.write(_emb(), folder, overwrite=True)  # no extension: a concept folder would be written
    assert (folder / "notes.txt").read_text() == "keep"
    # a concept folder embkit (or the Hub) wrote is still replaced
    concept = tmp_path / "concept"
    embkit.write(_emb(), concept)
    embkit.write(_emb("other"), concept, overwrite=True)
    assert embkit.read(concept).name == "other"


def test_embeddings_pickle_and_deepcopy(tmp_path):
    path = tmp_path / "x.safetensors"
    embkit.write(_emb("x"), path)
    for emb in (_emb(), embkit.read(path)):
        for clone in (copy.deepcopy(emb), pickle.loads(pickle.dumps(emb))):
            assert clone.same_vectors(emb) and clone.name == emb.name
            assert dict(clone.metadata) == dict(emb.metadata) and clone.source == emb.source
            assert not clone.vectors["clip_l"].flags.writeable


def test_vectors_cannot_be_made_writeable_again():
    arr = _emb().vectors["clip_l"]
    with pytest.raises(ValueError):
        arr.flags.writeable = True


def test_home_folder_paths_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    embkit.write(_emb("t"), "~/t.safetensors")
    assert (tmp_path / "t.safetensors").exists()
    assert embkit.read("~/t.safetensors").name == "t"
    # the default one-slot layout: diffusers keyed by the stem (every host types "t")
    assert embkit.probe("~/t.safetensors").format == "diffusers"


def test_one_name_is_a_name_not_its_letters(tmp_path):
    folder = tmp_path / "emb"
    folder.mkdir()
    embkit.write(_emb("style"), folder / "style.safetensors")
    lib = embkit.Library(tmp_path / "lib.sqlite")
    lib.scan(folder)
    (result,) = lib.check("sd1", names="style")
    assert result.entry.name == "style" and result.loads


def test_dir_shows_the_lazy_api():
    names = dir(embkit)
    for name in ("write", "validate", "merge", "Library", "Report", "Finding", "ModelSpec"):
        assert name in names
    assert {"Report", "Finding"} <= set(embkit.__all__)
    assert (Path(embkit.__file__).parent / "py.typed").exists()


def test_merge_and_port_take_paths_like_validate_and_apply(tmp_path):
    from embkit.edit.port import port

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    embkit.write(_emb("a"), a)
    embkit.write(_emb("b"), b)
    merged = embkit.merge([a, str(b)], mode="mean")
    assert merged.same_vectors(embkit.merge([embkit.read(a), embkit.read(b)], mode="mean"))
    assert port(a, "SDXL").family == "sdxl"
    with pytest.raises(TypeError, match="an Embedding or a path"):
        embkit.merge([1, 2])
